"""Per-image global changes: every image of a set is its own shot, never a byte copy of another.

A view is a crop of the (possibly edited) photo, resized, with its own exposure, white balance,
gamma and JPEG re-encode: what two shots from a tripod, or one photo saved twice, differ by.
`View` records the map from photo pixels to view pixels, so boxes known in the photo
(the edit) can be given in each image's own coordinates. Plain subtraction of two views lights
up everywhere; the verifier has to register and normalise them first (`agents.offline.register`).
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

Rect = tuple[int, int, int, int]


@dataclass
class View:
    """Where a view comes from: photo crop (x, y, w, h), output size, photometric changes."""

    crop: tuple[int, int, int, int]
    size: tuple[int, int]  # (width, height) of the view
    gain: tuple[float, float, float]  # per-channel (exposure x white balance)
    gamma: float
    jpeg: int  # JPEG quality of the re-encode, 0 for none

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): view pixels per photo pixel."""
        return self.size[0] / self.crop[2], self.size[1] / self.crop[3]

    def box(self, box: Rect) -> tuple[float, float, float, float]:
        """A photo-pixel box in this view's normalised coordinates, clipped to [0, 1]."""
        x, y, w, h = self.crop
        x1, y1, x2, y2 = box
        nb = ((x1 - x) / w, (y1 - y) / h, (x2 - x) / w, (y2 - y) / h)
        c = [round(min(1.0, max(0.0, v)), 4) for v in nb]
        c[2], c[3] = max(c[2], c[0] + 1e-4), max(c[3], c[1] + 1e-4)
        return (c[0], c[1], min(1.0, c[2]), min(1.0, c[3]))

    def contains(self, box: Rect, margin: float = 0.0) -> bool:
        """Whether a photo-pixel box lies inside the crop (shrunk by `margin` of its size)."""
        x, y, w, h = self.crop
        mx, my = margin * w, margin * h
        return box[0] >= x + mx and box[1] >= y + my and box[2] <= x + w - mx and box[3] <= y + h - my

    def record(self) -> dict:
        """JSON-able record for the construction."""
        return asdict(self)


def global_view(rng: random.Random, width: int, height: int, strength: float = 1.0) -> View:
    """A near-full view: a few % cropped per side, +-3% scale, exposure / white balance / gamma, JPEG."""
    m = 0.025 * strength
    left, right = rng.uniform(0, m), rng.uniform(0, m)
    top, bottom = rng.uniform(0, m), rng.uniform(0, m)
    x, y = round(left * width), round(top * height)
    w, h = width - x - round(right * width), height - y - round(bottom * height)
    s = 1.0 + rng.uniform(-0.03, 0.03) * strength
    return View((x, y, w, h), (max(8, round(w * s)), max(8, round(h * s))), *_photometric(rng, strength))


def close_up(
    rng: random.Random, width: int, height: int, side: float, zoom: float, centre: tuple[float, float]
) -> View:
    """A crop of `side` (share of the shorter photo side) around `centre` (photo px), enlarged by `zoom`."""
    cw = ch = max(16, round(side * min(width, height)))
    cw = min(width, round(cw * rng.uniform(1.0, 1.35)))
    x = int(min(max(0, centre[0] - cw / 2), width - cw))
    y = int(min(max(0, centre[1] - ch / 2), height - ch))
    return View((x, y, cw, ch), (round(cw * zoom), round(ch * zoom)), *_photometric(rng, 1.0))


def _photometric(rng: random.Random, strength: float) -> tuple[tuple[float, float, float], float, int]:
    exposure = 1.0 + rng.uniform(-0.1, 0.1) * strength
    wb = [1.0 + rng.uniform(-0.04, 0.04) * strength for _ in range(3)]
    gain = tuple(round(exposure * c, 4) for c in wb)
    gamma = round(1.0 + rng.uniform(-0.1, 0.1) * strength, 4)
    jpeg = rng.choice([0, 80, 85, 90, 95]) if strength > 0 else 0
    return gain, gamma, jpeg  # type: ignore[return-value]


def render(photo: np.ndarray, view: View) -> np.ndarray:
    """The view's pixels: crop, resize, photometric changes, JPEG round trip. (H, W, 3) uint8."""
    x, y, w, h = view.crop
    img = Image.fromarray(np.ascontiguousarray(photo[y : y + h, x : x + w]))
    if view.size != (w, h):
        img = img.resize(view.size, Image.Resampling.BICUBIC if view.size[0] > w else Image.Resampling.LANCZOS)
    arr = np.asarray(img)
    levels = np.arange(256, dtype=np.float32) / 255.0
    out = np.empty_like(arr)
    for c in range(3):  # one lookup table per channel: exposure x white balance, then gamma
        lut = (np.clip(levels * view.gain[c], 0, 1) ** view.gamma * 255 + 0.5).astype(np.uint8)
        out[..., c] = lut[arr[..., c]]
    if view.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=view.jpeg)
        buf.seek(0)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out
