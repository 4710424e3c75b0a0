"""The shipped Qwen2.5-VL-7B configs (rl/configs/): the real loader takes them, and they build and step on a tiny model.

The 7B weights are never needed: the smoke swaps `policy.model_path` for the tiny random Qwen2.5-VL
of tests/rl/conftest.py (`model_dir`) and keeps every other setting of the file (bf16, LoRA rank and
targets, fp32 master weights, gradient checkpointing, max_pixels, KL), shrinking only the batch and
token budgets so one train step runs in seconds on a CPU.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from rl.config import load_config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "rl" / "configs"
LORA, FULL = "qwen2_5_vl_7b_lora.toml", "qwen2_5_vl_7b_full.toml"
KEY_LINE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


@pytest.mark.parametrize("name", [LORA, FULL])
def test_shipped_config_loads_through_the_real_loader(name) -> None:
    cfg = load_config(CONFIGS / name)  # an unknown key or a wrongly typed value is a ConfigError here
    assert cfg.policy.kind == "hf" and cfg.policy.model_path.endswith("Qwen2.5-VL-7B-Instruct")
    assert cfg.policy.dtype == "bfloat16" and cfg.policy.gradient_checkpointing
    assert cfg.policy.max_pixels == 1280 * 28 * 28
    assert cfg.loss.kl_coef > 0 and cfg.loss.entropy_coef == 0  # the hf policy refuses an entropy bonus
    assert cfg.generation.max_new_tokens <= cfg.generation.max_response_tokens < cfg.generation.max_total_tokens
    assert cfg.micro_batch_size >= 1 and cfg.minibatch_size % cfg.micro_batch_size == 0
    assert (cfg.prompts_per_step * cfg.group_size) % cfg.minibatch_size == 0
    if name == LORA:
        assert cfg.policy.lora_r > 0 and cfg.policy.lora_alpha > 0 and 1e-5 <= cfg.lr <= 5e-5
        assert {"q_proj", "v_proj"} <= set(cfg.policy.lora_target_modules)
    else:
        assert cfg.policy.lora_r == 0 and cfg.lr == pytest.approx(1e-6)  # lora_r 0 + bf16 = fp32 master weights


@pytest.mark.parametrize("name", [LORA, FULL])
def test_every_key_of_a_shipped_config_says_why(name) -> None:
    lines = (CONFIGS / name).read_text("utf-8").splitlines()
    bare = [
        line
        for i, line in enumerate(lines)
        if KEY_LINE.match(line) and "#" not in line and not (i and lines[i - 1].lstrip().startswith("#"))
    ]
    assert not bare, f"keys without a comment: {bare}"


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", [LORA, FULL])
def test_shipped_config_builds_and_steps_on_a_tiny_qwen(name, model_dir, tmp_path) -> None:
    pytest.importorskip("transformers", minversion="5.5.4")  # rl.policies.hf_qwen.MIN_TRANSFORMERS
    from rl.policies import build_policy
    from rl.trainer import Trainer
    from tests.factories import make_sample

    small = {
        "out": str(tmp_path / "run"),
        "steps": 1,
        "prompts_per_step": 1,
        "group_size": 2,
        "minibatch_size": 2,
        "tensorboard": False,
        "policy": {"model_path": str(model_dir), "device": "cpu"},
        "generation": {"max_new_tokens": 8, "max_response_tokens": 8, "max_total_tokens": 1024},
        "mask": {"mask_truncated": False},  # a random model's turns hit the token limit: keep them in the loss
    }
    cfg = load_config(CONFIGS / name, [small])
    policy = build_policy(cfg.policy, seed=cfg.seed)
    grid = policy.processor.image_processor(images=[Image.new("RGB", (2000, 1500))])["image_grid_thw"][0]
    assert 1000 < int(grid.prod()) // 4 <= 1280  # max_pixels reached the processor (the tiny model's own cap: 16)
    trainable = {n: p for n, p in policy._model.named_parameters() if p.requires_grad}
    if name == LORA:
        assert trainable and all("lora_" in n for n in trainable)
        assert all(p.dtype == torch.float32 for p in trainable.values())  # peft's adapters
        assert policy._core.lm_head.weight.dtype == torch.bfloat16  # the frozen base
        assert any(".visual." in n for n in trainable)  # gate/up/down_proj also name the vision MLPs
        assert policy._autocast_dtype is None
    else:
        assert all(p.dtype == torch.float32 for p in policy._model.parameters())  # fp32 master weights
        assert len(trainable) == len(list(policy._model.parameters()))
        assert policy._autocast_dtype == torch.bfloat16  # compute runs under bf16 autocast

    trainer = Trainer(cfg, policy=policy, train_samples=[make_sample(7)], verbose=False)
    metrics = trainer.train_step()
    assert metrics["response_length"] > 0 and metrics["kl"] == pytest.approx(0.0, abs=1e-3)  # reference = start
    assert all(map(torch.isfinite, torch.tensor([metrics["loss"], metrics["grad_norm"]])))
