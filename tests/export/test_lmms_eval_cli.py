"""The lmms-eval export run by lmms-eval's own CLI on a tiny LLaVA, in the consumers' environment.

lmms-eval pulls in a stack (its own transformers, decord, evaluate, ...) that does not belong in
mifg's environment, so it lives in `.venv-consumers` (`make consumers-env`, pinned by
requirements-consumers.lock) and this test runs it as a subprocess: `make test-consumers`. Without
that environment (a plain `make test`) it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.consumers
CONSUMERS_PYTHON = os.environ.get("MIFG_CONSUMERS_PYTHON", str(Path(".venv-consumers/bin/python").resolve()))
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def consumers_python() -> str:
    if not Path(CONSUMERS_PYTHON).exists():
        pytest.skip(f"no consumers environment at {CONSUMERS_PYTHON} (make consumers-env)")
    return CONSUMERS_PYTHON


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the consumers' own packages, not mifg's
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_lmms_eval_cli_runs_the_exported_task(consumers_python, exports, tmp_path):
    task = exports("lmms-eval").out
    model = tmp_path / "tiny-llava"
    built = _run([consumers_python, str(HERE / "tiny_llava.py"), str(model)], tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    out = tmp_path / "results"
    limit = 6
    run = _run(
        [
            consumers_python, "-m", "lmms_eval", "eval",
            "--model", "llava_hf",
            "--model_args", f"pretrained={model},device=cpu,device_map=cpu,dtype=float32",
            "--tasks", "mifg_qa", "--include_path", str(task),
            "--limit", str(limit), "--batch_size", "1", "--log_samples", "--output_path", str(out),
        ],
        tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-4000:])
    results = sorted(out.rglob("*_results.json"))
    assert results, f"lmms-eval wrote no results under {out}: {run.stderr[-2000:]}"
    summary = json.loads(results[-1].read_text())
    scores = summary["results"]["mifg_qa"]
    assert 0.0 <= scores["exact_match,none"] <= 1.0
    assert "by_task_type,none" in scores and "by_domain,none" in scores
    assert summary["n-samples"]["mifg_qa"]["effective"] == limit
    # every logged sample: the prompt our doc_to_text built (images counted without the Image columns)
    logged = sorted(out.rglob("*mifg_qa*.jsonl"))
    assert logged, "no per-sample log"
    rows = [json.loads(line) for line in logged[-1].read_text().splitlines() if line.strip()]
    assert len(rows) == limit
    for row in rows:
        prompt = json.dumps(row.get("arguments") or row)
        assert "images are given in order, Image 1 to Image" in prompt and "Options:" in prompt
    print(sys.version, scores["exact_match,none"])
