"""Reads verified / exported samples for training — never pipeline internals.

Accepted layouts of DATA (detected in this order):

    shard store   DATA/manifests/*.json + DATA/shards/*.parquet   (`mifg verified`, rl demo data)
                  a manifest tag named train/test/validation is a split; rows must be accepted/edited
    hf export     DATA/data/<split>-*.parquet (+ README.md, dataset_dict/)     sample columns
    save_to_disk  DATA/dataset_dict.json or DATA/dataset_dict/ (DatasetDict), DATA/state.json (Dataset)
    verl export   DATA/train.parquet, DATA/test.parquet    data_source, prompt, images, reward_model, extra_info
    a .parquet file or a folder of them, in either row format

A row that cannot be read is skipped with one line naming file and row, and counted.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from schemas import Provenance, Sample, Status, image_entry
from schemas.arrow import row_to_sample
from schemas.errors import InputError
from schemas.sample import undecodable_image

SPLIT_NAMES = {"train": "train", "test": "test", "validation": "test", "val": "test", "eval": "test", "dev": "test"}
VERIFIED = {Status.ACCEPTED, Status.EDITED}


@dataclass
class LoadReport:
    """Counts of what was read: rows per split, rows skipped (bad or unverified)."""

    layout: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    unverified: int = 0


def load_splits(path: str | Path, allow_unverified: bool = False) -> tuple[dict[str, list[Sample]], LoadReport]:
    """Samples of DATA grouped by split ("train", "test", or "all" when the layout names none)."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such file or directory")
    report = LoadReport()
    splits: dict[str, list[Sample]] = {}
    for split, where, row in _rows(root, report):
        try:
            sample = row if isinstance(row, Sample) else _to_sample(row)
        except Exception as e:  # noqa: BLE001 - one bad row must not stop the load
            report.bad += 1
            print(f"mifg: skipping {where}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
            continue
        # an image that does not decode would crash training when the row is drawn: skip it now
        why = None if isinstance(row, Sample) else undecodable_image(sample)
        if why is not None:
            report.bad += 1
            print(f"mifg: skipping {where}: {why}", file=sys.stderr)
            continue
        if report.layout == "shard store" and sample.status not in VERIFIED and not allow_unverified:
            report.unverified += 1
            continue
        splits.setdefault(split, []).append(sample)
    for k, v in splits.items():
        report.rows[k] = len(v)
    if not splits:
        hint = " (rows are not accepted/edited: run `mifg verified` first)" if report.unverified else ""
        raise InputError(f"{root}: no usable samples{hint}")
    return splits, report


def _split_of(name: str, default: str = "all") -> str:
    stem = re.split(r"[-_.]", Path(name).name, maxsplit=1)[0].lower()
    return SPLIT_NAMES.get(stem, default)


def _rows(root: Path, report: LoadReport) -> Iterator[tuple[str, str, dict[str, Any] | Sample]]:
    """(split, 'file row N', raw row or an already checked Sample) for every row of DATA."""
    if (root / "manifests").is_dir():
        from pipeline.store_reader import StoreReader

        report.layout = "shard store"
        # the one store reader: paths confined to the store, files checked, ids once, images decoded
        reader = StoreReader(root, "mifg train", decode_images=True)
        for item in reader.samples():
            yield SPLIT_NAMES.get(item.shard.info.tag.lower(), "all"), item.where, item.sample
        report.bad += sum(reader.report.skipped.values())
        return
    if (root / "data").is_dir() and list((root / "data").glob("*.parquet")):
        report.layout = "hf export"
        for f in sorted((root / "data").glob("*.parquet")):
            yield from _parquet_rows(f, _split_of(f.name))
        return
    for dd in (root, root / "dataset_dict"):
        if (dd / "dataset_dict.json").exists() or (dd / "state.json").exists():
            report.layout = "save_to_disk"
            yield from _disk_rows(dd)
            return
    files = [root] if root.is_file() else sorted(root.glob("*.parquet"))
    if not files:
        raise InputError(f"{root}: not a shard store, hf/verl export or parquet file(s)")
    report.layout = "parquet"
    for f in files:
        yield from _parquet_rows(f, _split_of(f.name))


def _parquet_rows(path: Path, split: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"{path}: unreadable parquet ({e})") from e
    i = 0
    for batch in pf.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield split, f"{path} row {i}", row
            i += 1


def _disk_rows(path: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [("all", ds)]
    for name, d in parts:
        d = d.flatten_indices() if d._indices is not None else d
        for i, row in enumerate(d.data.table.to_pylist()):  # raw Arrow rows: image bytes, no decoding
            yield SPLIT_NAMES.get(name.lower(), "all"), f"{path}[{name}] row {i}", row


def _to_sample(row: dict[str, Any]) -> Sample:
    """A Sample from a shard/hf row or a verl row."""
    if "reward_model" in row and "prompt" in row:
        return _verl_to_sample(row)
    row = {k: v for k, v in row.items() if k != "answer_text"}
    return row_to_sample(row)


def _verl_to_sample(row: dict[str, Any]) -> Sample:
    """Rebuild a Sample from a verl row (question/options/task from extra_info, answer from ground_truth)."""
    extra = row.get("extra_info") or {}
    images, metas = [], []
    for im in row["images"]:
        data = im["bytes"]
        with Image.open(io.BytesIO(data)) as pil:
            w, h = pil.size
        sha = hashlib.sha256(data).hexdigest()
        source = f"verl:{extra.get('id') or sha[:16]}"  # one group per sample: splits stay by sample
        image, meta = image_entry(data, width=w, height=h, source=source, sha256=sha, path=im.get("path"))
        images.append(image)
        metas.append(meta)
    options = extra.get("options")
    question = extra.get("question")
    if not options or not question:
        raise ValueError("verl row without extra_info.question/options (not a mifg export)")
    truth = str((row.get("reward_model") or {}).get("ground_truth", "")).strip()
    m = re.search(r"[A-J]", truth)
    if not m:
        raise ValueError(f"reward_model.ground_truth {truth!r} is not an option letter")
    evidence = [{"image_index": b["image_index"], "bbox": tuple(b["bbox"])} for b in extra.get("evidence") or []]
    return Sample(
        id=extra.get("id") or "",
        images=images,
        image_meta=metas,
        question=question,
        options=list(options),
        answer=m.group(0),
        task_type=extra.get("task_type") or "which_differs",
        domain=extra.get("domain") or "other",
        evidence=evidence,
        provenance=Provenance(backend="verl-export"),
        status=Status.ACCEPTED,
    )


def split_train_eval(
    splits: dict[str, list[Sample]], eval_fraction: float, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(train, eval): the named splits if present, else a held-out fraction grouped by source photo."""
    if "train" in splits:
        return splits["train"], splits.get("test", []) + splits.get("all", [])
    pool = [s for v in splits.values() for s in v]
    groups = sorted({s.sources[0] for s in pool})
    random.Random(seed).shuffle(groups)
    n_eval = round(len(groups) * eval_fraction) if eval_fraction > 0 else 0
    held = set(groups[:n_eval])
    return [s for s in pool if s.sources[0] not in held], [s for s in pool if s.sources[0] in held]


class DataStream:
    """Endless shuffled passes over n items; (epoch, pos) is the exact resume position."""

    def __init__(self, n: int, seed: int) -> None:
        if n == 0:
            raise InputError("no training samples")
        self.n, self.seed, self.epoch, self.pos = n, seed, 0, 0
        self._order = self._perm()

    def _perm(self) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)  # own RNG: independent of torch's
        return order

    def next(self, k: int) -> list[int]:
        """The next k indices (wrapping into a new, reshuffled epoch)."""
        out = []
        while len(out) < k:
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._perm()
            out.append(self._order[self.pos])
            self.pos += 1
        return out

    def state(self) -> dict[str, int]:
        """Resume position."""
        return {"epoch": self.epoch, "pos": self.pos, "n": self.n, "seed": self.seed}

    def load_state(self, state: dict[str, int]) -> None:
        """Jump to a saved position (the sample count must match)."""
        if state["n"] != self.n:
            raise InputError(f"checkpoint was trained on {state['n']} samples, DATA now has {self.n}")
        self.seed, self.epoch, self.pos = state["seed"], state["epoch"], state["pos"]
        self._order = self._perm()


def describe(report: LoadReport) -> str:
    """One line: layout, rows per split, skipped rows."""
    rows = ", ".join(f"{k} {v}" for k, v in sorted(report.rows.items()))
    return f"{report.layout}: {rows}; skipped {report.bad} bad, {report.unverified} unverified" + (
        "" if not report.unverified else " (use --allow-unverified to include)"
    )
