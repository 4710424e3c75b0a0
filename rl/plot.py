"""Learning curves of one or more runs (RUN/metrics.jsonl) as one PNG."""

from __future__ import annotations

from pathlib import Path

from rl.run_files import read_records
from schemas.errors import InputError

PANELS = [
    ("eval/accuracy", "test accuracy (greedy)"),
    ("accuracy", "train accuracy (sampled)"),
    ("tool_call_rate/visual_confirmation", "visual_confirmation call rate"),
    ("evidence_hit_rate", "crop covers the evidence"),
    ("masked_fraction/total", "masked trajectories"),
    ("entropy", "policy entropy"),
]


def read_metrics(run: str | Path) -> list[dict]:
    """Records of RUN/metrics.jsonl (a torn last line skipped with a warning)."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        raise InputError(f"{path}: no metrics (is {run} a training run directory?)")
    return read_records(path, "train-plot")


def _smooth(ys: list[float], k: int = 5) -> list[float]:
    return [sum(ys[max(0, i - k + 1) : i + 1]) / len(ys[max(0, i - k + 1) : i + 1]) for i in range(len(ys))]


def plot_runs(runs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Plot the standard panels for each run into `out` (PNG); returns the path.

    Runs with the same label (e.g. one run trained at several seeds) share a colour and a legend entry.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or [Path(r).name for r in runs]
    colours = {lab: f"C{i}" for i, lab in enumerate(dict.fromkeys(labels))}
    repeated = len(colours) < len(labels)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    data = [read_metrics(r) for r in runs]
    for ax, (key, title) in zip(axes.flat, PANELS, strict=True):
        seen: set[str] = set()
        for recs, label in zip(data, labels, strict=True):
            pts = [(r["step"], r[key]) for r in recs if key in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ys = list(ys) if key.startswith("eval/") else _smooth(list(ys))
                marker = "o" if key.startswith("eval/") else None
                legend = label if label not in seen else "_nolegend_"
                seen.add(label)
                ax.plot(xs, ys, marker=marker, ms=3, color=colours[label], alpha=0.7 if repeated else 1.0, label=legend)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes.flat[0].axhline(0.5, color="grey", ls=":", lw=1)
    axes.flat[0].legend(fontsize=8, title="one line per seed" if repeated else None, title_fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
