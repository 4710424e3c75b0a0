"""The review load benchmark at a small scale: concurrent annotators and a restart lose nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_review_load.py"


@pytest.mark.slow
def test_concurrent_annotators_with_restart_lose_nothing(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_review_load", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--annotators", "4", "--decisions", "30"]) == 0
    out = capsys.readouterr().out
    assert "lost 0, duplicated 0" in out and "4/4 annotators got their sample back" in out
