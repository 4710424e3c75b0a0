"""The JSON each agent asks the model for, as pydantic models, and their checks against the inputs."""

from __future__ import annotations

import re
from typing import Any, Literal

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


class PairerReply(_Reply):
    """The pairer's classification of an image set."""

    domain: Domain = Domain.OTHER
    description: str = ""

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, v: Any) -> Any:
        text = str(v or "").strip().lower()
        return text if text in {d.value for d in Domain} else Domain.OTHER.value


class EvidenceReply(_Reply):
    """An evidence box as the model writes it (checked/normalised against image sizes later)."""

    image_index: int
    bbox: list[float] = Field(min_length=4, max_length=4)


class WriterReply(_Reply):
    """The question writer's draft."""

    question: str = Field(min_length=1)
    options: list[str] = Field(min_length=2, max_length=len(LETTERS))
    answer: str
    task_type: TaskType
    rationale: str = ""
    evidence: list[EvidenceReply] = Field(default_factory=list)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, v: Any) -> Any:
        return normalise_letter(v) or ""

    @field_validator("task_type", mode="before")
    @classmethod
    def _task(cls, v: Any) -> Any:
        return str(v or "").strip().lower().replace(" ", "_").replace("-", "_")

    @field_validator("options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        v = [str(o).strip() for o in v]
        if any(not o for o in v):
            raise ValueError("an option is empty")
        if len(set(v)) != len(v):
            raise ValueError("options are not distinct")
        return v

    def to_draft(self, images: ImageSet, allowed: set[TaskType] | None = None) -> Draft:
        """Check the draft against the image set (answer letter, task type, boxes) and build it."""
        letters = LETTERS[: len(self.options)]
        if self.answer not in letters:
            raise ValueError(f"answer {self.answer!r} is not one of the option letters {', '.join(letters)}")
        if allowed and self.task_type not in allowed:
            raise ValueError(f"task_type {self.task_type.value!r} is not allowed here")
        if not self.question.strip():
            raise ValueError("question is empty")
        boxes = [_to_box(e, images) for e in self.evidence]
        return Draft(
            question=self.question.strip(),
            options=self.options,
            answer=self.answer,
            task_type=self.task_type,
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


class BlindReply(_Reply):
    """The critic's text-only guess."""

    answer: str | None = None
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, v: Any) -> Any:
        return normalise_letter(v)


class CriticReply(_Reply):
    """The critic's attack on a sample seen through thumbnails."""

    verdict: Literal["accept", "revise", "reject"]
    reasons: list[str] = Field(default_factory=list)
    feedback: str = ""
    thumbnail_answer: str | None = None
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, v: Any) -> Any:
        return str(v or "").strip().lower()

    @field_validator("thumbnail_answer", mode="before")
    @classmethod
    def _answer(cls, v: Any) -> Any:
        return normalise_letter(v)

    @field_validator("reasons", mode="before")
    @classmethod
    def _reasons(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        return [str(r).strip().lower().replace(" ", "_") for r in (v or []) if str(r).strip()]


def check_letter(answer: str | None, n_options: int) -> None:
    """ValueError unless `answer` is one of the first `n_options` letters."""
    if answer not in LETTERS[:n_options]:
        raise ValueError(f"answer {answer!r} is not one of the option letters {', '.join(LETTERS[:n_options])}")
