"""The multi-turn episode over one Sample's images: prompt, tool turns, final answer.

    ep = Episode(sample, EnvConfig())
    obs = ep.reset()                       # Observation(text=question+options, images=originals)
    while True:
        action = parse_action(policy_text)  # ToolCall | Answer | Invalid   (rl/parsing.py)
        obs, done, info = ep.step(action)
        if done: break                      # obs is None when done

Every call of `step` is one policy turn. The episode ends on an `Answer`, or when the policy has used
`max_turns` turns without answering (`ep.over_turns`). A bad action (malformed text, unknown or
disabled tool, out-of-range image, image budget spent) does not end the episode: it returns an error
observation (`kind="error"`) and counts in `ep.errors`; "not recovered" (see `invalid_tool`) is
decided at the end. Token limits belong to the policy (it knows its tokenizer): it stops a rollout
and marks the trajectory `truncated`. A tool result the policy's processor cannot show (Qwen2.5-VL
refuses images with an aspect ratio of 200 or more, e.g. a thin crop) is turned into an error
observation by `ep.reject_observation(reason)`, which undoes the call's success bookkeeping.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image

from rl.parsing import TOOL_NAMES, Action, Answer, ToolCall, format_answer, format_tool_call
from rl.tools import ToolError, cap_side, visual_confirmation, visual_reflection
from schemas import LETTERS, Sample


@dataclass
class EnvConfig:
    """Limits and tool settings of one episode (TOML section [env])."""

    max_turns: int = 4  # policy turns per episode, the answer turn included
    max_images: int = 12  # images shown per episode, prompt images included; beyond -> error observation
    tools: tuple[str, ...] = TOOL_NAMES  # enabled tools; () is the no-tool ablation
    zoom_size: int = 448  # longer side of a visual_confirmation crop after zoom (0 = no resize)
    min_crop_px: int = 28  # minimum crop side in original pixels
    reflection_max_side: int = 0  # cap of re-presented images' longer side (0 = full resolution)
    prompt_max_side: int = 0  # cap of the prompt images' longer side (0 = as stored)


@dataclass
class Observation:
    """What the environment shows the policy after reset or a tool turn."""

    text: str
    images: list[Image.Image] = field(default_factory=list)
    kind: str = "prompt"  # "prompt" | "tool" | "error"
    image_info: list[dict] = field(default_factory=list)  # per image: {"image": 0-based source, "bbox": xyxy norm}


def system_prompt(cfg: EnvConfig) -> str:
    """Instructions shown before the first observation: the enabled tools and the answer format."""
    lines = ["Answer the multiple-choice question about the images. End with <answer>X</answer> (X = option letter)."]
    if cfg.tools:
        lines.append("Before answering you may call one tool per turn:")
    if "visual_reflection" in cfg.tools:
        lines.append(
            "- look at images again at full resolution: "
            + format_tool_call("visual_reflection", {"images": [1, 2]})
            + ' ("images" optional, default all)'
        )
    if "visual_confirmation" in cfg.tools:
        lines.append(
            "- zoom into a region of one image (bbox normalised 0..1 or pixels): "
            + format_tool_call("visual_confirmation", {"image": 1, "bbox_2d": [0.1, 0.2, 0.4, 0.5]})
        )
    lines.append(f"At most {cfg.max_turns} turns. Example answer: {format_answer('A')}")
    return "\n".join(lines)


def question_text(sample: Sample) -> str:
    """The user turn: question and lettered options."""
    opts = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(sample.options))
    return f"{sample.question}\n{opts}"


def decode_images(sample: Sample) -> list[Image.Image]:
    """The sample's images as RGB PIL images (originals, full resolution)."""
    return [Image.open(io.BytesIO(im.bytes)).convert("RGB") for im in sample.images]


class Episode:
    """One multi-turn episode; see the module docstring for the protocol."""

    def __init__(self, sample: Sample, cfg: EnvConfig, images: list[Image.Image] | None = None) -> None:
        self.sample, self.cfg = sample, cfg
        self.images = images if images is not None else decode_images(sample)
        self.turns = 0
        self.images_shown = 0
        self.tool_calls: Counter[str] = Counter()  # successful calls per tool
        self.errors = 0  # invalid actions (parse errors and failed tool calls)
        self.recovered = True  # False after an error until the next successful tool call
        self.crops: list[tuple[int, tuple[float, ...]]] = []  # (0-based image, normalised box) per confirmation
        self.answer: str | None = None
        self.over_turns = False
        self.done = False
        self._last_tool: tuple[str, int, int] | None = None  # (tool, images shown, crops added) of the last success

    @property
    def valid_letters(self) -> str:
        """Option letters of this sample."""
        return LETTERS[: len(self.sample.options)]

    def reset(self) -> Observation:
        """Start the episode: the question with all original images (capped by `prompt_max_side`)."""
        imgs = [cap_side(im, self.cfg.prompt_max_side) for im in self.images]
        self.images_shown = len(imgs)
        info = [{"image": i, "bbox": (0.0, 0.0, 1.0, 1.0)} for i in range(len(imgs))]
        return Observation(question_text(self.sample), imgs, "prompt", info)

    def step(self, action: Action) -> tuple[Observation | None, bool, dict]:
        """Apply one policy turn; returns (next observation or None, done, info)."""
        if self.done:
            raise RuntimeError("step() on a finished episode")
        self.turns += 1
        self._last_tool = None
        if isinstance(action, Answer):
            self.answer, self.done = action.letter, True
            return None, True, {"answer": action.letter}
        obs = self._tool_turn(action) if isinstance(action, ToolCall) else self._error(action.error)
        if self.turns >= self.cfg.max_turns:  # the policy used its last turn without answering
            self.over_turns, self.done = True, True
            return None, True, {"over_turns": True}
        return obs, False, {"kind": obs.kind}

    def _tool_turn(self, call: ToolCall) -> Observation:
        if call.name not in self.cfg.tools:
            return self._error(f"tool {call.name!r} is not available in this episode")
        args = call.arguments
        if call.name == "visual_reflection":
            res = visual_reflection(self.images, args.get("images"), self.cfg.reflection_max_side or None)
        else:
            res = visual_confirmation(
                self.images,
                args["image"],
                args["bbox_2d"],
                args.get("coords", "auto"),
                self.cfg.min_crop_px,
                self.cfg.zoom_size,
            )
        if isinstance(res, ToolError):
            return self._error(res.message)
        if self.images_shown + len(res.images) > self.cfg.max_images:
            return self._error(f"image budget of {self.cfg.max_images} images per episode is spent; answer now")
        self.images_shown += len(res.images)
        self.tool_calls[call.name] += 1
        self.recovered = True
        n_crops = len(res.image_info) if call.name == "visual_confirmation" else 0
        if n_crops:
            self.crops += [(info["image"], tuple(info["bbox"])) for info in res.image_info]
        self._last_tool = (call.name, len(res.images), n_crops)
        return Observation(res.text, res.images, "tool", res.image_info)

    def reject_observation(self, reason: str) -> Observation:
        """The last tool observation could not be shown to the policy: count the call as failed instead.

        Undoes what the successful call recorded (tool count, images shown, crops) and returns the
        error observation to show in its place; the episode goes on.
        """
        if self._last_tool is None:
            raise RuntimeError("reject_observation() without a tool observation in this turn")
        name, n_images, n_crops = self._last_tool
        self._last_tool = None
        self.tool_calls[name] -= 1
        if not self.tool_calls[name]:
            del self.tool_calls[name]
        self.images_shown -= n_images
        if n_crops:
            del self.crops[-n_crops:]
        return self._error(f"{name}: {reason}")

    def _error(self, message: str) -> Observation:
        self.errors += 1
        self.recovered = False
        return Observation(f"Error: {message}", [], "error", [])

    @property
    def invalid_tool(self) -> bool:
        """A failed/malformed action that was not followed by a successful tool call ("not recovered")."""
        return self.errors > 0 and not self.recovered
