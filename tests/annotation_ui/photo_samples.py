"""Review-looking samples over real bundled photos (scikit-image, public domain) for the browser tests.

Each sample shows the same photo twice or three times, one copy with a small region recoloured,
and asks which image differs: the shape of the offline generator's output, with agent verdicts filled in.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from schemas import (
    Box,
    CriticVerdict,
    Domain,
    Provenance,
    Sample,
    TaskType,
    VerifierVerdict,
    image_entry,
)
from tests.factories import png_bytes

PHOTOS = (("chelsea", Domain.NATURE), ("coffee", Domain.OBJECT), ("rocket", Domain.URBAN), ("astronaut", Domain.PEOPLE))


def _photo(name: str, width: int = 420) -> Image.Image:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return img.resize((width, round(img.height * width / img.width)))


def photo_sample(seed: int, *, n_images: int = 2, question: str | None = None) -> Sample:
    """A which-image-differs sample over one bundled photo with a recoloured patch on one copy."""
    rng = random.Random(seed)
    name, domain = PHOTOS[seed % len(PHOTOS)]
    base = _photo(name)
    target = rng.randrange(n_images)
    x1, y1 = rng.uniform(0.15, 0.65), rng.uniform(0.15, 0.65)
    box = (round(x1, 3), round(y1, 3), round(x1 + 0.12, 3), round(y1 + 0.12, 3))
    images, metas = [], []
    for i in range(n_images):
        img = base.copy()
        if i == target:
            arr = np.asarray(img).copy()
            h, w = arr.shape[:2]
            ys, xs = slice(int(box[1] * h), int(box[3] * h)), slice(int(box[0] * w), int(box[2] * w))
            arr[ys, xs] = arr[ys, xs][..., [2, 0, 1]]  # rotate channels: a visible but small colour change
            img = Image.fromarray(arr)
        image, meta = image_entry(
            png_bytes(img),
            width=img.width,
            height=img.height,
            source=f"skimage:{name}",
            phash="0" * 16,
            license="public domain",
            role="variant:recolor" if i == target else "original",
        )
        images.append(image)
        metas.append(meta)
    letters = "ABCDEFGH"
    return Sample(
        images=images,
        image_meta=metas,
        question=question or f"One image has a small region whose colours were changed. Which one? ({name})",
        options=[f"Image {i + 1}" for i in range(n_images)],
        answer=letters[target],
        task_type=TaskType.WHICH_DIFFERS,
        domain=domain,
        rationale=f"Image {target + 1} has a recoloured patch near ({box[0]:.2f}, {box[1]:.2f}).",
        evidence=[Box(image_index=target, bbox=box)],
        provenance=Provenance(
            backend="offline",
            seed=seed,
            prompt_version="test",
            verifier=VerifierVerdict(
                answer=letters[target], agrees=True, method="pixel-diff", confidence=0.97, notes="largest diff region"
            ),
            critic=CriticVerdict(
                verdict="accept" if seed % 3 else "revise",
                reasons=[] if seed % 3 else ["thumbnail_solvable"],
                feedback="" if seed % 3 else "The patch is visible at thumbnail size; shrink it.",
            ),
            revisions=0 if seed % 3 else 1,
        ),
    )
