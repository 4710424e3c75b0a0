"""The transformers VLM policy: a Qwen2.5-VL checkpoint from a local directory, multi-turn tool use.

One trajectory is one flat token sequence (rl/trajectory.py), grown by APPENDING token ids:

    [system + user(images, question)]  prompt, rendered once with the chat template     mask 0
    [assistant turn]                   sampled by model.generate                        mask 1
    [\\n<|im_start|>user <tool_response> images + text </tool_response> ... assistant\\n]  mask 0
    [assistant turn] ...                                                                mask 1

Each observation segment is rendered and tokenised on its own and appended; the conversation is never
re-tokenised, so the ids trained on are exactly the ids sampled. Every image keeps its pixel rows and
its (t, h, w) grid in order (`extras["pixel_values"]`, `extras["image_grid_thw"]`); placeholder
counts are checked against the grids after every append, and a mismatch flags the trajectory
(`image_token_mismatch`) and stops it instead of crashing a later forward. The model may not emit
vision tokens (they are masked out of sampling and scoring alike), and a segment that does not fit
the token budget is never appended, so truncation cannot cut an image.

Old log-probs are taken from generate's raw logits, with the same forbidden-token mask and
temperature as `token_logprobs` uses, so both agree up to float noise (`top_p < 1` makes sampling
differ from the scored distribution, as in verl/TRL; the trainer's ratio uses the scored one). With
`GenerationConfig.record_logprobs = False` (the trainer's default: it recomputes old log-probs, as
verl does) generate keeps no logits at all and `old_logprobs` stay 0.

Scoring keeps only the logits of positions that predict a generated token and turns them into
log-probs `score_chunk_rows` rows at a time (log-softmax gather, recomputed on backward), so no
(B, K, V) float32 copy is ever held; entropy is computed only when asked for, under no_grad.

Precision: full fine-tuning with `dtype = "bfloat16"` / `"float16"` keeps float32 parameters (the
optimizer's master weights: AdamW steps of lr ~1e-6 vanish in bf16 weights) and runs every forward
and `generate` under autocast to that dtype. LoRA keeps the base weights in that dtype (frozen) and
peft's adapters in float32. The reference model of full fine-tuning is loaded the same way, so the
KL at step 0 is exactly 0 (it costs a second full copy: LoRA needs none).

`attention_shares(policy, traj)` is the paper's attention probe for evaluation: per generated turn,
the share of attention from that turn's tokens on image tokens, on other context text and on
generated tokens (eager attention, averaged over heads and layers); `attention_summary(policy,
trajs)` averages it per turn index and before vs after a tool observation.

Hooks: `policy.turn_script(k, turn) -> str | None` forces the text of chosen turns through the real
generate path (tests: a random model never writes a valid tool call); `max_generate_rows` bounds the
rows of one generate call. Scale: DDP wrapping of `module` is fine (rollouts use the unwrapped model);
FSDP-sharded rollouts would need the full parameters gathered around `generate` (not done here).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rl.env import Episode, Observation, system_prompt
from rl.parsing import parse_action
from rl.policies.base import GenerationConfig, PolicyConfig, resolve_device
from rl.trajectory import Trajectory, TrajectoryBuilder
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from rl.env import EnvConfig
    from schemas import Sample

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
"""Tokens only the environment may place: the policy never samples (or is scored on) them."""

NEG = -1e9  # finite "minus infinity": exp() is exactly 0 in float32 and 0 * NEG stays finite
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

MIN_TRANSFORMERS = "5.5.4"
"""Oldest transformers the hf policy runs on: it needs the 5.x APIs (the PIL Qwen2-VL image processor,
`get_rope_index(input_ids, mm_token_type_ids, ...)`), and 5.4.0-5.5.3 place Qwen2.5-VL still-image
RoPE positions wrongly (fixed in 5.5.4). pyproject's `rl` extra says the same."""


def require_transformers() -> None:
    """Raise one ConfigError line when the installed transformers is older than MIN_TRANSFORMERS."""
    import transformers
    from packaging.version import Version

    installed = transformers.__version__
    if Version(installed) < Version(MIN_TRANSFORMERS):
        raise ConfigError(
            f"--policy hf needs transformers>={MIN_TRANSFORMERS} (installed: {installed}); "
            f"run: pip install 'transformers>={MIN_TRANSFORMERS},<6'"
        )


TurnScript = Callable[[int, int], "str | None"]
"""(trajectory index within the rollout call, turn index) -> text to force for that turn, or None to sample."""


def load_processor(model_path: str | Path, min_pixels: int = 0, max_pixels: int = 0) -> Any:
    """Image-only Qwen2.5-VL processor from a local dir (PIL image processor: no torchvision needed)."""
    require_transformers()
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rl.policies.hf_tiny_model import image_only_processor_class

    path = Path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    overrides = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, **overrides)
    template = tokenizer.chat_template or _read_chat_template(path)
    if not template:
        raise ConfigError(f"{path}: no chat template (tokenizer_config.json, chat_template.json or .jinja)")
    return image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)


def _read_chat_template(path: Path) -> str | None:
    """The processor-level chat template real Qwen2.5-VL checkpoints ship next to the tokenizer."""
    if (path / "chat_template.jinja").exists():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").exists():
        return json.loads((path / "chat_template.json").read_text()).get("chat_template")
    return None


def _load_model(path: str | Path, cfg: PolicyConfig, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """The checkpoint at `path` with weights in `dtype` (default: `cfg.dtype`) on `device`."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    if cfg.dtype not in DTYPES:
        raise ConfigError(f"policy.dtype {cfg.dtype!r}: expected one of {', '.join(DTYPES)}")
    kwargs: dict[str, Any] = {"dtype": dtype or DTYPES[cfg.dtype]}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kwargs).to(device)


@dataclass
class _Rollout:
    """One trajectory while it is being sampled."""

    episode: Episode
    builder: TrajectoryBuilder
    group_id: int
    pixel_values: list[torch.Tensor] = field(default_factory=list)  # per image (n_patches, patch_dim)
    grids: list[torch.Tensor] = field(default_factory=list)  # per image (3,) = (t, h, w) in patches
    generated: int = 0
    truncated: bool = False
    mismatch: bool = False
    done: bool = False


class HFQwenPolicy:
    """A Qwen2.5-VL policy over the env's two tools; implements rl.policies.base.Policy."""

    name = "hf"
    max_generate_rows = 64  # trajectories per generate call; lower it if the KV cache does not fit
    score_chunk_rows = 1024  # logit rows (positions) turned into log-probs at once: bounds float32 (rows, V) copies

    def __init__(self, model: Any, processor: Any, cfg: PolicyConfig | None = None) -> None:
        self.cfg = cfg or PolicyConfig(kind="hf")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._model = model  # unwrapped (peft-wrapped when LoRA): generate and config live here
        self.module: torch.nn.Module = model  # the trainer may replace this with an accelerate-wrapped module
        self._reference: Any = None
        self.turn_script: TurnScript | None = None  # test/debug hook: force the text of chosen turns
        tok = self.tokenizer
        self.image_token_id = int(tok.convert_tokens_to_ids("<|image_pad|>"))
        self.pad_id = int(
            tok.pad_token_id if tok.pad_token_id is not None else tok.convert_tokens_to_ids("<|endoftext|>")
        )
        self.im_end_id = int(tok.convert_tokens_to_ids("<|im_end|>"))
        self.forbidden_ids = sorted({i for i in (_token_id(tok, t) for t in VISION_TOKENS) if i is not None})
        self.stop_ids = sorted({self.im_end_id} | {i for i in [_token_id(tok, "<|endoftext|>")] if i is not None})
        self.merge = int(processor.image_processor.merge_size)
        self._segment_head, self._segment_tail = self._observation_frame()
        # float32 weights with a low-precision cfg.dtype = full fine-tuning with fp32 master weights:
        # every forward runs under autocast to cfg.dtype (see the module docstring).
        low = DTYPES.get(self.cfg.dtype, torch.float32)
        weights = next(model.parameters()).dtype
        self._autocast_dtype = low if low != torch.float32 and weights == torch.float32 else None

    def _compute(self) -> contextlib.AbstractContextManager:
        """Autocast to cfg.dtype over float32 master weights, or nothing when weights are in the compute dtype."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, cfg: PolicyConfig) -> HFQwenPolicy:
        """Load model + processor from `cfg.model_path`; apply dtype, device, LoRA, gradient checkpointing."""
        require_transformers()
        path = Path(cfg.model_path)
        adapter = path / "adapter_config.json"  # a LoRA checkpoint written by save_pretrained
        if not (path / "config.json").exists() and not adapter.exists():
            raise ConfigError(f"--model-path {path}: not a local model directory (no config.json)")
        device = resolve_device(cfg.device)
        base_path = json.loads(adapter.read_text()).get("base_model_name_or_path") if adapter.exists() else path
        if not base_path or not (Path(base_path) / "config.json").exists():
            raise ConfigError(f"{adapter}: its base model {base_path!r} is not a local model directory")
        # Full fine-tuning keeps float32 master weights whatever cfg.dtype says (compute runs under
        # autocast, see _compute); LoRA trains float32 adapters over frozen weights in cfg.dtype.
        full = cfg.lora_r == 0 and not adapter.exists()
        model = _load_model(base_path, cfg, device, torch.float32 if full else None)
        if cfg.gradient_checkpointing:
            # Non-reentrant checkpointing works with frozen inputs (LoRA) without enable_input_require_grads.
            # It is active in train mode only, so rollouts (eval mode) keep the KV cache.
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if adapter.exists():  # continue training the saved adapters; the reference is the base model
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path, is_trainable=True)
        elif cfg.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules),
                bias="none",
            )
            model = get_peft_model(model, lora)
        processor = load_processor(path, cfg.min_pixels, cfg.max_pixels)
        return cls(model, processor, cfg)

    @property
    def device(self) -> torch.device:
        """Where the module's parameters live."""
        return next(self._model.parameters()).device

    @property
    def _core(self) -> Any:
        """The Qwen2_5_VLForConditionalGeneration under a peft wrapper (same modules, LoRA injected)."""
        return self._model.get_base_model() if hasattr(self._model, "get_base_model") else self._model

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """Trainable parameters (all weights, or the LoRA adapters)."""
        return (p for p in self._model.parameters() if p.requires_grad)

    def state_dict(self) -> dict[str, Any]:
        """Trainable weights only (full model or LoRA adapters), detached copies on CPU."""
        return {n: p.detach().cpu().clone() for n, p in self._model.named_parameters() if p.requires_grad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; every trainable tensor must be present."""
        trainable = {n for n, p in self._model.named_parameters() if p.requires_grad}
        missing, unknown = trainable - set(state), set(state) - trainable
        if missing or unknown:
            raise ConfigError(
                f"policy state does not fit this model: missing {sorted(missing)[:3]}, unknown {sorted(unknown)[:3]}"
            )
        self._model.load_state_dict(state, strict=False)

    def train(self, mode: bool = True) -> HFQwenPolicy:
        """Switch the module to train (or eval) mode."""
        self.module.train(mode)
        return self

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """A directory `--model-path` can load: full weights, or the LoRA adapters (peft), plus the processor."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._model.save_pretrained(out)
        self.processor.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return out

    # ----------------------------------------------------------------- token layout

    def _observation_frame(self) -> tuple[str, str]:
        """Text around an observation's content, derived from the chat template (not hard-coded).

        Renders a conversation with and without one extra user turn and keeps the difference, so the
        segment is exactly what the template would produce for that turn, plus the generation prompt.
        """
        marker = "\x00OBS\x00"
        base = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        with_obs = base + [{"role": "user", "content": [{"type": "text", "text": marker}]}]
        a = self.processor.apply_chat_template(base, tokenize=False, add_generation_prompt=False)
        b = self.processor.apply_chat_template(with_obs, tokenize=False, add_generation_prompt=True)
        if not b.startswith(a) or marker not in b:
            raise ConfigError("chat template does not render a conversation as a prefix of its extension")
        # What follows the assistant's <|im_end|> in the template (usually "\n") starts the segment.
        after_end = a[a.rindex("<|im_end|>") + len("<|im_end|>") :] if "<|im_end|>" in a else ""
        head, tail = b[len(a) :].split(marker)
        return after_end + head + "<tool_response>\n", "\n</tool_response>" + tail

    def _vision_placeholder(self) -> str:
        return "<|vision_start|><|image_pad|><|vision_end|>"

    def _encode(self, text: str, images: list) -> tuple[list[int], torch.Tensor | None, torch.Tensor | None]:
        """Token ids with expanded image placeholders, pixel rows and grids for `images` (in order)."""
        out = self.processor(text=[text], images=images or None, return_tensors="pt", add_special_tokens=False)
        ids = out["input_ids"][0].tolist()
        if not images:
            return ids, None, None
        return ids, out["pixel_values"], out["image_grid_thw"]

    def _prompt(self, obs: Observation, env_cfg: EnvConfig) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        content = [{"type": "image"} for _ in obs.images] + [{"type": "text", "text": obs.text}]
        messages = [{"role": "system", "content": system_prompt(env_cfg)}, {"role": "user", "content": content}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self._encode(text, obs.images)

    def _observation(
        self, obs: Observation, ended_turn: bool
    ) -> tuple[list[int], torch.Tensor | None, torch.Tensor | None]:
        """Tokens of one tool/error observation turn (+ the next generation prompt)."""
        head = self._segment_head if ended_turn else "<|im_end|>" + self._segment_head
        text = head + self._vision_placeholder() * len(obs.images) + obs.text + self._segment_tail
        return self._encode(text, obs.images)

    def _n_image_tokens(self, grids: list[torch.Tensor] | torch.Tensor) -> int:
        return int(sum(int(g.prod()) // self.merge**2 for g in grids))

    # ----------------------------------------------------------------- rollout

    @torch.no_grad()
    def rollout(
        self,
        samples: list[Sample],
        group_size: int,
        env_cfg: EnvConfig,
        gen_cfg: GenerationConfig,
        group_offset: int = 0,
    ) -> list[Trajectory]:
        """Run `group_size` episodes per sample (turns batched across trajectories); groups contiguous."""
        was_training = self.module.training
        self._model.eval()
        states: list[_Rollout] = []
        for i, sample in enumerate(samples):
            prompt = None
            for _ in range(group_size):
                ep = Episode(sample, env_cfg)
                obs = ep.reset()
                if prompt is None:  # the group shares one prompt: render and encode it once
                    prompt = self._prompt(obs, env_cfg)
                ids, pv, grid = prompt
                st = _Rollout(ep, TrajectoryBuilder(), group_offset + i)
                st.builder.add_context(list(ids), obs.images)
                st.pixel_values, st.grids = list(pv.split([int(g.prod()) for g in grid])), list(grid)
                if ids.count(self.image_token_id) != self._n_image_tokens(st.grids):
                    st.mismatch = st.done = True
                if len(ids) >= gen_cfg.max_total_tokens:
                    st.truncated = st.done = True
                states.append(st)
        turn = 0
        while True:
            active = [k for k, st in enumerate(states) if not st.done]
            if not active:
                break
            self._step(states, active, turn, gen_cfg)
            turn += 1
        self.module.train(was_training)
        temperature = 1.0 if gen_cfg.greedy else gen_cfg.temperature
        return [self._finish(st, temperature) for st in states]

    def _budget(self, st: _Rollout, gen_cfg: GenerationConfig) -> int:
        room_total = gen_cfg.max_total_tokens - len(st.builder)
        return min(gen_cfg.max_new_tokens, room_total, gen_cfg.max_response_tokens - st.generated)

    def _step(self, states: list[_Rollout], active: list[int], turn: int, gen_cfg: GenerationConfig) -> None:
        """One policy turn for every active trajectory: a batched generate, then env steps."""
        budgets = {k: self._budget(states[k], gen_cfg) for k in active}
        for k in [k for k in active if budgets[k] <= 0]:
            states[k].truncated = states[k].done = True
        active = [k for k in active if budgets[k] > 0]
        if not active:
            return
        rows: list[tuple[list[int], list[float]]] = []
        for start in range(0, len(active), self.max_generate_rows):  # bounds the KV cache of one generate
            chunk = active[start : start + self.max_generate_rows]
            forced = {}
            if self.turn_script is not None:
                for row, k in enumerate(chunk):
                    text = self.turn_script(k, turn)
                    if text is not None:
                        forced[row] = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.im_end_id]
            budget = max(budgets[k] for k in chunk)
            rows += self._generate([states[k] for k in chunk], budget, forced, gen_cfg)
        for k, (toks, lps) in zip(active, rows, strict=True):
            st = states[k]
            toks, lps = toks[: budgets[k]], lps[: budgets[k]]
            stop = next((j for j, t in enumerate(toks) if t in self.stop_ids), None)
            if stop is not None:
                toks, lps = toks[: stop + 1], lps[: stop + 1]
            body = toks[:-1] if stop is not None else toks
            text = self.tokenizer.decode(body, skip_special_tokens=False)
            st.builder.add_action(toks, lps, text)
            st.generated += len(toks)
            if any(t in self.forbidden_ids for t in toks):  # only a forced turn can get here
                st.mismatch = st.done = True
                continue
            if stop is None:  # the turn hit a token limit before it ended
                st.truncated = st.done = True
                continue
            obs, done, _ = st.episode.step(parse_action(text))
            if done:
                st.done = True
                continue
            self._append_observation(st, obs, toks[-1] == self.im_end_id, gen_cfg)

    def _append_observation(self, st: _Rollout, obs: Observation, ended: bool, gen_cfg: GenerationConfig) -> None:
        """Append one observation segment, unless it would overflow the budget or miscount images."""
        try:
            ids, pv, grid = self._observation(obs, ended)
        except ValueError as e:  # the image processor refused a tool image (Qwen: aspect ratio >= 200)
            if obs.kind != "tool":
                raise
            sizes = ", ".join(f"{im.width}x{im.height}" for im in obs.images)
            obs = st.episode.reject_observation(f"its image ({sizes}) cannot be shown to the model ({e})")
            ids, pv, grid = self._observation(obs, ended)
        if len(st.builder) + len(ids) + 1 > gen_cfg.max_total_tokens:
            st.truncated = st.done = True  # never append part of a segment: an image could be cut
            return
        new_grids = list(grid) if grid is not None else []
        if ids.count(self.image_token_id) != self._n_image_tokens(new_grids):
            st.mismatch = st.done = True
            return
        st.builder.add_context(ids, obs.images)
        if pv is not None:
            st.pixel_values += list(pv.split([int(g.prod()) for g in grid]))
            st.grids += new_grids

    def _generate(
        self, batch: list[_Rollout], max_new: int, forced: dict[int, list[int]], gen_cfg: GenerationConfig
    ) -> list[tuple[list[int], list[float]]]:
        """Left-padded batched generate; per row the new tokens and their log-probs (raw logits, scored)."""
        from transformers import GenerationConfig as HFGenerationConfig
        from transformers import LogitsProcessorList

        device = self.device
        seqs = [st.builder.ids for st in batch]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            input_ids[r, width - len(s) :] = torch.tensor(s)
            attn[r, width - len(s) :] = 1
        pixel_values = torch.cat([p for st in batch for p in st.pixel_values]).to(device)
        grid = torch.stack([g for st in batch for g in st.grids]).to(device)
        input_ids, attn = input_ids.to(device), attn.to(device)
        greedy = gen_cfg.greedy
        sampling = {} if greedy else {"temperature": gen_cfg.temperature, "top_p": gen_cfg.top_p, "top_k": 0}
        hf_cfg = HFGenerationConfig(
            do_sample=not greedy,
            max_new_tokens=max_new,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=gen_cfg.record_logprobs,  # (B, V) per step: kept only when they become old log-probs
            **sampling,
        )
        processors = LogitsProcessorList([_ForbidTokens(self.forbidden_ids)])
        if forced:
            processors.append(_ForceTokens(width, forced, self.im_end_id))
        # generate() fills every unset field from the checkpoint's generation_config.json (Qwen ships
        # top_k=1, repetition_penalty=1.05, ...): swap in a neutral one so sampling follows only gen_cfg
        # and the recorded log-probs are those of the distribution that token_logprobs scores.
        core, saved = self._core, self._core.generation_config
        core.generation_config = HFGenerationConfig(eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        try:
            with self._compute():
                out = self._model.generate(
                    input_ids=input_ids,
                    attention_mask=attn,
                    pixel_values=pixel_values,
                    image_grid_thw=grid,
                    mm_token_type_ids=(input_ids == self.image_token_id).int(),
                    generation_config=hf_cfg,
                    logits_processor=processors,
                )
        finally:
            core.generation_config = saved
        new = out.sequences[:, width:]  # (B, S)
        temperature = 1.0 if greedy else gen_cfg.temperature
        lps = []
        for s, logits in enumerate(out.logits or ()):  # per step (B, V): the same scoring as token_logprobs
            scored = self._score_logits(logits.float(), temperature)
            lps.append(scored.gather(-1, new[:, s : s + 1]).squeeze(-1))
        lp = torch.stack(lps, 1).cpu() if lps else torch.zeros(new.shape)
        return [(new[r].tolist(), lp[r].tolist()) for r in range(new.shape[0])]

    def _scaled_logits(self, logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
        """Logits with vision tokens forbidden, divided by the sampling temperature."""
        if self.forbidden_ids:
            forbid = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            forbid[self.forbidden_ids] = True
            logits = logits.masked_fill(forbid, NEG)
        return logits / temperature

    def _score_logits(self, logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
        """log_softmax of logits with vision tokens forbidden, at the sampling temperature."""
        return torch.log_softmax(self._scaled_logits(logits, temperature), dim=-1)

    def _chunk_logprobs(self, logits: torch.Tensor, targets: torch.Tensor, temps: torch.Tensor) -> torch.Tensor:
        """(n,) log-prob of `targets` (n,) under (n, V) logits: a gather minus a logsumexp, no log-softmax kept."""
        z = self._scaled_logits(logits.float(), temps[:, None])  # (n, V) float32, one chunk only
        return z.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(z, dim=-1)

    def _gather_logprobs(
        self, logits: torch.Tensor, targets: torch.Tensor, temps: torch.Tensor, with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, K) log-probs of `targets` (B, K) under `logits` (B, K, V), and (B, K) entropy or None.

        `score_chunk_rows` rows of the flattened (B*K, V) logits at a time. With grad, each chunk is
        recomputed on backward (activation checkpointing), so only the model's own logits stay alive.
        """
        from torch.utils.checkpoint import checkpoint

        b, k, v = logits.shape
        flat, tgt = logits.reshape(b * k, v), targets.reshape(b * k)  # views: no copy
        temp = temps.repeat_interleave(k)  # (B*K,) each row's sampling temperature
        lps, ents = [], []
        for i in range(0, b * k, max(self.score_chunk_rows, 1)):
            rows = slice(i, i + max(self.score_chunk_rows, 1))
            if flat.requires_grad:
                lps.append(checkpoint(self._chunk_logprobs, flat[rows], tgt[rows], temp[rows], use_reentrant=False))
            else:
                lps.append(self._chunk_logprobs(flat[rows], tgt[rows], temp[rows]))
            if with_entropy:
                with torch.no_grad():  # a metric on sampled positions; no gradient through the full vocab
                    z = self._score_logits(flat[rows].float(), temp[rows, None])
                    ents.append(-(z.exp() * z).sum(-1))
        lp = torch.cat(lps).reshape(b, k)
        return lp, torch.cat(ents).reshape(b, k) if with_entropy else None

    def _finish(self, st: _Rollout, temperature: float) -> Trajectory:
        extras: dict[str, Any] = {
            "pixel_values": torch.cat(st.pixel_values) if st.pixel_values else None,  # (sum patches, D)
            "image_grid_thw": torch.stack(st.grids) if st.grids else None,  # (n_images, 3)
            "temperature": temperature,
        }
        return st.builder.finish(
            st.episode, st.group_id, truncated=st.truncated, image_token_mismatch=st.mismatch, extras=extras
        )

    # ----------------------------------------------------------------- scoring

    def _forward_inputs(self, trajectories: list[Trajectory]) -> dict[str, torch.Tensor]:
        """Right-padded batch with all images; generated vision tokens are neutralised (flagged anyway)."""
        device = self.device
        width = max(len(t) for t in trajectories)
        ids = torch.full((len(trajectories), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(trajectories), width), dtype=torch.long)
        pvs, grids = [], []
        forbidden = torch.tensor(self.forbidden_ids, dtype=torch.long)
        for r, t in enumerate(trajectories):
            row = t.token_ids.clone()
            row[(t.action_mask > 0) & torch.isin(row, forbidden)] = self.pad_id
            grid = t.extras.get("image_grid_thw")
            n_tok = int((row == self.image_token_id).sum())
            if grid is not None and n_tok == self._n_image_tokens(grid):
                pvs.append(t.extras["pixel_values"])
                grids.append(grid)
            else:  # cannot be fed as is: score it without images (its flag masks it out of the loss)
                row[row == self.image_token_id] = self.pad_id
            ids[r, : len(row)] = row
            attn[r, : len(row)] = 1
        batch = {"input_ids": ids.to(device), "attention_mask": attn.to(device)}
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).int()
        if pvs:
            batch["pixel_values"] = torch.cat(pvs).to(device)
            batch["image_grid_thw"] = torch.cat(grids).to(device)
            # Explicit 3-D rope positions: never the model's cached rope_deltas from the last generate.
            batch["position_ids"], _ = self._core.model.get_rope_index(
                batch["input_ids"],
                batch["mm_token_type_ids"],
                image_grid_thw=batch["image_grid_thw"],
                attention_mask=batch["attention_mask"],
            )
        return batch

    def _logprobs(
        self, module: Any, trajectories: list[Trajectory], with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self._forward_inputs(trajectories)
        mask = torch.zeros(batch["input_ids"].shape, dtype=torch.bool)
        for r, t in enumerate(trajectories):
            mask[r, : len(t)] = t.action_mask > 0
        mask = mask.to(self.device)
        # Logits only where some row predicts a generated token: position p predicts token p + 1.
        targets_at = mask[:, 1:].any(0).nonzero().squeeze(-1) + 1  # (K,)
        b, width = mask.shape
        logp = torch.zeros((b, width), device=self.device)
        ent = torch.zeros((b, width), device=self.device) if with_entropy else None
        if targets_at.numel() == 0:
            if not torch.is_grad_enabled():
                return logp, ent
            # No generated token in this micro-batch (every prompt filled the token budget): still run
            # the forward on one position so its zero loss has a graph -- backward works, and under DDP
            # this process reaches the same gradient all-reduce as the others.
            targets_at = torch.ones(1, dtype=torch.long, device=self.device)
        with self._compute():
            out = module(**batch, logits_to_keep=targets_at - 1, use_cache=False)  # logits (B, K, V)
        temps = torch.tensor([float(t.extras.get("temperature", 1.0)) for t in trajectories], device=self.device)
        # Targets are the trajectory's own ids (not the neutralised forward input).
        tgt = torch.stack([_row(t.token_ids, width, self.pad_id) for t in trajectories]).to(self.device)
        lp, e = self._gather_logprobs(out.logits, tgt[:, targets_at], temps, with_entropy)  # (B, K)
        keep = mask[:, targets_at]
        where = (torch.arange(b, device=self.device)[:, None], targets_at[None, :].expand(b, -1))
        logp = logp.index_put(where, torch.where(keep, lp, 0.0))
        if e is not None:
            ent = ent.index_put(where, torch.where(keep, e, 0.0))
        return logp, ent

    def token_logprobs(
        self, trajectories: list[Trajectory], with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) log-probs of generated tokens with grad (0 elsewhere), and (B, T) entropy or None."""
        return self._logprobs(self.module, trajectories, with_entropy)

    @torch.no_grad()
    def reference_logprobs(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B, T) log-probs under the initial weights: LoRA disabled, or the checkpoint reloaded from disk."""
        if hasattr(self._model, "disable_adapter"):
            with self._model.disable_adapter():
                return self._logprobs(self._model, trajectories, False)[0]
        if self._reference is None:  # the initial weights are exactly what is on disk at model_path
            if not self.cfg.model_path:
                self._reference = copy.deepcopy(self._model)
            else:  # in the policy's weight dtype: the same numerics, so the KL starts at exactly 0
                dtype = next(self._model.parameters()).dtype
                self._reference = _load_model(self.cfg.model_path, self.cfg, self.device, dtype)
            self._reference.eval().requires_grad_(False)
        return self._logprobs(self._reference, trajectories, False)[0]


def _row(ids: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    out = torch.full((width,), pad, dtype=torch.long)
    out[: len(ids)] = ids
    return out


def _token_id(tokenizer: Any, token: str) -> int | None:
    """Id of a single-token string, or None when the vocabulary does not have it as one token."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tokenizer.unk_token_id is not None and tid == tokenizer.unk_token_id):
        return None
    return int(tid)


class _ForbidTokens:
    """Logits processor: the policy never samples a vision token (the env places those)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.ids:
            scores = scores.clone()  # generate keeps the raw logits tensor for output_logits: never edit it in place
            scores[:, self.ids] = NEG
        return scores


class _ForceTokens:
    """Logits processor for scripted turns: row r emits `forced[r]` token by token, then stops."""

    def __init__(self, prompt_width: int, forced: dict[int, list[int]], stop_id: int) -> None:
        self.width, self.forced, self.stop_id = prompt_width, forced, stop_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.width
        scores = scores.clone()  # keep generate's raw logits (our old log-probs) untouched
        for row, toks in self.forced.items():
            tok = toks[step] if step < len(toks) else self.stop_id
            scores[row] = NEG
            scores[row, tok] = 0.0
        return scores


def build(cfg: PolicyConfig) -> HFQwenPolicy:
    """The "hf" policy of `rl.policies.build_policy`: a local Qwen2.5-VL checkpoint."""
    return HFQwenPolicy.from_config(cfg)


def _turn_spans(action_mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of generated tokens (one per policy turn)."""
    spans, start = [], None
    for i, m in enumerate(action_mask.tolist() + [0.0]):
        if m > 0 and start is None:
            start = i
        elif m <= 0 and start is not None:
            spans.append((start, i))
            start = None
    return spans


@torch.no_grad()
def attention_shares(policy: HFQwenPolicy, traj: Trajectory) -> list[dict[str, float]]:
    """Per generated turn: mean attention share of that turn's tokens on image / text / generated tokens.

    The IMAgent attention analysis: for every generated token (query), its attention over earlier
    positions and itself is split into image-placeholder keys, other context keys (prompt and tool
    text) and generated keys (this and earlier turns); shares are averaged over heads, layers and the
    turn's tokens. Runs one teacher-forced forward with eager attention (O(layers x heads x T^2)
    weights, one layer at a time), then restores the attention implementation.
    Returns [{"turn", "tokens", "image", "text", "generated"}, ...].
    """
    core = policy._core
    spans = _turn_spans(traj.action_mask)
    if not spans:
        return []
    batch = policy._forward_inputs([traj])
    ids = batch["input_ids"][0]
    is_image = ids == policy.image_token_id  # (T,)
    is_gen = (traj.action_mask > 0).to(ids.device)
    cats = torch.stack([is_image, ~is_image & ~is_gen, is_gen], 1).float()  # (T, 3) image / text / generated
    queries = torch.cat([torch.arange(a, b) for a, b in spans]).to(ids.device)
    sums = torch.zeros((len(queries), 3), device=ids.device)
    n_layers = 0

    def hook(_module: Any, _args: Any, output: Any) -> None:
        nonlocal sums, n_layers
        weights = output[1]  # (1, heads, T, T) under eager attention
        w = weights[0].float().mean(0)[queries]  # (Q, T)
        sums = sums + w @ cats
        n_layers += 1

    layers = core.model.language_model.layers
    previous = core.config._attn_implementation
    core.set_attn_implementation("eager")
    handles = [layer.self_attn.register_forward_hook(hook) for layer in layers]
    try:
        with policy._compute():
            core(**batch, use_cache=False, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
        core.set_attn_implementation(previous)
    shares = (sums / max(n_layers, 1)).cpu()  # (Q, 3); rows sum to 1 (softmax over keys)
    out, row = [], 0
    for k, (a, b) in enumerate(spans):
        s = shares[row : row + (b - a)].mean(0)
        row += b - a
        out.append({"turn": k, "tokens": b - a, "image": float(s[0]), "text": float(s[1]), "generated": float(s[2])})
    return out


def attention_summary(policy: HFQwenPolicy, trajectories: list[Trajectory]) -> dict[str, Any]:
    """Attention shares averaged per turn index over trajectories, and before vs after a tool observation.

    {"per_turn": [{"turn", "n", "image", "text", "generated"}, ...],
     "first_turn": {...}, "after_tool": {...}}  -- "after_tool" averages every turn that follows an
    observation, the paper's claim being that a tool call raises attention on image tokens.
    """
    by_turn: dict[int, list[dict[str, float]]] = {}
    for traj in trajectories:
        for s in attention_shares(policy, traj):
            by_turn.setdefault(int(s["turn"]), []).append(s)

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        n = max(len(rows), 1)
        return {"n": len(rows), **{k: sum(r[k] for r in rows) / n for k in ("image", "text", "generated")}}

    per_turn = [{"turn": k, **mean(v)} for k, v in sorted(by_turn.items())]
    later = [r for k, v in by_turn.items() if k > 0 for r in v]
    return {"per_turn": per_turn, "first_turn": mean(by_turn.get(0, [])), "after_tool": mean(later)}
