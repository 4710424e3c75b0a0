"""What runs inside one worker process of `LocalExecutor`: its own agents, graph and registry.

Each worker builds its agents from the factory (a module-level function, so it pickles), keeps them
in `_WORKER` for all the items it runs, and sends back each item's state with the duplicate keys it
registered; the main process alone writes records and shards (see `pipeline.executors.local`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agents.base import AgentContext, AgentSet, PhotoPool
from pipeline.duplicate_registry import FeedReader, RunRegistry
from pipeline.graph import GenState, build_graph
from pipeline.run.item import run_item

_WORKER: dict = {}  # this process's agents, graph, registry, key feed and event loop (set by init_worker)


def exit_with_parent() -> None:
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


# what a user sets to choose native thread counts themselves (then the workers keep them)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_native_thread() -> Any:
    """Keep this process's native thread pools (BLAS, OpenMP) at one thread each, unless THREAD_ENV is set.

    The workers are forked after numpy and scipy started their BLAS pools, each as large as the machine:
    N workers ran N x cores threads, and a 60-item run on 2 cores took 1.2x as long as with one each.
    Returns the limiter (None when the user chose), which must stay referenced.
    """
    if any(os.environ.get(k) for k in THREAD_ENV):
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def init_worker(
    factory: Callable[[dict], AgentSet],
    options: dict,
    image_dir: Path,
    pool: PhotoPool,
    seed: int,
    max_revisions: int,
    keys: Iterable[str],
    feed: str,
) -> None:
    """Set up this worker process: signals, agents, graph, and a registry seeded with the run's `keys`."""
    # Signals: a forked worker inherits the main loop's handlers (which write to the main loop's wakeup
    # fd): reset them. Ctrl-C reaches the whole process group, but the main process decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    exit_with_parent()
    registry = RunRegistry(keys)
    agents = factory(options)  # first: under "spawn" this is what loads numpy and its BLAS
    _WORKER.update(
        threads=one_native_thread(),
        agents=agents,
        graph=build_graph(agents, max_revisions),
        ctx=AgentContext(image_dir=image_dir, pool=pool, registry=registry, seed=seed, options=dict(options)),
        registry=registry,
        feed=FeedReader(feed, registry),
        loop=asyncio.new_event_loop(),
        max_revisions=max_revisions,
    )


def run_in_worker(idx: int, seed: int) -> tuple[GenState, float, list[str]]:
    """Run one item here: its finished state, seconds, and the duplicate keys it registered."""
    w = _WORKER
    w["feed"].catch_up()  # what the other workers accepted meanwhile counts towards the caps
    state, seconds = w["loop"].run_until_complete(run_item(w["graph"], w["ctx"], idx, seed, w["max_revisions"]))
    return state, seconds, w["registry"].take(idx)


def ping_worker() -> int:
    """A no-op task: the main process waits for one per worker, so that all are up before the loop."""
    return os.getpid()
