"""The review app SIGKILLed mid-work: every acknowledged decision is stored once, queues resume."""

from __future__ import annotations

import pytest

from bench.bench_review_crash import run_crash

pytestmark = pytest.mark.slow


def test_review_app_killed_loses_no_acknowledged_decision(tmp_path):
    r = run_crash(tmp_path, annotators=4, decisions=30, kills=2, overlap=2, seed=3)
    assert r["problems"] == []
    assert r["kills"] == 2
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["over_overlap"] == 0
    assert r["stored"] == 4 * 30
    assert r["stored_not_acknowledged"] <= 4 * 2  # at most the decision in flight per annotator per kill
    assert r["ok"]
