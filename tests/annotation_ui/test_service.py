"""The app's own API (what the Gradio handlers call): refusals, escaping, atomic edits."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from annotation_ui import render
from annotation_ui.review_store import ReviewStore
from annotation_ui.service import REJECT_REASONS, SKIP_REASONS, ReviewService
from pipeline.shard_store import ShardWriter
from tests.factories import make_sample


def test_accept_commits_then_shows_the_next_sample(open_store) -> None:
    svc = ReviewService(open_store())
    first = svc.current("alice")
    assert first.sample_id and 'src="mifg/img/' in first.images
    nxt = svc.accept("alice", first.sample_id)
    assert nxt.saved == "accept" and nxt.sample_id != first.sample_id
    assert [d.sample_id for d in svc.store.decisions()] == [first.sample_id]
    assert "Accepted" in nxt.message


def test_reject_needs_a_listed_reason(open_store) -> None:
    svc = ReviewService(open_store())
    sid = svc.current("alice").sample_id
    for reason, note in (("<b>made up</b>", ""), (None, ""), (REJECT_REASONS[-1], "")):
        s = svc.reject("alice", sid, reason, note)
        assert not s.ok and s.saved is None
    s = svc.reject("alice", sid, REJECT_REASONS[-1], "boxes on the wrong image")
    assert s.saved == "reject"
    assert svc.store.decisions()[0].note == "boxes on the wrong image"


def test_schema_breaking_edit_is_refused_atomically(open_store) -> None:
    store = open_store()
    svc = ReviewService(store)
    screen = svc.current("alice")
    audit_before = len(store.audit_rows())
    for args in (
        ("Q?", screen.edit_options, "H", screen.edit_evidence),  # answer not among the options
        ("", screen.edit_options, screen.edit_answer, screen.edit_evidence),  # empty question
        ("Q?", screen.edit_options, screen.edit_answer, "1: 0.1 0.1 1.7 0.2"),  # box out of range
    ):
        s = svc.edit_accept("alice", screen.sample_id, *args)
        assert not s.ok and "Edit not saved" in s.message
    assert store.decisions() == []
    assert store._read("SELECT COUNT(*) FROM edits")[0][0] == 0
    assert [r["action"] for r in store.audit_rows()[audit_before:]] == ["edit_refused"] * 3
    assert svc.current("alice").sample_id == screen.sample_id  # still the same open sample
    ok = svc.edit_accept(
        "alice",
        screen.sample_id,
        "Which image shows a red dot?",
        screen.edit_options,
        screen.edit_answer,
        screen.edit_evidence,
    )
    assert ok.saved == "edit"
    (d,) = store.decisions(with_edits=True)
    assert d.edited.question == "Which image shows a red dot?"


def test_unchanged_edit_is_stored_as_accept(open_store) -> None:
    svc = ReviewService(open_store())
    s = svc.current("alice")
    assert (
        svc.edit_accept("alice", s.sample_id, s.edit_question, s.edit_options, s.edit_answer, s.edit_evidence).saved
        == "accept"
    )


def test_client_cannot_decide_someone_elses_or_unknown_sample(open_store) -> None:
    svc = ReviewService(open_store(overlap=1))
    alice = svc.current("alice").sample_id
    bob = svc.current("bob")
    for sid in (alice, "../../etc/passwd", "f" * 32):
        s = svc.accept("bob", sid)
        assert s.saved is None and "Not saved" in s.message and s.sample_id == bob.sample_id
        s = svc.edit_accept("bob", sid, "Q?", "a\nb", "A", "")
        assert s.saved is None
    assert svc.store.decisions() == []


def test_question_text_is_escaped(tmp_path: Path) -> None:
    evil = make_sample(5).model_copy(
        update={
            "question": '<script>alert("x")</script><img src=x onerror=alert(1)> which?',
            "options": ["<b>A</b>", "B&C"],
        }
    )
    ShardWriter(tmp_path, "main").write([evil])
    with ReviewStore(tmp_path) as store:
        store.import_shards()
        html = ReviewService(store).current("alice").question
    assert "<script>" not in html and "<img src=x" not in html and "<b>A</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and "B&amp;C" in html


def test_undecodable_or_exotic_images_do_not_break_the_page() -> None:
    assert render.image_url(b"not an image") == ""
    import io

    from PIL import Image

    from annotation_ui.image_route import IMAGES

    buf = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(buf, format="TIFF")
    url = render.image_url(buf.getvalue())
    assert url.startswith("mifg/img/") and url.endswith(".jpg")  # a display JPEG of the CMYK TIFF
    data, mime = IMAGES.lookup(url.rsplit("/", 1)[1])
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (8, 8)


def test_empty_queue_screen(open_store) -> None:
    svc = ReviewService(open_store())
    for _ in range(8):
        svc.accept("alice", svc.current("alice").sample_id)
    s = svc.current("alice")
    assert s.sample_id is None and "All done" in s.images
    assert svc.accept("alice", None).saved is None


def test_skip_needs_a_reason_and_moves_on(open_store) -> None:
    svc = ReviewService(open_store())
    first = svc.current("alice").sample_id
    assert not svc.skip("alice", first, "because").ok
    assert not svc.skip("alice", first, SKIP_REASONS[-1]).ok  # "Other" needs a note
    nxt = svc.skip("alice", first, SKIP_REASONS[-1], "the crop is ambiguous")
    assert nxt.saved == "skip" and nxt.sample_id not in (None, first) and "Skipped" in nxt.message
    assert svc.current("bob").sample_id == first


def test_a_sample_that_cannot_be_shown_is_set_aside_and_the_next_one_shown(open_store, run_dir: Path) -> None:
    store = open_store()
    ids = [r.id for r in store.refs()]
    shard = run_dir / store.refs()[0].shard
    table = pq.read_table(shard)
    pq.write_table(table.take([3, 2, 1, 0]), shard)  # the shard changed on disk: its rows no longer match
    svc = ReviewService(store)
    screen = svc.current("alice")
    assert screen.sample_id == ids[4] and "set aside" in screen.message
    assert [q.sample_id for q in store.quarantined()] == ids[:4]
    assert store.count_samples() == 4
    assert "Quarantined rows (4)" in svc.dashboard()
    again = svc.current("alice")  # a reload shows the same good sample, no error
    assert again.sample_id == ids[4] and "set aside" not in again.message


def test_each_screen_prefetches_the_images_of_the_sample_likely_next(open_store) -> None:
    import re

    svc = ReviewService(open_store())
    first = svc.current("alice")
    hinted = re.findall(r'<link rel="prefetch" as="image" href="([^"]+)">', first.images)
    shown = set(re.findall(r'<img class="mifg-img[^"]*" src="([^"]+)"', first.images))
    assert hinted and not set(hinted) & shown  # the next sample's images, not this one's
    nxt = svc.accept("alice", first.sample_id)
    assert set(re.findall(r'<img class="mifg-img[^"]*" src="([^"]+)"', nxt.images)) == set(hinted)
    # nothing was leased by the guess: another annotator still gets the sample after alice's first
    assert svc.store.likely_next("bob", "") is not None
    assert svc.current("bob").sample_id != nxt.sample_id
