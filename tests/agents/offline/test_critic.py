"""The offline critic: rejects broken, coarse and repeated samples, sends biased ones back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from agents.base import AgentContext, Draft, ImageSet, PhotoPool
from agents.offline import REASON_CODES, OfflineCritic, OfflineVerifier, OfflineWriter
from agents.offline.critic import length_outlier
from agents.offline.pixels import pixels
from schemas import LETTERS, Box, TaskType, VerifierVerdict

from .conftest import SetRegistry, hand_made_set


def _run(critic: OfflineCritic, images: ImageSet, d: Draft, ctx: AgentContext):
    v = OfflineVerifier().verify_sync(images, d)
    c = critic.critique_sync(images, d, v, ctx)
    assert set(c.reasons) <= set(REASON_CODES)
    return v, c


def _marked(ctx: AgentContext, name: str, box: tuple[int, int, int, int], outline: bool) -> tuple:
    """The pool photo `name` with a red square drawn at `box` (outline only, or filled)."""
    base = next(p for p in ctx.pool.photos if p.source == f"skimage:{name}")
    img = Image.fromarray(pixels(base).copy())
    draw = ImageDraw.Draw(img)
    if outline:
        draw.rectangle(box, outline=(220, 30, 30), width=1)
    else:
        draw.rectangle(box, fill=(220, 30, 30))
    return base, np.asarray(img)


def _which_set(ctx: AgentContext, name: str, box, outline: bool) -> ImageSet:
    base, variant = _marked(ctx, name, box, outline)
    h, w = variant.shape[:2]
    x1, y1, x2, y2 = box
    construction = {
        "task": "which_differs",
        "edit_kind": "paste_shape",
        "marked": [2],
        "bbox": [x1 / w, y1 / h, (x2 + 1) / w, (y2 + 1) / h],
        "colour": "red",
        "shape": "square",
    }
    return hand_made_set(ctx, base, variant, marked=[2], n=3, construction=construction)


def test_a_fine_edit_is_accepted_once_then_is_a_near_duplicate(ctx: AgentContext) -> None:
    images = _which_set(ctx, "chelsea", (60, 40, 66, 46), outline=True)  # a 7-px outline: below one thumb pixel
    d = OfflineWriter().write_sync(images, seed=1, feedback=[])
    critic = OfflineCritic()
    v, c = _run(critic, images, d, ctx)
    assert v.agrees and c.verdict == "accept", c
    assert len(ctx.registry.keys) == 1
    _, again = _run(critic, images, d, ctx)
    assert again.verdict == "reject" and again.reasons == ["near_duplicate"]


def test_a_large_edit_is_rejected_as_visible_in_the_thumbnail(ctx: AgentContext) -> None:
    images = _which_set(ctx, "chelsea", (60, 40, 100, 80), outline=False)  # a 40-px block
    d = OfflineWriter().write_sync(images, seed=1, feedback=[])
    v, c = _run(OfflineCritic(), images, d, ctx)
    assert v.agrees  # the answer is right ...
    assert c.verdict == "reject" and c.reasons == ["thumbnail_solvable"]  # ... but no zoom is needed
    assert not ctx.registry.keys


def test_a_faint_edit_is_rejected_as_weak_evidence(ctx: AgentContext) -> None:
    images = _which_set(ctx, "chelsea", (60, 40, 61, 42), outline=False)  # 2 x 3 pixels
    d = OfflineWriter().write_sync(images, seed=1, feedback=[])
    v, c = _run(OfflineCritic(), images, d, ctx)
    assert c.verdict == "reject" and c.reasons == ["weak_evidence"]


def test_disagreement_rejects_even_when_the_verdict_claims_agreement(edit_sets, ctx: AgentContext) -> None:
    seed, images = edit_sets[0]
    d = OfflineWriter().write_sync(images, seed=seed, feedback=[])
    wrong = d.model_copy(update={"answer": LETTERS[(LETTERS.index(d.answer) + 1) % len(d.options)]})
    critic = OfflineCritic()
    c = critic.critique_sync(images, wrong, OfflineVerifier().verify_sync(images, wrong), ctx)
    assert c.verdict == "reject" and c.reasons == ["verifier_disagrees"]
    liar = VerifierVerdict(answer=wrong.answer, agrees=True, method="pixel-diff", confidence=1.0)
    c = critic.critique_sync(images, wrong, liar, ctx)
    assert c.verdict == "reject" and c.reasons == ["verifier_disagrees"]


def test_option_length_bias_is_sent_back_and_the_revision_passes(edit_sets, ctx: AgentContext) -> None:
    writer, critic = OfflineWriter(), OfflineCritic()
    tried = 0
    for seed, images in edit_sets:
        d = writer.write_sync(images, seed=seed, feedback=[])
        if not length_outlier(d.options, LETTERS.index(d.answer)):
            continue
        v, c = _run(critic, images, d, ctx)
        if c.verdict != "revise":  # e.g. visible in the thumbnail: rejected before any text check
            continue
        assert c.reasons == ["option_length_bias"]
        r = writer.write_sync(images, seed=seed, feedback=[c.feedback], attempt=1)
        assert r != d
        v2, c2 = _run(critic, images, r, ctx)
        assert v2.agrees and c2.verdict == "accept", c2
        tried += 1
        if tried == 3:
            return
    pytest.fail(f"only {tried} length-biased drafts reached the text checks")


def test_answer_position_bias_is_sent_back_and_moved(edit_sets, ctx: AgentContext) -> None:
    writer = OfflineWriter()
    for seed, images in edit_sets:
        d = writer.write_sync(images, seed=seed, feedback=[])
        critic = OfflineCritic()
        v, c = _run(critic, images, d, AgentContext(ctx.image_dir, ctx.pool, SetRegistry(), thumbnail_side=32))
        if c.verdict != "accept" or len(d.options) < 3:
            continue
        # 30 earlier accepted samples all had their answer at this letter
        critic = OfflineCritic()
        for _ in range(30):
            critic.note_accepted(len(d.options), LETTERS.index(d.answer))
        _, c = _run(critic, images, d, ctx)
        assert c.verdict == "revise" and c.reasons == ["answer_position_bias"]
        r = writer.write_sync(images, seed=seed, feedback=[c.feedback], attempt=1)
        assert r.answer != d.answer
        _, c2 = _run(critic, images, r, ctx)
        assert c2.verdict == "accept", c2
        return
    pytest.fail("no accepted sample with three or more options")


def test_a_difference_straddling_two_regions_is_ambiguous(ctx: AgentContext) -> None:
    base, variant = _marked(ctx, "brick", (80, 30, 90, 36), outline=True)  # across x = 256/3
    images = hand_made_set(ctx, base, variant, marked=[1], n=2, construction={})
    d = Draft(
        question="The two images are identical except for one small region. Where in the image is that region?",
        options=["top left", "top centre", "bottom right", "middle centre"],
        answer="B",  # just over half of the changed pixels lie right of the line
        task_type=TaskType.WHERE_DIFFERS,
        evidence=[Box(image_index=1, bbox=(0.3, 0.1, 0.36, 0.15))],
    )
    v, c = _run(OfflineCritic(), images, d, ctx)
    assert v.agrees
    assert c.reasons == ["ambiguous"]
    assert c.verdict == "revise" and "'top left'" in c.feedback  # the rival the writer must drop


def test_critique_is_async(edit_sets, ctx: AgentContext) -> None:
    seed, images = edit_sets[3]
    d = OfflineWriter().write_sync(images, seed=seed, feedback=[])
    v = OfflineVerifier().verify_sync(images, d)
    c, usage = asyncio.run(OfflineCritic().critique(images, d, v, ctx, attempt=0))
    assert c.verdict in ("accept", "reject", "revise") and usage.calls == 0


def test_answer_balance_keeps_any_answer_near_its_fair_share() -> None:
    """Run-wide (registry) counts: no answer text, and no wording of "none", passes chance + slack."""
    from agents.offline.critic import BALANCE_LEAD, BALANCE_SLACK, TWIN_CLASS, _balance

    ctx = AgentContext(image_dir=Path("."), pool=PhotoPool(photos=[]), registry=SetRegistry())

    def accept(family: str, answer: str, fair: float) -> str:
        note, keys = _balance(ctx, family, answer, fair)
        for k in keys:
            ctx.registry.add(k)
        return note

    # the first samples of a family are judged too: an answer may lead by BALANCE_LEAD samples
    assert accept("count_changes", "1", 0.25) == ""
    assert accept("count_changes", "1", 0.25) == ""
    assert "fair share 25%" in accept("count_changes", "1", 0.25)
    for k in range(60):  # a balanced stream is never refused
        assert accept("count_changes", "0231"[k % 4], 0.25) == "", k
    # 62 accepted, '1' holds 17; it may grow while (count + 1) <= (0.25 + slack) * (total + 1) + lead
    ones, total = 17, 62
    while accept("count_changes", "1", 0.25) == "":
        ones, total = ones + 1, total + 1
    assert ones + 1 > (0.25 + BALANCE_SLACK) * (total + 1) + BALANCE_LEAD >= ones
    assert ones / total < 0.25 + BALANCE_SLACK + BALANCE_LEAD / total
    # twins are one answer whatever their wording, with the twin rate as their share
    assert accept("zoom_locate", TWIN_CLASS, 0.15) == ""
    assert "fair share 15%" in accept("zoom_locate", TWIN_CLASS, 0.15)
    for k in range(6):
        assert accept("zoom_locate", f"row {k // 3 + 1}, column {k % 3 + 1}", 0.25) == ""
    assert accept("zoom_locate", TWIN_CLASS, 0.15) == "", "2 twins of 8 are within 15% + slack + lead"
    # four options drawn from six pairs: once all six were answers, none may hold a quarter of them
    pairs = [f"images {i} and {j}" for i in range(1, 5) for j in range(i + 1, 5)]

    def accept_pair(answer: str) -> str:
        note, keys = _balance(ctx, "matching_pair", answer, 0.25, spread=0.85)
        for k in keys:
            ctx.registry.add(k)
        return note

    for k in range(60):
        assert accept_pair(pairs[k % 6]) == "", k
    favoured = 10
    while accept_pair(pairs[0]) == "":
        favoured += 1
    assert favoured / (60 + favoured - 10) < 0.85 / 6 + BALANCE_SLACK + BALANCE_LEAD / 60 < 0.25
    # another family is counted apart
    assert accept("count_across", TWIN_CLASS, 0.15) == ""
