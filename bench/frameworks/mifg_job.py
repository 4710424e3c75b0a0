"""One call per sample with mifg's LLM client (`agents.llm.LLMClient`) on a local endpoint.

    .venv/bin/python bench/frameworks/mifg_job.py N CONCURRENCY BASE_URL   # prints one JSON line

The same job as curator_job.py / distilabel_job.py: N one-message chat calls, C in flight, max_tokens 64.
"""

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.llm import build_client
from agents.llm.config import LLMConfig


async def run(n: int, c: int, url: str) -> dict:
    """N calls through C workers sharing one client."""
    client = build_client(url, "mifg-test-vlm", "EMPTY", LLMConfig.from_options({"concurrency": c}))
    todo = iter(range(n))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for i in todo:
            messages = [{"role": "user", "content": f"verifier: which image differs? case {i}"}]
            text, _, _ = await client.complete(messages, max_tokens=64)
            ok += bool(text)

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*[worker() for _ in range(c)])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await client.aclose()
    return {"tool": "mifg", "n": n, "ok": ok, "concurrency": c, "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    """Run the job and print its figures."""
    n, c, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    print(json.dumps(asyncio.run(run(n, c, url))))


if __name__ == "__main__":
    main()
