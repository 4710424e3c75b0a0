"""Entry point `rl.policies.build_policy` uses for `--policy hf`; the policy itself is in hf_qwen.py."""

from rl.policies.hf_qwen import HFQwenPolicy, attention_shares, attention_summary, build

__all__ = ["HFQwenPolicy", "attention_shares", "attention_summary", "build"]
