"""Contamination: near-duplicates of a benchmark image are reported and excluded; others are kept."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from pipeline.export import ExportConfig, run_export
from pipeline.export.contamination import ImageKey, find_hits, index_benchmark, phash_int
from schemas.errors import InputError
from tests.factories import make_image, png_bytes


@pytest.fixture
def bench(tmp_path, store_samples):
    """A benchmark folder: a resized JPEG copy of one of our images, unrelated images, a broken file."""
    target = sorted(store_samples)[5]
    src = Image.open(io.BytesIO(store_samples[target].images[1].bytes)).convert("RGB")
    root = tmp_path / "bench"
    (root / "sub").mkdir(parents=True)
    src.resize((src.width * 2, src.height * 2)).save(root / "sub" / "copy.jpg", quality=90)
    for k in range(6):
        (root / f"other{k}.png").write_bytes(png_bytes(make_image(10_000 + k)))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root, target


def test_index_and_hits(bench, store_samples):
    root, target = bench
    index = index_benchmark(root)
    assert index.files == ["other0.png", "other1.png", "other2.png", "other3.png", "other4.png", "other5.png",
                           "sub/copy.jpg"]  # fmt: skip
    assert len(index.unreadable) == 1 and index.unreadable[0].startswith("broken.png")
    keys, hashes = [], []
    for sid, s in sorted(store_samples.items()):
        for i, img in enumerate(s.images):
            keys.append(ImageKey(sid, i, s.image_meta[i].sha256))
            hashes.append(phash_int(img.bytes))
    hits = find_hits(keys, hashes, index, threshold=8)
    assert {h.sample_id for h in hits} == {target}
    assert all(h.benchmark_file == "sub/copy.jpg" and h.distance <= 8 for h in hits)
    assert find_hits(keys, hashes, index, threshold=0) == [h for h in hits if h.distance == 0]


def test_export_excludes_and_reports_hits(bench, store, tmp_path):
    root, target = bench
    out = tmp_path / "out"
    result = run_export(ExportConfig(store=store, out=out, fmt="hf", contamination_dir=root), progress=None)
    report = json.loads((out / "contamination.json").read_text())
    assert report["excluded_samples"] == [target]
    assert report["benchmark_images"] == 7 and len(report["benchmark_unreadable"]) == 1
    hit = report["hits"][0]
    assert hit["sample_id"] == target and hit["benchmark_file"] == "sub/copy.jpg" and hit["distance"] <= 8
    assert target not in result.plan.split_of
    splits = json.loads((out / "splits.json").read_text())
    assert target not in splits["samples"] and len(splits["samples"]) == 39
    assert result.facts.skipped["contaminated"] == 1 and result.facts.total == 39
    assert "contamination: " in result.summary() and "1 samples excluded" in result.summary()
    card = (out / "README.md").read_text()
    assert "1 samples with hits were excluded" in card


def test_missing_benchmark_folder_is_one_clear_error(store, tmp_path):
    with pytest.raises(InputError, match="benchmark folder"):
        run_export(ExportConfig(store=store, out=tmp_path / "o", contamination_dir=tmp_path / "nope"), progress=None)
    assert not (tmp_path / "o").exists()


def test_truncated_image_is_skipped_not_fatal_with_a_contamination_check(bench, store_samples, tmp_path):
    from pipeline.shard_store import ShardWriter
    from schemas import SampleImage

    root, target = bench
    samples = [s.model_copy(deep=True) for _, s in sorted(store_samples.items())[:6]]
    assert samples[5].id == target  # so one more sample is excluded as contaminated
    whole = samples[0].images[0].bytes
    samples[0].images[0] = SampleImage(bytes=whole[: len(whole) // 2], path=samples[0].images[0].path)
    store = tmp_path / "with-truncated"
    ShardWriter(store, "verified").write(samples)
    result = run_export(
        ExportConfig(store=store, out=tmp_path / "out", fmt="hf", contamination_dir=root), progress=None
    )
    assert result.facts.total == 4 and samples[0].id not in result.plan.split_of
    assert result.facts.skipped["contaminated"] == 1
