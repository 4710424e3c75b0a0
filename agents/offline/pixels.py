"""Decoded pixels of cached images, thumbnails, and the difference maps the offline agents measure.

Arrays are cached by the PNG's sha256, so a cache hit is the same pixels the file holds (PNG is
lossless); the pairer seeds the cache with the variants it has just encoded, which saves the
verifier and critic a decode per image. Cached arrays are read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from agents.base import ImageRef
from agents.image_cache import load_image

CACHE_ITEMS = 96  # ~75 MB of 512-px RGB arrays: every pool photo of a small run stays hot


class _LRU:
    """A small thread-safe LRU of read-only arrays."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def put(self, key: tuple, arr: np.ndarray) -> None:
        arr.setflags(write=False)
        with self._lock:
            self._items[key] = arr
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_FULL = _LRU(CACHE_ITEMS)
_THUMBS = _LRU(4 * CACHE_ITEMS)


def remember(ref: ImageRef, arr: np.ndarray) -> None:
    """Seed the cache with the pixels that were just encoded into `ref` (copied, then read-only)."""
    _FULL.put(("full", ref.sha256), np.array(arr, dtype=np.uint8, copy=True))


def pixels(ref: ImageRef) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of a cached image."""
    key = ("full", ref.sha256)
    arr = _FULL.get(key)
    if arr is None:
        arr = np.asarray(load_image(ref), dtype=np.uint8).copy()
        _FULL.put(key, arr)
    return arr


def thumbnail_of(arr: np.ndarray, side: int) -> np.ndarray:
    """`arr` shrunk (antialiased) so that its longer side is `side` px; unchanged if already smaller."""
    h, w = arr.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))


def thumbnail(ref: ImageRef, side: int) -> np.ndarray:
    """The thumbnail of a cached image (longer side `side` px), cached too."""
    key = ("thumb", ref.sha256, side)
    arr = _THUMBS.get(key)
    if arr is None:
        arr = np.array(thumbnail_of(pixels(ref), side), copy=True)
        _THUMBS.put(key, arr)
    return arr


def clear_caches() -> None:
    """Forget every cached array (tests; long-lived processes switching runs)."""
    _FULL.clear()
    _THUMBS.clear()


def diff_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel largest absolute channel difference of two same-size RGB arrays, (H, W) uint8."""
    if a is b:
        return np.zeros(a.shape[:2], dtype=np.uint8)
    # max-min in uint8 is |a-b| without widening to int16; a channel-wise maximum beats .max(axis=2),
    # whose reduction over a length-3 axis is several times slower
    d = np.maximum(a, b) - np.minimum(a, b)
    return np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel bbox (x1, y1, x2, y2; x2/y2 exclusive) of the True pixels of a 2-D mask, or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def normalised_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel bbox as normalised xyxy clipped to [0, 1], with a non-empty extent."""
    x1, y1, x2, y2 = box
    nx1, ny1 = max(0.0, x1 / width), max(0.0, y1 / height)
    nx2, ny2 = min(1.0, x2 / width), min(1.0, y2 / height)
    return (round(nx1, 4), round(ny1, 4), round(max(nx2, nx1 + 1e-4), 4), round(max(ny2, ny1 + 1e-4), 4))
