"""`mifg export` end to end: determinism, summary, bad input, unverified input, --push-to-hub."""

from __future__ import annotations

import json
import random

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.export import FORMATS, ExportConfig, run_export
from pipeline.export import hub as hub_module
from pipeline.export.splits import SPLITS
from pipeline.shard_store import ShardWriter
from schemas.errors import ConfigError
from tests.export.conftest import add_noise, make_store, tree_hashes


def errors(capsys) -> list[str]:
    """The error lines `mifg` printed (progress lines are also on stderr)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("mifg: error")]


def regenerated(samples, root, seed: int = 7, per_shard: int = 7):
    """The same samples as another generation might store them: shuffled, other shards, another tag."""
    samples = list(samples)
    random.Random(seed).shuffle(samples)
    w = ShardWriter(root, "regenerated")
    for k in range(0, len(samples), per_shard):
        w.write(samples[k : k + per_shard])
    return root


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_same_input_and_seed_give_identical_bytes(fmt, store, store_samples, tmp_path, mifg, capsys):
    out = tmp_path / "out"
    args = ["export", str(store), "--out", str(out), "--format", fmt, "--seed", "3", "--test-fraction", "0.2"]
    assert mifg(args) == 0
    first = tree_hashes(out)
    assert mifg([*args, "--overwrite"]) == 0  # same folder again: nothing may differ, not even the card
    assert tree_hashes(out) == first
    # the same samples spread over other shards in another order: rows go out sorted by id, same bytes
    shuffled = regenerated(store_samples.values(), tmp_path / "shuffled")
    assert mifg(["export", str(shuffled), *args[2:], "--overwrite"]) == 0
    assert tree_hashes(out) == first
    elsewhere = tmp_path / "elsewhere"
    assert mifg([*args[:3], str(elsewhere), *args[4:]]) == 0
    other = tree_hashes(elsewhere)
    # only lmms-eval's task YAML names its data by absolute path
    differ = {k for k in first if first[k] != other.get(k)}
    assert differ == ({"mifg_qa.yaml"} if fmt == "lmms-eval" else set())
    summary = capsys.readouterr().out
    assert f"mifg export: 40 samples ({fmt})" in summary and "train" in summary and "test" in summary


def _split_ids(fmt: str, out) -> dict[str, list[str]]:
    """Sample ids of each exported split, in file order."""
    if fmt == "vlmevalkit":
        return {s: list(pd.read_csv(out / f"MIFG_QA_{s.upper()}.tsv", sep="\t")["id"]) for s in SPLITS}
    if fmt == "verl":
        infos = {s: pq.read_table(out / f"{s}.parquet").column("extra_info").to_pylist() for s in SPLITS}
        return {s: [info["id"] for info in infos[s]] for s in SPLITS}
    name = "{s}-00000-of-00001.parquet" if fmt == "hf" else "{s}.parquet"
    return {s: pq.read_table(out / "data" / name.format(s=s)).column("id").to_pylist() for s in SPLITS}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_rows_are_in_id_order_within_each_split(fmt, exports):
    result = exports(fmt)
    ids = _split_ids(fmt, result.out)
    for split, split_ids in ids.items():
        assert split_ids and split_ids == sorted(split_ids), split
        assert all(result.plan.split_of[i] == split for i in split_ids)


def test_spilled_second_pass_gives_the_same_bytes(store, store_samples, tmp_path, monkeypatch):
    """A store too big to sort in memory goes through id-range buckets on disk: same export, no leftovers."""
    from pipeline.export import scan

    cfg = dict(fmt="verl", test_fraction=0.25, seed=1)
    run_export(ExportConfig(store=store, out=tmp_path / "memory", **cfg), progress=None)
    spilled: list[int] = []
    real = scan.iter_sorted

    def watch(items, spill_dir, bucket_bytes=None):
        for sample in real(items, spill_dir, bucket_bytes):
            spilled.append(len(list(spill_dir.glob("*.pkl"))) if spill_dir.exists() else 0)
            yield sample

    monkeypatch.setattr(scan, "SPILL_BUCKET_BYTES", 20_000)  # a few samples per bucket
    monkeypatch.setattr("pipeline.export.exporter.iter_sorted", watch)
    shuffled = regenerated(store_samples.values(), tmp_path / "shuffled", seed=11, per_shard=9)
    run_export(ExportConfig(store=shuffled, out=tmp_path / "spilled", **cfg), progress=None)
    assert max(spilled) > 1  # it really went through several bucket files
    assert tree_hashes(tmp_path / "spilled") == tree_hashes(tmp_path / "memory")
    assert not list(tmp_path.glob(".*"))  # staging, spill folder: all gone


def test_summary_counts_per_split_and_task_type(store, tmp_path, mifg, capsys):
    out = tmp_path / "o"
    assert mifg(["export", str(store), "--out", str(out), "-f", "hf", "--test-fraction", "0.25"]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "export.json").read_text())
    header = next(line for line in text.splitlines() if line.strip().startswith("split"))
    types = header.split()[3:]
    assert types == sorted(report["by_task_type"]["train"])
    for split in ("train", "test"):
        line = next(line for line in text.splitlines() if line.strip().startswith(split + " "))
        cells = line.split()
        assert int(cells[1]) == report["samples"][split]
        assert [int(c) for c in cells[3:]] == [report["by_task_type"][split].get(t, 0) for t in types]
    assert str(out) in text and "files: README.md" in text
    assert report["samples"]["test"] == 10  # 25% of 40, stratified by task type


def test_bad_rows_are_counted_and_do_not_stop_the_export(tmp_path, capsys):
    root = tmp_path / "store"
    make_store(root, n=12)
    noise = add_noise(root)
    result = run_export(ExportConfig(store=root, out=tmp_path / "o", fmt="verl"), progress=None)
    err = capsys.readouterr().err
    assert result.facts.total == 12
    skipped = result.facts.skipped
    assert skipped["status_rejected"] == 1 and skipped["status_candidate"] == 1
    assert skipped["invalid_row"] == 1 and skipped["unreadable_shard"] == 1
    assert "broken-00000.parquet: row 0: invalid sample" in err and "junk-00000.parquet: unreadable shard" in err
    assert noise["rejected"] not in result.plan.split_of and noise["candidate"] not in result.plan.split_of


def test_unverified_store_needs_the_flag(tmp_path, mifg, capsys):
    from pipeline.shard_store import ShardWriter
    from tests.factories import make_sample

    run_dir = tmp_path / "run"
    ShardWriter(run_dir, "gen").write([make_sample(i, n_images=2, source=f"s{i}") for i in range(6)])
    assert mifg(["export", str(run_dir), "--out", str(tmp_path / "o")]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "no samples to export" in err[0] and "--include-unverified" in err[0]
    assert mifg(["export", str(run_dir), "--out", str(tmp_path / "o"), "--include-unverified"]) == 0
    captured = capsys.readouterr()
    assert "unverified candidates" in captured.err
    card = (tmp_path / "o" / "README.md").read_text()
    assert "Unverified candidates are included" in card


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "csv"], "--format 'csv'"),
        (["--test-fraction", "1.5"], "--test-fraction"),
        (["--contamination-threshold", "99"], "--contamination-threshold"),
    ],
)
def test_bad_flags_are_one_line(extra, message, store, tmp_path, mifg, capsys):
    assert mifg(["export", str(store), "--out", str(tmp_path / "o"), *extra]) == 2
    err = errors(capsys)
    assert len(err) == 1 and message in err[0]


def test_missing_store_and_busy_out(store, tmp_path, mifg, capsys):
    assert mifg(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    not_store = tmp_path / "empty"
    not_store.mkdir()
    assert mifg(["export", str(not_store), "--out", str(tmp_path / "o")]) == 2
    assert "not a mifg shard directory" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert mifg(["export", str(store), "--out", str(busy)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (busy / "keep.txt").exists()
    assert mifg(["export", str(store), "--out", str(store.parent)]) == 2  # would contain the input
    assert "must not be the input store" in capsys.readouterr().err


def test_failed_export_leaves_previous_output_alone(store, tmp_path, monkeypatch):
    out = tmp_path / "o"
    run_export(ExportConfig(store=store, out=out, fmt="trl"), progress=None)
    before = tree_hashes(out)

    def boom(self, facts):
        raise RuntimeError("disk full")

    monkeypatch.setattr("pipeline.export.trl_format.TrlWriter.close", boom)
    with pytest.raises(RuntimeError):
        run_export(ExportConfig(store=store, out=out, fmt="trl", overwrite=True, seed=5), progress=None)
    assert tree_hashes(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]  # no staging left behind


def test_push_to_hub_without_token_fails_before_work(store, tmp_path, monkeypatch, mifg, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub_module, "hub_token", lambda: None)
    out = tmp_path / "o"
    assert mifg(["export", str(store), "--out", str(out), "--push-to-hub", "me/mifg"]) == 2
    err = errors(capsys)
    assert len(err) == 1 and "HF_TOKEN" in err[0]
    assert not out.exists()
    with pytest.raises(ConfigError, match="user/name"):
        hub_module.push_to_hub(out, "not-a-repo-id", token="x")


def test_push_to_hub_uploads_the_folder(store, tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

            class Info:
                commit_url = f"https://huggingface.co/datasets/{kwargs['repo_id']}/commit/abc"

            return Info()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    out = tmp_path / "o"
    result = run_export(
        ExportConfig(store=store, out=out, fmt="hf", push_to_hub="me/mifg", private=True), progress=None
    )
    assert result.pushed == "https://huggingface.co/datasets/me/mifg/commit/abc"
    assert calls[0] == ("init", "hf_test_token")
    assert calls[1] == ("create_repo", "me/mifg", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls[2][1]
    assert upload["repo_id"] == "me/mifg" and upload["repo_type"] == "dataset"
    assert upload["folder_path"] == str(out) and "dataset_dict/**" in upload["ignore_patterns"]
    assert "pushed: https://huggingface.co/datasets/me/mifg" in result.summary()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_no_test_split_still_loads(fmt, store, tmp_path):
    out = tmp_path / "o"
    result = run_export(ExportConfig(store=store, out=out, fmt=fmt, test_fraction=0.0), progress=None)
    assert result.facts.rows("test") == 0 and result.facts.rows("train") == 40
    assert not [p for p in out.rglob("*") if "test" in p.name.lower() and p.name != "test"]  # no empty test files
    if fmt in ("hf", "trl", "lmms-eval"):
        import datasets

        dd = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
        assert list(dd) == ["train"] and dd["train"].num_rows == 40
    if fmt == "hf":
        assert list(datasets.load_from_disk(str(out / "dataset_dict"))) == ["train"]
    if fmt == "verl":
        assert 'data.val_files="$DIR/train.parquet"' in (out / "run_verl_grpo.sh").read_text()
    if fmt == "lmms-eval":
        assert "test_split: train" in (out / "mifg_qa.yaml").read_text()


def test_identical_images_under_two_source_ids_stay_in_one_split(tmp_path):
    """One photo found under two paths (two source ids, same bytes) must not leak across splits."""
    from pipeline.shard_store import ShardWriter
    from schemas import Status
    from tests.factories import make_sample

    samples = [make_sample(i, source=f"dir:copy{i % 2}/photo{i // 2}.jpg") for i in range(20)]
    # samples 2k and 2k+1 come from different "paths" but carry the very same images
    for k in range(10):
        twin = samples[2 * k].model_copy(deep=True)
        twin.image_meta = [m.model_copy(update={"source": f"dir:copy1/photo{k}.jpg"}) for m in twin.image_meta]
        twin.question = "Which image has a small red mark?"
        twin.id = ""
        samples[2 * k + 1] = type(twin).model_validate(twin.model_dump())
    store = tmp_path / "store"
    ShardWriter(store, "verified").write([s.model_copy(update={"status": Status.ACCEPTED}) for s in samples])
    result = run_export(ExportConfig(store=store, out=tmp_path / "out", fmt="hf", test_fraction=0.3), progress=None)
    split_of = result.plan.split_of
    for k in range(10):
        assert split_of[samples[2 * k].id] == split_of[samples[2 * k + 1].id]
    assert set(split_of.values()) == {"train", "test"}
