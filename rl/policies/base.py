"""The Policy protocol: everything the trainer and evaluator ask of a policy, and its configs.

A policy is rollout + scoring over the same flat token layout (rl/trajectory.py):

    trajs = policy.rollout(samples, group_size, env_cfg, gen_cfg, group_offset)
        # -> len(samples) * group_size Trajectories, sample i's group in a row, group_id = group_offset + i.
        # Runs rl.env.Episode per trajectory: decode a turn, parse it with rl.parsing.parse_action,
        # env.step, append the observation tokens; fills token_ids / action_mask / old_logprobs, sets
        # `truncated` when a token limit stops the episode and `image_token_mismatch` when the image
        # placeholders do not match the images. Sampling uses torch's global RNG (the trainer saves it).
    logp, ent = policy.token_logprobs(trajs, with_entropy=True)
        # -> (B, T) log-prob of token_ids[b, t] given the tokens before it, WITH grad, T = longest
        #    trajectory (right padding); 0 where action_mask is 0. `ent` is (B, T) entropy or None.
    ref = policy.reference_logprobs(trajs)
        # -> (B, T) the same under the frozen reference policy (initial weights / LoRA disabled), no grad.

`module` is the trainable torch module. The trainer may replace it with a wrapped one
(`accelerate.Accelerator.prepare` -> DDP), so forward passes must go through `self.module(...)`.
`state_dict()` / `load_state_dict()` cover everything needed for exact resume (trainable weights).

Policies are built by `rl.policies.build_policy(PolicyConfig, TinyConfig, seed)`: "tiny" is
`rl.policies.tiny.TinyPolicy`; "hf" is `rl.policies.hf_policy.build(cfg: PolicyConfig) -> Policy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from rl.env import EnvConfig
    from rl.trajectory import Trajectory
    from schemas import Sample


@dataclass
class GenerationConfig:
    """How a rollout samples (TOML section [generation])."""

    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False  # argmax decoding (evaluation)
    max_new_tokens: int = 512  # per policy turn
    max_response_tokens: int = 2048  # policy tokens per episode; beyond -> stop, truncated=True
    max_total_tokens: int = 8192  # whole sequence (prompt + observations + actions); beyond -> truncated=True
    # Record each sampled token's log-prob as `old_logprobs`. The trainer sets it to
    # `not recompute_old_logprobs` and evaluation to False: then the hf policy keeps no per-step
    # logits (B x V floats per generated token) and old_logprobs stay 0.
    record_logprobs: bool = True


@dataclass
class PolicyConfig:
    """Which policy to build and how (TOML section [policy]); tiny-policy sizes live in TinyConfig."""

    kind: str = "tiny"  # "tiny" | "hf"
    model_path: str = ""  # hf: local directory of a Qwen2.5-VL checkpoint (no download)
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:N"
    dtype: str = "float32"  # hf weights: "float32" | "bfloat16" | "float16"
    gradient_checkpointing: bool = False  # hf: trade compute for activation memory
    lora_r: int = 0  # hf: > 0 trains peft LoRA adapters of this rank instead of all weights
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    min_pixels: int = 0  # hf processor image budget (0 = processor default)
    max_pixels: int = 0
    attn_implementation: str = ""  # hf: "" (default) | "sdpa" | "eager" | "flash_attention_2"


@runtime_checkable
class Policy(Protocol):
    """What the trainer needs from a policy; see the module docstring for shapes."""

    name: str
    module: torch.nn.Module

    def rollout(
        self,
        samples: list[Sample],
        group_size: int,
        env_cfg: EnvConfig,
        gen_cfg: GenerationConfig,
        group_offset: int = 0,
    ) -> list[Trajectory]:
        """Run `group_size` episodes per sample; return their trajectories, groups contiguous."""
        ...

    def token_logprobs(
        self, trajectories: list[Trajectory], with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) per-token log-probs with grad (and (B, T) entropy or None)."""
        ...

    def reference_logprobs(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B, T) per-token log-probs under the frozen reference policy, no grad."""
        ...

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """Trainable parameters (what the optimizer updates)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Trainable state for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Switch the module to train (or eval) mode."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the module's parameters live."""
        ...


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; otherwise torch.device(name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
