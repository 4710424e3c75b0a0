"""Versioned prompt files of the LLM agents: `agents/prompts/<version>/<role>.md`, and per task family
`agents/prompts/<version>/families/<task_type>.md` (a definition and two worked examples for the writer).

A prompt is never edited in place once samples were made with it: copy the folder to a new
version, change it there, and the new version is recorded in every sample's provenance.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from schemas import TaskType

DEFAULT_VERSION = "v2"
ROLES = ("describer", "writer", "verifier", "probe")
FAMILIES = tuple(t.value for t in TaskType)


def _complete(folder) -> bool:
    return all((folder / f"{r}.md").is_file() for r in ROLES) and all(
        (folder / "families" / f"{f}.md").is_file() for f in FAMILIES
    )


def available_versions() -> list[str]:
    """Prompt versions shipped with the package (folders holding every role's and every family's file)."""
    root = resources.files(__name__)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _complete(p))


@lru_cache(maxsize=64)
def load_prompt(role: str, version: str = DEFAULT_VERSION) -> str:
    """The system prompt of `role` ("describer", "writer", ...) at `version`; ValueError if absent."""
    if role not in ROLES:
        raise ValueError(f"unknown prompt role {role!r}; expected one of {', '.join(ROLES)}")
    path = resources.files(__name__) / version / f"{role}.md"
    if not path.is_file():
        raise ValueError(f"no prompt {role!r} for version {version!r} (have: {', '.join(available_versions())})")
    return path.read_text(encoding="utf-8").strip()


@lru_cache(maxsize=128)
def load_family(family: str, version: str = DEFAULT_VERSION) -> str:
    """The writer's guide to one task family (definition + two worked examples) at `version`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; expected one of {', '.join(FAMILIES)}")
    path = resources.files(__name__) / version / "families" / f"{family}.md"
    if not path.is_file():
        raise ValueError(f"no writer guide for family {family!r} in prompt version {version!r}")
    return path.read_text(encoding="utf-8").strip()
