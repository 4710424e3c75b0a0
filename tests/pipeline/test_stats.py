"""`mifg stats` figures agree with what the run did."""

from __future__ import annotations

import shutil

from pipeline.run_config import RunConfig
from pipeline.runner import generate
from pipeline.stats import collect_stats, format_stats
from tests.pipeline.agent_doubles import make_agents


def test_stats_count_verdicts_revisions_tokens_and_skips(photo_dir, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(photo_dir, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (photos / "empty.png").write_bytes(b"")
    out = tmp_path / "run"
    cfg = RunConfig(out=out, n=8, source=f"dir:{photos}", concurrency=2, max_revisions=1, workers=1)
    s = generate(cfg, make_agents("revise"), progress=False)
    st = collect_stats(out)

    assert st["items"] == 8 and st["planned"] == 8
    assert st["outcomes"] == {"accepted": 0, "rejected": 8, "failed": 0}
    critiqued = st["stages"]["critiqued"]
    assert st["critic"]["verdicts"] == {"revise": 2 * critiqued}  # first draft + one revision each
    assert st["critic"]["reasons"]["revise"] == {"option_bias": 2 * critiqued}
    assert st["revisions"] == {"1": critiqued}
    assert st["rejection_reasons"]["revise_limit"] == critiqued
    assert st["verifier"]["agree"] == critiqued and st["verifier"]["disagree"] == 8 - critiqued
    # 4 calls for the first pass, 2 more (writer + verifier) and a critic call per revision
    assert st["tokens"]["calls"] == 4 * 8 - (8 - critiqued) + 3 * critiqued
    assert st["skipped_inputs"] == {"corrupt": 1, "empty_file": 1}
    assert st["shards"]["rejected"]["rows"] == 8 and st["shards"]["accepted"]["rows"] == 0
    assert s.skipped_inputs == 2

    text = format_stats(st)
    assert "critic verdicts: revise" in text and "skipped: corrupt 1, empty_file 1" in text
    assert "acceptance rate 0.0%" in text


def test_a_record_written_before_usage_parts_still_reads_and_gains_the_column(tmp_path):
    import sqlite3

    from pipeline.item_store import ItemRecord, ItemStore

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # the items table as it was before usage_parts existed
    db.execute(
        "CREATE TABLE items (idx INTEGER PRIMARY KEY, seed INTEGER NOT NULL, outcome TEXT NOT NULL,"
        " sample_id TEXT NOT NULL DEFAULT '', task_type TEXT NOT NULL DEFAULT '', domain TEXT NOT NULL DEFAULT '',"
        " kind TEXT NOT NULL DEFAULT '', n_images INTEGER NOT NULL DEFAULT 0, reasons TEXT NOT NULL DEFAULT '[]',"
        " failure TEXT NOT NULL DEFAULT '', failed_stage TEXT NOT NULL DEFAULT '', revisions INTEGER NOT NULL"
        " DEFAULT 0, verifier_agrees INTEGER, critic_history TEXT NOT NULL DEFAULT '[]', prompt_tokens INTEGER"
        " NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0,"
        " cost_usd REAL NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0, finished_at TEXT NOT NULL DEFAULT '')"
    )
    db.execute("INSERT INTO items (idx, seed, outcome, calls) VALUES (0, 7, 'failed', 3)")
    db.commit()
    db.close()

    ro = ItemStore(path, readonly=True)  # read-only (mifg stats): read without the column
    assert [(r.index, r.calls, r.usage_parts) for r in ro.records()] == [(0, 3, [])]
    ro.close()
    store = ItemStore(path)  # writable (a resumed run): the column is added, new records keep their parts
    part = {"name": "writer", "prompt_tokens": 5, "completion_tokens": 2, "calls": 1, "cost_usd": 0.0}
    store.commit([ItemRecord(index=1, seed=8, outcome="failed", calls=1, usage_parts=[part])])
    assert [r.usage_parts for r in store.records()] == [[], [part]]
    store.close()
