"""TrainConfig: every knob of a training run, as plain dataclasses (CLI flags + optional TOML).

A TOML file mirrors the dataclasses: top-level keys are TrainConfig fields, sections are the nested
configs ([policy], [tiny], [env], [generation], [reward], [mask], [loss]). Example:

    steps = 300
    group_size = 8
    [env]
    max_turns = 4
    tools = ["visual_confirmation"]
    [loss]
    agg = "seq-mean-token-mean"
    kl_coef = 0.01

Precedence: defaults < TOML < CLI flags (`--set loss.kl_coef=0.01` sets any field).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rl.env import EnvConfig
from rl.loss import AGG_MODES, LossConfig
from rl.masking import MaskConfig
from rl.parsing import TOOL_NAMES
from rl.policies.base import GenerationConfig, PolicyConfig
from rl.policies.tiny import TinyConfig
from rl.rewards import RewardConfig
from schemas.errors import ConfigError


@dataclass
class TrainConfig:
    """One training run. Sections: policy, tiny, env, generation, reward, mask, loss."""

    data: str = ""  # verified shard store, hf export (save_to_disk / parquet) or verl parquet
    out: str = "runs/rl"  # run directory: config.json, metrics.jsonl, tb/, ckpt/, eval.json
    eval_data: str = ""  # separate eval set; default: DATA's test split, else a held-out fraction
    eval_fraction: float = 0.1  # held out (grouped by source photo) when DATA has no test split
    allow_unverified: bool = False  # also train on candidate/rejected rows of a shard store (not advised)
    seed: int = 0
    torch_threads: int = 0  # intra-op CPU threads (0 = torch's default); 1 is fastest for the tiny policy on a busy CPU
    time_limit_min: float = 0.0  # stop (evaluate, checkpoint) after this many minutes of training (0 = no limit)
    steps: int = 200  # rollout+update iterations
    prompts_per_step: int = 16  # samples per rollout batch (across processes)
    group_size: int = 8  # trajectories per sample (GRPO group)
    ppo_epochs: int = 2  # K passes over each rollout batch
    minibatch_size: int = 64  # trajectories per optimizer step
    micro_batch_size: int = 0  # trajectories per forward/backward (0 = the whole minibatch)
    recompute_old_logprobs: bool = True  # old log-probs from a forward pass (as verl) rather than the sampler
    log_entropy: bool = True  # log the "entropy" metric (a full-vocabulary pass per micro-batch; off saves it)
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    eval_every: int = 25  # steps between evaluations (0 = only at the end)
    eval_limit: int = 0  # samples per evaluation (0 = all)
    save_every: int = 50  # steps between checkpoints (the last step is always saved)
    tensorboard: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    tiny: TinyConfig = field(default_factory=TinyConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self) -> None:
        """Raise ConfigError on impossible combinations."""
        if self.group_size < 2:
            raise ConfigError("group_size must be >= 2: group-relative advantages need a group")
        if self.loss.agg not in AGG_MODES:
            raise ConfigError(f"loss.agg must be one of {AGG_MODES}, got {self.loss.agg!r}")
        if self.loss.adv_scale not in ("std", "none"):
            raise ConfigError(f"loss.adv_scale must be 'std' or 'none', got {self.loss.adv_scale!r}")
        if self.mask.group_stats not in ("all", "kept"):
            raise ConfigError(f"mask.group_stats must be 'all' or 'kept', got {self.mask.group_stats!r}")
        bad = [t for t in self.env.tools if t not in TOOL_NAMES]
        if bad:
            raise ConfigError(f"env.tools: unknown tool(s) {bad}; tools are {list(TOOL_NAMES)}")
        if self.policy.kind not in ("tiny", "hf"):
            raise ConfigError(f"policy.kind must be 'tiny' or 'hf', got {self.policy.kind!r}")
        if self.policy.kind == "hf" and self.loss.entropy_coef > 0:
            # The hf policy reports entropy as a metric only (no gradient through the full vocabulary):
            # refuse rather than let the bonus silently do nothing.
            raise ConfigError(
                "loss.entropy_coef > 0 is supported for the tiny policy only; set it to 0 for --policy hf"
            )
        for name in ("steps", "prompts_per_step", "ppo_epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert a TOML/JSON value to the annotated type of a dataclass field."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def apply_dict(obj: Any, values: dict[str, Any], where: str = "") -> None:
    """Set dataclass fields of `obj` from a nested dict; unknown keys are a ConfigError."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in values.items():
        path = f"{where}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table/section")
            apply_dict(current, value, f"{path}.")
        else:
            setattr(obj, key, _coerce(hints[key], value, path))


def parse_override(text: str) -> dict[str, Any]:
    """'loss.kl_coef=0.01' -> {'loss': {'kl_coef': 0.01}} (the value is parsed as TOML)."""
    from rl.toml_compat import tomllib

    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: take it as a string
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_config(toml_path: str | Path | None = None, overrides: list[dict[str, Any]] | None = None) -> TrainConfig:
    """TrainConfig from defaults, then a TOML file, then override dicts; validated."""
    from rl.toml_compat import tomllib

    cfg = TrainConfig()
    if toml_path:
        path = Path(toml_path)
        try:
            apply_dict(cfg, tomllib.loads(path.read_text("utf-8")))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML ({e})") from e
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
    for o in overrides or []:
        apply_dict(cfg, o)
    cfg.validate()
    return cfg


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """TrainConfig from `to_dict()` output (a checkpoint's config.json)."""
    cfg = TrainConfig()
    apply_dict(cfg, values)
    return cfg
