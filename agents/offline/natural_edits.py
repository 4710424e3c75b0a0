"""Edits that keep a photo's own statistics: the default edits of the offline pairer.

Edits act on *objects* (`agents.offline.objects`): segments of the photo that stand out from the
ring around them - an island, a coin, a leaf, a window, a cell. Every edit reuses the photo
itself, so it passes for a real variation:
- `added`: an object cloned onto another spot whose surroundings look like its own (a clone stamp),
  well away from its original and not among things of another colour;
- `removed`: an object covered with background of the same texture from nearby (a healing brush);
- `recoloured`: an object given the colour of another object of the photo, shading kept;
- `moved`: an object lifted off (its place healed) and set down a little further on.
Only objects on plain ground all around are lifted off, cloned or healed over, and every heal and
clone is checked from the pixels before it is kept: the healed place has its ground's colour and
grain, no step at its edge and nothing of the object left; a clone keeps its contrast. A blind audit
called three in four of the earlier, unchecked Poisson-blended edits made (glows, smears, halos).
Each returns the edited copy and the exact box it changed, and records which object of the photo it
acted on (`object_px`: its top-left corner; the critic caps how often one object is used); none
touches its input. `s` is the side in pixels of the object's box, chosen by the caller from the
image area (see `agents.offline.view`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab

from agents.offline.objects import CROWD_MAX, Obj, ObjectIndex, inside, objects_of, overlaps, ring
from agents.offline.pixels import bbox_of, diff_map
from agents.offline.register import TAU, edge_aware, smooth

NATURAL_KINDS = ("added", "removed", "recoloured", "moved")
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive)
VISIBLE_DELTA = 30  # a pixel counts as visibly changed when a channel moved by more than this
MIN_VISIBLE_SHARE = 0.25  # ... and at least this share of the object's footprint must change so
CLONE_MAX_COST = 10.0  # a clone's new ground matches its own ring this closely (see _similar_spot)
RECOLOUR_DE = (18.0, 60.0)  # a recolour moves the object's mean colour this far (CIELAB delta E) ...
RECOLOUR_MAX_DL = 25.0  # ... in hue and chroma mostly: its lightness (L*) moves at most this much
RECOLOUR_MIN_SHIFT = 40.0  # ... and some channel moves at least this much (what the verifier compares)
KIN_GROUND_DE = 25.0  # ... taken from an object on ground this close to its own (CIELAB delta E)
MIN_DELTA_E = 22.0  # an edit's most changed 30% of px move at least this far (CIELAB delta E): else unfindable
# a clone lands at least this many of its sizes from its original: the same island twice side by side was
# what a blind audit called pasted at once (a copy of Jeju just east of Jeju, of Bornholm beside Bornholm)
CLONE_MIN_AWAY = 5.0
# ... and among its like: where other things lie around the landing spot (this many sizes out), at least
# KIN_SHARE of them have about the clone's colour (CIELAB delta E); a green island set down among the
# white land of the Arctic was called pasted. Open ground around the spot is fine (an island at sea).
KIN_REACH = 6.0
KIN_FAR = 18.0  # ... and where nothing lies that near (a recolour), this many sizes out
RECOLOUR_BUSY = 0.002  # a recolour heeds even a few islets around it (a clone: KIN_BUSY)
KIN_DE = 25.0
KIN_SHARE = 0.25
KIN_BUSY = 0.03  # ... "other things": at least this share of the surroundings is not the spot's ground
# ... and of their grain: the clone's fine texture (mean gradient of grey) within these shares of its kin's
# around the spot; a flat green island set down among islands shaded by their relief was called pasted
KIN_GRAIN = (0.8, 2.0)
GRAIN_INSET = 3  # grain is read this many px inside an outline (a 1 px blur's gradient reaches ~3 px)
KIN_GRAIN_FLOOR = 1.5  # grey levels per px: below this, on both sides, texture is too faint to compare
SPOT_TRIES = 60  # random spots tried for a clone, a heal or a move
GROUND_REACH = 0.5  # an object's ground: the band out to this share of its side around its mask
FEATHER = 0.06  # a pasted patch fades in over this share of its side (inside the mask's rim of ground)
HEAL_MEAN_TOL = 6.0  # a healed place keeps the mean colour of its ground to this (largest channel) ...
HEAL_GRAIN = (0.6, 1.5)  # ... and its grain (grey std) within these shares of the ground's
SEAM_TOL = 3.0  # ... and no step to the ground just beyond its edge larger than this (grey levels)


@dataclass
class Edit:
    """An edited copy of a photo and where it differs."""

    kind: str
    variant: np.ndarray  # (H, W, 3) uint8
    box: Rect
    changed_px: int
    record: dict[str, Any] = field(default_factory=dict)


def colourfulness(a: np.ndarray) -> float:
    """Mean HSV saturation (0..1) of a subsample of the photo; ~0 for greyscale photos."""
    s = a[::7, ::7].reshape(-1, 3).astype(np.float32)
    mx, mn = s.max(axis=1), s.min(axis=1)
    return float(np.where(mx > 0, (mx - mn) / np.maximum(mx, 1), 0).mean())


def _surround_stats(img: np.ndarray, x: int, y: int, mask: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """Mean colour and texture (std of grey) of the ring a mask would have when placed at (x, y)."""
    h, w = mask.shape
    pad = width + 1
    y0, x0 = max(0, y - pad), max(0, x - pad)
    big = np.zeros((h + 2 * pad, w + 2 * pad), bool)
    big[pad : pad + h, pad : pad + w] = mask
    band = ring(big, width)
    win = img[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]].astype(np.float32)
    band = band[: win.shape[0], : win.shape[1]]
    px = win[band]
    return px.mean(0), float(px.mean(1).std())


def _similar_spot(
    img: np.ndarray,
    rng: random.Random,
    obj: Obj,
    within: Rect,
    avoid: list[Rect],
    near: float | None,
    max_cost: float = 18.0,
    src: np.ndarray | None = None,
) -> tuple[int, int] | None:
    """A top-left corner for obj's mask whose surroundings look like obj's own ring (colour and texture).

    The spot's area itself should look like the ring too (background to paste onto or to heal from).
    `near`: search within this many object sizes (None: anywhere in `within`); `max_cost`: how far the
    best spot's colour and texture may be from the ring's (grey levels); `src`: the image `obj` lies in
    when that is not `img` (a mirrored copy: then `avoid` must hold the object's own place in `img`).
    """
    width = max(2, max(obj.w, obj.h) // 6)
    ref_c, ref_t = _surround_stats(img if src is None else src, obj.x, obj.y, obj.mask, width)
    taken = [*avoid, obj.box] if src is None else list(avoid)
    size = max(obj.w, obj.h)
    best, best_cost = None, float("inf")
    x1, y1, x2, y2 = within
    for _ in range(SPOT_TRIES):
        if near is None:
            if x2 - x1 - obj.w - 2 <= 1 or y2 - y1 - obj.h - 2 <= 1:
                return None
            x, y = rng.randrange(x1 + 1, x2 - obj.w - 1), rng.randrange(y1 + 1, y2 - obj.h - 1)
        else:
            ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(1.6, near) * size
            x, y = round(obj.x + dist * math.cos(ang)), round(obj.y + dist * math.sin(ang))
        box = (x, y, x + obj.w, y + obj.h)
        if not inside(box, within) or overlaps(box, taken, size // 2):
            continue
        inner = img[y : y + obj.h, x : x + obj.w].astype(np.float32)[obj.mask]
        c, t = _surround_stats(img, x, y, obj.mask, width)
        # the spot's surroundings match the object's ring, and the spot itself is background (no object)
        cost = (
            float(np.abs(c - ref_c).max())
            + 0.5 * abs(t - ref_t)
            + float(np.abs(inner.mean(0) - ref_c).max())
            + 0.5 * abs(float(inner.mean(1).std()) - ref_t)
        )
        if cost < best_cost:
            best, best_cost = (x, y), cost
    if best is None or best_cost > max_cost:
        return None
    return best


def _window(mask: np.ndarray, x: int, y: int, pad: int, shape: tuple[int, ...]) -> tuple[slice, slice] | None:
    """The slices of the mask's box at (x, y) grown by `pad` px, or None where that leaves the image."""
    h, w = mask.shape
    if x - pad < 0 or y - pad < 0 or x + w + pad > shape[1] or y + h + pad > shape[0]:
        return None
    return slice(y - pad, y + h + pad), slice(x - pad, x + w + pad)


def _ground(
    img: np.ndarray, x: int, y: int, mask: np.ndarray, reach: float | None = None, start: float = 0.0
) -> tuple[np.ndarray, float] | None:
    """Mean colour and grey std of the ground around a mask placed at (x, y).

    The band from `start` to `reach` px beyond the mask (default: out to GROUND_REACH of its side).
    """
    pad = math.ceil(reach) if reach is not None else max(2, round(GROUND_REACH * max(mask.shape)))
    sl = _window(mask, x, y, pad, img.shape)
    if sl is None:
        return None
    big = np.pad(mask, pad)
    far = ndimage.distance_transform_edt(~big)
    px = img[sl].astype(np.float32)[(far > start) & (far <= pad)]
    if len(px) < 4:
        return None
    return px.mean(0), float(px.mean(1).std())


def _soft(mask: np.ndarray) -> float:
    """The width (px) over which a pasted patch fades into the ground beyond its mask."""
    return max(0.8, FEATHER * max(mask.shape))


def _paste(img: np.ndarray, src: np.ndarray, sx: int, sy: int, dx: int, dy: int, mask: np.ndarray) -> np.ndarray | None:
    """A copy of `img` with src's masked pixels at (sx, sy) laid onto (dx, dy), as a clone stamp does.

    The patch is shifted by the difference of the two grounds' mean colours, covers the whole mask and
    fades out over a few px of ground beyond it (objects are isolated: only ground lies there). An
    earlier Poisson blend carried any mismatch of the mask's border into the whole patch (healed spots
    glowed, clones sat in a halo); a fade inside the mask left the object's outline behind. None where
    the mask does not fit.
    """
    soft = _soft(mask)
    pad = math.ceil(3 * soft) + 1
    # the shift that makes the patch meet the ground right where it fades in: a wide band's mean is off
    # wherever the ground shades or an island's pale shallows linger (a lighter oval where one was)
    near = 2 * soft + 2
    gs, gd = _ground(src, sx, sy, mask, near), _ground(img, dx, dy, mask, near)
    ws, wd = _window(mask, sx, sy, pad, src.shape), _window(mask, dx, dy, pad, img.shape)
    if gs is None or gd is None or ws is None or wd is None:
        return None
    big = np.pad(mask, pad)
    alpha = np.clip(1.0 - ndimage.distance_transform_edt(~big) / (2 * soft), 0.0, 1.0)
    alpha = ndimage.gaussian_filter(alpha.astype(np.float32), 0.5 * soft)
    alpha = np.maximum(alpha, big)[..., None]
    patch = src[ws].astype(np.float32) + (gd[0] - gs[0])
    out = img.copy()
    base = img[wd].astype(np.float32)
    out[wd] = (alpha * patch + (1 - alpha) * base + 0.5).clip(0, 255).astype(np.uint8)
    return out


def _healed_like_ground(img: np.ndarray, variant: np.ndarray, obj: Obj) -> bool:
    """Whether the object's healed place looks like the ground around it: same colour, same grain, nothing left.

    What a blind audit called a smudge: a spot lighter or darker than its ground (a glow), smoother
    than it (a smear), or with a piece of the object still in it.
    """
    g = _ground(img, obj.x, obj.y, obj.mask)
    if g is None:
        return False
    mean, grain = g
    px = variant[obj.y : obj.y + obj.h, obj.x : obj.x + obj.w].astype(np.float32)[obj.mask]
    if float(np.abs(px.mean(0) - mean).max()) > HEAL_MEAN_TOL:
        return False
    spread = float(px.mean(1).std())
    if not (HEAL_GRAIN[0] * grain - 1.5 <= spread <= HEAL_GRAIN[1] * grain + 2.0):
        return False
    left = np.abs(px - mean).max(1) > 0.5 * max(obj.contrast, 20.0)
    if float(left.mean()) > 0.04:
        return False
    # no step between the healed place and the ground just beyond its fade: on plain ground a step of a
    # few grey levels along a closed curve is what a person sees as a patch, whatever the wider mean
    soft = _soft(obj.mask)
    beyond = _ground(variant, obj.x, obj.y, obj.mask, 2 * soft + 5, 2 * soft + 1)
    return beyond is not None and float(np.abs(px.mean(0) - beyond[0]).max()) <= SEAM_TOL


def _clone_holds(img: np.ndarray, variant: np.ndarray, obj: Obj, to: tuple[int, int], src: np.ndarray) -> bool:
    """Whether a cloned object stands out from its new ground as it does from its own (no washed-out copy).

    `obj` lies in `src` (the photo or its mirror image), its clone at `to` in `variant`.
    """
    gs, gd = _ground(src, obj.x, obj.y, obj.mask), _ground(img, to[0], to[1], obj.mask)
    if gs is None or gd is None:
        return False
    body = obj.body
    own = src[obj.y : obj.y + obj.h, obj.x : obj.x + obj.w].astype(np.float32)[body].mean(0) - gs[0]
    new = variant[to[1] : to[1] + obj.h, to[0] : to[0] + obj.w].astype(np.float32)[body].mean(0) - gd[0]
    return float(np.abs(new - own).max()) <= 0.25 * obj.contrast + 4.0


def _finish(
    kind: str, img: np.ndarray, variant: np.ndarray, box: Rect, obj: Obj, footprint: int, record: dict
) -> Edit | None:
    x1, y1, x2, y2 = (max(0, box[0] - 4), max(0, box[1] - 4), box[2] + 4, box[3] + 4)
    d = diff_map(img[y1:y2, x1:x2], variant[y1:y2, x1:x2])
    local = bbox_of(d > VISIBLE_DELTA // 3)
    if local is None or int((d > VISIBLE_DELTA).sum()) < MIN_VISIBLE_SHARE * max(1, footprint):
        return None  # too faint to find even when searching
    # it must also survive the light blur and edge damping the verifier compares through (with a margin
    # for the JPEG and resampling of each shot): else it is a change nobody could find
    sa, sb = smooth(img[y1:y2, x1:x2]), smooth(variant[y1:y2, x1:x2])
    r, _ = edge_aware(sa, sb, np.ones(sa.shape[:2], bool))
    if int((r > 1.15 * TAU).sum()) < max(12, 0.15 * footprint):
        return None
    # and a person must see it: the most changed 30% of the object's footprint moves far in CIELAB
    if delta_e_top(img[y1:y2, x1:x2], variant[y1:y2, x1:x2], round(0.3 * footprint)) < MIN_DELTA_E:
        return None
    tight = (x1 + local[0], y1 + local[1], x1 + local[2], y1 + local[3])
    record = {**record, "object_px": [obj.x, obj.y]}  # which object of the photo (the critic caps its reuse)
    return Edit(kind, variant, tight, int((d > VISIBLE_DELTA // 3).sum()), record)


def _grain(grey: np.ndarray, where: np.ndarray) -> float:
    """Fine texture at the `where` px of a grey image: mean gradient magnitude (grey levels per px, 1 px blur)."""
    return float(ndimage.gaussian_gradient_magnitude(grey, 1.0)[where].mean())


def _grey(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).mean(-1)


def _clone_grain(src: np.ndarray, obj: Obj) -> float:
    """The object's own fine texture, its outline left out.

    0 for an object too thin to have any GRAIN_INSET px inside: at 7 px across, no relief shows (a
    25 x 14 px green islet among grey, relief-shaded ones was called pasted, twice).
    """
    inner = ndimage.binary_erosion(obj.body, iterations=GRAIN_INSET)
    if int(inner.sum()) < 12:
        return 0.0
    return _grain(_grey(src[obj.y : obj.y + obj.h, obj.x : obj.x + obj.w]), inner)


def _among_kin(img: np.ndarray, obj: Obj, to: tuple[int, int], src: np.ndarray) -> bool:
    """Whether what lies around `to` (KIN_REACH sizes out) is open ground or, in good part, like the clone.

    Like it: of its colour (KIN_SHARE within KIN_DE) and of its grain (KIN_GRAIN). `obj` lies in `src`
    (the photo or its mirror image).
    """
    kin = _kin_around(img, obj, to, _lab(_core_mean(src, obj)), GRAIN_INSET)
    return kin is None or (kin[0] >= KIN_SHARE and _grain_fits(_clone_grain(src, obj), kin[1]))


def _colour_fits_around(img: np.ndarray, obj: Obj, colour: np.ndarray) -> bool:
    """Whether things around `obj` have about `colour` (KIN_SHARE within KIN_DE), or nothing lies around it.

    Nothing within KIN_REACH sizes: KIN_FAR sizes are looked at, the way a person takes an island's colour
    from the nearest land. A white Arctic islet turned the orange of land far south was called painted.
    """
    for reach in (KIN_REACH, KIN_FAR):
        kin = _kin_around(img, obj, (obj.x, obj.y), _lab(colour), None, reach, RECOLOUR_BUSY)
        if kin is not None:
            return kin[0] >= KIN_SHARE
    return True


def _grain_fits(own: float, kin: float | None) -> bool:
    if kin is None or max(own, kin) < KIN_GRAIN_FLOOR:
        return True
    return KIN_GRAIN[0] <= own / max(kin, 1e-6) <= KIN_GRAIN[1]


def _kin_around(
    img: np.ndarray,
    obj: Obj,
    to: tuple[int, int],
    own: np.ndarray,
    inset: int | None,
    reach_sizes: float = KIN_REACH,
    busy: float = KIN_BUSY,
) -> tuple[float, float | None] | None:
    """Around obj's mask placed at `to`: the share of other things within KIN_DE of colour `own` (CIELAB),
    and those things' grain read `inset` px inside their outlines (None: not asked for, or too little of
    them). None: open ground all around (less than `busy` of other things).
    """
    g = _ground(img, to[0], to[1], obj.mask)
    if g is None:
        return (0.0, None)
    H, W = img.shape[:2]
    size = max(obj.w, obj.h)
    reach = round(reach_sizes * size)
    x1, y1 = max(0, to[0] - reach), max(0, to[1] - reach)
    x2, y2 = min(W, to[0] + obj.w + reach), min(H, to[1] + obj.h + reach)
    step = max(1, size // 8)  # a few px per object side is plenty to see what colours lie around
    win = img[y1:y2:step, x1:x2:step].astype(np.float32)
    ys, xs = np.mgrid[y1:y2:step, x1:x2:step]
    spot = (xs >= to[0]) & (xs < to[0] + obj.w) & (ys >= to[1]) & (ys < to[1] + obj.h)
    other = (np.abs(win - g[0]).max(-1) > 0.5 * obj.contrast) & ~spot
    if float(other.mean()) < busy:
        return None
    de = np.full(other.shape, np.inf, np.float32)
    de[other] = np.sqrt(((rgb2lab(win[other][None] / 255.0)[0] - own) ** 2).sum(-1))
    share = float((de <= KIN_DE).sum() / other.sum())
    if share < KIN_SHARE or inset is None:
        return share, None
    # the grain at full resolution, read as the clone's is: `inset` px inside the outlines
    full = img[y1:y2, x1:x2].astype(np.float32)
    things = np.abs(full - g[0]).max(-1) > 0.5 * obj.contrast
    things[to[1] - y1 : to[1] - y1 + obj.h, to[0] - x1 : to[0] - x1 + obj.w] = False
    kin = np.zeros_like(things)
    kin[things] = np.sqrt(((rgb2lab(full[things][None] / 255.0)[0] - own) ** 2).sum(-1)) <= KIN_DE
    inner = ndimage.binary_erosion(kin, iterations=inset)
    if int(inner.sum()) < 12:
        return share, None
    return share, _grain(_grey(full), inner)


def mirrored(img: np.ndarray, obj: Obj) -> tuple[np.ndarray, Obj]:
    """The photo mirrored left to right, and `obj` in it (its place, mask and core mirrored too)."""
    flip = lambda m: None if m is None else m[:, ::-1]  # noqa: E731
    x = img.shape[1] - obj.x - obj.w
    return img[:, ::-1], Obj(x, obj.y, flip(obj.mask), obj.contrast, flip(obj.core), obj.isolated, obj.edge)


def added(
    img: np.ndarray, rng: random.Random, s: int, within: Rect, avoid: list[Rect], idx: ObjectIndex
) -> Edit | None:
    """Clone an object of the photo, mirrored, onto a background spot that looks like its own surroundings.

    Mirrored left to right: two identical islands in one photo is a copy a person recognises (the blind
    audit spotted a second Jeju), while up stays up (a car or a tree is not turned on its side) and
    light from above stays above.
    """
    H, W = img.shape[:2]
    obj = idx.pick(rng, s, (4, 4, W - 4, H - 4), avoid, isolated=True)
    if obj is None:
        return None
    src, flipped = mirrored(img, obj)
    # stricter than a heal: a clone on a slightly different ground is what made clones look pasted
    g = round(CLONE_MIN_AWAY * max(obj.w, obj.h))
    away = [*avoid, (obj.x - g, obj.y - g, obj.x + obj.w + g, obj.y + obj.h + g)]
    spot = _similar_spot(img, rng, flipped, within, away, None, max_cost=CLONE_MAX_COST, src=src)
    if spot is None:
        return None
    variant = _paste(img, src, flipped.x, flipped.y, spot[0], spot[1], flipped.mask)
    if variant is None or not _clone_holds(img, variant, flipped, spot, src) or not _among_kin(img, flipped, spot, src):
        return None
    box = (spot[0], spot[1], spot[0] + obj.w, spot[1] + obj.h)
    record = {"from_px": [obj.x, obj.y], "to_px": list(spot), "mirrored": True}
    return _finish("added", img, variant, box, obj, int(obj.mask.sum()), record)


def _background_for(img: np.ndarray, rng: random.Random, obj: Obj) -> tuple[int, int] | None:
    """A nearby spot of plain background like the object's surroundings, to heal the object's place from."""
    h, w = img.shape[:2]
    return _similar_spot(img, rng, obj, (4, 4, w - 4, h - 4), [], 4.0)


def removed(
    img: np.ndarray, rng: random.Random, s: int, within: Rect, avoid: list[Rect], idx: ObjectIndex
) -> Edit | None:
    """Cover an object with background from nearby whose texture matches the object's surroundings."""
    obj = idx.pick(rng, s, within, avoid, isolated=True)
    bg = None if obj is None else _background_for(img, rng, obj)
    if bg is None:
        return None
    variant = _paste(img, img, bg[0], bg[1], obj.x, obj.y, obj.mask)
    if variant is None or not _healed_like_ground(img, variant, obj):
        return None
    return _finish("removed", img, variant, obj.box, obj, int(obj.mask.sum()), {"from_px": [bg[0], bg[1]]})


def moved(
    img: np.ndarray, rng: random.Random, s: int, within: Rect, avoid: list[Rect], idx: ObjectIndex
) -> Edit | None:
    """Lift an object off (healing its place) and set it down 1.6-3 of its sizes away."""
    obj = idx.pick(rng, s, within, avoid, isolated=True)
    if obj is None:
        return None
    bg = _background_for(img, rng, obj)
    to = _similar_spot(img, rng, obj, within, avoid, 3.0)
    if bg is None or to is None:
        return None
    healed = _paste(img, img, bg[0], bg[1], obj.x, obj.y, obj.mask)
    if healed is None or not _healed_like_ground(img, healed, obj):
        return None
    variant = _paste(healed, img, obj.x, obj.y, to[0], to[1], obj.mask)
    if variant is None or not _clone_holds(img, variant, obj, to, img):
        return None
    box = (min(obj.x, to[0]), min(obj.y, to[1]), max(obj.x, to[0]) + obj.w, max(obj.y, to[1]) + obj.h)
    record = {"from_px": [obj.x, obj.y], "to_px": list(to), "size_px": [obj.w, obj.h]}
    return _finish("moved", img, variant, box, obj, 2 * int(obj.mask.sum()), record)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of one RGB colour (0-255)."""
    return rgb2lab(np.asarray(rgb, np.float32).reshape(1, 1, 3) / 255.0).reshape(3)


def delta_e_top(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean CIELAB delta E of the `k` most changed px of two same-size crops: how visible a change is.

    Grey-level thresholds miss what a person misses: a shift of 30 in one channel of a dark navy sea
    is a change nobody finds (a blind audit could not find such recolours on the night-blue tiles).
    """
    de = np.sqrt(((rgb2lab(a) - rgb2lab(b)) ** 2).sum(-1)).ravel()
    k = max(1, min(k, de.size))
    return float(np.partition(de, de.size - k)[-k:].mean())


def _core_mean(img: np.ndarray, o: Obj) -> np.ndarray:
    return img[o.y : o.y + o.h, o.x : o.x + o.w][o.body].astype(np.float32).mean(0)


def _kin(img: np.ndarray, objects: list[Obj]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Per object: its colour, that colour in CIELAB, its ground's CIELAB and its lightness over the ground."""
    out = []
    for o in objects:
        colour = _core_mean(img, o)
        g = _ground(img, o.x, o.y, o.mask)
        ground = _lab(g[0]) if g is not None else np.full(3, np.nan, np.float32)
        lab = _lab(colour)
        out.append((colour, lab, ground, float(lab[0] - ground[0])))
    return out


def recoloured(
    img: np.ndarray, rng: random.Random, s: int, within: Rect, avoid: list[Rect], idx: ObjectIndex
) -> Edit | None:
    """Give an object the colour of a kindred object of the same photo, its shading kept.

    The new colour is one the scene already has, on an object of the same kind: on the same ground,
    lighter (or darker) than it as the object is, about as light as the object and clearly another
    hue (a green island turned brown, a blue galaxy turned red). An earlier hue rotation made blue
    sea yellow; colours taken from any object filled an island with the sea's blue and painted a
    shoal tan, which a blind audit called synthetic.
    """
    if colourfulness(img) < 0.1:
        return None  # a greyscale (or nearly) photo: no colour change would look natural
    kin = _kin(img, idx.objects)  # once: every try compares against the same
    by_id = {id(o): k for o, k in zip(idx.objects, kin, strict=True)}
    for _ in range(8):
        obj = idx.pick(rng, s, within, avoid)
        if obj is None:
            return None
        own, own_lab, own_ground, own_lift = by_id[id(obj)]
        donors = [
            colour
            for colour, lab, ground, lift in kin
            if RECOLOUR_DE[0] <= float(np.linalg.norm(lab - own_lab)) <= RECOLOUR_DE[1]
            and abs(float(lab[0] - own_lab[0])) <= RECOLOUR_MAX_DL
            and float(np.linalg.norm(ground - own_ground)) <= KIN_GROUND_DE
            and lift * own_lift > 0
            and float(np.abs(colour - own).max()) >= RECOLOUR_MIN_SHIFT
            # and it still stands out from the object's ground: an island filled with the colour of the
            # shallows around it looks like a hole in the map
            and float(np.linalg.norm(lab - own_ground)) >= 0.7 * float(np.linalg.norm(own_lab - own_ground))
        ]
        rng.shuffle(donors)
        # the colour of things around it, as with clones (checked last: it reads a window of the photo)
        target = next((c for c in donors if _colour_fits_around(img, obj, c)), None)
        if target is None:
            continue
        win = img[obj.y : obj.y + obj.h, obj.x : obj.x + obj.w].astype(np.float32)
        shifted = (win + (target - own)).clip(0, 255)
        # the object and its first px of rim (a rim left in the old colour read as an outline); a colour
        # matte over the whole grown mask recoloured bits of ground too and made halos
        near = ndimage.binary_dilation(obj.body, iterations=1) & obj.mask
        alpha = ndimage.gaussian_filter(near.astype(np.float32), 0.8)[..., None]
        out = (alpha * shifted + (1 - alpha) * win + 0.5).clip(0, 255).astype(np.uint8)
        variant = img.copy()
        variant[obj.y : obj.y + obj.h, obj.x : obj.x + obj.w] = out
        rec = {"from_rgb": [round(float(c)) for c in own], "to_rgb": [round(float(c)) for c in target]}
        e = _finish("recoloured", img, variant, obj.box, obj, int(obj.body.sum()), rec)
        if e is not None:
            return e
    return None


_MAKERS = {"added": added, "removed": removed, "recoloured": recoloured, "moved": moved}


def natural_edit(
    kind: str,
    img: np.ndarray,
    rng: random.Random,
    s: int,
    within: Rect,
    avoid: list[Rect] | None = None,
    objects: ObjectIndex | None = None,
) -> Edit | None:
    """Apply natural edit `kind` to an object of about s x s px inside `within`, away from `avoid`.

    `objects`: the photo's object index when `img` is an edited copy of it (edits stacked on one
    photo keep clear of each other through `avoid`); by default `img`'s own, cached.
    """
    if kind not in _MAKERS:
        raise ValueError(f"unknown natural edit {kind!r}; expected one of {', '.join(NATURAL_KINDS)}")
    idx = objects or objects_of(img, s)
    edit = _MAKERS[kind](img, rng, s, within, list(avoid or []), idx)
    # where a clone or a moved object lands counts too: not among a crowd of its like
    return None if edit is None or idx.crowd(edit.box, s) > CROWD_MAX else edit
