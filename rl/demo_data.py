"""A procedural fine-grained multi-image task for the CPU demo, written as a verified shard store.

Each sample shows two (or more) copies of one real photo crop (scikit-image's bundled public-domain
photos) with a yellow-framed square at the same grid cell. Inside the frame, exactly one image has a
fine checkerboard (3 px squares of grey 60/200); the others are flat grey 130 — the checkerboard's
exact mean. Downscaled 6x (the tiny policy's overview: 96 px -> 16 px, box filter) every image is
pixel-identical, so the answer is NOT visible without zooming in; a visual_confirmation of the cell
shows the texture plainly. Chance is 1 / n_images.

Layout written: OUT/shards/{train,test}-*.parquet + OUT/manifests/{train,test}.json, samples with
status "accepted" (the trainer reads only verified data; these are verified by construction).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.shard_store import ShardWriter
from schemas import (
    Box,
    Domain,
    Provenance,
    Review,
    ReviewDecision,
    Sample,
    Status,
    TaskType,
    image_entry,
)

SIZE = 96  # image side in pixels
GRID = 2  # the framed square fills one cell of a GRID x GRID grid (48 px; the tiny policy zooms per cell)
SQUARE = 3  # checkerboard square side
FRAME = 6  # frame width: the inside starts on a 6 px block of the overview, so every block averages exactly
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")
QUESTION = (
    "Each image has a yellow-framed square at the same place. In exactly one image the square is filled "
    "with a fine checkerboard; in the others it is plain grey. Which image has the checkerboard?"
)


def _photos() -> dict[str, np.ndarray]:
    import skimage.data

    return {name: getattr(skimage.data, name)()[..., :3] for name in PHOTOS}


def _background(photo: np.ndarray, rng: random.Random) -> np.ndarray:
    """A random square crop of a photo, resized to SIZE x SIZE: (SIZE, SIZE, 3) uint8."""
    h, w = photo.shape[:2]
    side = rng.randint(min(h, w) // 3, min(h, w))
    y, x = rng.randint(0, h - side), rng.randint(0, w - side)
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.asarray(crop).copy()


def _paint_cell(img: np.ndarray, cell: int, checker: bool) -> None:
    """Draw the yellow frame and fill the inside with checkerboard or its flat mean."""
    cs = SIZE // GRID
    y0, x0 = divmod(cell, GRID)
    y0, x0 = y0 * cs, x0 * cs
    img[y0 : y0 + cs, x0 : x0 + cs] = (255, 220, 0)
    inner = img[y0 + FRAME : y0 + cs - FRAME, x0 + FRAME : x0 + cs - FRAME]
    if checker:
        yy, xx = np.mgrid[y0 + FRAME : y0 + cs - FRAME, x0 + FRAME : x0 + cs - FRAME]
        dark = ((yy // SQUARE + xx // SQUARE) % 2).astype(bool)  # global phase: aligned with 6 px blocks
        inner[:] = np.where(dark[..., None], 60, 200).astype(np.uint8)
    else:
        inner[:] = 130  # (60 + 200) / 2: the checkerboard's exact mean


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_demo_sample(seed: int, n_images: int = 2, photos: dict[str, np.ndarray] | None = None) -> Sample:
    """One demo sample: n_images copies of a photo crop, the checkerboard in exactly one of them."""
    rng = random.Random(seed)
    photos = photos or _photos()
    name = rng.choice(sorted(photos))
    base = _background(photos[name], rng)
    cell = rng.randrange(GRID * GRID)
    target = rng.randrange(n_images)
    images, metas = [], []
    for i in range(n_images):
        arr = base.copy()
        _paint_cell(arr, cell, checker=i == target)
        image, meta = image_entry(
            _png(arr),
            width=SIZE,
            height=SIZE,
            source=f"skimage:{name}#demo{seed}",
            phash="0" * 16,
            license="public-domain (scikit-image data)",
            role="variant:checkerboard" if i == target else "variant:flat",
        )
        images.append(image)
        metas.append(meta)
    cs = 1.0 / GRID
    row, col = divmod(cell, GRID)
    bbox = (col * cs, row * cs, (col + 1) * cs, (row + 1) * cs)
    construction = {"kind": "checker_vs_flat", "cell": cell, "grid": GRID, "target": target, "photo": name}
    return Sample(
        images=images,
        image_meta=metas,
        question=QUESTION,
        options=[f"Image {i + 1}" for i in range(n_images)],
        answer="ABCDEFGH"[target],
        task_type=TaskType.WHICH_DIFFERS,
        domain=Domain.TEXTURE,
        rationale=f"Zooming into the framed square shows the checkerboard only in image {target + 1}.",
        evidence=[Box(image_index=target, bbox=bbox)],
        provenance=Provenance(
            backend="offline", seed=seed, prompt_version="rl-demo-1", construction=json.dumps(construction)
        ),
        status=Status.ACCEPTED,
        review=Review(decisions=[ReviewDecision(annotator="procedural", decision="accept")]),
    )


def write_demo_data(out: str | Path, n_train: int = 800, n_test: int = 200, n_images: int = 2, seed: int = 0) -> Path:
    """Write train/test demo samples as a verified shard store under `out`; returns `out`."""
    out = Path(out)
    photos = _photos()
    for tag, n, offset in (("train", n_train, 0), ("test", n_test, 1_000_000)):
        writer = ShardWriter(out, tag)
        if writer.shards:  # already written: re-running must not duplicate
            continue
        batch: list[Sample] = []
        for i in range(n):
            batch.append(make_demo_sample(seed * 10_000_000 + offset + i, n_images, photos))
            if len(batch) == 500:
                writer.write(batch)
                batch = []
        writer.write(batch)
    return out
