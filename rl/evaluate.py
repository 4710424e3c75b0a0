"""Evaluation: greedy episodes over a sample set; accuracy overall / per task type / per domain,
tool-call rate per tool, mean turns, failure rates."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import torch

from rl.env import EnvConfig
from rl.parsing import TOOL_NAMES
from rl.policies.base import GenerationConfig, Policy
from rl.trajectory import FLAGS, Trajectory
from schemas import Sample


def summarize(trajs: list[Trajectory]) -> dict:
    """Metrics of finished trajectories (one per sample)."""
    n = max(len(trajs), 1)

    def acc_by(key: str) -> dict[str, dict[str, float]]:
        groups: dict[str, list[Trajectory]] = defaultdict(list)
        for t in trajs:
            groups[getattr(t, key)].append(t)
        return {k: {"n": len(v), "accuracy": sum(t.correct for t in v) / len(v)} for k, v in sorted(groups.items())}

    return {
        "n": len(trajs),
        "accuracy": sum(t.correct for t in trajs) / n,
        "answered": sum(t.answer is not None for t in trajs) / n,
        "per_task_type": acc_by("task_type"),
        "per_domain": acc_by("domain"),
        "tool_call_rate": {tool: sum(t.tool_calls.get(tool, 0) > 0 for t in trajs) / n for tool in TOOL_NAMES},
        "tool_calls_per_episode": {tool: sum(t.tool_calls.get(tool, 0) for t in trajs) / n for tool in TOOL_NAMES},
        "tool_error_rate": sum(t.tool_errors > 0 for t in trajs) / n,
        "evidence_hit_rate": sum(t.evidence_hit for t in trajs) / n,
        "mean_turns": sum(t.n_turns for t in trajs) / n,
        "flags": {f: sum(getattr(t, f) for t in trajs) / n for f in FLAGS},
    }


@torch.no_grad()
def evaluate(
    policy: Policy,
    samples: list[Sample],
    env_cfg: EnvConfig,
    gen_cfg: GenerationConfig,
    batch_size: int = 64,
    return_trajectories: bool = False,
) -> dict | tuple[dict, list[Trajectory]]:
    """Greedy rollouts (one per sample) and their summary; the global RNG is left untouched."""
    gen = dataclasses.replace(gen_cfg, greedy=True, record_logprobs=False)  # nothing here reads old log-probs
    was_training = policy.module.training
    policy.train(False)
    trajs: list[Trajectory] = []
    with torch.random.fork_rng(devices=[]):  # evaluation must not shift the training RNG stream
        for i in range(0, len(samples), batch_size):
            trajs += policy.rollout(samples[i : i + batch_size], 1, env_cfg, gen, group_offset=i)
    policy.train(was_training)
    summary = summarize(trajs)
    return (summary, trajs) if return_trajectories else summary


def flat_metrics(summary: dict, prefix: str = "eval/") -> dict[str, float]:
    """Scalar metrics of a summary under stable names (eval/accuracy, eval/tool_call_rate/<tool>, ...)."""
    out = {
        f"{prefix}accuracy": summary["accuracy"],
        f"{prefix}answered": summary["answered"],
        f"{prefix}mean_turns": summary["mean_turns"],
        f"{prefix}tool_error_rate": summary["tool_error_rate"],
        f"{prefix}evidence_hit_rate": summary["evidence_hit_rate"],
    }
    for tool, v in summary["tool_call_rate"].items():
        out[f"{prefix}tool_call_rate/{tool}"] = v
    for tt, v in summary["per_task_type"].items():
        out[f"{prefix}accuracy/task_type/{tt}"] = v["accuracy"]
    for d, v in summary["per_domain"].items():
        out[f"{prefix}accuracy/domain/{d}"] = v["accuracy"]
    return out
