"""Standalone files copied into exports (reward, verl tools, lmms-eval utils); they never import mifg."""

from __future__ import annotations

from importlib import resources


def asset_text(name: str) -> str:
    """Source text of the asset file `name` (e.g. "mifg_reward.py")."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
