"""Stream rows into one Parquet file per split with an explicit schema, a batch at a time.

A split that gets no rows gets no file (`datasets` cannot load an empty split back), so
`close()` returns only the splits that have rows. Optionally mirrors the same batches into an
Arrow IPC stream per split, which `hf_format` memory-maps to build a `datasets.Dataset` for
`save_to_disk` without holding a split's images in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def with_hf_features(schema: pa.Schema, features: dict[str, Any]) -> pa.Schema:
    """`schema` carrying `datasets` feature metadata, so loaders decode images as Image()."""
    meta = {b"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True).encode()}
    return schema.with_metadata(meta)


@dataclass
class SplitFile:
    """What was written for one split."""

    path: Path
    rows: int
    nbytes: int  # Arrow (in-memory) size of the rows
    ipc_path: Path | None = None


class SplitParquetSink:
    """Buffers rows per split and appends them to that split's Parquet file in batches."""

    def __init__(
        self,
        paths: dict[str, Path],
        schema: pa.Schema,
        batch_rows: int = 64,
        ipc_dir: Path | None = None,
    ) -> None:
        self.paths = paths
        self.schema = schema
        self.batch_rows = batch_rows
        self.ipc_dir = ipc_dir
        self._buf: dict[str, list[dict]] = {s: [] for s in paths}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._ipc: dict[str, pa.ipc.RecordBatchStreamWriter] = {}
        self._rows = dict.fromkeys(paths, 0)
        self._nbytes = dict.fromkeys(paths, 0)

    def add(self, split: str, row: dict[str, Any]) -> None:
        """Queue one row for `split`; flushes a batch when the buffer is full."""
        self._buf[split].append(row)
        if len(self._buf[split]) >= self.batch_rows:
            self._flush(split)

    def _open(self, split: str) -> None:
        path = self.paths[split]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writers[split] = pq.ParquetWriter(path, self.schema, compression="zstd")
        if self.ipc_dir is not None:
            self.ipc_dir.mkdir(parents=True, exist_ok=True)
            self._ipc[split] = pa.ipc.new_stream(str(self.ipc_dir / f"{split}.arrow"), self.schema)

    def _flush(self, split: str) -> None:
        rows = self._buf[split]
        if not rows:
            return
        if split not in self._writers:
            self._open(split)
        table = pa.Table.from_pylist(rows, schema=self.schema)
        self._writers[split].write_table(table)
        if split in self._ipc:
            for batch in table.to_batches():
                self._ipc[split].write_batch(batch)
        self._rows[split] += table.num_rows
        self._nbytes[split] += table.nbytes
        self._buf[split] = []

    def close(self) -> dict[str, SplitFile]:
        """Flush everything; returns the splits that got rows (in `paths` order), each with its file."""
        out: dict[str, SplitFile] = {}
        for split in self.paths:
            self._flush(split)
            if split not in self._writers:
                continue
            self._writers[split].close()
            ipc_path = None
            if split in self._ipc:
                self._ipc[split].close()
                ipc_path = self.ipc_dir / f"{split}.arrow"
            out[split] = SplitFile(self.paths[split], self._rows[split], self._nbytes[split], ipc_path)
        return out


def card_configs(files: dict[str, SplitFile], root: Path) -> list[dict[str, Any]]:
    """Dataset-card `configs` block: each written split -> its Parquet file (relative to `root`)."""
    data_files = [{"split": s, "path": f.path.relative_to(root).as_posix()} for s, f in files.items()]
    return [{"config_name": "default", "data_files": data_files}]


def card_splits(files: dict[str, SplitFile]) -> dict[str, Any]:
    """Dataset-card `dataset_info` split sizes of the written splits."""
    return {"splits": [{"name": s, "num_bytes": f.nbytes, "num_examples": f.rows} for s, f in files.items()]}
