"""Scripted answers of the local test server: a stand-in VLM that plays each agent and probe.

The role is recognised from the system prompt; the facts come from the fenced JSON block the agents
put in their user message; a probe's view (no images, glance-size images, one image, all images) from
the images it is sent. By default the describer names each photo's dominant colour (photos of one
colour group together), the writer keeps to the truth it is given (or, without one, asks which image
is brightest), the verifier answers what the writer meant (remembered per image set and question;
options may come shuffled) and every probe answers wrong: so a run accepts samples.

`behaviour` scripts any role or probe (`"writer"`, `"verifier"`, `"probe:glance"`, ...): "right",
"wrong", "refuse" (prose, no JSON), "malformed" (broken JSON) or "slow" (the server waits
`slow_s` first); "right" for a probe makes it solve the sample, which the critic must then reject.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from PIL import Image

LETTERS = "ABCDEFGHIJ"
_BLOCK = re.compile(r"```json\s*(.*?)```", re.DOTALL)

ROLE_MARKERS = (
    ("describer", "photo describer"),
    ("writer", "question writer"),
    ("verifier", "answer verifier"),
    ("probe", "solver answering"),
)
BEHAVIOURS = ("right", "wrong", "refuse", "malformed", "slow")
GLANCE_SIDE = 640  # a probe whose images are all at most this large is the glance probe


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


def image_urls(messages: list[dict[str, Any]]) -> list[str]:
    """The data URLs of the request's images, in order."""
    urls = []
    for m in messages:
        if isinstance(m.get("content"), list):
            for p in m["content"]:
                if isinstance(p, dict) and p.get("type") == "image_url":
                    urls.append(str((p.get("image_url") or {}).get("url", "")))
    return urls


def decode(url: str) -> Image.Image | None:
    """The image of a base64 data URL (None if it is not one)."""
    try:
        return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    except (IndexError, ValueError, OSError):
        return None


def png_side(url: str) -> int:
    """The longest side of a PNG data URL, read from its header (0 if unknown)."""
    try:
        head = base64.b64decode(url.split(",", 1)[1][:44])
        return max(int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    except (IndexError, ValueError):
        return 0


def probe_kind(messages: list[dict[str, Any]], n_images: int) -> str:
    """Which probe sent a solver request, from the images it carries."""
    urls = image_urls(messages)
    if not urls:
        return "text_only"
    if len(urls) == 1 and n_images > 1:
        return "single_image"
    if all(0 < png_side(u) <= GLANCE_SIDE for u in urls):
        return "glance"
    return "reordered"


_COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40),
            "grey": (128, 128, 128), "white": (235, 235, 235), "black": (20, 20, 20)}  # fmt: skip


def colour_name(img: Image.Image) -> str:
    """The named colour nearest the image's mean colour."""
    mean = img.resize((16, 16)).getdata()
    r, g, b = (sum(p[i] for p in mean) / 256 for i in range(3))
    return min(_COLOURS, key=lambda k: sum((a - c) ** 2 for a, c in zip(_COLOURS[k], (r, g, b), strict=True)))


def brightness(img: Image.Image) -> float:
    """Mean grey level of an image."""
    small = img.convert("L").resize((32, 32))
    return sum(small.getdata()) / 1024


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


class ScriptedModel:
    """Answers per role and probe; remembers each written question's answer so the verifier agrees with it."""

    def __init__(self, seed: int = 0, disagree_rate: float = 0.0, behaviour: dict[str, str] | None = None) -> None:
        self.rng = random.Random(seed)
        self.disagree_rate = disagree_rate
        self.behaviour = dict(behaviour or {})
        bad = {k: v for k, v in self.behaviour.items() if v not in BEHAVIOURS}
        if bad:
            raise ValueError(f"unknown behaviour(s) {bad}; expected one of {', '.join(BEHAVIOURS)}")
        # role -> function(facts) -> reply dict: tests script a role's answer outright
        self.overrides: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self._answers: OrderedDict[tuple, str] = OrderedDict()  # (images, question, options) -> answer text
        self._by_question: OrderedDict[tuple, str] = OrderedDict()  # (question, options) -> answer text

    def script_for(self, role: str) -> str:
        """The scripted behaviour of a role or "probe:<kind>" ("" = the default)."""
        return self.behaviour.get(role, "")

    def reply(self, messages: list[dict[str, Any]]) -> tuple[str, str]:
        """(role, assistant content) for one chat request; the role is "probe:<kind>" for probes."""
        role = role_of(messages)
        facts = facts_of(messages)
        if role == "probe":
            role = "probe:" + probe_kind(messages, int(facts.get("n_images") or 0))
        how = self.script_for(role)
        if how == "refuse":
            return role, "I'm sorry, but I can't help with that request."
        if how == "malformed":
            return role, '{"answer": "A", "question": "Which ima'
        facts = {**facts, "_messages": messages, "_images": images_key(messages), "_how": how}
        handler = self.overrides.get(role) or getattr(self, "_" + role.split(":")[0], None)
        content = handler(facts) if handler else "OK"
        return role, content if isinstance(content, str) else json.dumps(content)

    def _remember(self, images: str, question: str, options: list[str], answer: str) -> None:
        self._answers[(images, question, frozenset(options))] = answer
        self._by_question[(question, frozenset(options))] = answer
        for d in (self._answers, self._by_question):
            if len(d) > 200_000:
                d.popitem(last=False)

    def _describer(self, facts: dict[str, Any]) -> dict[str, Any]:
        urls = image_urls(facts["_messages"])
        img = decode(urls[0]) if urls else None
        colour = colour_name(img) if img is not None else "grey"
        return {"caption": f"A photo in {colour}.", "tags": [colour], "domain": "other"}

    def _writer(self, facts: dict[str, Any]) -> dict[str, Any]:
        n = max(2, int(facts.get("n_images") or 2))
        family = facts.get("family") or "which_differs"
        truth = facts.get("truth")
        if truth:
            options, answer_text = list(truth["options"]), truth["answer"]
        else:  # no truth (sets of different photos): ask what the server can see itself
            imgs = [decode(u) for u in image_urls(facts["_messages"])]
            levels = [brightness(i) if i is not None else 0.0 for i in imgs] or [0.0] * n
            options = [f"Image {i + 1}" for i in range(len(levels))]
            answer_text = options[max(range(len(levels)), key=levels.__getitem__)]
        question = f"[{family}] Looking closely at all {n} images, which option is right?"
        if facts.get("attempt", 0) and facts.get("feedback"):
            question = question[:-1] + f" (revision {facts['attempt']})?"
        answer = options.index(answer_text)
        if facts["_how"] == "wrong" and len(options) > 1:
            answer = (answer + 1) % len(options)  # a writer that contradicts the truth
        self._remember(facts["_images"], question, options, options[answer])
        return {
            "question": question,
            "options": options,
            "answer": LETTERS[answer],
            "rationale": f"The answer is {options[answer]}.",
            "evidence": [],
        }

    @staticmethod
    def _shown(facts: dict[str, Any]) -> list[str]:
        options = facts.get("options") or {}
        return [options[k] for k in sorted(options)] if isinstance(options, dict) else list(options)

    def _verifier(self, facts: dict[str, Any]) -> dict[str, Any]:
        opts = self._shown(facts)
        known = self._answers.get((facts["_images"], facts.get("question", ""), frozenset(opts)))
        answer, confidence = (LETTERS[opts.index(known)], 0.9) if known in opts else ("A", 0.3)
        wrong = facts["_how"] == "wrong" or (self.disagree_rate and self.rng.random() < self.disagree_rate)
        if wrong and len(opts) > 1:
            answer = LETTERS[(LETTERS.index(answer) + 1) % len(opts)]
        return {"answer": answer, "confidence": confidence, "reasoning": "Compared the images detail by detail."}

    def _probe(self, facts: dict[str, Any]) -> dict[str, Any]:
        opts = self._shown(facts)
        known = self._by_question.get((facts.get("question", ""), frozenset(opts)))
        i = opts.index(known) if known in opts else 0
        if facts["_how"] != "right":  # the default: a solver shown too little does not find it
            i = (i + 1) % max(1, len(opts))
        return {"answer": LETTERS[i], "confidence": 0.5}
