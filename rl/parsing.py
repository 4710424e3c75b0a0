"""Strict parsing of one policy turn into an action: a tool call, an answer, or Invalid.

Accepted turn texts (free reasoning may come before the tag; nothing may follow it):

    <tool_call>{"name": "visual_confirmation", "arguments": {"image": 2, "bbox_2d": [x1, y1, x2, y2]}}</tool_call>
    <tool_call>{"name": "visual_reflection", "arguments": {"images": [1, 2]}}</tool_call>   # "images" optional
    <answer>B</answer>

This is the DeepEyes / Pixel-Reasoner form (`bbox_2d`, 1-based image index). Anything else is an
`Invalid` action carrying a message the environment shows the policy as an error observation.
Parsing checks syntax and argument types only; whether an index is in range is the env's job.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

TOOL_NAMES = ("visual_reflection", "visual_confirmation")

_TOOL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>\s*([A-Za-z])\s*</answer>", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """A well-formed call of one of the two tools; `arguments` are already type-checked."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The final answer: one option letter, upper-cased."""

    letter: str


@dataclass(frozen=True)
class Invalid:
    """A turn that is neither a well-formed tool call nor an answer; `error` is shown to the policy."""

    error: str


Action = ToolCall | Answer | Invalid


def parse_action(text: str) -> Action:
    """Parse one policy turn strictly: exactly one <tool_call> or one <answer>, last in the text."""
    calls = _TOOL_RE.findall(text)
    answers = _ANSWER_RE.findall(text)
    if "<answer>" in text and not answers:
        return Invalid("malformed <answer>: expected a single option letter, e.g. <answer>A</answer>")
    if len(calls) + len(answers) == 0:
        return Invalid("no <tool_call>...</tool_call> or <answer>X</answer> found")
    if len(calls) + len(answers) > 1:
        return Invalid("one action per turn: found several <tool_call>/<answer> tags")
    tail = text.rstrip()
    if not (tail.endswith("</tool_call>") or tail.endswith("</answer>")):
        return Invalid("text after the action tag; the action must end the turn")
    if answers:
        return Answer(answers[0].upper())
    return _parse_tool_json(calls[0])


def _parse_tool_json(body: str) -> Action:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        return Invalid(f"tool call is not valid JSON ({e.msg} at char {e.pos})")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return Invalid('tool call must be a JSON object {"name": ..., "arguments": {...}}')
    name, args = obj["name"], obj.get("arguments", {})
    if name not in TOOL_NAMES:
        return Invalid(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
    if not isinstance(args, dict):
        return Invalid(f"{name}: arguments must be a JSON object")
    check = _check_reflection if name == "visual_reflection" else _check_confirmation
    err = check(args)
    return Invalid(f"{name}: {err}") if err else ToolCall(name, args)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_reflection(args: dict[str, Any]) -> str | None:
    unknown = set(args) - {"images"}
    if unknown:
        return f"unknown argument(s) {sorted(unknown)}"
    images = args.get("images")
    if images is not None and not (isinstance(images, list) and images and all(_is_int(i) for i in images)):
        return '"images" must be a non-empty list of 1-based image numbers'
    return None


def _check_confirmation(args: dict[str, Any]) -> str | None:
    unknown = set(args) - {"image", "bbox_2d", "coords"}
    if unknown:
        return f"unknown argument(s) {sorted(unknown)}"
    if not _is_int(args.get("image")):
        return '"image" must be a 1-based image number'
    box = args.get("bbox_2d")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(c, int | float) for c in box)):
        return '"bbox_2d" must be [x1, y1, x2, y2] numbers'
    if any(isinstance(c, bool) or not math.isfinite(c) for c in box):
        return '"bbox_2d" coordinates must be finite numbers'
    if args.get("coords", "auto") not in ("auto", "norm", "pixel"):
        return '"coords" must be "norm" or "pixel"'
    return None


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """Canonical text of a tool call (what the tiny policy emits and the prompts show)."""
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def format_answer(letter: str) -> str:
    """Canonical text of an answer."""
    return f"<answer>{letter}</answer>"
