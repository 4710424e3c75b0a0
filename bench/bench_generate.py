"""Offline generation throughput (samples/s) and near-duplicate index scale; writes a JSON of figures.

    .venv/bin/python bench/bench_generate.py -n 300                 # default: workers = CPU cores
    .venv/bin/python bench/bench_generate.py -n 1000 --workers 1     # one process, for the ratio

Figures: items/s and accepted samples/s over the item loop (set-up excluded and reported apart),
CPU seconds per item (this process + workers), the projection for 10k candidates, the load
average (other jobs on a shared machine slow the wall-clock figures; CPU per item is not affected),
and the hash index: 100k 64-bit hashes indexed and every near-duplicate pair found.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_generate(n: int, workers: int, concurrency: int, keep: Path | None) -> dict:
    """Run the offline backend on the bundled photos and measure it."""
    from agents.offline import build_offline_agents
    from pipeline.run_config import RunConfig
    from pipeline.runner import generate
    from pipeline.stats import collect_stats

    tmp = None if keep else Path(tempfile.mkdtemp(prefix="mifg-bench-"))
    out = keep or tmp / "run"
    cfg = RunConfig(out=out, n=n, workers=workers, concurrency=concurrency)
    load0 = os.getloadavg()[0]
    s = generate(cfg, build_offline_agents({}), factory=build_offline_agents, progress=False)
    load1 = os.getloadavg()[0]
    st = collect_stats(out)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)  # ~0.7 MB per item: do not leave it behind
    cpu_per_item = s.cpu_seconds / max(s.finished, 1)
    rate = s.finished / s.loop_seconds
    cores = min(workers, 2)
    return {
        "n": n,
        "workers": workers,
        "concurrency": concurrency,
        "items": s.finished,
        "accepted": s.accepted,
        "task_types": len(s.task_types),
        "setup_seconds": round(s.seconds - s.loop_seconds, 2),
        "loop_seconds": round(s.loop_seconds, 2),
        "items_per_s": round(rate, 2),
        "accepted_per_s": round(s.accepted / s.loop_seconds, 2),
        "cpu_seconds_per_item": round(cpu_per_item, 4),
        "est_cores": cores,  # min(workers, 2): the estimates below assume that many otherwise idle cores
        "items_per_s_on_free_cores_est": round(cores / cpu_per_item, 2),
        "minutes_for_10k_measured": round(10_000 / rate / 60, 1),
        "minutes_for_10k_on_free_cores_est": round(10_000 * cpu_per_item / cores / 60, 1),
        "acceptance_rate": st["acceptance_rate"],
        "loadavg_start_end": [round(load0, 2), round(load1, 2)],
        "cpu_cores": os.cpu_count(),
        "run_dir": str(out) if keep else "(temporary, deleted)",
    }


def bench_hash_index(n: int = 100_000, radius: int = 8) -> dict:
    """Index `n` random hashes plus planted near-duplicates; time the all-pairs near-duplicate query."""
    from pipeline.hash_index import HashIndex

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=n, dtype=np.uint64
    )
    planted = hashes[: n // 100].copy()
    for bit in rng.integers(0, 64, size=(len(planted), 3)).T:  # <= 3 bit flips each
        planted ^= np.left_shift(np.uint64(1), bit.astype(np.uint64))
    all_hashes = np.concatenate([hashes, planted])
    t0 = time.perf_counter()
    idx = HashIndex(radius)
    idx.add_many(int(h) for h in all_hashes)
    t1 = time.perf_counter()
    pairs = idx.all_pairs()
    t2 = time.perf_counter()
    return {
        "hashes": len(all_hashes),
        "radius": radius,
        "index_seconds": round(t1 - t0, 2),
        "all_pairs_seconds": round(t2 - t1, 2),
        "pairs_found": len(pairs),
        "planted_near_duplicates": len(planted),
    }


def main() -> None:
    """Run the benchmarks and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--keep", type=Path, default=None, help="Run directory to keep (default: a temp dir)")
    ap.add_argument("--json-out", type=Path, default=Path("bench/results/bench_generate.json"))
    ap.add_argument("--skip-hash", action="store_true")
    args = ap.parse_args()
    figures = {"generate": bench_generate(args.n, args.workers, args.concurrency, args.keep)}
    if not args.skip_hash:
        figures["hash_index"] = bench_hash_index()
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
    g = figures["generate"]
    print(
        f"offline generate: {g['items']} items ({g['accepted']} accepted, {g['task_types']} task types) in"
        f" {g['loop_seconds']} s = {g['items_per_s']} items/s, {g['accepted_per_s']} accepted/s"
        f" with {g['workers']} workers (set-up {g['setup_seconds']} s, load average {g['loadavg_start_end']})"
    )
    print(
        f"  CPU {g['cpu_seconds_per_item']} s/item -> ~{g['items_per_s_on_free_cores_est']} items/s on"
        f" {g['est_cores']} idle core(s); 10k candidates: {g['minutes_for_10k_measured']} min as measured,"
        f" ~{g['minutes_for_10k_on_free_cores_est']} min on {g['est_cores']} idle core(s)"
    )
    if "hash_index" in figures:
        h = figures["hash_index"]
        print(
            f"hash index: {h['hashes']} hashes indexed in {h['index_seconds']} s, all near-duplicate pairs"
            f" (radius {h['radius']}) in {h['all_pairs_seconds']} s ({h['pairs_found']} pairs)"
        )
    print(f"figures written to {args.json_out}")


if __name__ == "__main__":
    main()
