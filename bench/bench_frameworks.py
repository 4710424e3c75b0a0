"""The same one-call-per-sample job through mifg's client, Bespoke curator and distilabel, on one endpoint.

    .venv/bin/python bench/bench_frameworks.py --setup          # first time: make the two venvs (uv, ~1 min)
    .venv/bin/python bench/bench_frameworks.py                  # C = 64 and 256, 20 calls per slot, 200 ms

curator pins older datasets / pydantic / openai than mifg (installing it into mifg's venv would
downgrade 16 packages), so each framework gets its own venv under $TMPDIR/mifg-bench-venvs; neither
pulls torch. One local model server (fixed latency) serves all three jobs in turn; each job is a
subprocess doing N one-message chat calls with C in flight (bench/frameworks/*_job.py). Reported:
calls/s, the fraction of the limit C / latency, CPU ms per call, and mifg's throughput over each
framework's. Writes bench/results/bench_frameworks.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.endpoint_harness import ROOT, ServerProcess, env, machine, write_json

VENVS = Path(tempfile.gettempdir()) / "mifg-bench-venvs"
PACKAGES = {"curator": ["bespokelabs-curator"], "distilabel": ["distilabel", "openai", "requests"]}


def setup() -> None:
    """Create one venv per framework with uv (package registry only)."""
    for name, pkgs in PACKAGES.items():
        venv = VENVS / name
        subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "-p", str(venv / "bin" / "python"), *pkgs], check=True)


def version(python: Path, dist: str) -> str:
    """Installed version of a distribution in a venv."""
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    p = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return p.stdout.strip() or "?"


def job(python: Path, script: str, n: int, c: int, url: str) -> dict:
    """Run one job script; its last stdout line is its JSON."""
    p = subprocess.run(
        [str(python), str(ROOT / "bench" / "frameworks" / script), str(n), str(c), url],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr or p.stdout)[-500:]}
    return json.loads(lines[-1])


def run_level(jobs: dict, url: str, c: int, n: int, latency_ms: float) -> dict:
    """The three jobs at one concurrency; prints its table."""
    limit = c / (latency_ms / 1000.0)
    rows = {}
    for name, (python, script, dist) in jobs.items():
        if not python.exists():
            rows[name] = {"error": f"not installed (run with --setup to create {python.parent.parent})"}
            continue
        r = job(python, script, n, c, url)
        if "error" not in r:
            r["version"] = version(python, dist) if name != "mifg" else "this repo"
            r["calls_per_s"] = round(r["n"] / r["wall_s"], 1)
            r["fraction_of_limit"] = round(r["calls_per_s"] / limit, 3)
            r["cpu_ms_per_call"] = round(1000 * r["cpu_s"] / r["n"], 3)
        rows[name] = r
    print(f"{n} one-message calls, {c} in flight, {latency_ms:g} ms latency: limit {limit:.0f} calls/s")
    print(f"{'tool':<11} {'version':<10} {'ok':>6} {'calls/s':>8} {'of limit':>9} {'CPU ms/call':>12}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<11} error: {r['error'][-200:]}")
            continue
        print(
            f"{name:<11} {r['version']:<10} {r['ok']:>6} {r['calls_per_s']:>8.1f} {r['fraction_of_limit']:>9.3f}"
            f" {r['cpu_ms_per_call']:>12.3f}"
        )
    ratios = {
        f"mifg_over_{k}": round(rows["mifg"]["calls_per_s"] / v["calls_per_s"], 2)
        for k, v in rows.items()
        if k != "mifg" and "calls_per_s" in v and "calls_per_s" in rows["mifg"]
    }
    for k, v in ratios.items():
        print(f"{k}: {v}x throughput")
    print()
    return {"concurrency": c, "calls": n, "limit_calls_per_s": limit, "results": rows, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    """Run the three jobs, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setup", action="store_true", help="create the framework venvs first")
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--waves", type=int, default=20, help="calls per concurrency slot (N = waves x C)")
    args = ap.parse_args(argv)
    if args.setup:
        setup()
    jobs = {"mifg": (Path(sys.executable), "mifg_job.py", "mifg")}
    for name, dist in (("curator", "bespokelabs-curator"), ("distilabel", "distilabel")):
        jobs[name] = (VENVS / name / "bin" / "python", f"{name}_job.py", dist)
    levels = []
    with ServerProcess("--latency-ms", str(args.latency_ms)) as server:
        for c in args.concurrency:
            levels.append(run_level(jobs, server.base_url, c, args.waves * c, args.latency_ms))
    figures = {"bench": "frameworks", "latency_ms": args.latency_ms, "machine": machine(), "levels": levels}
    print(f"wrote {write_json('bench_frameworks', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
