"""The JSON each agent asks the model for, as pydantic models, and their checks against the inputs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.base import Draft, ImageSet
from schemas import LETTERS, Box, Domain, TaskType

_LETTER = re.compile(r"^\W*([A-Ja-j])\W*$")


def normalise_letter(value: Any) -> str | None:
    """ "b", "(B)", "B." -> "B"; None/"" -> None; anything else is returned stripped (checked later)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in ("null", "none"):
        return None
    m = _LETTER.match(text)
    return m.group(1).upper() if m else text


class _Reply(BaseModel):
    # Models add fields of their own; ignore them rather than fail the sample.
    model_config = ConfigDict(extra="ignore")


class DescriberReply(_Reply):
    """The describer's account of one photo: a caption, tags (most specific first) and a domain."""

    caption: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    domain: Domain = Domain.OTHER

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, v: Any) -> Any:
        text = str(v or "").strip().lower()
        return text if text in {d.value for d in Domain} else Domain.OTHER.value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.split(",")
        return list(dict.fromkeys(" ".join(str(t).lower().split()) for t in (v or []) if str(t).strip()))[:12]


class EvidenceReply(_Reply):
    """An evidence box as the model writes it (checked/normalised against image sizes later)."""

    image_index: int
    bbox: list[float] = Field(min_length=4, max_length=4)


class WriterReply(_Reply):
    """The question writer's draft."""

    question: str = Field(min_length=1)
    options: list[str] = Field(min_length=2, max_length=len(LETTERS))
    answer: str
    rationale: str = ""
    evidence: list[EvidenceReply] = Field(default_factory=list)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, v: Any) -> Any:
        return normalise_letter(v) or ""

    @field_validator("options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        v = [str(o).strip() for o in v]
        if any(not o for o in v):
            raise ValueError("an option is empty")
        if len(set(v)) != len(v):
            raise ValueError("options are not distinct")
        return v

    def to_draft(self, images: ImageSet, family: TaskType) -> Draft:
        """Check the draft against the image set (answer letter, boxes) and build it as a `family` question."""
        letters = LETTERS[: len(self.options)]
        if self.answer not in letters:
            raise ValueError(f"answer {self.answer!r} is not one of the option letters {', '.join(letters)}")
        if not self.question.strip():
            raise ValueError("question is empty")
        boxes = [_to_box(e, images) for e in self.evidence]
        return Draft(
            question=self.question.strip(),
            options=self.options,
            answer=self.answer,
            task_type=family,
            rationale=self.rationale.strip(),
            evidence=boxes,
        )


def _to_box(e: EvidenceReply, images: ImageSet) -> Box:
    n = len(images.images)
    if not 0 <= e.image_index < n:
        raise ValueError(f"evidence image_index {e.image_index} is outside 0..{n - 1}")
    x1, y1, x2, y2 = e.bbox
    ref = images.images[e.image_index]
    if max(e.bbox) > 1.0:
        # Many VLMs answer in pixels; accept that when it fits the image, else it is nonsense.
        if min(e.bbox) < 0 or x2 > ref.width or y2 > ref.height:
            raise ValueError(
                f"evidence bbox {e.bbox} is neither normalised nor inside the {ref.width}x{ref.height} image"
            )
        x1, x2, y1, y2 = x1 / ref.width, x2 / ref.width, y1 / ref.height, y2 / ref.height
    return Box(image_index=e.image_index, bbox=(x1, y1, x2, y2))


class VerifierReply(_Reply):
    """The verifier's own answer."""

    answer: str
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    reasoning: str = ""

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, v: Any) -> Any:
        return normalise_letter(v) or ""


def check_letter(answer: str | None, n_options: int) -> None:
    """ValueError unless `answer` is one of the first `n_options` letters."""
    if answer not in LETTERS[:n_options]:
        raise ValueError(f"answer {answer!r} is not one of the option letters {', '.join(LETTERS[:n_options])}")


def letter_reply(n_options: int) -> Callable[[dict[str, Any]], VerifierReply]:
    """A parser of a solver's reply whose answer must be one of the first `n_options` letters."""

    def parse(obj: dict[str, Any]) -> VerifierReply:
        reply = VerifierReply.model_validate(obj)
        check_letter(reply.answer, n_options)
        return reply

    return parse
