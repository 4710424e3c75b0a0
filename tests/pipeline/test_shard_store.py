"""The shard store: atomic shards, manifests, orphan adoption, `datasets` loading."""

from __future__ import annotations

import json

import datasets
import pytest
from PIL import Image

from pipeline.shard_store import ShardWriter, list_shards, read_ids, read_samples, shard_paths
from schemas.errors import InputError
from tests.factories import make_sample


def test_write_and_read_back_in_order(tmp_path):
    w = ShardWriter(tmp_path, "s0of2")
    batches = [[make_sample(i) for i in range(3)], [make_sample(i) for i in range(3, 5)]]
    for b in batches:
        w.write(b)
    assert w.write([]) is None
    assert [s.id for s in read_samples(tmp_path)] == [s.id for b in batches for s in b]
    assert read_ids(tmp_path) == [s.id for b in batches for s in b]
    manifest = json.loads((tmp_path / "manifests" / "s0of2.json").read_text())
    assert manifest["rows"] == 5 and [s["rows"] for s in manifest["shards"]] == [3, 2]


def test_two_tags_share_a_root_without_clashing(tmp_path):
    ShardWriter(tmp_path, "s0of2").write([make_sample(1)])
    ShardWriter(tmp_path, "s1of2").write([make_sample(2)])
    assert {s.tag for s in list_shards(tmp_path)} == {"s0of2", "s1of2"}
    assert len(read_samples(tmp_path)) == 2


def test_reopen_continues_numbering(tmp_path):
    ShardWriter(tmp_path).write([make_sample(1)])
    ShardWriter(tmp_path).write([make_sample(2)])
    assert [p.name for p in shard_paths(tmp_path)] == ["main-00000.parquet", "main-00001.parquet"]


def test_crash_between_shard_and_manifest_adopts_the_complete_shard(tmp_path):
    w = ShardWriter(tmp_path)
    w.write([make_sample(1)])
    manifest_before = (tmp_path / "manifests" / "main.json").read_bytes()
    w.write([make_sample(2)])
    # Simulate a crash after the shard rename but before the manifest rename.
    (tmp_path / "manifests" / "main.json").write_bytes(manifest_before)
    (tmp_path / "shards" / ".main-00002.parquet.123.tmp").write_bytes(b"half a shard")
    reopened = ShardWriter(tmp_path)
    assert len(reopened.shards) == 2
    assert not list((tmp_path / "shards").glob("*.tmp"))
    assert len(read_samples(tmp_path)) == 2


def test_unreadable_orphan_is_dropped_not_adopted(tmp_path):
    ShardWriter(tmp_path).write([make_sample(1)])
    (tmp_path / "shards" / "main-00001.parquet").write_bytes(b"not parquet")
    assert len(ShardWriter(tmp_path).shards) == 1
    assert not (tmp_path / "shards" / "main-00001.parquet").exists()


def test_errors_name_the_path(tmp_path):
    with pytest.raises(InputError, match="not a mifg shard directory"):
        list_shards(tmp_path)
    with pytest.raises(InputError, match="letters, digits"):
        ShardWriter(tmp_path, "../evil")
    ShardWriter(tmp_path)
    (tmp_path / "manifests" / "main.json").write_text("{broken")
    with pytest.raises(InputError, match="main.json"):
        list_shards(tmp_path)


def test_datasets_loads_shards_with_images_decoded(tmp_path):
    samples = [make_sample(i, n_images=2 + i % 2) for i in range(4)]
    ShardWriter(tmp_path).write(samples)
    ds = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in shard_paths(tmp_path)], split="train", cache_dir=str(tmp_path / "cache")
    )
    assert ds.num_rows == 4
    row = ds[1]
    assert len(row["images"]) == 3 and all(isinstance(im, Image.Image) for im in row["images"])
    assert row["images"][0].size == (64, 48)
    assert row["answer"] == samples[1].answer and row["provenance"]["backend"] == "offline"


@pytest.mark.parametrize(
    "bad", ["/etc/passwd.parquet", "shards/../../x.parquet", "other/x.parquet", "shards/.x.parquet"]
)
def test_manifest_entries_cannot_point_outside_the_shards_folder(tmp_path, bad):
    ShardWriter(tmp_path).write([make_sample(1)])
    path = tmp_path / "manifests" / "main.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["file"] = bad
    path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="not a file under shards/"):
        shard_paths(tmp_path)
