"""The batch runner: shards and records agree, resume neither loses nor duplicates, shards split and merge."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents.offline.edits import FAST_GENERATE_FLAGS
from pipeline.merge import merge_runs
from pipeline.run_config import RunConfig, item_seed
from pipeline.runner import format_summary, generate
from pipeline.shard_store import list_shards, read_ids, read_samples
from schemas import Status
from schemas.errors import ConfigError, InputError
from tests.pipeline.agent_doubles import make_agents
from tests.pipeline.crash_hooks import SimulatedCrash, crash_on

REPO = Path(__file__).resolve().parents[2]
N = 18


def _cfg(out: Path, photo_dir: Path, **kw) -> RunConfig:
    base = dict(out=out, n=N, source=f"dir:{photo_dir}", concurrency=4, flush_every=4, workers=1)
    return RunConfig(**{**base, **kw})


def _records(out: Path) -> list[tuple]:
    rows = []
    for db in sorted((out / "state").glob("*.sqlite")):
        with sqlite3.connect(db) as c:
            rows += c.execute("SELECT idx, outcome, sample_id FROM items ORDER BY idx").fetchall()
    return rows


def _check_consistent(out: Path) -> tuple[list[str], list[str]]:
    """Manifests match shard files, ids are unique, every stored sample has exactly one record."""
    acc, rej = read_ids(out), read_ids(out / "rejected")
    assert len(acc) == len(set(acc)), "duplicate accepted ids"
    assert len(rej) == len(set(rej)), "duplicate rejected ids"
    for root in (out, out / "rejected"):
        infos = list_shards(root)
        assert {p.name for p in (root / "shards").glob("*.parquet")} == {Path(s.file).name for s in infos}
        assert not list((root / "shards").glob(".*.tmp"))
        manifest_rows = sum(json.loads(m.read_text())["rows"] for m in (root / "manifests").glob("*.json"))
        assert manifest_rows == len(read_ids(root))
    recs = _records(out)
    assert len({r[0] for r in recs}) == len(recs)
    assert sorted(r[2] for r in recs if r[1] == "accepted") == sorted(acc)
    assert sorted(r[2] for r in recs if r[1] == "rejected" and r[2]) == sorted(rej)
    return sorted(acc), sorted(rej)


@pytest.fixture(scope="module")
def clean(photo_dir, tmp_path_factory):
    """An uninterrupted run: the reference id sets."""
    out = tmp_path_factory.mktemp("clean") / "run"
    s = generate(_cfg(out, photo_dir), make_agents(), progress=False)
    assert s.finished == N and s.exit_code == 0
    return out, _check_consistent(out)


def test_clean_run_shards_records_and_datasets(clean):
    out, (acc, rej) = clean
    assert len(acc) + len(rej) == N and len(acc) >= N // 3
    samples = read_samples(out)
    assert {s.status for s in samples} == {Status.CANDIDATE}
    assert {s.status for s in read_samples(out / "rejected")} == {Status.REJECTED}
    s = samples[0]
    assert s.provenance.run_id and s.provenance.backend == "offline" and s.provenance.usage.calls == 4
    construction = json.loads(s.provenance.construction)
    assert construction["target"] in range(len(s.images))
    # no role next to the images (it names the edited one); the audit-only record keeps them, in order
    assert all(m.role == "" for ss in samples for m in ss.image_meta)
    roles = construction["image_roles"]
    assert len(roles) == len(s.images) and roles[construction["target"]] == "variant:square"
    assert all(img.path == f"{m.sha256[:16]}.png" for img, m in zip(s.images, s.image_meta, strict=True))
    assert s.image_meta[0].source.startswith("dir:") and s.domain.value in ("nature", "urban")
    import datasets

    files = [str(p) for p in (out / "shards").glob("*.parquet")]
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert len(ds) == len(acc) and ds[0]["images"][0].size == (96, 72)
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["seed"] == 0 and run["n"] == N


def test_rerun_is_a_no_op(clean, photo_dir):
    out, ids = clean
    s = generate(_cfg(out, photo_dir), make_agents(), progress=False)
    assert s.finished == 0 and s.resumed_done == N
    assert _check_consistent(out) == ids
    assert "run so far: 18/18 items" in format_summary(s)


@pytest.mark.parametrize("point", ["after_records", "after_shard"])
def test_in_process_crash_then_resume(clean, photo_dir, tmp_path, point):
    _, ids = clean
    out = tmp_path / "run"
    with pytest.raises(SimulatedCrash):
        generate(_cfg(out, photo_dir), make_agents(), hooks=crash_on(point), progress=False)
    partial = len(_records(out))
    assert 0 < partial < N
    s = generate(_cfg(out, photo_dir), make_agents(), progress=False)
    assert s.resumed_done + s.finished == N
    assert _check_consistent(out) == ids


def test_lost_record_of_a_written_shard_is_adopted(clean, photo_dir, tmp_path):
    """The power-cut direction: a shard reached disk, its records did not; resume must not redo them."""
    _, ids = clean
    out = tmp_path / "run"
    generate(_cfg(out, photo_dir, n=10), make_agents(), progress=False)
    with sqlite3.connect(out / "state" / "main.sqlite") as c:
        c.execute("DELETE FROM items WHERE outcome = 'accepted'")
    s = generate(_cfg(out, photo_dir), make_agents(), progress=False)
    assert _check_consistent(out) == ids
    assert s.finished == N - 10  # the adopted ones were not run again


def test_sigkill_mid_run_then_resume(clean, photo_dir, tmp_path):
    _, ids = clean
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from pipeline.run_config import RunConfig
        from pipeline.runner import generate
        from tests.pipeline.agent_doubles import make_agents
        cfg = RunConfig(out=Path({str(out)!r}), n={N}, source="dir:{photo_dir}", concurrency=2, flush_every=2)
        generate(cfg, make_agents(delay=0.15), progress=False)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "shards").glob("*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(_records(out)) < N
    s = generate(_cfg(out, photo_dir), make_agents(), progress=False)
    assert s.resumed_done + s.finished == N
    assert _check_consistent(out) == ids


def test_ctrl_c_on_the_cli_stops_flushes_and_exits_130(tmp_path):
    """`mifg generate` with worker processes; Ctrl-C reaches the whole process group, as in a terminal."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "pipeline.cli", "generate", "--out", str(out), "-n", "3000", "--workers", "2"]
    argv += list(FAST_GENERATE_FLAGS)
    proc = subprocess.Popen(
        [*argv, "--no-progress"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    # items are running once variants appear in the image cache (17 photos + variants)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "images").glob("*.png"))) < 17 + 20:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "mifg generate interrupted" in stdout and "run the same command again to resume" in stdout
    assert "stopping: finishing" in stderr
    recs = _records(out)
    assert 0 < len(recs) < 3000
    acc, _ = _check_consistent(out)  # what was buffered was flushed on the way out
    assert len(acc) == sum(1 for r in recs if r[1] == "accepted") > 0


def test_resume_with_other_settings_is_refused(clean, photo_dir):
    out, _ = clean
    with pytest.raises(ConfigError, match="seed=0, this command has seed=1"):
        generate(_cfg(out, photo_dir, seed=1), make_agents(), progress=False)
    with pytest.raises(ConfigError, match="max_revisions"):
        generate(_cfg(out, photo_dir, max_revisions=5), make_agents(), progress=False)


def test_shards_of_a_job_split_the_plan_and_merge(clean, photo_dir, tmp_path):
    _, (acc, rej) = clean
    out = tmp_path / "shared"
    for i in range(3):  # three shard runs writing into one RUN_DIR, as on a shared filesystem
        s = generate(_cfg(out, photo_dir, shard_index=i, shard_count=3), make_agents(), progress=False)
        assert s.tag == f"s{i}of3" and s.planned == len(range(i, N, 3))
    assert sorted(p.name for p in (out / "manifests").glob("*.json")) == ["s0of3.json", "s1of3.json", "s2of3.json"]
    by_tag = {t: {r[0] % 3 for r in _records_of(out, t)} for t in ("s0of3", "s1of3", "s2of3")}
    assert by_tag == {"s0of3": {0}, "s1of3": {1}, "s2of3": {2}}
    assert sorted(read_ids(out)) == acc

    merged = tmp_path / "merged"
    m = merge_runs([out, clean[0]], merged)  # the same samples twice: every id kept once
    assert m.accepted == len(acc) and m.rejected == len(rej) and m.duplicates == len(acc) + len(rej)
    assert sorted(read_ids(merged)) == acc
    assert [s.tag for s in list_shards(merged)] == ["merged"] * len(list_shards(merged))
    with pytest.raises(ConfigError, match="not empty"):
        merge_runs([out], merged)


def _records_of(out: Path, tag: str) -> list[tuple]:
    with sqlite3.connect(out / "state" / f"{tag}.sqlite") as c:
        return c.execute("SELECT idx, outcome FROM items").fetchall()


def test_failures_are_recorded_and_stop_a_hopeless_run(photo_dir, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(out, photo_dir, max_consecutive_failures=5, concurrency=1)
    s = generate(cfg, make_agents(pairer_fails=True), progress=False)
    assert s.exit_code == 1 and "5 items in a row failed" in s.stopped_reason
    recs = _records(out)
    assert len(recs) == 5 and {r[1] for r in recs} == {"failed"}
    with sqlite3.connect(out / "state" / "main.sqlite") as c:
        (failure,) = c.execute("SELECT failure FROM items LIMIT 1").fetchone()
    assert failure.startswith("pair: ValueError: malformed model JSON after 3 attempts")
    # resuming skips the recorded failures; --retry-failed runs them again
    s2 = generate(_cfg(out, photo_dir, n=8), make_agents("accept"), progress=False)
    assert s2.finished == 3
    s3 = generate(_cfg(out, photo_dir, n=8, retry_failed=True), make_agents("accept"), progress=False)
    assert s3.finished == 5 and s3.failed == 0


def test_worker_processes_make_the_same_samples(clean, photo_dir, tmp_path):
    _, ids = clean
    out = tmp_path / "run"
    s = generate(_cfg(out, photo_dir, workers=2), make_agents(), factory=_factory, progress=False)
    assert s.finished == N
    assert _check_consistent(out) == ids


def _factory(options: dict):
    return make_agents(options.get("critic", "accept"), options.get("delay", 0.0))


def test_caps_count_the_samples_of_every_worker_process(photo_dir, tmp_path):
    """Each worker started from a snapshot of the registry: two workers filled a cap of 3 with 6 samples."""
    out = tmp_path / "run"
    # one item per worker at a time, each taking a moment: as in a real run, results come back in turn
    options = {"critic": "cap3", "delay": 0.1}
    cfg = _cfg(out, photo_dir, n=16, workers=2, concurrency=2, agent_options=options)
    s = generate(cfg, make_agents("cap3"), factory=_factory, progress=False)
    assert s.finished == 16
    # two items in flight at once may both take the last free slot: one over at most
    assert 3 <= s.accepted <= 4, s.accepted


def test_duplicate_keys_are_rejected_and_survive_resume(photo_dir, tmp_path):
    """The critic's registry: keys of finished items come back on resume; lost items' keys do not."""
    out = tmp_path / "run"
    cfg = _cfg(out, photo_dir, n=40)
    s = generate(cfg, make_agents("dedup"), progress=False)
    recs = _records(out)
    with sqlite3.connect(out / "state" / "main.sqlite") as c:
        keys = [k for (k,) in c.execute("SELECT key FROM registry_keys")]
    assert len(keys) == len(set(keys)) == s.accepted
    s2 = generate(_cfg(out, photo_dir, n=60), make_agents("dedup"), progress=False)
    with sqlite3.connect(out / "state" / "main.sqlite") as c:
        keys2 = [k for (k,) in c.execute("SELECT key FROM registry_keys")]
    assert len(keys2) == len(set(keys2)) == s.accepted + s2.accepted
    assert len(_records(out)) == 60 and len(recs) == 40
    assert item_seed(0, 5) == item_seed(0, 5) != item_seed(1, 5)


def test_a_start_that_did_nothing_does_not_lock_the_settings(photo_dir, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not a photo")
    out = tmp_path / "run"
    with pytest.raises(InputError, match="no usable photos"):
        generate(_cfg(out, junk), make_agents(), progress=False)
    s = generate(_cfg(out, photo_dir, n=4), make_agents(), progress=False)  # other source, same --out: fine
    assert s.finished == 4
    with pytest.raises(ConfigError, match="source"):
        generate(_cfg(out, junk, n=4), make_agents(), progress=False)  # now it has work to protect


def test_a_second_process_on_the_same_shard_is_refused(photo_dir, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    generate(_cfg(out, photo_dir, n=2), make_agents(), progress=False)
    with open(out / "state" / "main.lock", "a+") as held:  # as if another `mifg generate` were running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another mifg generate is running on shard main"):
            generate(_cfg(out, photo_dir, n=4), make_agents(), progress=False)
    assert generate(_cfg(out, photo_dir, n=4), make_agents(), progress=False).finished == 2


def test_merge_counts_ids_repeated_within_one_input(tmp_path):
    from pipeline.shard_store import ShardWriter
    from tests.factories import make_sample

    run = tmp_path / "run"
    samples = [make_sample(i) for i in range(3)]
    ShardWriter(run, "a").write(samples)
    ShardWriter(run, "b").write(samples[:2])  # two of them again, under another tag of the same run
    m = merge_runs([run], tmp_path / "merged")
    assert m.accepted == 3 and m.duplicates == 2
    assert json.loads((tmp_path / "merged" / "merge.json").read_text())["duplicates_dropped"] == 2
