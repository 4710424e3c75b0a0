"""What the driver of a Ray job shows: the progress board every shard reports to, and the closing summary.

`ProgressBoard` runs as a Ray actor: each shard says when an attempt starts, which items earlier
attempts finished, and each item it finishes; the driver prints one line per update from it. The
closing summary is built from the shards' item records (the durable truth, which also counts what a
killed attempt recorded) and the summaries the shards returned.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.graph import failure_code
from pipeline.item_store import ItemRecord, ItemStore
from pipeline.merge import MergeSummary
from pipeline.run.summary import RunSummary
from pipeline.run_config import RunConfig
from schemas.errors import BudgetSpent


class ProgressBoard:
    """Items finished per shard, attempts per shard, and the job's stop flag (a Ray actor)."""

    def __init__(self, planned: dict[str, int]) -> None:
        self.planned = dict(planned)
        self.done: dict[str, dict[int, str]] = {tag: {} for tag in planned}  # tag -> {item: outcome}
        self.attempts: Counter[str] = Counter()
        self.fresh = 0  # items first reported finished by this invocation
        self.stop = False

    def started(self, tag: str, pid: int) -> None:
        """An attempt of shard `tag` started in process `pid`."""
        self.attempts[tag] += 1

    def resumed(self, tag: str, done: dict[int, str]) -> None:
        """The items of shard `tag` that its record already holds."""
        self.done[tag].update(done)

    def finished(self, tag: str, idx: int, outcome: str) -> None:
        """Shard `tag` finished item `idx`."""
        if idx not in self.done[tag]:
            self.fresh += 1
        self.done[tag][idx] = outcome

    def request_stop(self) -> None:
        """Ask every shard to stop as on Ctrl-C (finish what is in flight, flush)."""
        self.stop = True

    def stopping(self) -> bool:
        """Whether the shards should stop."""
        return self.stop

    def snapshot(self) -> dict:
        """Counts for one progress line."""
        outcomes = Counter(o for d in self.done.values() for o in d.values())
        return {
            "done": sum(len(d) for d in self.done.values()),
            "planned": sum(self.planned.values()),
            "outcomes": dict(outcomes),
            "attempts": dict(self.attempts),
            "fresh": self.fresh,
        }


def progress_line(snap: dict, shards: int, ended: int, elapsed: float) -> str:
    """`generate on ray: 23/64 items (acc 15 rej 6 fail 2), 3.1 items/s; shards: 1 done, 2 started, 1 queued`.

    A started shard whose worker died counts as started until Ray's retry of it ends.
    """
    o, attempts = snap["outcomes"], snap["attempts"]
    started = max(0, sum(1 for n in attempts.values() if n) - ended)
    queued = shards - ended - started
    rate = snap["fresh"] / elapsed if elapsed > 0 else 0.0
    line = (
        f"generate on ray: {snap['done']}/{snap['planned']} items (acc {o.get('accepted', 0)}"
        f" rej {o.get('rejected', 0)} fail {o.get('failed', 0)}), {rate:.2f} items/s;"
        f" shards: {ended} done, {started} started, {queued} queued"
    )
    retried = sorted(tag for tag, n in attempts.items() if n > 1)
    return line + (f"; restarted: {', '.join(retried)}" if retried else "")


def recorded(cfg: RunConfig) -> dict[int, ItemRecord]:
    """The item records of one shard (none yet: empty)."""
    if not cfg.state_path.is_file():
        return {}
    store = ItemStore(cfg.state_path, readonly=True)
    try:
        return {r.index: r for r in store.records()}
    finally:
        store.close()


@dataclass
class JobSummary:
    """What one `mifg generate --executor ray` invocation did, over all its shards."""

    out: Path
    shards: list[RunConfig]
    before: dict[str, set[int]]  # items each shard had recorded when the job started
    results: dict[str, RunSummary] = field(default_factory=dict)  # what each shard returned
    attempts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # shards that ended without a summary, one line each
    seconds: float = 0.0  # from the first shard submitted to the last one ended
    total_seconds: float = 0.0  # with Ray's start and the merge
    exit_code: int = 0
    merge: MergeSummary | None = None
    merge_skipped: str = ""
    rate_limits: dict[str, dict] = field(default_factory=dict)  # endpoint -> the shared bucket's stats

    def records(self) -> dict[str, dict[int, ItemRecord]]:
        """Every shard's item records now."""
        return {c.tag: recorded(c) for c in self.shards}


def format_job_summary(job: JobSummary) -> str:
    """The closing summary of a Ray job, in the shape of `mifg generate`'s own."""
    records = job.records()
    new = [r for tag, rs in records.items() for idx, r in rs.items() if idx not in job.before.get(tag, set())]
    so_far = [r for rs in records.values() for idx, r in rs.items() if idx < job.shards[0].n]  # of this -n
    planned = sum(len(range(c.shard_index, c.n, c.shard_count)) for c in job.shards)
    counts = Counter(r.outcome for r in new)
    finished = sum(counts.values())
    rate = finished / job.seconds if job.seconds > 0 else 0.0
    head = "interrupted" if job.exit_code in (130, 143) else ("stopped" if job.exit_code else "done")
    retried = sorted(tag for tag, n in job.attempts.items() if n > 1)
    earlier = sum(len(v) for v in job.before.values())
    lines = [
        f"mifg generate {head}: {finished} items in {job.seconds:.1f} s on Ray ({rate:.2f} items/s;"
        f" {job.total_seconds:.1f} s in all), {len(job.shards)} shards"
        + (f", restarted by Ray: {', '.join(retried)}" if retried else ""),
        f"  this invocation: accepted {counts['accepted']}, rejected {counts['rejected']}, failed {counts['failed']}"
        + (f"; {earlier} finished earlier" if earlier else ""),
        f"  run so far: {len(so_far)}/{planned} items, {sum(r.outcome == 'accepted' for r in so_far)} accepted samples",
    ]
    if job.results:
        s = next(iter(job.results.values()))
        where = f" (listed in {job.out}/logs/{s.tag}.log)" if s.skipped_inputs else ""
        lines.append(f"  photos: {s.pool_photos} in pool, {s.skipped_inputs} inputs skipped{where}")
    task_types = Counter(r.task_type for r in new if r.outcome == "accepted")
    if task_types:
        lines.append("  task types: " + ", ".join(f"{k} {v}" for k, v in sorted(task_types.items())))
    failures = Counter(failure_code(r.failure) for r in new if r.outcome == "failed")
    if failures:
        lines.append("  failures: " + ", ".join(f"{k} x{v}" for k, v in failures.most_common(5)))
    for url, st in sorted(job.rate_limits.items()):
        lines.append(
            f"  rate limit of {url}: {st['granted']} requests granted by the shared bucket,"
            f" {st['refused']} asks told to wait"
        )
    for tag, s in sorted(job.results.items()):
        if s.stopped_reason and s.stopped_reason != "interrupted":
            lines.append(f"  shard {tag} stopped early: {s.stopped_reason}")
    lines += [f"  shard {p}" for p in job.problems]
    out = job.out
    if job.merge is not None:
        m = job.merge
        lines.append(
            f"  merged: {m.accepted} accepted, {m.rejected} rejected samples in {m.shards} shards"
            f" ({m.duplicates} duplicate ids dropped) into {m.out}"
        )
    elif job.merge_skipped:
        lines.append(f"  not merged: {job.merge_skipped}")
    lines.append(
        f"  output: {out}/shards (one tag per shard), records {out}/state/<tag>.sqlite, shard logs {out}/logs/"
    )
    if job.exit_code in (1, 130, 143, BudgetSpent.exit_code):
        lines.append("  run the same command again to resume")
    lines.append(f"  next: mifg stats {job.merge.out if job.merge is not None else out}")
    return "\n".join(lines)


class Ticker:
    """Prints a progress line when it changed, at most every `interval` seconds."""

    def __init__(self, enabled: bool, interval: float) -> None:
        self.enabled = enabled
        self.interval = interval
        self.last = ""
        self.t_last = 0.0

    def show(self, line: str) -> None:
        """Print `line` (to stderr) if it is new and the interval has passed."""
        now = time.monotonic()
        if not self.enabled or line == self.last or now - self.t_last < self.interval:
            return
        with contextlib.suppress(OSError):
            print(line, file=sys.stderr, flush=True)
        self.last, self.t_last = line, now
