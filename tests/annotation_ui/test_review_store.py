"""The review store on real SQLite over real shards: import, leases, overlap, restart, refusals, audit."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from annotation_ui.review_store import DB_NAME, ReviewError, ReviewStore
from pipeline.shard_store import ShardWriter, atomic_write_json, read_ids
from schemas import Status
from tests.annotation_ui.conftest import Clock, add_bad_row, make_run
from tests.factories import make_sample


def test_import_indexes_candidates_once_in_shard_order(run_dir: Path, open_store) -> None:
    store = open_store()
    assert [r.id for r in store.refs()] == read_ids(run_dir)
    again = store.import_shards()
    assert (again.added, again.shards) == (0, 0)
    # a new shard with one known id, one new sample and one non-candidate
    known = make_sample(0, n_images=2)
    done = make_sample(100).model_copy(update={"status": Status.ACCEPTED})
    ShardWriter(run_dir, "main").write([known, make_sample(101), done])
    rep = store.import_shards()
    assert (rep.added, rep.duplicates, rep.not_candidates, rep.bad) == (1, 1, 1, [])
    assert store.count_samples() == 9


def test_load_sample_serves_the_shard_bytes(open_store) -> None:
    store = open_store()
    ref = store.refs()[5]
    sample = store.load_sample(ref.id)
    assert sample.id == ref.id and sample.images[0].bytes.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "a/b", "", "x" * 200, "..", "id with space", None, 7]
)
def test_bad_or_unknown_ids_are_refused(open_store, bad) -> None:
    store = open_store()
    store.claim_next("alice")
    with pytest.raises(ReviewError):
        store.load_sample(bad)
    with pytest.raises(ReviewError):
        store.record_decision("alice", bad, "accept")


def test_unknown_id_and_unassigned_sample_are_refused(open_store) -> None:
    store = open_store()
    with pytest.raises(ReviewError, match="unknown sample"):
        store.load_sample("0" * 32)
    other = store.refs()[3].id
    with pytest.raises(ReviewError, match="not assigned"):
        store.record_decision("alice", other, "accept")
    assert store.decisions() == []
    assert store.audit_rows()[-1]["action"] == "decision_refused"


def test_shard_path_leaving_the_run_dir_is_not_imported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run(run, 2)
    outside = tmp_path / "outside"
    make_run(outside, 2, start=50)
    # a manifest that points outside the run dir (a crafted or corrupted run)
    atomic_write_json(
        run / "manifests" / "evil.json",
        {"shards": [{"file": "../outside/shards/main-00000.parquet", "rows": 2, "sha256": "x", "tag": "evil"}]},
    )
    with ReviewStore(run) as store:
        rep = store.import_shards()
        assert rep.added == 2 and len(rep.bad) == 1 and "leaves the run directory" in rep.bad[0]
        assert store.count_samples() == 2


def test_bad_sample_id_inside_a_shard_is_skipped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    evil = make_sample(3).model_copy(update={"id": "../../etc/passwd"})
    ShardWriter(run, "main").write([make_sample(1), evil])
    with ReviewStore(run) as store:
        rep = store.import_shards()
    assert rep.added == 1 and len(rep.bad) == 1 and "bad sample id" in rep.bad[0]


def test_lease_expires_and_the_sample_returns_to_the_queue(open_store, clock: Clock) -> None:
    store = open_store(overlap=1, lease_seconds=60)
    first = store.claim_next("alice")
    assert store.claim_next("alice") == first  # a reload resumes the same sample
    assert store.claim_next("bob") != first  # alice's live lease covers it
    clock.advance(61)
    assert store.claim_next("carol") == first  # abandoned: back in the queue
    # alice comes back: carol now covers it, so alice's stale lease is dropped and she moves on
    nxt = store.claim_next("alice")
    assert nxt not in (first, None)
    actions = [(r["annotator"], r["action"], r["sample_id"]) for r in store.audit_rows()]
    assert ("alice", "lease_dropped", first) in actions


def test_late_decision_on_an_expired_lease_is_kept(open_store, clock: Clock) -> None:
    store = open_store(overlap=1, lease_seconds=60)
    sid = store.claim_next("alice")
    clock.advance(3600)
    rec = store.record_decision("alice", sid, "accept")
    assert not rec.replayed and [d.sample_id for d in store.decisions()] == [sid]


def test_expired_lease_not_taken_by_anyone_resumes_for_its_owner(open_store, clock: Clock) -> None:
    store = open_store(overlap=1, lease_seconds=60)
    sid = store.claim_next("alice")
    clock.advance(600)
    assert store.claim_next("alice") == sid


def test_overlap_gives_each_sample_to_distinct_annotators(open_store) -> None:
    store = open_store(overlap=2)
    names = ["alice", "bob", "carol"]
    for _ in range(40):
        for name in names:
            sid = store.claim_next(name)
            if sid is not None:
                store.record_decision(name, sid, "accept")
    decisions = store.decisions()
    per_sample = Counter(d.sample_id for d in decisions)
    assert set(per_sample.values()) == {2} and len(per_sample) == store.count_samples()
    pairs = Counter((d.sample_id, d.annotator) for d in decisions)
    assert max(pairs.values()) == 1  # never the same annotator twice on a sample
    assert all(store.claim_next(n) is None for n in names)


def test_two_annotators_with_overlap_two_get_the_same_first_sample(open_store) -> None:
    store = open_store(overlap=2)
    assert store.claim_next("alice") == store.claim_next("bob")
    assert store.claim_next("carol") != store.claim_next("alice")


def test_double_submit_is_a_replay_not_a_second_decision(open_store) -> None:
    store = open_store()
    sid = store.claim_next("alice")
    assert not store.record_decision("alice", sid, "accept").replayed
    again = store.record_decision("alice", sid, "reject", reason="Wrong answer")
    assert again.replayed and again.decision.decision == "accept"
    assert len(store.decisions()) == 1


def test_no_decision_lost_across_restart_and_queues_resume(run_dir: Path, clock: Clock) -> None:
    store = ReviewStore(run_dir, overlap=2, clock=clock)
    store.import_shards()
    done = []
    for name in ("alice", "bob"):
        for _ in range(3):
            sid = store.claim_next(name)
            store.record_decision(name, sid, "accept")
            done.append((sid, name))
    open_alice = store.claim_next("alice")
    open_bob = store.claim_next("bob")
    store.close()  # the app stops (a crash loses nothing committed: every decision is its own transaction)

    # a second process reads the file while the app is down: everything is on disk
    with sqlite3.connect(run_dir / DB_NAME) as raw:
        assert raw.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 6

    store = ReviewStore(run_dir, overlap=2, clock=clock)
    assert store.import_shards().added == 0
    assert sorted((d.sample_id, d.annotator) for d in store.decisions()) == sorted(done)
    assert store.claim_next("alice") == open_alice and store.claim_next("bob") == open_bob
    store.close()


def test_audit_log_and_decisions_are_append_only(open_store) -> None:
    store = open_store()
    sid = store.claim_next("alice")
    store.record_decision("alice", sid, "accept")
    conn = store._conn
    for sql in ("UPDATE audit SET action = 'x'", "DELETE FROM audit", "UPDATE decisions SET decision = 'reject'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only|final"):
            conn.execute(sql)
    detail = json.loads(store.audit_rows()[-1]["detail"])
    assert detail["decision"] == "accept"


def test_progress_counts(open_store) -> None:
    store = open_store(overlap=1)
    sid = store.claim_next("alice")
    store.record_decision("alice", sid, "reject", reason="Wrong answer")
    p = store.progress("alice")
    assert (p["done"], p["reject"], p["open"]) == (1, 1, 7)


def test_bad_annotator_name_is_refused(open_store) -> None:
    store = open_store()
    with pytest.raises(ReviewError, match="bad annotator"):
        store.claim_next("<script>")


def test_rows_failing_the_schema_are_quarantined_and_never_assigned(run_dir: Path, clock: Clock) -> None:
    bad_id = add_bad_row(run_dir)
    with ReviewStore(run_dir, clock=clock) as store:
        report = store.import_shards()
        assert report.added == 8 and len(report.quarantined) == 1
        assert "badrow-00000.parquet row 0" in report.quarantined[0] and "invalid sample" in report.quarantined[0]
        (q,) = store.quarantined()
        assert (q.shard, q.row, q.sample_id) == ("shards/badrow-00000.parquet", 0, bad_id) and "answer" in q.reason
        assert store.count_samples() == 8 and bad_id not in {r.id for r in store.refs()}
        claimed = []
        while (sid := store.claim_next("alice")) is not None:
            store.record_decision("alice", sid, "accept")
            claimed.append(sid)
        assert len(claimed) == 8 and bad_id not in claimed
        assert store.progress("alice")["open"] == 0
    with ReviewStore(run_dir, clock=clock) as store:  # a restart does not import it again, and keeps the record
        assert store.import_shards().quarantined == [] and len(store.quarantined()) == 1


def test_skipped_sample_goes_to_someone_else(open_store) -> None:
    store = open_store(overlap=2)
    sid = store.claim_next("alice")
    store.skip("alice", sid, "Not sure: let someone else decide")
    assert store.claim_next("bob") == sid  # bob gets it; alice's skip does not count as a review
    assert store.claim_next("carol") == sid  # overlap 2: it still needs two reviewers
    assert store.claim_next("alice") != sid  # never back to alice
    with pytest.raises(ReviewError, match="not open"):
        store.skip("alice", sid, "again")
    assert store.skip_reasons() == {"Not sure: let someone else decide": 1}
    assert store.progress("alice")["open"] == 7
