"""The controlled fine-grained edits the offline pairer makes to a real photo.

Every edit is sized in units of `scale` = (longer side) / (thumbnail side), i.e. one thumbnail
pixel: edits span about one such unit, so a thumbnail averages them away while at full
resolution they change tens of pixels by a large amount. Each function returns the edited copy
and the exact box of the pixels it changed; none touches its input.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from agents.offline.colours import COLOUR_NAMES, PALETTE, fraction_matching
from agents.offline.pixels import bbox_of, diff_map

EDIT_KINDS = ("recolor", "paste_shape", "paste_patch", "remove", "move")
# the drawn kinds on 512-px photos as `mifg generate` flags: ~30 ms per item, for benches and tests of the
# run's mechanics (durability, bad inputs, signals) rather than of the data
FAST_GENERATE_FLAGS = ("--max-side", "512", "-o", 'kinds=["recolor","paste_shape","paste_patch","remove","move"]')
OPT_IN_KINDS = ("fine_texture",)  # made only when asked for (`kinds`): a framed cell, not a photo detail
COLOUR_KINDS = ("recolor", "paste_shape")  # edits whose changed detail has a nameable colour
SHAPES = ("ring", "cross", "line", "dot", "square")

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, x2/y2 exclusive


@dataclass
class Edit:
    """An edited copy of a photo and where it differs from the photo."""

    kind: str
    variant: np.ndarray  # (H, W, 3) uint8
    box: Rect  # bbox of every pixel that changed
    changed_px: int
    record: dict[str, Any] = field(default_factory=dict)  # kind-specific ground truth (colour, shape, ...)


def _size(rng: random.Random, scale: float, lo: float, hi: float, minimum: int = 3) -> int:
    return max(minimum, round(scale * rng.uniform(lo, hi)))


def _place(rng: random.Random, within: Rect, bw: int, bh: int) -> tuple[int, int]:
    """Top-left corner of a bw x bh box drawn uniformly inside `within` (clamped when it does not fit)."""
    x1, y1, x2, y2 = within
    x = x1 + rng.randrange(max(1, x2 - x1 - bw + 1))
    y = y1 + rng.randrange(max(1, y2 - y1 - bh + 1))
    return x, y


def _finish(kind: str, img: np.ndarray, variant: np.ndarray, window: Rect, record: dict[str, Any]) -> Edit | None:
    """Measure what changed inside `window` (the only place the edit wrote to)."""
    x1, y1, x2, y2 = window
    changed = diff_map(img[y1:y2, x1:x2], variant[y1:y2, x1:x2]) > 0
    local = bbox_of(changed)
    if local is None:
        return None
    box = (x1 + local[0], y1 + local[1], x1 + local[2], y1 + local[3])
    return Edit(kind, variant, box, int(changed.sum()), record)


def pick_colour(rng: random.Random, region: np.ndarray) -> str:
    """A palette colour (almost) absent from `region`, so the painted detail is unmistakably new."""
    free = [n for n in COLOUR_NAMES if fraction_matching(region, n) < 0.03]
    return rng.choice(free or list(COLOUR_NAMES))


def recolor(img: np.ndarray, rng: random.Random, scale: float, within: Rect, colour: str | None = None) -> Edit | None:
    """Tint the brightest (or darkest) third of a small square region in a palette colour, keeping its shading."""
    s = _size(rng, scale, 0.7, 1.1)
    x, y = _place(rng, within, s, s)
    region = img[y : y + s, x : x + s].astype(np.float32)
    colour = colour or pick_colour(rng, region)
    lum = region.mean(axis=2)
    if float(lum.std()) < 3.0:  # flat: tint a disc, there is no detail to follow
        yy, xx = np.mgrid[:s, :s]
        mask = (yy - (s - 1) / 2) ** 2 + (xx - (s - 1) / 2) ** 2 <= (s / 2) ** 2
    elif rng.random() < 0.5:  # a third of the region: a thin detail rather than a blob keeps thumbnails blind
        mask = lum >= np.percentile(lum, 67)
    else:
        mask = lum <= np.percentile(lum, 33)
    shade = 0.6 + 0.4 * lum / max(float(lum.max()), 1.0)
    tinted = np.clip(np.array(PALETTE[colour], np.float32) * shade[..., None] + 0.5, 0, 255).astype(np.uint8)
    variant = img.copy()
    patch = variant[y : y + s, x : x + s]
    patch[mask] = tinted[mask]
    return _finish("recolor", img, variant, (x, y, x + s, y + s), {"colour": colour, "size_px": s})


def _shape_mask(shape: str, rng: random.Random, scale: float) -> np.ndarray:
    """A 1-px-stroke (or tiny filled) shape drawn without antialiasing, as a boolean mask."""
    if shape == "dot":
        e = _size(rng, scale, 0.55, 0.75, minimum=4)
    elif shape == "line":
        e = _size(rng, scale, 1.6, 2.6, minimum=5)
    else:
        e = _size(rng, scale, 1.1, 1.8, minimum=5)
    canvas = Image.new("L", (e, e), 0)
    draw = ImageDraw.Draw(canvas)
    last = e - 1
    if shape == "ring":
        draw.ellipse([0, 0, last, last], outline=255, width=1)
    elif shape == "square":
        draw.rectangle([0, 0, last, last], outline=255, width=1)
    elif shape == "cross":
        mid = last // 2
        draw.line([0, mid, last, mid], fill=255, width=1)
        draw.line([mid, 0, mid, last], fill=255, width=1)
    elif shape == "line":
        angle = rng.uniform(0, math.pi)
        c, r = last / 2, last / 2
        dx, dy = r * math.cos(angle), r * math.sin(angle)
        draw.line([c - dx, c - dy, c + dx, c + dy], fill=255, width=1)
    else:  # dot
        draw.ellipse([0, 0, last, last], fill=255)
    return np.asarray(canvas) > 0


def paste_shape(
    img: np.ndarray, rng: random.Random, scale: float, within: Rect, colour: str | None = None, shape: str | None = None
) -> Edit | None:
    """Draw a tiny coloured mark (ring, cross, line, dot or square outline) on the photo."""
    shape = shape or rng.choice(SHAPES)
    mask = _shape_mask(shape, rng, scale)
    e = mask.shape[0]
    x, y = _place(rng, within, e, e)
    colour = colour or pick_colour(rng, img[y : y + e, x : x + e])
    variant = img.copy()
    variant[y : y + e, x : x + e][mask] = PALETTE[colour]
    return _finish("paste_shape", img, variant, (x, y, x + e, y + e), {"colour": colour, "shape": shape, "size_px": e})


def paste_patch(img: np.ndarray, rng: random.Random, scale: float, within: Rect) -> Edit | None:
    """Copy a small patch from elsewhere in the photo over a different-looking spot (an object pasted)."""
    h, w = img.shape[:2]
    s = _size(rng, scale, 0.45, 0.8)
    x, y = _place(rng, within, s, s)
    dest = img[y : y + s, x : x + s].astype(np.int16)
    best, best_gap = None, -1.0
    for _ in range(8):  # a patch that looks like the spot it covers would change nothing visible
        sx, sy = rng.randrange(max(1, w - s)), rng.randrange(max(1, h - s))
        if abs(sx - x) < 2 * s and abs(sy - y) < 2 * s:
            continue
        gap = float(np.abs(img[sy : sy + s, sx : sx + s].astype(np.int16) - dest).mean())
        if gap > best_gap:
            best, best_gap = (sx, sy), gap
        if gap >= 40:
            break
    if best is None:
        return None
    sx, sy = best
    variant = img.copy()
    variant[y : y + s, x : x + s] = img[sy : sy + s, sx : sx + s]
    return _finish("paste_patch", img, variant, (x, y, x + s, y + s), {"size_px": s, "from_px": [sx, sy]})


def _fill(frame: np.ndarray) -> np.ndarray:
    """The interior of `frame` (a region plus its 1-px border) filled smoothly from that border."""
    h, w = frame.shape[0] - 2, frame.shape[1] - 2
    f = frame.astype(np.float32)
    top, bottom, left, right = f[0, 1:-1], f[-1, 1:-1], f[1:-1, 0], f[1:-1, -1]  # (W,3) (W,3) (H,3) (H,3)
    u = (np.arange(w, dtype=np.float32) + 1) / (w + 1)  # (W,)
    v = (np.arange(h, dtype=np.float32) + 1) / (h + 1)  # (H,)
    horiz = (1 - u)[None, :, None] * left[:, None, :] + u[None, :, None] * right[:, None, :]
    vert = (1 - v)[:, None, None] * top[None, :, :] + v[:, None, None] * bottom[None, :, :]
    return np.clip((horiz + vert) / 2 + 0.5, 0, 255).astype(np.uint8)


def _visible_change(before: np.ndarray, after: np.ndarray) -> int:
    """Pixels an edit changes clearly (largest channel by more than 40): what the verifier will see."""
    return int((diff_map(before, after) > 40).sum())


def _frame_area(img: np.ndarray, within: Rect) -> Rect:
    """`within`, kept 1 px off the image border so every region has a frame to fill from."""
    x1, y1, x2, y2 = within
    return (max(x1, 1), max(y1, 1), min(x2, img.shape[1] - 1), min(y2, img.shape[0] - 1))


def remove(img: np.ndarray, rng: random.Random, scale: float, within: Rect, tries: int = 16) -> Edit | None:
    """Erase a small detailed region by filling it smoothly from its surroundings."""
    s = _size(rng, scale, 0.9, 1.5)
    area = _frame_area(img, within)
    best, best_score = None, -1
    for _ in range(tries):  # of a few spots, erase the one holding the most detail
        x, y = _place(rng, area, s, s)
        filled = _fill(img[y - 1 : y + s + 1, x - 1 : x + s + 1])
        score = _visible_change(img[y : y + s, x : x + s], filled)
        if score > best_score:
            best, best_score = (x, y, filled), score
    x, y, filled = best
    variant = img.copy()
    variant[y : y + s, x : x + s] = filled
    return _finish("remove", img, variant, (x, y, x + s, y + s), {"size_px": s})


def move(img: np.ndarray, rng: random.Random, scale: float, within: Rect, tries: int = 6) -> Edit | None:
    """Shift a small detailed patch by about its own size, filling the place it left."""
    s = _size(rng, scale, 0.5, 0.85)
    dist = max(2.0, s * rng.uniform(0.7, 1.3))
    angle = rng.uniform(0, 2 * math.pi)
    dx, dy = round(dist * math.cos(angle)), round(dist * math.sin(angle))
    bw, bh = s + abs(dx), s + abs(dy)
    area = _frame_area(img, within)
    best, best_score = None, -1
    for _ in range(tries):  # of a few spots, move the one whose shift shows most
        ux, uy = _place(rng, area, bw, bh)
        local = img[uy - 1 : uy + bh + 1, ux - 1 : ux + bw + 1]  # union box plus its frame
        sx, sy = 1 + (0 if dx >= 0 else -dx), 1 + (0 if dy >= 0 else -dy)  # source, local coordinates
        out = local.copy()
        out[sy : sy + s, sx : sx + s] = _fill(local[sy - 1 : sy + s + 1, sx - 1 : sx + s + 1])
        out[sy + dy : sy + dy + s, sx + dx : sx + dx + s] = local[sy : sy + s, sx : sx + s]
        score = _visible_change(local, out)
        if score > best_score:
            best, best_score = (ux, uy, sx, sy, out), score
    ux, uy, sx, sy, out = best
    variant = img.copy()
    variant[uy - 1 : uy + bh + 1, ux - 1 : ux + bw + 1] = out
    fx, fy = ux - 1 + sx, uy - 1 + sy
    record = {"size_px": s, "from_px": [fx, fy], "to_px": [fx + dx, fy + dy]}
    return _finish("move", img, variant, (ux, uy, ux + bw, uy + bh), record)


TEXTURE_GRID = 2  # fine_texture: the framed square fills one cell of a 2x2 grid (the tiny policy's zoom cells)
FRAME_RGB = (255, 220, 0)
CHECKER_DARK, CHECKER_LIGHT = 60, 200  # flat cells hold their exact mean, 130


def texture_cell(img: np.ndarray, cell: int, block: int, checker: bool) -> tuple[np.ndarray, Rect]:
    """A copy of square `img` with a yellow-framed cell filled with a checkerboard or with its flat mean.

    `block` is the side of one thumbnail pixel in image pixels (image side / thumbnail side, even).
    The frame is one block wide and the checkerboard's squares are half a block, in phase with the
    block grid, so a box-filter downscale to the thumbnail averages every block to exactly the mean:
    checkerboard and flat cells give identical thumbnails, and only a zoom shows which is which.
    Returns the copy and the pixel box of the filled inside.
    """
    side = img.shape[0]
    cs = side // TEXTURE_GRID
    row, col = divmod(cell, TEXTURE_GRID)
    y0, x0 = row * cs, col * cs
    out = img.copy()
    out[y0 : y0 + cs, x0 : x0 + cs] = FRAME_RGB
    y1, x1, y2, x2 = y0 + block, x0 + block, y0 + cs - block, x0 + cs - block
    if checker:
        yy, xx = np.mgrid[y1:y2, x1:x2]
        sq = block // 2
        dark = ((yy // sq + xx // sq) % 2).astype(bool)  # global phase: aligned with the block grid
        out[y1:y2, x1:x2] = np.where(dark[..., None], CHECKER_DARK, CHECKER_LIGHT).astype(np.uint8)
    else:
        out[y1:y2, x1:x2] = (CHECKER_DARK + CHECKER_LIGHT) // 2
    return out, (x1, y1, x2, y2)


def make_edit(kind: str, img: np.ndarray, rng: random.Random, scale: float, within: Rect) -> Edit | None:
    """Apply edit `kind` inside `within`; None when it happened to change nothing."""
    if kind == "recolor":
        return recolor(img, rng, scale, within)
    if kind == "paste_shape":
        return paste_shape(img, rng, scale, within)
    if kind == "paste_patch":
        return paste_patch(img, rng, scale, within)
    if kind == "remove":
        return remove(img, rng, scale, within)
    if kind == "move":
        return move(img, rng, scale, within)
    raise ValueError(f"unknown edit kind {kind!r}; expected one of {', '.join(EDIT_KINDS)}")
