"""Image sets of the default task families: natural edits of one real photo, every image its own shot.

A family decides how many images a set has, which of them carry an edit (each its own edit, so no
two edited images are alike), and what the answer is; `nuisance` makes every image a separate
view (framing, exposure, white balance, JPEG) or a close-up; `natural_edits` makes the changes.
The ground truth goes to `ImageSet.construction` (version 2): per image its view and role, per
edit its kind and box in each image's own coordinates, and the canonical answer. The writer
words it; the verifier never reads it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from agents.base import AgentContext, ImageRef, ImageSet
from agents.image_cache import store_image
from agents.offline.critic import object_spent
from agents.offline.natural_edits import Edit, colourfulness, natural_edit
from agents.offline.nuisance import View, close_up, global_view, render
from agents.offline.objects import ObjectIndex, inside, objects_of
from agents.offline.pixels import pixels, remember
from agents.offline.regions import Region
from agents.offline.view import MAX_DETAIL_FRACTION, glance_scale
from schemas import TaskType

FAMILIES: dict[str, TaskType] = {
    "which_differs": TaskType.WHICH_DIFFERS,
    "which_unchanged": TaskType.WHICH_UNCHANGED,
    "odd_one_out": TaskType.ODD_ONE_OUT,
    "where_differs": TaskType.WHERE_DIFFERS,
    "count_across": TaskType.COUNT_ACROSS,
    "count_changes": TaskType.COUNT_CHANGES,
    "change_kind": TaskType.CHANGE_KIND,
    "matching_pair": TaskType.MATCHING_PAIR,
    "crop_match": TaskType.CROP_MATCH,
    "zoom_locate": TaskType.ZOOM_LOCATE,
}
CONSTRUCTION_VERSION = 2
REVERSE = {"added": "removed", "removed": "added", "recoloured": "recoloured", "moved": "moved"}
EDGE = 0.06  # edits keep this share of the photo side off its border (every view still shows them)
CELL_MARGIN = 0.18  # where-questions: the edit stays this far (share of a cell) inside its cell
MAX_VIEW_SIDE = 2048  # close-ups are enlarged at most to this side
# how often each edit kind is tried first: checked heals and moves looked natural to a blind audit;
# recolours were the edits it called painted or could not find (a new colour on a map's shoal)
EDIT_WEIGHTS = {"removed": 3.0, "moved": 2.0, "added": 1.5, "recoloured": 1.0}


class NoSet(Exception):
    """This photo cannot make this family's set (no object found, greyscale for a recolour, ...)."""


@dataclass
class _Img:
    view: View
    role: str
    edits: list[Edit] = field(default_factory=list)


GLANCE_DETAIL_PX = (8.0, 13.0)  # the deciding object spans this many pixels of the glance view


def detail_side(rng: random.Random, w: int, h: int) -> int:
    """Side (px) of the deciding object: 8-13 px in the glance view (log-uniform), at most 1% of the image.

    Sized against the glance view, not the image: at 8-13 glance px the change stays under what is seen
    at a glance (the critic checks it: `agents.offline.view.GLANCE_MIN_FRAC`), while at full resolution
    it is a real object of 18-30 px in a 1200 x 900 earth tile that a person finds by looking again.
    """
    g = math.exp(rng.uniform(math.log(GLANCE_DETAIL_PX[0]), math.log(GLANCE_DETAIL_PX[1])))
    side = g / glance_scale(w, h)
    return max(8, min(round(side), round(math.sqrt(MAX_DETAIL_FRACTION * w * h))))


class SceneBuilder:
    """Builds one family's set from one photo of the pool (deterministic from `rng`)."""

    def __init__(
        self,
        ctx: AgentContext,
        photo: ImageRef,
        rng: random.Random,
        kinds: tuple[str, ...],
        twin_rate: float,
        answers: random.Random | None = None,
        cap_object: int | None = None,
    ):
        self.ctx, self.photo, self.rng, self.twin_rate = ctx, photo, rng, twin_rate
        self.cap_object = cap_object  # edits pass over objects already in this many accepted samples (None: no cap)
        # the answer and twin draws come from their own stream, which the pairer replays for every photo
        # it tries: else a photo that cannot hold an answer (no object to remove) makes the pairer draw
        # again, and answers needing nothing (twins, "0") pile up: 33% twins at twin_rate 0.15
        self.answers = answers or rng
        self.img = pixels(photo)
        self.h, self.w = self.img.shape[:2]
        colour_ok = colourfulness(self.img) >= 0.1
        self.kinds = tuple(k for k in kinds if k != "recoloured" or colour_ok)
        if not self.kinds:
            raise NoSet("no edit kind applies to this photo")
        self.s = detail_side(rng, self.w, self.h)
        self._objects: dict[int, ObjectIndex] = {}
        m = EDGE
        self.within = (round(m * self.w), round(m * self.h), round((1 - m) * self.w), round((1 - m) * self.h))

    # ------------------------------------------------------------------ pieces
    def edit(
        self, kind: str | None = None, within=None, avoid=None, base: np.ndarray | None = None, exclude: tuple = ()
    ) -> Edit:
        """One natural edit (a kind drawn at random when not given, none of `exclude`); NoSet when none can be made."""
        kinds = [kind] if kind else [k for k in self.kinds if k not in exclude]
        # a weighted shuffle: each kind's key is u ** (1 / weight), largest first
        kinds.sort(key=lambda k: -(self.rng.random() ** (1.0 / EDIT_WEIGHTS.get(k, 1.0))))
        for k in kinds:
            for _ in range(3):
                e = natural_edit(
                    k,
                    self.img if base is None else base,
                    self.rng,
                    self.s,
                    within or self.within,
                    avoid,
                    objects=self.objects(),  # a stacked edit draws on the photo's own objects
                )
                if e is not None:
                    return e
        raise NoSet(f"no {'/'.join(kinds)} edit found in this photo")

    def objects(self) -> ObjectIndex:
        """The photo's objects at the current detail size (looked up once per size: the lookup hashes the photo).

        Objects whose cap_object is full are passed over: a set made on one would be built, written and
        checked, then rejected (cap_object threw away a fifth of a 480-item run).
        """
        if self.s not in self._objects:
            idx = objects_of(self.img, self.s)
            if self.cap_object is not None:
                ctx, source, cap = self.ctx, self.photo.source, self.cap_object
                idx = idx.sparing(lambda o: object_spent(ctx, source, o.x, o.y, cap))
            self._objects[self.s] = idx
        return self._objects[self.s]

    def view(self) -> View:
        return global_view(self.rng, self.w, self.h)

    def _store(self, arr: np.ndarray, role: str) -> ImageRef:
        ref = store_image(
            Image.fromarray(arr),
            self.ctx.image_dir,
            source=self.photo.source,
            license=self.photo.license,
            role=role,
            domain=self.photo.domain,
            fast=True,
        )
        remember(ref, arr)
        return ref

    def finish(self, family: str, images: list[_Img], answer: str, extra: dict[str, Any] | None = None) -> ImageSet:
        """Render every image (its edits applied, then its view) and record the construction."""
        refs, records = [], []
        for im in images:
            # an image carries at most one Edit; count_changes stacks its edits into the last variant
            arr = render(im.edits[-1].variant if im.edits else self.img, im.view)
            refs.append(self._store(arr, im.role))
            records.append(
                {
                    "role": im.role,
                    "view": im.view.record(),
                    "edits": [
                        {"kind": e.kind, "box_px": list(e.box), "bbox": list(im.view.box(e.box)), **e.record}
                        for e in im.edits
                    ],
                }
            )
        construction = {
            "version": CONSTRUCTION_VERSION,
            "family": family,
            "task": FAMILIES[family].value,
            "source": self.photo.source,
            "photo_size": [self.w, self.h],
            "detail_px": self.s,
            "n_images": len(images),
            "images": records,
            "answer": answer,
            "twin": answer in ("none", "0", "nothing"),
            **(extra or {}),
        }
        return ImageSet(images=refs, domain=self.photo.domain, kind="scene", construction=construction)


# ---------------------------------------------------------------------- families


def _which(b: SceneBuilder, changed: bool) -> ImageSet:
    """which_differs (one candidate edited) / which_unchanged (one candidate clean); twins: none qualifies."""
    # the answer first, evenly over the images it can be (Image 2-4); then enough images to hold it,
    # so that no answer text is more common than the others
    target = b.answers.randrange(1, 4)
    n = 4 if target == 3 else b.answers.choice([3, 4])
    twin = b.answers.random() < b.twin_rate
    imgs = [_Img(b.view(), "reference")]
    for k in range(1, n):
        edited = (k == target) == changed if not twin else not changed
        imgs.append(_Img(b.view(), "candidate:edited" if edited else "candidate:clean", [b.edit()] if edited else []))
    family = "which_differs" if changed else "which_unchanged"
    return b.finish(family, imgs, "none" if twin else str(target + 1), {"candidates": list(range(2, n + 1))})


def which_differs(b: SceneBuilder) -> ImageSet:
    """Image 1 and 2-3 other shots; exactly one other shot has a local change (or none has)."""
    return _which(b, True)


def which_unchanged(b: SceneBuilder) -> ImageSet:
    """Image 1 and 2-3 other shots, each with its own change but one (or all changed)."""
    return _which(b, False)


def odd_one_out(b: SceneBuilder) -> ImageSet:
    """3-4 shots; one differs from all others: the only edited one, or the only clean one among copies of an edit."""
    odd = b.answers.randrange(4)  # the answer first, evenly; then enough images to hold it
    n = 4 if odd == 3 else b.answers.choice([3, 4])
    e = b.edit()
    odd_edited = b.rng.random() < 0.5
    imgs = []
    for k in range(n):
        edited = (k == odd) == odd_edited
        imgs.append(_Img(b.view(), "edited" if edited else "clean", [e] if edited else []))
    return b.finish("odd_one_out", imgs, str(odd + 1))


def where_differs(b: SceneBuilder) -> ImageSet:
    """Two shots; one has a change inside one cell of a 3x3 grid (or none)."""
    twin = b.answers.random() < b.twin_rate
    cell = Region(3, b.answers.randrange(3), b.answers.randrange(3))
    x1, y1, x2, y2 = cell.box
    mx, my = CELL_MARGIN * (x2 - x1), CELL_MARGIN * (y2 - y1)
    within = (round((x1 + mx) * b.w), round((y1 + my) * b.h), round((x2 - mx) * b.w), round((y2 - my) * b.h))
    edited = b.rng.randrange(2)
    edits = [] if twin else [b.edit(within=within)]
    imgs = [
        _Img(b.view(), "edited" if (k == edited and edits) else "clean", edits if k == edited else []) for k in range(2)
    ]
    return b.finish("where_differs", imgs, "none" if twin else cell.key, {"grid": 3})


def count_across(b: SceneBuilder) -> ImageSet:
    """Image 1 and 3 other shots; k of them (0..3) carry their own change."""
    n = 4
    k = 0 if b.answers.random() < b.twin_rate else b.answers.randint(1, n - 1)
    marked = set(b.rng.sample(range(1, n), k))
    imgs = [_Img(b.view(), "reference")]
    for j in range(1, n):
        imgs.append(_Img(b.view(), "edited" if j in marked else "clean", [b.edit()] if j in marked else []))
    return b.finish("count_across", imgs, str(k), {"max_count": n - 1})


def count_changes(b: SceneBuilder) -> ImageSet:
    """Two shots; one carries 1-3 separate changes (0 for a twin)."""
    m = 0 if b.answers.random() < b.twin_rate else b.answers.randint(1, 3)
    edits: list[Edit] = []
    base = b.img
    for _ in range(m):
        # no moves: a person counts an object that moved as one change or as two (gone here, new there);
        # nor an object an earlier edit acted on: a clone of an island and that island's removal read as a move
        e = b.edit(avoid=[r for x in edits for r in _acted_on(x, b.s)], base=base, exclude=("moved",))
        edits.append(e)
        base = e.variant
    edited = b.rng.randrange(2)
    # the edits were made one on top of the other: the last variant holds them all
    imgs = [
        _Img(b.view(), "edited" if k == edited and edits else "clean", edits[-1:] if k == edited else [])
        for k in range(2)
    ]
    record = {"all_edits": [{"kind": e.kind, "box_px": list(e.box)} for e in edits]}
    fin = b.finish("count_changes", imgs, str(m), record)
    for rec in fin.construction["images"]:
        if rec["edits"]:
            view = View(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec["view"].items()})
            # each edit keeps its own record (object_px: the critic's cap_object counts the objects edited)
            rec["edits"] = [
                {"kind": e.kind, "box_px": list(e.box), "bbox": list(view.box(e.box)), **e.record} for e in edits
            ]
    return fin


def _grow(box, g):
    return (box[0] - g, box[1] - g, box[2] + g, box[3] + g)


def _acted_on(e: Edit, s: int) -> list[tuple[int, int, int, int]]:
    """Where a stacked edit may not act: the edit's box and the object it acted on (a clone's source), 2 s around."""
    boxes = [_grow(e.box, 2 * s)]
    if "object_px" in e.record:
        x, y = e.record["object_px"]
        boxes.append(_grow((x, y, x + s, y + s), 2 * s))
    return boxes


def change_kind(b: SceneBuilder) -> ImageSet:
    """Two shots; what happened from image 1 to image 2: added, removed, recoloured, moved, or nothing."""
    twin = b.answers.random() < b.twin_rate
    if twin:
        return b.finish("change_kind", [_Img(b.view(), "clean"), _Img(b.view(), "clean")], "nothing")
    # the answer is drawn first, evenly over what this photo allows: an added object in image 2 is
    # either a clone in image 2 or a removal in image 1, and either edit may be the one made
    answers = sorted({k for k in b.kinds} | {REVERSE[k] for k in b.kinds})
    answer = b.answers.choice(answers)
    ways = [(k, 1) for k in b.kinds if k == answer] + [(k, 0) for k in b.kinds if REVERSE[k] == answer]
    b.rng.shuffle(ways)
    for kind, edited in ways:
        try:
            e = b.edit(kind)
        except NoSet:
            continue
        imgs = [_Img(b.view(), "edited" if k == edited else "clean", [e] if k == edited else []) for k in range(2)]
        return b.finish("change_kind", imgs, answer, {"colour_photo": "recoloured" in b.kinds})
    raise NoSet(f"no edit for a change_kind answer {answer!r} in this photo")


def matching_pair(b: SceneBuilder) -> ImageSet:
    """3-4 shots; exactly two show the same content, every other one has its own change."""
    pair = sorted(b.answers.sample(range(4), 2))  # the answer first, evenly; then enough images to hold it
    n = 4 if 3 in pair else b.answers.choice([3, 4])
    imgs = [_Img(b.view(), "clean" if k in pair else "edited", [] if k in pair else [b.edit()]) for k in range(n)]
    return b.finish("matching_pair", imgs, f"{pair[0] + 1}-{pair[1] + 1}")


def _close_ups(b: SceneBuilder, count: int) -> list[tuple[View, tuple[int, int, int, int]]]:
    """`count` close-up views at separate places, with the photo area (x1, y1, x2, y2) each shows."""
    out, centres = [], []
    short = min(b.w, b.h)
    for attempt in range(40):
        if len(out) == count:
            break
        side = b.rng.uniform(0.25, 0.42)
        # near the photo's objects first; a photo with one or two has no separate places near them
        cx, cy = _centre(b, side * short, anywhere=attempt >= 12)
        if any(math.hypot(cx - x, cy - y) < 0.3 * short for x, y in centres):
            continue
        zoom = min(b.rng.uniform(1.2, 2.0), MAX_VIEW_SIDE / (side * short * 1.35))
        v = close_up(b.rng, b.w, b.h, side, max(1.0, zoom), (cx, cy))
        x, y, w, h = v.crop
        out.append((v, (x, y, x + w, y + h)))
        centres.append((cx, cy))
    if len(out) < count:
        raise NoSet("the photo is too small for separate close-ups")
    return out


def _centre(b: SceneBuilder, crop: float, anywhere: bool = False) -> tuple[float, float]:
    """A close-up's centre (photo px): near one of the photo's objects, so the close-up has one to edit."""
    objs = [] if anywhere else [o for o in b.objects().objects if inside(o.box, b.within)]
    if not objs:
        return b.rng.uniform(0.2, 0.8) * b.w, b.rng.uniform(0.2, 0.8) * b.h
    o = b.rng.choice(objs)
    jx, jy = (b.rng.uniform(-0.25, 0.25) * crop for _ in range(2))
    return min(max(o.x + o.w / 2 + jx, 0.2 * b.w), 0.8 * b.w), min(max(o.y + o.h / 2 + jy, 0.2 * b.h), 0.8 * b.h)


def _inner(area: tuple[int, int, int, int], margin: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = area
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    return (round(x1 + mx), round(y1 + my), round(x2 - mx), round(y2 - my))


def crop_match(b: SceneBuilder) -> ImageSet:
    """Image 1 and 2-3 close-ups of other parts of it; all but one close-up carry a change (twin: all)."""
    twin = b.answers.random() < b.twin_rate
    clean = -1 if twin else b.answers.randrange(1, 4)  # the answer first, evenly; then enough close-ups to hold it
    n = 4 if clean == 3 else b.answers.choice([3, 4])
    imgs = [_Img(b.view(), "reference")]
    for k, (v, area) in enumerate(_close_ups(b, n - 1), start=1):
        edits = [] if k == clean else [b.edit(within=_inner(area, 0.15))]
        imgs.append(_Img(v, "close-up:edited" if edits else "close-up:clean", edits))
    return b.finish("crop_match", imgs, "none" if twin else str(clean + 1), {"candidates": list(range(2, n + 1))})


def zoom_locate(b: SceneBuilder) -> ImageSet:
    """Image 1 and a close-up of part of it with one change inside a 3x3 cell of the close-up (twin: none)."""
    twin = b.answers.random() < b.twin_rate
    ((v, area),) = _close_ups(b, 1)
    v = View(v.crop, v.size, v.gain, v.gamma, v.jpeg)
    x, y, w, h = v.crop

    def within_of(cell: Region) -> tuple[int, int, int, int]:
        cx1, cy1, cx2, cy2 = cell.box
        mx, my = CELL_MARGIN * (cx2 - cx1), CELL_MARGIN * (cy2 - cy1)
        return (
            round(x + (cx1 + mx) * w),
            round(y + (cy1 + my) * h),
            round(x + (cx2 - mx) * w),
            round(y + (cy2 - my) * h),
        )

    cells = [Region(3, r, c) for r in range(3) for c in range(3)]
    index = b.objects()
    # a cell that holds an object of the photo when there is one (an edit needs something to act on)
    holding = [c for c in cells if index.pick(b.rng, b.s, within_of(c), [], outlined=False) is not None]
    cell = b.rng.choice(holding or cells)
    within = within_of(cell)
    saved = b.s
    b.s = max(10, min(b.s, round(0.6 * min(within[2] - within[0], within[3] - within[1]))))
    try:
        edits = [] if twin else [b.edit(within=within)]
    finally:
        b.s = saved
    imgs = [_Img(b.view(), "reference"), _Img(v, "close-up:edited" if edits else "close-up:clean", edits)]
    return b.finish("zoom_locate", imgs, "none" if twin else cell.key, {"grid": 3})


BUILDERS = {
    "which_differs": which_differs,
    "which_unchanged": which_unchanged,
    "odd_one_out": odd_one_out,
    "where_differs": where_differs,
    "count_across": count_across,
    "count_changes": count_changes,
    "change_kind": change_kind,
    "matching_pair": matching_pair,
    "crop_match": crop_match,
    "zoom_locate": zoom_locate,
}
DEFAULT_FAMILIES = tuple(BUILDERS)
