"""Fixtures of the LLM-backend tests: a real local OpenAI-compatible server and a tiny photo pool."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from agents.base import AgentContext, PhotoPool, SetRegistry
from agents.image_cache import store_image
from agents.llm.local_server import LocalModelServer
from schemas import Domain

# Fast retry knobs so fault tests take fractions of a second; production defaults are seconds.
FAST = {"timeout": 2.0, "backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 4, "json_retries": 2}


def busy_photo(seed: int, size: tuple[int, int] = (192, 144)) -> Image.Image:
    """A small photo-like test image: a colour gradient under 40 random shapes (edits always show)."""
    rng = random.Random(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, rng.randrange(256))], -1).astype(np.uint8)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x0, y0, r = rng.randrange(w), rng.randrange(h), rng.randrange(4, 20)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + r, y0 + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def run(coro: Any) -> Any:
    """Run a coroutine to completion (tests stay plain functions)."""
    return asyncio.run(coro)


@pytest.fixture
def server() -> Iterator[LocalModelServer]:
    """A fresh local model server (no latency, no faults; Retry-After 0.3 s), request bodies kept."""
    with LocalModelServer(retry_after=0.3, hang_s=5.0, keep_bodies=50) as srv:
        yield srv


@pytest.fixture
def ctx(tmp_path: Path) -> AgentContext:
    """An agent context over four small synthetic photos cached as PNG."""
    image_dir = tmp_path / "images"
    photos = [
        store_image(busy_photo(seed), image_dir, source=f"test:{seed}", domain=Domain.OBJECT) for seed in range(4)
    ]
    return AgentContext(image_dir=image_dir, pool=PhotoPool(photos=photos), registry=SetRegistry(), seed=7)
