"""Versioned prompt files of the LLM agents: `agents/prompts/<version>/<role>.md`.

A prompt is never edited in place once samples were made with it: copy the folder to a new
version, change it there, and the new version is recorded in every sample's provenance.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

DEFAULT_VERSION = "v1"
ROLES = ("pairer", "writer", "verifier", "critic", "critic_blind")


def available_versions() -> list[str]:
    """Prompt versions shipped with the package (folders holding every role's file)."""
    root = resources.files(__name__)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and all((p / f"{r}.md").is_file() for r in ROLES))


@lru_cache(maxsize=64)
def load_prompt(role: str, version: str = DEFAULT_VERSION) -> str:
    """The system prompt of `role` ("pairer", "writer", ...) at `version`; ValueError if absent."""
    if role not in ROLES:
        raise ValueError(f"unknown prompt role {role!r}; expected one of {', '.join(ROLES)}")
    path = resources.files(__name__) / version / f"{role}.md"
    if not path.is_file():
        raise ValueError(f"no prompt {role!r} for version {version!r} (have: {', '.join(available_versions())})")
    return path.read_text(encoding="utf-8").strip()
