"""Load test of the review store through the app's own API (the functions every Gradio handler calls).

N simulated annotators (threads) each make D decisions (accept / reject with a reason / edit and
accept) on a fresh run with --overlap 2; halfway through, the app is restarted (the store is closed
and a new store + service opened on the same file, as a restarted `mifg review` would). Reports:

- lost decisions: acknowledged to an annotator but not in the store afterwards (must be 0);
- duplicated decisions: a (sample, annotator) pair stored twice, a sample reviewed by more than
  --overlap annotators, or one annotator acknowledged twice for a sample (must be 0);
- resumed queues: after the restart every annotator gets back the sample they held;
- time to next sample (decision committed + next sample claimed, loaded and rendered): p50/p95/p99.

    .venv/bin/python bench/bench_review_load.py                # 8 x 250, the issue's figure
    .venv/bin/python bench/bench_review_load.py --annotators 4 --decisions 50   # quick

Exit status is 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_ui.review_store import ReviewStore
from annotation_ui.service import REJECT_REASONS, ReviewService, Screen
from pipeline.shard_store import ShardWriter
from schemas import TaskType
from tests.factories import make_sample


class App:
    """The running app: a service that can be restarted while annotators keep working."""

    def __init__(self, run: Path, overlap: int) -> None:
        self.run, self.overlap = run, overlap
        self.svc = ReviewService(self._open())
        self._cond = threading.Condition()
        self._paused = False
        self._active = 0

    def _open(self) -> ReviewStore:
        store = ReviewStore(self.run, overlap=self.overlap)
        store.import_shards()
        return store

    def call(self, fn_name: str, *args) -> Screen:
        """One request; waits while the app is down."""
        with self._cond:
            while self._paused:
                self._cond.wait()
            self._active += 1
            svc = self.svc
        try:
            return getattr(svc, fn_name)(*args)
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def restart(self) -> float:
        """Stop taking requests, let in-flight ones finish, close the store, open a new one; seconds down."""
        t0 = time.perf_counter()
        with self._cond:
            self._paused = True
            while self._active:
                self._cond.wait()
            self.svc.store.close()
            self.svc = ReviewService(self._open())
            self._paused = False
            self._cond.notify_all()
        return time.perf_counter() - t0


def make_run(root: Path, n: int) -> None:
    """A run dir with `n` small candidates in shards of 200."""
    tasks = list(TaskType)
    writer = ShardWriter(root, "main")
    for lo in range(0, n, 200):
        writer.write(
            make_sample(i, n_images=2 + i % 3, task_type=tasks[i % len(tasks)]) for i in range(lo, min(n, lo + 200))
        )


def annotator(app: App, name: str, n: int, seed: int, out: dict, halfway: threading.Event, resumed: threading.Event):
    """One simulated annotator: n decisions, each timed from the click to the next sample on screen."""
    rng = random.Random(seed)
    acked: list[tuple[str, str]] = []
    lat: list[float] = []
    screen = app.call("current", name)
    mismatches = 0
    checked_resume = False
    while len(acked) < n and screen.sample_id is not None:
        if halfway.is_set() and not checked_resume:
            resumed.wait()
            # a browser reconnecting after the restart reloads: the same sample must come back
            again = app.call("current", name)
            mismatches += again.sample_id != screen.sample_id
            screen, checked_resume = again, True
        sid, roll = screen.sample_id, rng.random()
        t0 = time.perf_counter()
        if roll < 0.7:
            kind, nxt = "accept", app.call("accept", name, sid)
        elif roll < 0.9:
            kind, nxt = "reject", app.call("reject", name, sid, rng.choice(REJECT_REASONS[:-1]), "")
        else:
            q = f"{screen.edit_question} (checked by {name})"
            kind = "edit"
            nxt = app.call("edit_accept", name, sid, q, screen.edit_options, screen.edit_answer, screen.edit_evidence)
        lat.append(time.perf_counter() - t0)
        if nxt.saved != kind:
            raise RuntimeError(f"{name}: {kind} on {sid} not saved: {nxt.message}")
        acked.append((sid, kind))
        screen = nxt
    out[name] = {"acked": acked, "latency": lat, "resume_mismatches": mismatches}


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--decisions", type=int, default=250, help="decisions per annotator")
    ap.add_argument("--overlap", type=int, default=2)
    ap.add_argument("--no-restart", action="store_true", help="skip the restart halfway")
    args = ap.parse_args(argv)

    total = args.annotators * args.decisions
    n_samples = total // args.overlap + args.annotators * 2
    with tempfile.TemporaryDirectory(prefix="mifg-review-load-") as tmp:
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        make_run(run, n_samples)
        print(f"run: {n_samples} candidates in {time.perf_counter() - t0:.1f}s; overlap {args.overlap}", flush=True)
        app = App(run, args.overlap)
        out: dict = {}
        halfway, resumed = threading.Event(), threading.Event()
        names = [f"annotator{i}" for i in range(args.annotators)]
        threads = [
            threading.Thread(target=annotator, args=(app, name, args.decisions, i, out, halfway, resumed))
            for i, name in enumerate(names)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        down = 0.0
        if not args.no_restart:
            while len(app.svc.store.decisions()) < total // 2 and any(t.is_alive() for t in threads):
                time.sleep(0.05)
            halfway.set()
            down = app.restart()
            resumed.set()
            print(f"restarted the app after {len(app.svc.store.decisions())} decisions (down {down * 1000:.0f} ms)")
        else:
            halfway.set()
            resumed.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if len(out) != len(names):
            print("an annotator thread failed", file=sys.stderr)
            return 1

        store = app.svc.store
        stored = store.decisions()
        stored_pairs = Counter((d.sample_id, d.annotator) for d in stored)
        stored_kind = {(d.sample_id, d.annotator): d.decision for d in stored}
        acked = [(sid, name, kind) for name in names for sid, kind in out[name]["acked"]]
        lost = sum(stored_kind.get((sid, name)) != kind for sid, name, kind in acked)
        dup_rows = sum(c - 1 for c in stored_pairs.values() if c > 1)
        dup_acks = sum(c - 1 for c in Counter((sid, name) for sid, name, _ in acked).values() if c > 1)
        over = sum(c > args.overlap for c in Counter(d.sample_id for d in stored).values())
        unacked = len(stored) - len({(sid, name) for sid, name, _ in acked})
        mism = sum(out[n]["resume_mismatches"] for n in names)
        lat = sorted(x for n in names for x in out[n]["latency"])
        q = statistics.quantiles(lat, n=100, method="inclusive")
        store.close()

    print(
        f"decisions: {len(acked)} acknowledged, {len(stored)} stored; lost {lost}, duplicated "
        f"{dup_rows + dup_acks}, samples over overlap {over}, stored but not acknowledged {unacked}"
    )
    print(f"queues resumed after restart: {len(names) - mism}/{len(names)} annotators got their sample back")
    print(
        f"time to next sample (decision committed + next sample rendered), ms: p50 {q[49] * 1000:.1f}  "
        f"p95 {q[94] * 1000:.1f}  p99 {q[98] * 1000:.1f}  max {lat[-1] * 1000:.1f}   (target p95 <= 200)"
    )
    print(f"throughput: {len(acked) / wall:.0f} decisions/s over {wall:.1f}s with {args.annotators} annotators")
    bad = lost or dup_rows or dup_acks or over or unacked or mism
    print("RESULT:", "FAIL" if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
