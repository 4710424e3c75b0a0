"""The MIFG-QA sample: one row of a shard, as a pydantic model.

Every package reads and writes samples through this model; the Arrow layout of the same row
lives in `schemas.arrow`. Image bytes live only here (in `images`), never in agent/graph state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 2
"""Bump when a field is added/changed; `schemas.migrate` upgrades older rows on read."""

LETTERS = "ABCDEFGHIJ"
MIN_IMAGES = 2
MAX_IMAGES = 8
NEUTRAL_ROLE = ""
"""The `ImageMeta.role` of every image of a sample as stored and exported (see `ImageMeta`)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class TaskType(str, Enum):
    """Enumerated task types of MIFG-QA (the writer picks one per sample)."""

    WHICH_DIFFERS = "which_differs"  # which image differs from the reference
    WHERE_DIFFERS = "where_differs"  # in which region do two images differ
    COUNT_ACROSS = "count_across"  # count a detail across images
    ODD_ONE_OUT = "odd_one_out"  # which image is not like the others
    ATTRIBUTE_COMPARE = "attribute_compare"  # compare an attribute (colour, size) of a detail
    SAME_SOURCE = "same_source"  # are these related photos the same scene / which matches
    WHICH_UNCHANGED = "which_unchanged"  # which image is the only one without a change
    COUNT_CHANGES = "count_changes"  # how many separate local changes between two shots
    CHANGE_KIND = "change_kind"  # what happened: added / removed / recoloured / moved / nothing
    MATCHING_PAIR = "matching_pair"  # which two images show exactly the same content
    CROP_MATCH = "crop_match"  # which close-up is an unaltered part of image 1
    ZOOM_LOCATE = "zoom_locate"  # where in a close-up of image 1 is the change


class Domain(str, Enum):
    """Image domain; MIFG-QA reports accuracy per domain."""

    NATURE = "nature"
    URBAN = "urban"
    INDOOR = "indoor"
    DOCUMENT = "document"
    SCIENTIFIC = "scientific"
    PEOPLE = "people"
    OBJECT = "object"
    TEXTURE = "texture"
    OTHER = "other"


class Status(str, Enum):
    """Lifecycle of a sample: generated candidate, then a review decision."""

    CANDIDATE = "candidate"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EDITED = "edited"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=False)


class SampleImage(_Model):
    """One image in the `datasets` Image encoding: encoded bytes plus a path (name)."""

    bytes: bytes
    path: str


class ImageMeta(_Model):
    """Metadata of one image of a sample, parallel to `Sample.images`.

    `role` is neutral: always `NEUTRAL_ROLE` ("") in samples the pipeline writes, and blanked by the
    export for older shards that still carry one. A role such as "original" or "variant:recolor"
    names the edited image and the edit, i.e. the answer, so the per-image roles are kept only in
    the construction record (`Provenance.construction`, key "image_roles"), never next to the image.
    """

    sha256: str  # of the encoded bytes
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    source: str  # id of the source photo ("skimage:coffee", "dir:cats/01.jpg"); splits group on it
    phash: str  # imagehash.phash hex string
    license: str = "unknown"
    role: str = ""  # NEUTRAL_ROLE; the real per-image roles live in Provenance.construction["image_roles"]


class Box(_Model):
    """Where the answer can be seen: a normalised xyxy box on one image."""

    image_index: int = Field(ge=0)
    bbox: tuple[float, float, float, float]

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = v
        if not all(0.0 <= c <= 1.0 for c in v):
            raise ValueError(f"bbox coordinates must be in [0, 1], got {v}")
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"bbox must satisfy x1<x2 and y1<y2, got {v}")
        return v


class UsagePart(_Model):
    """The share of a sample's usage spent by one agent or probe (e.g. "writer", "probe:glance")."""

    name: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost_usd: float = 0.0


class TokenUsage(_Model):
    """Token accounting summed over all model calls made for one sample, and per agent / probe."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    parts: list[UsagePart] = Field(default_factory=list)  # by agent or probe; empty when unlabelled

    def add(self, other: TokenUsage) -> TokenUsage:
        """Return the element-wise sum of two usages (parts summed by name)."""
        parts = {p.name: p for p in self.parts}
        for p in other.parts:
            q = parts.get(p.name)
            parts[p.name] = (
                p
                if q is None
                else UsagePart(
                    name=p.name,
                    prompt_tokens=q.prompt_tokens + p.prompt_tokens,
                    completion_tokens=q.completion_tokens + p.completion_tokens,
                    calls=q.calls + p.calls,
                    cost_usd=q.cost_usd + p.cost_usd,
                )
            )
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
            cost_usd=self.cost_usd + other.cost_usd,
            parts=sorted(parts.values(), key=lambda p: p.name),
        )

    @classmethod
    def total(cls, usages: Iterable[TokenUsage]) -> TokenUsage:
        """The sum of `usages` (an empty sum is zero), e.g. of calls gathered together."""
        out = cls()
        for u in usages:
            out = out.add(u)
        return out

    def labelled(self, name: str) -> TokenUsage:
        """This usage as one part named `name` (what an agent's calls cost, for the per-agent figures)."""
        part = UsagePart(
            name=name,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            calls=self.calls,
            cost_usd=self.cost_usd,
        )
        return self.model_copy(update={"parts": [part] if self.calls else []})


class VerifierVerdict(_Model):
    """The answer verifier's own answer and whether it agrees with the writer."""

    answer: str | None = None
    agrees: bool = False
    method: str = ""  # e.g. "pixel-diff", "llm"
    confidence: float = 0.0
    notes: str = ""
    votes: list[str] = Field(default_factory=list)  # each blind vote's letter (in the sample's option order)
    vote_share: float = 0.0  # share of the votes for `answer`
    model: str = ""  # the model that voted, when another than the writer's


class ProbeOutcome(_Model):
    """One critic probe: how often a solver shown less than the sample needs still answered right."""

    name: str  # "text_only", "glance", "single_image", "reordered"
    tries: int = 0
    right: int = 0
    p_value: float = 1.0  # chance of at least `right` of `tries` by guessing
    rejected: bool = False


class CriticVerdict(_Model):
    """The adversarial critic's decision on the final draft."""

    verdict: Literal["accept", "reject", "revise"] = "accept"
    reasons: list[str] = Field(default_factory=list)  # machine-readable codes, e.g. "thumbnail_solvable"
    feedback: str = ""
    probes: list[ProbeOutcome] = Field(default_factory=list)


class Provenance(_Model):
    """How a sample was made: backend, model, prompts, seed and every agent's verdict.

    `construction` is the ground truth of how the images were made (which image was edited, by
    which edit, where, from which source photo; plus "image_roles", the role of each image in
    order). It is for auditing and checking answers only and must never be shown to a model: no
    prompt, tool argument or model-readable column may be built from it. Exports carry it only
    inside `provenance`.
    """

    backend: str  # "offline" | "openai"
    model: str = ""  # model name for the LLM backend, "" offline
    prompt_version: str = ""
    seed: int = 0
    run_id: str = ""
    # JSON: the pairer's record (edit kind, target image, region, image_roles, ...). Audit-only ground
    # truth: never shown to a model (see the class docstring).
    construction: str = "{}"
    verifier: VerifierVerdict = Field(default_factory=VerifierVerdict)
    critic: CriticVerdict = Field(default_factory=CriticVerdict)
    revisions: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    created_at: str = ""  # ISO 8601 UTC


class ReviewDecision(_Model):
    """One annotator's decision on a sample (the review store is the source of truth)."""

    annotator: str
    decision: Literal["accept", "reject", "edit"]
    reason: str = ""
    at: str = ""  # ISO 8601 UTC


class Review(_Model):
    """Review metadata attached to verified samples."""

    decisions: list[ReviewDecision] = Field(default_factory=list)
    verified_at: str = ""
    original: str = ""  # JSON of {question, options, answer, evidence} before an edit, "" if none


class Sample(_Model):
    """One multi-image fine-grained multiple-choice QA sample (one Parquet row)."""

    id: str = ""
    schema_version: int = SCHEMA_VERSION
    images: list[SampleImage]
    image_meta: list[ImageMeta]
    question: str
    options: list[str]
    answer: str  # option letter, "A".."J"
    task_type: TaskType
    domain: Domain = Domain.OTHER
    rationale: str = ""
    evidence: list[Box] = Field(default_factory=list)
    provenance: Provenance
    status: Status = Status.CANDIDATE
    review: Review | None = None

    @model_validator(mode="after")
    def _check(self) -> Sample:
        n = len(self.images)
        if not (MIN_IMAGES <= n <= MAX_IMAGES):
            raise ValueError(f"a sample needs {MIN_IMAGES}..{MAX_IMAGES} images, got {n}")
        if len(self.image_meta) != n:
            raise ValueError(f"image_meta has {len(self.image_meta)} entries for {n} images")
        if not self.question.strip():
            raise ValueError("question is empty")
        if not (2 <= len(self.options) <= len(LETTERS)):
            raise ValueError(f"need 2..{len(LETTERS)} options, got {len(self.options)}")
        if any(not o.strip() for o in self.options):
            raise ValueError("an option is empty")
        if len(set(self.options)) != len(self.options):
            raise ValueError("options are not distinct")
        if self.answer not in list(LETTERS[: len(self.options)]):
            raise ValueError(f"answer {self.answer!r} is not one of the option letters")
        for box in self.evidence:
            if box.image_index >= n:
                raise ValueError(f"evidence box on image {box.image_index} but only {n} images")
        if not self.id:
            self.id = content_id(self)
        return self

    @property
    def answer_index(self) -> int:
        """Index of the correct option."""
        return LETTERS.index(self.answer)

    @property
    def answer_text(self) -> str:
        """Text of the correct option."""
        return self.options[self.answer_index]

    @property
    def sources(self) -> list[str]:
        """Distinct source-photo ids of the sample's images, in order."""
        return list(dict.fromkeys(m.source for m in self.image_meta))


def image_entry(
    data: bytes,
    *,
    width: int,
    height: int,
    source: str,
    phash: str = "",
    license: str = "unknown",
    role: str = "",
    sha256: str | None = None,
    path: str | None = None,
) -> tuple[SampleImage, ImageMeta]:
    """The `images` entry and `image_meta` entry of encoded image bytes (sha256 computed unless given)."""
    sha = sha256 or hashlib.sha256(data).hexdigest()
    meta = ImageMeta(sha256=sha, width=width, height=height, source=source, phash=phash, license=license, role=role)
    return SampleImage(bytes=data, path=path or image_file_name(sha)), meta


def image_file_name(sha256: str, suffix: str = ".png") -> str:
    """Content-hashed file name of an image: 16 hex digits of its sha256 plus an image suffix.

    Names carry nothing but the content hash, never words like "variant" or "edited" that would
    tell which image was changed; an unknown `suffix` becomes ".png".
    """
    suffix = suffix.lower()
    return f"{sha256[:16]}{suffix if suffix in IMAGE_SUFFIXES else '.png'}"


def content_id(sample: Sample) -> str:
    """Stable content hash of a sample: image hashes + question + options (not answer/status)."""
    payload = json.dumps(
        {
            "images": [m.sha256 for m in sample.image_meta],
            "question": sample.question.strip(),
            "options": [o.strip() for o in sample.options],
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def option_letter(index: int) -> str:
    """Letter of the option at `index` (0 -> "A")."""
    return LETTERS[index]


def undecodable_image(sample: Sample) -> str | None:
    """Why one of the sample's images cannot be decoded, or None when they all decode."""
    import io
    import warnings

    from PIL import Image

    for i, img in enumerate(sample.images):
        try:
            with warnings.catch_warnings():  # a decoder's warning is folded into this one answer
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(img.bytes)) as im:
                    im.load()  # full decode: a truncated file passes a header check and breaks consumers later
        except Exception as e:  # noqa: BLE001 - any decoder error means the image is unusable
            return f"image {i} does not decode ({type(e).__name__})"
    return None
