"""Offline generation on Ray: throughput with 1 vs 2 Ray workers (CPUs of a local Ray instance); writes a JSON.

    .venv/bin/python bench/bench_ray.py                    # n=96 items as 4 shards, 8 island photos
    .venv/bin/python bench/bench_ray.py -n 64 --shards 8

Each configuration is `RayExecutor(shards, cpus=W).execute(cfg)`, what `mifg generate --executor ray
--shards S --ray-cpus W` runs: a fresh local Ray instance with W CPUs, so W shards run at once, each
one process with the offline agents. The same items without Ray (`LocalExecutor`, `--workers 1` and
`--workers 2`) are the baselines. Each configuration runs in a fresh process (`_child`): the offline
agents keep per-process caches that a later configuration would otherwise find warm.

Figures: items/s over the Ray phase (first shard submitted to last one ended) and with Ray's start
and the merge; the speed-up of 2 workers over 1 and its efficiency (speed-up / 2); per shard the
set-up (pool, record) and the item loop; CPU seconds per item in the shards; the load average
(other jobs on a shared box slow the wall-clock figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cfg(out: Path, photos: Path, n: int, workers: int = 1):
    from pipeline.run_config import RunConfig

    return RunConfig(out=out, n=n, seed=0, source=f"dir:{photos.resolve()}", workers=workers, concurrency=32)


def bench_local(photos: Path, n: int, workers: int, tmp: Path) -> dict:
    """The baselines: the same items on this machine without Ray, in 1 process or a pool of `workers`."""
    from agents.offline import build_offline_agents
    from pipeline.runner import generate

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    cfg = _cfg(tmp / f"local{workers}", photos, n, workers)
    s = generate(cfg, build_offline_agents({}), factory=build_offline_agents, progress=False)
    return {
        "workers": workers,
        "items": s.finished,
        "accepted": s.accepted,
        "loop_seconds": round(s.loop_seconds, 2),
        "items_per_s": round(s.finished / s.loop_seconds, 3),
        "seconds_in_all": round(time.perf_counter() - t0, 2),
        "cpu_seconds_per_item": round(s.cpu_seconds / max(s.finished, 1), 3),
        "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def bench_ray(photos: Path, n: int, shards: int, workers: int, tmp: Path) -> dict:
    """`shards` Ray tasks on a local Ray instance with `workers` CPUs."""
    from pipeline.executors.ray_executor import RayExecutor

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    job = RayExecutor(shards, cpus=workers, progress=False).execute(_cfg(tmp / f"ray{workers}", photos, n))
    wall = time.perf_counter() - t0
    items = sum(s.finished for s in job.results.values())
    per_shard = {
        tag: {"setup_s": round(s.seconds - s.loop_seconds, 2), "loop_s": round(s.loop_seconds, 2)}
        for tag, s in sorted(job.results.items())
    }
    cpu = sum(s.cpu_seconds for s in job.results.values())
    return {
        "workers": workers,
        "shards": shards,
        "items": items,
        "accepted": sum(s.accepted for s in job.results.values()),
        "ray_phase_seconds": round(job.seconds, 2),
        "items_per_s": round(items / job.seconds, 3),
        "seconds_in_all": round(wall, 2),  # with Ray's start, the actors and the merge
        "items_per_s_in_all": round(items / wall, 3),
        "shard_seconds": per_shard,
        "cpu_seconds_per_item": round(cpu / max(items, 1), 3),
        "merged_accepted": job.merge.accepted if job.merge else None,
        "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def _child(kind: str, workers: int, args: argparse.Namespace, photos: Path, tmp: Path) -> dict:
    """One configuration in a fresh process (object indices per photo and size are cached per process)."""
    cmd = [sys.executable, __file__, "--child", f"{kind}:{workers}", "-n", str(args.n), "--shards", str(args.shards)]
    cmd += ["--photo-dir", str(photos), "--tmp", str(tmp)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Run 1 and 2 workers (and the baselines without Ray), each in its own process, and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=96)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--json-out", type=Path, default=ROOT / "bench/results/bench_ray.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # local:W or ray:W, in a fresh process
    ap.add_argument("--photo-dir", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, workers = args.child.split(":")
        run = bench_local if kind == "local" else bench_ray
        extra = () if kind == "local" else (args.shards,)
        print(json.dumps(run(args.photo_dir, args.n, *extra, int(workers), args.tmp)))
        return
    from bench.endpoint_harness import make_photos

    tmp = Path(tempfile.mkdtemp(prefix="mifg-bench-ray-"))
    try:
        photos = make_photos(tmp / "photos", args.photos)
        local = [_child("local", w, args, photos, tmp) for w in (1, 2)]
        runs = [_child("ray", w, args, photos, tmp) for w in (1, 2)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    one, two = runs
    speedup = two["items_per_s"] / one["items_per_s"]
    figures = {
        "n": args.n,
        "photos": f"{args.photos} island photos 800x600 (bench.endpoint_harness.make_photos)",
        "backend": "offline",
        "cpu_cores": os.cpu_count(),
        "local": local,
        "ray": runs,
        "speedup_2_over_1": round(speedup, 3),
        "efficiency_2_workers": round(speedup / 2, 3),
        "local_speedup_2_over_1": round(local[1]["items_per_s"] / local[0]["items_per_s"], 3),
        "ray_vs_local_1_worker": round(one["items_per_s"] / local[0]["items_per_s"], 3),
        "ray_vs_local_2_workers": round(two["items_per_s"] / local[1]["items_per_s"], 3),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"offline, n={args.n}, {args.shards} shards, {os.cpu_count()} cores")
    for r in local:
        print(
            f"  local, {r['workers']} worker(s): {r['items_per_s']} items/s over the loop ({r['loop_seconds']} s);"
            f" CPU {r['cpu_seconds_per_item']} s/item; load {r['loadavg_start_end']}"
        )
    for r in runs:
        print(
            f"  ray, {r['workers']} worker(s): {r['items_per_s']} items/s over the Ray phase"
            f" ({r['ray_phase_seconds']} s),"
            f" {r['items_per_s_in_all']} items/s with Ray's start and the merge ({r['seconds_in_all']} s);"
            f" CPU {r['cpu_seconds_per_item']} s/item; load {r['loadavg_start_end']}"
        )
    print(
        f"  2 workers / 1 worker: ray {figures['speedup_2_over_1']}x (efficiency {figures['efficiency_2_workers']}),"
        f" local {figures['local_speedup_2_over_1']}x; ray / local: {figures['ray_vs_local_1_worker']} (1 worker),"
        f" {figures['ray_vs_local_2_workers']} (2 workers)"
    )
    print(f"figures written to {args.json_out}")


if __name__ == "__main__":
    main()
