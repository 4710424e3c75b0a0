"""Edits become a valid Sample or are refused whole with a readable message."""

from __future__ import annotations

import pytest

from annotation_ui.editing import EditRefused, apply_edit, evidence_to_text, is_noop_edit, options_to_text
from tests.factories import make_sample


def _form(sample):
    return sample.question, options_to_text(sample.options), sample.answer, evidence_to_text(sample)


def test_unchanged_form_is_a_noop() -> None:
    s = make_sample(1, n_images=3)
    after = apply_edit(s, *_form(s))
    assert is_noop_edit(s, after) and after.id == s.id


def test_edit_changes_fields_and_keeps_id() -> None:
    s = make_sample(1, n_images=2, answer_index=0)
    after = apply_edit(
        s, "  Which image shows the red mark?  ", "A. Left image\nB) Right image\n\n", "b", "2: 0.1 0.2 0.3 0.4"
    )
    assert after.question == "Which image shows the red mark?"
    assert after.options == ["Left image", "Right image"] and after.answer == "B"
    assert [(b.image_index, b.bbox) for b in after.evidence] == [(1, (0.1, 0.2, 0.3, 0.4))]
    assert after.id == s.id and not is_noop_edit(s, after)


@pytest.mark.parametrize(
    ("question", "options", "answer", "evidence", "message"),
    [
        ("", "a\nb", "A", "", "question is empty"),
        ("   ", "a\nb", "A", "", "question is empty"),
        ("Q?", "a\nb", "C", "", "not among the options"),
        ("Q?", "a\nb", "", "", "not among the options"),
        ("Q?", "only one", "A", "", "options"),
        ("Q?", "same\nsame", "A", "", "not distinct"),
        ("Q?", "a\nb", "A", "1: 0.2 0.2 1.5 0.4", "bbox"),
        ("Q?", "a\nb", "A", "1: 0.5 0.5 0.2 0.6", "x1<x2"),
        ("Q?", "a\nb", "A", "3: 0.1 0.1 0.2 0.2", "does not exist"),
        ("Q?", "a\nb", "A", "somewhere on the left", "expected"),
    ],
)
def test_schema_breaking_edits_are_refused(question, options, answer, evidence, message) -> None:
    s = make_sample(2, n_images=2)
    with pytest.raises(EditRefused, match=message):
        apply_edit(s, question, options, answer, evidence)
