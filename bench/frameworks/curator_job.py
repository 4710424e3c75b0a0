"""One call per sample with Bespoke curator (`curator.LLM`, openai backend) on a local endpoint.

    VENV/bin/python bench/frameworks/curator_job.py N CONCURRENCY BASE_URL   # prints one JSON line

Run by bench/bench_frameworks.py with curator's own virtual environment (it pins older datasets,
pydantic and openai than mifg, so it cannot share mifg's).
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("CURATOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "mifg-bench-curator"))
os.environ["CURATOR_DISABLE_CACHE"] = "1"
os.environ["TELEMETRY_ENABLED"] = "false"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm would fetch its price list
os.environ.setdefault("OPENAI_API_KEY", "EMPTY")

import tiktoken


class _CharEncoding:
    """No network here: curator's token estimate downloads a BPE file; count ~4 characters per token."""

    name = "chars/4"

    def encode(self, text: str, **kw: object) -> list[int]:
        return [0] * (len(text) // 4 + 1)


tiktoken.get_encoding = lambda name: _CharEncoding()
tiktoken.encoding_for_model = lambda name: _CharEncoding()

from bespokelabs import curator  # noqa: E402


def main() -> None:
    """Run the job and print its figures."""
    n, c, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    llm = curator.LLM(
        model_name="mifg-test-vlm",
        backend="openai",
        backend_params={
            "base_url": url,
            "api_key": "EMPTY",
            "max_concurrent_requests": c,
            "max_requests_per_minute": 10_000_000,  # no client-side rate limit: the same as mifg's default
            "max_tokens_per_minute": 10_000_000_000,
            "max_retries": 2,
            "require_all_responses": False,
        },
        generation_params={"max_tokens": 64},
    )
    prompts = [f"verifier: which image differs? case {i}" for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    out = llm(prompts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = len(out.dataset) if hasattr(out, "dataset") else len(out)
    print(json.dumps({"tool": "curator", "n": n, "ok": rows, "concurrency": c, "wall_s": wall, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
