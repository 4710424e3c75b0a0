"""The review app killed with SIGKILL mid-work and restarted: nothing acknowledged is lost, queues resume.

    .venv/bin/python bench/bench_review_crash.py                       # 8 annotators x 250, 5 kills
    .venv/bin/python bench/bench_review_crash.py --decisions 40 --kills 2

The app is a child process holding one `ReviewStore` + `ReviewService` on RUN_DIR (as `mifg review`
does) with 8 annotator threads deciding through the service (accept / reject with a reason / edit).
Each annotator appends to its own log, with one `write` each, "show SID" when a sample is on its
screen and "ack SID KIND" when the service answered that the decision was saved. The parent kills the
child with SIGKILL at random moments (uniform over the acknowledgements still to come), starts a new
child, and so on; the last child runs until every annotator has its decisions. Checked:

- every acknowledged decision is in the store exactly once, with its kind (lost must be 0);
- no (sample, annotator) pair stored twice, no sample over --overlap, nothing acknowledged twice;
- at most one stored-but-unacknowledged decision per annotator per kill (the one in flight);
- queues resume: after each restart an annotator is shown the sample it had on screen, unless its
  decision on that sample was committed just before the kill (then a new, undecided one).

Exit status 1 on any failure. Writes bench/results/bench_review_crash.json.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------- the app (child process)


def annotate(svc, name: str, target: int, log_path: Path, seed: int) -> None:
    """One annotator: decide until the store holds `target` decisions by `name`."""
    from annotation_ui.service import REJECT_REASONS

    rng = random.Random(seed)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        screen = svc.current(name)
        os.write(fd, f"show {screen.sample_id}\n".encode())
        while screen.sample_id is not None and svc.store.progress(name)["done"] < target:
            sid, roll = screen.sample_id, rng.random()
            if roll < 0.7:
                kind, nxt = "accept", svc.accept(name, sid)
            elif roll < 0.9:
                kind, nxt = "reject", svc.reject(name, sid, rng.choice(REJECT_REASONS[:-1]), "")
            else:
                kind = "edit"
                q = f"{screen.edit_question} (checked by {name})"
                nxt = svc.edit_accept(name, sid, q, screen.edit_options, screen.edit_answer, screen.edit_evidence)
            if nxt.saved == kind:
                os.write(fd, f"ack {sid} {kind}\n".encode())
            os.write(fd, f"show {nxt.sample_id}\n".encode())
            screen = nxt
        os.write(fd, b"done\n")
    finally:
        os.close(fd)


def child(run: Path, logs: Path, annotators: int, target: int, overlap: int, seed: int) -> int:
    """The app: one store and service, `annotators` threads."""
    from annotation_ui.review_store import ReviewStore
    from annotation_ui.service import ReviewService

    store = ReviewStore(run, overlap=overlap)
    store.import_shards()
    svc = ReviewService(store)
    threads = [
        threading.Thread(target=annotate, args=(svc, f"annotator{i}", target, logs / f"annotator{i}.log", seed + i))
        for i in range(annotators)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    return 0


# ---------------------------------------------------------------- the experiment (parent)


def read_log(path: Path) -> list[tuple[str, ...]]:
    """The lines of an annotator's log (a torn last line cannot happen: one write per line)."""
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line]


def acks(logs: Path, names: list[str]) -> int:
    """Acknowledged decisions so far, over all annotators."""
    return sum(1 for n in names for e in read_log(logs / f"{n}.log") if e[0] == "ack")


def start_child(run: Path, logs: Path, args: argparse.Namespace, seed: int) -> subprocess.Popen:
    """Start the app process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(run), str(logs)]
    cmd += ["--annotators", str(args.annotators), "--decisions", str(args.decisions), "--overlap", str(args.overlap)]
    cmd += ["--seed", str(seed)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def run_crash(tmp: Path, annotators: int = 8, decisions: int = 250, kills: int = 5, overlap: int = 2, seed: int = 0):
    """The whole experiment; returns figures with `ok` and `problems`."""
    from annotation_ui.review_store import ReviewStore
    from bench.bench_review_load import make_run

    args = argparse.Namespace(annotators=annotators, decisions=decisions, overlap=overlap)
    run, logs = tmp / "run", tmp / "logs"
    logs.mkdir(parents=True)
    total = annotators * decisions
    make_run(run, total // overlap + annotators * 4)
    names = [f"annotator{i}" for i in range(annotators)]
    rng = random.Random(seed)
    problems: list[str] = []
    kill_log = []
    t0 = time.perf_counter()
    committed_at_kill: set[tuple[str, str]] = set()
    for k in range(kills + 1):
        before = {n: len(read_log(logs / f"{n}.log")) for n in names}
        previous_commits = committed_at_kill
        proc = start_child(run, logs, args, seed=1000 * (k + 1))
        done_acks = acks(logs, names)
        if k < kills:
            at = rng.uniform(done_acks, done_acks + (total - done_acks) / 2)  # kill within the next half
            while proc.poll() is None and acks(logs, names) < at:
                time.sleep(0.01)
            if proc.poll() is not None:
                problems.append(f"app exited by itself before kill {k + 1}: {proc.stderr.read()[-1500:]}")
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kill_log.append({"kill": k + 1, "acks_at_kill": acks(logs, names)})
            with ReviewStore(run) as store:  # what the dead app had committed
                committed_at_kill = {(d.sample_id, d.annotator) for d in store.decisions()}
        else:
            _, err = proc.communicate(timeout=900)
            if proc.returncode != 0:
                problems.append(f"last app run failed (exit {proc.returncode}): {err[-1500:]}")
        if k > 0:  # did each queue resume after the previous kill?
            for n in names:
                entries = read_log(logs / f"{n}.log")
                old, new = entries[: before[n]], entries[before[n] :]
                shown_before = next((e[1] for e in reversed(old) if e[0] == "show"), None)
                shown_after = next((e[1] for e in new if e[0] == "show"), None)
                if shown_before in (None, "None") or shown_after is None:
                    continue
                committed = (shown_before, n) in previous_commits
                if not committed and shown_after != shown_before:
                    problems.append(f"restart {k}: {n} had {shown_before[:8]} on screen, was given {shown_after[:8]}")
                if committed and shown_after == shown_before:
                    problems.append(f"restart {k}: {n} was shown {shown_before[:8]} again after deciding it")
    wall = time.perf_counter() - t0

    with ReviewStore(run) as store:
        stored = store.decisions()
    stored_kind = {(d.sample_id, d.annotator): d.decision for d in stored}
    pairs = Counter((d.sample_id, d.annotator) for d in stored)
    acked = [(e[1], n, e[2]) for n in names for e in read_log(logs / f"{n}.log") if e[0] == "ack"]
    lost = [(s, n, kind) for s, n, kind in acked if stored_kind.get((s, n)) != kind]
    dup_rows = sum(c - 1 for c in pairs.values() if c > 1)
    dup_acks = sum(c - 1 for c in Counter((s, n) for s, n, _ in acked).values() if c > 1)
    over = sum(c > overlap for c in Counter(d.sample_id for d in stored).values())
    unacked = len(stored) - len({(s, n) for s, n, _ in acked})
    if lost:
        problems.append(f"{len(lost)} acknowledged decisions lost, e.g. {lost[:3]}")
    if dup_rows or dup_acks or over:
        problems.append(f"duplicates: {dup_rows} stored twice, {dup_acks} acknowledged twice, {over} over overlap")
    if unacked > annotators * kills:
        problems.append(f"{unacked} stored but unacknowledged (more than one in flight per annotator per kill)")
    short = [n for n in names if sum(1 for d in stored if d.annotator == n) < decisions]
    if short:
        problems.append(f"annotators without all their decisions: {short}")
    return {
        "annotators": annotators,
        "decisions_per_annotator": decisions,
        "overlap": overlap,
        "kills": len(kill_log),
        "kill_points": kill_log,
        "acknowledged": len(acked),
        "stored": len(stored),
        "lost": len(lost),
        "duplicated": dup_rows + dup_acks,
        "over_overlap": over,
        "stored_not_acknowledged": unacked,
        "seconds": round(wall, 1),
        "problems": problems,
        "ok": not problems,
    }


def main(argv: list[str] | None = None) -> int:
    """Parent: run the experiment; child (--child): be the app."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=2, metavar=("RUN", "LOGS"), help=argparse.SUPPRESS)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--decisions", type=int, default=250, help="decisions per annotator")
    ap.add_argument("--overlap", type=int, default=2)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]), args.annotators, args.decisions, args.overlap, args.seed)

    from bench.endpoint_harness import machine, write_json

    with tempfile.TemporaryDirectory(prefix="mifg-bench-review-crash-") as tmp:
        r = run_crash(Path(tmp), args.annotators, args.decisions, args.kills, args.overlap, args.seed)
    r["machine"] = machine()
    for key in (
        "kills", "acknowledged", "stored", "lost", "duplicated", "over_overlap", "stored_not_acknowledged", "seconds",
    ):  # fmt: skip
        print(f"  {key:<26} {r[key]}")
    print(f"  kill points (acknowledged decisions): {[k['acks_at_kill'] for k in r['kill_points']]}")
    for p in r["problems"]:
        print(f"  PROBLEM: {p}")
    print(f"wrote {write_json('bench_review_crash', r)}")
    print("RESULT:", "OK" if r["ok"] else "FAIL")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
