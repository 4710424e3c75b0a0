"""Fixtures of the review room: real run dirs (Parquet shards) and real SQLite stores."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation_ui.review_store import ReviewStore
from pipeline.shard_store import ShardWriter
from schemas import TaskType, sample_arrow_schema, sample_to_row
from tests.factories import make_sample

TASKS = list(TaskType)


def make_run(root: Path, n: int, *, per_shard: int = 4, start: int = 0) -> list[str]:
    """Write `n` candidate samples as shards of `per_shard` under `root`; returns their ids in order."""
    writer = ShardWriter(root, "main")
    ids = []
    for lo in range(start, start + n, per_shard):
        batch = [
            make_sample(i, n_images=2 + i % 2, task_type=TASKS[i % 3])
            for i in range(lo, min(lo + per_shard, start + n))
        ]
        writer.write(batch)
        ids += [s.id for s in batch]
    return ids


def add_bad_row(root: Path, tag: str = "badrow") -> str:
    """Add a listed shard holding one candidate row that `schemas.Sample` refuses; returns its id."""
    row = sample_to_row(make_sample(601))
    row["answer"] = "Z"  # not an option letter
    (root / "shards").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row], schema=sample_arrow_schema()), root / "shards" / f"{tag}-00000.parquet")
    ShardWriter(root, tag)  # adopts the file into manifests/<tag>.json
    return row["id"]


class Clock:
    """A settable clock so lease expiry is tested without sleeping."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    make_run(d, 8)
    return d


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_store(run_dir: Path, clock: Clock):
    """Factory: a store on `run_dir` (imported), closed at teardown."""
    stores: list[ReviewStore] = []

    def _open(overlap: int | None = 1, lease_seconds: float = 600.0) -> ReviewStore:
        s = ReviewStore(run_dir, overlap=overlap, lease_seconds=lease_seconds, clock=clock)
        s.import_shards()
        stores.append(s)
        return s

    yield _open
    for s in stores:
        try:
            s.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass
