"""IMAgent trainer: env + tools, rollouts, rewards, two-level masks, GRPO loss, policies, trainer, eval.

Read in this order: `env.py`/`tools.py`/`parsing.py` (the episode), `trajectory.py` (what a rollout
produces), `rewards.py` -> `masking.py` -> `advantages.py` -> `loss.py` (the update),
`trainer.py` (the loop), `policies/` (tiny CPU policy, transformers VLM policy).
"""
