"""`mifg generate` killed with SIGKILL at random moments and restarted ends exactly like an uninterrupted run."""

from __future__ import annotations

import pytest

from bench.bench_crash_safety import crash_loop

pytestmark = pytest.mark.slow


def test_sigkill_restarts_give_the_uninterrupted_id_set(tmp_path):
    r = crash_loop(tmp_path, n=60, kills=3, seed=11, rng_seed=1, log=lambda _: None)
    assert r["problems"] == []
    assert r["same_accepted_ids"] and r["same_rejected_ids"], r
    assert r["final_accepted"] == r["reference_accepted"] > 0
    assert r["duplicates"] == 0
    assert r["consistent_after_every_kill"]  # every shard readable, manifests match, after each kill
    assert r["orphaned_workers"] == 0  # worker processes die with a SIGKILLed parent
    assert r["killed"] >= 1
    assert r["ok"]
