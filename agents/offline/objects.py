"""The objects of a photo that natural edits act on: segments that stand out from the ring around them.

An object (an island, a coin, a leaf, a window, a cell) is a connected area that differs from the
photo blurred at about the object's size, lies wholly inside the photo, has about the requested
size, and differs from a homogeneous ring of background around it. The photo is searched once per
size class, on a copy scaled so that an object spans about `SEG_PX` px, and every object found is
kept in an `ObjectIndex`; edits then draw from it. That is much cheaper than segmenting windows at
random (one Felzenszwalb segmentation in ~13 found an object on the earth tiles, 3 s for a whole
photo) and sees every object whole, not cut by a window's border.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from agents.offline.view import GLANCE_PIXELS

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive)
MIN_CONTRAST = 28.0  # an object differs from its ring by at least this (largest channel of the means)
CALM_STD = 12.0  # ... on ground whose grey levels vary (std) by at most this
SIDE_SPREAD = 0.3  # ... and its four sides' mean colours differ by at most this share of the contrast (+ 6)
RING_CALM = 0.55  # ... and its ring varies (std, largest channel) by at most this share of the contrast
LEVELS = (0.6, 0.9, 1.3, 1.8)  # candidate areas differ from the blurred photo by these shares of MIN_CONTRAST
GROW = 0.12  # masks are grown by at least this share of the object's side to take in its soft rim ...
MAX_GROW = 0.45  # ... and on until the ground just outside matches the ground further out, up to this share
ISOLATION = 0.25  # objects that are lifted off (removed, moved, cloned) have plain ground this far around them
OUTLIERS = 0.08  # ... where at most this share of the pixels strays from the ground by half the contrast
PICK_CONTRAST = 40.0  # edits act on objects at least this clear: fainter ones the verifier and people missed
EDGE_MIN = 27.0  # what is edited has an outline this steep (`edge_gradient`)
SEG_PX = 18  # an object spans about this many px on the copy that is segmented
SIZE_CLASS = 1.4  # objects of sizes within this factor share one segmentation
MIN_PICK_PX = 16  # an edited object spans at least this many px: the verifier and people missed smaller ones
MIN_PICK_SHORT_PX = 12  # ... and at least this many across its short side: thin slivers went unfound
CROWD_REACH = 6.0  # a change is findable when, within this many object sides of it, ...
CROWD_MAX = 2  # ... at most this many other objects of its size lie (`ObjectIndex.crowd`)
FIELD_DENSITY = 12.0  # a photo with more objects of a size than this per glance view is a field of them
_CACHE_ITEMS = 256  # photo x size class: a pool of 45 photos at 2-3 sizes each stays in it


@dataclass
class Obj:
    """An object of the photo: a mask over the box (x, y, w, h) and how it differs from its ring."""

    x: int
    y: int
    mask: np.ndarray  # (h, w) bool: the object and a thin band of its ground (what a heal or a clone covers)
    contrast: float
    core: np.ndarray | None = None  # (h, w) bool: the object alone (what a recolour changes); None: mask
    isolated: bool = True  # plain ground all around it (ISOLATION): it can be lifted off and healed over
    edge: float = math.inf  # how steep its outline is (`edge_gradient`); measured only for pickable objects

    @property
    def h(self) -> int:
        return self.mask.shape[0]

    @property
    def w(self) -> int:
        return self.mask.shape[1]

    @property
    def body(self) -> np.ndarray:
        """The object alone (`core`), or the whole mask when no core was recorded."""
        return self.mask if self.core is None else self.core

    @property
    def box(self) -> Rect:
        return (self.x, self.y, self.x + self.w, self.y + self.h)


def overlaps(box: Rect, avoid: list[Rect], gap: int) -> bool:
    """Whether `box` comes within `gap` px of any box of `avoid`."""
    x1, y1, x2, y2 = box
    return any(x1 < b[2] + gap and x2 > b[0] - gap and y1 < b[3] + gap and y2 > b[1] - gap for b in avoid)


def inside(box: Rect, within: Rect) -> bool:
    """Whether `box` lies inside `within` with a pixel to spare."""
    return box[0] >= within[0] + 1 and box[1] >= within[1] + 1 and box[2] <= within[2] - 1 and box[3] <= within[3] - 1


def ring(mask: np.ndarray, width: int) -> np.ndarray:
    """The band of `width` px around a mask (the mask's array must leave room for it)."""
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


@dataclass
class ObjectIndex:
    """Every object of one photo in one size class (side about `s_ref` px at full resolution)."""

    s_ref: float
    objects: list[Obj]
    pixels: int  # the photo's area
    _centres: np.ndarray | None = None
    spent: Callable[[Obj], bool] | None = None  # objects `pick` passes over (their cap of samples is full)

    def sparing(self, spent: Callable[[Obj], bool]) -> ObjectIndex:
        """This index, with `pick` passing over the objects for which `spent` holds (the crowd still counts them)."""
        return replace(self, spent=spent)

    @property
    def field(self) -> bool:
        """Whether the photo is a field of like objects (a star field, a cell culture): nothing in it is edited.

        The Hubble deep field holds ~55 galaxies of one size per glance view, an island-rich earth tile at
        most 2; blind audits found 2 of 13 changes made on the Hubble field even where few galaxies lay
        near the change (`crowd`), because a person cannot tell which of hundreds was there before.
        """
        return len(self.objects) > FIELD_DENSITY * self.pixels / GLANCE_PIXELS

    def crowd(self, box: Rect, s: float) -> int:
        """How many objects of the index lie within CROWD_REACH * s of `box`'s centre, not overlapping it.

        A galaxy added, moved or removed among hundreds of like galaxies (the Hubble deep field) was
        never found in a blind audit, zoom or not: a person compares the few objects near a change, so
        a change must have at most CROWD_MAX of them around it.
        """
        if self._centres is None:
            self._centres = np.array([(o.x + o.w / 2, o.y + o.h / 2) for o in self.objects], np.float32).reshape(-1, 2)
        x1, y1, x2, y2 = box
        c = self._centres
        near = np.hypot(c[:, 0] - (x1 + x2) / 2, c[:, 1] - (y1 + y2) / 2) < CROWD_REACH * s
        within = (c[:, 0] >= x1) & (c[:, 0] < x2) & (c[:, 1] >= y1) & (c[:, 1] < y2)
        return int((near & ~within).sum())

    def pick(
        self,
        rng: random.Random,
        s: int,
        within: Rect,
        avoid: list[Rect],
        isolated: bool = False,
        outlined: bool = True,
    ) -> Obj | None:
        """An object of about s x s px (0.5-1.5 s) inside `within`, clear of `avoid` by s px; None if none.

        Drawn at random among the stronger half by contrast (at least two): clear objects, but not always
        the same one.
        `isolated`: only objects on plain ground all around (what a heal or a clone needs).
        `outlined`: only objects with a steep outline (EDGE_MIN) and not `spent`: what an edit may act on.
        False only to ask whether a region holds any object at all.
        """
        if outlined and self.field:
            return None
        fits = [
            o
            for o in self.objects
            if max(0.5 * s, MIN_PICK_PX if outlined else 0) <= max(o.w, o.h) <= 1.5 * s
            and min(o.w, o.h) >= max(0.3 * s, MIN_PICK_SHORT_PX if outlined else 0)
            and inside(o.box, within)
            and not overlaps(o.box, avoid, s)
            and (o.isolated or not isolated)
            and o.contrast >= PICK_CONTRAST
            and (o.edge >= EDGE_MIN or not outlined)
            and (self.crowd(o.box, s) <= CROWD_MAX or not outlined)
            and not (outlined and self.spent is not None and self.spent(o))
        ]
        if not fits:
            return None
        fits.sort(key=lambda o: -o.contrast)
        # the stronger half, but never one alone: most earth tiles hold one or two usable islands, and the
        # strongest of two always drawn left the other unused (12 objects made a 205-sample run)
        return fits[rng.randrange(max(min(2, len(fits)), (len(fits) + 1) // 2))]


def size_class(s: float) -> float:
    """The reference side of the size class that holds objects of side `s`."""
    return SIZE_CLASS ** round(math.log(max(s, 2.0)) / math.log(SIZE_CLASS))


def _side_spread(patch: np.ndarray, band: np.ndarray) -> float:
    """How much the ring's mean colour differs between its four sides (largest channel, grey levels)."""
    ys, xs = np.nonzero(band)
    cy, cx = ys.mean(), xs.mean()
    side = (np.abs(ys - cy) > np.abs(xs - cx)) * 2 + ((ys - cy) + (xs - cx) > 0)  # 4 sectors by angle
    px = patch[ys, xs].astype(np.float32)
    means = [px[side == k].mean(0) for k in range(4) if (side == k).sum() >= 3]
    if len(means) < 4:
        return float("inf")
    return max(float(np.abs(a - b).max()) for i, a in enumerate(means) for b in means[i + 1 :])


def _grown_to_ground(
    patch: np.ndarray, m: np.ndarray, grow: int, max_grow: int, contrast: float
) -> tuple[np.ndarray, bool]:
    """The object's mask grown until the px just outside it look like the ground beyond; and whether they do.

    An island's dark coastline or a galaxy's halo lies outside the segment: a heal that stops short of
    it leaves an outline or a dark hole behind. False: no such edge within `max_grow` px (a soft glow).
    """
    far = ndimage.distance_transform_edt(~m)
    outer = (far > max_grow + 1) & (far <= max_grow + 1 + max(2, max_grow))
    if outer.sum() < 8:
        return ndimage.binary_dilation(m, iterations=grow), False
    ground = patch[outer].astype(np.float32).mean(0)
    tol = max(3.0, 0.06 * contrast)
    for k in range(grow, max_grow + 1):
        band = (far > k) & (far <= k + 1)
        if band.sum() and float(np.abs(patch[band].astype(np.float32).mean(0) - ground).max()) <= tol:
            return far <= k, True
    return far <= max_grow, False


def _plain_around(patch: np.ndarray, grown: np.ndarray, reach: float) -> bool:
    """Whether the ground within `reach` px of a grown mask is plain: calm, with no other structure in it.

    A heal fills the object's place with ground from nearby; next to a coastline, inside a lattice or in
    grass there is no such ground, and a blind audit saw every such heal as a smudge. The ground may
    shade slowly (deeper sea, a lit wall): it is compared with a plane fitted to it, not with one colour.
    """
    far = ndimage.distance_transform_edt(~grown)
    band = (far > 0) & (far <= reach)
    ys, xs = np.nonzero(band)
    if len(ys) < 16:
        return False
    px = patch[ys, xs].astype(np.float32)
    design = np.stack([np.ones_like(xs), xs, ys], 1).astype(np.float32)
    coef, *_ = np.linalg.lstsq(design, px, rcond=None)
    rest = px - design @ coef
    stray = np.abs(rest).max(1) > 0.5 * MIN_CONTRAST
    return float(rest.mean(1).std()) <= CALM_STD and float(stray.mean()) <= OUTLIERS


def edge_gradient(img: np.ndarray, x: int, y: int, core: np.ndarray) -> float:
    """How steep an object's outline is: the 90th percentile of the gradient (grey levels per px) on it.

    Measured at full resolution in the channel where the object differs most from the ground around it.
    The soft pale glows of the ocean floor on the earth tiles (seamounts, shoals) rise by 12-26 levels per
    px; blind audits saw their clones and recolours as painted blobs (a shoal turned tan, a glow set
    down on the flat abyss) and did not find their removals at all, while islands, galaxies and marks
    with a visible outline (27 and up) passed.
    """
    pad = 4
    H, W = img.shape[:2]
    y1, x1 = max(0, y - pad), max(0, x - pad)
    y2, x2 = min(H, y + core.shape[0] + pad), min(W, x + core.shape[1] + pad)
    patch = img[y1:y2, x1:x2].astype(np.float32)
    m = np.zeros(patch.shape[:2], bool)
    m[y - y1 : y - y1 + core.shape[0], x - x1 : x - x1 + core.shape[1]] = core
    around = ndimage.binary_dilation(m, iterations=3) & ~ndimage.binary_dilation(m, iterations=1)
    if not m.any() or not around.any():
        return 0.0
    ch = int(np.argmax(np.abs(patch[m].mean(0) - patch[around].mean(0))))
    grad = np.hypot(ndimage.sobel(patch[..., ch], 0), ndimage.sobel(patch[..., ch], 1)) / 8
    outline = ndimage.binary_dilation(m, iterations=2) & ~ndimage.binary_erosion(m, iterations=2)
    return float(np.percentile(grad[outline], 90))


def _components(d: np.ndarray, level: float) -> tuple[np.ndarray, list]:
    seg, _ = ndimage.label(ndimage.binary_opening(d > level, iterations=1))
    return seg, ndimage.find_objects(seg)


def build_index(img: np.ndarray, s_ref: float) -> ObjectIndex:
    """Search `img` once for objects of side about `s_ref` px and keep those that stand out."""
    H, W = img.shape[:2]
    f = min(1.0, SEG_PX / s_ref)
    small = img if f == 1.0 else np.asarray(Image.fromarray(img).resize((round(W * f), round(H * f)), Image.BOX))
    h, w = small.shape[:2]
    ss = s_ref * f
    # candidates: connected areas that differ from the photo blurred at about an object's size, at a
    # few levels (a faint object and a strong one next to it separate at different levels); the ring
    # test then keeps only those that stand out from calm surroundings
    ground = ndimage.gaussian_filter(small.astype(np.float32), (1.2 * ss, 1.2 * ss, 0))
    d = np.abs(small - ground)
    d = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])
    width = max(2, round(ss / 6))
    grow = max(1, round(GROW * ss))
    objects: list[Obj] = []
    taken: list[Rect] = []
    for level in LEVELS:
        seg, slices = _components(d, level * MIN_CONTRAST)
        for lab, sl in enumerate(slices, start=1):
            y1, y2, x1, x2 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            bw, bh = x2 - x1, y2 - y1
            # an object wholly inside the photo, of a size some query of this class may ask for
            if x1 == 0 or y1 == 0 or x2 == w or y2 == h or not (0.35 * ss <= max(bw, bh) <= 2.1 * ss):
                continue
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if min(bw, bh) < 0.2 * ss or any(t[0] <= cx < t[2] and t[1] <= cy < t[3] for t in taken):
                continue
            reach = max(width, round((MAX_GROW + ISOLATION) * ss) + 2) + 1  # room for the isolation annulus
            py1, px1 = max(0, y1 - reach), max(0, x1 - reach)
            py2, px2 = min(h, y2 + reach), min(w, x2 + reach)
            m = ndimage.binary_fill_holes(seg[py1:py2, px1:px2] == lab)
            if m.sum() < 0.15 * ss * ss:
                continue
            patch = small[py1:py2, px1:px2]
            ring_px = patch[ring(m, width)].astype(np.float32)
            if len(ring_px) < 8:
                continue
            contrast = float(np.abs(patch[m].mean(0) - ring_px.mean(0)).max())
            # a real object sits on one homogeneous background: its ring varies much less than it contrasts,
            # and looks the same on every side (a piece of a coastline has land on one side, sea on the other)
            if contrast < MIN_CONTRAST or float(ring_px.std(0).max()) > RING_CALM * contrast:
                continue
            band = ring(m, width)
            # calm ground only: a heal or a clone on busy ground (relief, texture) left a visible smudge
            if float(patch[band].astype(np.float32).mean(1).std()) > CALM_STD:
                continue
            if _side_spread(patch, band) > SIDE_SPREAD * contrast + 6:
                continue
            # a heal or a clone must cover the object's soft rim too: a rim left behind (or cut off)
            # is what made healed spots look like a blurred glow
            grown, rimless = _grown_to_ground(patch, m, grow, max(grow, round(MAX_GROW * ss)), contrast)
            isolated = rimless and _plain_around(patch, grown, max(2.0, ISOLATION * ss))
            gy, gx = np.nonzero(grown)
            gy1, gy2, gx1, gx2 = int(gy.min()), int(gy.max()) + 1, int(gx.min()), int(gx.max()) + 1
            fx1, fy1 = math.floor((px1 + gx1) / f), math.floor((py1 + gy1) / f)
            fx2, fy2 = min(W, math.ceil((px1 + gx2) / f)), min(H, math.ceil((py1 + gy2) / f))
            size = (fx2 - fx1, fy2 - fy1)

            def full(a: np.ndarray, size=size, box=(gx1, gy1, gx2, gy2)) -> np.ndarray:
                a = a[box[1] : box[3], box[0] : box[2]]
                return a if f == 1.0 else np.asarray(Image.fromarray(a).resize(size, Image.NEAREST)).astype(bool)

            core = full(m)
            edge = edge_gradient(img, fx1, fy1, core) if contrast >= PICK_CONTRAST else 0.0
            objects.append(Obj(fx1, fy1, full(grown), contrast, core=core, isolated=isolated, edge=edge))
            taken.append((x1, y1, x2, y2))
    return ObjectIndex(s_ref, objects, pixels=H * W)


_INDEX: OrderedDict[tuple, ObjectIndex] = OrderedDict()
_INDEX_LOCK = threading.Lock()


def objects_of(img: np.ndarray, s: float) -> ObjectIndex:
    """The object index of `img` for objects of side about `s` px, cached on the pixels' content."""
    s_ref = size_class(s)
    key = (hashlib.blake2b(np.ascontiguousarray(img).data, digest_size=16).digest(), img.shape, s_ref)
    with _INDEX_LOCK:
        hit = _INDEX.get(key)
        if hit is not None:
            _INDEX.move_to_end(key)
            return hit
    index = build_index(img, s_ref)
    with _INDEX_LOCK:
        _INDEX[key] = index
        while len(_INDEX) > _CACHE_ITEMS:
            _INDEX.popitem(last=False)
    return index
