"""lmms-eval task functions for MIFG-QA, copied as utils.py into lmms-eval exports by `mifg export`.

mifg_qa.yaml points at these with `!function utils.<name>`. Standalone: only the standard library
(images arrive already decoded as PIL images by `datasets`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

LETTERS = "ABCDEFGHIJ"
_ANSWER_RE = re.compile(r"<answer>\s*\(?([A-J])\b", re.IGNORECASE)
_STANDALONE_RE = re.compile(r"(?<![A-Za-z0-9_'])([A-J])(?![A-Za-z0-9_'])")


def mifg_doc_to_visual(doc: dict[str, Any]) -> list:
    """The sample's images, in order, as RGB PIL images."""
    return [img.convert("RGB") for img in doc["images"]]


def mifg_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """Prompt: image labels, question, lettered options, then the post-prompt."""
    kwargs = lmms_eval_specific_kwargs or {}
    # lmms-eval builds prompts from docs without their Image columns (`dataset_no_image`):
    # count the images by `image_meta`, one entry per image, which it keeps
    n = len(doc["images"]) if "images" in doc else len(doc["image_meta"])
    # no <image> tokens in the text: each lmms-eval model wrapper places the visuals itself
    labels = f"The {n} images are given in order, Image 1 to Image {n}."
    options = "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(doc["options"]))
    body = f"{labels}\n{doc['question']}\nOptions:\n{options}"
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def extract_letter(response: str, n_options: int) -> str | None:
    """Option letter of a model response: <answer>X</answer>, else the first standalone letter."""
    letters = LETTERS[:n_options]
    m = _ANSWER_RE.search(response)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    for cand in _STANDALONE_RE.findall(response.strip()):
        if cand in letters:
            return cand
    return None


def mifg_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Exact match of the predicted letter, also keyed by task type and domain for the breakdown."""
    pred = extract_letter(results[0] if results else "", len(doc["options"]))
    correct = 1.0 if pred == doc["answer"] else 0.0
    return {
        "exact_match": correct,
        "by_task_type": {"group": doc["task_type"], "correct": correct},
        "by_domain": {"group": doc["domain"], "correct": correct},
    }


def mifg_aggregate_by_group(items: list[dict[str, Any]]) -> float:
    """Mean accuracy over groups (task types or domains); prints the per-group table."""
    per: dict[str, list[float]] = defaultdict(list)
    for it in items:
        per[it["group"]].append(it["correct"])
    for group in sorted(per):
        vals = per[group]
        print(f"mifg_qa {group}: {sum(vals) / len(vals):.4f} ({len(vals)} samples)")
    return sum(sum(v) / len(v) for v in per.values()) / len(per) if per else 0.0
