"""The Trajectory: what every policy's rollout produces and the trainer consumes.

A trajectory is ONE flat token sequence for one episode, built by appending token ids turn by turn
(never by re-tokenising the decoded text — re-tokenisation drifts from what was sampled):

    token_ids     (T,)  prompt | action_1 | observation_1 | action_2 | ... | answer action
    action_mask   (T,)  1.0 on tokens the policy generated, 0.0 on prompt / tool-observation / image tokens
    old_logprobs  (T,)  log-prob of each generated token under the sampling policy, 0.0 elsewhere

Image placeholders are ordinary entries of `token_ids` (the policy's image token id); `images` holds
the images in order of appearance so a policy can redo the forward pass. Policy-specific tensors
(pixel values, grid sizes, tiny-policy image tensors) go in `extras`.

Episode outcome fields come from the env (`finish`), flags from the policy (truncated, image mismatch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from rl.env import Episode

FLAGS = ("invalid_tool", "over_turns", "truncated", "image_token_mismatch")
"""Trajectory-level failure flags; each has a mask rule in rl/masking.py."""


@dataclass
class Trajectory:
    """One episode as tokens + masks + outcome. See the module docstring for the token layout."""

    sample_id: str
    group_id: int  # trajectories of one prompt in one step share a group id
    token_ids: torch.Tensor  # (T,) long
    action_mask: torch.Tensor  # (T,) float, 1 on policy tokens
    old_logprobs: torch.Tensor  # (T,) float, 0 where action_mask == 0
    images: list[Image.Image] = field(default_factory=list)
    turns: list[str] = field(default_factory=list)  # the policy's text of each turn
    n_turns: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)  # successful calls per tool
    tool_errors: int = 0
    crops: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)  # (image, norm box) per confirmation
    evidence: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)  # the sample's evidence boxes
    answer: str | None = None  # final letter, None when the episode ended without one
    gold: str = ""  # correct letter
    valid_letters: str = ""  # option letters of the sample
    task_type: str = ""
    domain: str = ""
    invalid_tool: bool = False
    over_turns: bool = False
    truncated: bool = False
    image_token_mismatch: bool = False
    reward: float = 0.0  # set by rl.rewards
    reward_terms: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No failure flag is set."""
        return not any(getattr(self, f) for f in FLAGS)

    @property
    def response_length(self) -> int:
        """Number of policy-generated tokens."""
        return int(self.action_mask.sum().item())

    @property
    def evidence_hit(self) -> bool:
        """A confirmation crop contains the centre of an evidence box (on any image: comparing the same
        region across images is as informative as zooming into the one that holds the detail)."""
        for _, (x1, y1, x2, y2) in self.crops:
            for _, (ex1, ey1, ex2, ey2) in self.evidence:
                cx, cy = (ex1 + ex2) / 2, (ey1 + ey2) / 2
                if x1 <= cx <= x2 and y1 <= cy <= y2:
                    return True
        return False

    @property
    def correct(self) -> bool:
        """The final answer is the gold letter."""
        return self.answer is not None and self.answer == self.gold

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


class TrajectoryBuilder:
    """Appends token ids (with their mask and log-probs) turn by turn; `finish` makes the Trajectory."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.mask: list[float] = []
        self.logprobs: list[float] = []
        self.images: list[Image.Image] = []
        self.turns: list[str] = []

    def add_context(self, ids: list[int], images: list[Image.Image] = ()) -> None:
        """Append prompt / observation tokens (mask 0) and the images their placeholders stand for."""
        self.ids += ids
        self.mask += [0.0] * len(ids)
        self.logprobs += [0.0] * len(ids)
        self.images += list(images)

    def add_action(self, ids: list[int], logprobs: list[float], text: str) -> None:
        """Append the policy's sampled tokens of one turn (mask 1) with their sampling log-probs."""
        assert len(ids) == len(logprobs), "one log-prob per generated token"
        self.ids += ids
        self.mask += [1.0] * len(ids)
        self.logprobs += logprobs
        self.turns.append(text)

    def __len__(self) -> int:
        return len(self.ids)

    def finish(
        self,
        episode: Episode,
        group_id: int,
        truncated: bool = False,
        image_token_mismatch: bool = False,
        extras: dict[str, Any] | None = None,
    ) -> Trajectory:
        """The Trajectory of a finished (or truncated) episode."""
        s = episode.sample
        return Trajectory(
            sample_id=s.id,
            group_id=group_id,
            token_ids=torch.tensor(self.ids, dtype=torch.long),
            action_mask=torch.tensor(self.mask, dtype=torch.float32),
            old_logprobs=torch.tensor(self.logprobs, dtype=torch.float32),
            images=self.images,
            turns=self.turns,
            n_turns=episode.turns,
            tool_calls=dict(episode.tool_calls),
            tool_errors=episode.errors,
            crops=list(episode.crops),
            evidence=[(b.image_index, tuple(b.bbox)) for b in s.evidence],
            answer=episode.answer,
            gold=s.answer,
            valid_letters=episode.valid_letters,
            task_type=s.task_type.value,
            domain=s.domain.value,
            invalid_tool=episode.invalid_tool,
            over_turns=episode.over_turns,
            truncated=truncated,
            image_token_mismatch=image_token_mismatch,
            extras=extras or {},
        )


def pad_stack(tensors: list[torch.Tensor], value: float = 0) -> torch.Tensor:
    """Right-pad 1-D tensors to a common length: (B, T_max)."""
    t_max = max(int(t.shape[0]) for t in tensors)
    out = torch.full((len(tensors), t_max), value, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out
