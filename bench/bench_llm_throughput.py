"""LLM backend throughput against a local OpenAI-compatible server with a fixed latency.

    .venv/bin/python bench/bench_llm_throughput.py                       # 200 ms, C = 16, 64, 256
    .venv/bin/python bench/bench_llm_throughput.py --latency-ms 200 --concurrency 64 --waves 20

The server (`python -m agents.llm.local_server`) runs in its own process; this process drives
N = waves x C agent calls with exactly C in flight, through the LLM backend's own client (retries,
rate limiter, lean HTTP transport, JSON parsing and validation). Each call is a real verifier call
(`LLMVerifier.verify`: two small images as PNG data URLs, the prompt, the JSON reply validated), or
a bare `LLMClient.complete_json` with `--mode client`.

Figures per concurrency: achieved calls/s as a fraction of the physical limit C / latency, client
CPU ms per call (this process), server CPU ms per call (its process, from /proc), per-call latency
percentiles, and the load average (other jobs on a shared machine slow wall-clock figures; CPU per
call is not affected). Writes a JSON of the figures (default runs/bench/llm_throughput.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    """The local model server in a subprocess; returns it and its base URL."""
    cmd = [sys.executable, "-m", "agents.llm.local_server", "--port", "0", "--latency-ms", str(latency_ms)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"local server did not start: {line!r}")
    return proc, line.split()[4]


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def make_call(mode: str, base_url: str, model: str, concurrency: int, http_path: str = "lean"):
    """An async no-argument callable doing one agent call, plus the client (for stats/close)."""
    from agents.base import AgentContext, Draft, ImageSet, PhotoPool
    from agents.image_cache import store_image
    from agents.llm import LLMConfig, LLMVerifier, build_client
    from agents.llm.client import LLMClient
    from agents.prompts import load_prompt
    from schemas import TaskType
    from tests.factories import make_image

    if mode == "client":
        client = LLMClient(base_url, model, None, max_connections=concurrency * 2, http_path=http_path)
        messages = [
            {"role": "system", "content": load_prompt("verifier")},
            {"role": "user", "content": '```json\n{"question": "q?", "options": {"A": "x", "B": "y"}}\n```'},
        ]

        async def call_client() -> None:
            await client.complete_json(messages, lambda obj: obj, max_tokens=64)

        return call_client, client

    class NoRegistry:
        def seen(self, key: str) -> bool:
            return False

        def add(self, key: str) -> None:
            pass

    image_dir = Path(tempfile.mkdtemp(prefix="mifg-bench-llm-"))
    refs = [store_image(make_image(s, size=(64, 48)), image_dir, source=f"bench:{s}") for s in range(2)]
    images = ImageSet(images=refs)
    draft = Draft(
        question="Which image has the mark?",
        options=["Image 1", "Image 2"],
        answer="A",
        task_type=TaskType.WHICH_DIFFERS,
    )
    ctx = AgentContext(image_dir=image_dir, pool=PhotoPool(photos=refs), registry=NoRegistry())
    # The verifier alone (the pairer would pull in the offline backend, which this bench does not use).
    config = LLMConfig.from_options({"concurrency": concurrency, "http_path": http_path})
    verifier = LLMVerifier(build_client(base_url, model, None, config), config)

    async def call_agent() -> None:
        await verifier.verify(images, draft, ctx)

    return call_agent, verifier.client


async def drive(call, concurrency: int, waves: int) -> tuple[float, float, list[float]]:
    """C workers, each doing `waves` calls back to back: (wall s, CPU s, per-call latencies)."""
    latencies: list[float] = []

    async def worker(k: int) -> None:
        for _ in range(k):
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*[worker(1) for _ in range(concurrency)])  # warm-up: open the connections
    latencies.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*[worker(waves) for _ in range(concurrency)])
    return time.perf_counter() - t0, time.process_time() - c0, latencies


def bench_one(
    mode: str,
    base_url: str,
    model: str,
    server_pid: int,
    latency_ms: float,
    concurrency: int,
    waves: int,
    http_path: str = "lean",
) -> dict:
    """Figures for one concurrency level."""

    async def main() -> dict:
        call, client = make_call(mode, base_url, model, concurrency, http_path)
        s0 = proc_cpu_seconds(server_pid)
        load0 = os.getloadavg()[0]
        wall, cpu, lat = await drive(call, concurrency, waves)
        s1 = proc_cpu_seconds(server_pid)
        stats = client.stats()
        await client.aclose()
        n = len(lat)
        ideal = concurrency / (latency_ms / 1000.0)
        lat.sort()
        return {
            "concurrency": concurrency,
            "calls": n,
            "wall_s": round(wall, 3),
            "calls_per_s": round(n / wall, 1),
            "ideal_calls_per_s": round(ideal, 1),
            "fraction_of_ideal": round(n / wall / ideal, 3),
            "client_cpu_ms_per_call": round(1000 * cpu / n, 3),
            "server_cpu_ms_per_call": round(1000 * (s1 - s0) / n, 3) if s0 is not None and s1 is not None else None,
            "latency_ms_p50": round(1000 * statistics.median(lat), 1),
            "latency_ms_p95": round(1000 * lat[int(0.95 * (n - 1))], 1),
            "latency_ms_max": round(1000 * lat[-1], 1),
            "retries": stats.get("retries", 0),
            "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--waves", type=int, default=10, help="calls per worker (N = waves x C)")
    p.add_argument("--mode", choices=["agent", "client"], default="agent")
    p.add_argument("--http-path", choices=["lean", "sdk"], default="lean", help="sdk: through the openai SDK")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "llm_throughput.json")
    a = p.parse_args(argv)

    proc, base_url = start_server(a.latency_ms)
    results = []
    try:
        for c in a.concurrency:
            r = bench_one(a.mode, base_url, "mifg-test-vlm", proc.pid, a.latency_ms, c, a.waves, a.http_path)
            results.append(r)
            print(
                f"C={c:4d}: {r['calls_per_s']:7.1f} calls/s of {r['ideal_calls_per_s']:7.1f} ideal"
                f" = {r['fraction_of_ideal']:.3f}; client CPU {r['client_cpu_ms_per_call']:.3f} ms/call,"
                f" server CPU {r['server_cpu_ms_per_call']} ms/call; p50 {r['latency_ms_p50']} ms,"
                f" p95 {r['latency_ms_p95']} ms; load {r['loadavg_start_end']}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    report = {
        "bench": "llm_throughput",
        "mode": a.mode,
        "http_path": a.http_path,
        "latency_ms": a.latency_ms,
        "waves": a.waves,
        "cpu_cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
