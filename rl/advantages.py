"""Group-relative advantages (GRPO): each trajectory's reward against its group's.

    A_i = (r_i - mean_g(r)) / (std_g(r) + eps)     scale="std"   (GRPO)
    A_i =  r_i - mean_g(r)                           scale="none"  (Dr. GRPO: no std division)

The std is the unbiased sample std (as TRL). A group whose rewards are all equal gets A = 0: it has
nothing to teach. `include` (B,) selects the trajectories that enter the statistics (masking.py,
`group_stats`); excluded ones still get an advantage, which the loss mask then zeroes.
"""

from __future__ import annotations

import torch


def group_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, scale: str = "std", include: torch.Tensor | None = None
) -> torch.Tensor:
    """(B,) advantages from (B,) rewards and (B,) group ids."""
    if scale not in ("std", "none"):
        raise ValueError(f"advantage scale must be 'std' or 'none', got {scale!r}")
    include = torch.ones_like(rewards, dtype=torch.bool) if include is None else include.bool()
    adv = torch.zeros_like(rewards)
    for g in group_ids.unique():
        members = group_ids == g
        stats = rewards[members & include]
        if stats.numel() == 0:
            continue
        mean = stats.mean()
        std = stats.std() if stats.numel() > 1 else torch.zeros(())
        centred = rewards[members] - mean
        if scale == "std":  # an all-equal group: float noise in `centred` must not be blown up by 1/eps
            centred = centred / (std + 1e-6) if std > 1e-6 else torch.zeros_like(centred)
        adv[members] = centred
    return adv
