"""`mifg generate/stats/merge` with a store URL, against a local S3 server (moto) that the tests start."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.remote_store import Remote, local_copy, open_remote
from pipeline.run_config import RunConfig
from pipeline.runner import generate
from pipeline.shard_store import read_ids
from tests.pipeline.agent_doubles import make_agents
from tests.pipeline.cli_checks import one_line_error as _one_line_error
from tests.pipeline.crash_hooks import SimulatedCrash, crash_on

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free port, pointed at by AWS_ENDPOINT_URL; yields a function making buckets."""
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            mp.setenv(k, v)
        client = boto3.client("s3", endpoint_url=endpoint)

        def bucket(name: str) -> str:
            client.create_bucket(Bucket=name)
            return name

        yield bucket
    server.stop()


def _argv(out: str, photo_dir: Path, n: int, *extra: str) -> list[str]:
    from agents.offline.edits import FAST_GENERATE_FLAGS

    return ["generate", "--out", out, "-n", str(n), "--images", str(photo_dir), "--workers", "1", "--no-progress",
            *FAST_GENERATE_FLAGS, *extra]  # fmt: skip


def _ids(where: str | Path) -> tuple[list[str], list[str]]:
    with local_copy(str(where)) as d:
        return sorted(read_ids(d)), sorted(read_ids(d / "rejected"))


@pytest.mark.slow
def test_generate_to_s3_resumes_on_another_machine_then_stats_and_merge(s3, capsys, tmp_path, photo_dir, monkeypatch):
    bucket = s3("runs")
    url = f"s3://{bucket}/job/run"
    assert main(_argv(str(tmp_path / "local"), photo_dir, 12)) == 0
    reference = _ids(tmp_path / "local")
    capsys.readouterr()

    # machine A: the default working dir (under XDG_CACHE_HOME), half the run
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(_argv(url, photo_dir, 6)) == 0
    out = capsys.readouterr().out
    assert f"next: mifg stats {url}" in out and "working copy:" in out
    assert any((tmp_path / "cache" / "mifg" / "remote").glob("runs-job-run-*/state/main.sqlite"))
    keys = open_remote(url).list("")
    assert {"run.json", "manifests/main.json", "state/main.sqlite"} <= set(keys)
    assert any(k.startswith("shards/main-") for k in keys)

    # machine B: a fresh working dir; the record comes from the store, only the missing items run
    assert main(_argv(url, photo_dir, 12, "--work-dir", str(tmp_path / "machine-b"))) == 0
    out = capsys.readouterr().out
    assert "6 finished earlier" in out and "run so far: 12/12 items" in out, out
    assert _ids(url) == reference

    # the same command again: nothing to do, nothing written
    assert main(_argv(url, photo_dir, 12, "--work-dir", str(tmp_path / "machine-b"))) == 0
    assert "12 finished earlier" in capsys.readouterr().out

    assert main(["stats", url, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["items"] == 12 and st["outcomes"]["accepted"] == len(reference[0])
    assert st["shards"]["accepted"]["rows"] == len(reference[0]) and st["run_dir"] == url

    merged = f"s3://{bucket}/job/merged"
    assert main(["merge", url, "--out", merged]) == 0
    assert f"into {merged}:" in capsys.readouterr().out
    assert _ids(merged)[0] == reference[0]
    assert json.loads(open_remote(merged).read_bytes("merge.json"))["inputs"] == [url]
    assert main(["stats", merged, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 12
    assert main(["merge", merged, "--out", str(tmp_path / "merged-here")]) == 0
    assert sorted(read_ids(tmp_path / "merged-here")) == reference[0]
    _one_line_error(capsys, ["merge", url, "--out", merged], "not empty")
    _one_line_error(capsys, [*_argv(url, photo_dir, 12, "--work-dir", str(tmp_path / "c")), "--seed", "7"], "seed=0")


@pytest.mark.parametrize("point", ["after_records", "after_shard"])
def test_killed_run_resumes_from_the_store_alone(s3, tmp_path, photo_dir, point, monkeypatch):
    """Killed mid-run; its working dir is lost; a fresh one resumes and neither loses nor duplicates a sample."""
    uploaded: list[str] = []
    write_bytes = Remote.write_bytes

    def recording(self: Remote, rel: str, data: bytes) -> None:
        if rel.endswith(".json") and "manifests/" in rel:  # every shard a manifest names is uploaded before it
            listed = [f"{rel.split('manifests/')[0]}{s['file']}" for s in json.loads(data)["shards"]]
            assert set(listed) <= set(uploaded), (rel, listed, uploaded)
        write_bytes(self, rel, data)
        uploaded.append(rel)

    monkeypatch.setattr(Remote, "write_bytes", recording)
    bucket = s3("crash-" + point.replace("_", "-"))
    url = f"s3://{bucket}/run"

    def cfg(work: str) -> RunConfig:
        return RunConfig(out=tmp_path / work, remote=url, n=18, source=f"dir:{photo_dir}", flush_every=4, workers=1)

    clean = generate(RunConfig(out=tmp_path / "clean", n=18, source=f"dir:{photo_dir}", flush_every=4, workers=1),
                     make_agents(), progress=False)  # fmt: skip
    assert clean.finished == 18

    with pytest.raises(SimulatedCrash):
        generate(cfg("a"), make_agents(), hooks=crash_on(point), progress=False)
    assert any("shards/" in k for k in uploaded) and "state/main.sqlite" in uploaded
    s = generate(cfg("b"), make_agents(), progress=False)
    assert 0 < s.resumed_done < 18 and s.resumed_done + s.finished == 18
    assert _ids(url) == _ids(tmp_path / "clean")


def test_memory_fsspec_store_round_trip(tmp_path, photo_dir, capsys):
    """Any fsspec URL works the same way (here fsspec's in-process memory://, written by temp name + rename)."""
    url = "memory://mifg-test/run"
    s = generate(RunConfig(out=tmp_path / "w", remote=url, n=6, source=f"dir:{photo_dir}", workers=1),
                 make_agents(), progress=False)  # fmt: skip
    assert s.finished == 6
    assert main(["stats", url, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["items"] == 6 and st["shards"]["accepted"]["rows"] == len(_ids(url)[0])
    # a damaged shard is reported under the URL the user gave, not the temporary copy stats read
    remote = open_remote(url)
    shard = next(f for f in remote.list("shards") if f.endswith(".parquet"))
    remote.write_bytes(shard, b"not parquet")
    assert main(["stats", url]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert warnings and all(url in ln and "mifg-remote-" not in ln for ln in warnings), warnings


def test_bad_urls_are_one_line_errors(s3, capsys, tmp_path, photo_dir, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    s3("present")
    _one_line_error(capsys, _argv("foo://x/run", photo_dir, 2), "unknown storage scheme foo://")
    _one_line_error(capsys, _argv("az://container/run", photo_dir, 2), "adlfs")
    _one_line_error(capsys, _argv("s3://no-such-bucket/run", photo_dir, 2), "bucket 'no-such-bucket' does not exist")
    _one_line_error(capsys, _argv("s3://present", photo_dir, 2), "give a bucket and a path")
    _one_line_error(capsys, [*_argv("s3://present/run", photo_dir, 2), "--executor", "ray"], "--shard i/N per machine")
    _one_line_error(capsys, _argv(str(tmp_path / "r"), photo_dir, 2, "--work-dir", str(tmp_path)), "--out URL")
    _one_line_error(capsys, ["stats", "s3://present/nothing"], "no such run")
    open_remote("s3://present/other").write_bytes("notes.txt", b"x")
    _one_line_error(capsys, _argv("s3://present/other", photo_dir, 2), "is not a mifg run")
    assert not (tmp_path / "r").exists()
