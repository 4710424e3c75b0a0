"""`mifg generate --backend openai` against a local endpoint with a fixed latency: throughput vs the physical limit.

    .venv/bin/python bench/bench_generate_endpoint.py                    # 200 ms, C = 16, 64, 256
    .venv/bin/python bench/bench_generate_endpoint.py --concurrency 64 --waves 6

For each concurrency C a fresh local model server (`python -m agents.llm.local_server --latency-ms
200`, its own process) answers every chat call after exactly the latency; the real CLI runs
`mifg generate --backend openai --concurrency C -n C*waves` in a subprocess on a folder of small
island photos (`endpoint_harness.make_photos`). Figures per C:

- items/s over the runner's item loop (its own `loop_seconds`; process start-up and the photo pool
  are reported apart), and over the whole command;
- calls per sample, counted by the server (chat requests / items);
- the limit the issue names, C / latency / calls-per-sample, and the achieved fraction of it;
  also the critical-path limit C / (latency x sequential rounds): the verifier's votes go out
  together, as do each probe's tries, so a sample is (1 + revisions) x 2 rounds (writer, votes)
  plus one per probe run (read from the samples' provenance), not one per call;
- CPU ms per agent call (runner CPU over the loop / calls) and per item, and the CPU ceiling of one
  event loop (1 / CPU per item): on a machine with few free cores, this is what binds first.

Writes bench/results/bench_generate_endpoint.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.endpoint_harness import MODEL, ServerProcess, machine, make_photos, mifg, write_json


def rounds_per_sample(out: Path, items: int) -> float:
    """Sequential rounds of latency per item: writer and votes per draft, one per probe run."""
    from pipeline.shard_store import read_samples

    samples = read_samples(out) + (read_samples(out / "rejected") if (out / "rejected" / "manifests").is_dir() else [])
    rounds = sum(2 * (1 + s.provenance.revisions) + len(s.provenance.critic.probes) for s in samples)
    return rounds / max(items, 1)


def run_one(photos: Path, tmp: Path, latency_ms: float, concurrency: int, waves: int) -> dict:
    """One concurrency level: fresh server, fresh run directory."""
    n = concurrency * waves
    out = tmp / f"run-c{concurrency}"
    shutil.rmtree(out, ignore_errors=True)
    with ServerProcess("--latency-ms", str(latency_ms)) as server:
        before, s_cpu0 = server.stats()["counters"], server.cpu_seconds()
        job = mifg(
            "generate", "--backend", "openai", "--base-url", server.base_url, "--model", MODEL,
            "--images", str(photos), "--out", str(out), "-n", str(n),
            "--concurrency", str(concurrency), "--no-progress",
        )  # fmt: skip
        after, s_cpu1 = server.stats()["counters"], server.cpu_seconds()
    if job.rc != 0:
        raise SystemExit(f"mifg generate failed (exit {job.rc}):\n{job.stderr[-3000:]}")
    s = job.summary
    items = s["accepted"] + s["rejected"] + s["failed"]
    calls = after.get("requests", 0) - before.get("requests", 0) - 1  # minus the endpoint check's GET /models
    roles = {k.split(":", 1)[1]: after[k] - before.get(k, 0) for k in after if k.startswith("role:")}
    calls_per_sample = calls / items
    rounds = rounds_per_sample(out, items)
    lat = latency_ms / 1000.0
    limit = concurrency / lat / calls_per_sample
    limit_critical = concurrency / (lat * rounds)
    rate = items / s["loop_seconds"]
    cpu_item = s["cpu_seconds"] / items
    return {
        "concurrency": concurrency,
        "items": items,
        "accepted": s["accepted"],
        "failed": s["failed"],
        "calls": calls,
        "calls_per_sample": round(calls_per_sample, 3),
        "calls_by_role": dict(sorted(roles.items())),
        "rounds_per_sample": round(rounds, 3),
        "loop_s": s["loop_seconds"],
        "command_wall_s": round(job.wall_s, 2),
        "items_per_s": round(rate, 2),
        "items_per_s_whole_command": round(items / job.wall_s, 2),
        "limit_items_per_s": round(limit, 2),
        "fraction_of_limit": round(rate / limit, 3),
        "limit_critical_path_items_per_s": round(limit_critical, 2),
        "fraction_of_critical_path_limit": round(rate / limit_critical, 3),
        "cpu_ms_per_call": round(1000 * s["cpu_seconds"] / calls, 3),
        "cpu_ms_per_item": round(1000 * cpu_item, 2),
        "one_loop_cpu_ceiling_items_per_s": round(1 / cpu_item, 1),
        "server_cpu_ms_per_call": round(1000 * (s_cpu1 - s_cpu0) / calls, 3) if s_cpu0 is not None else None,
        "loadavg_end": machine()["loadavg"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run every concurrency level, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--waves", type=int, default=8, help="items per concurrency slot (n = waves x C)")
    ap.add_argument("--photos", type=int, default=16)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mifg-bench-endpoint-") as tmp_s:
        tmp = Path(tmp_s)
        photos = make_photos(tmp / "photos", args.photos)
        for c in args.concurrency:
            r = run_one(photos, tmp, args.latency_ms, c, args.waves)
            rows.append(r)
            print(
                f"C={c:4d}: {r['items']} items, {r['calls_per_sample']} calls/sample, {r['items_per_s']:7.2f} items/s"
                f" of limit {r['limit_items_per_s']:7.2f} = {r['fraction_of_limit']:.3f}"
                f" (critical path {r['fraction_of_critical_path_limit']:.3f}); CPU {r['cpu_ms_per_call']:.2f} ms/call,"
                f" {r['cpu_ms_per_item']:.1f} ms/item -> one-loop ceiling {r['one_loop_cpu_ceiling_items_per_s']}"
                f" items/s; load {r['loadavg_end']}",
                flush=True,
            )
    print()
    print(f"{'C':>5} {'items/s':>9} {'limit':>8} {'ratio':>6} {'crit.ratio':>10} {'CPU ms/call':>12} {'ceiling':>8}")
    for r in rows:
        print(
            f"{r['concurrency']:>5} {r['items_per_s']:>9.2f} {r['limit_items_per_s']:>8.2f}"
            f" {r['fraction_of_limit']:>6.3f}"
            f" {r['fraction_of_critical_path_limit']:>10.3f} {r['cpu_ms_per_call']:>12.3f}"
            f" {r['one_loop_cpu_ceiling_items_per_s']:>8.1f}"
        )
    figures = {
        "bench": "generate_endpoint",
        "command": "mifg generate --backend openai --images DIR(16 island photos 800x600) -n C*waves --concurrency C",
        "latency_ms": args.latency_ms,
        "waves": args.waves,
        "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1),
        "results": rows,
    }
    print(f"wrote {write_json('bench_generate_endpoint', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
