"""The durable side of a run: the item record (SQLite), the accepted/rejected shards, and their order.

Failed items are recorded at once. Accepted/rejected samples are buffered, then recorded in one
transaction *immediately before* their shard is written by atomic rename, so that after a crash
between the two `pipeline.run.reconcile` can tell which samples to redo and which to adopt (see
`pipeline.runner`). A sample id is written at most once per store: the record keeps the ids on disk.
With `--out URL` the same happens in a local working dir, and `pipeline.run.replica` uploads each
shard, its manifest and a snapshot of the record to the remote store.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from pipeline.duplicate_registry import RunRegistry
from pipeline.item_store import ItemRecord, ItemStore
from pipeline.run.reconcile import reconcile
from pipeline.run_config import RunConfig, check_or_write_run_json
from pipeline.shard_store import ShardWriter
from schemas import Sample
from schemas.arrow import sample_arrow_schema
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.run.replica import Replica


@dataclass
class RunHooks:
    """Test seams: called at the two points where a crash matters (store name: 'accepted'/'rejected')."""

    after_records: Callable[[str], None] | None = None  # records committed, shard not yet written
    after_shard: Callable[[str], None] | None = None  # shard written


class RunRecord:
    """The item record and shards of one run shard (`cfg.tag`), written by this process only."""

    def __init__(self, cfg: RunConfig, hooks: RunHooks) -> None:
        self.cfg = cfg
        self.hooks = hooks
        # None until `open` made them: a run that stops while opening closes what it has
        self.store: ItemStore | None = None
        self.acc_writer: ShardWriter | None = None
        self.rej_writer: ShardWriter | None = None
        self.lock_file: IO[str] | None = None
        self.replica: Replica | None = None  # --out URL: the remote copy of this run shard
        self.acc_buf: list[tuple[ItemRecord, Sample]] = []
        self.rej_buf: list[tuple[ItemRecord, Sample]] = []
        self.last_flush = time.monotonic()

    def open(self) -> None:
        """Check the run's settings, lock the shard, open record and shards, reconcile them."""
        cfg = self.cfg
        if cfg.remote:  # the working dir is locked first: restoring it rewrites this tag's files
            from pipeline.run.replica import Replica

            self._lock()
            self.replica = Replica(cfg)
            self.replica.restore()
            check_or_write_run_json(cfg, others_finished=self.replica.others_finished)
            self.replica.push_run_json()
        else:
            check_or_write_run_json(cfg)
            self._lock()
        self.store = ItemStore(cfg.state_path)
        self.acc_writer = ShardWriter(cfg.out, cfg.tag)
        self.rej_writer = ShardWriter(cfg.rejected_dir, cfg.tag)
        if self.replica is not None and (self.acc_writer.dropped or self.rej_writer.dropped):
            for writer in (self.acc_writer, self.rej_writer):
                self.replica.push_manifest(writer)
        for line in self.acc_writer.dropped + self.rej_writer.dropped:  # damaged shards: their items run again
            print(f"mifg generate: warning: {line}", file=sys.stderr, flush=True)
        # Built (and `datasets` imported, seconds) now: on the first flush it would stall the event loop.
        sample_arrow_schema()
        self.acc_ids, self.rej_ids = reconcile(cfg, self.store)
        if cfg.retry_failed:
            self.store.delete(i for i, (outcome, _) in self.store.done().items() if outcome == "failed")
        # the duplicate keys of the items recorded so far; keys of new items are committed with them
        self.registry = RunRegistry(self.store.keys())

    def _lock(self) -> None:
        """One process per RUN_DIR shard tag: a second one would interleave records and shards."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        path = self.cfg.state_path.with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_file = open(path, "a+")  # held for the whole run; the OS drops the lock if we are killed
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.lock_file.close()
            raise ConfigError(
                f"{self.cfg.out}: another mifg generate is running on shard {self.cfg.tag}; wait for it or stop it"
            ) from None

    def add(self, rec: ItemRecord, sample: Sample | None) -> None:
        """Keep a finished item: its sample buffered for the next shard, or else its record committed now.

        A sample whose id is already kept is not written twice: an accepted one becomes a rejected
        `duplicate_id` without a sample, a rejected one is recorded without its sample.
        """
        if sample is not None and rec.outcome == "accepted" and sample.id in self.acc_ids:
            rec.outcome, rec.reasons, sample = "rejected", ["duplicate_id"], None  # same content as a kept sample
        if sample is not None:
            rec.sample_id = sample.id
            if rec.outcome == "accepted":
                self.acc_ids.add(sample.id)
                self.acc_buf.append((rec, sample))
            elif sample.id not in self.rej_ids:
                self.rej_ids.add(sample.id)
                self.rej_buf.append((rec, sample))
            else:
                rec.sample_id = ""
                sample = None
        if sample is None:
            self.store.commit([rec], {rec.index: self.registry.take(rec.index)})

    def flush_due(self) -> bool:
        """Whether a buffer is full or the last flush is `cfg.flush_seconds` old."""
        return (
            len(self.acc_buf) >= self.cfg.flush_every
            or len(self.rej_buf) >= self.cfg.flush_every
            or time.monotonic() - self.last_flush >= self.cfg.flush_seconds
        )

    def flush(self) -> int:
        """Record, then write, the buffered samples (see the module docstring for why in this order).

        Returns the number of shards written.
        """
        written = 0
        for name, buf, writer in (
            ("accepted", self.acc_buf, self.acc_writer),
            ("rejected", self.rej_buf, self.rej_writer),
        ):
            if not buf:
                continue
            recs = [r for r, _ in buf]
            self.store.commit(recs, {r.index: self.registry.take(r.index) for r in recs})
            if self.hooks.after_records:
                self.hooks.after_records(name)
            info = writer.write([s for _, s in buf])
            if self.replica is not None and info is not None:
                self.replica.shard_written(writer, info)
            written += 1
            buf.clear()
            if self.hooks.after_shard:
                self.hooks.after_shard(name)
        self.sync()
        self.last_flush = time.monotonic()
        return written

    def sync(self) -> None:
        """--out URL: upload a snapshot of the item record if it changed (no-op for a local run)."""
        if self.replica is not None and self.store is not None:
            self.replica.snapshot(self.store)

    def accepted_so_far(self) -> int:
        """Accepted samples recorded over the whole run, earlier invocations included."""
        return sum(1 for o, _ in self.store.done().values() if o == "accepted")

    def kept(self) -> str:
        """What a stopped run leaves behind, for its one-line error."""
        shards = [s for w in (self.acc_writer, self.rej_writer) if w is not None for s in w.shards]
        return (
            f"{len(shards)} shards ({sum(s.rows for s in shards)} samples) and the item records in"
            f" {self.cfg.remote or self.cfg.out};"
            " free space and run the same command again to resume"
        )

    def close(self) -> None:
        """Close the item record and release the shard's lock (whatever `open` got to)."""
        if self.store is not None:
            self.store.close()
        if self.lock_file is not None:
            self.lock_file.close()
