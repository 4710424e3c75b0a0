"""The training loop: rollout groups -> rewards -> two-level mask -> advantages -> K PPO epochs.

    for step in range(steps):
        samples = next prompts_per_step samples                        (data position saved)
        trajs   = policy.rollout(samples, group_size, env, generation)  # B = prompts * group_size
        r       = rewards.score(trajs)                                  # (B,)
        M       = masking.loss_mask(trajs)                              # (B, T) action mask x keep
        A       = advantages.group_advantages(r, group_ids)             # (B,)
        old     = policy.token_logprobs(trajs)  (no grad, micro-batched) # (B, T)
        ref     = policy.reference_logprobs(trajs)  (kl_coef > 0, micro-batched)
        for epoch in range(ppo_epochs), for each shuffled minibatch:
            loss = loss.policy_loss(policy.token_logprobs(mb), old, A, M) ; step the optimizer
        log metrics (JSONL + TensorBoard), evaluate every eval_every, checkpoint every save_every

Scale: the loop runs under `accelerate.Accelerator`, so `python -m ...`, `torchrun` and
`accelerate launch` (single process or DDP) all work; each process rolls out its own share of the
prompts. FSDP is not supported (rollouts run on the unwrapped module, the reference is not sharded):
verl is the scale-out path. Checkpoints (RUN/ckpt/state.pt) hold weights, optimizer,
scheduler, data position and every RNG state: resuming continues the exact same run. They are
written atomically, the one before kept as state.pt.prev for a damaged latest (rl/run_files.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.shard_store import atomic_write_json
from rl.advantages import group_advantages
from rl.config import TrainConfig
from rl.data import DataStream, describe, load_splits, split_train_eval
from rl.evaluate import evaluate, flat_metrics, summarize
from rl.loss import policy_loss, token_weights
from rl.masking import loss_mask, masked_fractions, trajectory_keep
from rl.parsing import TOOL_NAMES
from rl.policies import build_policy
from rl.policies.base import Policy, resolve_device
from rl.rewards import score
from rl.run_files import load_checkpoint, read_records, save_checkpoint, write_jsonl
from rl.trajectory import Trajectory, pad_stack
from schemas import Sample
from schemas.errors import InputError


class MetricsLog:
    """Appends one JSON object per record to RUN/metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, out: Path, tensorboard: bool, resume_step: int | None, enabled: bool = True) -> None:
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():  # drop records written after the checkpoint
            write_jsonl(self.path, [r for r in read_records(self.path) if r["step"] <= resume_step])
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=None if resume_step is None else resume_step + 1)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one record."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.tb is not None:
            self.tb.close()


def rollout_metrics(trajs: list[Trajectory], cfg: TrainConfig) -> dict[str, float]:
    """Per-step rollout metrics under stable names."""
    n = len(trajs)
    m: dict[str, float] = {
        "reward": sum(t.reward for t in trajs) / n,
        "accuracy": sum(t.correct for t in trajs) / n,
        "response_length": sum(t.response_length for t in trajs) / n,
        "turns": sum(t.n_turns for t in trajs) / n,
        "tool_error_rate": sum(t.tool_errors > 0 for t in trajs) / n,
        "evidence_hit_rate": sum(t.evidence_hit for t in trajs) / n,
    }
    for term in ("accuracy", "format", "tool_gain"):
        m[f"reward/{term}"] = sum(t.reward_terms[term] for t in trajs) / n
    for tool in TOOL_NAMES:
        m[f"tool_call_rate/{tool}"] = sum(t.tool_calls.get(tool, 0) > 0 for t in trajs) / n
    m.update(masked_fractions(trajs, cfg.mask))
    return m


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Owns the policy, optimizer, data stream and run directory of one training run."""

    def __init__(
        self,
        cfg: TrainConfig,
        policy: Policy | None = None,
        train_samples: list[Sample] | None = None,
        eval_samples: list[Sample] | None = None,
        verbose: bool = True,
        step_lines: bool = True,
    ) -> None:
        from accelerate import Accelerator

        cfg.validate()
        self.cfg, self.verbose, self.step_lines = cfg, verbose, step_lines  # step_lines: one line per step
        self.out = Path(cfg.out)
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        device = policy.device if policy is not None else resolve_device(cfg.policy.device)
        self.acc = Accelerator(cpu=device.type == "cpu")  # picks up torchrun / accelerate launch settings
        if train_samples is None:
            train_samples, eval_samples = self._load_data()
        self.train_samples, self.eval_samples = train_samples, eval_samples or []
        self.policy = policy or build_policy(cfg.policy, cfg.tiny, seed=cfg.seed)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(cfg.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / (warm + 1)))
        # DDP wrapping when launched that way; a no-op in a plain single process.
        self.policy.module, self.optimizer = self.acc.prepare(self.policy.module, self.optimizer)
        self.stream = DataStream(len(self.train_samples), cfg.seed)
        self.step = 0  # steps completed

    def _load_data(self) -> tuple[list[Sample], list[Sample]]:
        cfg = self.cfg
        if not cfg.data:
            raise InputError("no training DATA given")
        splits, report = load_splits(cfg.data, cfg.allow_unverified)
        self._say(f"data {cfg.data}: {describe(report)}")
        train, held = split_train_eval(splits, cfg.eval_fraction, cfg.seed)
        if cfg.eval_data:
            ev_splits, ev_report = load_splits(cfg.eval_data, cfg.allow_unverified)
            self._say(f"eval data {cfg.eval_data}: {describe(ev_report)}")
            held = ev_splits.get("test") or [s for v in ev_splits.values() for s in v]
        return train, held

    def _say(self, msg: str) -> None:
        if self.verbose and self.acc_is_main:
            print(msg, flush=True)

    @property
    def acc_is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        acc = getattr(self, "acc", None)
        return acc is None or acc.is_main_process

    # ---- one iteration ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """Rollout, score, mask, and update once; returns the step's metrics."""
        cfg, policy = self.cfg, self.policy
        t0 = time.perf_counter()
        idx = self.stream.next(cfg.prompts_per_step)[self.acc.process_index :: self.acc.num_processes]
        policy.train(False)
        # Sampler log-probs are kept only when they are the old log-probs (else no per-step logits are stored).
        gen = dataclasses.replace(cfg.generation, record_logprobs=not cfg.recompute_old_logprobs)
        trajs = policy.rollout([self.train_samples[i] for i in idx], cfg.group_size, cfg.env, gen)
        t_roll = time.perf_counter() - t0

        rewards = torch.tensor(score(trajs, cfg.reward))  # (B,)
        groups = torch.tensor([t.group_id for t in trajs])  # (B,)
        keep = trajectory_keep(trajs, cfg.mask)  # (B,)
        include = keep if cfg.mask.group_stats == "kept" else None
        adv = group_advantages(rewards, groups, cfg.loss.adv_scale, include)  # (B,)
        mask = loss_mask(trajs, cfg.mask).to(policy.device)  # (B, T)
        adv = adv.to(policy.device)
        with torch.no_grad():
            if cfg.recompute_old_logprobs:
                old = self._in_micro_batches(trajs, lambda mb: policy.token_logprobs(mb)[0])  # (B, T)
            else:
                old = pad_stack([t.old_logprobs for t in trajs]).to(policy.device)
            ref = self._in_micro_batches(trajs, policy.reference_logprobs) if cfg.loss.kl_coef > 0 else None

        policy.train(True)
        stats: dict[str, list[float]] = {"loss": [], "clip_frac": [], "kl": [], "grad_norm": []}
        if self.with_entropy:
            stats["entropy"] = []
        B = len(trajs)
        for _ in range(cfg.ppo_epochs):
            for mb in torch.randperm(B).split(cfg.minibatch_size):
                if mask[mb].sum() == 0 and self.acc.num_processes == 1:
                    continue  # nothing to learn from (all masked); a step would only move Adam's momentum
                self._update(trajs, mb, old, ref, adv, mask, stats)
        self.scheduler.step()

        metrics = rollout_metrics(trajs, cfg)
        metrics.update({k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()})
        metrics["adv_zero_frac"] = float((adv.abs() < 1e-8).float().mean())
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        metrics["time/rollout_s"] = t_roll
        metrics["time/step_s"] = time.perf_counter() - t0
        return metrics

    @property
    def with_entropy(self) -> bool:
        """Entropy is computed (a full-vocabulary pass per micro-batch) only when logged or in the loss."""
        return self.cfg.log_entropy or self.cfg.loss.entropy_coef > 0

    def _in_micro_batches(self, trajs: list[Trajectory], fn: Any) -> torch.Tensor:
        """(B, T) fn(micro-batch) -> (m, Tm) rows over `micro_batch_size` trajectories at a time, right-padded."""
        size = self.cfg.micro_batch_size or len(trajs)
        parts = [fn(trajs[i : i + size]) for i in range(0, len(trajs), size)]
        return pad_stack([row for p in parts for row in p]).to(self.policy.device)  # (B, T)

    def _update(self, trajs, mb, old, ref, adv, mask, stats) -> None:
        """One optimizer step on minibatch `mb` (indices), split into micro-batches with exact weights."""
        cfg = self.cfg
        # Dr. GRPO's L is a constant: the response budget, not the padded length of this batch.
        norm_len = cfg.loss.norm_len or cfg.generation.max_response_tokens
        weights = token_weights(mask[mb], cfg.loss.agg, norm_len)  # (b, T) for the whole minibatch
        self.optimizer.zero_grad(set_to_none=True)
        micro = cfg.micro_batch_size or len(mb)
        for j in range(0, len(mb), micro):
            ix = mb[j : j + micro]
            logp, ent = self.policy.token_logprobs([trajs[i] for i in ix.tolist()], self.with_entropy)  # (m, Tm)
            Tm = logp.shape[1]
            loss, m = policy_loss(
                logp,
                old[ix, :Tm],
                adv[ix],
                mask[ix, :Tm],
                cfg.loss,
                ref_logp=None if ref is None else ref[ix, :Tm],
                entropy=ent,
                weights=weights[j : j + micro, :Tm],
            )
            self.acc.backward(loss)
            stats["loss"].append(loss.item())
            for k in ("clip_frac", "kl", "entropy"):
                if k in stats:
                    stats[k].append(m.get(k, 0.0))
        gn = self.acc.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
        stats["grad_norm"].append(float(gn) if gn is not None else 0.0)
        self.optimizer.step()

    # ---- checkpoints -----------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        """RUN/ckpt."""
        return self.out / "ckpt"

    def save(self) -> None:
        """Write RUN/ckpt/state.pt (+ config.json) atomically, the one before kept: weights, optimizer, data, RNG."""
        self.acc.wait_for_everyone()
        rng = self._gather_rng()
        if not self.acc_is_main:
            return
        state = {
            "step": self.step,
            "policy_kind": self.policy.name,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": self.stream.state(),
            "rng": rng,
            "config": self.cfg.to_dict(),
        }
        save_checkpoint(self.ckpt_dir, state, self.cfg.to_dict())

    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every process's RNG state (index = rank), so each resumes its own stream."""
        states = [_rng_state()]
        if self.acc.num_processes > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.acc.num_processes
            dist.all_gather_object(gathered, states[0])
            states = gathered
        return states

    def load(self, path: Path | None = None) -> None:
        """Restore a checkpoint written by `save` (exact resume); a damaged one is one InputError line."""
        state, _ = load_checkpoint(path or self.ckpt_dir, "train")  # a damaged latest falls back to the one before
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stream.load_state(state["data"])
        rng = state["rng"]
        _set_rng_state(rng[min(self.acc.process_index, len(rng) - 1)])
        self.step = state["step"]

    # ---- the run ---------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train `cfg.steps` steps (continuing a checkpoint with resume=True); returns the final summary."""
        cfg = self.cfg
        if resume:
            self.load()
            self._say(f"resumed from {self.ckpt_dir} at step {self.step}")
        if self.acc_is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / "config.json", cfg.to_dict())
        log = MetricsLog(self.out, cfg.tensorboard, self.step if resume else None, enabled=self.acc_is_main)
        t_start = time.perf_counter()
        try:
            while self.step < cfg.steps:
                metrics = self.train_step()
                self.step += 1
                metrics["time/elapsed_s"] = time.perf_counter() - t_start
                log.log(self.step, metrics)
                self._progress(metrics)
                out_of_time = cfg.time_limit_min > 0 and metrics["time/elapsed_s"] > 60 * cfg.time_limit_min
                last = self.step == cfg.steps or out_of_time
                if self.eval_samples and ((cfg.eval_every and self.step % cfg.eval_every == 0) or last):
                    ev = self.evaluate()
                    log.log(self.step, flat_metrics(ev))
                    self._say(f"  eval step {self.step}: accuracy {ev['accuracy']:.3f} on {ev['n']}")
                if last or (cfg.save_every and self.step % cfg.save_every == 0):
                    self.save()
                if out_of_time:
                    self._say(f"time limit of {cfg.time_limit_min} min reached at step {self.step}")
                    break
        finally:
            log.close()
        final = self.evaluate() if self.eval_samples else summarize([])
        final["steps"], final["wall_s"] = self.step, time.perf_counter() - t_start
        if self.acc_is_main:
            atomic_write_json(self.out / "eval.json", final)
        self._say(
            f"done: {self.step} steps in {final['wall_s']:.0f}s; eval accuracy {final['accuracy']:.3f} "
            f"(n={final['n']}); run in {self.out} (metrics.jsonl, tb/, ckpt/, eval.json)"
        )
        return final

    def evaluate(self) -> dict[str, Any]:
        """Greedy evaluation on the eval samples (limited by cfg.eval_limit)."""
        samples = self.eval_samples[: self.cfg.eval_limit] if self.cfg.eval_limit else self.eval_samples
        return evaluate(self.policy, samples, self.cfg.env, self.cfg.generation)

    def _progress(self, m: dict[str, float]) -> None:
        if not self.step_lines:
            if self.step % 25 == 0:
                self._say(f"step {self.step}/{self.cfg.steps} reward {m['reward']:.3f} acc {m['accuracy']:.3f}")
            return
        tools = " ".join(f"{t.split('_')[1][:4]} {m[f'tool_call_rate/{t}']:.2f}" for t in TOOL_NAMES)
        self._say(
            f"step {self.step}/{self.cfg.steps} reward {m['reward']:.3f} acc {m['accuracy']:.3f} "
            f"tools[{tools}] hit {m['evidence_hit_rate']:.2f} masked {m['masked_fraction/total']:.2f} kl {m['kl']:.4f} "
            f"clip {m['clip_frac']:.3f}"
            + (f" ent {m['entropy']:.3f}" if "entropy" in m else "")
            + f" {m['time/step_s']:.2f}s"
        )
