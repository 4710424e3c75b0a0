"""`hf` format: a `datasets.DatasetDict` on disk, plain Parquet per split, and a dataset card.

Layout of OUT:

    README.md                          dataset card; its `configs` make `load_dataset(OUT)` work
    data/train-00000-of-00001.parquet  Hub layout; `images` decode as List(Image())
    data/test-00000-of-00001.parquet
    dataset_dict/                      `DatasetDict.save_to_disk` (use `datasets.load_from_disk`)
"""

from __future__ import annotations

import hashlib
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.export import dataset_card
from pipeline.export.facts import ExportFacts
from pipeline.export.parquet_sink import SplitFile, SplitParquetSink, card_configs, card_splits, with_hf_features
from pipeline.export.splits import SPLITS
from schemas import Sample, sample_to_row
from schemas.arrow import BOX_STRUCT, IMAGE_META_STRUCT, IMAGE_STRUCT, PROVENANCE_STRUCT, REVIEW_STRUCT

HF_FIELDS = [
    ("id", pa.string()),
    ("images", pa.list_(IMAGE_STRUCT)),
    ("question", pa.string()),
    ("options", pa.list_(pa.string())),
    ("answer", pa.string()),
    ("answer_text", pa.string()),
    ("task_type", pa.string()),
    ("domain", pa.string()),
    ("rationale", pa.string()),
    ("evidence", pa.list_(BOX_STRUCT)),
    ("image_meta", pa.list_(IMAGE_META_STRUCT)),
    ("provenance", PROVENANCE_STRUCT),
    ("status", pa.string()),
    ("review", REVIEW_STRUCT),
]


@cache
def hf_features_dict() -> dict[str, Any]:
    """`datasets` features (as a dict) of an hf export row: the Arrow types, `images` as List(Image())."""
    from datasets import Features

    feats = Features.from_arrow_schema(pa.schema(HF_FIELDS)).to_dict()
    feats["images"] = {"feature": {"_type": "Image"}, "_type": "List"}
    return feats


@cache
def hf_schema() -> pa.Schema:
    """Arrow schema of an hf export row, with `datasets` feature metadata."""
    return with_hf_features(pa.schema(HF_FIELDS), hf_features_dict())


def hf_row(sample: Sample) -> dict[str, Any]:
    """One hf export row of a sample."""
    row = sample_to_row(sample)
    out = {name: row.get(name) for name, _ in HF_FIELDS if name != "answer_text"}
    out["answer_text"] = sample.answer_text
    return out


def parquet_name(split: str) -> str:
    """Hub-style file name of a split's single Parquet shard."""
    return f"{split}-00000-of-00001.parquet"


def dataset_info_yaml(files: dict[str, SplitFile]) -> dict[str, Any]:
    """`dataset_info` block of the card: features, splits (num_bytes, num_examples), sizes."""
    from datasets import Features

    features = Features.from_dict(hf_features_dict())
    return {
        "features": features._to_yaml_list(),
        **card_splits(files),
        "download_size": sum(f.path.stat().st_size for f in files.values()),
        "dataset_size": sum(f.nbytes for f in files.values()),
    }


def save_dataset_dict(files: dict[str, SplitFile], target: Path) -> None:
    """`DatasetDict.save_to_disk` from the memory-mapped Arrow streams of each split."""
    import datasets
    from datasets import DatasetInfo, Features, NamedSplit
    from datasets.table import MemoryMappedTable

    features = Features.from_dict(hf_features_dict())
    splits = {}
    for s in files:
        table = MemoryMappedTable.from_file(str(files[s].ipc_path))
        # A content fingerprint instead of a random one keeps save_to_disk output byte-identical.
        fingerprint = hashlib.sha256(f"{s}:{files[s].rows}:{files[s].nbytes}".encode()).hexdigest()[:16]
        splits[s] = datasets.Dataset(
            table, info=DatasetInfo(features=features), split=NamedSplit(s), fingerprint=fingerprint
        )
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        datasets.DatasetDict(splits).save_to_disk(str(target))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


HF_USAGE = """\
- `data/<split>-00000-of-00001.parquet`: one Parquet file per split; `images` decode as a list of images.
- `dataset_dict/`: the same data saved with `DatasetDict.save_to_disk`.
- `splits.json`: the split and source group of every sample; `export.json`: the counts above.

```python
import datasets

ds = datasets.load_dataset("parquet", data_dir="OUT/data")   # or datasets.load_dataset("OUT")
dd = datasets.load_from_disk("OUT/dataset_dict")
dd["train"][0]["images"]  # list of PIL images
```"""


class HfWriter:
    """Writes the hf format into a staging directory."""

    name = "hf"

    def __init__(self, out: Path, final_out: Path) -> None:
        self.out = out
        self.final_out = final_out
        paths = {s: out / "data" / parquet_name(s) for s in SPLITS}
        self.sink = SplitParquetSink(paths, hf_schema(), ipc_dir=out / ".ipc")

    def add(self, split: str, index: int, sample: Sample) -> None:
        """Append one sample to `split`."""
        self.sink.add(split, hf_row(sample))

    def close(self, facts: ExportFacts) -> list[Path]:
        """Finish the files; returns the paths written (relative to the export root)."""
        files = self.sink.close()
        save_dataset_dict(files, self.out / "dataset_dict")
        shutil.rmtree(self.out / ".ipc", ignore_errors=True)
        card = dataset_card.render(facts, HF_USAGE, card_configs(files, self.out), dataset_info_yaml(files))
        (self.out / "README.md").write_text(card, encoding="utf-8")
        return [Path("README.md"), *(f.path.relative_to(self.out) for f in files.values()), Path("dataset_dict")]
