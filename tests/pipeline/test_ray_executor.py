"""`mifg generate --executor ray`: shards as Ray tasks, a killed shard retried and resumed, one global rate limit."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from agents.llm.local_server import LocalModelServer
from bench.endpoint_harness import make_photos
from pipeline.cli import main
from pipeline.run_config import RunConfig
from pipeline.shard_store import read_ids

N, SEED, SHARDS, RATE = 16, 3, 4, 20.0  # items, run seed, shards, requests/s for the whole job


def test_without_ray_the_executor_is_a_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc = main(["generate", "--out", str(tmp_path / "run"), "-n", "4", "--executor", "ray", "--shards", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0, err
    assert err.startswith("mifg: error: ") and "pip install 'mifg[ray]'" in err, err
    assert not (tmp_path / "run").exists()


def test_executor_flags_are_checked_together(capsys, tmp_path):
    out = str(tmp_path / "run")
    for argv, needle in (
        (["--shards", "4"], "only with --executor ray"),
        (["--executor", "slurm"], "choose local or ray"),
        (["--executor", "ray", "--shard", "0/2"], "--shards N"),
        (["--executor", "ray", "--shards", "0"], "at least 1"),
        (["--executor", "ray", "--workers", "2"], "use more --shards"),
        (["--executor", "ray", "--ray-address", "auto", "--ray-cpus", "2"], "--ray-cpus"),
    ):
        assert main(["generate", "--out", out, "-n", "4", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("mifg: error: ") and needle in err, (argv, err)


def _records(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:
        return 0


def _holder_of(path: Path) -> int | None:
    """The pid of the process (not this one) that has `path` open: the shard's Ray worker holds its lock file."""
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    return None


def _kill_shard_once(out: Path, tag: str, after: int, killed: list[int], deadline: float) -> None:
    """SIGKILL shard `tag`'s worker once `after` items are recorded and a shard file listed: the retry resumes them."""
    manifests = [out / "manifests" / f"{tag}.json", out / "rejected" / "manifests" / f"{tag}.json"]
    while time.monotonic() < deadline:
        if _records(out / "state" / f"{tag}.sqlite") >= after and any(m.is_file() for m in manifests):
            pid = _holder_of(out / "state" / f"{tag}.lock")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def _ids(run: Path) -> tuple[list[str], list[str]]:
    return read_ids(run), read_ids(run / "rejected")


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray extra: pip install 'mifg[ray]'")
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20, logging_level=40
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_shards_survive_a_killed_worker_and_share_one_rate_limit(local_ray, tmp_path, capsys):
    from pipeline.executors.ray_executor import RayExecutor
    from pipeline.executors.ray_progress import format_job_summary

    photos = make_photos(tmp_path / "photos", 8, size=(400, 300))
    with LocalModelServer() as srv:
        common = ["--backend", "openai", "--base-url", srv.base_url, "--model", srv.model, "--images", str(photos)]
        common += ["-n", str(N), "--seed", str(SEED), "--concurrency", "8", "--no-progress"]
        assert main(["generate", *common, "--out", str(tmp_path / "single")]) == 0  # one machine, no limit
        t_ray = time.monotonic()

        # The same run as 4 Ray tasks on 2 CPUs, the endpoint limited to RATE requests/s for the whole job.
        # Samples are flushed every 2, so that the killed attempt of s1of4 has recorded some of its items.
        out = tmp_path / "ray"
        options = {"concurrency": 8, "requests_per_s": RATE, "burst": 1}
        cfg = RunConfig(out=out, n=N, seed=SEED, backend="openai", model=srv.model, base_url=srv.base_url)
        cfg.source, cfg.concurrency, cfg.flush_every, cfg.agent_options = f"dir:{photos.resolve()}", 8, 2, options
        killed: list[int] = []
        killer = threading.Thread(target=_kill_shard_once, args=(out, "s1of4", 2, killed, time.monotonic() + 120))
        killer.start()
        job = RayExecutor(SHARDS, progress=True, interval=1.0).execute(cfg)
        killer.join()
        chat = [r.t for r in srv.chat_records() if r.t >= t_ray]

        # and through the CLI (the same Ray instance), which prints progress and the job's summary
        capsys.readouterr()
        rc = main(
            ["generate", *common[:-1], "-n", "4", "--executor", "ray", "--shards", "2", "--out", str(tmp_path / "cli")]
        )
        cli = capsys.readouterr()
    summary = format_job_summary(job)

    assert killed, "the shard's worker was never seen holding its lock"
    assert job.exit_code == 0 and not job.problems, summary
    assert job.attempts == {"s0of4": 1, "s1of4": 2, "s2of4": 1, "s3of4": 1}, summary
    assert job.results["s1of4"].resumed_done >= 2  # the retry resumed from the shard's own record
    assert "restarted by Ray: s1of4" in summary and "merged:" in summary

    # the merged store: the single-machine run's ids (accepted or rejected: which one may differ per
    # shard, as each shard keeps its own caps), none twice
    acc, rej = _ids(out / "merged")
    single_acc, single_rej = _ids(tmp_path / "single")
    assert len(acc) == len(set(acc)) and len(rej) == len(set(rej))
    assert set(acc) | set(rej) == set(single_acc) | set(single_rej)
    assert job.merge is not None and job.merge.accepted == len(acc)

    # one limit for all shards: counted by the server, never above RATE (burst 1) over any 2-s window,
    # and the limit was what paced the job (2 shards at once, each could send far more than RATE alone)
    assert len(chat) >= 10 * N
    span = chat[-1] - chat[0]
    assert (len(chat) - 1) / span <= RATE * 1.05, (len(chat), span)
    worst = max(sum(1 for u in chat[i:] if u < t + 2.0) for i, t in enumerate(chat))
    assert worst <= 2.0 * RATE + 1 + 2 + 1, worst  # + burst 1 + one late grant per running shard + jitter
    assert (len(chat) - 1) / span >= 0.6 * RATE, (len(chat), span)
    assert job.rate_limits[srv.base_url.rstrip("/")]["granted"] >= len(chat)

    assert rc == 0, cli.err[-2000:]
    assert "generate on ray: " in cli.err and "mifg generate done: 4 items" in cli.out
    assert "next: mifg stats" in cli.out and (tmp_path / "cli" / "merged" / "merge.json").is_file()


def test_the_limiter_hook_shares_a_limiter_only_where_a_limit_is_set():
    from agents.llm.rate_limit import RateLimiter, make_limiter, share_limits

    shared = object()
    share_limits({"http://h/v1": shared}.get)
    try:
        assert make_limiter("http://h/v1/", 5.0, None) is shared  # the endpoint as the clients name it
        assert isinstance(make_limiter("http://other/v1", 5.0, None), RateLimiter)  # no shared one for it
        assert not make_limiter("http://h/v1", None, None).active  # no limit: nothing to share
    finally:
        share_limits(None)
    assert isinstance(make_limiter("http://h/v1", 5.0, None), RateLimiter)
