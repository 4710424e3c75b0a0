"""The resumable async batch runner: plan -> graph per item (bounded concurrency) -> records + shards.

How it stays correct when killed at any instant (Ctrl-C, kill -9, a crash):
- Work item i of a run always has the same seed (`item_seed(run seed, i)`), so redoing an unfinished
  item makes the same sample, with the same content-hash id.
- Finished items are recorded in SQLite (`pipeline.item_store`). Failed items are recorded at once;
  accepted/rejected samples are buffered, then recorded in one transaction *immediately before*
  their shard is written by atomic rename (`pipeline.shard_store`).
- On start the record is reconciled with the shards that really exist: records whose sample never
  reached a shard are deleted (the items run again); samples in shards without a record (possible
  only after a power cut) are adopted by mapping their seed back to their item. So a crash between
  the two steps, in either order, neither loses nor duplicates a sample. The shards are read through
  `pipeline.store_reader.StoreReader`; a listed shard that is missing, damaged or outside the run is
  dropped from its manifest with one line (see `ShardWriter`), and its items run again.
- A sample id is written at most once per store: the runner keeps the set of ids on disk.
- A full disk (ENOSPC, SQLite's "database or disk is full") stops the run with one line naming the
  file and what was kept; the same command resumes once there is space.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from agents.base import COUNT_PREFIX, AgentContext, AgentSet, PhotoPool, WorkItem, count_slots
from agents.image_cache import load_bytes
from pipeline.duplicate_registry import FeedReader, KeyFeed, RunRegistry
from pipeline.graph import GenState, build_graph, failure_code, failure_fields, initial_state, recursion_limit
from pipeline.image_sources import SourceImage, bundled_source, directory_source, hf_dataset_source
from pipeline.item_store import ItemRecord, ItemStore
from pipeline.photo_pool import PoolReport, SkippedInput, build_pool
from pipeline.run_config import RunConfig, check_or_write_run_json, item_seed
from pipeline.shard_store import ShardWriter
from pipeline.store_reader import StoreReader
from pipeline.write_guard import disk_full_message, is_disk_full
from schemas import NEUTRAL_ROLE, CriticVerdict, Provenance, Sample, Status, image_entry
from schemas.arrow import sample_arrow_schema
from schemas.errors import BudgetSpent, ConfigError, DiskFullError, InputError


@dataclass
class RunHooks:
    """Test seams: called at the two points where a crash matters (store name: 'accepted'/'rejected')."""

    after_records: Callable[[str], None] | None = None  # records committed, shard not yet written
    after_shard: Callable[[str], None] | None = None  # shard written


@dataclass
class RunSummary:
    """What one invocation of the runner did."""

    out: Path
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

    @property
    def finished(self) -> int:
        """Items finished by this invocation."""
        return self.accepted + self.rejected + self.failed


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sources_for(cfg: RunConfig) -> Iterator[SourceImage]:
    """The image source named by `cfg.source`."""
    kind, _, arg = cfg.source.partition(":")
    if kind == "skimage":
        return bundled_source(cfg.validation.max_side)
    if kind == "dir":
        return directory_source(Path(arg), follow_links=cfg.follow_links, on_note=_note)
    if kind == "hf":
        return hf_dataset_source(Path(arg), image_column=cfg.image_column, group_column=cfg.group_column)
    raise InputError(f"unknown image source {cfg.source!r}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def assemble_sample(state: GenState, cfg: RunConfig, agents: AgentSet, status: Status) -> Sample:
    """The final Sample of a finished graph state: image bytes read from the cache, provenance filled.

    Every image gets the neutral role: which image is the edited one is the answer, so the per-image
    roles go only into the audit-only construction record (`"image_roles"`), never into `image_meta`.
    """
    images, draft = state["images"], state["draft"]
    entries = [
        image_entry(
            load_bytes(r),
            width=r.width,
            height=r.height,
            source=r.source,
            phash=r.phash,
            license=r.license,
            role=NEUTRAL_ROLE,
            sha256=r.sha256,  # the cache names files by it: no need to hash the bytes again
        )
        for r in images.images
    ]
    construction = {**images.construction, "image_roles": [r.role for r in images.images]}
    return Sample(
        images=[image for image, _ in entries],
        image_meta=[meta for _, meta in entries],
        question=draft.question,
        options=list(draft.options),
        answer=draft.answer,
        task_type=draft.task_type,
        domain=images.domain,
        rationale=draft.rationale,
        evidence=list(draft.evidence),
        provenance=Provenance(
            backend=agents.backend,
            model=agents.model,
            prompt_version=agents.prompt_version,
            seed=state["item"].seed,
            run_id=cfg.run_id,
            construction=json.dumps(construction, sort_keys=True, default=str),
            verifier=state["verdict"],
            # a verifier disagreement rejects before the critic runs: say so rather than a default "accept"
            critic=state.get("critic")
            or CriticVerdict(verdict="reject", reasons=list(state.get("reasons") or []), feedback="critic not run"),
            revisions=state["revisions"],
            usage=state["usage"],
            created_at=_now(),
        ),
        status=status,
    )


def record_from_state(state: GenState, seconds: float) -> ItemRecord:
    """The item record of a finished graph state."""
    item, usage = state["item"], state["usage"]
    images, draft, verdict = state.get("images"), state.get("draft"), state.get("verdict")
    return ItemRecord(
        index=item.index,
        seed=item.seed,
        outcome=state.get("outcome", "failed"),
        task_type=draft.task_type.value if draft else "",
        domain=images.domain.value if images else "",
        kind=images.kind if images else "",
        n_images=len(images.images) if images else 0,
        reasons=list(state.get("reasons") or []),
        failure=state.get("failure", ""),
        failed_stage=state.get("failed_stage", ""),
        revisions=state.get("revisions", 0),
        verifier_agrees=None if verdict is None else verdict.agrees,
        critic_history=[{"verdict": c.verdict, "reasons": list(c.reasons)} for c in state.get("critic_history", [])],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        calls=usage.calls,
        cost_usd=usage.cost_usd,
        seconds=round(seconds, 4),
        finished_at=_now(),
        usage_parts=[p.model_dump() for p in usage.parts],
    )


def record_from_sample(index: int, sample: Sample, outcome: str) -> ItemRecord:
    """A record rebuilt from a sample found in a shard without one (adopted on reconcile)."""
    p = sample.provenance
    return ItemRecord(
        index=index,
        seed=p.seed,
        outcome=outcome,
        sample_id=sample.id,
        task_type=sample.task_type.value,
        domain=sample.domain.value,
        n_images=len(sample.images),
        reasons=[] if outcome == "accepted" else (list(p.critic.reasons) or ["critic_rejected"]),
        revisions=p.revisions,
        verifier_agrees=p.verifier.agrees,
        critic_history=[{"verdict": p.critic.verdict, "reasons": list(p.critic.reasons)}],
        prompt_tokens=p.usage.prompt_tokens,
        completion_tokens=p.usage.completion_tokens,
        calls=p.usage.calls,
        cost_usd=p.usage.cost_usd,
        finished_at=p.created_at,
        usage_parts=[part.model_dump() for part in p.usage.parts],
    )


def _ids_in(reader: StoreReader) -> dict[str, tuple[str, int]]:
    """sample id -> (shard file, seed) of the shards the reader reads (damaged ones skipped, one line each)."""
    out: dict[str, tuple[str, int]] = {}
    for shard, _, row in reader.rows(columns=["id", "provenance"]):
        seed = (row.get("provenance") or {}).get("seed")
        if row.get("id") and isinstance(seed, int):
            out[row["id"]] = (shard.info.file, seed)
    return out


async def run_item(graph, ctx: AgentContext, idx: int, seed: int, max_revisions: int) -> tuple[GenState, float]:
    """Run the graph for one work item; any error becomes a failed state (never raises, except cancel)."""
    item = WorkItem(index=idx, seed=seed)
    t0 = time.perf_counter()
    with RunRegistry.item_scope(idx):
        try:
            state = await graph.ainvoke(
                initial_state(item), context=ctx, config={"recursion_limit": recursion_limit(max_revisions)}
            )
        except Exception as e:  # noqa: BLE001 - a graph-level error fails the item, not the batch
            state = {**initial_state(item), "outcome": "failed", **failure_fields("graph", e)}
    return state, time.perf_counter() - t0


# ---------------------------------------------------------------- worker processes (offline backend)
# The offline agents are CPU-bound Python/numpy/PIL: in one process they hold the GIL and one core.
# With `workers > 1` each worker process builds its own agents and graph and runs whole items; the
# main process keeps the only writer role (records, shards), so durability is unchanged. Each worker
# has its own duplicate registry seeded with the run's keys; the main process arbitrates: a sample
# whose new key another worker registered first is rejected as `duplicate_key`.

_WORKER: dict = {}


def _exit_with_parent() -> None:
    """Make a worker die with the main process, even when that one is killed with SIGKILL."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG (Linux)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # elsewhere: poll for re-parenting
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="mifg-parent-watch").start()


def _worker_init(
    factory, options: dict, image_dir: Path, pool: PhotoPool, seed: int, max_revisions: int, keys, feed: str
) -> None:
    # Signals: a forked worker inherits the main loop's handlers (which write to the main loop's wakeup
    # fd): reset them. Ctrl-C reaches the whole process group, but the main process decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _exit_with_parent()
    registry = RunRegistry(keys)
    _WORKER.update(
        agents=(agents := factory(options)),
        graph=build_graph(agents, max_revisions),
        ctx=AgentContext(image_dir=image_dir, pool=pool, registry=registry, seed=seed, options=dict(options)),
        registry=registry,
        feed=FeedReader(feed, registry),
        loop=asyncio.new_event_loop(),
        max_revisions=max_revisions,
    )


def _worker_run(idx: int, seed: int) -> tuple[GenState, float, list[str]]:
    w = _WORKER
    w["feed"].catch_up()  # what the other workers accepted meanwhile counts towards the caps
    state, seconds = w["loop"].run_until_complete(run_item(w["graph"], w["ctx"], idx, seed, w["max_revisions"]))
    return state, seconds, w["registry"].take(idx)


def _worker_ping() -> int:
    return os.getpid()


class _Run:
    """One invocation of a generation run (state kept on the instance; see module docstring)."""

    def __init__(
        self, cfg: RunConfig, agents: AgentSet, hooks: RunHooks | None, progress: bool, factory: Callable | None
    ) -> None:
        self.cfg = cfg
        self.agents = agents
        self.factory = factory
        self.executor: ProcessPoolExecutor | None = None
        self.key_feed: KeyFeed | None = None  # keys fed to the worker processes (one feed for restarted ones too)
        self.hooks = hooks or RunHooks()
        self.show_progress = progress
        self.summary = RunSummary(out=cfg.out, tag=cfg.tag)
        self.stop_reason: str | None = None
        self.interrupts = 0
        self.acc_buf: list[tuple[ItemRecord, Sample]] = []
        self.rej_buf: list[tuple[ItemRecord, Sample]] = []
        self.last_flush = time.monotonic()
        self.consecutive_failed = 0
        self.in_flight: dict[int, asyncio.Task] = {}

    # ------------------------------------------------------------------ set-up

    def open(self) -> None:
        cfg = self.cfg
        check_or_write_run_json(cfg)
        self._lock()
        self.store = ItemStore(cfg.state_path)
        self.acc_writer = ShardWriter(cfg.out, cfg.tag)
        self.rej_writer = ShardWriter(cfg.rejected_dir, cfg.tag)
        for line in self.acc_writer.dropped + self.rej_writer.dropped:  # damaged shards: their items run again
            print(f"mifg generate: warning: {line}", file=sys.stderr, flush=True)
        # Built (and `datasets` imported, seconds) now: on the first flush it would stall the event loop.
        sample_arrow_schema()
        self._reconcile()
        if cfg.retry_failed:
            self.store.delete(i for i, (outcome, _) in self.store.done().items() if outcome == "failed")

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

    def _reconcile(self) -> None:
        cfg = self.cfg
        self.readers = {
            "accepted": StoreReader(cfg.out, "mifg generate", tags=[cfg.tag]),
            "rejected": StoreReader(cfg.rejected_dir, "mifg generate", tags=[cfg.tag]),
        }
        acc = _ids_in(self.readers["accepted"])
        rej = _ids_in(self.readers["rejected"])
        done = self.store.done()
        lost = [
            idx
            for idx, (outcome, sid) in done.items()
            if sid and ((outcome == "accepted" and sid not in acc) or (outcome == "rejected" and sid not in rej))
        ]
        if lost:
            self.store.delete(lost)
            print(f"resume: {len(lost)} recorded samples never reached a shard; they run again", file=sys.stderr)
        recorded = {sid for _, sid in done.values() if sid}
        orphans = [(sid, where, "accepted") for sid, where in acc.items() if sid not in recorded]
        orphans += [(sid, where, "rejected") for sid, where in rej.items() if sid not in recorded]
        if orphans:
            self._adopt(orphans, done)
        self.acc_ids = set(acc)
        self.rej_ids = set(rej)

    def _adopt(self, orphans: list[tuple[str, tuple[str, int], str]], done: dict) -> None:
        """Record samples that reached a shard without a record (their seed names their item)."""
        cfg = self.cfg
        horizon = max([cfg.n, *[i + 1 for i in done]])
        by_seed = {item_seed(cfg.seed, i): i for i in range(cfg.shard_index, horizon, cfg.shard_count)}
        wanted = {sid: outcome for sid, _, outcome in orphans}
        records = []
        for sid, (file, seed), outcome in orphans:
            idx = by_seed.get(seed)
            if idx is None:
                continue
            reader = self.readers[outcome]
            for shard in (s for s in reader.shards() if s.info.file == file):
                for item in reader.shard_samples(shard):
                    if item.sample.id == sid and wanted.get(sid) == outcome:
                        records.append(record_from_sample(idx, item.sample, outcome))
        self.store.commit(records)
        print(f"resume: adopted {len(records)} samples found in shards without a record", file=sys.stderr)

    def _make_pool(self) -> tuple[PhotoPool, PoolReport]:
        """Validate, cache and de-duplicate the source photos (runs in a thread: no SQLite here)."""

        def on_skip(s: SkippedInput) -> None:
            print(s.line(), file=sys.stderr, flush=True)

        return build_pool(
            sources_for(self.cfg),
            self.cfg.image_dir,
            self.cfg.validation,
            dup_radius=self.cfg.dup_radius,
            related_radius=self.cfg.related_radius,
            on_skip=on_skip,
        )

    async def build_pool(self) -> PhotoPool:
        """The run's PhotoPool; skipped inputs recorded for `mifg stats`."""
        # in a thread, so that Ctrl-C is answered while a big folder is validated
        with ThreadPoolExecutor(max_workers=1) as ex:
            pool, report = await asyncio.get_running_loop().run_in_executor(ex, self._make_pool)
        self.store.set_skipped(report.skipped)
        self.store.set_meta(
            pool_photos=report.kept, pool_considered=report.considered, related_pairs=report.related_pairs
        )
        self.summary.skipped_inputs = len(report.skipped)
        self.summary.pool_photos = report.kept
        if not pool.photos:
            raise InputError(
                f"no usable photos in {self.cfg.source} ({report.considered} considered, {len(report.skipped)} skipped)"
            )
        return pool

    def _start_workers(self, pool: PhotoPool) -> ProcessPoolExecutor:
        """Start the worker processes now, before any other thread exists (fork copies only this one)."""
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        cfg = self.cfg
        if self.key_feed is None:  # restarted workers read the whole feed again
            self.key_feed = KeyFeed()
        executor = ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(
                self.factory,
                dict(cfg.agent_options),
                cfg.image_dir,
                pool,
                cfg.seed,
                cfg.max_revisions,
                self.store.keys(),
                self.key_feed.path,
            ),
        )
        for f in [executor.submit(_worker_ping) for _ in range(cfg.workers)]:
            f.result()
        return executor

    # ------------------------------------------------------------------ per item

    async def _run_item(self, idx: int) -> tuple[GenState, float]:
        seed = item_seed(self.cfg.seed, idx)
        if self.executor is None:
            return await run_item(self.graph, self.ctx, idx, seed, self.cfg.max_revisions)
        loop = asyncio.get_running_loop()
        state, seconds, keys = await loop.run_in_executor(self.executor, _worker_run, idx, seed)
        # another worker registered the same sample first; or took the slot of a cap this sample claimed
        # (workers claim slots from their own view of the registry: this process moves the claim to a
        # free slot of the same cap, and when none is left the cap is full)
        keys, full = self._claim_slots(keys)
        if full or any(self.registry.seen(k) for k in keys if not k.startswith(COUNT_PREFIX)):
            if state.get("outcome") == "accepted":
                state = {**state, "outcome": "rejected", "reasons": ["cap_reached" if full else "duplicate_key"]}
        else:
            for k in keys:
                self.registry.add_for(idx, k)
            self.key_feed.publish(keys)
        return state, seconds

    def _claim_slots(self, keys: list[str]) -> tuple[list[str], bool]:
        """`keys` with every cap slot another sample took moved to a free one; True when a cap is full."""
        out, taken = [], set()
        for k in keys:
            slots = count_slots(k) if self.registry.seen(k) else None
            if slots is not None:
                free = [s for s in slots if not self.registry.seen(s) and s not in taken]
                if not free:
                    return keys, True
                k = free[0]
            out.append(k)
            taken.add(k)
        return out, False

    def _finish(self, state: GenState, seconds: float) -> None:
        """Turn a finished state into a record (+ sample), buffer or commit it, flush when due."""
        rec = record_from_state(state, seconds)
        sample: Sample | None = None
        if rec.outcome in ("accepted", "rejected") and state.get("images") and state.get("draft"):
            status = Status.CANDIDATE if rec.outcome == "accepted" else Status.REJECTED
            try:
                sample = assemble_sample(state, self.cfg, self.agents, status)
            except Exception as e:  # noqa: BLE001 - e.g. a draft the Sample model refuses
                fields = failure_fields("assemble", e)
                rec.outcome, rec.failure, rec.failed_stage = "failed", fields["failure"], fields["failed_stage"]
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
        self._count(rec)
        if (
            len(self.acc_buf) >= self.cfg.flush_every
            or len(self.rej_buf) >= self.cfg.flush_every
            or time.monotonic() - self.last_flush >= self.cfg.flush_seconds
        ):
            self.flush()

    def _count(self, rec: ItemRecord) -> None:
        s = self.summary
        if rec.outcome == "accepted":
            s.accepted += 1
            s.task_types[rec.task_type] += 1
            self.consecutive_failed = 0
        elif rec.outcome == "rejected":
            s.rejected += 1
            self.consecutive_failed = 0
        else:
            s.failed += 1
            s.failures[failure_code(rec.failure)] += 1
            self.consecutive_failed += 1
            if self.consecutive_failed >= self.cfg.max_consecutive_failures and self.stop_reason is None:
                self.stop_reason = f"{self.consecutive_failed} items in a row failed; last: {rec.failure}"
                self.summary.exit_code = 1

    def flush(self) -> None:
        """Record, then write, the buffered samples (see the module docstring for why in this order)."""
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
            writer.write([s for _, s in buf])
            self.summary.shards_written += 1
            buf.clear()
            if self.hooks.after_shard:
                self.hooks.after_shard(name)
        self.last_flush = time.monotonic()

    # ------------------------------------------------------------------ the loop

    def _on_signal(self, signum: int) -> None:
        self.interrupts += 1
        self.summary.exit_code = 130 if signum == signal.SIGINT else 143
        if self.interrupts == 1:
            self.stop_reason = "interrupted"
            print(
                f"\nmifg: stopping: finishing {len(self.in_flight)} samples in flight (interrupt again to drop them)",
                file=sys.stderr,
                flush=True,
            )
        elif self.in_flight:
            for task in self.in_flight.values():
                task.cancel()
        else:  # nothing in flight (still building the pool): give up at once
            raise KeyboardInterrupt

    async def _worker(self, todo: Iterator[int], advance: Callable[[], None]) -> None:
        while self.stop_reason is None:
            idx = next(todo, None)
            if idx is None:
                return
            task = asyncio.ensure_future(self._run_item(idx))
            self.in_flight[idx] = task
            try:
                state, seconds = await task
            except asyncio.CancelledError:
                self.registry.forget(idx)  # abandoned: its keys must not block the re-run
                if self.interrupts < 2:
                    raise
                return
            except BrokenProcessPool as e:  # a worker was killed (OOM?): stop; the item stays unrecorded
                if self.stop_reason is None:
                    self.stop_reason = f"a worker process died ({e}); run the same command again to resume"
                    self.summary.exit_code = 1
                return
            finally:
                self.in_flight.pop(idx, None)
            if _budget_spent(state):  # no new call could start: the item stays unrecorded, for the resume
                self.registry.forget(idx)
                if self.stop_reason is None:
                    self.stop_reason = state["failure"].split("BudgetSpent: ", 1)[-1].split(" [", 1)[0]
                    self.summary.exit_code = BudgetSpent.exit_code
                return
            self._finish(state, seconds)
            advance()

    async def run(self) -> RunSummary:
        t0 = time.perf_counter()
        with self._signals():
            return await self._run(t0)

    async def _run(self, t0: float) -> RunSummary:
        cfg = self.cfg
        crashed = False
        try:
            self.open()
            pool = await self.build_pool()
            done = self.store.done()
            self.registry = RunRegistry(self.store.keys())
            self.ctx = AgentContext(
                image_dir=cfg.image_dir,
                pool=pool,
                registry=self.registry,
                seed=cfg.seed,
                options=dict(cfg.agent_options),
            )
            self.graph = build_graph(self.agents, cfg.max_revisions)
            if cfg.workers > 1 and self.factory is not None and self.stop_reason is None:
                self.executor = self._start_workers(pool)
            plan = range(cfg.shard_index, cfg.n, cfg.shard_count)
            self.summary.planned = len(plan)
            todo_list = [i for i in plan if i not in done]
            self.summary.resumed_done = len(plan) - len(todo_list)
            t_loop, cpu0 = time.perf_counter(), _cpu_time()
            try:
                await self._loop(iter(todo_list), len(plan))
            finally:
                if self.executor is not None:  # joined here so that the workers' CPU time is counted
                    self.executor.shutdown(wait=True, cancel_futures=True)
                self.summary.loop_seconds = time.perf_counter() - t_loop
                self.summary.cpu_seconds = _cpu_time() - cpu0
            self.flush()
        except BaseException as e:
            # An unexpected error (disk full, a bug): leave the buffers unwritten, exactly as a killed
            # process would; the next start reconciles and redoes those items.
            crashed = True
            if is_disk_full(e):
                raise DiskFullError(f"{disk_full_message(e, cfg.state_path)}; kept: {self._kept()}") from e
            raise
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=True, cancel_futures=True)
            if self.key_feed is not None:
                self.key_feed.close()
            if not crashed and hasattr(self, "store"):
                self.summary.total_accepted = sum(1 for o, _ in self.store.done().values() if o == "accepted")
                self.summary.seconds = time.perf_counter() - t0
                self.store.set_meta(last_summary=_summary_dict(self.summary))
            if hasattr(self, "store"):
                self.store.close()
            if getattr(self, "lock_file", None) is not None:
                self.lock_file.close()
        if self.stop_reason:
            self.summary.stopped_reason = self.stop_reason
        return self.summary

    def _kept(self) -> str:
        """What a stopped run leaves behind, for its one-line error."""
        shards = [s for w in ("acc_writer", "rej_writer") if hasattr(self, w) for s in getattr(self, w).shards]
        return (
            f"{len(shards)} shards ({sum(s.rows for s in shards)} samples) and the item records in {self.cfg.out};"
            " free space and run the same command again to resume"
        )

    async def _loop(self, todo: Iterator[int], total: int) -> None:
        with _Progress(total, self.summary, enabled=self.show_progress) as progress:
            workers = [asyncio.ensure_future(self._worker(todo, progress.advance)) for _ in range(self.cfg.concurrency)]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM -> stop taking items, finish (or, the second time, drop) those in flight, flush."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


def _budget_spent(state: GenState) -> bool:
    """Whether the item stopped because the run's token or cost budget is spent."""
    return failure_code(state.get("failure") or "").endswith(":BudgetSpent")


def _cpu_time() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Progress:
    """A rich progress bar on stderr (counts of accepted / rejected / failed and the rate)."""

    def __init__(self, total: int, summary: RunSummary, enabled: bool) -> None:
        self.summary = summary
        self.enabled = enabled
        self.total = total
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]generate[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.progress.start()
            s = self.summary
            self.task = self.progress.add_task(s.tag, total=self.total, completed=s.resumed_done, counts="", rate="")
            self.t0 = time.perf_counter()
        return self

    def advance(self) -> None:
        if not self.enabled:
            return
        s = self.summary
        rate = s.finished / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(
            self.task,
            advance=1,
            counts=f"acc {s.accepted} rej {s.rejected} fail {s.failed}",
            rate=f"{rate:.1f}/s",
        )

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()


def _summary_dict(s: RunSummary) -> dict:
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
    if s.exit_code in (130, 143, BudgetSpent.exit_code):
        lines.append("  run the same command again to resume")
    lines.append(f"  next: mifg stats {s.out}")
    return "\n".join(lines)


async def run_generation(
    cfg: RunConfig,
    agents: AgentSet,
    *,
    factory: Callable[[dict], AgentSet] | None = None,
    hooks: RunHooks | None = None,
    progress: bool = True,
) -> RunSummary:
    """Run (or resume) a generation run and return its summary.

    `factory(cfg.agent_options)` rebuilds `agents` in worker processes when `cfg.workers > 1` (a
    module-level function, so it pickles); without it every item runs in this process's event loop.
    """
    try:
        return await _Run(cfg, agents, hooks, progress, factory).run()
    finally:
        if agents.backend == "openai":
            from agents.llm import aclose_agents

            await aclose_agents(agents)


def generate(
    cfg: RunConfig,
    agents: AgentSet,
    *,
    factory: Callable[[dict], AgentSet] | None = None,
    hooks: RunHooks | None = None,
    progress: bool = True,
) -> RunSummary:
    """Synchronous wrapper of `run_generation`."""
    return asyncio.run(run_generation(cfg, agents, factory=factory, hooks=hooks, progress=progress))
