"""What the four agents take and return, and the protocols both backends implement.

Agents know nothing about the graph: each is an object with one async method. Graph state holds
only these small models (paths and hashes, never image bytes), because the checkpointer stores
the whole state at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from schemas import Box, CriticVerdict, Domain, TaskType, TokenUsage, VerifierVerdict


class ImageRef(BaseModel):
    """An image stored as PNG in the run's image cache (`RUN_DIR/images/<sha256>.png`)."""

    model_config = ConfigDict(extra="forbid")

    path: str  # absolute path of the cached PNG
    sha256: str  # of the PNG bytes
    width: int
    height: int
    source: str  # source-photo id, e.g. "skimage:coffee" or "dir:sub/cat.jpg"
    phash: str  # imagehash.phash hex
    license: str = "unknown"
    role: str = "original"  # "original" or "variant:<edit kind>"
    domain: Domain = Domain.OTHER
    group: str | None = None  # the user's group (a --group-column value); never shown to a model


class ImageSet(BaseModel):
    """The pairer's output: 2-N images plus the ground-truth record of how they were made."""

    model_config = ConfigDict(extra="forbid")

    images: list[ImageRef]
    domain: Domain = Domain.OTHER
    kind: str = "edit"  # "edit" (controlled variants of one photo) or "related" (near-duplicates)
    construction: dict[str, Any] = Field(default_factory=dict)  # JSON-able ground truth


class Draft(BaseModel):
    """The question writer's output: a multiple-choice question about an ImageSet."""

    model_config = ConfigDict(extra="forbid")

    question: str
    options: list[str]
    answer: str  # option letter
    task_type: TaskType
    rationale: str = ""
    evidence: list[Box] = Field(default_factory=list)


class WorkItem(BaseModel):
    """One unit of a batch: the i-th sample of the run's plan, with its own derived seed."""

    model_config = ConfigDict(extra="forbid")

    index: int
    seed: int


@dataclass
class PhotoPool:
    """Validated, de-duplicated source photos a run may draw from (built by `pipeline`)."""

    photos: list[ImageRef]
    # (i, j, hamming distance) of photo pairs that are related but not identical, from the hash index
    related: list[tuple[int, int, int]] = field(default_factory=list)


COUNT_PREFIX = "count:"
"""Registry keys with this prefix count towards a cap (e.g. samples per question) rather than name one sample."""


def count_key(digest: str, cap: int, slot: int) -> str:
    """Registry key of slot `slot` of a cap of `cap` samples for `digest` (see `COUNT_PREFIX`)."""
    return f"{COUNT_PREFIX}{digest}/{cap}#{slot}"


def count_slots(key: str) -> list[str] | None:
    """Every slot key of the cap that `key` counts towards (None: not a slot key): so that a process
    that merges the claims of several workers can move a claim whose slot another took to a free one."""
    if not key.startswith(COUNT_PREFIX) or "#" not in key or "/" not in key:
        return None
    head, _, _ = key.rpartition("#")
    digest, _, cap = head[len(COUNT_PREFIX) :].rpartition("/")
    if not cap.isdigit():
        return None
    return [count_key(digest, int(cap), i) for i in range(int(cap))]


class DuplicateRegistry(Protocol):
    """Run-wide memory of what was already produced; the critic rejects near-duplicates."""

    def seen(self, key: str) -> bool:
        """Whether `key` was already recorded."""
        ...

    def add(self, key: str) -> None:
        """Record `key`."""
        ...


class SetRegistry:
    """A DuplicateRegistry over an in-memory set (one process; the pipeline's RunRegistry persists)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def seen(self, key: str) -> bool:
        """Whether `key` was already recorded."""
        return key in self.keys

    def add(self, key: str) -> None:
        """Record `key`."""
        self.keys.add(key)


@dataclass
class AgentContext:
    """Everything an agent may use besides its inputs: where to cache images, the pool, limits."""

    image_dir: Path
    pool: PhotoPool
    registry: DuplicateRegistry
    seed: int = 0
    thumbnail_side: int = 64  # critic: a sample answerable at this size is not fine-grained
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific knobs


class Pairer(Protocol):
    """Image pairer: chooses/makes the images of one sample."""

    async def pair(self, item: WorkItem, ctx: AgentContext) -> tuple[ImageSet, TokenUsage]:
        """Make the image set for `item`."""
        ...


class Writer(Protocol):
    """Question writer: turns an image set into a multiple-choice question."""

    async def write(
        self, images: ImageSet, ctx: AgentContext, *, seed: int, feedback: list[str], attempt: int
    ) -> tuple[Draft, TokenUsage]:
        """Write (attempt 0) or revise (attempt > 0, with the critic's feedback) a question."""
        ...


class Verifier(Protocol):
    """Answer verifier: answers the draft independently and says whether it agrees."""

    async def verify(self, images: ImageSet, draft: Draft, ctx: AgentContext) -> tuple[VerifierVerdict, TokenUsage]:
        """Re-derive the answer (offline: from the pixels, never from `images.construction`)."""
        ...


class Critic(Protocol):
    """Adversarial critic: accept, reject (with reasons) or send back for revision."""

    async def critique(
        self, images: ImageSet, draft: Draft, verdict: VerifierVerdict, ctx: AgentContext, *, attempt: int
    ) -> tuple[CriticVerdict, TokenUsage]:
        """Attack the sample; reason codes are machine-readable (e.g. "thumbnail_solvable")."""
        ...


@dataclass
class AgentSet:
    """The four agents of one backend."""

    pairer: Pairer
    writer: Writer
    verifier: Verifier
    critic: Critic
    backend: str = "offline"
    model: str = ""
    prompt_version: str = ""
