"""`mifg train-demo --seeds`: per-seed runs on the same data, their mean ± spread; the tiny policy's default config."""

import json
import math

import pytest
import torch

from pipeline.cli import main
from rl.cli import DEMO_TOML, default_config
from rl.seed_stats import format_table, parse_seeds, seed_summary, spread
from rl.toml_compat import tomllib


def test_spread_of_hand_computed_values():
    s = spread([1.0, 0.5, 0.6])
    assert s["mean"] == pytest.approx(0.7)
    # sample std: sqrt((0.3² + 0.2² + 0.1²) / (3 - 1)) = sqrt(0.07)
    assert s["std"] == pytest.approx(math.sqrt(0.07))
    assert (s["min"], s["max"]) == (0.5, 1.0)
    assert spread([0.8]) == {"mean": 0.8, "std": 0.0, "min": 0.8, "max": 0.8}


def _report(acc: float, conf: float) -> dict:
    return {"accuracy": acc, "tool_call_rate": {"visual_confirmation": conf}, "n": 200, "steps": 150, "wall_s": 40.04}


def test_seed_summary_per_run_and_seed():
    results = {
        "main": {2: _report(0.5, 0.0), 0: _report(1.0, 1.0), 1: _report(0.96, 0.9)},
        "no_tools": {0: _report(0.5, 0.0), 1: _report(0.5, 0.0), 2: _report(0.5, 0.0)},
    }
    summary = seed_summary(results)
    main_run = summary["runs"]["main"]
    assert main_run["seeds"] == [0, 1, 2]
    assert main_run["test_accuracy"]["per_seed"] == {"0": 1.0, "1": 0.96, "2": 0.5}
    assert main_run["test_accuracy"]["mean"] == pytest.approx(0.82)
    assert main_run["confirmation_rate"]["mean"] == pytest.approx(1.9 / 3)
    # confirmation 1.0, 0.9, 0.0: mean 0.6333, sample std sqrt((0.3667² + 0.2667² + 0.6333²) / 2) = 0.5508
    assert main_run["confirmation_rate"]["std"] == pytest.approx(0.5508, abs=1e-4)
    assert main_run["learned"] == 2 and summary["runs"]["no_tools"]["learned"] == 0
    assert main_run["n_test"] == 200 and main_run["wall_s"] == {"0": 40.0, "1": 40.0, "2": 40.0}
    assert summary["runs"]["no_tools"]["test_accuracy"]["std"] == 0.0
    table = format_table(summary)
    assert "0.820 ± 0.278 [0.500-1.000]" in table and "2/3" in table and "s2 0.500/0.00" in table
    assert "sample standard deviation" in table


@pytest.mark.parametrize("text", ["", "a", "0,0", "-1", "1.5"])
def test_bad_seed_lists_are_refused(text):
    with pytest.raises(ValueError):
        parse_seeds(text)
    assert parse_seeds(" 3, 1 ,2") == [3, 1, 2]


def _tensors(state) -> list[torch.Tensor]:
    """Every tensor of a (nested) state dict."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for v in state.values() for t in _tensors(v)] if isinstance(state, dict) else []


def test_train_demo_trains_every_run_at_every_seed_on_the_same_data(tmp_path, capsys):
    root = tmp_path / "demo"
    args = ["train-demo", "--out", str(root), "--data-source", "procedural", "--train", "24", "--test", "8"]
    assert main([*args, "--steps", "2", "--seeds", "0,1"]) == 0
    summary = json.loads((root / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and list(summary["runs"]) == ["main", "no_tools", "no_traj_mask"]
    for name, entry in summary["runs"].items():
        assert set(entry["test_accuracy"]["per_seed"]) == {"0", "1"} and entry["steps"] == {"0": 2, "1": 2}
        assert "mean" in entry["confirmation_rate"] and "std" in entry["test_accuracy"]
        configs = [json.loads((root / name / f"seed{s}" / "config.json").read_text()) for s in (0, 1)]
        assert [c["seed"] for c in configs] == [0, 1]
        assert configs[0]["data"] == configs[1]["data"] == str(root / "data")
    # the seed really changes the run: other initial weights and other sampled rollouts
    states = [torch.load(root / "main" / f"seed{s}" / "ckpt" / "state.pt", weights_only=False) for s in (0, 1)]
    w0, w1 = (torch.cat([t.flatten() for t in _tensors(st["policy"])]) for st in states)
    assert not torch.equal(w0, w1)
    rewards = [(root / "main" / f"seed{s}" / "metrics.jsonl").read_text().splitlines()[0] for s in (0, 1)]
    assert rewards[0] != rewards[1]
    out = capsys.readouterr().out
    assert "no_traj_mask" in out and "per seed" in out and "s1 " in out
    assert (root / "rl_curves.png").stat().st_size > 1000

    single = tmp_path / "single"  # one seed is a single run
    assert (
        main(["train-demo", *args[1:2], str(single), *args[3:], "--steps", "1", "--seeds", "5", "--no-ablations"]) == 0
    )
    one = json.loads((single / "summary.json").read_text())["runs"]
    assert list(one) == ["main"] and one["main"]["seeds"] == [5] and one["main"]["test_accuracy"]["std"] == 0.0
    assert main(["train-demo", "--out", str(single), "--seeds", "x"]) != 0
    assert "--seeds" in capsys.readouterr().err


def test_tiny_policy_without_config_uses_the_demo_values(demo_store, tmp_path):
    assert default_config([]) == DEMO_TOML
    assert default_config([{"policy": {"kind": "tiny"}}]) == DEMO_TOML
    assert default_config([{"policy": {"kind": "hf"}}]) is None
    demo = tomllib.loads(DEMO_TOML.read_text("utf-8"))
    run = tmp_path / "run"
    base = ["train", str(demo_store), "--policy", "tiny", "--steps", "1", "--quiet", "--set", "tensorboard=false"]
    assert main([*base, "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    for key in ("prompts_per_step", "group_size", "minibatch_size", "lr", "torch_threads"):
        assert cfg[key] == demo[key], key
    assert cfg["env"]["zoom_size"] == demo["env"]["zoom_size"]
    assert cfg["loss"]["entropy_coef"] == demo["loss"]["entropy_coef"] and cfg["steps"] == 1
    # an explicit --config replaces the demo values (it is not layered on them)
    toml = tmp_path / "t.toml"
    toml.write_text("prompts_per_step = 4\ngroup_size = 2\nminibatch_size = 8\n[env]\nzoom_size = 48\n")
    assert main([*base, "--out", str(tmp_path / "run2"), "--config", str(toml)]) == 0
    cfg2 = json.loads((tmp_path / "run2" / "config.json").read_text())
    assert (cfg2["prompts_per_step"], cfg2["minibatch_size"], cfg2["loss"]["entropy_coef"]) == (4, 8, 0.0)
