"""What "fine-grained" means here, in one place: the view a VLM gets of an image without zooming.

A multi-image prompt to Qwen2.5-VL (the IMAgent base model) typically gives each image a budget of
256 visual tokens of 28 x 28 px, i.e. `GLANCE_PIXELS` = 256 * 28 * 28 = 200,704 pixels (about
448 x 448). An image larger than that is downscaled, aspect kept, before the model sees it; a
smaller one is seen at its own size. That downscaled image is the *glance view*:

- a detail is **small** when its box covers at most `MAX_DETAIL_FRACTION` of the image area;
- a change is **visible at a glance** when it covers at least `GLANCE_MIN_FRAC` of the glance view
  (120 px, an 11 x 11 px patch: about a sixth of one visual token). Below that a VLM's tokens mix
  it with its surroundings, and a person comparing the images side by side has to search for it;
- a sample is **fine-grained** when the pixel solver, counting only changes visible at a glance,
  cannot answer it from the glance views (the critic's `glance_solvable` check; the "thumbnail"
  naive solver of the difficulty card runs the very same solver on the same views, so the card
  checks the critic);
- a detail is **findable** when it can be answered at full resolution (the verifier).

So the zoom regime needs images well above 448 px: the default keeps photos at native resolution
(`ValidationConfig.max_side`, 4096) rather than cutting them to 512 px.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

TOKEN_PX = 28  # Qwen2.5-VL: one visual token covers a 28 x 28 px patch (14 px patches, 2 x 2 merged)
GLANCE_TOKENS = 256  # per image in a multi-image prompt
GLANCE_PIXELS = GLANCE_TOKENS * TOKEN_PX * TOKEN_PX  # 200,704
MAX_DETAIL_FRACTION = 0.01  # the deciding detail's box covers at most 1% of the image
GLANCE_MIN_FRAC = 6e-4  # a change seen at a glance covers at least this share of the glance view


def glance_size(width: int, height: int, budget: int = GLANCE_PIXELS) -> tuple[int, int]:
    """(w, h) of the glance view of a width x height image: unchanged if within `budget` pixels."""
    if width * height <= budget:
        return width, height
    s = math.sqrt(budget / (width * height))
    return max(1, round(width * s)), max(1, round(height * s))


def glance(arr: np.ndarray, budget: int = GLANCE_PIXELS) -> np.ndarray:
    """The glance view of an (H, W, 3) uint8 image: antialiased downscale to at most `budget` pixels."""
    h, w = arr.shape[:2]
    gw, gh = glance_size(w, h, budget)
    if (gw, gh) == (w, h):
        return arr
    return np.asarray(Image.fromarray(arr).resize((gw, gh), Image.Resampling.BOX))


def glance_scale(width: int, height: int, budget: int = GLANCE_PIXELS) -> float:
    """Linear factor (<= 1) from full resolution to the glance view."""
    gw, _ = glance_size(width, height, budget)
    return gw / width
