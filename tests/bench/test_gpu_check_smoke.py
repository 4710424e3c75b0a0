"""bench/gpu_check.sh --smoke: the CPU mode CI runs (the GPU mode is run by hand on a GPU machine)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5.5.4")  # rl.policies.hf_qwen.MIN_TRANSFORMERS
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]
FIGURES = r"\s+\d+\s+[\d.]+ M\s+[\d.]+ M" + r"\s+[\d.]+" * 4  # layers, params, trainable, 4 figures


def test_smoke_prints_the_lora_full_table(tmp_path) -> None:
    """~7 s on 2 cores: a subprocess imports torch + transformers and trains each mode for one step."""
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--smoke", "--json", str(out)],
        cwd=tmp_path,  # the script finds the repository itself
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(re.match(r"mode\s+layers\s+params\s+trainable\s+rollout tok/s\s+step s", line) for line in lines)
    for mode in ("lora", "full"):
        assert any(re.fullmatch(mode + FIGURES, line.strip()) for line in lines), proc.stdout
    assert any(re.fullmatch(r"lora/full\s+\d+" + r"\s+[\d.]+" * 5, line.strip()) for line in lines), proc.stdout
    assert sum("vLLM rollout not measured" in line for line in lines) == 1
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["lora", "full", "lora/full"]
    assert all(r["rollout_tok_s"] > 0 and r["step_s"] > 0 and r["peak_gib"] > 0 for r in rows[:2])
    assert rows[0]["trainable"] < rows[1]["trainable"]  # LoRA trains adapters only
