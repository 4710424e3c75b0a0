"""30% endpoint faults: every item ends accepted/rejected/failed-with-reason, retries keep their waits, stats agree."""

from __future__ import annotations

import pytest

from bench.bench_endpoint_faults import run_faults

pytestmark = pytest.mark.slow


def test_faults_end_every_item_without_a_storm(tmp_path):
    r = run_faults(tmp_path, n=30, concurrency=8, fault_rate=0.3, latency_ms=20.0, retry_after=0.3, timeout=1.0)
    assert r["problems"] == []
    assert sum(r["outcomes"].values()) == 30
    assert r["outcomes"]["accepted"] > 0
    assert set(r["faults_injected"]) >= {"none", "429", "500", "hang", "malformed"}  # every kind was exercised
    assert r["retries_checked"] > 0 and r["retries_too_soon"] == 0
    assert r["min_gap_after_s"]["429"] >= 0.3 * 0.95  # Retry-After honoured
    assert r["peak_requests_per_s"] <= r["fault_free_ceiling_per_s"]
    assert sum(r["failures_by_reason"].values()) == r["outcomes"]["failed"]  # mifg stats counts each failure
    assert r["ok"]
