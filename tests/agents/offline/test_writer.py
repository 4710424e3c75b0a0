"""The offline writer: task types, shuffled options, and revisions that act on critic codes."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from agents.base import AgentContext, Draft, ImageSet, WorkItem
from agents.offline import OfflinePairer, OfflineWriter
from agents.offline.critic import length_outlier
from agents.offline.edits import EDIT_KINDS
from agents.offline.regions import parse_region
from schemas import LETTERS, TaskType


@pytest.fixture
def sets(edit_sets: list[tuple[int, ImageSet]]):
    def pick(count: int, start: int = 0) -> list[tuple[int, ImageSet]]:
        return edit_sets[start : start + count]

    return pick


def _answer_text(d: Draft) -> str:
    return d.options[LETTERS.index(d.answer)]


def test_drafts_cover_five_task_types_with_shuffled_options(sets) -> None:
    writer = OfflineWriter()
    tasks: Counter[TaskType] = Counter()
    letters: Counter[str] = Counter()
    for seed, images in sets(40):
        d = writer.write_sync(images, seed=seed, feedback=[])
        tasks[d.task_type] += 1
        letters[d.answer] += 1
        assert len(set(d.options)) == len(d.options) >= 2
        assert d.evidence and all(b.image_index < len(images.images) for b in d.evidence)
        assert d.question.strip() and d.rationale.strip()
    assert len(tasks) >= 5, tasks
    assert len(letters) >= 3, f"answers always in the same places: {letters}"


def test_answer_matches_ground_truth(sets) -> None:
    writer = OfflineWriter()
    for seed, images in sets(30):
        c = images.construction
        d = writer.write_sync(images, seed=seed, feedback=[])
        ans = _answer_text(d)
        if d.task_type == TaskType.COUNT_ACROSS:
            assert ans == str(len(c["marked"]))
        elif d.task_type == TaskType.ATTRIBUTE_COMPARE:
            assert ans == c["colour"]
        elif d.task_type == TaskType.WHERE_DIFFERS:
            region = parse_region(ans)
            x1, y1, x2, y2 = region.box
            bx1, by1, bx2, by2 = c["bbox"]
            assert x1 <= bx1 and bx2 <= x2 and y1 <= by1 and by2 <= y2
        elif d.task_type in (TaskType.WHICH_DIFFERS, TaskType.ODD_ONE_OUT):
            target = int(ans.split()[-1]) - 1
            assert d.evidence[0].image_index == target


def test_writing_is_deterministic_and_async(sets, ctx: AgentContext) -> None:
    seed, images = sets(1, start=11)[0]
    a, usage = asyncio.run(OfflineWriter().write(images, ctx, seed=seed, feedback=[], attempt=0))
    b = OfflineWriter().write_sync(images, seed=seed, feedback=[])
    assert a == b and usage.calls == 0


def _first(sets, want, count: int = 120):
    writer = OfflineWriter()
    for seed, images in sets(count):
        d = writer.write_sync(images, seed=seed, feedback=[])
        if want(d):
            return seed, images, d
    raise AssertionError("no draft of the wanted shape in the seeds tried")


def test_length_bias_feedback_balances_the_options(sets) -> None:
    for task in (TaskType.ATTRIBUTE_COMPARE, TaskType.WHERE_DIFFERS):
        seed, images, d = _first(
            sets, lambda d, t=task: d.task_type == t and length_outlier(d.options, LETTERS.index(d.answer))
        )
        fb = ["option_length_bias: the answer is the only option of its length; balance option lengths"]
        r = OfflineWriter().write_sync(images, seed=seed, feedback=fb, attempt=1)
        assert r != d
        assert r.task_type == d.task_type
        assert not length_outlier(r.options, LETTERS.index(r.answer)), r.options
        # same answer, said the same way or in the equal-length wording
        assert parse_region(_answer_text(r)) == parse_region(_answer_text(d)) or _answer_text(r) == _answer_text(d)


def test_position_bias_feedback_moves_the_answer(sets) -> None:
    seed, images, d = _first(sets, lambda d: len(d.options) >= 3)
    fb = [f"answer_position_bias: letter {d.answer} would hold 60% of accepted answers; move the answer"]
    r = OfflineWriter().write_sync(images, seed=seed, feedback=fb, attempt=1)
    assert r.answer != d.answer
    assert _answer_text(r) == _answer_text(d) and sorted(r.options) == sorted(d.options)


def test_ambiguous_feedback_replaces_the_confusable_distractor(sets) -> None:
    seed, images, d = _first(sets, lambda d: d.task_type == TaskType.ATTRIBUTE_COMPARE)
    rival = next(o for o in d.options if o != _answer_text(d))
    fb = [f"ambiguous: options '{_answer_text(d)}' 0.55, '{rival}' 0.45 are all supported by the pixels"]
    r = OfflineWriter().write_sync(images, seed=seed, feedback=fb, attempt=1)
    assert rival not in r.options
    assert _answer_text(r) == _answer_text(d)


def test_other_feedback_changes_the_task_type(sets) -> None:
    seed, images, d = _first(sets, lambda d: d.task_type == TaskType.WHICH_DIFFERS)
    r = OfflineWriter().write_sync(images, seed=seed, feedback=["near_duplicate: seen before"], attempt=1)
    assert r.task_type != d.task_type
    # a second round keeps the first round's change and changes the draft again
    r2 = OfflineWriter().write_sync(images, seed=seed, feedback=["near_duplicate: x", "weak_evidence: y"], attempt=2)
    assert r2 != r


def test_every_revision_changes_the_draft(sets) -> None:
    writer = OfflineWriter()
    codes = ["option_length_bias: x", "answer_position_bias: letter A", "ambiguous: 'x'", "please improve"]
    for seed, images in sets(12, start=40):
        prev = writer.write_sync(images, seed=seed, feedback=[])
        for code in codes:
            r = writer.write_sync(images, seed=seed, feedback=[code], attempt=1)
            assert r != prev, (code, prev)


def test_related_sets_get_same_source_questions(stereo_ctx: AgentContext) -> None:
    pairer, writer = OfflinePairer(kinds=EDIT_KINDS, related_rate=1.0), OfflineWriter()
    polarities = set()
    for seed in range(8):
        images = pairer.make(WorkItem(index=seed, seed=seed), stereo_ctx)
        d = writer.write_sync(images, seed=seed, feedback=[])
        assert d.task_type == TaskType.SAME_SOURCE and sorted(d.options) == ["Image 2", "Image 3"]
        polarities.add("nothing added" in d.question)
        r = writer.write_sync(images, seed=seed, feedback=["thumbnail_solvable: x"], attempt=1)
        assert r != d
    assert polarities == {True, False}
