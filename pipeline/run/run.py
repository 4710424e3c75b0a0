"""`Run`: one invocation of a generation run — what runs, whichever executor runs it.

An executor (`pipeline.executors`) opens the run, takes the unfinished item indices from
`todo()`, gets each one's `(state, seconds)` — in this process with `run_in_process`, or elsewhere and
then `admit`-ted — hands it to `finish`, and closes the run. The run decides everything that is
not *where*: the record and shards, caps and duplicates, when to stop, and the summary.
"""

from __future__ import annotations

import time

from agents.base import COUNT_PREFIX, AgentContext, AgentSet, PhotoPool, count_slots
from pipeline.graph import GenState, build_graph, failure_code, failure_fields
from pipeline.item_store import ItemRecord
from pipeline.run.item import budget_spent, run_item
from pipeline.run.photos import open_pool
from pipeline.run.record import RunHooks, RunRecord
from pipeline.run.samples import assemble_sample, record_from_state
from pipeline.run.summary import RunSummary, summary_dict
from pipeline.run_config import RunConfig, item_seed
from pipeline.write_guard import disk_full_message
from schemas import Sample, Status
from schemas.errors import BudgetSpent, DiskFullError


class Run:
    """One invocation of a generation run (see `pipeline.runner` for how it survives being killed)."""

    def __init__(self, cfg: RunConfig, agents: AgentSet, hooks: RunHooks | None = None) -> None:
        self.cfg = cfg
        self.agents = agents
        self.record = RunRecord(cfg, hooks or RunHooks())
        self.summary = RunSummary(out=cfg.remote or cfg.out, tag=cfg.tag, work_dir=cfg.out if cfg.remote else None)
        self.stop_reason: str | None = None  # set once: no new item starts; the first reason is reported
        self.consecutive_failed = 0

    # ------------------------------------------------------------------ set-up and close

    async def open(self) -> PhotoPool:
        """Open and reconcile the record, build the photo pool and this process's graph; return the pool."""
        cfg = self.cfg
        self.record.open()
        pool = await open_pool(cfg, self.record.store, self.summary)
        self.registry = self.record.registry
        self.ctx = AgentContext(
            image_dir=cfg.image_dir,
            pool=pool,
            registry=self.registry,
            seed=cfg.seed,
            options=dict(cfg.agent_options),
        )
        self.graph = build_graph(self.agents, cfg.max_revisions)
        return pool

    def todo(self) -> list[int]:
        """The item indices of this shard's plan not finished yet, in order (counts go to the summary)."""
        cfg = self.cfg
        done = self.record.store.done()
        plan = range(cfg.shard_index, cfg.n, cfg.shard_count)
        self.summary.planned = len(plan)
        todo = [i for i in plan if i not in done]
        self.summary.resumed_done = len(plan) - len(todo)
        return todo

    def committed_keys(self) -> list[str]:
        """The duplicate keys recorded so far: what a worker elsewhere starts its registry from."""
        return self.record.store.keys()

    def flush(self) -> None:
        """Record, then write, the buffered samples."""
        self.summary.shards_written += self.record.flush()

    def disk_full_error(self, error: BaseException) -> DiskFullError:
        """The one-line error for a full disk: the file, what was kept, how to resume."""
        return DiskFullError(f"{disk_full_message(error, self.cfg.state_path)}; kept: {self.record.kept()}")

    def close(self, crashed: bool, t0: float) -> None:
        """Keep the summary in the record (unless crashed: then as a killed process would) and close it."""
        s = self.summary
        if not crashed and self.record.store is not None:
            s.total_accepted = self.record.accepted_so_far()
            s.seconds = time.perf_counter() - t0
            self.record.store.set_meta(last_summary=summary_dict(s))
            self.record.sync()
        self.record.close()
        if self.stop_reason:
            s.stopped_reason = self.stop_reason

    # ------------------------------------------------------------------ stopping

    def stop(self, reason: str, exit_code: int) -> None:
        """Start no new item; the first reason (and its exit code) is the one reported."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.summary.exit_code = exit_code

    def interrupt(self, exit_code: int) -> None:
        """SIGINT/SIGTERM: stop whatever stopped the run before, and exit with the signal's code."""
        self.summary.exit_code = exit_code
        self.stop_reason = "interrupted"

    # ------------------------------------------------------------------ per item

    def seed_of(self, idx: int) -> int:
        """The seed of item `idx`: always the same, so a redone item makes the same sample."""
        return item_seed(self.cfg.seed, idx)

    async def run_in_process(self, idx: int) -> tuple[GenState, float]:
        """Run item `idx` in this process's event loop: its finished state and seconds."""
        return await run_item(self.graph, self.ctx, idx, self.seed_of(idx), self.cfg.max_revisions)

    def admit(self, idx: int, state: GenState, keys: list[str]) -> tuple[GenState, list[str] | None]:
        """Arbitrate the duplicate keys item `idx` registered elsewhere (a worker's own registry).

        Another worker may have registered the same sample first, or taken the slot of a cap this
        sample claimed: workers claim slots from their own view of the registry, so the claim moves
        to a free slot of the same cap, and when none is left the cap is full. Returns the state (an
        accepted one rejected if so) and the keys now registered here, to pass on to the other
        workers, or None when refused.
        """
        keys, full = self._claim_slots(keys)
        if full or any(self.registry.seen(k) for k in keys if not k.startswith(COUNT_PREFIX)):
            if state.get("outcome") == "accepted":
                state = {**state, "outcome": "rejected", "reasons": ["cap_reached" if full else "duplicate_key"]}
            return state, None
        for k in keys:
            self.registry.add_for(idx, k)
        return state, keys

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

    def abandon(self, idx: int) -> None:
        """Item `idx` was dropped unfinished (interrupted): its keys must not block the re-run."""
        self.registry.forget(idx)

    def finish(self, idx: int, state: GenState, seconds: float) -> bool:
        """Record item `idx`'s finished state (+ sample), flush when due; False if it stopped the run.

        An item that stopped on a spent token or cost budget stays unrecorded, for the resume.
        """
        if budget_spent(state):  # no new call could start
            self.abandon(idx)
            self.stop(state["failure"].split("BudgetSpent: ", 1)[-1].split(" [", 1)[0], BudgetSpent.exit_code)
            return False
        rec = record_from_state(state, seconds)
        sample: Sample | None = None
        if rec.outcome in ("accepted", "rejected") and state.get("images") and state.get("draft"):
            status = Status.CANDIDATE if rec.outcome == "accepted" else Status.REJECTED
            try:
                sample = assemble_sample(state, self.cfg, self.agents, status)
            except Exception as e:  # noqa: BLE001 - e.g. a draft the Sample model refuses
                fields = failure_fields("assemble", e)
                rec.outcome, rec.failure, rec.failed_stage = "failed", fields["failure"], fields["failed_stage"]
        self.record.add(rec, sample)
        self._count(rec)
        if self.record.flush_due():
            self.flush()
        return True

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
            if self.consecutive_failed >= self.cfg.max_consecutive_failures:
                self.stop(f"{self.consecutive_failed} items in a row failed; last: {rec.failure}", 1)
