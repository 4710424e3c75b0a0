"""The offline pairer: controlled small edits of real photos, recorded ground truth, related sets."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from agents.base import AgentContext, PhotoPool, WorkItem
from agents.offline import EDIT_KINDS, OfflinePairer, OfflineVerifier, OfflineWriter
from agents.offline.pixel_solver import TAU
from agents.offline.pixels import pixels, thumbnail
from schemas import TaskType


def _sets_of_kind(ctx: AgentContext, kind: str, count: int) -> list:
    pairer = OfflinePairer(kinds=(kind,), related_rate=0.0)
    return [pairer.make(WorkItem(index=s, seed=1000 + s), ctx) for s in range(count)]


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_each_edit_kind_is_recovered_from_the_pixels(ctx: AgentContext, kind: str) -> None:
    writer, verifier = OfflineWriter(), OfflineVerifier()
    sets = _sets_of_kind(ctx, kind, 8)
    recovered = 0
    for i, images in enumerate(sets):
        assert images.construction["edit_kind"] == kind
        draft = writer.write_sync(images, seed=i, feedback=[])
        verdict = verifier.verify_sync(images, draft)
        recovered += verdict.agrees
    # a few edits may land on flat spots and be too faint; most must be measurable
    assert recovered >= 6, f"{kind}: the verifier recovered only {recovered}/8 answers"


def test_pair_is_deterministic_from_the_seed(ctx: AgentContext) -> None:
    pairer = OfflinePairer(kinds=EDIT_KINDS)
    a = pairer.make(WorkItem(index=0, seed=77), ctx)
    b = pairer.make(WorkItem(index=5, seed=77), ctx)
    c = pairer.make(WorkItem(index=0, seed=78), ctx)
    assert [r.sha256 for r in a.images] == [r.sha256 for r in b.images]
    assert a.construction == b.construction
    assert a.construction != c.construction


def test_edit_is_small_local_and_recorded(ctx: AgentContext) -> None:
    pairer = OfflinePairer(kinds=EDIT_KINDS, related_rate=0.0)
    for seed in range(12):
        images = pairer.make(WorkItem(index=seed, seed=seed), ctx)
        c = images.construction
        json.dumps(c)  # JSON-able ground truth
        assert 2 <= len(images.images) <= 4
        assert c["n_images"] == len(images.images)
        original = ctx.pool.photos[c["photo_index"]]
        assert images.domain == original.domain
        for i, ref in enumerate(images.images):
            assert ref.source == original.source  # splits group variants with their photo
            if i in c["marked"]:
                assert ref.role == f"variant:{c['edit_kind']}"
            else:
                assert ref.sha256 == original.sha256
        variant = pixels(images.images[c["marked"][0]])
        base = pixels(original)
        x1, y1, x2, y2 = c["box_px"]
        changed = np.abs(variant.astype(int) - base.astype(int)).max(axis=2) > 0
        outside = changed.copy()
        outside[y1:y2, x1:x2] = False
        assert int(outside.sum()) == 0, "pixels changed outside the recorded box"
        h, w = changed.shape
        assert (x2 - x1) * (y2 - y1) < 0.02 * w * h, "the difference is not small"
        assert int(changed.sum()) == c["changed_px"]


def test_difference_is_not_visible_in_the_thumbnail_but_is_at_full_size(ctx: AgentContext) -> None:
    pairer = OfflinePairer(kinds=EDIT_KINDS, related_rate=0.0)
    invisible = 0
    for seed in range(20):
        images = pairer.make(WorkItem(index=seed, seed=seed), ctx)
        c = images.construction
        orig = images.images[next(i for i in range(len(images.images)) if i not in c["marked"])]
        var = images.images[c["marked"][0]]
        side = ctx.thumbnail_side
        t_diff = np.abs(thumbnail(var, side).astype(int) - thumbnail(orig, side).astype(int)).max()
        f_diff = np.abs(pixels(var).astype(int) - pixels(orig).astype(int)).max()
        assert f_diff > 2 * TAU
        invisible += t_diff <= TAU
    assert invisible >= 12  # most edits vanish in the thumbnail; the critic rejects the others


def test_tasks_aimed_at_cover_five_types(ctx: AgentContext) -> None:
    pairer = OfflinePairer(kinds=EDIT_KINDS, related_rate=0.0)
    tasks = {pairer.make(WorkItem(index=s, seed=s), ctx).construction["task"] for s in range(40)}
    legacy = {"which_differs", "where_differs", "count_across", "odd_one_out", "attribute_compare"}
    assert tasks >= legacy


def test_related_pairs_make_same_source_sets(stereo_ctx: AgentContext) -> None:
    pairer = OfflinePairer(kinds=EDIT_KINDS, related_rate=1.0)
    writer, verifier = OfflineWriter(), OfflineVerifier()
    agreed = 0
    for seed in range(6):
        images = pairer.make(WorkItem(index=seed, seed=seed), stereo_ctx)
        c = images.construction
        assert images.kind == "related" and len(images.images) == 3
        assert images.images[0].source != images.images[c["clean"]].source  # the other shot
        assert images.images[c["clean"]].source == images.images[c["edited"]].source
        draft = writer.write_sync(images, seed=seed, feedback=[])
        assert draft.task_type == TaskType.SAME_SOURCE
        agreed += verifier.verify_sync(images, draft).agrees
    assert agreed >= 5


def test_pair_is_async_and_free(ctx: AgentContext) -> None:
    images, usage = asyncio.run(OfflinePairer(kinds=EDIT_KINDS).pair(WorkItem(index=0, seed=3), ctx))
    assert images.images and usage.calls == 0


def test_empty_pool_is_a_clear_error(ctx: AgentContext) -> None:
    empty = AgentContext(image_dir=ctx.image_dir, pool=PhotoPool(photos=[]), registry=ctx.registry)
    with pytest.raises(ValueError, match="pool is empty"):
        OfflinePairer(kinds=EDIT_KINDS).make(WorkItem(index=0, seed=0), empty)
