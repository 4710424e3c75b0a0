"""The training loop: metrics, checkpoints with exact resume, CLI, and a learning run that must learn."""

import json

import pytest
import torch

from pipeline.cli import main
from rl.config import load_config
from rl.trainer import Trainer

FAST = {
    "steps": 4,
    "prompts_per_step": 4,
    "group_size": 4,
    "ppo_epochs": 2,
    "minibatch_size": 8,
    "eval_every": 0,
    "save_every": 0,
    "tensorboard": False,
    "torch_threads": 1,
    "env": {"zoom_size": 48},
    "loss": {"kl_coef": 0.01, "entropy_coef": 0.01},
}


def _cfg(store, out, **kw):
    return load_config(None, [FAST, {"data": str(store), "out": str(out), "eval_limit": 8}, kw])


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])


def test_exact_resume_matches_an_uninterrupted_run(demo_store, tmp_path):
    full = Trainer(_cfg(demo_store, tmp_path / "full"), verbose=False)
    full.run()
    part = Trainer(_cfg(demo_store, tmp_path / "part", steps=2), verbose=False)
    part.run()
    resumed = Trainer(_cfg(demo_store, tmp_path / "part", steps=4), verbose=False)
    assert not torch.equal(_params(resumed), _params(part))  # a fresh init differs: the resume must do the work
    resumed.run(resume=True)
    assert resumed.step == 4
    assert torch.equal(_params(resumed), _params(full))
    a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    a = [r for r in a if "reward" in r]
    b = [r for r in b if "reward" in r]  # (the eval records of both runs are kept too)
    assert [r["step"] for r in b] == [1, 2, 3, 4]  # no duplicated or lost step
    assert a[3]["reward"] == b[3]["reward"] and a[3]["loss"] == b[3]["loss"]


def test_metrics_use_stable_names_and_files_are_written(demo_store, tmp_path):
    t = Trainer(_cfg(demo_store, tmp_path / "run", steps=2, tensorboard=True, eval_every=1), verbose=False)
    t.run()
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = recs[0]
    for key in (
        "reward",
        "accuracy",
        "tool_call_rate/visual_reflection",
        "tool_call_rate/visual_confirmation",
        "masked_fraction/invalid_tool",
        "masked_fraction/over_turns",
        "masked_fraction/truncated",
        "masked_fraction/image_token_mismatch",
        "kl",
        "clip_frac",
        "entropy",
        "response_length",
    ):
        assert key in train, key
    assert train["kl"] >= 0 and any("eval/accuracy" in r for r in recs)
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "ckpt" / "state.pt").exists() and (tmp_path / "run" / "eval.json").exists()


def test_cli_train_eval_and_plot(demo_store, tmp_path, capsys):
    run = tmp_path / "cli"
    toml = tmp_path / "t.toml"
    toml.write_text(
        "prompts_per_step = 4\ngroup_size = 2\nminibatch_size = 8\ntensorboard = false\n[env]\nzoom_size = 48\n"
    )
    args = ["train", str(demo_store), "--policy", "tiny", "--out", str(run), "--config", str(toml), "--steps", "2"]
    assert main([*args, "--quiet", "--set", "eval_limit=4"]) == 0
    assert main([*args, "--quiet"]) != 0  # refuses to overwrite a run without --resume
    assert main([*args, "--steps", "3", "--resume", "--quiet"]) == 0
    out = tmp_path / "ev.json"
    assert main(["eval", str(demo_store), "--checkpoint", str(run / "ckpt"), "--out", str(out), "--limit", "6"]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 6 and report["step"] == 3 and "texture" in report["per_domain"]
    assert "visual_confirmation" in report["tool_call_rate"]
    png = tmp_path / "curves.png"
    assert main(["train-plot", str(run), "--out", str(png)]) == 0 and png.stat().st_size > 1000
    assert main(["eval", str(demo_store), "--checkpoint", str(tmp_path / "none")]) != 0
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_policy_learns_to_zoom(tmp_path, pipeline_demo_store):
    """Short runs at two seeds on the pipeline-made demo task: the policy learns it by zooming at one of them.

    It does not learn at every seed (seed 1 stayed at 0.554 after 100 steps on this store; README "The CPU
    demo": the main run learns at 1 of 3 seeds in 150 steps): the test asks for what is true, at least one
    seed well above chance, and that every seed calls the tool.
    """
    finals = []
    for seed in (0, 1):
        cfg = load_config(
            "rl/demo_train.toml",
            [
                {
                    "data": str(pipeline_demo_store),
                    "out": str(tmp_path / f"run{seed}"),
                    "seed": seed,
                    "steps": 100,
                    "eval_every": 0,
                    "tensorboard": False,
                }
            ],
        )
        finals.append(Trainer(cfg, verbose=False).run())
    best = max(finals, key=lambda f: f["accuracy"])
    assert best["accuracy"] >= 0.85, [f["accuracy"] for f in finals]
    assert best["evidence_hit_rate"] >= 0.8
    assert all(f["tool_call_rate"]["visual_confirmation"] >= 0.8 for f in finals)


@pytest.mark.slow
def test_without_tools_accuracy_stays_at_chance(tmp_path, pipeline_demo_store):
    cfg = load_config(
        "rl/demo_train.toml",
        [
            {
                "data": str(pipeline_demo_store),
                "out": str(tmp_path / "run"),
                "steps": 25,
                "eval_every": 0,
                "tensorboard": False,
            },
            {"env": {"tools": []}},
        ],
    )
    final = Trainer(cfg, verbose=False).run()
    assert final["accuracy"] <= 0.7 and final["tool_call_rate"]["visual_confirmation"] == 0
