"""The opt-in fine_texture kind: zoom-only texture sets, checked by the verifier and critic from the pixels."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from agents.base import AgentContext, WorkItem
from agents.offline import EDIT_KINDS, build_offline_agents
from agents.offline.calibration import run_one
from agents.offline.pixels import pixels
from schemas import LETTERS, TaskType

DEMO = {"kinds": ["fine_texture"], "image_side": 96, "thumbnail_side": 16}


def _box16(arr: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((16, 16), Image.Resampling.BOX))


def test_fine_texture_is_opt_in_only() -> None:
    assert "fine_texture" not in EDIT_KINDS
    assert "fine_texture" not in build_offline_agents().pairer.kinds
    assert build_offline_agents(DEMO).pairer.kinds == ("fine_texture",)


def test_bad_geometry_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="image_side"):
        build_offline_agents({**DEMO, "image_side": 100})  # not a multiple of 16
    with pytest.raises(ValueError, match="image_side"):
        build_offline_agents({**DEMO, "image_side": 48})  # 3 px blocks: a checkerboard cannot average out


def test_sets_are_identical_at_the_overview_and_differ_only_in_the_cell(ctx: AgentContext) -> None:
    agents = build_offline_agents(DEMO)
    targets = set()
    for seed in range(12):
        images = agents.pairer.make(WorkItem(index=seed, seed=seed), ctx)
        c = images.construction
        arrays = [pixels(r) for r in images.images]
        assert len(arrays) == 2 and all(a.shape == (96, 96, 3) for a in arrays)
        assert c["edit_kind"] == "fine_texture" and c["task"] == "which_differs" and len(c["marked"]) == 1
        target = c["marked"][0]
        targets.add(target)
        flat = arrays[1 - target]
        diff = np.abs(arrays[target].astype(int) - flat.astype(int)).max(axis=2) > 0
        x1, y1, x2, y2 = c["box_px"]
        assert diff[y1:y2, x1:x2].all() and diff.sum() == (x2 - x1) * (y2 - y1)  # only the inside of the frame
        overviews = [_box16(a) for a in arrays]
        assert all(np.array_equal(overviews[0], o) for o in overviews)  # the tiny policy's view: no answer
    assert targets == {0, 1}  # either image holds the checkerboard


def test_writer_verifier_and_critic_accept_with_the_answer_from_the_pixels(ctx: AgentContext) -> None:
    agents = build_offline_agents(DEMO)
    for seed in range(8):
        item = WorkItem(index=seed, seed=seed)
        images = agents.pairer.make(item, ctx)
        draft = agents.writer.write_sync(images, seed=seed, feedback=[])
        assert draft.task_type == TaskType.WHICH_DIFFERS and "checkerboard" in draft.question
        assert draft.options == ["Image 1", "Image 2"]  # image order: letter and image agree in every sample
        assert draft.options[LETTERS.index(draft.answer)] == f"Image {images.construction['marked'][0] + 1}"
        verdict = agents.verifier.verify_sync(images, draft)
        assert verdict.agrees and verdict.method == "pixel-diff" and "Laplacian" in verdict.notes
        # the verifier never reads the construction record: a wrong answer key is caught
        wrong = draft.model_copy(update={"answer": LETTERS[1 - LETTERS.index(draft.answer)]})
        assert not agents.verifier.verify_sync(images, wrong).agrees
        outcome, task, reasons = asyncio.run(run_one(agents, item, ctx, max_revisions=2))
        assert outcome == "accepted", reasons


def test_a_critic_judging_at_a_larger_thumbnail_rejects_them(ctx: AgentContext) -> None:
    """At 48 px the 3 px checkerboard no longer averages out: the sample is not fine-grained there."""
    pairs = build_offline_agents(DEMO)
    strict = build_offline_agents({**DEMO, "thumbnail_side": 48, "image_side": 96})
    for seed in range(4):
        images = pairs.pairer.make(WorkItem(index=seed, seed=seed), ctx)
        draft = pairs.writer.write_sync(images, seed=seed, feedback=[])
        verdict = pairs.verifier.verify_sync(images, draft)
        assert strict.critic.critique_sync(images, draft, verdict, ctx).reasons == ["thumbnail_solvable"]
