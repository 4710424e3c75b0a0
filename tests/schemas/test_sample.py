"""The data contract: validation rules, content ids, Arrow round trip, `datasets` decoding."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from schemas import Box, Sample, row_to_sample, sample_arrow_schema, samples_to_table, table_to_samples
from schemas.migrate import SchemaVersionError, upgrade_row
from tests.factories import make_sample


def _edit(sample: Sample, **changes) -> dict:
    data = sample.model_dump()
    data.update(changes)
    data["id"] = ""
    return data


def test_id_is_content_hash_stable_and_ignores_answer_and_status():
    a, b = make_sample(3), make_sample(3)
    assert a.id == b.id and len(a.id) == 32
    other = Sample.model_validate(_edit(a, answer="B" if a.answer == "A" else "A", status="accepted"))
    assert other.id == a.id
    reworded = Sample.model_validate(_edit(a, question="A different question?"))
    assert reworded.id != a.id


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"answer": "E"}, "not one of the option letters"),
        ({"answer": ""}, "not one of the option letters"),
        ({"answer": "AB"}, "not one of the option letters"),
        ({"question": "   "}, "question is empty"),
        ({"options": ["Image 1", "Image 1"]}, "not distinct"),
        ({"options": ["only"]}, "need 2"),
    ],
)
def test_invalid_samples_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        Sample.model_validate(_edit(make_sample(1), **changes))


def test_image_count_and_meta_must_match():
    s = make_sample(2, n_images=3)
    with pytest.raises(ValidationError, match="image_meta has 2 entries"):
        Sample.model_validate(_edit(s, image_meta=s.model_dump()["image_meta"][:2]))
    with pytest.raises(ValidationError, match="needs 2"):
        Sample.model_validate(
            _edit(s, images=s.model_dump()["images"][:1], image_meta=s.model_dump()["image_meta"][:1])
        )


def test_evidence_boxes_are_checked():
    with pytest.raises(ValidationError, match="in \\[0, 1\\]"):
        Box(image_index=0, bbox=(0.1, 0.1, 1.2, 0.5))
    with pytest.raises(ValidationError, match="x1<x2"):
        Box(image_index=0, bbox=(0.5, 0.1, 0.4, 0.5))
    s = make_sample(4, n_images=2)
    with pytest.raises(ValidationError, match="only 2 images"):
        Sample.model_validate(_edit(s, evidence=[{"image_index": 2, "bbox": (0.1, 0.1, 0.2, 0.2)}]))


def test_arrow_round_trip_is_lossless():
    samples = [make_sample(i, n_images=2 + i % 3) for i in range(4)]
    table = samples_to_table(samples)
    assert table.schema.equals(sample_arrow_schema(), check_metadata=True)
    assert table_to_samples(table) == samples


def test_schema_types_are_explicit():
    schema = sample_arrow_schema()
    assert schema.field("images").type == pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    assert schema.metadata[b"mifg_schema_version"] == b"2"
    assert b'"images": {"feature": {"_type": "Image"}' in schema.metadata[b"huggingface"]


def test_rows_from_the_future_are_refused_with_the_id():
    row = samples_to_table([make_sample(0)]).to_pylist()[0]
    row["schema_version"] = 99
    with pytest.raises(SchemaVersionError, match=row["id"]):
        row_to_sample(row)
    assert upgrade_row({"schema_version": 1})["schema_version"] == 2


def test_version_1_rows_read_with_empty_votes_probes_and_parts():
    """Shards written before the verifier's votes, the critic's probes and per-agent usage still read."""
    row = samples_to_table([make_sample(0)]).to_pylist()[0]
    prov = row["provenance"]
    for key, field in (("usage", "parts"), ("verifier", "votes"), ("critic", "probes")):
        del prov[key][field]
    del prov["verifier"]["vote_share"], prov["verifier"]["model"]
    row["schema_version"] = 1
    s = row_to_sample(row)
    assert s.provenance.usage.parts == [] and s.provenance.verifier.votes == [] and s.provenance.critic.probes == []


def test_image_entry_names_and_hashes_the_bytes():
    import hashlib

    from schemas import image_entry

    image, meta = image_entry(b"png bytes", width=4, height=3, source="test:x", role="original")
    sha = hashlib.sha256(b"png bytes").hexdigest()
    assert (image.path, meta.sha256, meta.width, meta.height, meta.source) == (f"{sha[:16]}.png", sha, 4, 3, "test:x")
    given, _ = image_entry(b"png bytes", width=4, height=3, source="s", sha256="ab" * 32, path="keep.png")
    assert given.path == "keep.png"


def test_image_file_names_are_content_hashes():
    from schemas import image_file_name

    sha = "0123456789abcdef" * 4
    assert image_file_name(sha) == "0123456789abcdef.png"
    assert image_file_name(sha, ".JPG") == "0123456789abcdef.jpg"
    assert image_file_name(sha, ".variant") == image_file_name(sha, "") == "0123456789abcdef.png"
