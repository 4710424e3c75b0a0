"""The review room's commands through `mifg`'s own entry point."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from annotation_ui.review_store import ReviewStore
from annotation_ui.service import ReviewService
from pipeline.cli import main
from pipeline.shard_store import read_samples
from schemas.errors import ConfigError
from tests.annotation_ui.conftest import add_bad_row
from tests.annotation_ui.live_app import free_port

REPO = Path(__file__).resolve().parents[2]


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


def test_busy_port_is_one_line(run_dir: Path, capsys) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["review", str(run_dir), "--open", "--port", str(port)]) == 2
    assert capsys.readouterr().err == f"mifg: error: port {port} is in use; pass --port\n"


def test_reopening_with_another_overlap_is_refused(run_dir: Path, capsys) -> None:
    ReviewStore(run_dir, overlap=2).close()
    assert main(["review", str(run_dir), "--open", "--overlap", "3", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--overlap 2" in err and "--change-overlap" in err
    with pytest.raises(ConfigError, match="--change-overlap"):
        ReviewStore(run_dir, overlap=1)
    ReviewStore(run_dir, overlap=3, change_overlap=True).close()
    with ReviewStore(run_dir) as store:
        assert store.overlap == 3


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stop_signal_prints_the_closing_summary_and_quarantined_rows_are_listed(run_dir: Path, sig) -> None:
    bad_id = add_bad_row(run_dir)
    cmd = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
    proc = subprocess.Popen(
        [*cmd, "review", str(run_dir), "--open", "--port", str(free_port())],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    watchdog = threading.Timer(180, proc.kill)  # a server that never comes up must not hang the suite
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert lines and lines[-1].startswith("serving on"), lines
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped; 0 decisions stored of 8 wanted" in out
    assert "Traceback" not in err
    quarantined = [ln for ln in err.splitlines() if ln.startswith("mifg review: quarantined")]
    assert len(quarantined) == 1 and "badrow-00000.parquet row 0" in quarantined[0] and bad_id[:8] in quarantined[0]
    assert "invalid sample" in quarantined[0]
    assert "8 samples" in "".join(lines) and "1 quarantined" in "".join(lines)
