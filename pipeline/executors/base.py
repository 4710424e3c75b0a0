"""`Executor`: *how* a `Run`'s items are executed, the same for every executor but where they run.

`execute(run)` opens the run, runs its unfinished items on this process's event loop with at most
`cfg.concurrency` in flight, flushes and closes it; SIGINT/SIGTERM stop it gracefully. A subclass
says only where one item runs (`run_one`) and what it starts and stops around the loop (`start`,
`shutdown`, `close`), as datatrove's executors add only how ranks are launched. Everything durable
(records, shards, caps, when to stop) stays with the `Run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from agents.base import PhotoPool
from pipeline.graph import GenState
from pipeline.run.progress import ProgressBar
from pipeline.run.run import Run
from pipeline.run.summary import RunSummary
from pipeline.write_guard import is_disk_full


class Executor(ABC):
    """Runs the unfinished items of one `Run`; subclasses decide where each item runs."""

    # errors of `run_one` that mean a worker is gone: the run stops, the item stays unrecorded
    worker_lost: tuple[type[BaseException], ...] = ()

    def __init__(self, *, progress: bool = True) -> None:
        self.show_progress = progress
        self.in_flight: dict[int, asyncio.Task] = {}
        self.interrupts = 0

    @abstractmethod
    async def run_one(self, run: Run, idx: int) -> tuple[GenState, float]:
        """Run item `idx` somewhere: its finished state and seconds (keys made elsewhere: `run.admit`)."""

    def start(self, run: Run, pool: PhotoPool) -> None:  # noqa: B027 - optional hook
        """Start what runs the items, once the run is open (nothing by default: items run in `run_one`)."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Stop and join what `start` started; called after the loop and again on the way out."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release, once on the way out, what outlives `shutdown`."""

    async def execute(self, run: Run) -> RunSummary:
        """Run (or resume) `run` and return its summary."""
        t0 = time.perf_counter()
        with self._signals(run):
            return await self._execute(run, t0)

    async def _execute(self, run: Run, t0: float) -> RunSummary:
        crashed = False
        try:
            pool = await run.open()
            if run.stop_reason is None:  # interrupted while the pool was built: start nothing
                self.start(run, pool)
            todo = run.todo()
            t_loop, cpu0 = time.perf_counter(), _cpu_time()
            try:
                await self._loop(run, iter(todo))
            finally:
                self.shutdown()  # joined here so that the workers' CPU time is counted
                run.summary.loop_seconds = time.perf_counter() - t_loop
                run.summary.cpu_seconds = _cpu_time() - cpu0
            run.flush()
        except BaseException as e:
            # An unexpected error (disk full, a bug): leave the buffers unwritten, exactly as a killed
            # process would; the next start reconciles and redoes those items.
            crashed = True
            if is_disk_full(e):
                raise run.disk_full_error(e) from e
            raise
        finally:
            self.shutdown()
            self.close()
            run.close(crashed, t0)
        return run.summary

    async def _loop(self, run: Run, todo: Iterator[int]) -> None:
        """`cfg.concurrency` lanes, each taking the next item once its last one is finished."""
        with ProgressBar(run.summary.planned, run.summary, enabled=self.show_progress) as progress:
            lanes = [asyncio.ensure_future(self._lane(run, todo, progress.advance)) for _ in range(run.cfg.concurrency)]
            try:
                await asyncio.gather(*lanes)
            except BaseException:
                for lane in lanes:
                    lane.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                raise

    async def _lane(self, run: Run, todo: Iterator[int], advance: Callable[[], None]) -> None:
        while run.stop_reason is None:
            idx = next(todo, None)
            if idx is None:
                return
            task = asyncio.ensure_future(self.run_one(run, idx))
            self.in_flight[idx] = task  # a task of its own, so that a second interrupt can cancel it
            try:
                state, seconds = await task
            except asyncio.CancelledError:
                run.abandon(idx)
                if self.interrupts < 2:
                    raise
                return
            except self.worker_lost as e:
                run.stop(f"a worker process died ({e}); run the same command again to resume", 1)
                return
            finally:
                self.in_flight.pop(idx, None)
            if not run.finish(idx, state, seconds):
                return
            advance()

    def _on_signal(self, run: Run, signum: int) -> None:
        self.interrupts += 1
        run.interrupt(130 if signum == signal.SIGINT else 143)
        if self.interrupts == 1:
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

    @contextlib.contextmanager
    def _signals(self, run: Run) -> Iterator[None]:
        """SIGINT/SIGTERM -> stop taking items, finish (or, the second time, drop) those in flight, flush."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self._on_signal, run, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


def _cpu_time() -> float:
    """CPU time of this process and of its joined children (the worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
