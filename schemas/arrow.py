"""The explicit Arrow schema of a shard row, and Sample <-> row conversion.

The schema carries Hugging Face `datasets` feature metadata so that
`datasets.load_dataset("parquet", data_files=...)` decodes `images` as a list of images.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pyarrow as pa

from schemas.sample import SCHEMA_VERSION, Sample

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
IMAGE_META_STRUCT = pa.struct(
    [
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("source", pa.string()),
        ("phash", pa.string()),
        ("license", pa.string()),
        ("role", pa.string()),
    ]
)
BOX_STRUCT = pa.struct([("image_index", pa.int32()), ("bbox", pa.list_(pa.float64(), 4))])
_USAGE_FIELDS = [
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("calls", pa.int32()),
    ("cost_usd", pa.float64()),
]
USAGE_PART_STRUCT = pa.struct([("name", pa.string()), *_USAGE_FIELDS])
USAGE_STRUCT = pa.struct([*_USAGE_FIELDS, ("parts", pa.list_(USAGE_PART_STRUCT))])
VERIFIER_STRUCT = pa.struct(
    [
        ("answer", pa.string()),
        ("agrees", pa.bool_()),
        ("method", pa.string()),
        ("confidence", pa.float32()),
        ("notes", pa.string()),
        ("votes", pa.list_(pa.string())),
        ("vote_share", pa.float32()),
        ("model", pa.string()),
    ]
)
PROBE_STRUCT = pa.struct(
    [
        ("name", pa.string()),
        ("tries", pa.int32()),
        ("right", pa.int32()),
        ("p_value", pa.float32()),
        ("rejected", pa.bool_()),
    ]
)
CRITIC_STRUCT = pa.struct(
    [
        ("verdict", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("feedback", pa.string()),
        ("probes", pa.list_(PROBE_STRUCT)),
    ]
)
PROVENANCE_STRUCT = pa.struct(
    [
        ("backend", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("seed", pa.int64()),
        ("run_id", pa.string()),
        ("construction", pa.string()),
        ("verifier", VERIFIER_STRUCT),
        ("critic", CRITIC_STRUCT),
        ("revisions", pa.int32()),
        ("usage", USAGE_STRUCT),
        ("created_at", pa.string()),
    ]
)
DECISION_STRUCT = pa.struct(
    [("annotator", pa.string()), ("decision", pa.string()), ("reason", pa.string()), ("at", pa.string())]
)
REVIEW_STRUCT = pa.struct(
    [("decisions", pa.list_(DECISION_STRUCT)), ("verified_at", pa.string()), ("original", pa.string())]
)

_FIELDS = [
    ("id", pa.string()),
    ("schema_version", pa.int32()),
    ("images", pa.list_(IMAGE_STRUCT)),
    ("image_meta", pa.list_(IMAGE_META_STRUCT)),
    ("question", pa.string()),
    ("options", pa.list_(pa.string())),
    ("answer", pa.string()),
    ("task_type", pa.string()),
    ("domain", pa.string()),
    ("rationale", pa.string()),
    ("evidence", pa.list_(BOX_STRUCT)),
    ("provenance", PROVENANCE_STRUCT),
    ("status", pa.string()),
    ("review", REVIEW_STRUCT),
]


@functools.cache
def sample_arrow_schema() -> pa.Schema:
    """Arrow schema of a shard, with `datasets` feature metadata and the schema version."""
    schema = pa.schema(_FIELDS)
    hf = {"info": {"features": _hf_features(schema)}}
    return schema.with_metadata(
        {b"huggingface": json.dumps(hf).encode(), b"mifg_schema_version": str(SCHEMA_VERSION).encode()}
    )


def _hf_features(schema: pa.Schema) -> dict[str, Any]:
    """`datasets` features JSON: derived from the Arrow types, with `images` as a list of Image()."""
    from datasets import Features  # local import: only needed to build the metadata once

    feats = Features.from_arrow_schema(schema).to_dict()
    feats["images"] = {"feature": {"_type": "Image"}, "_type": "List"}
    return feats


def sample_to_row(sample: Sample) -> dict[str, Any]:
    """Plain-Python row (Arrow-ready) of a sample."""
    row = sample.model_dump(mode="python")
    row["task_type"] = sample.task_type.value
    row["domain"] = sample.domain.value
    row["status"] = sample.status.value
    row["evidence"] = [{"image_index": b.image_index, "bbox": list(b.bbox)} for b in sample.evidence]
    return row


def row_to_sample(row: dict[str, Any]) -> Sample:
    """Sample from a row read back from Parquet (any supported schema version)."""
    from schemas.migrate import upgrade_row

    row = upgrade_row(dict(row))
    row["evidence"] = [
        {"image_index": b["image_index"], "bbox": tuple(float(c) for c in b["bbox"])} for b in row.get("evidence") or []
    ]
    if row.get("review") is None:
        row.pop("review", None)
    return Sample.model_validate(row)


def samples_to_table(samples: list[Sample]) -> pa.Table:
    """Arrow table of samples with the explicit schema."""
    schema = sample_arrow_schema()
    return pa.Table.from_pylist([sample_to_row(s) for s in samples], schema=schema)


def table_to_samples(table: pa.Table) -> list[Sample]:
    """Samples from an Arrow table written with any supported schema version."""
    return [row_to_sample(r) for r in table.to_pylist()]
