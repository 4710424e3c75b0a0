"""Policies: the tiny CPU policy and the transformers VLM policy, built from config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.errors import ConfigError

if TYPE_CHECKING:
    from rl.policies.base import Policy, PolicyConfig
    from rl.policies.tiny import TinyConfig


def build_policy(cfg: PolicyConfig, tiny: TinyConfig | None = None, seed: int = 0) -> Policy:
    """Build the policy named by `cfg.kind` ("tiny" or "hf")."""
    if cfg.kind == "tiny":
        from rl.policies.tiny import TinyConfig, TinyPolicy

        return TinyPolicy(tiny or TinyConfig(), device=cfg.device, seed=seed)
    if cfg.kind == "hf":
        if not cfg.model_path:
            raise ConfigError("--policy hf needs --model-path (a local Qwen2.5-VL checkpoint directory)")
        from rl.policies.hf_policy import build  # the transformers Qwen2.5-VL policy

        return build(cfg)
    raise ConfigError(f"unknown policy {cfg.kind!r}: expected 'tiny' or 'hf'")
