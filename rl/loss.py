"""The GRPO-family policy loss: clipped ratio (separate low/high clip), optional k3 KL, named aggregation.

Per token (only where mask = 1; `mask` is the two-level mask from rl/masking.py):

    ratio = exp(logp - old_logp)                                         # (B, T)
    pg    = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)  # PPO / DAPO clip-higher
    kl    = exp(ref - logp) - (ref - logp) - 1                           # k3 estimator (Schulman), >= 0
    loss_t = pg + kl_coef * kl - entropy_coef * entropy

Aggregation over tokens (names from verl / TRL `loss_type`):

    token-mean               sum(M * loss_t) / sum(M)                     DAPO: every token weighs the same
    seq-mean-token-mean      mean over kept seqs of (sum_t M*loss_t / sum_t M)   original GRPO
    seq-mean-token-sum-norm  sum(M * loss_t) / (n_kept_seqs * L)          Dr. GRPO: L a constant length

Dr. GRPO's L must not depend on the batch (the padded length T changes every step and counts prompt
and image tokens): it is `norm_len`, which the trainer defaults to the configured response budget
`generation.max_response_tokens` (Dr. GRPO / verl use the max response length the same way).

Aggregation is written as per-token weights (B, T) that sum the token losses into the scalar, so a
minibatch split into micro-batches gets exactly the loss of the whole (the weights are computed once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


@dataclass
class LossConfig:
    """Policy-loss options (TOML section [loss])."""

    clip_low: float = 0.2  # ratio lower bound 1 - clip_low
    clip_high: float = 0.28  # ratio upper bound 1 + clip_high (DAPO "clip-higher"; = clip_low for PPO)
    kl_coef: float = 0.0  # weight of the k3 KL to the reference policy; 0 skips the reference pass
    entropy_coef: float = 0.0  # entropy bonus
    agg: str = "token-mean"  # one of AGG_MODES
    norm_len: int = 0  # seq-mean-token-sum-norm: the constant L (0 = generation.max_response_tokens)
    adv_scale: str = "std"  # "std" (GRPO) | "none" (Dr. GRPO), see rl/advantages.py


def token_weights(mask: torch.Tensor, agg: str, norm_len: int = 0) -> torch.Tensor:
    """(B, T) weights w so that loss = sum(w * loss_t) implements the aggregation mode `agg`."""
    mask = mask.float()  # (B, T)
    n_seqs = (mask.sum(-1) > 0).sum().clamp(min=1)  # kept sequences with at least one token
    if agg == "token-mean":
        return mask / mask.sum().clamp(min=1)
    if agg == "seq-mean-token-mean":
        return mask / (mask.sum(-1, keepdim=True).clamp(min=1) * n_seqs)
    if agg == "seq-mean-token-sum-norm":
        if norm_len < 1:
            raise ValueError("seq-mean-token-sum-norm needs a constant norm_len >= 1 (e.g. the max response tokens)")
        return mask / (n_seqs * norm_len)
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {AGG_MODES}")


def policy_loss(
    logp: torch.Tensor,  # (B, T) current log-probs, with grad
    old_logp: torch.Tensor,  # (B, T) log-probs at rollout time
    adv: torch.Tensor,  # (B,) advantages
    mask: torch.Tensor,  # (B, T) two-level mask
    cfg: LossConfig,
    ref_logp: torch.Tensor | None = None,  # (B, T) reference log-probs (kl_coef > 0)
    entropy: torch.Tensor | None = None,  # (B, T)
    weights: torch.Tensor | None = None,  # (B, T) precomputed aggregation weights (micro-batching)
) -> tuple[torch.Tensor, dict[str, float]]:
    """Scalar loss and metrics (clip_frac, kl, entropy, ratio) over masked tokens."""
    on = mask > 0  # (B, T)
    log_ratio = torch.where(on, logp - old_logp, 0.0).clamp(-20.0, 20.0)  # padded tokens: ratio 1
    ratio = log_ratio.exp()  # (B, T)
    a = adv[:, None]  # (B, 1)
    surr = ratio * a
    surr_clip = ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high) * a
    per_tok = -torch.minimum(surr, surr_clip)  # (B, T)
    kl = None
    if ref_logp is not None and cfg.kl_coef > 0:
        d = torch.where(on, ref_logp - logp, 0.0).clamp(-20.0, 20.0)
        kl = d.exp() - d - 1  # (B, T) k3
        per_tok = per_tok + cfg.kl_coef * kl
    if entropy is not None and cfg.entropy_coef > 0:
        per_tok = per_tok - cfg.entropy_coef * entropy
    w = token_weights(mask, cfg.agg, cfg.norm_len) if weights is None else weights
    loss = torch.where(on, per_tok * w, 0.0).sum()  # masked tokens contribute 0 and get 0 gradient

    with torch.no_grad():
        n = on.sum().clamp(min=1)
        metrics = {
            "clip_frac": ((surr_clip < surr) & on).sum().item() / n.item(),
            "ratio": ratio[on].mean().item() if on.any() else 1.0,
            "kl": (kl[on].mean().item() if on.any() else 0.0) if kl is not None else 0.0,
        }
        if entropy is not None:
            metrics["entropy"] = entropy[on].mean().item() if on.any() else 0.0
    return loss, metrics
