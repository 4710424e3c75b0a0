"""Fixtures of the LLM-backend tests: a real local OpenAI-compatible server and a tiny photo pool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agents.base import AgentContext, PhotoPool, SetRegistry
from agents.image_cache import store_image
from agents.llm.local_server import LocalModelServer
from schemas import Domain

# Fast retry knobs so fault tests take fractions of a second; production defaults are seconds.
FAST = {"timeout": 2.0, "backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 4, "json_retries": 2}


SEA, RED = ((70, 110, 160), (150, 170, 120)), ((170, 60, 50), (60, 150, 70))  # (ground, land) colour pairs


def island_photo(seed: int, colours: tuple = SEA, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A calm ground with a dozen isolated islands of 12-20 px: the natural edits always find objects."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.array(colours[0], float) + rng.normal(0, 3, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(12):
        cx, cy, r = rng.integers(60, w - 60), rng.integers(60, h - 60), rng.integers(6, 10)
        img[np.hypot(xx - cx, yy - cy) <= r] = colours[1]
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def run(coro: Any) -> Any:
    """Run a coroutine to completion (tests stay plain functions)."""
    return asyncio.run(coro)


@pytest.fixture
def server() -> Iterator[LocalModelServer]:
    """A fresh local model server (no latency, no faults; Retry-After 0.3 s), request bodies kept."""
    with LocalModelServer(retry_after=0.3, hang_s=5.0, keep_bodies=500) as srv:
        yield srv


@pytest.fixture
def ctx(tmp_path: Path) -> AgentContext:
    """An agent context over four island photos cached as PNG: two of a blue sea, two of a red ground."""
    image_dir = tmp_path / "images"
    photos = [
        store_image(
            island_photo(seed, SEA if seed < 2 else RED), image_dir, source=f"test:{seed}", domain=Domain.NATURE
        )
        for seed in range(4)
    ]
    return AgentContext(image_dir=image_dir, pool=PhotoPool(photos=photos), registry=SetRegistry(), seed=7)
