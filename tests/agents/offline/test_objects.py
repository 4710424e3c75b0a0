"""The object index: what natural edits act on, found once per photo."""

from __future__ import annotations

import random

import numpy as np

from agents.offline.objects import build_index, objects_of, size_class


def _discs(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A calm textured ground with a few discs of about 30 px that stand out from it."""
    rng = np.random.default_rng(seed)
    img = np.full((600, 800, 3), (90, 120, 80), np.float32) + rng.normal(0, 3, (600, 800, 3))
    yy, xx = np.mgrid[0:600, 0:800]
    discs = [(150, 120, 15), (400, 300, 14), (650, 450, 16), (250, 480, 13)]
    for cx, cy, r in discs:
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (200, 170, 60)
    return img.clip(0, 255).astype(np.uint8), discs


def test_index_finds_the_objects_that_stand_out_and_nothing_else():
    img, discs = _discs()
    index = build_index(img, 30)
    assert len(index.objects) == len(discs)
    for o in index.objects:
        cx, cy = o.x + o.w / 2, o.y + o.h / 2
        assert min(abs(cx - dx) + abs(cy - dy) for dx, dy, _ in discs) < 6, (o.box, discs)
        # the mask is the disc and a thin band of its ground (a heal must cover the rim), not its box
        assert 28 <= max(o.w, o.h) <= 42 and o.contrast > 60
        assert o.core is not None and not (o.core & ~o.mask).any()
        assert 0.6 < o.mask.mean() < 0.9 and 0.35 < o.core.mean() < o.mask.mean()


def test_pick_respects_size_place_and_what_to_avoid():
    img, _ = _discs()
    index = objects_of(img, 30)
    assert objects_of(img, 31) is index, "one size class, one search per photo"
    rng = random.Random(0)
    left = (0, 0, 300, 600)
    picks = {index.pick(rng, 30, left, []).box for _ in range(20)}
    assert picks and all(b[2] <= 300 for b in picks)
    assert len(picks) == 2, "both objects on the left are drawn, not only the one of more contrast"
    first = next(iter(picks))
    # a box to avoid (with a gap of one object size) leaves only the other object on the left
    assert all(index.pick(rng, 30, left, [first]).box != first for _ in range(10))
    assert index.pick(rng, 90, (0, 0, 800, 600), []) is None, "no object of three times the size"
    assert size_class(30) == size_class(31) != size_class(60)
