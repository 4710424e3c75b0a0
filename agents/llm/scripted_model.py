"""Scripted answers of the local test server: a stand-in VLM that answers each agent role sensibly.

The role is recognised from the system prompt; the facts come from the fenced JSON block the agents
put in their user message. The writer's answer is derived from the construction record (ground
truth), the verifier answers what the writer's question implies (remembered per question), and the
critic accepts: so an end-to-end run against the server accepts samples, unless faults are injected.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

LETTERS = "ABCDEFGHIJ"
_BLOCK = re.compile(r"```json\s*(.*?)```", re.DOTALL)

ROLE_MARKERS = (
    ("critic_blind", "blind guesser"),
    ("critic", "adversarial critic"),
    ("writer", "question writer"),
    ("verifier", "answer verifier"),
    ("pairer", "image pairer"),
)


def text_of(content: Any) -> str:
    """All text of a message's content (string or list of parts)."""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def count_images(messages: list[dict[str, Any]]) -> int:
    """How many image parts the request carries."""
    n = 0
    for m in messages:
        if isinstance(m.get("content"), list):
            n += sum(1 for p in m["content"] if isinstance(p, dict) and p.get("type") == "image_url")
    return n


def images_key(messages: list[dict[str, Any]]) -> str:
    """A digest of the request's images, so answers are remembered per image set, not per wording."""
    h = hashlib.blake2b(digest_size=16)
    for m in messages:
        if isinstance(m.get("content"), list):
            for p in m["content"]:
                if isinstance(p, dict) and p.get("type") == "image_url":
                    url = str((p.get("image_url") or {}).get("url", ""))
                    # length + head + every 257th character: tells images apart at a fraction of the
                    # cost of hashing megabytes per request (a small edit changes the PNG stream after it)
                    h.update(f"{len(url)}|{url[:2048]}|{url[2048::257]}".encode())
    return h.hexdigest()


def role_of(messages: list[dict[str, Any]]) -> str:
    """Which agent sent this request, from its system prompt ("other" if none matches)."""
    system = " ".join(text_of(m.get("content")) for m in messages if m.get("role") == "system").lower()
    for role, marker in ROLE_MARKERS:
        if marker in system:
            return role
    return "other"


def facts_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The last fenced JSON block of the first user message ({} if none)."""
    for m in messages:
        if m.get("role") == "user":
            blocks = _BLOCK.findall(text_of(m.get("content")))
            if blocks:
                try:
                    value = json.loads(blocks[-1])
                except json.JSONDecodeError:
                    return {}
                return value if isinstance(value, dict) else {}
    return {}


def _find_box(value: Any) -> list[float] | None:
    # Any 4-number list under a key that names a region, anywhere in the construction record.
    if isinstance(value, dict):
        for key, sub in value.items():
            if key.lower() in ("bbox", "box", "region", "bbox_norm") and _is_box(sub):
                return [float(c) for c in sub]
        for sub in value.values():
            found = _find_box(sub)
            if found:
                return found
    elif isinstance(value, list):
        for sub in value:
            found = _find_box(sub)
            if found:
                return found
    return None


def _is_box(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(c, (int, float)) for c in v)


def _norm_box(box: list[float], image: dict[str, Any]) -> list[float] | None:
    if max(box) > 1.0:
        w, h = float(image.get("width") or 0), float(image.get("height") or 0)
        if not w or not h:
            return None
        box = [box[0] / w, box[1] / h, box[2] / w, box[3] / h]
    x1, y1, x2, y2 = (min(1.0, max(0.0, c)) for c in box)
    return [x1, y1, x2, y2] if x1 < x2 and y1 < y2 else None


class ScriptedModel:
    """Answers per role; remembers each written question's answer so the verifier agrees with it."""

    def __init__(self, seed: int = 0, disagree_rate: float = 0.0, revise_rate: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.disagree_rate = disagree_rate
        self.revise_rate = revise_rate
        # role -> function(facts) -> reply dict: tests script a role's answer (e.g. a confident blind guess)
        self.overrides: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self._answers: OrderedDict[tuple[str, str, tuple[str, ...]], str] = OrderedDict()

    def reply(self, messages: list[dict[str, Any]]) -> tuple[str, str]:
        """(role, assistant content) for one chat request."""
        role = role_of(messages)
        facts = facts_of(messages)
        handler = self.overrides.get(role) or getattr(self, f"_{role}", None)
        if role in ("writer", "verifier"):
            facts = {**facts, "_images": images_key(messages)}
        content = handler(facts) if handler else "OK"
        return role, content if isinstance(content, str) else json.dumps(content)

    def _remember(self, images: str, question: str, options: list[str], answer: str) -> None:
        self._answers[(images, question, tuple(options))] = answer
        if len(self._answers) > 200_000:
            self._answers.popitem(last=False)

    def _pairer(self, facts: dict[str, Any]) -> dict[str, Any]:
        hint = facts.get("domain_hint") or "other"
        n = facts.get("n_images", 0)
        return {"domain": hint, "description": f"{n} images of one scene; a small {facts.get('kind', 'edit')} detail."}

    def _writer(self, facts: dict[str, Any]) -> dict[str, Any]:
        images = facts.get("images") or []
        n = max(2, len(images))
        allowed = facts.get("allowed_task_types") or ["which_differs"]
        construction = facts.get("construction") or {}
        # Ground truth: the pairer's "marked" list (edited images), else the images' roles.
        marked = construction.get("marked")
        if not isinstance(marked, list) or not all(isinstance(i, int) and 0 <= i < n for i in marked):
            marked = [i for i, im in enumerate(images) if str(im.get("role", "")).startswith("variant")]
        box = _find_box(construction)
        labels = [f"Image {i + 1}" for i in range(n)]
        evidence_on = marked[0] if marked else 0
        if facts.get("kind") == "related" and n == 3 and len(marked) == 1 and marked[0] in (1, 2):
            task = "same_source"
            question = "Images 2 and 3 show the scene of image 1 in another shot. Which one has a small mark?"
            options, answer = labels[1:], LETTERS[marked[0] - 1]
        elif n >= 3 and len(marked) in (1, n - 1):
            odd = marked[0] if len(marked) == 1 else next(i for i in range(n) if i not in marked)
            task = "odd_one_out"
            question = "Which image is not like the others in one small detail?"
            options, answer, evidence_on = labels, LETTERS[odd], odd
        elif n >= 3 and marked:
            task = "count_across"
            question = "In how many of the images was one small detail changed from the photo?"
            options, answer = [str(k) for k in range(1, n)], LETTERS[len(marked) - 1]
        elif box:
            task = "where_differs"
            question = "In which quarter of the pictures do the two images differ?"
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if max(box) > 1.0 and images:
                cx, cy = cx / float(images[0].get("width") or 1), cy / float(images[0].get("height") or 1)
            options = ["top left", "top right", "bottom left", "bottom right"]
            answer = LETTERS[(2 if cy >= 0.5 else 0) + (1 if cx >= 0.5 else 0)]
        else:
            task = "which_differs"
            question = "Which image differs from the others?"
            options, answer = labels, LETTERS[evidence_on]
        if task not in allowed:
            task = allowed[0]
        if facts.get("attempt", 0) and facts.get("feedback"):
            question = question[:-1] + f" (look closely, revision {facts['attempt']})?"
        evidence = []
        if box and images:
            norm = _norm_box(box, images[min(evidence_on, len(images) - 1)])
            if norm:
                evidence.append({"image_index": evidence_on, "bbox": norm})
        self._remember(facts["_images"], question, options, answer)
        return {
            "question": question,
            "options": options,
            "answer": answer,
            "task_type": task,
            "rationale": f"By construction, the answer is {answer}: {options[LETTERS.index(answer)]}.",
            "evidence": evidence,
        }

    def _verifier(self, facts: dict[str, Any]) -> dict[str, Any]:
        options = facts.get("options") or {}
        opts = [options[k] for k in sorted(options)] if isinstance(options, dict) else list(options)
        answer = self._answers.get((facts["_images"], facts.get("question", ""), tuple(opts)))
        confidence = 0.9
        if answer is None:
            answer, confidence = "A", 0.3
        if self.disagree_rate and self.rng.random() < self.disagree_rate and len(opts) > 1:
            answer = LETTERS[(LETTERS.index(answer) + 1) % len(opts)]
        return {"answer": answer, "confidence": confidence, "reasoning": "Compared the images detail by detail."}

    def _critic(self, facts: dict[str, Any]) -> dict[str, Any]:
        if self.revise_rate and self.rng.random() < self.revise_rate:
            return {
                "verdict": "revise",
                "reasons": ["ambiguous"],
                "feedback": "Name the detail more precisely.",
                "thumbnail_answer": None,
                "confidence": 0.1,
            }
        return {"verdict": "accept", "reasons": [], "feedback": "", "thumbnail_answer": None, "confidence": 0.1}

    def _critic_blind(self, facts: dict[str, Any]) -> dict[str, Any]:
        n = len(facts.get("options") or {}) or 2
        return {"answer": "A", "confidence": round(1.0 / n, 3)}
