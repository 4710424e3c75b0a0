"""The offline verifier: answers from the pixels, never from the construction record."""

from __future__ import annotations

import asyncio

import pytest

from agents.base import AgentContext, ImageSet
from agents.offline import OfflineVerifier, OfflineWriter
from agents.offline.colours import COLOUR_NAMES
from schemas import LETTERS, TaskType


@pytest.fixture
def verified(edit_sets: list[tuple[int, ImageSet]]):
    """(images, draft) pairs whose first draft the verifier agrees with."""
    writer, verifier = OfflineWriter(), OfflineVerifier()
    out = []
    for seed, images in edit_sets[:40]:
        d = writer.write_sync(images, seed=seed, feedback=[])
        if verifier.verify_sync(images, d).agrees:
            out.append((images, d))
    assert len(out) >= 32, "the verifier should agree with most first drafts"
    return out


def test_a_wrong_answer_is_caught(verified) -> None:
    verifier = OfflineVerifier()
    for images, d in verified:
        wrong = LETTERS[(LETTERS.index(d.answer) + 1) % len(d.options)]
        v = verifier.verify_sync(images, d.model_copy(update={"answer": wrong}))
        assert not v.agrees
        assert v.answer == d.answer  # it still says what the pixels show
        assert v.method == "pixel-diff"


def test_the_construction_record_and_roles_are_not_read(verified) -> None:
    verifier = OfflineVerifier()
    for images, d in verified[:15]:
        blind = ImageSet(
            images=[r.model_copy(update={"role": "original"}) for r in images.images],
            domain=images.domain,
            construction={"task": "which_differs", "marked": [0], "bbox": [0, 0, 1, 1], "colour": "blue"},
        )
        assert verifier.verify_sync(blind, d) == verifier.verify_sync(images, d)


def test_moving_the_edited_image_changes_the_answer(verified) -> None:
    verifier = OfflineVerifier()
    checked = 0
    for images, d in verified:
        if d.task_type not in (TaskType.WHICH_DIFFERS, TaskType.ODD_ONE_OUT):
            continue
        # rotate the images so every image moves one place: the pixels now point elsewhere
        rotated = images.model_copy(update={"images": images.images[1:] + images.images[:1]})
        v = verifier.verify_sync(rotated, d)
        assert not v.agrees, (d.question, d.options, d.answer, v)
        checked += 1
    assert checked >= 4


def test_a_wrong_colour_in_the_question_is_caught(verified) -> None:
    verifier = OfflineVerifier()
    checked = 0
    for images, d in verified:
        if d.task_type == TaskType.COUNT_ACROSS:
            colour = next(c for c in COLOUR_NAMES if c in d.question)
            other = next(c for c in COLOUR_NAMES if c != colour and c not in d.question)
            v = verifier.verify_sync(images, d.model_copy(update={"question": d.question.replace(colour, other)}))
            assert not v.agrees
            checked += 1
        elif d.task_type == TaskType.ATTRIBUTE_COMPARE:
            answer = d.options[LETTERS.index(d.answer)]
            swapped = [o if o != answer else next(c for c in COLOUR_NAMES if c not in d.options) for o in d.options]
            v = verifier.verify_sync(images, d.model_copy(update={"options": swapped}))
            assert not v.agrees  # the true colour is no longer an option
            checked += 1
    assert checked >= 3


def test_verify_is_async_and_reports_confidence(verified, ctx: AgentContext) -> None:
    images, d = verified[0]
    v, usage = asyncio.run(OfflineVerifier().verify(images, d, ctx))
    assert v.agrees and 0.5 <= v.confidence <= 1.0 and usage.calls == 0


def test_every_none_option_the_writer_uses_reads_as_none():
    """ "No image qualifies" was read as no option at all: every twin with it was rejected as unsolved."""
    from agents.offline.scene_solver import is_none
    from agents.offline.scene_writer import NONE_IMAGE, NONE_WHERE, NONE_ZOOM

    for text in (*NONE_IMAGE, *NONE_WHERE, *NONE_ZOOM):
        assert is_none(text), text
    assert not is_none("Image 3") and not is_none("Images 2 and 3")
