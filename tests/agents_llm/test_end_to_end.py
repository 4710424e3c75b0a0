"""`mifg generate --backend openai` against the local server: samples accepted; faults end accepted,
rejected or failed-with-reason, never a crash or a storm."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agents.llm import build_llm_agents
from agents.llm.local_server import LocalModelServer
from tests.agents_llm.conftest import busy_photo

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
        busy_photo(seed).save(d / f"p{seed}.png")
    return d


def test_generate_openai_backend_accepts_samples(tmp_path, photo_dir, capsys):
    out = tmp_path / "run"
    with LocalModelServer(latency_ms=2) as srv:
        argv = ["generate", "--backend", "openai", "--base-url", srv.base_url, "--model", srv.model]
        argv += ["--images", str(photo_dir), "--out", str(out), "-n", "6", "--concurrency", "4", "--no-progress"]
        assert main(argv) == 0
        roles = Counter(r.role for r in srv.chat_records())
    samples = read_samples(out)
    assert len(samples) == 6
    for s in samples:
        p = s.provenance
        assert (p.backend, p.model, p.prompt_version) == ("openai", srv.model, "v1")
        assert p.verifier.agrees and p.verifier.method == "llm" and p.critic.verdict == "accept"
        assert p.usage.calls == 5 and p.usage.prompt_tokens > 0
    assert roles == {"pairer": 6, "writer": 6, "verifier": 6, "critic": 6, "critic_blind": 6}
    assert "accepted 6" in capsys.readouterr().out


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
            floor = {"429": 0.1, "hang": 0.5}.get(prev.fault, 0.025)  # Retry-After, timeout, backoff floor
            assert nxt.t - prev.t >= floor * 0.95, (prev, nxt)
    examples = collect_stats(cfg.out)["failure_examples"].values()
    for text in examples:  # ... each recorded with its reason
        assert "malformed_output: " in text or " attempts" in text, text
