"""hf format: loads with load_from_disk, load_dataset("parquet") and load_dataset(OUT); the card."""

from __future__ import annotations

import io

import datasets
import pytest
import yaml
from PIL import Image

from pipeline.export.splits import SPLITS

COLUMNS = {
    "id", "images", "question", "options", "answer", "answer_text", "task_type", "domain", "rationale",
    "evidence", "image_meta", "provenance", "status", "review",
}  # fmt: skip


@pytest.fixture(scope="module")
def hf(exports):
    return exports("hf")


def _check_split(ds, split, result, store_samples):
    plan = result.plan
    assert set(ds.column_names) == COLUMNS
    assert isinstance(ds.features["images"], datasets.List)
    assert isinstance(ds.features["images"].feature, datasets.Image)
    ids = ds["id"]
    assert ids and all(plan.split_of[i] == split for i in ids)
    for row in ds:
        src = store_samples[row["id"]]
        assert len(row["images"]) == len(src.images) == len(row["image_meta"])
        assert all(isinstance(im, Image.Image) for im in row["images"])
        assert [im.size for im in row["images"]] == [(m.width, m.height) for m in src.image_meta]
        assert row["answer"] == src.answer and row["options"] == src.options
        assert row["answer_text"] == src.answer_text
        assert row["status"] in ("accepted", "edited") and row["review"]["decisions"]
    return ids


def test_load_from_disk(hf, store_samples):
    dd = datasets.load_from_disk(str(hf.out / "dataset_dict"))
    assert set(dd) == set(SPLITS)
    seen = [i for s in SPLITS for i in _check_split(dd[s], s, hf, store_samples)]
    assert sorted(seen) == sorted(store_samples)  # every verified sample, once


def test_load_dataset_parquet_and_card_configs(hf, store_samples, tmp_path):
    files = {s: str(hf.out / "data" / f"{s}-00000-of-00001.parquet") for s in SPLITS}
    dd = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c1"))
    for s in SPLITS:
        _check_split(dd[s], s, hf, store_samples)
    # the card's `configs` make the folder itself loadable, with the same splits
    dd2 = datasets.load_dataset(str(hf.out), cache_dir=str(tmp_path / "c2"))
    assert {s: dd2[s].num_rows for s in SPLITS} == {s: dd[s].num_rows for s in SPLITS}


def test_no_source_photo_in_both_splits(hf):
    dd = datasets.load_from_disk(str(hf.out / "dataset_dict"))
    sources = {s: {m["source"] for metas in dd[s]["image_meta"] for m in metas} for s in SPLITS}
    assert sources["train"] and sources["test"]
    assert not sources["train"] & sources["test"]
    # the chain 0-1-2 shares photo:chain-a; all three stay together
    chain = {s for s in SPLITS if "photo:chain-a" in sources[s]}
    assert len(chain) == 1 and "photo:chain-b" in sources[chain.pop()]


def test_dataset_card(hf):
    text = (hf.out / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    splits = {s["name"]: s for s in header["dataset_info"]["splits"]}
    for s in SPLITS:
        assert splits[s]["num_examples"] == hf.facts.rows(s) > 0
        assert splits[s]["num_bytes"] > 0
    names = [f["name"] for f in header["dataset_info"]["features"]]
    assert names[:3] == ["id", "images", "question"]
    assert header["license"] == "cc0-1.0"  # every factory photo is CC0-1.0
    assert header["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train-00000-of-00001.parquet"}
    body = text.split("---\n", 2)[2]
    for needle in ("How it was made", "Licence of the source photos", "Counts by task type", "Counts by domain"):
        assert needle in body
    for task, n in hf.facts.by_task["test"].items():
        assert f"| {task} | {hf.facts.by_task['train'].get(task, 0)} | {n} |" in body


def test_images_round_trip_bytes(hf, store_samples):
    import pyarrow.parquet as pq

    table = pq.read_table(hf.out / "data" / "train-00000-of-00001.parquet")
    row = table.slice(0, 1).to_pylist()[0]
    src = store_samples[row["id"]]
    assert [im["bytes"] for im in row["images"]] == [im.bytes for im in src.images]
    Image.open(io.BytesIO(row["images"][0]["bytes"])).verify()


def test_card_licence_id():
    from collections import Counter

    from pipeline.export.dataset_card import hub_license
    from pipeline.export.facts import ExportFacts

    facts = ExportFacts()
    facts.licences = Counter({"CC0-1.0 (CC0Textures)": 2, "cc0-1.0": 1})
    assert hub_license(facts) == "cc0-1.0"
    facts.licences["CC-BY-2.0 (Flickr)"] = 1
    assert hub_license(facts) == "other"
    facts.licences = Counter({"public-domain (NASA)": 1})
    assert hub_license(facts) == "other"
