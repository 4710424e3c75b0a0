"""Data layouts the trainer reads, and TrainConfig from TOML / overrides."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.shard_store import ShardWriter
from rl.config import load_config, parse_override
from rl.data import DataStream, load_splits, split_train_eval
from schemas import Status
from schemas.errors import ConfigError, InputError
from tests.factories import make_sample


def _accepted(seed):
    s = make_sample(seed, source=f"test:photo{seed % 5}")
    s.status = Status.ACCEPTED
    return s


def test_shard_store_needs_verified_rows(tmp_path):
    ShardWriter(tmp_path / "cand").write([make_sample(i) for i in range(3)])
    with pytest.raises(InputError, match="mifg verified"):
        load_splits(tmp_path / "cand")
    splits, report = load_splits(tmp_path / "cand", allow_unverified=True)
    assert len(splits["all"]) == 3
    ShardWriter(tmp_path / "ver").write([_accepted(i) for i in range(10)] + [make_sample(99)])
    splits, report = load_splits(tmp_path / "ver")
    assert len(splits["all"]) == 10 and report.unverified == 1
    train, held = split_train_eval(splits, 0.2, seed=0)
    assert len(train) + len(held) == 10 and held
    assert not {s.sources[0] for s in train} & {s.sources[0] for s in held}  # grouped by source photo


def test_tags_named_like_splits_are_splits(demo_store):
    splits, report = load_splits(demo_store)
    assert report.rows == {"train": 48, "test": 16}
    train, held = split_train_eval(splits, 0.1)
    assert len(train) == 48 and len(held) == 16


def test_the_pipeline_made_demo_task_reads_as_split_by_source(pipeline_demo_store):
    splits, report = load_splits(pipeline_demo_store)
    assert report.layout == "hf export" and set(splits) == {"train", "test"}
    assert len(splits["train"]) > 200 and len(splits["test"]) > 30
    assert not {s.sources[0] for s in splits["train"]} & {s.sources[0] for s in splits["test"]}
    for s in splits["train"][:20]:
        assert s.task_type.value == "which_differs" and len(s.images) == 2 and s.options == ["Image 1", "Image 2"]


def test_hf_and_verl_export_layouts(tmp_path):
    from pipeline.export.hf_format import hf_row, hf_schema
    from pipeline.export.verl_format import verl_row, verl_schema

    samples = [_accepted(i) for i in range(4)]
    (tmp_path / "hf" / "data").mkdir(parents=True)
    for split, part in (("train", samples[:3]), ("test", samples[3:])):
        table = pa.Table.from_pylist([hf_row(s) for s in part], schema=hf_schema())
        pq.write_table(table, tmp_path / "hf" / "data" / f"{split}-00000-of-00001.parquet")
    splits, report = load_splits(tmp_path / "hf")
    assert report.layout == "hf export" and report.rows == {"train": 3, "test": 1}
    assert splits["train"][0].id == samples[0].id and splits["train"][0].images[0].bytes == samples[0].images[0].bytes

    (tmp_path / "verl").mkdir()
    rows = [verl_row(s, "train", i) for i, s in enumerate(samples[:3])]
    pq.write_table(pa.Table.from_pylist(rows, schema=verl_schema()), tmp_path / "verl" / "train.parquet")
    bad = dict(rows[0], reward_model={"style": "rule", "ground_truth": "??"})
    pq.write_table(pa.Table.from_pylist([bad], schema=verl_schema()), tmp_path / "verl" / "test.parquet")
    splits, report = load_splits(tmp_path / "verl")
    got = splits["train"][1]
    assert report.bad == 1 and "test" not in splits  # the bad row is skipped and counted
    assert (got.question, got.options, got.answer) == (samples[1].question, samples[1].options, samples[1].answer)


def test_save_to_disk_layout(tmp_path):
    import datasets

    from pipeline.export.hf_format import hf_features_dict, hf_row

    feats = datasets.Features.from_dict(hf_features_dict())
    ds = datasets.Dataset.from_list([hf_row(_accepted(i)) for i in range(3)], features=feats)
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    splits, report = load_splits(tmp_path / "dd")
    assert report.layout == "save_to_disk" and report.rows == {"train": 3, "test": 1}


def test_missing_path_and_unknown_layout(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_splits(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a shard store"):
        load_splits(tmp_path / "empty")


def test_data_stream_resumes_exactly():
    a = DataStream(7, seed=3)
    first = a.next(10)
    b = DataStream(7, seed=3)
    b.load_state(a.state())
    assert a.next(9) == b.next(9) and sorted(first[:7]) == list(range(7))


def test_toml_and_overrides(tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text('steps = 7\n[env]\ntools = ["visual_confirmation"]\n[loss]\nagg = "seq-mean-token-mean"\n')
    cfg = load_config(toml, [parse_override("loss.kl_coef=0.05"), parse_override("policy.kind=tiny")])
    assert cfg.steps == 7 and cfg.env.tools == ("visual_confirmation",) and cfg.loss.kl_coef == 0.05
    toml.write_text("stepz = 7\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_config(toml)
    with pytest.raises(ConfigError, match="agg"):
        load_config(None, [parse_override('loss.agg="sum"')])
    with pytest.raises(ConfigError, match="integer"):
        load_config(None, [parse_override("steps=1.5")])


def test_entropy_bonus_is_refused_for_the_hf_policy_instead_of_silently_ignored():
    from rl.config import TrainConfig
    from rl.policies.base import PolicyConfig
    from schemas.errors import ConfigError

    cfg = TrainConfig(policy=PolicyConfig(kind="hf", model_path="x"))
    cfg.loss.entropy_coef = 0.03
    with pytest.raises(ConfigError, match="tiny policy only"):
        cfg.validate()
    cfg.loss.entropy_coef = 0.0
    cfg.validate()
