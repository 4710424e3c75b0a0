"""What one invocation of `mifg generate` did: `RunSummary`, as kept in the record and as printed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import BudgetSpent


@dataclass
class RunSummary:
    """What one invocation of the runner did."""

    out: Path | str  # RUN_DIR, or the URL of a remote store
    tag: str
    planned: int = 0  # items of this shard in the plan
    resumed_done: int = 0  # items already finished before this invocation
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    total_accepted: int = 0  # over the whole run, including earlier invocations
    skipped_inputs: int = 0
    pool_photos: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0  # time spent running items (seconds minus set-up: pool, reconcile, workers)
    cpu_seconds: float = 0.0  # CPU time of this process and its workers while running items
    exit_code: int = 0  # 0, 130 (SIGINT), 143 (SIGTERM), 1 (stopped: everything failing)
    stopped_reason: str = ""
    task_types: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    shards_written: int = 0
    work_dir: Path | None = None  # --out URL: the local working dir (record, image cache, temp files)

    @property
    def finished(self) -> int:
        """Items finished by this invocation."""
        return self.accepted + self.rejected + self.failed


def summary_dict(s: RunSummary) -> dict:
    """The summary as kept in the item record's meta table (`last_summary`, read by the benchmarks)."""
    return {
        "tag": s.tag,
        "planned": s.planned,
        "resumed_done": s.resumed_done,
        "accepted": s.accepted,
        "rejected": s.rejected,
        "failed": s.failed,
        "total_accepted": s.total_accepted,
        "seconds": round(s.seconds, 3),
        "loop_seconds": round(s.loop_seconds, 3),
        "cpu_seconds": round(s.cpu_seconds, 3),
        "exit_code": s.exit_code,
        "stopped_reason": s.stopped_reason,
    }


def format_summary(s: RunSummary) -> str:
    """The closing summary of `mifg generate`."""
    rate = s.finished / s.loop_seconds if s.loop_seconds > 0 else 0.0
    head = "interrupted" if s.exit_code in (130, 143) else ("stopped" if s.exit_code else "done")
    lines = [
        f"mifg generate {head}: {s.finished} items in {s.loop_seconds:.1f} s ({rate:.2f} items/s;"
        f" {s.seconds:.1f} s in all), shard {s.tag}",
        f"  this invocation: accepted {s.accepted}, rejected {s.rejected}, failed {s.failed}"
        + (f"; {s.resumed_done} finished earlier" if s.resumed_done else ""),
        f"  run so far: {s.resumed_done + s.finished}/{s.planned} items, {s.total_accepted} accepted samples",
        f"  photos: {s.pool_photos} in pool, {s.skipped_inputs} inputs skipped",
    ]
    if s.task_types:
        lines.append("  task types: " + ", ".join(f"{k} {v}" for k, v in sorted(s.task_types.items())))
    if s.failures:
        lines.append("  failures: " + ", ".join(f"{k} x{v}" for k, v in s.failures.most_common(5)))
    if s.stopped_reason and s.stopped_reason != "interrupted":
        lines.append(f"  stopped early: {s.stopped_reason}")
    lines.append(f"  output: {s.out}/shards (accepted), {s.out}/rejected/shards, record {s.out}/state/{s.tag}.sqlite")
    if s.work_dir is not None:
        lines.append(f"  working copy: {s.work_dir} (the record, image cache; the store is {s.out})")
    if s.exit_code in (130, 143, BudgetSpent.exit_code):
        lines.append("  run the same command again to resume")
    lines.append(f"  next: mifg stats {s.out}")
    return "\n".join(lines)
