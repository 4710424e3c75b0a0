"""The named colours the offline agents paint with and measure: saturated hues, far apart.

Colours are compared by chromaticity (each RGB pixel divided by its largest channel), so a painted
colour keeps its name under the shading the pairer applies and a measurement does not depend on
brightness. Black, white and greys are deliberately absent: they have no stable chromaticity.
"""

from __future__ import annotations

import re

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (30, 180, 40),
    "cyan": (30, 210, 220),
    "blue": (40, 60, 220),
    "magenta": (220, 40, 200),
}
COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)

# pixels darker than this (max channel) carry too little chromatic information to name
MIN_BRIGHTNESS = 40
# a pixel "has" a named colour when its chromaticity is this close (neighbours are >= 0.35 apart)
MATCH_DISTANCE = 0.2


def chroma(rgb: np.ndarray) -> np.ndarray:
    """Chromaticity of (..., 3) RGB values: each divided by its largest channel (0 for black)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    peak = rgb.max(axis=-1, keepdims=True)
    return np.divide(rgb, peak, out=np.zeros_like(rgb), where=peak > 0)


PALETTE_CHROMA: dict[str, np.ndarray] = {name: chroma(np.array(rgb)) for name, rgb in PALETTE.items()}


def chroma_distance(pixels: np.ndarray, name: str) -> np.ndarray:
    """Distance of each (N, 3) pixel's chromaticity to colour `name`; +inf for pixels too dark to judge."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    d = np.linalg.norm(chroma(pixels) - PALETTE_CHROMA[name], axis=1)
    d[pixels.max(axis=1) < MIN_BRIGHTNESS] = np.inf
    return d


def fraction_matching(pixels: np.ndarray, name: str) -> float:
    """Share of (N, 3) pixels whose colour is `name` (0.0 for no pixels)."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    if len(pixels) == 0:
        return 0.0
    return float((chroma_distance(pixels, name) < MATCH_DISTANCE).mean())


def vote(pixels: np.ndarray, names: list[str]) -> list[float]:
    """Share of (N, 3) pixels nearest to each of `names` (only pixels that match some name count)."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    if len(pixels) == 0 or not names:
        return [0.0] * len(names)
    dist = np.stack([chroma_distance(pixels, n) for n in names], axis=1)  # (N, K)
    best = dist.argmin(axis=1)
    usable = dist.min(axis=1) < 1.5 * MATCH_DISTANCE
    if not usable.any():
        return [0.0] * len(names)
    counts = np.bincount(best[usable], minlength=len(names))
    return [float(c) / float(len(pixels)) for c in counts]


def hue_gap(a: str, b: str) -> float:
    """Chromaticity distance between two named colours (how easy they are to tell apart)."""
    return float(np.linalg.norm(PALETTE_CHROMA[a] - PALETTE_CHROMA[b]))


def find_colour_name(text: str) -> str | None:
    """The palette colour named in `text` (first mention), or None."""
    match = _COLOUR_WORD.search(text)
    return match.group(1).lower() if match else None


_COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOUR_NAMES) + r")\b", re.IGNORECASE)
