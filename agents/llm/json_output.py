"""Parse a model's JSON reply: tolerate code fences and chatter around one object, nothing more."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class ReplyFormatError(ValueError):
    """The reply is not one JSON object (message says why, briefly)."""


def extract_json_object(text: str | None) -> dict[str, Any]:
    """The JSON object in `text`: the whole text, a fenced block, or the outermost {...} span."""
    if text is None or not text.strip():
        raise ReplyFormatError("empty reply")
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    last_error = "no JSON object found"
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as e:
            last_error = f"invalid JSON ({e.msg} at char {e.pos})"
            continue
        if isinstance(value, dict):
            return value
        last_error = f"expected a JSON object, got {type(value).__name__}"
    raise ReplyFormatError(last_error)
