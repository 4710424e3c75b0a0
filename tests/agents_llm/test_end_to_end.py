"""`mifg generate --backend openai` against the local server: samples accepted; faults end accepted,
rejected or failed-with-reason, never a crash or a storm."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from agents.llm import build_llm_agents
from agents.llm.local_server import LocalModelServer
from tests.agents_llm.conftest import RED, SEA, island_photo

pytest.importorskip("pipeline.runner")
from pipeline.cli import main
from pipeline.run_config import RunConfig
from pipeline.runner import generate
from pipeline.shard_store import read_samples
from pipeline.stats import collect_stats


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for seed in range(5):
        island_photo(seed, SEA if seed % 2 else RED).save(d / f"p{seed}.png")
    return d


def test_generate_openai_backend_accepts_samples(tmp_path, photo_dir, capsys):
    out = tmp_path / "run"
    with LocalModelServer(latency_ms=2) as srv:
        argv = ["generate", "--backend", "openai", "--base-url", srv.base_url, "--model", srv.model]
        argv += ["--images", str(photo_dir), "--out", str(out), "-n", "8", "--concurrency", "4", "--no-progress"]
        assert main(argv) == 0
        roles = Counter(r.role for r in srv.chat_records())
    samples = read_samples(out)
    assert len(samples) >= 6
    sources = Counter()
    for s in samples:
        p = s.provenance
        assert (p.backend, p.model, p.prompt_version) == ("openai", srv.model, "v2")
        assert p.verifier.agrees and p.verifier.method.startswith("llm") and p.critic.verdict == "accept"
        assert len(p.verifier.votes) == 3 and p.critic.probes and p.usage.prompt_tokens > 0
        assert {q.name for q in p.usage.parts} >= {"writer", "verifier", "probe:text_only", "probe:glance"}
        sources[json.loads(p.construction)["set_source"]] += 1
    assert roles["describer"] == 5 and roles["writer"] >= 8  # every photo described once
    st = collect_stats(out)
    rejected = read_samples(out / "rejected") if (out / "rejected" / "manifests").is_dir() else []
    assert sum(v["total"] for v in st["agents"]["set_sources"].values()) == len(rejected) + len(samples)
    assert set(st["agents"]["usage_by_part"]) >= {"writer", "verifier", "describer"}
    printed = capsys.readouterr().out
    assert "accepted" in printed
    assert main(["stats", str(out)]) == 0
    report = capsys.readouterr().out
    assert "sets by source" in report and "probes (rejected / run" in report and "cost per accepted sample" in report


def test_budget_stops_cleanly_and_the_same_command_resumes(tmp_path, photo_dir, capsys):
    out = tmp_path / "run"
    with LocalModelServer() as srv:
        argv = ["generate", "--backend", "openai", "--base-url", srv.base_url, "--model", srv.model]
        argv += ["--images", str(photo_dir), "--out", str(out), "-n", "6", "--concurrency", "2", "--no-progress"]
        assert main([*argv, "--max-tokens", "15000"]) == 3
        first = capsys.readouterr().out
        assert "token budget spent" in first and "run the same command again to resume" in first
        done = collect_stats(out)["items"]
        assert 0 < done < 6, "stopped part way, the unfinished items unrecorded"
        described = Counter(r.role for r in srv.chat_records())["describer"]
        assert main(argv) == 0
        roles = Counter(r.role for r in srv.chat_records())
    assert collect_stats(out)["items"] == 6
    assert roles["describer"] == described == 5, "descriptions are read back on resume, not asked again"


def test_verifier_flags_send_the_votes_to_the_second_endpoint(tmp_path, photo_dir, capsys):
    with LocalModelServer() as srv, LocalModelServer(models=("judge",)) as judge:
        argv = ["generate", "--backend", "openai", "--base-url", srv.base_url, "--model", srv.model]
        argv += ["--images", str(photo_dir), "--out", str(tmp_path / "run"), "-n", "3", "--no-progress"]
        assert main([*argv, "--verifier-model", "judge", "--verifier-base-url", judge.base_url]) == 0
        assert "verifier" not in {r.role for r in srv.chat_records()}
        assert {r.role for r in judge.chat_records()} == {"verifier"}
        bad = [*argv[:-5], "--out", str(tmp_path / "other"), "-n", "3", "--no-progress"]
        assert main([*bad, "--verifier-model", "nope", "--verifier-base-url", judge.base_url]) == 2
        assert "does not serve model 'nope'" in capsys.readouterr().err
        assert {r.role for r in judge.chat_records()} == {"verifier"}, "refused before any work"
    for s in read_samples(tmp_path / "run"):
        assert s.provenance.verifier.model == "judge"


def test_generate_bad_endpoint_is_one_line_before_any_work(tmp_path, photo_dir, capsys):
    with LocalModelServer() as srv:
        argv = ["generate", "--backend", "openai", "--base-url", srv.base_url, "--model", "nope"]
        argv += ["--images", str(photo_dir), "--out", str(tmp_path / "run"), "-n", "2", "--no-progress"]
        assert main(argv) != 0
        assert len(srv.chat_records()) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not serve model 'nope'" in err[0]


def test_faults_end_in_accepted_rejected_or_failed_with_reason(tmp_path, photo_dir):
    options = {"timeout": 0.5, "backoff_base": 0.05, "backoff_max": 0.2, "max_attempts": 3, "json_retries": 1}
    with LocalModelServer(fault_rate=0.3, retry_after=0.1, hang_s=3.0, seed=5) as srv:
        agents = build_llm_agents(srv.base_url, srv.model, None, options)
        cfg = RunConfig(
            out=tmp_path / "run",
            n=16,
            backend="openai",
            model=srv.model,
            base_url=srv.base_url,
            source=f"dir:{photo_dir}",
            concurrency=8,
            agent_options=options,
        )
        summary = generate(cfg, agents, progress=False)
        records = srv.chat_records()
        faults = Counter(r.fault for r in records)
    assert summary.accepted + summary.rejected + summary.failed == 16
    assert summary.accepted > 0
    assert set(faults) >= {"", "429", "500", "hang", "malformed"}
    for code in summary.failures:  # e.g. "write:MalformedOutputError": only the LLM backend's own failures
        assert code.split(":")[1] in ("MalformedOutputError", "RetriesExhaustedError"), code
    # no storm: every retry of a call came after the wait its failure called for
    by_call: dict[str, list] = {}
    for r in records:
        by_call.setdefault(r.call, []).append(r)
    for attempts in by_call.values():
        attempts.sort(key=lambda r: r.attempt)
        for prev, nxt in zip(attempts, attempts[1:], strict=False):
            # Retry-After, timeout, backoff floor. The server stamps a request when it has read it; next to
            # the offline pairer's threads, reading a first attempt's images may take a while, so a hang's
            # retry is held to half its timeout (a storm would come within milliseconds)
            floor = {"429": 0.1, "hang": 0.25}.get(prev.fault, 0.025)
            assert nxt.t - prev.t >= floor * 0.95, (prev, nxt)
    st = collect_stats(cfg.out)
    for text in st["failure_examples"].values():  # ... each recorded with its reason
        assert "malformed_output: " in text or " attempts" in text, text
    # what failed items spent is counted by agent too: the parts add up to the run's totals
    parts = st["agents"]["usage_by_part"]
    assert summary.failed > 0 and "describer" in parts
    assert sum(p["calls"] for p in parts.values()) == st["tokens"]["calls"]
    assert sum(p["tokens"] for p in parts.values()) == st["tokens"]["prompt"] + st["tokens"]["completion"]
