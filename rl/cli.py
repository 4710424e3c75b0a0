"""`mifg train`, `mifg eval`, `mifg train-demo`, `mifg rl-demo-data`, `mifg train-plot`.

Heavy imports (torch, accelerate) stay inside the commands so `mifg --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from schemas.errors import ConfigError, InputError

DEMO_TOML = Path(__file__).with_name("demo_train.toml")


def _overrides(
    policy: str | None,
    model_path: str | None,
    steps: int | None,
    seed: int | None,
    sets: list[str],
    no_tools: bool,
    no_traj_mask: bool,
) -> list[dict]:
    from rl.config import parse_override

    out: list[dict] = []
    if policy:
        out.append({"policy": {"kind": policy}})
    if model_path:
        out.append({"policy": {"model_path": model_path}})
    if steps is not None:
        out.append({"steps": steps})
    if seed is not None:
        out.append({"seed": seed})
    if no_tools:
        out.append({"env": {"tools": []}})
    if no_traj_mask:
        out.append(
            {
                "mask": {
                    "mask_invalid_tool": False,
                    "mask_over_turns": False,
                    "mask_truncated": False,
                    "mask_image_mismatch": False,
                }
            }
        )
    out += [parse_override(s) for s in sets]
    return out


def default_config(overrides: list[dict]) -> Path | None:
    """The TOML a run without --config starts from: rl/demo_train.toml for the tiny policy, else none.

    The dataclass defaults suit no policy in particular: the tiny policy ran 3-14 s a step with them on
    2 busy cores (0.3-0.6 s with the demo's values), so it starts from the values the demo is tuned with.
    """
    from rl.config import load_config

    return DEMO_TOML if load_config(None, overrides).policy.kind == "tiny" else None


def _train(data: str, out: str, config: str | None, overrides: list[dict], resume: bool, quiet: bool) -> dict:
    from rl.config import load_config
    from rl.run_files import has_checkpoint
    from rl.trainer import Trainer

    cfg = load_config(config or default_config(overrides), [*overrides, {"data": data, "out": out}])
    if resume and not has_checkpoint(Path(out) / "ckpt"):
        raise InputError(f"{out}/ckpt/state.pt: nothing to resume")
    if not resume and has_checkpoint(Path(out) / "ckpt"):
        raise ConfigError(f"{out} already holds a checkpoint: pass --resume to continue it, or another --out")
    return Trainer(cfg, step_lines=not quiet).run(resume=resume)


def _train_verl(
    data: str, out: str, config: str | None, overrides: list[dict], resume: bool, dry_run: bool, verl_sets: list[str]
) -> int:
    """--engine verl: the same TrainConfig as a checked verl config (rl/verl_engine.py); launch unless dry_run."""
    from rl.config import load_config
    from rl.verl_engine import train

    if resume:
        raise ConfigError("--resume is for --engine native: verl resumes from OUT/ckpt itself (trainer.resume_mode)")
    cfg = load_config(config, [{"policy": {"kind": "hf"}}, *overrides, {"data": data, "out": out}])
    return train(cfg, data, out, verl_sets, dry_run)


def register(app: typer.Typer) -> None:
    """Add the training commands to the `mifg` app."""

    @app.command("train")
    def train_cmd(
        data: str = typer.Argument(..., help="Verified shard store, hf export, or verl export directory."),
        out: str = typer.Option("runs/rl", "--out", help="Run directory (metrics.jsonl, tb/, ckpt/, eval.json)."),
        policy: str = typer.Option(None, "--policy", help="tiny | hf (default: from --config, else tiny)."),
        model_path: str = typer.Option(None, "--model-path", help="hf: local Qwen2.5-VL checkpoint directory."),
        config: str = typer.Option(
            None,
            "--config",
            help="TOML file of TrainConfig fields (see rl/config.py); default for the tiny policy: rl/demo_train.toml.",
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue RUN/ckpt exactly where it stopped."),
        steps: int = typer.Option(None, "--steps", help="Training steps (overrides the config)."),
        seed: int = typer.Option(None, "--seed", help="Run seed (overrides the config)."),
        eval_data: str = typer.Option(None, "--eval-data", help="Separate evaluation set."),
        sets: list[str] = typer.Option([], "--set", help="Override any field: --set loss.kl_coef=0.01 (repeatable)."),
        no_tools: bool = typer.Option(False, "--no-tools", help="Ablation: disable both tools."),
        no_traj_mask: bool = typer.Option(False, "--no-traj-mask", help="Ablation: no trajectory-level masking."),
        allow_unverified: bool = typer.Option(False, "--allow-unverified", help="Also use non-accepted rows."),
        quiet: bool = typer.Option(False, "--quiet", help="A line every 25 steps instead of every step."),
        engine: str = typer.Option(
            "native",
            "--engine",
            help="native (rl/trainer.py: CPU, one GPU, DDP, attention analysis) | verl (scale-out: DATA is a "
            "`mifg export --format verl` dir; writes OUT/verl_config.yaml, checks it with verl, launches main_ppo).",
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="verl: write and check the config, print the launch."),
        verl_sets: list[str] = typer.Option(
            [], "-o", "--override", help="verl: a Hydra override of verl's config, e.g. -o trainer.n_gpus_per_node=8."
        ),
    ) -> None:
        """Train a policy with masked multi-turn GRPO on verified samples."""
        ov = _overrides(policy, model_path, steps, seed, sets, no_tools, no_traj_mask)
        if eval_data:
            ov.append({"eval_data": eval_data})
        if allow_unverified:
            ov.append({"allow_unverified": True})
        if engine == "verl":
            rc = _train_verl(data, out, config, ov, resume, dry_run, verl_sets)
            if rc:
                raise typer.Exit(rc)
            return
        if engine != "native":
            raise ConfigError(f"--engine {engine!r}: choose native or verl")
        if dry_run or verl_sets:
            raise ConfigError("--dry-run and -o are for --engine verl (the native engine takes --set KEY=VALUE)")
        _train(data, out, config, ov, resume, quiet)

    @app.command("eval")
    def eval_cmd(
        data: str = typer.Argument(..., help="Samples to evaluate on (its test split if it has one)."),
        checkpoint: str = typer.Option(..., "--checkpoint", help="RUN/ckpt directory (or its state.pt)."),
        policy: str = typer.Option(None, "--policy", help="tiny | hf (default: the checkpoint's)."),
        model_path: str = typer.Option(None, "--model-path", help="hf: base model directory."),
        out: str = typer.Option(None, "--out", help="Write the full report as JSON here."),
        limit: int = typer.Option(0, "--limit", help="Evaluate only the first N samples."),
        no_tools: bool = typer.Option(False, "--no-tools", help="Evaluate with tools disabled."),
        split: str = typer.Option("test", "--split", help="Split to use when DATA has several."),
        attention: int = typer.Option(
            0,
            "--attention",
            help="hf policy: also report the attention share of new tokens on image / text / generated tokens "
            "per turn (the paper's analysis) over the first N evaluated trajectories (eager attention; slow).",
        ),
    ) -> None:
        """Evaluate a checkpoint: accuracy overall / per task type / per domain, tool-call rates, turns."""
        report = run_eval(data, checkpoint, policy, model_path, limit, no_tools, split, attention)
        print_report(report)
        if out:
            from pipeline.shard_store import atomic_write_json

            atomic_write_json(Path(out), report)
            print(f"report written to {out}")

    @app.command("train-demo")
    def demo_cmd(
        out: str = typer.Option("runs/rl-demo", "--out", help="Demo root: data/, then RUN/seedN/ per run and seed."),
        steps: int = typer.Option(None, "--steps", help="Steps per run (default: rl/demo_train.toml)."),
        seeds: str = typer.Option(
            "0,1,2",
            "--seeds",
            help="Training seeds, comma-separated; every run is trained once per seed (--seeds 0: one).",
        ),
        ablations: bool = typer.Option(True, "--ablations/--no-ablations", help="Also run the two ablations."),
        plot: str = typer.Option(None, "--plot", help="Curves PNG (default OUT/rl_curves.png)."),
        n_train: int = typer.Option(800, "--train", help="Demo training samples (pipeline: sets the test fraction)."),
        n_test: int = typer.Option(200, "--test", help="Demo test samples (pipeline: sets the test fraction)."),
        data_source: str = typer.Option(
            "pipeline",
            "--data-source",
            help='pipeline (`mifg generate -o kinds=["fine_texture"]` + `mifg export --format hf`) or procedural'
            " (rl/demo_data.py, no generation pipeline).",
        ),
        n_items: int = typer.Option(1000, "-n", help="pipeline: work items `mifg generate` runs."),
    ) -> None:
        """CPU demo: generate the checkerboard task, train the tiny policy and the ablations per seed, plot curves."""
        from rl.plot import plot_runs
        from rl.run_files import has_checkpoint
        from rl.seed_stats import format_table, parse_seeds, seed_summary

        try:
            seed_list = parse_seeds(seeds)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        root = Path(out)
        if data_source == "pipeline":  # the data is made once, with its own fixed seed: every run sees the same
            from rl.demo_pipeline import make_demo_data

            data = make_demo_data(root, n=n_items, test_fraction=n_test / max(1, n_train + n_test))
        elif data_source == "procedural":
            from rl.demo_data import write_demo_data

            data = write_demo_data(root / "data", n_train, n_test)
        else:
            raise ConfigError(f"--data-source {data_source!r}: choose procedural or pipeline")
        runs = {"main": (False, False)}
        if ablations:
            runs |= {"no_tools": (True, False), "no_traj_mask": (False, True)}
        results: dict[str, dict[int, dict]] = {name: {} for name in runs}
        for seed in seed_list:  # seed by seed: after the first, every run has a result to compare
            for name, (no_tools, no_mask) in runs.items():
                print(f"== {name} seed {seed} ==")
                run_dir = root / name / f"seed{seed}"
                ov = _overrides(None, None, steps, seed, [], no_tools, no_mask)
                resume = has_checkpoint(run_dir / "ckpt")
                results[name][seed] = _train(str(data), str(run_dir), str(DEMO_TOML), ov, resume, quiet=True)
        dirs = [root / name / f"seed{s}" for name in runs for s in seed_list]
        png = plot_runs(dirs, plot or root / "rl_curves.png", labels=[d.parent.name for d in dirs])
        summary = {"data": str(data), "seeds": seed_list, **seed_summary(results)}
        (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        print(format_table(summary))
        print(f"curves: {png}; summary: {root / 'summary.json'}")

    @app.command("rl-demo-data")
    def demo_data_cmd(
        out: str = typer.Argument(..., help="Output shard store directory."),
        n_train: int = typer.Option(800, "--train"),
        n_test: int = typer.Option(200, "--test"),
        n_images: int = typer.Option(2, "--images", help="Images per sample (chance = 1/images)."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Write the demo's fine-grained checkerboard task as a verified shard store."""
        from rl.demo_data import write_demo_data

        path = write_demo_data(out, n_train, n_test, n_images, seed)
        print(f"wrote {n_train} train + {n_test} test samples to {path}")

    @app.command("train-plot")
    def plot_cmd(
        runs: list[str] = typer.Argument(..., help="Run directories (each with metrics.jsonl)."),
        out: str = typer.Option("rl_curves.png", "--out", help="PNG to write."),
    ) -> None:
        """Plot learning curves of one or more runs into a PNG."""
        from rl.plot import plot_runs

        print(f"wrote {plot_runs(runs, out)}")


def run_eval(
    data: str,
    checkpoint: str,
    policy: str | None = None,
    model_path: str | None = None,
    limit: int = 0,
    no_tools: bool = False,
    split: str = "test",
    attention: int = 0,
) -> dict:
    """Load a checkpoint and evaluate it on DATA; returns the report dict (+ attention shares if asked)."""
    import torch

    from rl.config import config_from_dict
    from rl.data import load_splits
    from rl.evaluate import evaluate
    from rl.policies import build_policy
    from rl.run_files import load_checkpoint

    state, path = load_checkpoint(Path(checkpoint), "eval")  # a damaged state.pt falls back to state.pt.prev
    cfg = config_from_dict(state["config"])
    if policy:
        cfg.policy.kind = policy
    if model_path:
        cfg.policy.model_path = model_path
    if no_tools:
        cfg.env.tools = ()
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    pol = build_policy(cfg.policy, cfg.tiny, seed=cfg.seed)
    pol.load_state_dict(state["policy"])
    splits, _ = load_splits(data, cfg.allow_unverified)
    samples = splits.get(split) or [s for v in splits.values() for s in v]
    samples = samples[:limit] if limit else samples
    if attention and cfg.policy.kind != "hf":
        raise ConfigError("--attention needs --policy hf (the tiny policy has no attention over tokens)")
    report, trajs = evaluate(pol, samples, cfg.env, cfg.generation, return_trajectories=True)
    if attention:
        from rl.policies.hf_qwen import attention_summary

        report["attention"] = attention_summary(pol, trajs[:attention])
    report["checkpoint"], report["step"], report["data"] = str(path), state["step"], data
    return report


def print_report(r: dict) -> None:
    """Human-readable evaluation summary."""
    print(f"accuracy {r['accuracy']:.3f} on {r['n']} samples (checkpoint step {r.get('step', '?')})")
    if "attention" in r:
        for row in r["attention"]["per_turn"]:
            print(
                f"  attention turn {row['turn']} (n={row['n']}): image {row['image']:.3f}, text {row['text']:.3f},"
                f" generated {row['generated']:.3f}"
            )
    for key in ("per_task_type", "per_domain"):
        for name, v in r[key].items():
            print(f"  {key[4:]:10s} {name:18s} {v['accuracy']:.3f}  (n={v['n']})")
    for tool, rate in r["tool_call_rate"].items():
        print(f"  tool-call rate {tool:20s} {rate:.2f}")
    print(f"  mean turns {r['mean_turns']:.2f}; answered {r['answered']:.2f}; tool errors {r['tool_error_rate']:.2f}")
