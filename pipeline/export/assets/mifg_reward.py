"""Reward for MIFG-QA multiple choice, copied into verl and TRL exports by `mifg export`.

Standalone: only the standard library, so verl (`custom_reward_function.path=mifg_reward.py`,
`custom_reward_function.name=compute_score`) or TRL (`reward_funcs=[grpo_reward]`) can load it.

reward = W_ACC * accuracy + W_FORMAT * format_penalty + W_TOOL * [a tool was used and the answer is correct]

The weights follow DeepEyes (0.8 / 0.2 / 1.2), the open recipe the IMAgent paper's tool-use reward
gain matches: the tool bonus is paid only for a correct answer, so calling tools cannot be farmed.
Edit the constants below to rerun ablations.
"""

from __future__ import annotations

import re
from typing import Any

W_ACC = 0.8
W_FORMAT = 0.2  # multiplies a penalty of -1 when the output is malformed, 0 when well-formed
W_TOOL = 1.2
LETTERS = "ABCDEFGHIJ"

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# an option letter inside the answer tag: "B", "(B)", "(b)", "B.", "B) the left one", "Option B", "b" alone.
# A bare lower-case letter counts only when it is all there is: "a guess, maybe C" must not read as A.
_TAG_LETTER_RE = re.compile(r"^\W*(?:[Oo]ption\s+)?(?:\(([A-Ja-j])\)|([A-J])(?![A-Za-z0-9_'])|([a-j])\W*$)")
# untagged answers only in an explicit form ("the answer is C", "answer: B"), never any capital letter:
# "Answer: B. A closer look confirms it." must read as B, not as the article "A"
_STATED_RE = re.compile(r"\banswer\s*(?:is|:)?\s*\(?([A-J])(?![A-Za-z0-9_'])", re.IGNORECASE)
_TOOL_CALL_RE = re.compile(r"<tool_call>", re.IGNORECASE)


def _valid_letters(extra_info: dict | None) -> str:
    n = (extra_info or {}).get("num_options")
    try:
        return LETTERS[: int(n)] if n else LETTERS
    except (TypeError, ValueError):
        return LETTERS


def extract_answer(solution_str: str, letters: str = LETTERS) -> str | None:
    """Option letter of a response: the last <answer>X</answer>, else the last "answer is X" / "answer: X"."""
    tagged = _ANSWER_RE.findall(solution_str)
    if tagged:
        m = _TAG_LETTER_RE.match(tagged[-1].strip())
        letter = next((g for g in m.groups() if g), "").upper() if m else ""
        return letter if letter and letter in letters else None
    for cand in reversed(_STATED_RE.findall(solution_str)):
        if cand.upper() in letters:  # the letter group is upper-case only; .upper() is for IGNORECASE
            return cand.upper()
    return None


def is_well_formed(solution_str: str) -> bool:
    """Exactly one <answer>...</answer> after the reasoning, and balanced <think> tags."""
    tail = solution_str.split("</think>")[-1]
    return (
        len(_ANSWER_RE.findall(tail)) == 1
        and tail.lower().count("<answer>") == 1
        and solution_str.count("<think>") == solution_str.count("</think>")
    )


def tool_was_used(solution_str: str, extra_info: dict | None) -> bool:
    """Whether a tool call executed: the rollout's count of executed calls, else verl's turn count, else a tag.

    Under verl's agent loops `tool_calls` counts the calls that ran (mifg_tools.py and mifg's IMAgent
    loop set it); a loop that reports its tool rounds (`tool_rewards`) but no executed call means
    none ran: an unknown tool, malformed arguments or a refused box earn no bonus.
    """
    info = extra_info or {}
    for key in ("tool_calls", "tool_call_count"):
        if info.get(key) is not None:
            return bool(info[key])
    if info.get("tool_rewards") is not None:  # verl's ToolAgentLoop ran and no call executed
        return False
    turns = info.get("num_turns")
    try:
        if turns is not None:
            # The trainer's own count wins: a "<tool_call>" that never ran (malformed, or just text)
            # earns no bonus. user + assistant = 2; every tool round adds turns.
            return int(turns) > 2
    except (TypeError, ValueError):
        pass
    return bool(_TOOL_CALL_RE.search(solution_str))


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, float]:
    """verl reward hook: score plus its terms (verl logs every key of the returned dict)."""
    letters = _valid_letters(extra_info)
    pred = extract_answer(solution_str, letters)
    acc = 1.0 if pred is not None and pred == str(ground_truth).strip().upper() else 0.0
    fmt_penalty = 0.0 if is_well_formed(solution_str) else -1.0
    tool = 1.0 if tool_was_used(solution_str, extra_info) else 0.0
    score = W_ACC * acc + W_FORMAT * fmt_penalty + W_TOOL * tool * acc
    return {"score": score, "acc": acc, "format_ok": 1.0 + fmt_penalty, "tool_used": tool}


def grpo_reward(completions: list, answer: list[str], num_options: list[int] | None = None, **kwargs: Any) -> list:
    """TRL GRPOTrainer reward function: reads the `answer` column; tool use from TRL's tool loop if any."""
    scores = []
    for i, completion in enumerate(completions):
        if isinstance(completion, list):  # conversational: a list of messages
            text = "".join(_message_text(m) for m in completion if m.get("role") == "assistant")
            turns = len(completion) + 1
        else:
            text, turns = str(completion), 2
        info = {"num_turns": turns, "num_options": num_options[i] if num_options else None}
        scores.append(compute_score("mifg_qa", text, answer[i], info)["score"])
    return scores


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return ""
