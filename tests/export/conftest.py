"""Verified stores and cached exports shared by the export tests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.models import TyperInfo

import pipeline.cli as cli
from pipeline.export import ExportConfig, run_export
from pipeline.shard_store import ShardWriter
from schemas import Domain, Review, ReviewDecision, Status, TaskType, sample_arrow_schema, sample_to_row
from tests.factories import make_sample

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # loaders read local files only; never reach the network

TASKS = [TaskType.WHICH_DIFFERS, TaskType.COUNT_ACROSS, TaskType.ATTRIBUTE_COMPARE, TaskType.ODD_ONE_OUT]
DOMAINS = [Domain.NATURE, Domain.URBAN, Domain.INDOOR]


def verified(sample, status: Status = Status.ACCEPTED, annotator: str = "ann1"):
    """The sample as the review room's `mifg verified` writes it: a status and a review."""
    decision = "edit" if status == Status.EDITED else "accept"
    sample.status = status
    sample.review = Review(
        decisions=[ReviewDecision(annotator=annotator, decision=decision, at="2026-01-01T00:00:00Z")],
        verified_at="2026-01-01T00:00:00Z",
    )
    return sample


def source_of(i: int) -> str:
    """Source photos: mostly one per sample, some shared by pairs, and one chain of three."""
    if i in (0, 1):
        return "photo:chain-a"  # 0-1 share a source ...
    if i == 2:
        return "photo:chain-b"  # ... and 2 is linked to 1 by its second image (see make_store)
    if i % 10 in (3, 4):
        return f"photo:pair-{i // 10}"
    return f"photo:solo-{i}"


def make_store(root: Path, n: int = 40) -> list:
    """A verified store of `n` accepted/edited samples (2-4 images, 4 task types), plus noise rows."""
    samples = []
    for i in range(n):
        s = make_sample(i, n_images=2 + i % 3, task_type=TASKS[i % 4], domain=DOMAINS[i % 3], source=source_of(i))
        if i == 2:  # the second image of sample 2 comes from sample 1's photo: a chain 0-1-2
            s.image_meta[1].source = "photo:chain-a"
        samples.append(verified(s, Status.EDITED if i % 5 == 0 else Status.ACCEPTED, f"ann{i % 2}"))
    w = ShardWriter(root, "verified")
    w.write(samples[: n // 2])
    w.write(samples[n // 2 :])
    return samples


def add_noise(root: Path) -> dict:
    """Rows export must skip: rejected, candidate, an invalid row, an unreadable shard."""
    rejected = make_sample(900, n_images=2)
    rejected.status = Status.REJECTED
    candidate = make_sample(901, n_images=3, task_type=TaskType.SAME_SOURCE)
    ShardWriter(root, "review").write([rejected, candidate])
    bad = sample_to_row(verified(make_sample(902)))
    bad["answer"] = "Z"  # not an option letter
    table = pa.Table.from_pylist([bad], schema=sample_arrow_schema())
    pq.write_table(table, root / "shards" / "broken-00000.parquet")
    ShardWriter(root, "broken")  # adopts the shard into manifests/broken.json
    (root / "shards" / "junk-00000.parquet").write_bytes(b"not a parquet file")
    manifest = {
        "schema_version": 1,
        "tag": "junk",
        "rows": 1,
        "shards": [{"file": "shards/junk-00000.parquet", "rows": 1, "sha256": "0" * 64, "tag": "junk"}],
    }
    (root / "manifests" / "junk.json").write_text(json.dumps(manifest))
    return {"rejected": rejected.id, "candidate": candidate.id}


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A clean verified store of 40 samples."""
    root = tmp_path_factory.mktemp("verified")
    make_store(root)
    return root


@pytest.fixture(scope="session")
def store_samples(store) -> dict:
    """The samples of `store` by id."""
    from pipeline.shard_store import read_samples

    return {s.id: s for s in read_samples(store)}


@pytest.fixture(scope="session")
def exports(store, tmp_path_factory):
    """Export `store` once per format (cached): fmt -> ExportResult."""
    cache: dict = {}

    def get(fmt: str):
        if fmt not in cache:
            out = tmp_path_factory.mktemp("exports") / fmt
            cache[fmt] = run_export(ExportConfig(store=store, out=out, fmt=fmt, test_fraction=0.25), progress=None)
        return cache[fmt]

    return get


@pytest.fixture
def mifg(monkeypatch):
    """`pipeline.cli.main` with the app kept in multi-command mode even if only one room is installed."""
    if cli.app.registered_callback is None:
        monkeypatch.setattr(cli.app, "registered_callback", TyperInfo(callback=lambda: None))
    return cli.main


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
