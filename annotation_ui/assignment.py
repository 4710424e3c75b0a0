"""Who reviews what next: overlap assignment with expiring leases, as SQL on the review store.

Rules (all inside the caller's write transaction, so two annotators never race for a slot):
1. An annotator first gets back their own undecided sample (a reload or a restart resumes it); its
   lease is renewed. If that lease had expired and others have since covered the sample, it is dropped.
2. Otherwise they get a sample others have started but that still needs reviewers
   (covered = decided + held under a live lease, fewer than `overlap`), fullest first, so
   overlapping reviews complete early and agreement can be measured.
3. Otherwise the first untouched sample in import order.
A sample is never given twice to the same annotator, so its reviewers are always distinct; one they
skipped (`done` = 2) no longer counts as covered, so it goes to someone else by rule 2.
Quarantined samples are never given out.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field


@dataclass
class Claim:
    """Result of `claim`: the sample to show (None when nothing is left), how it was chosen, dropped leases."""

    sample_id: str | None
    how: str = ""  # "resume" | "overlap" | "new" | ""
    dropped: list[str] = field(default_factory=list)


def _covered_by_others(c: sqlite3.Connection, sample_id: str, annotator: str, now: float) -> int:
    return c.execute(
        "SELECT COUNT(*) FROM assignments WHERE sample_id = ? AND annotator != ? AND (done = 1 OR lease_until > ?)",
        (sample_id, annotator, now),
    ).fetchone()[0]


def claim(c: sqlite3.Connection, annotator: str, overlap: int, now: float, lease_seconds: float) -> Claim:
    """Pick (and lease) the next sample for `annotator`; see the module docstring for the rules."""
    dropped: list[str] = []
    own = c.execute(
        "SELECT sample_id, lease_until FROM assignments WHERE annotator = ? AND done = 0 ORDER BY assigned_at, rowid",
        (annotator,),
    ).fetchall()
    for sample_id, lease_until in own:
        if lease_until > now or _covered_by_others(c, sample_id, annotator, now) < overlap:
            c.execute(
                "UPDATE assignments SET lease_until = ? WHERE sample_id = ? AND annotator = ?",
                (now + lease_seconds, sample_id, annotator),
            )
            return Claim(sample_id, "resume", dropped)
        release(c, sample_id, annotator)
        dropped.append(sample_id)

    found = _unstarted_or_overlap(c, annotator, overlap, now, "")
    if found is None:
        return Claim(None, "", dropped)
    sample_id, how = found
    c.execute(
        "INSERT INTO assignments (sample_id, annotator, assigned_at, lease_until) VALUES (?, ?, ?, ?)",
        (sample_id, annotator, now, now + lease_seconds),
    )
    c.execute("UPDATE samples SET n_assigned = n_assigned + 1 WHERE id = ?", (sample_id,))
    return Claim(sample_id, how, dropped)


def _unstarted_or_overlap(
    c: sqlite3.Connection, annotator: str, overlap: int, now: float, besides: str
) -> tuple[str, str] | None:
    """Rules 2 and 3: (sample id, "overlap" | "new") of the sample to give next, other than `besides`."""
    row = c.execute(
        """
        SELECT s.id FROM samples s JOIN assignments a ON a.sample_id = s.id
        WHERE s.n_assigned > 0 AND s.n_done < :overlap AND s.quarantined = 0 AND s.id != :besides
        GROUP BY s.id
        HAVING SUM(a.annotator = :me) = 0 AND SUM(a.done = 1 OR a.lease_until > :now) < :overlap
        ORDER BY SUM(a.done = 1 OR a.lease_until > :now) DESC, s.seq
        LIMIT 1
        """,
        {"overlap": overlap, "me": annotator, "now": now, "besides": besides},
    ).fetchone()
    if row is not None:
        return row[0], "overlap"
    row = c.execute(
        "SELECT id FROM samples WHERE n_assigned = 0 AND quarantined = 0 AND id != ? ORDER BY seq LIMIT 1", (besides,)
    ).fetchone()
    return None if row is None else (row[0], "new")


def likely_next(c: sqlite3.Connection, annotator: str, overlap: int, now: float, current: str) -> str | None:
    """The sample `annotator` will most likely be given after `current` (read only: nothing is leased).

    A guess for prefetching its images: another annotator may take it first, and then the browser has
    fetched a few images for nothing.
    """
    found = _unstarted_or_overlap(c, annotator, overlap, now, current)
    return None if found is None else found[0]


def release(c: sqlite3.Connection, sample_id: str, annotator: str) -> bool:
    """Remove an undecided assignment so the sample returns to the pool; False if there was none."""
    cur = c.execute(
        "DELETE FROM assignments WHERE sample_id = ? AND annotator = ? AND done = 0", (sample_id, annotator)
    )
    if cur.rowcount:
        c.execute("UPDATE samples SET n_assigned = n_assigned - 1 WHERE id = ?", (sample_id,))
    return bool(cur.rowcount)
