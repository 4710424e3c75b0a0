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

Where that lives: *what* runs is `pipeline.run` (`Run`: plan, per-item outcome, caps, summary;
`RunRecord`: the record and shards; `reconcile`), *how* it runs is `pipeline.executors`
(`LocalExecutor`: this process's event loop or a pool of worker processes). This module is the
entry point, and keeps the names other code imports from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agents.base import AgentSet
from pipeline.executors.local import LocalExecutor
from pipeline.run.item import run_item
from pipeline.run.photos import sources_for
from pipeline.run.record import RunHooks
from pipeline.run.run import Run
from pipeline.run.samples import assemble_sample, record_from_sample, record_from_state
from pipeline.run.summary import RunSummary, format_summary
from pipeline.run_config import RunConfig

__all__ = [
    "RunHooks",
    "RunSummary",
    "assemble_sample",
    "format_summary",
    "generate",
    "record_from_sample",
    "record_from_state",
    "run_generation",
    "run_item",
    "sources_for",
]


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
        return await LocalExecutor(factory, progress=progress).execute(Run(cfg, agents, hooks))
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
