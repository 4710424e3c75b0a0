"""verl format: RL Parquet as RLHFDataset reads it, the reward function, the tools and their config."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import re
import sys

import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.export.splits import SPLITS


@pytest.fixture(scope="module")
def verl(exports):
    return exports("verl")


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reward(verl):
    return _load(verl.out / "mifg_reward.py", "mifg_reward_under_test")


@pytest.fixture(scope="module")
def tools(verl):
    return _load(verl.out / "mifg_tools.py", "mifg_tools")


def _rlhf_messages(prompt, n_images):
    """What verl's RLHFDataset does with a prompt: split text on <image>/<video> into typed content."""
    messages = []
    for msg in prompt:
        content = []
        for seg in re.split("(<image>|<video>)", msg["content"]):
            if seg == "<image>":
                content.append({"type": "image"})
            elif seg == "<video>":
                content.append({"type": "video"})
            elif seg:
                content.append({"type": "text", "text": seg})
        messages.append({"role": msg["role"], "content": content})
    return messages


def test_parquet_rows_follow_verls_rules(verl, store_samples):
    for split in SPLITS:
        df = pd.read_parquet(verl.out / f"{split}.parquet")
        assert list(df.columns) == [
            "data_source", "prompt", "images", "ability", "reward_model", "extra_info", "agent_name",
        ]  # fmt: skip
        assert len(df) == verl.facts.rows(split) > 0
        for i, row in df.iterrows():
            images = list(row["images"])
            text = "".join(m["content"] for m in row["prompt"])
            assert text.count("<image>") == len(images)  # verl's placeholder rule
            blocks = _rlhf_messages(row["prompt"], len(images))
            assert sum(b["type"] == "image" for m in blocks for b in m["content"]) == len(images)
            info = row["extra_info"]
            src = store_samples[info["id"]]
            assert len(images) == len(src.images)
            assert [im["bytes"] for im in images] == [im.bytes for im in src.images]
            assert row["reward_model"] == {"style": "rule", "ground_truth": src.answer}
            assert info["index"] == i and info["split"] == split
            assert info["question"] == src.question and info["answer"] == src.answer
            assert row["agent_name"] == "tool_agent" and row["data_source"] == "mifg_qa"
            for tool in ("visual_reflection", "visual_confirmation"):
                create = info["tools_kwargs"][tool]["create_kwargs"]
                assert create["image_count"] == len(images) == len(create["images"])
                assert [list(s) for s in create["sizes"]] == [[m.width, m.height] for m in src.image_meta]
            # the images appear in the prompt in order, each with its label
            labels = re.findall(r"Image (\d+): <image>", text)
            assert labels == [str(k + 1) for k in range(len(images))]


def test_images_load_as_verl_does(verl):
    df = pd.read_parquet(verl.out / "train.parquet")
    for image in df.iloc[0]["images"]:  # verl's process_image opens {"bytes": ...} with PIL
        Image.open(io.BytesIO(image["bytes"])).convert("RGB")


def test_reward_answer_extraction(reward):
    ex = reward.extract_answer
    assert ex("<think>hm</think><answer>B</answer>") == "B"
    assert ex("<answer> (c) </answer>") == "C"
    assert ex("<answer>Option D: the left one</answer>") == "D"
    assert ex("first <answer>A</answer> then <answer>C</answer>") == "C"
    assert ex("I compared them, so the answer is C.") == "C"
    assert ex("Image 2 shows it, answer: B") == "B"
    assert ex("no letter here") is None
    assert ex("the answer is E", letters="ABCD") is None  # not one of this sample's options
    assert ex("<answer>maybe</answer>") is None
    # an English word or article is not an option letter
    assert ex("Answer: B. A closer look confirms it.") == "B"
    assert ex("<answer>a guess, maybe C</answer>") is None
    assert ex("<answer>b</answer>") == "B"
    assert ex("A closer look at image 2 shows the mark.") is None


def test_reward_terms_and_tool_gain(reward):
    score = reward.compute_score
    good = "<think>look</think><answer>B</answer>"
    plain = score("mifg_qa", good, "B", {"num_turns": 2, "num_options": 3})
    assert plain == {"score": pytest.approx(0.8), "acc": 1.0, "format_ok": 1.0, "tool_used": 0.0}
    tool = score("mifg_qa", good, "B", {"num_turns": 4, "num_options": 3})
    assert tool["score"] == pytest.approx(0.8 + 1.2) and tool["tool_used"] == 1.0
    wrong_with_tool = score("mifg_qa", "<answer>A</answer>", "B", {"num_turns": 6})
    assert wrong_with_tool["score"] == pytest.approx(0.0)  # no tool bonus without a correct answer
    malformed = score("mifg_qa", "the answer is B", "B", {"num_turns": 2})
    assert malformed["acc"] == 1.0 and malformed["score"] == pytest.approx(0.8 - 0.2)
    tag_only = score("mifg_qa", '<tool_call>{"name": "visual_confirmation"}</tool_call><answer>B</answer>', "B", None)
    assert tag_only["tool_used"] == 1.0
    # verl's turn count wins over text: a tool-call tag that never ran earns no bonus
    fake = score("mifg_qa", "I will not call <tool_call> anything. <answer>A</answer>", "A", {"num_turns": 2})
    assert fake["tool_used"] == 0.0 and fake["score"] == pytest.approx(0.8)
    # verl may pass extra keyword arguments
    assert score(data_source="mifg_qa", solution_str=good, ground_truth="B", extra_info={}, extra=1)["acc"] == 1.0


def test_tool_config_matches_tools(verl, tools):
    config = yaml.safe_load((verl.out / "tool_config.yaml").read_text())
    names = []
    for entry in config["tools"]:
        module, cls = entry["class_name"].rsplit(".", 1)
        assert module == "mifg_tools" and hasattr(tools, cls)
        assert entry["config"]["type"] == "native"
        fn = entry["tool_schema"]["function"]
        assert entry["tool_schema"]["type"] == "function"
        assert fn["parameters"]["type"] == "object"
        assert set(fn["parameters"]["required"]) <= set(fn["parameters"]["properties"])
        names.append(fn["name"])
    assert names == ["visual_reflection", "visual_confirmation"]
    df = pd.read_parquet(verl.out / "test.parquet")
    assert sorted(df.iloc[0]["extra_info"]["tools_kwargs"].keys()) == sorted(names)


def _make_tool(tools, config, cls_name):
    entry = next(e for e in config["tools"] if e["class_name"].endswith(cls_name))
    schema = entry["tool_schema"]
    if tools.RUNNING_IN_VERL:  # pragma: no cover - only where verl is installed
        from verl.tools.schemas import OpenAIFunctionToolSchema

        schema = OpenAIFunctionToolSchema.model_validate(schema)
    return getattr(tools, cls_name)(config=entry["config"], tool_schema=schema)


def test_tools_create_execute_release(verl, tools):
    config = yaml.safe_load((verl.out / "tool_config.yaml").read_text())
    row = pd.read_parquet(verl.out / "train.parquet").iloc[0]
    create = row["extra_info"]["tools_kwargs"]["visual_confirmation"]["create_kwargs"]
    w, h = (int(v) for v in create["sizes"][0])

    async def run():
        zoom = _make_tool(tools, config, "VisualConfirmationTool")
        iid, _ = await zoom.create(create_kwargs=dict(create))  # how verl's ToolAgentLoop calls it
        resp, _, metrics = await zoom.execute(iid, {"image_index": 1, "bbox_2d": [0.45, 0.45, 0.6, 0.6]})
        assert metrics["success"] and len(resp.image) == 1
        crop = resp.image[0]
        assert min(crop.size) >= tools.ZOOM_SHORT_SIDE or max(crop.size) == tools.MAX_SIDE
        x1, y1, x2, y2 = metrics["crop"]
        assert x2 - x1 >= min(tools.MIN_CROP_SIDE, w) and 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        bad, _, m = await zoom.execute(iid, {"image_index": 99, "bbox_2d": [0, 0, 1, 1]})
        assert not m["success"] and bad.text.startswith("Error")
        bad, _, m = await zoom.execute(iid, {"image_index": 1, "bbox_2d": [0.5, 0.5]})
        assert not m["success"]
        pixels, _, m = await zoom.execute(iid, {"image_index": 2, "bbox_2d": [2, 2, 30, 20]})
        assert m["success"]  # pixel coordinates work too
        await zoom.release(iid)
        assert iid not in zoom._instances

        reflect = _make_tool(tools, config, "VisualReflectionTool")
        iid, _ = await reflect.create(
            create_kwargs=dict(row["extra_info"]["tools_kwargs"]["visual_reflection"]["create_kwargs"])
        )
        resp, _, m = await reflect.execute(iid, {})
        assert m["success"] and len(resp.image) == len(row["images"])
        assert [im.size for im in resp.image] == [tuple(int(v) for v in s) for s in create["sizes"]]
        resp, _, m = await reflect.execute(iid, {"image_indices": [2]})
        assert len(resp.image) == 1
        with pytest.raises(ValueError):
            await reflect.create(create_kwargs={})

    asyncio.run(run())


def test_crop_box_geometry(tools):
    assert tools.crop_box([0.0, 0.0, 0.5, 0.5], 200, 100) == (0, 0, 100, 50)
    tiny = tools.crop_box([0.5, 0.5, 0.51, 0.51], 200, 100)  # grown around its centre to >= 28 px
    assert tiny[2] - tiny[0] >= 28 and tiny[3] - tiny[1] >= 28
    assert tools.crop_box([0.9, 0.9, 0.9, 0.95], 200, 100) is None  # zero width
    assert tools.crop_box("nope", 10, 10) is None


def test_run_script_points_at_the_export(verl):
    script = (verl.out / "run_verl_grpo.sh").read_text()
    for needle in (
        "verl.trainer.main_ppo",
        'data.train_files="$DIR/train.parquet"',
        'tool_config_path="$DIR/tool_config.yaml"',
        'custom_reward_function.path="$DIR/mifg_reward.py"',
        "custom_reward_function.name=compute_score",
        "multi_turn.enable=True",
    ):
        assert needle in script
    assert (verl.out / "run_verl_grpo.sh").stat().st_mode & 0o111


_RLHF_READS = """
import sys
from omegaconf import OmegaConf
from verl.utils.dataset.rl_dataset import RLHFDataset
config = OmegaConf.create({"image_key": "images", "prompt_key": "prompt", "filter_overlong_prompts": False})
print(len(RLHFDataset(sys.argv[1], tokenizer=None, config=config)))
"""


def test_rlhf_dataset_reads_the_export(verl):
    """verl's own RLHFDataset reads the export, in verl's environment (`make verl-env`) or this one."""
    import subprocess

    from rl.verl_engine import verl_python
    from schemas.errors import ConfigError

    try:
        exe = verl_python()
    except ConfigError as e:
        pytest.skip(str(e))
    out = subprocess.run(
        [exe, "-c", _RLHF_READS, str(verl.out / "train.parquet")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) == verl.facts.rows("train")


def test_datasets_loads_the_verl_parquet_as_rlhf_dataset_does(verl, tmp_path):
    import datasets

    # RLHFDataset: datasets.load_dataset("parquet", data_files=...)["train"], then reads these columns
    ds = datasets.load_dataset("parquet", data_files=str(verl.out / "train.parquet"), cache_dir=str(tmp_path))["train"]
    row = ds[0]
    assert all(isinstance(im, Image.Image) for im in row["images"])
    assert row["prompt"][0]["content"].count("<image>") == len(row["images"])
    assert row["extra_info"]["tools_kwargs"]["visual_confirmation"]["create_kwargs"]["image_count"] == len(
        row["images"]
    )
