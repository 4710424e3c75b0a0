"""The durable record of a run: one SQLite (WAL) row per finished work item, plus skipped inputs.

This record, not a LangGraph checkpoint, is what resume trusts. A per-sample AsyncSqliteSaver
thread would let a crashed sample restart mid-graph, but it writes the whole state at every step
of every sample, and a sample is a few agent calls (milliseconds offline, seconds with a model):
redoing the unfinished ones is cheaper than checkpointing all of them. Items are the unit of
durability; accepted/rejected items are recorded in the same transaction as their duplicate keys
and immediately before their shard is written (see `pipeline.runner`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.photo_pool import SkippedInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    seed INTEGER NOT NULL,
    outcome TEXT NOT NULL,               -- accepted | rejected | failed
    sample_id TEXT NOT NULL DEFAULT '',
    task_type TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT '',
    n_images INTEGER NOT NULL DEFAULT 0,
    reasons TEXT NOT NULL DEFAULT '[]',  -- JSON list of reason codes (rejected)
    failure TEXT NOT NULL DEFAULT '',
    failed_stage TEXT NOT NULL DEFAULT '',
    revisions INTEGER NOT NULL DEFAULT 0,
    verifier_agrees INTEGER,             -- NULL when the verifier never ran
    critic_history TEXT NOT NULL DEFAULT '[]',  -- JSON list of {verdict, reasons}
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    finished_at TEXT NOT NULL DEFAULT '',
    usage_parts TEXT NOT NULL DEFAULT '[]'  -- JSON list of {name, prompt_tokens, completion_tokens, calls, cost_usd}
);
CREATE TABLE IF NOT EXISTS registry_keys (key TEXT NOT NULL, idx INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS registry_keys_idx ON registry_keys(idx);
CREATE TABLE IF NOT EXISTS skipped_inputs (
    source_id TEXT NOT NULL, display TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass
class ItemRecord:
    """The outcome of one work item."""

    index: int
    seed: int
    outcome: str
    sample_id: str = ""
    task_type: str = ""
    domain: str = ""
    kind: str = ""
    n_images: int = 0
    reasons: list[str] = field(default_factory=list)
    failure: str = ""
    failed_stage: str = ""
    revisions: int = 0
    verifier_agrees: bool | None = None
    critic_history: list[dict] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    finished_at: str = ""
    usage_parts: list[dict] = field(default_factory=list)  # by agent / probe, of failed items too

    def row(self) -> tuple:
        """Values in the column order of `items`."""
        d = asdict(self)
        d["reasons"] = json.dumps(self.reasons)
        d["critic_history"] = json.dumps(self.critic_history)
        d["usage_parts"] = json.dumps(self.usage_parts)
        d["verifier_agrees"] = None if self.verifier_agrees is None else int(self.verifier_agrees)
        return tuple(d.values())


_COLUMNS = [
    "idx",
    "seed",
    "outcome",
    "sample_id",
    "task_type",
    "domain",
    "kind",
    "n_images",
    "reasons",
    "failure",
    "failed_stage",
    "revisions",
    "verifier_agrees",
    "critic_history",
    "prompt_tokens",
    "completion_tokens",
    "calls",
    "cost_usd",
    "seconds",
    "finished_at",
    "usage_parts",
]


def _record(row: sqlite3.Row) -> ItemRecord:
    d = dict(row)
    d["index"] = d.pop("idx")
    d["reasons"] = json.loads(d["reasons"])
    d["critic_history"] = json.loads(d["critic_history"])
    d["verifier_agrees"] = None if d["verifier_agrees"] is None else bool(d["verifier_agrees"])
    d["usage_parts"] = json.loads(d.get("usage_parts") or "[]")
    return ItemRecord(**d)


class ItemStore:
    """SQLite record of one run (one shard tag) of a RUN_DIR."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a killed process (only a power cut can lose the last commit,
            # and the runner's reconciliation with the shards covers that direction too).
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            if "usage_parts" not in self._columns():  # a record written before the column existed
                with self.db:
                    self.db.execute("ALTER TABLE items ADD COLUMN usage_parts TEXT NOT NULL DEFAULT '[]'")
        self.db.row_factory = sqlite3.Row
        self._read = [c for c in _COLUMNS if c in self._columns()]  # an old record, opened read-only, lacks some

    def _columns(self) -> set[str]:
        return {r[1] for r in self.db.execute("PRAGMA table_info(items)")}

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def commit(self, records: Iterable[ItemRecord], keys: dict[int, list[str]] | None = None) -> None:
        """Record finished items (and the duplicate keys they added) in one transaction."""
        records = list(records)
        placeholders = ",".join("?" * len(_COLUMNS))
        with self.db:
            self.db.executemany(
                f"INSERT OR REPLACE INTO items ({','.join(_COLUMNS)}) VALUES ({placeholders})",
                [r.row() for r in records],
            )
            if keys:
                self.db.executemany(
                    "INSERT INTO registry_keys (key, idx) VALUES (?, ?)",
                    [(k, idx) for idx, ks in keys.items() for k in ks],
                )

    def delete(self, indices: Iterable[int]) -> None:
        """Forget items (and their keys) so that they run again."""
        rows = [(i,) for i in indices]
        with self.db:
            self.db.executemany("DELETE FROM items WHERE idx = ?", rows)
            self.db.executemany("DELETE FROM registry_keys WHERE idx = ?", rows)

    def records(self) -> Iterator[ItemRecord]:
        """Every recorded item, by index."""
        for row in self.db.execute(f"SELECT {','.join(self._read)} FROM items ORDER BY idx"):
            yield _record(row)

    def done(self) -> dict[int, tuple[str, str]]:
        """index -> (outcome, sample_id) of every recorded item."""
        return {r[0]: (r[1], r[2]) for r in self.db.execute("SELECT idx, outcome, sample_id FROM items")}

    def keys(self) -> list[str]:
        """Every duplicate key recorded by finished items."""
        return [r[0] for r in self.db.execute("SELECT key FROM registry_keys")]

    def set_skipped(self, skipped: list[SkippedInput]) -> None:
        """Replace the list of skipped inputs (the pool is rebuilt at every start)."""
        with self.db:
            self.db.execute("DELETE FROM skipped_inputs")
            self.db.executemany(
                "INSERT INTO skipped_inputs VALUES (?, ?, ?, ?)",
                [(s.source_id, s.display, s.reason, s.detail) for s in skipped],
            )

    def skipped(self) -> list[SkippedInput]:
        """Inputs left out of the pool at the last start."""
        return [
            SkippedInput(*r) for r in self.db.execute("SELECT source_id, display, reason, detail FROM skipped_inputs")
        ]

    def set_meta(self, **values: object) -> None:
        """Store small JSON values (pool size, last summary)."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )

    def meta(self) -> dict[str, object]:
        """All stored meta values."""
        return {r[0]: json.loads(r[1]) for r in self.db.execute("SELECT k, v FROM meta")}
