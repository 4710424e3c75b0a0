"""The review store: one SQLite file (WAL) per run holding what annotators did.

RUN_DIR/review.sqlite holds
- `samples`      the index of reviewable samples: id + shard pointer, imported from the run's shards
                 (image bytes stay in the shards; the browser never names a file);
- `quarantine`   rows set aside with their reason, never assigned: rows that fail `schemas.Sample` at
                 import, and samples that could not be loaded or shown later (`quarantined` = 1 in samples);
- `assignments`  which annotator holds which sample, with a lease that expires so abandoned work returns;
                 `done` is 0 open, 1 decided, 2 skipped (a skip hands the sample to someone else);
- `skips`        one row per (sample, annotator) skip, with its reason;
- `decisions`    one row per (sample, annotator): accept | reject | edit (edit-and-accept);
- `edits`        the sample before and after an edit, for edit decisions;
- `audit`        an append-only log of every claim, decision, refusal and import (triggers forbid changes).

Every write is one `BEGIN IMMEDIATE` transaction committed with `synchronous=FULL`, so a decision
is on disk before the handler returns and the next sample is shown.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from annotation_ui import assignment
from pipeline.shard_store import list_shards
from schemas import Sample, Status, row_to_sample, table_to_samples
from schemas.errors import ConfigError, InputError, MifgError

DB_NAME = "review.sqlite"
DEFAULT_LEASE_SECONDS = 20 * 60
DECISIONS = ("accept", "reject", "edit")
KEEP = frozenset({"accept", "edit"})  # decisions that keep the sample (edit = edit-and-accept)
_INDEX_FIELDS = ("id", "status", "task_type", "domain", "provenance")
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_ANNOTATOR_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def kept_by_majority(decisions: Sequence[str]) -> bool:
    """Whether more of a sample's decisions keep it (`KEEP`) than reject it; a tie does not keep it."""
    kept = sum(d in KEEP for d in decisions)
    return kept > len(decisions) - kept


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imported_shards (
    file TEXT PRIMARY KEY, sha256 TEXT NOT NULL, rows INTEGER NOT NULL, imported_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,          -- import order: the order annotators see samples in
    shard TEXT NOT NULL,                  -- relative to the run dir, checked to stay inside it
    row INTEGER NOT NULL,
    task_type TEXT NOT NULL,
    domain TEXT NOT NULL,
    verifier_agrees INTEGER NOT NULL,
    critic_verdict TEXT NOT NULL,
    n_assigned INTEGER NOT NULL DEFAULT 0,  -- assignment rows (kept in step, makes "untouched" an index scan)
    n_done INTEGER NOT NULL DEFAULT 0,      -- decisions
    quarantined INTEGER NOT NULL DEFAULT 0  -- 1: set aside (see quarantine), never assigned again
);
CREATE TABLE IF NOT EXISTS quarantine (
    shard TEXT NOT NULL,
    row INTEGER NOT NULL,
    sample_id TEXT NOT NULL,              -- as found in the row (may be malformed): for display only
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (shard, row)
);
CREATE TABLE IF NOT EXISTS skips (
    sample_id TEXT NOT NULL REFERENCES samples(id),
    annotator TEXT NOT NULL,
    reason TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    PRIMARY KEY (sample_id, annotator)
);
CREATE INDEX IF NOT EXISTS samples_untouched ON samples (n_assigned, seq);
CREATE INDEX IF NOT EXISTS samples_open ON samples (n_done, n_assigned);
CREATE TABLE IF NOT EXISTS assignments (
    sample_id TEXT NOT NULL REFERENCES samples(id),
    annotator TEXT NOT NULL,
    assigned_at REAL NOT NULL,
    lease_until REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sample_id, annotator)
);
CREATE INDEX IF NOT EXISTS assignments_by_annotator ON assignments (annotator, done, assigned_at);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id TEXT NOT NULL REFERENCES samples(id),
    annotator TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'edit')),
    reason TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    UNIQUE (sample_id, annotator)
);
CREATE TABLE IF NOT EXISTS edits (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions(id),
    sample_id TEXT NOT NULL,
    annotator TEXT NOT NULL,
    before_json TEXT NOT NULL,
    after_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    annotator TEXT NOT NULL,
    action TEXT NOT NULL,
    sample_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are final'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are final'); END;
"""


OPEN, DECIDED, SKIPPED = 0, 1, 2  # assignments.done
MAX_QUARANTINE_REASON = 500


class ReviewError(MifgError):
    """A request the store refuses: unknown sample, not assigned, bad id or name."""


@dataclass(frozen=True)
class SampleRef:
    """One row of the samples index (no image bytes)."""

    id: str
    seq: int
    shard: str
    row: int
    task_type: str
    domain: str
    verifier_agrees: bool
    critic_verdict: str
    n_done: int


@dataclass(frozen=True)
class Decision:
    """One stored decision."""

    id: int
    sample_id: str
    annotator: str
    decision: str
    reason: str
    note: str
    at: str
    edited: Sample | None = None  # the sample after the edit, for "edit"


@dataclass
class ImportReport:
    """What `import_shards` did."""

    added: int = 0
    shards: int = 0
    duplicates: int = 0
    not_candidates: int = 0
    bad: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # "SHARD row N (id ...): reason", this import


@dataclass(frozen=True)
class Quarantined:
    """One row set aside: where it is, its id as found, and why."""

    shard: str
    row: int
    sample_id: str
    reason: str
    at: str

    def line(self) -> str:
        """'SHARD row N (id X): reason', for start-up lines."""
        return f"{self.shard} row {self.row} (id {self.sample_id[:40]!r}): {self.reason}"


@dataclass(frozen=True)
class Recorded:
    """Outcome of `record_decision`: the decision and whether it was already stored (a replay)."""

    decision: Decision
    replayed: bool


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_sample_id(sample_id: object) -> str:
    """Return `sample_id` if it looks like a sample id, else raise ReviewError (never a path)."""
    if not isinstance(sample_id, str) or not _ID_RE.match(sample_id) or ".." in sample_id:
        raise ReviewError(f"bad sample id {str(sample_id)[:80]!r}")
    return sample_id


def check_annotator(name: object) -> str:
    """Return `name` if it is a valid annotator name, else raise ReviewError."""
    if not isinstance(name, str) or not _ANNOTATOR_RE.match(name):
        raise ReviewError(f"bad annotator name {str(name)[:80]!r}: use letters, digits, '_', '.', '@', '-'")
    return name


class ReviewStore:
    """SQLite review store of one run dir; safe to share between threads (one connection, one lock).

    The overlap is the store's own once set: `overlap=None` keeps it (1 for a new store), and another
    value is a ConfigError unless `change_overlap` (the change is audited).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        overlap: int | None = None,
        change_overlap: bool = False,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
        cached_shards: int = 4,
    ) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise InputError(f"{self.run_dir}: run directory not found")
        if overlap is not None and overlap < 1:
            raise InputError(f"--overlap must be >= 1, got {overlap}")
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.db_path = self.run_dir / DB_NAME
        self._lock = threading.RLock()
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._cached_shards = cached_shards
        self._conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        try:
            self._open(overlap, change_overlap)
        except BaseException:
            self._conn.close()
            raise

    def _open(self, overlap: int | None, change_overlap: bool) -> None:
        """Set the connection up, create or upgrade the tables, and settle the overlap."""
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a committed decision survives power loss too
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(_SCHEMA)
            cols = {r["name"] for r in self._conn.execute("PRAGMA table_info(samples)")}
            if "quarantined" not in cols:  # a store made before quarantine existed
                self._conn.execute("ALTER TABLE samples ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0")
            with self._tx() as c:
                old = c.execute("SELECT value FROM meta WHERE key='overlap'").fetchone()
                # None keeps the overlap the store was started with (e.g. for `mifg verified`).
                if overlap is None:
                    overlap = int(old["value"]) if old else 1
                if old is not None and int(old["value"]) != overlap and not change_overlap:
                    raise ConfigError(
                        f"{self.run_dir}: this review runs with --overlap {old['value']}; refusing --overlap {overlap}"
                        " (leave --overlap out to keep it, or pass --change-overlap to change it)"
                    )
                self.overlap = overlap
                if old is None or int(old["value"]) != overlap:
                    c.execute("INSERT OR REPLACE INTO meta VALUES ('overlap', ?)", (str(overlap),))
                    self._audit(c, "system", "set_overlap", "", {"overlap": overlap, "was": old and old["value"]})

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (the store is unusable afterwards)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back whole on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _audit(self, c: sqlite3.Connection, annotator: str, action: str, sample_id: str, detail: dict) -> None:
        c.execute(
            "INSERT INTO audit (at, annotator, action, sample_id, detail) VALUES (?, ?, ?, ?, ?)",
            (iso_utc(self.clock()), annotator, action, sample_id, json.dumps(detail, sort_keys=True, default=str)),
        )

    def audit(self, annotator: str, action: str, sample_id: str = "", detail: dict | None = None) -> None:
        """Append one entry to the audit log."""
        with self._tx() as c:
            self._audit(c, annotator, action, sample_id, detail or {})

    # -- import -----------------------------------------------------------------------------------

    def _safe_shard_path(self, rel: str) -> Path:
        """The shard file `rel` under the run dir; refuses anything that resolves outside it."""
        root = self.run_dir.resolve()
        path = (root / rel).resolve()
        if Path(rel).is_absolute() or not path.is_relative_to(root):
            raise ReviewError(f"shard path {rel!r} leaves the run directory")
        return path

    def import_shards(self, batch_rows: int = 64) -> ImportReport:
        """Index candidate samples of every shard not imported yet; safe to call at every start.

        Each row is validated as a `schemas.Sample` (read `batch_rows` at a time, image bytes
        included); a row that fails is quarantined with its reason and never assigned.
        """
        report = ImportReport()
        done = {r["file"] for r in self._read("SELECT file FROM imported_shards")}
        for info in list_shards(self.run_dir):
            if info.file in done:
                continue
            try:
                path = self._safe_shard_path(info.file)
                rows = [r for batch in pq.ParquetFile(path).iter_batches(batch_rows) for r in _checked_rows(batch)]
            except (ReviewError, OSError, pa.ArrowException) as e:
                report.bad.append(f"{info.file}: {e}")
                continue
            with self._tx() as c:
                seq = c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM samples").fetchone()[0]
                for i, (r, problem) in enumerate(rows):
                    sid = r.get("id") or ""
                    if not isinstance(sid, str) or not _ID_RE.match(sid) or ".." in sid:
                        report.bad.append(f"{info.file} row {i}: bad sample id {str(sid)[:80]!r}")
                        continue
                    if r.get("status") != Status.CANDIDATE.value:
                        report.not_candidates += 1
                        continue
                    if problem:
                        q = self._quarantine(c, info.file, i, sid, problem)
                        report.quarantined.append(q.line())
                        continue
                    prov = r.get("provenance") or {}
                    verifier = prov.get("verifier") or {}
                    critic = prov.get("critic") or {}
                    cur = c.execute(
                        "INSERT OR IGNORE INTO samples (id, seq, shard, row, task_type, domain, verifier_agrees,"
                        " critic_verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            sid,
                            seq,
                            info.file,
                            i,
                            r.get("task_type") or "",
                            r.get("domain") or "",
                            int(bool(verifier.get("agrees"))),
                            critic.get("verdict") or "",
                        ),
                    )
                    if cur.rowcount:
                        seq += 1
                        report.added += 1
                    else:
                        report.duplicates += 1
                c.execute(
                    "INSERT INTO imported_shards VALUES (?, ?, ?, ?)",
                    (info.file, info.sha256, len(rows), iso_utc(self.clock())),
                )
                self._audit(c, "system", "import", "", {"shard": info.file, "rows": len(rows)})
            report.shards += 1
        return report

    # -- quarantine -------------------------------------------------------------------------------

    def _quarantine(self, c: sqlite3.Connection, shard: str, row: int, sample_id: str, reason: str) -> Quarantined:
        reason = " ".join(reason.split())[:MAX_QUARANTINE_REASON]
        at = iso_utc(self.clock())
        c.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?)", (shard, row, sample_id, reason, at))
        self._audit(c, "system", "quarantine", sample_id[:128], {"shard": shard, "row": row, "reason": reason})
        return Quarantined(shard, row, sample_id, reason, at)

    def quarantine_sample(self, sample_id: str, reason: str) -> None:
        """Set an indexed sample aside (it cannot be loaded or shown): never assigned again, open leases dropped."""
        ref = self.ref(sample_id)
        with self._tx() as c:
            self._quarantine(c, ref.shard, ref.row, ref.id, reason)
            c.execute("UPDATE samples SET quarantined = 1 WHERE id = ?", (ref.id,))
            for (annotator,) in c.execute(
                "SELECT annotator FROM assignments WHERE sample_id = ? AND done = ?", (ref.id, OPEN)
            ).fetchall():
                assignment.release(c, ref.id, annotator)

    def quarantined(self) -> list[Quarantined]:
        """Every row set aside, in shard order."""
        return [
            Quarantined(r["shard"], r["row"], r["sample_id"], r["reason"], r["at"])
            for r in self._read("SELECT * FROM quarantine ORDER BY shard, row")
        ]

    # -- samples ----------------------------------------------------------------------------------

    def ref(self, sample_id: str) -> SampleRef:
        """The index row of a sample; ReviewError if the id is malformed or unknown."""
        check_sample_id(sample_id)
        rows = self._read("SELECT * FROM samples WHERE id = ?", (sample_id,))
        if not rows:
            raise ReviewError(f"unknown sample id {sample_id!r}")
        return _ref(rows[0])

    def refs(self) -> list[SampleRef]:
        """Every reviewable (indexed, not quarantined) sample, in review order."""
        return [_ref(r) for r in self._read("SELECT * FROM samples WHERE quarantined = 0 ORDER BY seq")]

    def count_samples(self) -> int:
        """Number of reviewable (indexed, not quarantined) samples."""
        return self._read("SELECT COUNT(*) FROM samples WHERE quarantined = 0")[0][0]

    def load_sample(self, sample_id: str) -> Sample:
        """The full sample (with image bytes) read from its shard; the id is looked up, never used as a path."""
        ref = self.ref(sample_id)
        with self._lock:
            table = self._tables.get(ref.shard)
            if table is None:
                table = pq.read_table(self._safe_shard_path(ref.shard))
                self._tables[ref.shard] = table
                while len(self._tables) > self._cached_shards:
                    self._tables.popitem(last=False)
            else:
                self._tables.move_to_end(ref.shard)
        sample = table_to_samples(table.slice(ref.row, 1))[0]
        if sample.id != ref.id:
            raise ReviewError(f"{ref.shard} row {ref.row} holds {sample.id!r}, not {ref.id!r}: shard changed on disk")
        return sample

    def agent_records(self) -> dict[str, dict]:
        """{id: {"id", "answer", "provenance"}} of every reviewable sample, read from its shard without image bytes.

        A shard that cannot be read, or a row that no longer holds its indexed id, is left out (the
        caller counts what is missing).
        """
        wanted: dict[str, dict[int, str]] = {}  # shard -> {row: id}
        for ref in self.refs():
            wanted.setdefault(ref.shard, {})[ref.row] = ref.id
        out: dict[str, dict] = {}
        for shard, rows in wanted.items():
            try:
                table = pq.read_table(self._safe_shard_path(shard), columns=["id", "answer", "provenance"])
            except (ReviewError, OSError, pa.ArrowException):
                continue
            for i, rec in enumerate(table.to_pylist()):
                if rows.get(i) == rec["id"]:
                    out[rec["id"]] = rec
        return out

    # -- assignments ------------------------------------------------------------------------------

    def claim_next(self, annotator: str) -> str | None:
        """Id of the sample `annotator` should review now (resuming their open lease first); None when done."""
        check_annotator(annotator)
        with self._tx() as c:
            now = self.clock()
            got = assignment.claim(c, annotator, self.overlap, now, self.lease_seconds)
            for dropped in got.dropped:
                self._audit(c, annotator, "lease_dropped", dropped, {"why": "expired and covered by others"})
            if got.sample_id is not None and got.how != "resume":
                until = iso_utc(now + self.lease_seconds)
                self._audit(c, annotator, "claim", got.sample_id, {"how": got.how, "lease_until": until})
            return got.sample_id

    def likely_next(self, annotator: str, current: str) -> str | None:
        """The sample `annotator` will most likely get after `current` (nothing leased; for prefetching)."""
        with self._lock:
            return assignment.likely_next(self._conn, annotator, self.overlap, self.clock(), current)

    def skip(self, annotator: str, sample_id: str, reason: str, note: str = "") -> None:
        """Hand an undecided sample back with a reason; it is never given to `annotator` again."""
        check_annotator(annotator)
        check_sample_id(sample_id)
        with self._tx() as c:
            cur = c.execute(
                "UPDATE assignments SET done = ?, lease_until = 0 WHERE sample_id = ? AND annotator = ? AND done = ?",
                (SKIPPED, sample_id, annotator, OPEN),
            )
            if not cur.rowcount:
                raise ReviewError(f"sample {sample_id} is not open for {annotator}")
            at = iso_utc(self.clock())
            c.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?, ?, ?)", (sample_id, annotator, reason, note, at))
            self._audit(c, annotator, "skip", sample_id, {"reason": reason, "note": note})

    def skip_reasons(self) -> dict[str, int]:
        """How many skips each reason has, most first."""
        rows = self._read("SELECT reason, COUNT(*) AS n FROM skips GROUP BY reason ORDER BY n DESC, reason")
        return {r["reason"]: r["n"] for r in rows}

    def release(self, annotator: str, sample_id: str) -> None:
        """Give an undecided sample back to the queue (it may come back to the same annotator)."""
        check_annotator(annotator)
        check_sample_id(sample_id)
        with self._tx() as c:
            if assignment.release(c, sample_id, annotator):
                self._audit(c, annotator, "release", sample_id, {})

    def holds(self, annotator: str, sample_id: str) -> bool:
        """Whether `annotator` has an assignment (open or done) for `sample_id`."""
        rows = self._read(
            "SELECT 1 FROM assignments WHERE sample_id = ? AND annotator = ?", (check_sample_id(sample_id), annotator)
        )
        return bool(rows)

    # -- decisions --------------------------------------------------------------------------------

    def record_decision(
        self,
        annotator: str,
        sample_id: str,
        decision: str,
        *,
        reason: str = "",
        note: str = "",
        edited: Sample | None = None,
        before: Sample | None = None,
    ) -> Recorded:
        """Store one decision atomically (decision + edit + assignment + audit), committed on return.

        Only an annotator who was assigned the sample may decide it (an expired lease still counts:
        work submitted late is kept, never lost). Deciding the same sample twice returns the first
        decision with `replayed=True` and stores nothing (a double click is not a second review).
        """
        check_annotator(annotator)
        check_sample_id(sample_id)
        if decision not in DECISIONS:
            raise ReviewError(f"unknown decision {decision!r}")
        if (decision == "edit") != (edited is not None):
            raise ReviewError("an edit decision needs the edited sample (and only an edit has one)")
        if edited is not None and edited.id != sample_id:
            raise ReviewError("an edit must keep the sample id")
        result = self._record(annotator, sample_id, decision, reason, note, edited, before)
        if isinstance(result, str):
            raise ReviewError(result)
        return result

    def _record(
        self,
        annotator: str,
        sample_id: str,
        decision: str,
        reason: str,
        note: str,
        edited: Sample | None,
        before: Sample | None,
    ) -> Recorded | str:
        """The transaction of `record_decision`; returns the refusal message instead of raising (so it is audited)."""
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM samples WHERE id = ?", (sample_id,)).fetchone():
                raise ReviewError(f"unknown sample id {sample_id!r}")
            prior = c.execute(
                "SELECT * FROM decisions WHERE sample_id = ? AND annotator = ?", (sample_id, annotator)
            ).fetchone()
            if prior is not None:
                self._audit(c, annotator, "decision_replayed", sample_id, {"decision": decision})
                return Recorded(self._decision_from_row(c, prior), replayed=True)
            if not c.execute(
                "SELECT 1 FROM assignments WHERE sample_id = ? AND annotator = ?", (sample_id, annotator)
            ).fetchone():
                self._audit(c, annotator, "decision_refused", sample_id, {"why": "not assigned"})
                return f"sample {sample_id} is not assigned to {annotator}"  # commits the audit entry
            at = iso_utc(self.clock())
            cur = c.execute(
                "INSERT INTO decisions (sample_id, annotator, decision, reason, note, at) VALUES (?, ?, ?, ?, ?, ?)",
                (sample_id, annotator, decision, reason, note, at),
            )
            did = cur.lastrowid
            if edited is not None:
                c.execute(
                    "INSERT INTO edits VALUES (?, ?, ?, ?, ?)",
                    (did, sample_id, annotator, _content_json(before) if before else "{}", _content_json(edited)),
                )
            c.execute(
                "UPDATE assignments SET done = ? WHERE sample_id = ? AND annotator = ?", (DECIDED, sample_id, annotator)
            )
            c.execute("UPDATE samples SET n_done = n_done + 1 WHERE id = ?", (sample_id,))
            self._audit(
                c,
                annotator,
                "decision",
                sample_id,
                {"decision": decision, "reason": reason, "note": note, "decision_id": did},
            )
            return Recorded(Decision(did, sample_id, annotator, decision, reason, note, at, edited), replayed=False)

    def _decision_from_row(self, c: sqlite3.Connection, row: sqlite3.Row) -> Decision:
        edited = None
        if row["decision"] == "edit":
            e = c.execute("SELECT after_json FROM edits WHERE decision_id = ?", (row["id"],)).fetchone()
            if e is not None:
                edited = self._apply_content(row["sample_id"], json.loads(e["after_json"]))
        return Decision(
            row["id"],
            row["sample_id"],
            row["annotator"],
            row["decision"],
            row["reason"],
            row["note"],
            row["at"],
            edited,
        )

    def _apply_content(self, sample_id: str, content: dict) -> Sample:
        base = self.load_sample(sample_id)
        return Sample.model_validate({**base.model_dump(), **content, "id": base.id})

    def decisions(self, sample_id: str | None = None, *, with_edits: bool = False) -> list[Decision]:
        """Stored decisions (all, or of one sample), oldest first; `with_edits` loads edited samples."""
        sql = "SELECT * FROM decisions" + (" WHERE sample_id = ?" if sample_id else "") + " ORDER BY id"
        rows = self._read(sql, (sample_id,) if sample_id else ())
        if not with_edits:
            return [
                Decision(r["id"], r["sample_id"], r["annotator"], r["decision"], r["reason"], r["note"], r["at"])
                for r in rows
            ]
        with self._lock:
            return [self._decision_from_row(self._conn, r) for r in rows]

    def edit_before_json(self, decision_id: int) -> str:
        """JSON of the sample content before the edit of decision `decision_id` ("" if none)."""
        rows = self._read("SELECT before_json FROM edits WHERE decision_id = ?", (decision_id,))
        return rows[0]["before_json"] if rows else ""

    def decision_rows(self) -> list[sqlite3.Row]:
        """Decisions joined with their sample's task type and agents' verdicts (for the dashboard)."""
        return self._read(
            "SELECT d.sample_id, d.annotator, d.decision, d.reason, d.at, s.task_type, s.domain,"
            " s.verifier_agrees, s.critic_verdict, s.seq FROM decisions d JOIN samples s ON s.id = d.sample_id"
            " ORDER BY d.id"
        )

    def audit_rows(self) -> list[sqlite3.Row]:
        """The whole audit log, oldest first."""
        return self._read("SELECT * FROM audit ORDER BY id")

    def progress(self, annotator: str) -> dict[str, int]:
        """One annotator's counts: decisions by kind, plus how many samples are still open to them."""
        counts = {k: 0 for k in DECISIONS}
        for r in self._read(
            "SELECT decision, COUNT(*) AS n FROM decisions WHERE annotator = ? GROUP BY decision", (annotator,)
        ):
            counts[r["decision"]] = r["n"]
        open_to_me = self._read(
            "SELECT COUNT(*) FROM samples s WHERE s.n_done < ? AND s.quarantined = 0 AND NOT EXISTS"
            " (SELECT 1 FROM assignments a WHERE a.sample_id = s.id AND a.annotator = ? AND a.done != ?)",
            (self.overlap, annotator, OPEN),
        )[0][0]
        counts["done"] = sum(counts[k] for k in DECISIONS)
        counts["open"] = open_to_me
        return counts


def _checked_rows(batch: pa.RecordBatch) -> Iterator[tuple[dict, str]]:
    """(the row's index fields, why it is not a valid Sample or '') for each row of a batch."""
    for row in batch.to_pylist():
        slim = {k: row.get(k) for k in _INDEX_FIELDS}  # the image bytes are not kept
        try:
            row_to_sample(row)
        except Exception as e:  # noqa: BLE001 - pydantic, schema-version and type errors alike: the row is unusable
            detail = " ".join(str(e).split()) or type(e).__name__
            yield slim, f"invalid sample ({type(e).__name__}): {detail}"
            continue
        yield slim, ""


def _ref(r: sqlite3.Row) -> SampleRef:
    return SampleRef(
        r["id"],
        r["seq"],
        r["shard"],
        r["row"],
        r["task_type"],
        r["domain"],
        bool(r["verifier_agrees"]),
        r["critic_verdict"],
        r["n_done"],
    )


def content_fields(sample: Sample) -> dict:
    """The editable part of a sample: question, options, answer, evidence."""
    return {
        "question": sample.question,
        "options": list(sample.options),
        "answer": sample.answer,
        "evidence": [{"image_index": b.image_index, "bbox": list(b.bbox)} for b in sample.evidence],
    }


def _content_json(sample: Sample) -> str:
    return json.dumps(content_fields(sample), sort_keys=True, ensure_ascii=False)
