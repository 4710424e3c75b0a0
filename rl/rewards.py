"""Rewards: accuracy + format + the tool-use reward gain (paid only when the answer is correct).

    R = w_acc * [answer == gold] + w_format * [well-formed] + w_tool * [valid tool used AND correct]

DeepEyes' weights (0.8 / 0.2 / 1.2) are the default. "Well-formed": the episode ended with an answer
that is one of the sample's option letters and no turn was an invalid action. "Valid tool used": at
least one tool call that executed (an error observation does not count). The gain is conditional on
correctness so that calling tools is never rewarded for its own sake (no reward hacking by spam).
"""

from __future__ import annotations

from dataclasses import dataclass

from rl.trajectory import Trajectory


@dataclass
class RewardConfig:
    """Weights of the reward terms (TOML section [reward]); 0 switches a term off for ablations."""

    w_acc: float = 0.8
    w_format: float = 0.2
    w_tool: float = 1.2  # tool-use reward gain, paid only when correct


def reward_terms(traj: Trajectory, cfg: RewardConfig) -> dict[str, float]:
    """The three weighted terms of one trajectory (keys: accuracy, format, tool_gain)."""
    correct = traj.correct
    well_formed = traj.answer is not None and traj.answer in traj.valid_letters and traj.tool_errors == 0
    used_tool = sum(traj.tool_calls.values()) > 0
    return {
        "accuracy": cfg.w_acc * float(correct),
        "format": cfg.w_format * float(well_formed),
        "tool_gain": cfg.w_tool * float(used_tool and correct),
    }


def score(trajectories: list[Trajectory], cfg: RewardConfig) -> list[float]:
    """Set `reward` and `reward_terms` on each trajectory; return the rewards."""
    for t in trajectories:
        t.reward_terms = reward_terms(t, cfg)
        t.reward = sum(t.reward_terms.values())
    return [t.reward for t in trajectories]
