"""The review room's commands through `mifg`'s own entry point."""

from __future__ import annotations

import io
from pathlib import Path

from annotation_ui.review_store import ReviewStore
from annotation_ui.service import ReviewService
from pipeline.cli import main
from pipeline.shard_store import read_samples


def test_review_users_add_and_list(tmp_path: Path, monkeypatch, capsys) -> None:
    users = tmp_path / "users.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["review-users", "add", str(users), "alice", "--password-stdin"]) == 0
    assert "a-long-password" not in users.read_text()
    assert main(["review-users", "list", str(users)]) == 0
    assert capsys.readouterr().out.strip().endswith("alice")


def test_review_refuses_unsafe_or_missing_auth(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["review", str(run_dir)]) == 2
    assert "--users" in capsys.readouterr().err
    assert main(["review", str(run_dir), "--open", "--host", "0.0.0.0"]) == 2
    assert "localhost only" in capsys.readouterr().err
    assert main(["review", str(tmp_path / "nope"), "--open"]) == 2
    assert main(["review", str(run_dir), "--users", str(tmp_path / "missing.toml")]) == 2
    assert "users file not found" in capsys.readouterr().err


def test_verified_command(run_dir: Path, tmp_path: Path, capsys) -> None:
    with ReviewStore(run_dir) as store:
        store.import_shards()
        svc = ReviewService(store)
        svc.accept("alice", svc.current("alice").sample_id)
    out = tmp_path / "out"
    assert main(["verified", str(run_dir), "--out", str(out)]) == 0
    assert "verified 1 of 1" in capsys.readouterr().out
    assert len(read_samples(out)) == 1
    assert main(["verified", str(run_dir), "--out", str(out)]) == 2
    assert main(["verified", str(run_dir), "--out", str(out), "--force", "--min-agree", "0"]) == 2
