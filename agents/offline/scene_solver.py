"""Answer the default task families from the pixels: register every pair of images, then measure.

Each image of a set is its own shot (own framing, exposure, white balance, JPEG), so nothing is
compared pixel for pixel: `register.align` maps one image onto another and `register.changes`
lists where they still differ. Every family reduces to those lists: which candidate differs from
image 1 (or is the only one that does not), how many do, where the change sits, how many changes
there are, what kind of change it is, which pair matches, which close-up is an unaltered part of
image 1, where in a close-up the change is. Reads the question's options and the pixels only.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image
from scipy import ndimage

from agents.base import Draft
from agents.offline.pixel_solver import Solution, option_image
from agents.offline.regions import parse_region
from agents.offline.register import Alignment, Blob, align, blobs_of, changes, edge_aware, smooth, to_frame, warp
from schemas import TaskType

WORK_SIDE = 1200  # full-resolution solving works on images at most this large (a change stays >= ~10 px)
ZOOM_RANGE = (0.9, 4.0)  # close-ups: b px per a px
SAME_RANGE = (0.92, 1.08)
NONE_WORDS = ("none", "nowhere", "no difference", "no change", "no image", "nothing", "identical", "not differ", "same")
KIND_WORDS = {  # option texts naming each kind of change (the offline writer's, and plain synonyms)
    "added": ("something appeared", "something was added"),
    "removed": ("something disappeared", "something was removed"),
    "recoloured": ("something changed colour", "something changed color"),
    "moved": ("something changed place", "something moved"),
}
_PAIR = re.compile(r"images?\s+(\d+)\s+and\s+(\d+)", re.IGNORECASE)
_NUM = re.compile(r"^\s*(\d+)\s*$")


def is_none(option: str) -> bool:
    """Whether an option says "none of them" / "no difference" (and names no image or pair)."""
    t = option.lower()
    return any(w in t for w in NONE_WORDS) and option_image(option) is None and not _PAIR.search(option)


def _shrink(arr: np.ndarray, side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if max(h, w) <= side:
        return arr
    s = side / max(h, w)
    return np.asarray(Image.fromarray(arr).resize((round(w * s), round(h * s)), Image.Resampling.BOX))


class _Pairs:
    """Memoised alignments and change blobs between the images of one set."""

    def __init__(
        self, arrays: list[np.ndarray], min_frac: float | None = None, sources: list[np.ndarray] | None = None
    ) -> None:
        self.arrays = arrays
        self.min_frac = min_frac
        self.sources = list(sources or [])  # the arrays these were shrunk from (the memo's identity check)
        self._al: dict[tuple[int, int, str], Alignment | None] = {}
        self._bl: dict[tuple[int, int, str], list[Blob] | None] = {}
        self._frames: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def alignment(self, i: int, j: int, zoom: str = "same") -> Alignment | None:
        key = (i, j, zoom)
        if key not in self._al:
            rng = SAME_RANGE if zoom == "same" else ZOOM_RANGE
            al = align(self.arrays[i], self.arrays[j], rng, 17 if zoom == "same" else 29)
            self._al[key] = al if al is not None and al.score >= 0.5 else None
        return self._al[key]

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Image k in image 1's frame and tones, smoothed, with where it is defined (None: not registered)."""
        if k not in self._frames:
            if k == 0:
                a = self.arrays[0]
                self._frames[0] = (smooth(a), np.ones(a.shape[:2], bool))
            else:
                al = self.alignment(0, k)
                if al is None:
                    self._frames[k] = None
                else:
                    bt, valid = to_frame(self.arrays[0], self.arrays[k], al)
                    self._frames[k] = (smooth(bt), valid)
        return self._frames[k]

    def blobs(self, i: int, j: int, zoom: str = "same") -> list[Blob] | None:
        """Change blobs of j against i (boxes in i's pixels, image 1's frame for shots of one scene)."""
        key = (i, j, zoom)
        if key not in self._bl:
            kw = {} if self.min_frac is None else {"min_frac": self.min_frac}
            if zoom == "same":  # every shot is brought into image 1's frame once; pairs compare there
                fi, fj = self.frame(i), self.frame(j)
                if fi is None or fj is None:
                    self._bl[key] = None
                else:
                    d, valid = edge_aware(fi[0], fj[0], fi[1] & fj[1])
                    self._bl[key] = blobs_of(d, valid, **kw)
            else:
                al = self.alignment(i, j, zoom)
                self._bl[key] = None if al is None else changes(self.arrays[i], self.arrays[j], al, **kw)
        return self._bl[key]

    def differs(self, i: int, j: int, zoom: str = "same") -> bool | None:
        b = self.blobs(i, j, zoom)
        return None if b is None else bool(b)


def _none(n: int, notes: str) -> Solution:
    return Solution(None, [0.0] * n, notes=notes)


def _pick(options: list[str], index: int | None, notes: str, strength: int = 0, box=None) -> Solution:
    n = len(options)
    if index is None:
        return _none(n, notes)
    scores = [0.0] * n
    scores[index] = 1.0
    return Solution(index, scores, strength, box, notes)


def _strength(blobs: list[Blob] | None) -> int:
    return sum(b.area for b in blobs or [])


def _norm_box(b: Blob, arr: np.ndarray) -> tuple[float, float, float, float]:
    h, w = arr.shape[:2]
    return (b.box[0] / w, b.box[1] / h, b.box[2] / w, b.box[3] / h)


def _image_choice(p: _Pairs, draft: Draft, want_changed: bool, zoom: str) -> Solution:
    """Options "Image k" (+ a none option): the one candidate that differs (or does not) from image 1."""
    opts = draft.options
    cands = [(i, option_image(o)) for i, o in enumerate(opts) if option_image(o) is not None]
    none_opt = next((i for i, o in enumerate(opts) if is_none(o)), None)
    hits, strength = [], 0
    for i, k in cands:
        if k <= 0 or k >= len(p.arrays):
            return _none(len(opts), f"option {opts[i]!r} names no candidate image")
        d = p.differs(0, k, zoom)
        if d is None:
            return _none(len(opts), f"image {k + 1} cannot be registered on image 1")
        strength += _strength(p.blobs(0, k, zoom)) if d else 0
        if d == want_changed:
            hits.append(i)
    if len(hits) == 1:
        return _pick(
            opts, hits[0], f"only {opts[hits[0]]} {'differs from' if want_changed else 'matches'} image 1", strength
        )
    if not hits and none_opt is not None:
        return _pick(opts, none_opt, "no candidate qualifies", max(strength, 1))
    return _none(len(opts), f"{len(hits)} candidates qualify")


def _odd_one_out(p: _Pairs, draft: Draft) -> Solution:
    n = len(p.arrays)
    diff = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(i + 1, n):
            d = p.differs(i, j)
            if d is None:
                return _none(len(draft.options), "images cannot be registered")
            diff[i, j] = diff[j, i] = d
    odd = [
        i
        for i in range(n)
        if diff[i].sum() == n - 1
        and diff[np.ix_([k for k in range(n) if k != i], [k for k in range(n) if k != i])].sum() == 0
    ]
    if len(odd) != 1:
        return _none(len(draft.options), "no single image differs from all the others")
    idx = next((i for i, o in enumerate(draft.options) if option_image(o) == odd[0]), None)
    strength = _strength(p.blobs(odd[0], (odd[0] + 1) % n))
    return _pick(draft.options, idx, f"image {odd[0] + 1} is the odd one", strength)


def _region_of(box: tuple[float, float, float, float], options: list[str]) -> int | None:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for i, o in enumerate(options):
        r = parse_region(o)
        if r is not None:
            x1, y1, x2, y2 = r.box
            if x1 <= cx < x2 and y1 <= cy < y2:
                return i
    return None


def _where(p: _Pairs, draft: Draft, zoom: str) -> Solution:
    """Region options (+ a none option): where the change is, in image 2's frame for close-ups, else image 1's."""
    opts = draft.options
    blobs = p.blobs(0, 1, zoom)
    if blobs is None:
        return _none(len(opts), "image 2 cannot be registered on image 1")
    none_opt = next((i for i, o in enumerate(opts) if is_none(o)), None)
    if not blobs:
        return _pick(opts, none_opt, "the images show the same content", 1)
    b = blobs[0]
    if zoom == "same":
        box = _norm_box(b, p.arrays[0])
    else:  # the close-up's own frame
        al = p.alignment(0, 1, zoom)
        (x1, y1), (x2, y2) = al.to_b(b.box[0], b.box[1]), al.to_b(b.box[2], b.box[3])
        h, w = p.arrays[1].shape[:2]
        box = (x1 / w, y1 / h, x2 / w, y2 / h)
    idx = _region_of(box, opts)
    return _pick(opts, idx, f"the change is at x {box[0]:.2f}-{box[2]:.2f}, y {box[1]:.2f}-{box[3]:.2f}", b.area, box)


def _count(options: list[str], value: int, notes: str, strength: int) -> Solution:
    idx = next((i for i, o in enumerate(options) if _NUM.match(o) and int(o) == value), None)
    return _pick(options, idx, notes, strength)


def _count_across(p: _Pairs, draft: Draft) -> Solution:
    n, k, strength = len(p.arrays), 0, 0
    for j in range(1, n):
        d = p.differs(0, j)
        if d is None:
            return _none(len(draft.options), f"image {j + 1} cannot be registered")
        k += int(d)
        strength += _strength(p.blobs(0, j))
    return _count(draft.options, k, f"{k} of images 2-{n} differ from image 1", max(strength, 1))


def _count_changes(p: _Pairs, draft: Draft) -> Solution:
    blobs = p.blobs(0, 1)
    if blobs is None:
        return _none(len(draft.options), "image 2 cannot be registered")
    return _count(draft.options, len(blobs), f"{len(blobs)} separate changes", max(_strength(blobs), 1))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else 0.0


def _change_kind(p: _Pairs, draft: Draft) -> Solution:
    opts = draft.options
    blobs = p.blobs(0, 1)
    if blobs is None:
        return _none(len(opts), "image 2 cannot be registered")

    def option_for(kind: str) -> int | None:
        words = KIND_WORDS[kind]
        return next((i for i, o in enumerate(opts) if o.strip().lower() in words), None)

    if not blobs:
        return _pick(opts, next((i for i, o in enumerate(opts) if is_none(o)), None), "no change", 1)
    if len(blobs) == 2:  # one change showing at two places of similar size: an object left one and took the other
        b1, b2 = blobs
        if max(b1.area, b2.area) <= 4 * min(b1.area, b2.area):
            return _pick(opts, option_for("moved"), "two changed places of similar size", b1.area + b2.area)
        return _none(len(opts), "two changes of very different size")
    if len(blobs) > 2:
        return _none(len(opts), f"{len(blobs)} changes")
    a = p.arrays[0].astype(np.float32)
    bw, _ = warp(p.arrays[1], p.alignment(0, 1), a.shape[:2])
    b = blobs[0]
    x1, y1, x2, y2 = b.box
    pad = max(3, (x2 - x1 + y2 - y1) // 6)
    sl = (slice(max(0, y1 - pad), y2 + pad), slice(max(0, x1 - pad), x2 + pad))
    ca, cb = a[sl], bw[sl]
    gx = lambda g: np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))  # noqa: E731
    structure = _ncc(gx(ca.mean(axis=2)), gx(cb.mean(axis=2)))
    chroma = lambda c: c - c.mean(axis=2, keepdims=True)  # noqa: E731
    chroma_shift = float(np.abs(chroma(ca) - chroma(cb)).max(axis=2).mean())
    if structure > 0.75 and chroma_shift > 8:
        return _pick(opts, option_for("recoloured"), f"same shapes, new colour (structure {structure:.2f})", b.area)
    inner = np.zeros(ca.shape[:2], bool)
    inner[pad : pad + (y2 - y1), pad : pad + (x2 - x1)] = True
    ring = ndimage.binary_dilation(inner, iterations=pad) & ~inner

    def stands_out(c: np.ndarray) -> float:
        g = c.mean(axis=2)
        return abs(float(g[inner].mean() - g[ring].mean())) + float(g[inner].std())

    before, after = stands_out(ca), stands_out(cb)
    kind = "added" if after > before else "removed"
    return _pick(opts, option_for(kind), f"detail stands out {before:.0f} before, {after:.0f} after", b.area)


def _matching_pair(p: _Pairs, draft: Draft) -> Solution:
    opts = draft.options
    same = []
    for i, o in enumerate(opts):
        m = _PAIR.search(o)
        if not m:
            continue
        a, b = int(m.group(1)) - 1, int(m.group(2)) - 1
        if not (0 <= a < len(p.arrays) and 0 <= b < len(p.arrays)):
            return _none(len(opts), f"{o!r} names no image of the set")
        d = p.differs(a, b)
        if d is None:
            return _none(len(opts), f"images {a + 1} and {b + 1} cannot be registered")
        if not d:
            same.append(i)
    if len(same) == 1:
        return _pick(opts, same[0], f"only {opts[same[0]]} match", 1 + sum(_strength(v) for v in p._bl.values()))
    return _none(len(opts), f"{len(same)} listed pairs match")


_PAIRS: OrderedDict[tuple, _Pairs] = OrderedDict()
_PAIRS_LOCK = threading.Lock()


def _pairs_for(arrays: list[np.ndarray], work_side: int, min_frac: float | None) -> _Pairs:
    """The registrations of one image set, kept for the next draft of the same set (a revision re-asks)."""
    # read-only arrays from the pixel cache keep their buffer while cached; fresh arrays get fresh keys
    key = (tuple((a.__array_interface__["data"][0], a.shape, a.flags.writeable) for a in arrays), work_side, min_frac)
    with _PAIRS_LOCK:
        hit = _PAIRS.get(key)
        if hit is not None and all(x is y for x, y in zip(hit.sources, arrays, strict=True)):
            _PAIRS.move_to_end(key)
            return hit
    p = _Pairs([_shrink(a, work_side) for a in arrays], min_frac, sources=arrays)
    with _PAIRS_LOCK:
        _PAIRS[key] = p
        while len(_PAIRS) > 8:
            _PAIRS.popitem(last=False)
    return p


def solve_scene(
    arrays: list[np.ndarray], draft: Draft, work_side: int = WORK_SIDE, min_frac: float | None = None
) -> Solution | None:
    """Answer a default-family draft from the pixels; None when the task type is not one of them.

    `min_frac`: the smallest change that counts, as a share of the image area (default: register's).
    """
    t = draft.task_type
    close_up = "close-up" in draft.question.lower()
    p = _pairs_for(arrays, work_side, min_frac)
    if t == TaskType.WHICH_DIFFERS:
        return _image_choice(p, draft, True, "zoom" if close_up else "same")
    if t == TaskType.WHICH_UNCHANGED:
        return _image_choice(p, draft, False, "zoom" if close_up else "same")
    if t == TaskType.CROP_MATCH:
        return _image_choice(p, draft, False, "zoom")
    if t == TaskType.ODD_ONE_OUT:
        return _odd_one_out(p, draft)
    if t == TaskType.WHERE_DIFFERS:
        return _where(p, draft, "same")
    if t == TaskType.ZOOM_LOCATE:
        return _where(p, draft, "zoom")
    if t == TaskType.COUNT_ACROSS:
        return _count_across(p, draft)
    if t == TaskType.COUNT_CHANGES:
        return _count_changes(p, draft)
    if t == TaskType.CHANGE_KIND:
        return _change_kind(p, draft)
    if t == TaskType.MATCHING_PAIR:
        return _matching_pair(p, draft)
    return None
