"""The tiny random Qwen2.5-VL: built locally, saved, loaded back through from_pretrained (no download)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5.5.4")  # rl.policies.hf_qwen.MIN_TRANSFORMERS

from PIL import Image  # noqa: E402

from rl.policies.hf_qwen import load_processor  # noqa: E402
from rl.policies.hf_tiny_model import build_tiny_model, count_parameters, save_tiny_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_qwen"))


def test_saved_dir_loads_with_from_pretrained(model_dir) -> None:
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (model_dir / name).exists(), name
    loaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    built, _ = build_tiny_model(seed=0)  # same seed: the same random weights
    for (n1, p1), (n2, p2) in zip(built.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert 0.5e6 < count_parameters(loaded) < 5e6
    text = loaded.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.chat_template and loaded.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "qwen2_5_vl"


def test_tokenizer_round_trips_tool_calls_and_keeps_tags_single(model_dir) -> None:
    proc = load_processor(model_dir)
    tok = proc.tokenizer
    call = '{"name": "visual_confirmation", "arguments": {"image": 2, "bbox_2d": [0.1, 0.2, 0.5, 0.9]}}'
    text = f"<tool_call>{call}</tool_call>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == text
    for tag in ("<tool_call>", "</tool_call>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<answer>"):
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1, tag
    # Bytes the corpus never saw still encode (byte-level BPE: no unknown token).
    odd = "Ünïcødé ✓ 猫"
    assert tok.decode(tok(odd, add_special_tokens=False)["input_ids"]) == odd


def test_processor_expands_placeholders_for_three_images(model_dir) -> None:
    proc = load_processor(model_dir)
    images = [Image.new("RGB", (64, 48), "red"), Image.new("RGB", (300, 200), "blue"), Image.new("RGB", (20, 20))]
    msgs = [{"role": "user", "content": [{"type": "image"}] * 3 + [{"type": "text", "text": "Which differs?"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    out = proc(text=[text], images=images, return_tensors="pt")
    grid = out["image_grid_thw"]
    assert grid.shape == (3, 3)
    assert out["pixel_values"].shape[0] == int(grid.prod(-1).sum())  # one row per 14x14 patch
    n_tokens = int((out["input_ids"] == proc.image_token_id).sum())
    assert n_tokens == int((grid.prod(-1) // 4).sum())  # 2x2 patches merge into one token
    assert int((out["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<|vision_start|>")).sum()) == 3
    with torch.no_grad():  # and the model accepts it: features and placeholders agree
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
        logits = model(**out).logits
    assert logits.shape[:2] == out["input_ids"].shape and torch.isfinite(logits).all()


def test_chat_template_renders_tools_and_tool_turns(model_dir) -> None:
    proc = load_processor(model_dir)
    tools = [{"type": "function", "function": {"name": "visual_confirmation", "parameters": {}}}]
    msgs = [
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
        {"role": "tool", "content": [{"type": "image"}, {"type": "text", "text": "crop"}]},
    ]
    text = proc.tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nBe careful.\n\n# Tools\n")
    assert '"name": "visual_confirmation"' in text
    assert (
        "<|im_start|>user\n<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>crop\n</tool_response><|im_end|>"
        in text
    )
    assert text.endswith("<|im_start|>assistant\n") and text.count("<|image_pad|>") == 2
