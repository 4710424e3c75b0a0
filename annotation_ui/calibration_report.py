"""`mifg review-report` output: report.json, the reliability plot (PNG) and the printed table."""

from __future__ import annotations

import json
import os
from pathlib import Path

from annotation_ui.calibration import MAX_LET_THROUGH, RULES, SCORE_DEFINITIONS, VERIFIER, Calibration, ScoreReport

REPORT_JSON = "report.json"
PLOT_PNG = "reliability.png"
UNCERTAIN_LISTED = 20  # undecided ids listed in report.json, most uncertain first


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def saved_share(cal: Calibration) -> float:
    """Share of reviews the verifier-confidence threshold saves (0 when there is none)."""
    t = cal.scores[VERIFIER].threshold
    return t.saved if t is not None else 0.0


def report_dict(cal: Calibration, run_dir: str | Path) -> dict:
    """The JSON form of a calibration (report.json)."""

    def score(rep: ScoreReport) -> dict:
        t = rep.threshold
        return {
            "definition": SCORE_DEFINITIONS.get(rep.name, ""),
            "n": rep.n,
            "min": rep.lo,
            "max": rep.hi,
            "ece": rep.ece,
            "bins": [vars(b) for b in rep.bins],
            "threshold": None
            if t is None
            else {
                "auto_accept_at_or_above": t.threshold,
                "auto_accepted": t.auto_accepted,
                "let_through": t.let_through,
                "rejected": t.rejected,
                "let_through_share": t.let_through_share,
                "review_time_saved": t.saved,
                "precision": t.precision,
                "recall": t.recall,
            },
            "threshold_searched": rep.searched,
            "note": rep.note,
        }

    return {
        "run": str(run_dir),
        "rule": cal.rule,
        "rule_text": RULES[cal.rule],
        "max_let_through": MAX_LET_THROUGH,
        "reviewed": cal.reviewed,
        "kept": cal.kept,
        "rejected": cal.reviewed - cal.kept,
        "decisions": cal.decisions,
        "multi_rated": cal.multi_rated,
        "split": cal.split,
        "missing": cal.missing,
        "binary": {
            name: {"n": pr.n, "tp": pr.tp, "fp": pr.fp, "fn": pr.fn, "tn": pr.tn}
            | {"precision": pr.precision, "recall": pr.recall}
            for name, pr in cal.binary.items()
        },
        "scores": {name: score(rep) for name, rep in cal.scores.items()},
        "review_time_saved": saved_share(cal),
        "notes": cal.notes,
        "undecided": cal.undecided,
        "uncertain_first": cal.uncertain_first[:UNCERTAIN_LISTED],
        "plot": PLOT_PNG,
    }


def text_lines(cal: Calibration, run_dir: str | Path) -> list[str]:
    """The short table `mifg review-report` prints."""
    rejected = cal.reviewed - cal.kept
    lines = [
        f"review report of {run_dir}: {cal.reviewed} samples decided ({cal.kept} kept, {rejected} rejected) "
        f"from {cal.decisions} decisions; rule {cal.rule}",
        f"  {'agent says good':<28}{'n':>5}{'good':>6}{'precision':>11}{'recall':>8}",
    ]
    for name, pr in cal.binary.items():
        lines.append(f"  {name:<28}{pr.n:>5}{pr.tp + pr.fp:>6}{_pct(pr.precision):>11}{_pct(pr.recall):>8}")
    lines.append(f"  {'score':<28}{'n':>5}  {'range':<10}{'ECE':>6}  auto-accept   saved  let through")
    for name, rep in cal.scores.items():
        span = f"{rep.lo:.2f}-{rep.hi:.2f}" if rep.n else "-"
        ece = f"{rep.ece:.3f}" if rep.ece is not None else "-"
        head = f"  {name:<28}{rep.n:>5}  {span:<10}{ece:>6}  "
        t = rep.threshold
        if t is None:
            lines.append(head + (f"{'none':<12}{_pct(0.0):>7}" if rep.searched else "-"))
            continue
        lines.append(
            head + f"{'>= ' + format(t.threshold, '.2f'):<12}{_pct(t.saved):>7}  "
            f"{t.let_through} of {t.rejected} ({_pct(t.let_through_share)})"
        )
    lines += [f"  note: {n}" for n in cal.notes]
    return lines


def write_plot(cal: Calibration, path: Path) -> None:
    """The reliability plot: mean score vs observed keep rate per bin, and verifier scores kept vs rejected."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # the Agg backend, no pyplot global state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
    for name, rep in cal.scores.items():
        pts = [b for b in rep.bins if b.n]
        if pts:
            ax.plot([b.mean_score for b in pts], [b.keep_rate for b in pts], marker="o", label=f"{name} (n={rep.n})")
            for b in pts:
                ax.annotate(
                    f"n={b.n}", (b.mean_score, b.keep_rate), textcoords="offset points", xytext=(4, -12), fontsize=7
                )
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.05), xlabel="agent score (bin mean)", ylabel="annotators kept (share)")
    ax.set_title("Reliability", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    rep = cal.scores[VERIFIER]
    lefts = [b.lo for b in rep.bins]
    width = rep.bins[0].hi - rep.bins[0].lo if rep.bins else 0.1
    kept = [round(b.n * b.keep_rate) if b.n else 0 for b in rep.bins]
    rejected = [b.n - k for b, k in zip(rep.bins, kept, strict=True)]
    hist.bar(lefts, kept, width=width, align="edge", color="tab:green", label="kept")
    hist.bar(lefts, rejected, width=width, align="edge", bottom=kept, color="tab:red", label="rejected")
    if rep.threshold is not None:
        t = rep.threshold
        hist.axvline(t.threshold, color="k", ls=":", label=f"auto-accept >= {t.threshold:.2f} ({t.saved:.0%} saved)")
    hist.set(xlim=(-0.02, 1.02), ylim=(0, 1.3 * max([b.n for b in rep.bins] + [1])), xlabel=VERIFIER, ylabel="samples")
    hist.set_title(rep.note or f"{VERIFIER}: kept vs rejected", fontsize=9 if rep.note else 11, wrap=True)
    hist.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Agent calibration: {cal.reviewed} decided samples, rule {cal.rule}", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_report(cal: Calibration, run_dir: str | Path, out: Path) -> tuple[Path, Path]:
    """Write report.json and the PNG into `out` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    report, plot = out / REPORT_JSON, out / PLOT_PNG
    tmp = report.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report_dict(cal, run_dir), indent=2, sort_keys=False) + "\n", "utf-8")
    os.replace(tmp, report)
    write_plot(cal, plot)
    return report, plot
