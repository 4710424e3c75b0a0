"""vlmevalkit TSV and lmms-eval task: parse them the way those tools do and check every row."""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.export.splits import SPLITS
from schemas import LETTERS


def _toliststr(s):
    """VLMEvalKit's parser for list-valued cells (it eval()s strings that look like lists)."""
    if isinstance(s, str) and s[:1] == "[" and s[-1:] == "]":
        return [str(x) for x in ast.literal_eval(s)]
    return [s]


@pytest.fixture(scope="module")
def vlm(exports):
    return exports("vlmevalkit")


@pytest.fixture(scope="module")
def lmms(exports):
    return exports("lmms-eval")


def test_vlmevalkit_tsv(vlm, store_samples):
    for split in SPLITS:
        df = pd.read_csv(vlm.out / f"MIFG_QA_{split.upper()}.tsv", sep="\t")  # VLMEvalKit's load() for .tsv
        assert len(df) == vlm.facts.rows(split) > 0
        assert list(df["index"]) == list(range(len(df)))
        for _, row in df.iterrows():
            src = store_samples[row["id"]]
            images, paths = _toliststr(row["image"]), _toliststr(row["image_path"])
            assert len(images) == len(paths) == len(src.images)
            assert json.loads(row["image"]) == images  # also plain JSON
            for b64, img, meta in zip(images, src.images, src.image_meta, strict=True):
                data = base64.b64decode(b64)
                assert data == img.bytes
                assert Image.open(io.BytesIO(data)).size == (meta.width, meta.height)
            options = {c: row[c] for c in LETTERS if not pd.isna(row[c])}  # as ImageMCQDataset builds them
            assert list(options.values()) == src.options and list(options) == list(LETTERS[: len(src.options)])
            assert row["answer"] == src.answer and row["answer"] in options
            assert row["question"] == src.question
            assert row["category"] == src.task_type.value and row["l2-category"] == src.domain.value
    # VLMEvalKit decodes a name once to img_root/<name> and reuses the file: one name, one content,
    # and the name is that content's hash (nothing about which image was changed)
    content: dict[str, bytes] = {}
    for s in SPLITS:
        df = pd.read_csv(vlm.out / f"MIFG_QA_{s.upper()}.tsv", sep="\t")
        for images, paths in zip(df["image"], df["image_path"], strict=True):
            for b64, name in zip(_toliststr(images), _toliststr(paths), strict=True):
                data = base64.b64decode(b64)
                assert content.setdefault(name, data) == data
                assert name == f"{hashlib.sha256(data).hexdigest()[:16]}.png"
    assert len(set(content.values())) == len(content)


def _load_task(task_dir: Path) -> dict:
    """Parse the task YAML with lmms-eval's `!function module.name` tag resolved next to the YAML."""

    def function(loader, node):
        module_name, fn = loader.construct_scalar(node).rsplit(".", 1)
        path = task_dir / f"{module_name}.py"
        spec = importlib.util.spec_from_file_location(f"lmms_task_{module_name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return getattr(module, fn)

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", function)
    return yaml.load((task_dir / "mifg_qa.yaml").read_text(), Loader=Loader)


def test_lmms_eval_task_yaml(lmms):
    task = _load_task(lmms.out)
    assert task["task"] == "mifg_qa" and task["output_type"] == "generate_until"
    assert task["dataset_path"] == "parquet" and task["test_split"] == "test"
    assert task["doc_to_target"] == "answer"
    assert [m["metric"] for m in task["metric_list"]][0] == "exact_match"
    for name in ("doc_to_visual", "doc_to_text", "process_results"):
        assert callable(task[name])
    for split, path in task["dataset_kwargs"]["data_files"].items():
        assert Path(path).is_absolute() and Path(path) == lmms.out.resolve() / "data" / f"{split}.parquet"


def _without_media(ds: datasets.Dataset) -> datasets.Dataset:
    """What lmms-eval hands doc_to_text and process_results: the docs with every Image column removed.

    lmms_eval/api/task.py (`dataset_no_image`) drops features that are an Image, or a Sequence / List
    of Image, and builds prompts from those docs.
    """
    drop = [
        name
        for name, f in ds.features.items()
        if isinstance(f, datasets.Image) or isinstance(getattr(f, "feature", None), datasets.Image)
    ]
    assert "images" in drop
    return ds.remove_columns(drop)


def test_lmms_eval_functions_on_loaded_docs(lmms, store_samples, tmp_path):
    task = _load_task(lmms.out)
    # lmms-eval: datasets.load_dataset(path=dataset_path, **dataset_kwargs)
    ds = datasets.load_dataset(task["dataset_path"], cache_dir=str(tmp_path), **task["dataset_kwargs"])
    docs = ds[task["test_split"]]
    assert docs.num_rows == lmms.facts.rows("test") > 0
    kwargs = task["lmms_eval_specific_kwargs"]["default"]
    results = []
    for doc, bare in zip(docs, _without_media(docs), strict=True):
        src = store_samples[doc["id"]]
        visuals = task["doc_to_visual"](doc)
        assert len(visuals) == len(src.images)
        for vis, img in zip(visuals, src.images, strict=True):
            expected = Image.open(io.BytesIO(img.bytes)).convert("RGB")
            assert vis.mode == "RGB" and vis.tobytes() == expected.tobytes()
        text = task["doc_to_text"](bare, kwargs)
        assert text == task["doc_to_text"](doc, kwargs)
        assert src.question in text and text.endswith(kwargs["post_prompt"])
        for i, opt in enumerate(src.options):
            assert f"{LETTERS[i]}. {opt}" in text
        assert "<image>" not in text
        right = task["process_results"](bare, [f"{doc[task['doc_to_target']]}"])
        wrong_letter = next(c for c in LETTERS[: len(src.options)] if c != src.answer)
        wrong = task["process_results"](bare, [f"The answer is {wrong_letter}."])
        assert right["exact_match"] == 1.0 and wrong["exact_match"] == 0.0
        results.append(right["by_task_type"])
    agg = next(m["aggregation"] for m in task["metric_list"] if m["metric"] == "by_task_type")
    assert agg(results) == 1.0
