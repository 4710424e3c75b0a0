"""One call per sample with distilabel's `OpenAILLM` on a local endpoint.

    VENV/bin/python bench/frameworks/distilabel_job.py N CONCURRENCY BASE_URL   # prints one JSON line

distilabel's TextGeneration step sends each batch of `input_batch_size` rows at once (asyncio.gather
in `AsyncLLM.generate`) and the batches one after another; this does the same with batch = C.
"""

import json
import os
import sys
import time

os.environ["DISTILABEL_DISABLE_TELEMETRY"] = "1"

from distilabel.models import OpenAILLM


def main() -> None:
    """Run the job and print its figures."""
    n, c, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    llm = OpenAILLM(model="mifg-test-vlm", base_url=url, api_key="EMPTY", max_retries=2, timeout=60)
    llm.load()
    inputs = [[{"role": "user", "content": f"verifier: which image differs? case {i}"}] for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    ok = 0
    for lo in range(0, n, c):
        out = llm.generate_outputs(inputs=inputs[lo : lo + c], num_generations=1, max_new_tokens=64)
        ok += sum(1 for o in out if o["generations"][0] is not None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"tool": "distilabel", "n": n, "ok": ok, "concurrency": c, "wall_s": wall, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
