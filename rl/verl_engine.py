"""`mifg train --engine verl`: the same TrainConfig trained by verl, with IMAgent's agent loop.

The native trainer (rl/trainer.py) is the reference implementation (CPU, one GPU, DDP + LoRA, the
attention analysis). verl is the scale-out engine: FSDP or Megatron actors and vLLM / SGLang
rollouts. This module does not train; it turns a run's TrainConfig into a complete verl config and
hands it to verl:

    DATA  = a `mifg export --format verl` directory: train.parquet, test.parquet, mifg_reward.py,
            mifg_tools.py, tool_config.yaml
    OUT/agent_loops.yaml  the IMAgent loop (rl/verl_agent_loop.py) under the names `imagent` and
                          `tool_agent` (the name the export's rows carry), with the run's [env],
                          [generation], [reward] and [mask] sections; it logs each episode to
                          OUT/rollouts/*.jsonl
    OUT/verl_config.yaml  verl's ppo_trainer composed with `verl_settings()` and the user's `-o`
                          Hydra overrides, then checked with verl's own code (rl/verl_check.py)
    launch                python -m verl.trainer.main_ppo --config-path OUT --config-name verl_config

verl pins its own transformers and brings Ray, so it lives in an environment of its own
(`make verl-env`: .venv-verl from requirements-verl.lock). When verl is not importable here, the
check and the launch run with $MIFG_VERL_PYTHON, else with .venv-verl/bin/python of this checkout.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from rl.config import TrainConfig
from schemas.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]
VERL_ENV = REPO / ".venv-verl"
AGENT_LOOP = "rl.verl_agent_loop.IMAgentLoop"
AGENT_NAMES = ("imagent", "tool_agent")  # ours, and the name every exported row carries (verl's ToolAgentLoop)
EXPORT_FILES = ("train.parquet", "mifg_reward.py", "tool_config.yaml")


def verl_python() -> str:
    """The interpreter that runs verl: this one if it imports verl, else $MIFG_VERL_PYTHON, else .venv-verl."""
    if importlib.util.find_spec("verl") is not None:
        return sys.executable
    named = os.environ.get("MIFG_VERL_PYTHON")
    if named:
        if not os.access(named, os.X_OK):
            raise ConfigError(f"MIFG_VERL_PYTHON={named} is not an executable Python; run `make verl-env`")
        return named
    local = VERL_ENV / "bin" / "python"
    if local.exists():
        return str(local)
    raise ConfigError(
        f"verl is not installed here and there is no verl environment ({local} missing, MIFG_VERL_PYTHON unset): "
        "run `make verl-env`"
    )


def export_files(data: str | Path) -> dict[str, Path]:
    """The verl export's files (absolute); a directory that is not one is one InputError line."""
    root = Path(data).resolve()
    missing = [n for n in EXPORT_FILES if not (root / n).is_file()]
    if not root.is_dir() or missing:
        what = "no such directory" if not root.is_dir() else "no " + ", ".join(missing)
        raise InputError(f"{data}: not a `mifg export --format verl` directory ({what})")
    files = {n: root / n for n in EXPORT_FILES}
    files["val"] = root / "test.parquet" if (root / "test.parquet").is_file() else root / "train.parquet"
    return files


def run_files(cfg: TrainConfig, data: str | Path) -> dict[str, Path]:
    """The export's files; `eval_data` (another verl export, or one of its parquet files) replaces the val file."""
    files = export_files(data)
    if cfg.eval_data:
        ev = Path(cfg.eval_data).resolve()
        ev = ev / "test.parquet" if ev.is_dir() else ev
        if not ev.is_file() or ev.suffix != ".parquet":
            raise InputError(f"--eval-data {cfg.eval_data}: expected a verl export or one of its .parquet files")
        files["val"] = ev
    return files


def check_config(cfg: TrainConfig) -> None:
    """Refuse what verl cannot do the way the native trainer does (one ConfigError line each)."""
    if cfg.policy.kind != "hf":
        raise ConfigError("--engine verl trains a Hugging Face checkpoint: use --policy hf (the default with verl)")
    if not cfg.policy.model_path:
        raise ConfigError(
            "--engine verl needs a model: --model-path DIR (or policy.model_path in --config, "
            "e.g. rl/configs/qwen2_5_vl_7b_lora.toml)"
        )
    if cfg.mask.group_stats != "all":
        raise ConfigError(
            'mask.group_stats = "kept" is native-only: verl computes group statistics over every trajectory'
        )


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def verl_settings(cfg: TrainConfig, files: dict[str, Path], out: Path) -> dict[str, Any]:
    """Dotted verl config keys -> values: the TrainConfig translated (user `-o` overrides win)."""
    gen, loss, pol = cfg.generation, cfg.loss, cfg.policy
    prompt_len = gen.max_total_tokens // 2  # verl pads prompt and response to fixed lengths: split the budget
    micro = cfg.micro_batch_size or cfg.minibatch_size
    epochs = math.ceil(cfg.steps * cfg.prompts_per_step / max(_rows(files["train.parquet"]), 1)) + 1
    ours: dict[str, Any] = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": loss.adv_scale == "std",
        "algorithm.use_kl_in_reward": False,
        "data.train_files": [str(files["train.parquet"])],
        "data.val_files": [str(files["val"])],
        "data.train_batch_size": cfg.prompts_per_step,
        "data.max_prompt_length": prompt_len,
        "data.max_response_length": gen.max_total_tokens - prompt_len,
        "data.filter_overlong_prompts": True,
        "data.image_key": "images",
        "data.return_raw_chat": True,
        "data.seed": cfg.seed,
        "actor_rollout_ref.model.path": pol.model_path,
        "actor_rollout_ref.model.enable_gradient_checkpointing": pol.gradient_checkpointing,
        "actor_rollout_ref.model.lora_rank": pol.lora_r,
        "actor_rollout_ref.model.lora_alpha": pol.lora_alpha,
        "actor_rollout_ref.model.target_modules": list(pol.lora_target_modules),
        "actor_rollout_ref.actor.optim.lr": cfg.lr,
        "actor_rollout_ref.actor.optim.weight_decay": cfg.weight_decay,
        "actor_rollout_ref.actor.optim.lr_warmup_steps": cfg.warmup_steps or -1,
        "actor_rollout_ref.actor.optim.clip_grad": cfg.grad_clip if cfg.grad_clip > 0 else math.inf,  # 0: no clipping
        "actor_rollout_ref.actor.ppo_epochs": cfg.ppo_epochs,
        # verl counts mini-batches in prompts (times rollout.n); ours counts trajectories
        "actor_rollout_ref.actor.ppo_mini_batch_size": max(1, cfg.minibatch_size // cfg.group_size),
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.actor.clip_ratio_low": loss.clip_low,
        "actor_rollout_ref.actor.clip_ratio_high": loss.clip_high,
        "actor_rollout_ref.actor.loss_agg_mode": loss.agg,  # rl/loss.py's AGG_MODES are verl's names
        "actor_rollout_ref.actor.entropy_coeff": loss.entropy_coef,
        "actor_rollout_ref.actor.use_kl_loss": loss.kl_coef > 0,
        "actor_rollout_ref.actor.kl_loss_coef": loss.kl_coef,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",  # k3, as rl/loss.py
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.mode": "async",
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
        "actor_rollout_ref.rollout.n": cfg.group_size,
        "actor_rollout_ref.rollout.temperature": gen.temperature,
        "actor_rollout_ref.rollout.top_p": gen.top_p,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.rollout.multi_turn.enable": True,
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": cfg.env.max_turns,
        "actor_rollout_ref.rollout.multi_turn.tool_config_path": str(files["tool_config.yaml"]),
        "actor_rollout_ref.rollout.agent.default_agent_loop": AGENT_NAMES[0],
        "actor_rollout_ref.rollout.agent.agent_loop_config_path": str(out / "agent_loops.yaml"),
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": micro,
        # the IMAgent loop scores each trajectory with rl/rewards.py (verl then skips this function);
        # it stays the reward of rows any other agent loop runs
        "reward.custom_reward_function.path": str(files["mifg_reward.py"]),
        "reward.custom_reward_function.name": "compute_score",
        "trainer.total_training_steps": cfg.steps,
        "trainer.total_epochs": epochs,
        "trainer.save_freq": cfg.save_every or -1,
        "trainer.test_freq": cfg.eval_every or -1,
        "trainer.val_before_train": False,
        "trainer.default_local_dir": str(out / "ckpt"),
        "trainer.project_name": "mifg",
        "trainer.experiment_name": out.name,
        "trainer.logger": ["console", "tensorboard"] if cfg.tensorboard else ["console"],
        "trainer.n_gpus_per_node": 1,
        "trainer.nnodes": 1,
    }
    pixels = {k: v for k, v in (("min_pixels", pol.min_pixels), ("max_pixels", pol.max_pixels)) if v}
    if pixels:  # the processor's image budget, in verl's prompt/tool rendering and in vLLM alike
        ours["data.mm_processor_kwargs"] = pixels
    if loss.agg == "seq-mean-token-sum-norm":  # Dr. GRPO's constant L, as the native loss uses it
        ours["actor_rollout_ref.actor.loss_scale_factor"] = loss.norm_len or gen.max_response_tokens
    return ours


def agent_loop_config(cfg: TrainConfig, out: Path) -> list[dict[str, Any]]:
    """OUT/agent_loops.yaml: verl's agent-loop registry entries for the IMAgent loop (episode log: OUT/rollouts)."""
    sections = cfg.to_dict()
    loop = {"train_config": {k: sections[k] for k in ("env", "generation", "reward", "mask")}}
    loop["log_dir"] = str(out / "rollouts")
    return [{"name": name, "_target_": AGENT_LOOP, **loop} for name in AGENT_NAMES]


def parse_overrides(overrides: list[str]) -> list[str]:
    """`-o` values are Hydra overrides of verl's config: KEY=VALUE (+KEY=VALUE adds a key)."""
    for o in overrides:
        if "=" not in o or not o.split("=", 1)[0].strip("+~"):
            raise ConfigError(f"-o expects a verl config override KEY=VALUE, got {o!r}")
    return list(overrides)


def launch_command(python: str, files: dict[str, Path], out: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) of the verl launch: main_ppo on OUT/verl_config.yaml."""
    argv = [python, "-m", "verl.trainer.main_ppo", "--config-path", str(out), "--config-name", "verl_config"]
    # tool_config.yaml names mifg_tools.* (the export dir); rl/ must import in verl's Ray workers
    return argv, {"PYTHONPATH": os.pathsep.join([str(files["train.parquet"].parent), str(REPO)])}


def shell_line(argv: list[str], env: dict[str, str]) -> str:
    """The launch as one copy-pasteable shell line."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), *(shlex.quote(a) for a in argv)])


def write_config(cfg: TrainConfig, data: str | Path, out: str | Path, overrides: list[str]) -> dict[str, Any]:
    """Write OUT/agent_loops.yaml and OUT/verl_config.yaml and check the latter with verl; returns the result."""
    check_config(cfg)
    files, overrides = run_files(cfg, data), parse_overrides(overrides)
    python = verl_python()  # before anything is written: no verl, no files
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_loops.yaml").write_text(yaml.safe_dump(agent_loop_config(cfg, out), sort_keys=False), "utf-8")
    settings = out / "verl_settings.json"  # the translated TrainConfig, for verl_check (and for reading)
    settings.write_text(json.dumps(verl_settings(cfg, files, out), indent=2) + "\n", "utf-8")
    _, env = launch_command(python, files, out)
    argv = [python, "-m", "rl.verl_check", str(out), str(settings), *overrides]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"the verl config check did not run with {python} (exit {proc.returncode}): {tail}")
    result = json.loads(lines[-1])
    if not result["ok"]:
        raise ConfigError(f"verl rejected {out / 'verl_config.yaml'}: {result['error']}")
    result["python"] = python
    return result


def train(cfg: TrainConfig, data: str | Path, out: str | Path, overrides: list[str], dry_run: bool) -> int:
    """Write and check the verl config, print it and the launch; without dry_run launch verl. Returns its exit code."""
    result = write_config(cfg, data, out, overrides)
    files, out = run_files(cfg, data), Path(out).resolve()
    argv, env = launch_command(result["python"], files, out)
    print(f"verl config: {result['config']} (verl {result['verl']} accepts it: {'; '.join(result['checks'])})")
    print(f"launch: {shell_line(argv, env)}")
    if dry_run:
        return 0
    print("launching verl ...", flush=True)
    return subprocess.run(argv, env={**os.environ, **env}, check=False).returncode
