"""`LocalExecutor`: a run's items on this machine, in this process or in a pool of worker processes.

The offline agents are CPU-bound Python/numpy/PIL: in one process they hold the GIL and one core.
With `workers > 1` each worker process builds its own agents and graph and runs whole items
(`pipeline.executors.worker_process`); the main process keeps the only writer role (records,
shards), so durability is unchanged. Each worker has its own duplicate registry seeded with the
run's keys; the main process arbitrates (`Run.admit`): a sample whose new key another worker
registered first is rejected as `duplicate_key`, and the keys it admits are fed to every worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from agents.base import AgentSet, PhotoPool
from pipeline.duplicate_registry import KeyFeed
from pipeline.executors.base import Executor
from pipeline.executors.worker_process import init_worker, ping_worker, run_in_worker
from pipeline.graph import GenState
from pipeline.run.run import Run


class LocalExecutor(Executor):
    """This process's event loop; with `cfg.workers > 1` and a `factory`, also a pool of worker processes."""

    worker_lost = (BrokenProcessPool,)  # a worker was killed (OOM?)

    def __init__(self, factory: Callable[[dict], AgentSet] | None = None, *, progress: bool = True) -> None:
        super().__init__(progress=progress)
        self.factory = factory
        self.processes: ProcessPoolExecutor | None = None
        self.key_feed: KeyFeed | None = None  # keys the main process admitted, read by every worker

    def start(self, run: Run, pool: PhotoPool) -> None:
        """Start the worker processes now, before any other thread exists (fork copies only this one)."""
        cfg = run.cfg
        if cfg.workers <= 1 or self.factory is None:  # every item runs in this process's event loop
            return
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.key_feed = KeyFeed()
        processes = ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=ctx,
            initializer=init_worker,
            initargs=(
                self.factory,
                dict(cfg.agent_options),
                cfg.image_dir,
                pool,
                cfg.seed,
                cfg.max_revisions,
                run.committed_keys(),
                self.key_feed.path,
            ),
        )
        try:
            for f in [processes.submit(ping_worker) for _ in range(cfg.workers)]:
                f.result()
        except BaseException:  # a worker that cannot start: do not leave the others running
            processes.shutdown(wait=False, cancel_futures=True)
            raise
        self.processes = processes

    async def run_one(self, run: Run, idx: int) -> tuple[GenState, float]:
        """Run item `idx` in this process, or in a worker process and then arbitrated by `run.admit`."""
        if self.processes is None:
            return await run.run_in_process(idx)
        loop = asyncio.get_running_loop()
        state, seconds, keys = await loop.run_in_executor(self.processes, run_in_worker, idx, run.seed_of(idx))
        state, admitted = run.admit(idx, state, keys)
        if admitted is not None:
            self.key_feed.publish(admitted)
        return state, seconds

    def shutdown(self) -> None:
        """Join the worker processes (their CPU time then counts in this process's children time)."""
        if self.processes is not None:
            self.processes.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Close and remove the key feed."""
        if self.key_feed is not None:
            self.key_feed.close()
