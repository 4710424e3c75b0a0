"""Turn the edit form (question, options, answer, evidence) into a validated Sample, or refuse it whole."""

from __future__ import annotations

import re

from pydantic import ValidationError

from schemas import LETTERS, Sample
from schemas.errors import MifgError

_BOX_LINE = re.compile(
    r"^\s*(?:image\s*)?(\d+)\s*[:,]?\s*([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)\s*$"
)
MAX_QUESTION_CHARS = 2000
MAX_OPTION_CHARS = 300


class EditRefused(MifgError):
    """An edit that would break the schema; nothing of it is saved."""


def options_to_text(options: list[str]) -> str:
    """Options as the edit form shows them: one per line."""
    return "\n".join(options)


def evidence_to_text(sample: Sample) -> str:
    """Evidence boxes as the edit form shows them: `image x1 y1 x2 y2` per line, images numbered from 1."""
    return "\n".join(f"{b.image_index + 1}: " + " ".join(str(c) for c in b.bbox) for b in sample.evidence)


def parse_options(text: str) -> list[str]:
    """Options from the form: one per line, blank lines ignored, an optional 'A. ' / 'B) ' prefix removed."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        line = re.sub(r"^[A-J][.)]\s+", "", line)
        out.append(line)
    return out


def parse_evidence(text: str, n_images: int) -> list[dict]:
    """Evidence boxes from the form; raises EditRefused naming the bad line."""
    boxes = []
    for no, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        m = _BOX_LINE.match(line)
        if not m:
            raise EditRefused(
                f"evidence line {no}: expected 'image x1 y1 x2 y2' (e.g. '1: 0.2 0.3 0.5 0.6'), got {line!r}"
            )
        image = int(m.group(1))
        if not 1 <= image <= n_images:
            raise EditRefused(f"evidence line {no}: image {image} does not exist (images are 1..{n_images})")
        try:
            bbox = tuple(float(m.group(k)) for k in range(2, 6))
        except ValueError as e:
            raise EditRefused(f"evidence line {no}: {e}") from e
        boxes.append({"image_index": image - 1, "bbox": bbox})
    return boxes


def apply_edit(sample: Sample, question: str, options_text: str, answer: str, evidence_text: str) -> Sample:
    """The sample with the edited fields, validated by `schemas.Sample`; EditRefused with a readable message."""
    question = (question or "").strip()
    if not question:
        raise EditRefused("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise EditRefused(f"the question is longer than {MAX_QUESTION_CHARS} characters")
    options = parse_options(options_text)
    if any(len(o) > MAX_OPTION_CHARS for o in options):
        raise EditRefused(f"an option is longer than {MAX_OPTION_CHARS} characters")
    if len(options) > len(LETTERS):
        raise EditRefused(f"at most {len(LETTERS)} options, got {len(options)}")
    answer = (answer or "").strip().upper()
    letters = list(LETTERS[: len(options)])  # a list: "" is a substring of every string
    if answer not in letters:
        raise EditRefused(
            f"the answer {answer or '(none)'!r} is not among the options ({', '.join(letters) or 'none'})"
        )
    evidence = parse_evidence(evidence_text, len(sample.images))
    data = sample.model_dump()
    data.update(question=question, options=options, answer=answer, evidence=evidence, id=sample.id)
    try:
        return Sample.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "sample"
        msg = first.get("msg", str(e)).removeprefix("Value error, ")
        raise EditRefused(f"{where}: {msg}") from e


def is_noop_edit(before: Sample, after: Sample) -> bool:
    """Whether an edit changed nothing (then it is stored as a plain accept)."""
    return (
        before.question == after.question
        and before.options == after.options
        and before.answer == after.answer
        and [(b.image_index, tuple(b.bbox)) for b in before.evidence]
        == [(b.image_index, tuple(b.bbox)) for b in after.evidence]
    )
