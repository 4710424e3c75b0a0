"""Tiny real samples for tests in every room: images drawn with PIL, no downloads."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from schemas import Box, Domain, Provenance, Sample, TaskType, image_entry


def png_bytes(img: Image.Image) -> bytes:
    """Encode a PIL image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_image(seed: int, size: tuple[int, int] = (64, 48), mark: tuple[float, float] | None = None) -> Image.Image:
    """A deterministic RGB test image; `mark` (normalised x, y) draws a small red square there."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.rectangle([x, y, x + size[0] // 6, y + size[1] // 6], fill=(rng.randrange(256), 0, rng.randrange(256)))
    if mark is not None:
        mx, my = int(mark[0] * size[0]), int(mark[1] * size[1])
        draw.rectangle([mx, my, mx + 3, my + 3], fill=(255, 0, 0))
    return img


def make_sample(
    seed: int = 0,
    n_images: int = 2,
    task_type: TaskType = TaskType.WHICH_DIFFERS,
    domain: Domain = Domain.NATURE,
    source: str | None = None,
    answer_index: int | None = None,
) -> Sample:
    """A valid multiple-choice sample over `n_images` small images: 'which image has the red mark?'."""
    rng = random.Random(seed)
    target = rng.randrange(n_images) if answer_index is None else answer_index
    images, metas = [], []
    for i in range(n_images):
        img = make_image(seed * 100 + (0 if i != target else 1), mark=(0.5, 0.5) if i == target else None)
        image, meta = image_entry(
            png_bytes(img),
            width=img.width,
            height=img.height,
            source=source or f"test:photo{seed}",
            phash="0" * 16,
            license="CC0-1.0",
            role="original" if i != target else "variant:mark",
        )
        images.append(image)
        metas.append(meta)
    options = [f"Image {i + 1}" for i in range(n_images)]
    return Sample(
        images=images,
        image_meta=metas,
        question="Which image has a small red square in the middle?",
        options=options,
        answer="ABCDEFGH"[target],
        task_type=task_type,
        domain=domain,
        rationale=f"Image {target + 1} has the mark.",
        evidence=[Box(image_index=target, bbox=(0.45, 0.45, 0.6, 0.6))],
        provenance=Provenance(backend="offline", seed=seed, prompt_version="test"),
    )
