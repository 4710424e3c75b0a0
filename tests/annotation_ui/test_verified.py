"""`mifg verified`: which samples are written, with what status and review metadata, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotation_ui.review_store import ReviewStore
from annotation_ui.service import ReviewService
from annotation_ui.verified import export_verified
from pipeline.shard_store import read_samples, shard_paths
from schemas import Status
from schemas.errors import InputError


def _review(store: ReviewStore) -> dict[str, str]:
    """alice and bob review the first five samples with overlap 2; returns sample id -> expected outcome."""
    svc = ReviewService(store)
    outcome = {}
    plans = [
        ("accept", "accept", "accepted"),
        ("accept", "edit", "edited"),
        ("accept", "reject", "none"),
        ("reject", "reject", "none"),
        ("edit", "edit", "edited"),
    ]
    for a_dec, b_dec, expected in plans:
        sid = None
        for name, dec in (("alice", a_dec), ("bob", b_dec)):
            screen = svc.current(name)
            sid = screen.sample_id
            if dec == "accept":
                svc.accept(name, sid)
            elif dec == "reject":
                svc.reject(name, sid, "Wrong answer", "the mark is on the other image")
            else:
                svc.edit_accept(
                    name,
                    sid,
                    f"Edited by {name}: which image has the mark?",
                    screen.edit_options,
                    screen.edit_answer,
                    screen.edit_evidence,
                )
        outcome[sid] = expected
    return outcome


def test_verified_export_content(run_dir: Path, open_store, tmp_path: Path) -> None:
    store = open_store(overlap=2)
    outcome = _review(store)
    store.close()
    out = tmp_path / "verified"
    rep = export_verified(run_dir, out)
    assert (rep.reviewed, rep.verified, rep.accepted, rep.edited, rep.not_verified) == (5, 3, 1, 2, 2)
    samples = read_samples(out)
    expected = [sid for sid, o in outcome.items() if o != "none"]
    assert [s.id for s in samples] == expected  # import order, ids kept through edits
    by_id = {s.id: s for s in samples}
    for sid, o in outcome.items():
        if o == "none":
            continue
        s = by_id[sid]
        assert s.status is (Status.EDITED if o == "edited" else Status.ACCEPTED)
        assert [d.annotator for d in s.review.decisions] == ["alice", "bob"]
        assert s.review.verified_at == max(d.at for d in s.review.decisions)
        if o == "edited":
            # the earliest edit wins; the original content is kept in review.original
            assert s.question.startswith("Edited by")
            assert json.loads(s.review.original)["question"] == "Which image has a small red square in the middle?"
        else:
            assert s.review.original == "" and s.question.startswith("Which image")
    assert by_id[list(outcome)[4]].question.startswith("Edited by alice")


def test_verified_export_is_deterministic_and_guarded(run_dir: Path, open_store, tmp_path: Path) -> None:
    store = open_store(overlap=2)
    _review(store)
    store.close()
    export_verified(run_dir, tmp_path / "a")
    export_verified(run_dir, tmp_path / "b")
    a = [p.read_bytes() for p in shard_paths(tmp_path / "a")]
    b = [p.read_bytes() for p in shard_paths(tmp_path / "b")]
    assert a == b and len(a) == 1
    with pytest.raises(InputError, match="--force"):
        export_verified(run_dir, tmp_path / "a")
    rep = export_verified(run_dir, tmp_path / "a", force=True, min_agree=1, shard_size=1)
    assert rep.verified == 3 and len(shard_paths(tmp_path / "a")) == 3


def test_min_agree_one_counts_single_reviews(run_dir: Path, open_store, tmp_path: Path) -> None:
    store = open_store(overlap=1)
    svc = ReviewService(store)
    svc.accept("alice", svc.current("alice").sample_id)
    svc.reject("alice", svc.current("alice").sample_id, "Wrong answer")
    store.close()
    rep = export_verified(run_dir, tmp_path / "v")
    assert (rep.reviewed, rep.verified) == (2, 1)
    with pytest.raises(InputError, match="review.sqlite"):
        export_verified(tmp_path / "v", tmp_path / "w")


def test_failed_force_rewrite_keeps_the_previous_export_whole(
    run_dir: Path, open_store, tmp_path: Path, monkeypatch
) -> None:
    store = open_store(overlap=2)
    _review(store)
    store.close()
    out = tmp_path / "verified"
    export_verified(run_dir, out, shard_size=1)
    before = {p.name: p.read_bytes() for p in shard_paths(out)}
    assert len(before) >= 2

    import pipeline.shard_store as shard_store

    real_write, calls = shard_store.ShardWriter.write, []

    def crash_on_second_shard(self, samples):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(self, samples)

    monkeypatch.setattr(shard_store.ShardWriter, "write", crash_on_second_shard)
    with pytest.raises(OSError, match="disk full"):
        export_verified(run_dir, out, shard_size=1, force=True)
    assert {p.name: p.read_bytes() for p in shard_paths(out)} == before
    monkeypatch.undo()
    export_verified(run_dir, out, shard_size=1, force=True)  # a leftover staging folder does not get in the way
    assert {p.name: p.read_bytes() for p in shard_paths(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".verified")) == []
