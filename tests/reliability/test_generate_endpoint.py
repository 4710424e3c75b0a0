"""`mifg generate --backend openai` fans out to the endpoint: concurrent calls, every agent and probe, CPU accounted."""

from __future__ import annotations

from collections import Counter

import pytest

from agents.llm.local_server import LocalModelServer
from bench.endpoint_harness import last_summary, make_photos
from pipeline.cli import main

pytestmark = pytest.mark.slow


def test_generate_runs_concurrency_samples_at_once(tmp_path):
    photos = make_photos(tmp_path / "photos", 8)
    out, concurrency, latency = tmp_path / "run", 16, 0.2
    with LocalModelServer(latency_ms=latency * 1000) as srv:
        argv = ["generate", "--backend", "openai", "--base-url", srv.base_url, "--model", srv.model]
        argv += ["--images", str(photos), "--out", str(out), "-n", "48", "--concurrency", str(concurrency)]
        assert main([*argv, "--no-progress"]) == 0
        records = srv.chat_records()
    s = last_summary(out)
    assert s["accepted"] + s["rejected"] + s["failed"] == 48 and s["failed"] == 0
    roles = Counter(r.role for r in records)
    assert roles["describer"] == 8 and roles["writer"] >= 48  # each photo described once; revisions re-write
    assert roles["verifier"] == 3 * roles["writer"]  # three blind votes per draft
    assert roles["probe:text_only"] >= 3 * s["accepted"]
    # fan-out: with every call taking `latency`, many requests arrive within one latency window
    times = sorted(r.t for r in records)
    peak = max(sum(1 for u in times[i:] if u < t + latency) for i, t in enumerate(times))
    assert peak >= concurrency // 2
    assert s["cpu_seconds"] > 0 and s["loop_seconds"] > 0  # what the benchmark divides by
