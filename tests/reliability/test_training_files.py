"""The files of a training run after bad luck: a torn metrics line, damaged checkpoints, a failing write.

Each case runs `mifg train` / `mifg eval` in-process on copies of one tiny 2-step run (tiny policy,
2 prompts x 2 trajectories): a few seconds each on a busy 2-core machine.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch

from pipeline.cli import main

TOML = """
prompts_per_step = 2
group_size = 2
ppo_epochs = 1
minibatch_size = 4
eval_every = 0
save_every = 1
eval_limit = 2
tensorboard = false
torch_threads = 1
[env]
zoom_size = 48
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A verified demo shard store: 16 train + 4 test samples."""
    from rl.demo_data import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("data") / "data", n_train=16, n_test=4)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TOML)
    return path


def _train(store, config, run, steps: int, *extra: str) -> int:
    argv = ["train", str(store), "--policy", "tiny", "--out", str(run), "--config", str(config)]
    return main([*argv, "--steps", str(steps), "--quiet", *extra])


@pytest.fixture(scope="module")
def done_run(store, config, tmp_path_factory):
    """A finished 2-step run (a checkpoint after each step)."""
    run = tmp_path_factory.mktemp("done") / "run"
    assert _train(store, config, run, 2) == 0
    return run


@pytest.fixture
def run(done_run, tmp_path):
    """A private copy of the finished run, to damage."""
    return shutil.copytree(done_run, tmp_path / "run")


def _lines(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err and "EOFError" not in err.replace("(EOFError", "")
    errors = _lines(err, "mifg: error: ")
    assert len(errors) == 1, err
    return errors[0]


def _steps(run) -> list[int]:
    """The steps of the training records (the evaluation records at the last step left out)."""
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in recs if "reward" in r]


def test_checkpoints_keep_the_previous_one_and_leave_no_temp_files(done_run):
    ckpt = done_run / "ckpt"
    assert torch.load(ckpt / "state.pt", weights_only=False)["step"] == 2
    assert torch.load(ckpt / "state.pt.prev", weights_only=False)["step"] == 1
    assert json.loads((ckpt / "config.json").read_text())["step"] == 2
    assert not [p.name for p in done_run.rglob("*.tmp")]


def test_a_torn_last_metrics_line_is_skipped_with_one_warning_on_resume(run, store, config, capsys):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "reward": 0.')  # killed in the middle of a write
    assert _train(store, config, run, 3, "--resume") == 0
    err = capsys.readouterr().err
    assert len(_lines(err, "warning")) == 1 and "metrics.jsonl: skipped 1 unreadable line" in err, err
    assert _steps(run) == [1, 2, 3]  # the torn record gone, every line parses again


@pytest.mark.parametrize("damage", ["zero-bytes", "truncated"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(run, store, config, capsys, damage):
    state = run / "ckpt" / "state.pt"
    state.write_bytes(b"" if damage == "zero-bytes" else state.read_bytes()[: state.stat().st_size // 2])
    assert _train(store, config, run, 3, "--resume") == 0
    err = capsys.readouterr().err
    warnings = _lines(err, "warning")
    assert len(warnings) == 1 and "state.pt: damaged checkpoint" in warnings[0], err
    assert "using the previous checkpoint" in warnings[0] and "(step 1)" in warnings[0]
    assert "Traceback" not in err
    assert _steps(run) == [1, 2, 3]  # resumed at step 1: step 2 ran again, logged once
    assert torch.load(state, weights_only=False)["step"] == 3


def test_a_damaged_checkpoint_without_a_previous_one_is_one_error_line(run, store, config, capsys):
    (run / "ckpt" / "state.pt").write_bytes(b"")
    (run / "ckpt" / "state.pt.prev").unlink()
    assert _train(store, config, run, 3, "--resume") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "state.pt: damaged checkpoint (zero bytes); no previous checkpoint" in line


def test_eval_of_a_damaged_checkpoint(run, store, capsys):
    state = run / "ckpt" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    assert main(["eval", str(store), "--checkpoint", str(run / "ckpt"), "--limit", "2"]) == 0
    captured = capsys.readouterr()
    assert len(_lines(captured.err, "mifg eval: warning: ")) == 1 and "step 1)" in captured.err
    assert "checkpoint step 1" in captured.out
    (run / "ckpt" / "state.pt.prev").write_bytes(b"")
    assert main(["eval", str(store), "--checkpoint", str(state)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "state.pt: damaged checkpoint (truncated: 1000 bytes" in line
    assert "state.pt.prev: damaged checkpoint (zero bytes): no good checkpoint left" in line


def test_a_full_disk_leaves_no_temp_file_and_keeps_the_previous_checkpoint(run, store, config, capsys, monkeypatch):
    real_fsync = os.fsync
    full_for = [".state.pt."]  # the disk fills up while a checkpoint is written

    def fsync(fd):
        if any(name in os.readlink(f"/proc/self/fd/{fd}") for name in full_for):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    before = (run / "ckpt" / "state.pt").read_bytes()
    assert _train(store, config, run, 3, "--resume") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"disk full writing {run / 'ckpt' / 'state.pt'}" in line and "kept: the previous checkpoint" in line
    assert not [p.name for p in run.rglob("*.tmp")]
    assert (run / "ckpt" / "state.pt").read_bytes() == before

    full_for[:] = [".config.json."]  # ... or at once, while the run's config.json is written
    fresh = run.parent / "fresh"
    assert _train(store, config, fresh, 1) == 1
    assert f"disk full writing {fresh / 'config.json'}" in _one_error_line(capsys.readouterr().err)
    assert not [p.name for p in fresh.rglob("*") if p.name.endswith(".tmp")]
