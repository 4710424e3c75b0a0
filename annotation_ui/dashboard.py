"""Team dashboard figures: progress, acceptance rates by task type and agent verdict, agreement, calibration."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from annotation_ui.agreement import fleiss_kappa, pairwise_cohen, ratings_table
from annotation_ui.calibration import Calibration, calibrate
from annotation_ui.review_store import KEEP, Quarantined, ReviewStore, kept_by_majority

CATEGORIES = ("keep", "reject")  # agreement is on keeping the sample: accept and edit-and-accept both keep it


@dataclass
class Rate:
    """Decisions and how many of them kept the sample."""

    n: int = 0
    kept: int = 0

    @property
    def rate(self) -> float | None:
        """Acceptance rate (None without decisions)."""
        return self.kept / self.n if self.n else None


@dataclass
class TeamStats:
    """Everything the dashboard shows."""

    samples: int
    overlap: int
    decisions: int
    target: int  # samples x overlap
    complete: int  # samples with >= overlap decisions
    verified: int  # samples meeting the verified rule at min_agree = overlap
    per_annotator: dict[str, dict[str, int]] = field(default_factory=dict)
    by_task: dict[str, Rate] = field(default_factory=dict)
    by_verdict: dict[str, Rate] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    multi_rated: int = 0  # samples with >= 2 decisions
    unanimous: float | None = None  # share of multi-rated samples where every rater agrees
    fleiss: float | None = None
    fleiss_items: int = 0
    pairs: list[dict] = field(default_factory=list)
    skips: dict[str, int] = field(default_factory=dict)  # skip reason -> n
    quarantined: list[Quarantined] = field(default_factory=list)  # rows set aside, never assigned
    calibration: Calibration | None = None  # agents' verdicts vs decisions (see `mifg review-report`)


def verdict_label(verifier_agrees: bool, critic_verdict: str) -> str:
    """How the agents judged a sample, as one label."""
    return f"verifier {'agrees' if verifier_agrees else 'disagrees'} · critic {critic_verdict or 'n/a'}"


def is_verified(decisions: list[str], min_agree: int) -> bool:
    """A sample is verified when >= `min_agree` reviews keep it and more reviews keep it than reject it."""
    return sum(d in KEEP for d in decisions) >= min_agree and kept_by_majority(decisions)


def team_stats(store: ReviewStore) -> TeamStats:
    """Compute the dashboard's figures from the store."""
    rows = store.decision_rows()
    n_samples = store.count_samples()
    per_ann: dict[str, dict[str, int]] = defaultdict(lambda: {"accept": 0, "reject": 0, "edit": 0})
    by_task: dict[str, Rate] = defaultdict(Rate)
    by_verdict: dict[str, Rate] = defaultdict(Rate)
    reasons: dict[str, int] = defaultdict(int)
    per_sample: dict[str, list[str]] = defaultdict(list)
    per_rater: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        keep = r["decision"] in KEEP
        per_ann[r["annotator"]][r["decision"]] += 1
        for table, key in (
            (by_task, r["task_type"]),
            (by_verdict, verdict_label(r["verifier_agrees"], r["critic_verdict"])),
        ):
            table[key].n += 1
            table[key].kept += keep
        if r["decision"] == "reject":
            reasons[r["reason"] or "(none)"] += 1
        per_sample[r["sample_id"]].append(r["decision"])
        per_rater[r["annotator"]][r["sample_id"]] = "keep" if keep else "reject"

    overlap = store.overlap
    binary = {sid: ["keep" if d in KEEP else "reject" for d in ds] for sid, ds in per_sample.items()}
    multi = {sid: ds for sid, ds in binary.items() if len(ds) >= 2}
    stats = TeamStats(
        samples=n_samples,
        overlap=overlap,
        decisions=len(rows),
        target=n_samples * overlap,
        complete=sum(len(ds) >= overlap for ds in per_sample.values()),
        verified=sum(is_verified(ds, overlap) for ds in per_sample.values()),
        per_annotator=dict(sorted(per_ann.items())),
        by_task=dict(sorted(by_task.items())),
        by_verdict=dict(sorted(by_verdict.items())),
        reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        multi_rated=len(multi),
        skips=store.skip_reasons(),
        quarantined=store.quarantined(),
    )
    if rows:
        stats.calibration = calibrate([(r["sample_id"], r["decision"]) for r in rows], store.agent_records())
    if multi:
        stats.unanimous = sum(len(set(ds)) == 1 for ds in multi.values()) / len(multi)
        n = max(2, overlap)
        table = ratings_table(multi, CATEGORIES, n)
        stats.fleiss_items = len(table)
        stats.fleiss = fleiss_kappa(table) if table else None
        stats.pairs = pairwise_cohen(per_rater)
    return stats
