"""The action-trajectory two-level mask.

Action level: `Trajectory.action_mask` (built during rollout) is 1 on tokens the policy generated and
0 on prompt, tool-observation and image tokens — only the policy's own tokens carry loss.

Trajectory level: a trajectory that failed is masked out WHOLE (all its tokens get mask 0). Each rule
is a flag so the paper's ablation can be rerun:

    mask_invalid_tool    a malformed / failed tool call that the policy did not recover from
    mask_over_turns      the turn limit was reached without an answer   (Mini-o3 "over-turn masking")
    mask_truncated       a token limit cut the episode                  (TRL mask_truncated_completions)
    mask_image_mismatch  image placeholders did not match the images    (verl "image features ... do not match")

Group statistics (documented choice, `group_stats`): with "all" (default, as TRL and Mini-o3 do) a
masked trajectory still counts in its group's reward mean/std with the reward it earned — it is a
real outcome of the policy, and dropping it would make the survivors' advantages look better than
they are; it only carries no loss. With "kept" masked trajectories are left out of the statistics,
as if they had never been sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.trajectory import FLAGS, Trajectory, pad_stack


@dataclass
class MaskConfig:
    """Trajectory-level mask rules (TOML section [mask]); all off = the no-trajectory-mask ablation."""

    mask_invalid_tool: bool = True
    mask_over_turns: bool = True
    mask_truncated: bool = True
    mask_image_mismatch: bool = True
    group_stats: str = "all"  # "all" | "kept": which trajectories enter group mean/std (see module doc)

    def rules(self) -> dict[str, bool]:
        """Flag name -> whether that rule masks."""
        return {
            "invalid_tool": self.mask_invalid_tool,
            "over_turns": self.mask_over_turns,
            "truncated": self.mask_truncated,
            "image_token_mismatch": self.mask_image_mismatch,
        }


def mask_reason(traj: Trajectory, cfg: MaskConfig) -> str | None:
    """The first enabled rule that masks this trajectory, or None if it is kept."""
    rules = cfg.rules()
    for flag in FLAGS:
        if rules[flag] and getattr(traj, flag):
            return flag
    return None


def trajectory_keep(trajectories: list[Trajectory], cfg: MaskConfig) -> torch.Tensor:
    """(B,) 1.0 for kept trajectories, 0.0 for masked ones."""
    return torch.tensor([mask_reason(t, cfg) is None for t in trajectories], dtype=torch.float32)


def loss_mask(trajectories: list[Trajectory], cfg: MaskConfig) -> torch.Tensor:
    """(B, T) the two-level mask: action mask times trajectory keep."""
    action = pad_stack([t.action_mask for t in trajectories])  # (B, T)
    keep = trajectory_keep(trajectories, cfg)  # (B,)
    return action * keep[:, None]


def masked_fractions(trajectories: list[Trajectory], cfg: MaskConfig) -> dict[str, float]:
    """Fraction of trajectories masked, per reason ('masked_fraction/<reason>') and in total."""
    n = max(len(trajectories), 1)
    reasons = [mask_reason(t, cfg) for t in trajectories]
    out = {f"masked_fraction/{f}": sum(r == f for r in reasons) / n for f in FLAGS}
    out["masked_fraction/total"] = sum(r is not None for r in reasons) / n
    return out
