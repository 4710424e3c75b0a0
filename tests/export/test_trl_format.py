"""trl format: conversational prompts with image blocks + an images column, through TRL's own data utils."""

from __future__ import annotations

import importlib.util
import sys

import datasets
import pytest
from PIL import Image

from pipeline.export.splits import SPLITS

trl_data_utils = pytest.importorskip("trl.data_utils", reason="trl is not installed (test extra)")

TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>"
    "{% for c in m.content %}{% if c.type == 'image' %}<image>{% else %}{{ c.text }}{% endif %}{% endfor %}"
    "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def trl_export(exports):
    return exports("trl")


@pytest.fixture(scope="module")
def loaded(trl_export, tmp_path_factory):
    files = {s: str(trl_export.out / "data" / f"{s}.parquet") for s in SPLITS}
    return datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", chat_template=TEMPLATE)


def test_rows_are_conversational_with_one_block_per_image(loaded, store_samples):
    for split in SPLITS:
        ds = loaded[split]
        assert {"prompt", "images", "answer"} <= set(ds.column_names)
        assert isinstance(ds.features["images"].feature, datasets.Image)
        for row in ds:
            assert trl_data_utils.is_conversational(row)
            blocks = row["prompt"][0]["content"]
            n_blocks = sum(b["type"] == "image" for b in blocks)
            assert n_blocks == len(row["images"]) == len(store_samples[row["id"]].images)
            assert all(isinstance(im, Image.Image) for im in row["images"])
            assert row["answer"] == store_samples[row["id"]].answer


def test_trl_prepares_and_templates_the_prompt(loaded, tokenizer):
    row = loaded["train"][0]
    # what GRPOTrainer does with a conversational prompt and an images column
    messages = trl_data_utils.prepare_multimodal_messages(row["prompt"], images=row["images"])
    filled = [b for m in messages for b in m["content"] if b["type"] == "image"]
    assert [b["image"] for b in filled] == row["images"]
    rendered = trl_data_utils.maybe_apply_chat_template({"prompt": row["prompt"]}, tokenizer)["prompt"]
    assert rendered.count("<image>") == len(row["images"])
    assert rendered.startswith("<|user|>Image 1:<image>") and rendered.endswith("<|assistant|>")
    assert "<answer></answer>" in rendered and "Options:\nA. " in rendered


def test_trl_rejects_a_count_mismatch(loaded):
    row = loaded["train"][0]
    with pytest.raises(ValueError):
        trl_data_utils.prepare_multimodal_messages(row["prompt"], images=row["images"][:-1])


def test_grpo_reward_reads_the_answer_column(trl_export, loaded):
    spec = importlib.util.spec_from_file_location("mifg_reward_trl", trl_export.out / "mifg_reward.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mifg_reward_trl"] = module
    spec.loader.exec_module(module)
    rows = loaded["test"][:2]
    completions = [
        [{"role": "assistant", "content": f"<answer>{rows['answer'][0]}</answer>"}],
        [
            {"role": "assistant", "content": '<tool_call>{"name": "visual_confirmation"}</tool_call>'},
            {"role": "tool", "content": "zoomed"},
            {"role": "assistant", "content": f"<answer>{rows['answer'][1]}</answer>"},
        ],
    ]
    scores = module.grpo_reward(completions, answer=rows["answer"], num_options=rows["num_options"])
    assert scores == [pytest.approx(0.8), pytest.approx(2.0)]
    wrong = "B" if rows["answer"][0] != "B" else "A"
    assert module.grpo_reward([f"<answer>{wrong}</answer>"], answer=rows["answer"][:1]) == [pytest.approx(0.0)]
