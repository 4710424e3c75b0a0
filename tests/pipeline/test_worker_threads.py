"""Generate workers run one native (BLAS / OpenMP) thread each: N forked workers ran N x cores threads."""

from __future__ import annotations

import multiprocessing
import os


def _threads_after(env: dict[str, str], out) -> None:
    """In a forked child: BLAS pools as a many-core machine starts them, then what a worker does."""
    os.environ.update(env)
    import numpy  # noqa: F401  (numpy and scipy each load a BLAS)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=2)
    from pipeline.executors.worker_process import one_native_thread

    keep = one_native_thread()  # noqa: F841  (the limit holds while referenced)
    out.put([pool["num_threads"] for pool in threadpool_info()])


def _run(env: dict[str, str]) -> list[int]:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_threads_after, args=(env, out))
    child.start()
    threads = out.get(timeout=60)
    child.join(60)
    return threads


def test_a_worker_keeps_one_native_thread_per_pool_unless_the_user_chose(monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    threads = _run({})
    assert threads and all(n == 1 for n in threads), threads
    assert all(n == 2 for n in _run({"OMP_NUM_THREADS": "2"})), "a user's OMP_NUM_THREADS is kept"
