"""The offline critic's machine-readable reason codes, and how the writer reads them back.

The graph hands the writer the critic's `feedback` strings; each starts with a code from
`REASON_CODES` ("option_length_bias: ..."), so the writer can act on the code and a human can read
the rest. Codes with decision "revise" are the only ones a rewrite of the question can fix.
"""

from __future__ import annotations

import re

REASON_CODES: dict[str, tuple[str, str]] = {
    # code: (decision, meaning)
    "verifier_disagrees": ("reject", "the answer re-derived from the pixels is not the draft's answer (or none is)"),
    "weak_evidence": ("reject", "too few pixels differ at full resolution to be sure what changed"),
    "ambiguous": ("revise|reject", "two options are nearly equally supported by the pixels"),
    "thumbnail_solvable": ("reject", "the pixel method answers correctly on low-resolution thumbnails"),
    "option_length_bias": ("revise", "the answer option's length stands out: answerable without images"),
    "answer_position_bias": ("revise", "the answer's letter is over-represented among accepted samples"),
    "near_duplicate": ("reject", "same images, task, answer and place as an accepted sample"),
    "glance_solvable": ("reject", "the pixel method answers correctly on the glance view (no zoom): not fine-grained"),
    "cap_photo_family_answer": ("reject", "enough accepted samples already share this photo, family and answer"),
    "cap_question": ("reject", "enough accepted samples already ask this exact question"),
    "answer_balance": ("reject", "this answer already holds more than its fair share of its family's samples"),
}

_CODE = re.compile(r"\b(" + "|".join(REASON_CODES) + r")\b")


def codes_in(text: str) -> list[str]:
    """Reason codes mentioned in one feedback string, in order of appearance."""
    return list(dict.fromkeys(_CODE.findall(text)))


_QUOTED = re.compile(r"'([^']+)'")


def quoted(text: str) -> list[str]:
    """Option texts the critic quoted in a feedback string (between single quotes)."""
    return _QUOTED.findall(text)
