"""The offline image pairer: image sets of real photos whose answer is known by construction.

By default (`kinds` = the natural edits) it makes the task families of `scene_sets`: every image its
own shot of the photo, natural edits, close-ups; photos are drawn with weight growing with their
size (a small photo has no zoom regime: its glance view is the photo itself). The rest of this
module is the opt-in drawn kinds ("recolor", "paste_shape", ...) of earlier versions, which lay out
pixel copies of one photo and are never used unless asked for by `kinds`:

From a real photo of the pool it makes one edited variant (a detail recoloured, a mark or patch
pasted, a detail erased or shifted; see `edits`) and lays out copies of the photo and of the
variant so that the set supports the task it aims at: one variant among copies (which differs,
odd one out), a pair (where, attribute), k variants of n (count). With related photo pairs from
the hash index it makes "which shot is unedited" sets. Everything is decided by the work item's
seed, and the ground truth goes into `ImageSet.construction`.

The opt-in kind "fine_texture" makes a different set: a square crop of a photo (resized to
`image_side`) with a yellow-framed grid cell, two images, the checkerboard inside it in either one
and its flat mean in the other, aligned so that the `thumbnail_side`-px thumbnails of both images
are identical (a task for training a policy to zoom; see `edits.texture_cell`).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from PIL import Image

from agents.base import AgentContext, ImageRef, ImageSet, WorkItem
from agents.image_cache import store_image
from agents.offline.edits import (
    COLOUR_KINDS,
    EDIT_KINDS,
    TEXTURE_GRID,
    Edit,
    Rect,
    make_edit,
    paste_shape,
    recolor,
    texture_cell,
)
from agents.offline.natural_edits import NATURAL_KINDS, natural_edit
from agents.offline.pixel_solver import TAU
from agents.offline.pixels import diff_map, normalised_box, pixels, remember
from agents.offline.regions import Region
from agents.offline.scene_sets import BUILDERS, DEFAULT_FAMILIES, NoSet, SceneBuilder
from agents.offline.view import GLANCE_PIXELS
from schemas import TaskType, TokenUsage

EDIT_TASKS = (
    TaskType.WHICH_DIFFERS,
    TaskType.WHERE_DIFFERS,
    TaskType.COUNT_ACROSS,
    TaskType.ODD_ONE_OUT,
    TaskType.ATTRIBUTE_COMPARE,
)
CELL_MARGIN = 0.15  # where_differs edits stay this far (share of a cell) inside their 3x3 cell
EDGE_MARGIN = 0.04  # other edits keep this share of the image side away from its border
MEASURABLE_PX = 12  # an edit should change at least this many pixels by more than the verifier's threshold
RELATED_EDGE = 0.15  # related sets: keep marks off the borders, which the other shot may not show


def _layout(task: TaskType, rng: random.Random, max_images: int) -> tuple[int, list[int]]:
    """Number of images and which of them are the edited variant, for the task aimed at."""
    big = max(3, min(4, max_images))
    if task == TaskType.WHICH_DIFFERS:
        n = rng.randint(3, big)
        return n, [rng.randrange(1, n)]
    if task == TaskType.ODD_ONE_OUT:
        n = rng.randint(3, big)
        odd = rng.randrange(n)
        # half the time the odd one is the unedited photo among variants
        return n, ([odd] if rng.random() < 0.5 else [i for i in range(n) if i != odd])
    if task == TaskType.COUNT_ACROSS:
        n = rng.randint(3, big)
        k = rng.randrange(1, n)  # never 0 or n: "none"/"all" would be guessable without images
        return n, sorted(rng.sample(range(n), k))
    if task == TaskType.ATTRIBUTE_COMPARE and big >= 3 and rng.random() < 0.25:
        return 3, [rng.randrange(3)]
    return 2, [rng.randrange(2)]  # where_differs, attribute_compare


def _area(h: int, w: int, margin: float) -> Rect:
    mx, my = max(1, round(w * margin)), max(1, round(h * margin))
    return (mx, my, w - mx, h - my)


def _cell_area(h: int, w: int, cell: Region) -> Rect:
    x1, y1, x2, y2 = cell.box
    mx, my = CELL_MARGIN * (x2 - x1) * w, CELL_MARGIN * (y2 - y1) * h
    return (round(x1 * w + mx), round(y1 * h + my), round(x2 * w - mx), round(y2 * h - my))


SCENE_TRIES = 24  # (photo, family) draws before a work item fails


class OfflinePairer:
    """Pairer agent over `ctx.pool`: procedural edits of real photos, ground truth by construction."""

    def __init__(
        self,
        related_rate: float = 0.12,
        max_images: int = 4,
        kinds: tuple[str, ...] = NATURAL_KINDS,
        image_side: int | None = None,
        thumbnail_side: int | None = None,
        families: tuple[str, ...] = DEFAULT_FAMILIES,
        twin_rate: float = 0.15,
        cap_object: int | None = None,
    ) -> None:
        self.families, self.twin_rate = families, twin_rate
        self.cap_object = cap_object  # the critic's: objects already in this many accepted samples are not edited
        self.related_rate = related_rate
        self.max_images = max_images
        self.kinds = kinds
        self.image_side = image_side  # fine_texture sets: side of their square images (None: from the photo)
        self.thumbnail_side = thumbnail_side  # overrides ctx.thumbnail_side (the size "fine" is judged at)

    async def pair(self, item: WorkItem, ctx: AgentContext) -> tuple[ImageSet, TokenUsage]:
        """Make the image set of `item` (deterministic from `item.seed`)."""
        return self.make(item, ctx), TokenUsage()

    def make(self, item: WorkItem, ctx: AgentContext) -> ImageSet:
        """Synchronous body of `pair`."""
        photos = ctx.pool.photos
        if not photos:
            raise ValueError("the photo pool is empty: no usable images to pair")
        rng = random.Random(item.seed)
        if "fine_texture" in self.kinds and rng.random() < 1 / len(self.kinds):  # never drawn by default kinds
            return self._fine_texture(rng, ctx, rng.randrange(len(photos)))
        natural = tuple(k for k in self.kinds if k in NATURAL_KINDS)
        if ctx.pool.related and rng.random() < self.related_rate:
            try:
                return self._related(rng, ctx)
            except ValueError:
                if not natural:  # the drawn kinds always find a spot; natural edits may not on a small pair
                    raise
        if natural:
            return self._scene(rng, ctx, natural)
        colour_kinds = any(k in COLOUR_KINDS for k in self.kinds)
        task = rng.choice([t for t in EDIT_TASKS if colour_kinds or t not in _COLOUR_TASKS])
        index = rng.randrange(len(photos))
        return self._edited(rng, ctx, task, index)

    def _scene(self, rng: random.Random, ctx: AgentContext, kinds: tuple[str, ...]) -> ImageSet:
        """A default-family set; another photo / family is tried when one cannot make it."""
        photos = ctx.pool.photos
        # weight ~ photo area over four glance views; a photo within 1.5 glance views has no zoom regime
        # (its glance view is itself), so it is drawn only when the pool has nothing larger
        weights = [
            0.0 if p.width * p.height < 1.5 * GLANCE_PIXELS else min(1.0, p.width * p.height / (4 * GLANCE_PIXELS))
            for p in photos
        ]
        if not any(weights):
            weights = [1.0] * len(photos)
        last: Exception | None = None
        # natural edits need an object on plain ground, which a photo at one detail size may lack: the
        # same family and the same answer are tried on other photos (a new draw of them would favour
        # answers that need nothing, e.g. twins), and only after half the tries another family
        family, answer_seed = rng.choice(self.families), rng.random()
        for attempt in range(SCENE_TRIES):
            if attempt == SCENE_TRIES // 2:
                family, answer_seed = rng.choice(self.families), rng.random()
            index = rng.choices(range(len(photos)), weights)[0]
            try:
                answers = random.Random(answer_seed)
                builder = SceneBuilder(
                    ctx, photos[index], rng, kinds, self.twin_rate, answers=answers, cap_object=self.cap_object
                )
                images = BUILDERS[family](builder)
            except NoSet as e:
                last = e
                continue
            images.construction["photo_index"] = index
            return images
        raise ValueError(f"could not make a set from the drawn photos ({last})")

    def _store(self, ctx: AgentContext, like: ImageRef, edit: Edit) -> ImageRef:
        ref = store_image(
            Image.fromarray(edit.variant),
            ctx.image_dir,
            source=like.source,
            license=like.license,
            role=f"variant:{edit.kind}",
            domain=like.domain,
            fast=True,
        )
        remember(ref, edit.variant)
        return ref

    def _edit(self, rng: random.Random, img: np.ndarray, kinds: tuple[str, ...], scale: float, within: Rect) -> Edit:
        """An edit that changes at least MEASURABLE_PX pixels clearly (else the strongest of a few tries)."""
        kind = rng.choice(kinds)
        best, best_px = None, -1
        for _ in range(4):  # an edit on a flat spot can come out too faint to measure; retrying is cheap
            edit = make_edit(kind, img, rng, scale, within)
            if edit is None:
                continue
            x1, y1, x2, y2 = edit.box
            clear = int((diff_map(img[y1:y2, x1:x2], edit.variant[y1:y2, x1:x2]) > TAU).sum())
            if clear >= MEASURABLE_PX:
                return edit
            if clear > best_px:
                best, best_px = edit, clear
        if best is None:
            raise ValueError("could not make a visible edit of this photo")
        return best

    def _edited(self, rng: random.Random, ctx: AgentContext, task: TaskType, index: int) -> ImageSet:
        original = ctx.pool.photos[index]
        img = pixels(original)
        h, w = img.shape[:2]
        scale = max(1.0, max(h, w) / (self.thumbnail_side or ctx.thumbnail_side))
        n, marked = _layout(task, rng, self.max_images)
        cell = None
        if task == TaskType.WHERE_DIFFERS:
            cell = Region(3, rng.randrange(3), rng.randrange(3))
            within = _cell_area(h, w, cell)
        else:
            within = _area(h, w, EDGE_MARGIN)
        kinds = tuple(k for k in self.kinds if k in (COLOUR_KINDS if task in _COLOUR_TASKS else EDIT_KINDS))
        edit = self._edit(rng, img, kinds, scale, within)
        variant = self._store(ctx, original, edit)
        construction: dict[str, Any] = {
            "version": 1,
            "task": task.value,
            "edit_kind": edit.kind,
            "photo_index": index,
            "source": original.source,
            "n_images": n,
            "marked": marked,
            "bbox": list(normalised_box(edit.box, w, h)),
            "box_px": list(edit.box),
            "changed_px": edit.changed_px,
            "scale": round(scale, 3),
            "cell": cell.key if cell else None,
            **edit.record,
        }
        images = [variant if i in marked else original for i in range(n)]
        return ImageSet(images=images, domain=original.domain, kind="edit", construction=construction)

    def _texture_geometry(self, ctx: AgentContext, short_side: int) -> tuple[int, int]:
        """(image side, block): block = image side / thumbnail side, even, so checkerboards average out."""
        thumb = self.thumbnail_side or ctx.thumbnail_side
        if self.image_side:
            side, block = self.image_side, self.image_side // thumb
            if block * thumb != side or block < 2 or block % 2 or thumb % TEXTURE_GRID:
                raise ValueError(
                    f"fine_texture: image_side {side} must be an even multiple (>= 2) of thumbnail_side {thumb}"
                )
            return side, block
        block = (short_side // thumb) // 2 * 2
        if block < 2:
            raise ValueError(f"fine_texture: the photo ({short_side} px) is under twice the thumbnail side {thumb}")
        return block * thumb, block

    def _fine_texture(self, rng: random.Random, ctx: AgentContext, index: int) -> ImageSet:
        """Copies of a square photo crop with a framed cell: checkerboard in one, its flat mean in the rest."""
        original = ctx.pool.photos[index]
        img = pixels(original)
        h, w = img.shape[:2]
        short = min(h, w)
        side, block = self._texture_geometry(ctx, short)
        crop = rng.randint(min(short, max(side, short // 3)), short)
        y, x = rng.randint(0, h - crop), rng.randint(0, w - crop)
        base = Image.fromarray(np.ascontiguousarray(img[y : y + crop, x : x + crop]))
        base_arr = np.asarray(base.resize((side, side), Image.Resampling.BILINEAR) if crop != side else base)
        cell = rng.randrange(TEXTURE_GRID * TEXTURE_GRID)
        # two images, the checkerboard in either: options "Image 1"/"Image 2" then map letter k to image k
        n, marked = 2, [rng.randrange(2)]
        flat, box = texture_cell(base_arr, cell, block, checker=False)
        checker, _ = texture_cell(base_arr, cell, block, checker=True)
        refs = {}
        for name, arr in (("fine_texture_flat", flat), ("fine_texture", checker)):
            edit = Edit(name, arr, box, 0)
            refs[name] = self._store(ctx, original, edit)
        x1, y1, x2, y2 = box
        construction: dict[str, Any] = {
            "version": 1,
            "task": TaskType.WHICH_DIFFERS.value,
            "edit_kind": "fine_texture",
            "photo_index": index,
            "source": original.source,
            "n_images": n,
            "marked": marked,
            "bbox": list(normalised_box(box, side, side)),
            "box_px": list(box),
            "changed_px": (x2 - x1) * (y2 - y1),
            "scale": float(block),
            "cell": cell,
            "grid": TEXTURE_GRID,
            "image_side": side,
            "crop_px": [x, y, crop],
        }
        images = [refs["fine_texture"] if i in marked else refs["fine_texture_flat"] for i in range(n)]
        return ImageSet(images=images, domain=original.domain, kind="edit", construction=construction)

    def _related(self, rng: random.Random, ctx: AgentContext) -> ImageSet:
        i, j, dist = rng.choice(ctx.pool.related)
        ref_i, cand_i = (i, j) if rng.random() < 0.5 else (j, i)
        ref, cand = ctx.pool.photos[ref_i], ctx.pool.photos[cand_i]
        img = pixels(cand)
        h, w = img.shape[:2]
        scale = max(1.0, max(h, w) / (self.thumbnail_side or ctx.thumbnail_side))
        within = _area(h, w, RELATED_EDGE)
        if any(k in NATURAL_KINDS for k in self.kinds):  # an object cloned or healed, not a drawn mark
            side = max(10, round((0.002 * h * w) ** 0.5))
            edit = None
            for kind in ("added", "removed", "added"):
                edit = natural_edit(kind, img, rng, side, within)
                if edit is not None:
                    break
        else:
            make = paste_shape if rng.random() < 0.6 else recolor
            edit = make(img, rng, scale, within)
        if edit is None:
            raise ValueError("could not make a visible edit of this photo")
        edited_ref = self._store(ctx, cand, edit)
        clean_pos = rng.choice([1, 2])
        images = [ref, cand, edited_ref] if clean_pos == 1 else [ref, edited_ref, cand]
        construction: dict[str, Any] = {
            "version": 1,
            "task": TaskType.SAME_SOURCE.value,
            "edit_kind": edit.kind,
            "pair": [ref_i, cand_i],
            "hamming": dist,
            "source": cand.source,
            "reference_source": ref.source,
            "n_images": 3,
            "clean": clean_pos,
            "edited": 3 - clean_pos,
            "marked": [3 - clean_pos],
            "bbox": list(normalised_box(edit.box, w, h)),
            "box_px": list(edit.box),
            "changed_px": edit.changed_px,
            "scale": round(scale, 3),
            **edit.record,
        }
        return ImageSet(images=images, domain=ref.domain, kind="related", construction=construction)


_COLOUR_TASKS = (TaskType.COUNT_ACROSS, TaskType.ATTRIBUTE_COMPARE)
