"""Mean and spread of held-out results over training seeds, as `mifg train-demo --seeds` reports them.

Every run (main, no_tools, no_traj_mask) is trained once per seed on the same data; the seed changes
the policy's initialisation, the rollout sampling and the order the training samples are drawn in.
Per run and metric the summary holds the per-seed values, their mean, the sample standard deviation
(n - 1 in the denominator; 0 for a single seed) and min / max, and how many seeds "learned" (held-out
accuracy >= LEARNED).
"""

from __future__ import annotations

import statistics
from typing import Any

SPREAD = "std = sample standard deviation over seeds (n - 1; 0 for one seed), plus min-max"
LEARNED = 0.95  # held-out accuracy at which a seed counts as having learned the task (chance is 0.5)
METRICS = {  # summary name -> how to read it from a run's final evaluation report
    "test_accuracy": lambda r: r["accuracy"],
    "confirmation_rate": lambda r: r["tool_call_rate"]["visual_confirmation"],
}


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; raises ValueError on anything that is not distinct non-negative integers."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"--seeds {text!r}: expected comma-separated non-negative integers, e.g. 0,1,2")
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def spread(values: list[float]) -> dict[str, float]:
    """{"mean", "std", "min", "max"} of per-seed values (std: sample standard deviation, 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def seed_summary(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """results[run][seed] = the run's final evaluation report -> the JSON summary of all runs."""
    runs: dict[str, Any] = {}
    for name, by_seed in results.items():
        seeds = sorted(by_seed)
        entry: dict[str, Any] = {"seeds": seeds}
        for metric, read in METRICS.items():
            values = [float(read(by_seed[s])) for s in seeds]
            entry[metric] = {**spread(values), "per_seed": dict(zip(map(str, seeds), values, strict=True))}
        acc = entry["test_accuracy"]["per_seed"]
        entry["learned"] = sum(v >= LEARNED for v in acc.values())
        entry["n_test"] = by_seed[seeds[0]]["n"]
        entry["steps"] = {str(s): by_seed[s]["steps"] for s in seeds}
        entry["wall_s"] = {str(s): round(by_seed[s]["wall_s"], 1) for s in seeds}
        runs[name] = entry
    return {"spread": SPREAD, "learned_threshold": LEARNED, "runs": runs}


def _cell(m: dict[str, Any], digits: int) -> str:
    return f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f} [{m['min']:.{digits}f}-{m['max']:.{digits}f}]"


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table: mean ± std [min-max] per run, then the per-seed values."""
    lines = [f"{'run':14s} {'test accuracy':28s} {'confirmation rate':28s} learned  per seed (accuracy / confirmation)"]
    for name, e in summary["runs"].items():
        acc, conf = e["test_accuracy"], e["confirmation_rate"]
        per = "  ".join(f"s{s} {acc['per_seed'][str(s)]:.3f}/{conf['per_seed'][str(s)]:.2f}" for s in e["seeds"])
        learned = f"{e['learned']}/{len(e['seeds'])}"
        lines.append(f"{name:14s} {_cell(acc, 3):28s} {_cell(conf, 2):28s} {learned:8s} {per}")
    lines.append(f"({summary['spread']}; learned: held-out accuracy >= {summary['learned_threshold']})")
    return "\n".join(lines)
