"""A tiny random Qwen2.5-VL built locally: model, byte-level BPE tokenizer, image-only processor.

No download: the config is written here, the tokenizer is trained with `tokenizers` on a small
in-code corpus, and the image processor is the PIL one (no torchvision). `save_tiny_model(dir)`
writes a directory that the real loading path (`from_pretrained(local_path)`) reads, so tests and
`mifg train --policy hf --model-path DIR` smoke runs exercise the same code as a real checkpoint.

    python -m rl.policies.hf_tiny_model runs/tiny-qwen     # writes the model dir (~1 M params)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Special tokens in Qwen2.5-VL spelling. `<tool_call>`/`</tool_call>` are added tokens in real Qwen
# too; `<answer>`/`</answer>` are single tokens only here (code never relies on that).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<answer>",
    "</answer>",
]

# Qwen2.5-VL's chat template plus the Qwen2.5 `# Tools` block, so `tools=` works on the tiny tokenizer.
# transformers renders with trim_blocks, which eats a newline right after a tag: those are written
# {{ '\\n' }}. Tool observations use Qwen's convention: a user turn wrapping <tool_response>.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages[0]['role'] == 'system' and messages[0]['content'] is string %}"
    "{{ messages[0]['content'] }}"
    "{% else %}You are a helpful assistant.{% endif %}"
    "{{ '\\n\\n' }}# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '\\n' }}</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call><|im_end|>\n"
    "{% elif messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if not (tools and loop.first and message['role'] == 'system') %}"
    "{% set role = 'user' if message['role'] == 'tool' else message['role'] %}"
    "<|im_start|>{{ role }}\n"
    "{% if message['role'] == 'tool' %}<tool_response>\n{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'tool' %}{{ '\\n' }}</tool_response>{% endif %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Enough text for BPE to learn merges for what the policy reads and writes (prompts, JSON tool calls).
_CORPUS = [
    "You are a careful visual assistant. Look at the images, think, call a tool if a detail is too small,",
    "then give the answer as one option letter.",
    '{"name": "visual_confirmation", "arguments": {"image": 1, "bbox_2d": [0.25, 0.25, 0.75, 0.75]}}',
    '{"name": "visual_reflection", "arguments": {"images": [1, 2]}}',
    "Which image has a small red square in the middle? Image 1 Image 2 Image 3 Image 4",
    "Options: (A) (B) (C) (D) (E) Answer with the option letter. A B C D E F G H",
    "crop zoom region box image images confirm reflect look again detail colour color size count",
    "Here is the cropped region of image 2, zoomed. Here are the original images again.",
    "error: unknown tool; invalid json; bbox outside the image; the answer is",
    "0 1 2 3 4 5 6 7 8 9 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 10 100 [ ] { } , : \" ' .",
    "system user assistant tool think thinking because so the left right top bottom middle corner",
]

TINY_IMAGE_MIN_PIXELS = 28 * 28  # one merged token at least
TINY_IMAGE_MAX_PIXELS = 112 * 112  # at most 16 merged tokens per image: keeps CPU tests fast


def build_tiny_tokenizer(vocab_size: int = 1024) -> Any:
    """Train a byte-level BPE tokenizer on the in-code corpus and wrap it as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
    )
    fast.padding_side = "left"  # decoder-only generation pads on the left
    return fast


def build_image_processor() -> Any:
    """A Qwen2-VL PIL image processor with a tiny pixel budget (no torchvision needed)."""
    from rl.policies.hf_qwen import require_transformers

    require_transformers()
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=TINY_IMAGE_MIN_PIXELS, max_pixels=TINY_IMAGE_MAX_PIXELS)


def image_only_processor_class() -> type:
    """The Qwen2.5-VL processor without its video processor (the stock one needs torchvision)."""
    from transformers import ProcessorMixin
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    class QwenImageOnlyProcessor(Qwen2_5_VLProcessor):
        """Qwen2_5_VLProcessor with image_processor + tokenizer only: images and text, no video."""

        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            # Skip Qwen2_5_VLProcessor.__init__: it passes a video_processor positional we do not have.
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    return QwenImageOnlyProcessor


def build_processor(tokenizer: Any = None, image_processor: Any = None) -> Any:
    """An image-only Qwen2.5-VL processor over the tiny tokenizer and image processor."""
    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    image_processor = image_processor if image_processor is not None else build_image_processor()
    cls = image_only_processor_class()
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def tiny_config(tokenizer: Any, hidden_size: int = 128, layers: int = 2, seed_dtype: str = "float32") -> Any:
    """A Qwen2_5_VLConfig of ~2 M parameters whose special-token ids come from `tokenizer`."""

    heads = 4
    head_dim = hidden_size // heads
    # mrope splits the rotary half-dimension into (temporal, height, width) sections: they must sum to head_dim/2.
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 3,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        "dtype": seed_dtype,
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "out_hidden_size": hidden_size,
        "fullatt_block_indexes": [1],
    }
    return vl_config(tokenizer, text_config, vision_config)


def vl_config(tokenizer: Any, text_config: dict, vision_config: dict) -> Any:
    """A Qwen2_5_VLConfig of these text and vision settings, its special-token ids from `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {
        **text_config,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_model(seed: int = 0, hidden_size: int = 128, layers: int = 2) -> tuple[Any, Any]:
    """Build (model, processor): a random tiny Qwen2_5_VLForConditionalGeneration and its processor."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    processor = build_processor()
    config = tiny_config(processor.tokenizer, hidden_size=hidden_size, layers=layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[config.text_config.eos_token_id],
        pad_token_id=config.text_config.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
    )
    model.eval()
    return model, processor


def save_tiny_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 128, layers: int = 2) -> Path:
    """Write a loadable local model dir (model, tokenizer, processor, chat template) and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_model(seed=seed, hidden_size=hidden_size, layers=layers)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # The tokenizer is saved by the processor; save it again directly so AutoTokenizer alone also finds
    # the chat template in tokenizer_config.json.
    processor.tokenizer.save_pretrained(out)
    return out


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    """`python -m rl.policies.hf_tiny_model OUT_DIR [--seed N]`: write a tiny random Qwen2.5-VL model dir."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = save_tiny_model(args.out_dir, seed=args.seed)
    print(f"tiny Qwen2.5-VL written to {out} (use: mifg train DATA --policy hf --model-path {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
