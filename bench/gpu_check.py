"""The native trainer on one GPU: LoRA vs full fine-tuning of a random-weight Qwen2.5-VL, in one table.

    bash bench/gpu_check.sh                  # GPU: Qwen2.5-VL-7B's shapes, random weights (<= 10 min, one H100)
    bash bench/gpu_check.sh --smoke          # CPU: the tiny test model, seconds (CI runs this)
    bash bench/gpu_check.sh --layers 28 --json runs/bench/gpu_check.json

Each mode trains with its shipped config (rl/configs/qwen2_5_vl_7b_{lora,full}.toml) through the real
path -- `HFQwenPolicy.from_config` (bf16, fp32 master weights, LoRA, gradient checkpointing) and
`Trainer.train_step` (rollout, old and reference log-probs, one optimizer step) -- with only the batch
and token budgets shrunk. No download: the model directory holds a config.json (Qwen2.5-VL-7B's text
and vision dims, or the tiny test model's with --smoke) and the tiny byte-level tokenizer, and
`hf_qwen._load_model` is swapped for `random_weights`, which builds the model from that config on the
device (the same seed for policy and reference, so the KL starts at 0). The images are the demo
task's photo crops (scikit-image's bundled photos), resized to --image-side.

Per mode and depth: rollout tokens/s (generated tokens / rollout wall time), one train step's time
(rollout + scoring + update; the last of --steps, the first one warms up) and the peak memory of that
step (torch.cuda.max_memory_allocated on GPU, the process's peak RSS on CPU). A mode that runs out of
GPU memory is a row saying so: 7B full fine-tuning takes ~20 bytes per parameter (fp32 weights, grads,
AdamW's two moments, the fp32 reference), more than one GPU holds, so the default depths are 28 (the
7B) and 4 (the same layer shapes, 2.7 B parameters: ~54 GB for full fine-tuning, for the LoRA/full ratios).
vLLM rollouts are not measured: rl/ has no vLLM route yet (one line says so).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import io
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "rl" / "configs"
MODES = {"lora": "qwen2_5_vl_7b_lora.toml", "full": "qwen2_5_vl_7b_full.toml"}
GIB = 2**30

# Qwen2.5-VL-7B-Instruct's config.json: the text model's dims (depth = --layers) and its vision tower.
TEXT_7B = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
VISION_7B = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def write_model_dir(out: Path, layers: int, smoke: bool) -> Path:
    """A model directory without weights: config.json (7B-shaped or tiny) + the tiny tokenizer and processor."""
    from rl.policies.hf_tiny_model import build_processor, tiny_config, vl_config

    processor = build_processor()
    tok = processor.tokenizer
    if smoke:
        config = tiny_config(tok, layers=layers)
    else:  # token ids from the tiny tokenizer; the 152k-row vocabulary just has rows it never reads
        config = vl_config(tok, {**TEXT_7B, "num_hidden_layers": layers}, VISION_7B)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    processor.save_pretrained(out)
    tok.save_pretrained(out)  # AutoTokenizer alone finds the chat template too
    return out


def random_weights(path: str | Path, cfg: Any, device: Any, dtype: Any = None) -> Any:
    """Stands in for `hf_qwen._load_model`: the model of path/config.json, random weights, built on `device`."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from rl.policies.hf_qwen import DTYPES

    config = Qwen2_5_VLConfig.from_pretrained(path)
    kwargs: dict[str, Any] = {"dtype": dtype or DTYPES[cfg.dtype]}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    torch.manual_seed(0)  # the reference is built the same way: identical weights, KL 0 at the start
    with torch.device(device):  # initialised where it runs: no 8 B-parameter copy through host memory
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, **kwargs)
    return model.eval()  # as from_pretrained returns it


def count_parameters(model_dir: Path) -> int:
    """Parameters of the model in model_dir, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def bench_samples(n: int, side: int) -> list:
    """n demo samples (two photo crops, one with a fine checkerboard), images resized to side x side."""
    from PIL import Image

    from rl.demo_data import make_demo_sample
    from schemas import image_entry

    out = []
    for seed in range(n):
        s = make_demo_sample(seed)
        images, metas = [], []
        for img, meta in zip(s.images, s.image_meta, strict=True):
            big = Image.open(io.BytesIO(img.bytes)).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            big.save(buf, format="PNG")
            entry, m = image_entry(buf.getvalue(), width=side, height=side, source=meta.source, role=meta.role)
            images.append(entry)
            metas.append(m)
        out.append(s.model_copy(update={"images": images, "image_meta": metas}))
    return out


def reset_peak(device: Any) -> None:
    """Start a new peak-memory window (GPU allocator stats, or the process's peak RSS)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux >= 4.0: writing 5 resets VmHWM, so a later read covers only what follows
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then peak_memory reports the process's lifetime peak


def peak_memory(device: Any) -> int:
    """Bytes: peak GPU allocation since reset_peak, or the process's peak RSS."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * 1024 if sys.platform.startswith("linux") else rss  # KiB on Linux, bytes on macOS


def mode_config(mode: str, model_dir: Path, device: str, args: argparse.Namespace) -> Any:
    """The shipped config of `mode` with the model, the device and one small step's budgets swapped in."""
    from rl.config import load_config

    small = {
        "out": str(model_dir.parent / f"run-{mode}"),  # train_step writes nothing; Trainer wants a path
        "steps": args.steps,
        "prompts_per_step": args.prompts,
        "group_size": args.group,
        "ppo_epochs": 1,
        "minibatch_size": args.prompts * args.group,  # one optimizer step over the whole rollout batch
        "tensorboard": False,
        "policy": {"model_path": str(model_dir), "device": device},
        "generation": {
            "max_new_tokens": args.new_tokens,
            "max_response_tokens": args.new_tokens,
            "max_total_tokens": args.max_total_tokens,
        },
        # Random weights almost never emit a stop token: every turn hits max_new_tokens and would be
        # masked out as truncated, leaving the update nothing to do. Keep those tokens in the loss.
        "mask": {"mask_truncated": False},
    }
    return load_config(CONFIGS / MODES[mode], [small])


def measure(mode: str, layers: int, model_dir: Path, samples: list, args: argparse.Namespace) -> dict[str, Any]:
    """Build the policy and trainer of `mode`, run --steps train steps, return the last one's figures."""
    import torch

    from rl.policies import build_policy
    from rl.policies.base import resolve_device
    from rl.trainer import Trainer

    cfg = mode_config(mode, model_dir, args.device, args)
    device = resolve_device(cfg.policy.device)
    policy = build_policy(cfg.policy, seed=cfg.seed)
    trainer = Trainer(cfg, policy=policy, train_samples=samples, verbose=False)
    row: dict[str, Any] = {"mode": mode, "layers": layers, "trainable": sum(p.numel() for p in policy.parameters())}
    for _ in range(args.steps):
        reset_peak(device)
        t0 = time.perf_counter()
        m = trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the optimizer step's kernels may still be running
        step_s = time.perf_counter() - t0
    tokens = m["response_length"] * cfg.prompts_per_step * cfg.group_size
    row |= {
        "rollout_tokens": round(tokens),
        "rollout_tok_s": tokens / m["time/rollout_s"],
        "step_s": step_s,
        "update_s": step_s - m["time/rollout_s"],  # old + reference log-probs, forward/backward, optimizer
        "peak_gib": peak_memory(device) / GIB,
    }
    return row


def run_mode(mode: str, layers: int, model_dir: Path, samples: list, args: argparse.Namespace) -> dict[str, Any]:
    """`measure` with the model built from random weights; running out of GPU memory is a row, not a crash."""
    import torch

    from rl.policies import hf_qwen

    try:
        with mock.patch.object(hf_qwen, "_load_model", random_weights):
            row = measure(mode, layers, model_dir, samples, args)
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError, or cuBLAS failing to allocate its workspace
        if not isinstance(e, torch.cuda.OutOfMemoryError) and "ALLOC_FAILED" not in str(e):
            raise
        row = {"mode": mode, "layers": layers, "error": "out of GPU memory"}
    # Out of the handler the failed mode's frames (policy, trainer) are unreachable: free them before the next.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def ratio_row(lora: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """lora / full for each figure (None where either side has none)."""
    row: dict[str, Any] = {"mode": "lora/full", "layers": lora["layers"]}
    for key in ("trainable", "rollout_tok_s", "step_s", "update_s", "peak_gib"):
        a, b = lora.get(key), full.get(key)
        row[key] = a / b if a is not None and b else None
    return row


def _num(v: Any, ratio: bool) -> str:
    if v is None:
        return "n/a"
    if ratio:
        return f"{v:.3f}" if v < 0.1 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v / 1e9:.2f} B" if v >= 1e9 else f"{v / 1e6:.1f} M"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_table(rows: list[dict[str, Any]], params: dict[int, int], memory_label: str) -> str:
    """The rows as a fixed-width text table; an error row's message spans the figure columns."""
    head = ["mode", "layers", "params", "trainable", "rollout tok/s", "step s", "update s", memory_label]
    keys = ["trainable", "rollout_tok_s", "step_s", "update_s", "peak_gib"]
    body = []
    for r in rows:
        ratio = r["mode"] == "lora/full"
        cells = [r["mode"], str(r["layers"]), "" if ratio else _num(params[r["layers"]], False)]
        body.append(cells + ([r["error"]] if "error" in r else [_num(r.get(k), ratio) for k in keys]))
    complete = [head] + [c for c in body if len(c) == len(head)]
    widths = [max(len(c[i]) for c in complete) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        fixed = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:3], widths[1:3], strict=True)]
        rest = cells[3:]
        if len(rest) == 1:  # an error message
            return "  ".join([*fixed, rest[0]])
        return "  ".join(fixed + [c.rjust(w) for c, w in zip(rest, widths[3:], strict=True)])

    lines = [fmt(head)]
    lines.append("-" * len(lines[0]))
    return "\n".join(lines + [fmt(c) for c in body])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LoRA vs full fine-tuning with the native trainer (random weights).")
    parser.add_argument("--smoke", action="store_true", help="CPU, the tiny test model: seconds (CI)")
    parser.add_argument("--layers", default=None, help="text-model depths, comma-separated (default 28,4; smoke 2)")
    parser.add_argument("--steps", type=int, default=None, help="train steps per mode, the last measured (default 2)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 2; smoke 1)")
    parser.add_argument("--group", type=int, default=None, help="trajectories per prompt (default 4; smoke 2)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per trajectory (default 128)")
    parser.add_argument("--image-side", type=int, default=None, help="image side in px (default 448; smoke 56)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    gpu = {"layers": "28,4", "steps": 2, "prompts": 2, "group": 4, "new_tokens": 128, "image_side": 448}
    smoke = {"layers": "2", "steps": 1, "prompts": 1, "group": 2, "new_tokens": 16, "image_side": 56}
    for key, value in (smoke if args.smoke else gpu).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = "cpu" if args.smoke else "cuda"
    # Room for the prompt (2 images of (side / 28)^2 merged tokens each, ~300 text tokens) and the new tokens.
    args.max_total_tokens = 2 * (args.image_side // 28 + 1) ** 2 + 1024 + args.new_tokens
    try:
        args.depths = [int(x) for x in str(args.layers).split(",") if x.strip()]
    except ValueError:
        parser.error(f"--layers {args.layers!r}: give depths like 28,4")
    if not args.depths or min(args.depths) < 1 or min(args.steps, args.prompts, args.new_tokens) < 1 or args.group < 2:
        parser.error("--layers, --steps, --prompts and --new-tokens must be >= 1 and --group >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure both modes at each depth and print the table; 0 when every row ran (OOM rows included)."""
    args = parse_args(argv)
    import torch
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, not findings

    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run `bash bench/gpu_check.sh --smoke` for the CPU check")
        return 2
    if args.smoke:
        torch.set_num_threads(1)  # tiny matmuls on a shared CPU: one thread is fastest
        where, memory_label = "cpu (smoke: the tiny test model)", "peak RSS GiB"
    else:
        total = torch.cuda.get_device_properties(0).total_memory / GIB
        where, memory_label = f"{torch.cuda.get_device_name(0)} ({total:.0f} GiB)", "peak alloc GiB"
    print(f"gpu_check on {where}: torch {torch.__version__}, transformers {transformers.__version__}")
    print(
        f"per mode: rl/configs/{MODES['lora']} | {MODES['full']} with random weights; {args.steps} train step(s)"
        f" of {args.prompts} x {args.group} trajectories, {args.new_tokens} new tokens each, 2 images of"
        f" {args.image_side} px per prompt"
    )
    samples = bench_samples(args.prompts, args.image_side)
    rows: list[dict[str, Any]] = []
    params: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for layers in args.depths:
            model_dir = write_model_dir(Path(tmp) / f"model-{layers}", layers, args.smoke)
            params[layers] = count_parameters(model_dir)
            by_mode = {mode: run_mode(mode, layers, model_dir, samples, args) for mode in MODES}
            if "error" in by_mode["full"]:  # what full fine-tuning needs: 4 + 4 + 8 + 4 bytes per parameter
                need = 20 * params[layers] / GIB
                by_mode["full"]["error"] += f" (needs ~{need:.0f} GiB: fp32 weights, grads, AdamW, reference)"
            rows += [by_mode["lora"], by_mode["full"], ratio_row(by_mode["lora"], by_mode["full"])]
    print(format_table(rows, params, memory_label))
    if importlib.util.find_spec("vllm") is not None:
        try:
            version = importlib.metadata.version("vllm")
        except importlib.metadata.PackageNotFoundError:
            version = "(version unknown)"
        print(f"vllm {version} is importable, but rl/ has no vLLM rollout route yet: vLLM rollout not measured")
    else:
        print("vllm is not installed (and rl/ has no vLLM rollout route yet): vLLM rollout not measured")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": where, "params": params, "rows": rows}, indent=2) + "\n")
        print(f"rows written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
