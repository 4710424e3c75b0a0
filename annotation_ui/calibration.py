"""Agent calibration: how well each agent's verdict predicts what the annotators decided.

Only samples the annotators decided on count (accept / edit keep a sample, reject does not; a skip is
no decision). Critic-rejected samples go to the run's `rejected/` shards and are never reviewed, so
among reviewed samples the critic has nearly always said "accept": its figures say so rather than
pretend to measure something.

Two kinds of signal:
- binary ("agent says good": the verifier agrees, the critic accepts, the critic did not raise reason R):
  precision = share of "says good" samples the annotators kept, recall = share of kept samples the
  agent called good;
- scores in [0, 1] (the verifier's confidence in the proposed answer, the share of blind votes for it):
  reliability bins (mean score vs observed keep rate) and the auto-accept threshold search.

Threshold rule: auto-accepting every sample with score >= t must let through at most 2% of the samples
the annotators rejected; of the thresholds that do, the lowest one (the least review left) is reported
with the share of reviews it saves (every review counted as the same time).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from annotation_ui.review_store import KEEP, kept_by_majority

if TYPE_CHECKING:
    from annotation_ui.review_store import ReviewStore

RULES = {
    "majority": "a sample with several decisions counts as kept when more of them keep (accept / edit) than reject"
    " it; a tie counts as rejected (the rule of `mifg verified`)",
    "any-reject": "a sample counts as rejected as soon as one annotator rejected it",
}
MAX_LET_THROUGH = 0.02  # share of annotator-rejected samples an auto-accept threshold may let through
N_BINS = 10
VERIFIER = "verifier confidence"
VOTES = "vote share"
SCORE_DEFINITIONS = {
    VERIFIER: "confidence that the proposed answer is right: 1/2 + c/2 when the verifier agrees, 1/2 - c/2 when not",
    VOTES: "share of the verifier's blind votes for the proposed answer",
}


@dataclass(frozen=True)
class Reviewed:
    """One decided sample: what the agents said and whether the annotators kept it."""

    sample_id: str
    kept: bool
    n_decisions: int
    verifier_agrees: bool
    verifier_confidence: float  # the verifier's own confidence in its answer, 0..1
    answer_vote_share: float | None  # share of blind votes for the proposed answer; None without votes
    critic_verdict: str
    critic_reasons: tuple[str, ...]


@dataclass(frozen=True)
class PrecisionRecall:
    """Confusion counts of "agent says good" against "annotators kept"."""

    tp: int  # says good, kept
    fp: int  # says good, rejected
    fn: int  # says bad, kept
    tn: int  # says bad, rejected

    @property
    def n(self) -> int:
        """Samples counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float | None:
        """Share of "says good" samples the annotators kept (None when the agent never says good)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """Share of kept samples the agent called good (None when the annotators kept none)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass(frozen=True)
class Bin:
    """One reliability bin: scores in [lo, hi) (the last bin includes 1.0)."""

    lo: float
    hi: float
    n: int
    mean_score: float | None
    keep_rate: float | None


@dataclass(frozen=True)
class Threshold:
    """Auto-accepting every sample with score >= `threshold`: what it saves and what it lets through."""

    threshold: float
    auto_accepted: int
    let_through: int  # annotator-rejected samples among the auto-accepted
    rejected: int  # annotator-rejected samples in all
    kept: int  # annotator-kept samples in all
    saved: float  # share of reviews no longer needed

    @property
    def let_through_share(self) -> float:
        """Share of the annotator-rejected samples that would have been let through."""
        return self.let_through / self.rejected if self.rejected else 0.0

    @property
    def precision(self) -> float | None:
        """Share of the auto-accepted samples the annotators kept."""
        return (self.auto_accepted - self.let_through) / self.auto_accepted if self.auto_accepted else None

    @property
    def recall(self) -> float | None:
        """Share of the kept samples that are auto-accepted."""
        return (self.auto_accepted - self.let_through) / self.kept if self.kept else None


@dataclass
class ScoreReport:
    """Calibration of one score signal."""

    name: str
    n: int
    lo: float | None = None
    hi: float | None = None
    bins: list[Bin] = field(default_factory=list)
    ece: float | None = None  # expected calibration error: mean |score - keep rate| weighted by bin size
    searched: bool = False  # whether the threshold search could run (spread in scores, some rejections)
    threshold: Threshold | None = None
    note: str = ""  # why there is no threshold ("" when there is one)


@dataclass
class Calibration:
    """Everything the report and the dashboard show."""

    rule: str
    reviewed: int  # samples with at least one decision and a readable shard row
    kept: int
    decisions: int
    multi_rated: int  # samples with >= 2 decisions
    split: int  # multi-rated samples whose annotators did not all agree
    missing: int = 0  # decided samples whose shard row could not be read
    binary: dict[str, PrecisionRecall] = field(default_factory=dict)
    scores: dict[str, ScoreReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    undecided: int = 0
    uncertain_first: list[str] = field(default_factory=list)  # undecided ids, most uncertain first


def annotators_keep(decisions: Sequence[str], rule: str = "majority") -> bool:
    """Whether the annotators kept a sample, from its decisions, under `rule` (see RULES)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: choose {', '.join(RULES)}")
    if rule == "any-reject":
        return bool(decisions) and all(d in KEEP for d in decisions)
    return kept_by_majority(decisions)


def verifier_score(agrees: bool, confidence: float) -> float:
    """The verifier's confidence that the proposed answer is right, in [0, 1] (0.5: no information)."""
    c = min(1.0, max(0.0, float(confidence or 0.0)))
    return 0.5 + c / 2 if agrees else 0.5 - c / 2


def answer_vote_share(votes: Sequence[str] | None, answer: str) -> float | None:
    """Share of the blind votes that chose the proposed answer; None without votes."""
    return sum(v == answer for v in votes) / len(votes) if votes else None


def _verifier_of(record: Mapping) -> tuple[bool, float]:
    """(agrees, confidence) of a shard record's verifier verdict."""
    verifier = (record.get("provenance") or {}).get("verifier") or {}
    return bool(verifier.get("agrees")), round(float(verifier.get("confidence") or 0.0), 6)  # stored as float32


def record_score(record: Mapping) -> float:
    """The verifier confidence score (see `verifier_score`) of a shard record."""
    return verifier_score(*_verifier_of(record))


def reviewed_sample(record: Mapping, decisions: Sequence[str], rule: str = "majority") -> Reviewed:
    """One decided sample from its shard record ({"id", "answer", "provenance"}) and its decisions."""
    prov = record.get("provenance") or {}
    verifier = prov.get("verifier") or {}
    critic = prov.get("critic") or {}
    agrees, confidence = _verifier_of(record)
    return Reviewed(
        sample_id=record["id"],
        kept=annotators_keep(decisions, rule),
        n_decisions=len(decisions),
        verifier_agrees=agrees,
        verifier_confidence=confidence,
        answer_vote_share=answer_vote_share(verifier.get("votes"), record.get("answer") or ""),
        critic_verdict=critic.get("verdict") or "",
        critic_reasons=tuple(critic.get("reasons") or ()),
    )


def binary_pairs(samples: Sequence[Reviewed]) -> dict[str, list[tuple[bool, bool]]]:
    """(agent says good, annotators kept) per binary signal; one signal per critic reason seen."""
    out: dict[str, list[tuple[bool, bool]]] = {
        "verifier agrees": [(s.verifier_agrees, s.kept) for s in samples],
        "critic verdict accept": [(s.critic_verdict == "accept", s.kept) for s in samples],
    }
    for reason in sorted({r for s in samples for r in s.critic_reasons}):
        out[f"critic: no {reason}"] = [(reason not in s.critic_reasons, s.kept) for s in samples]
    return out


def score_pairs(samples: Sequence[Reviewed]) -> dict[str, list[tuple[float, bool]]]:
    """(score, annotators kept) per score signal; samples without votes are left out of the vote share."""
    return {
        VERIFIER: [(verifier_score(s.verifier_agrees, s.verifier_confidence), s.kept) for s in samples],
        VOTES: [(s.answer_vote_share, s.kept) for s in samples if s.answer_vote_share is not None],
    }


def precision_recall(pairs: Iterable[tuple[bool, bool]]) -> PrecisionRecall:
    """Confusion counts of (agent says good, annotators kept) pairs."""
    counts: dict[tuple[bool, bool], int] = defaultdict(int)
    for good, kept in pairs:
        counts[(bool(good), bool(kept))] += 1
    return PrecisionRecall(
        tp=counts[(True, True)], fp=counts[(True, False)], fn=counts[(False, True)], tn=counts[(False, False)]
    )


def bin_index(score: float, n_bins: int = N_BINS) -> int:
    """The reliability bin of a score (scores outside [0, 1] go to the end bins)."""
    return min(n_bins - 1, max(0, math.floor(score * n_bins)))


def reliability_bins(pairs: Sequence[tuple[float, bool]], n_bins: int = N_BINS) -> list[Bin]:
    """Equal-width bins over [0, 1]: samples, mean score and observed keep rate in each (None when empty)."""
    members: list[list[tuple[float, bool]]] = [[] for _ in range(n_bins)]
    for score, kept in pairs:
        members[bin_index(score, n_bins)].append((score, kept))
    return [
        Bin(
            lo=i / n_bins,
            hi=(i + 1) / n_bins,
            n=len(m),
            mean_score=sum(s for s, _ in m) / len(m) if m else None,
            keep_rate=sum(k for _, k in m) / len(m) if m else None,
        )
        for i, m in enumerate(members)
    ]


def expected_calibration_error(bins: Sequence[Bin]) -> float | None:
    """Mean |mean score - keep rate| over bins, weighted by their sizes (None without samples)."""
    n = sum(b.n for b in bins)
    if not n:
        return None
    return sum(b.n * abs(b.mean_score - b.keep_rate) for b in bins if b.n) / n


def threshold_problem(pairs: Sequence[tuple[float, bool]], label: str) -> str:
    """Why no threshold can be searched on these pairs, or "" when it can."""
    if not pairs:
        return f"no {label} on the reviewed samples: threshold analysis not possible"
    scores = {s for s, _ in pairs}
    if len(scores) == 1:
        return f"no spread in {label} (every sample {next(iter(scores)):.2f}): threshold analysis not possible"
    if all(k for _, k in pairs):
        return (
            f"annotators rejected none of the {len(pairs)} samples: the let-through limit cannot be checked, "
            "threshold analysis not possible"
        )
    return ""


def best_threshold(pairs: Sequence[tuple[float, bool]], max_let_through: float = MAX_LET_THROUGH) -> Threshold | None:
    """The lowest t such that auto-accepting scores >= t lets through <= `max_let_through` of the rejected samples.

    Thresholds are tried at the observed scores, lowest first (a lower t auto-accepts more and saves
    more review); None when even the highest score lets through too many.
    """
    rejected = sum(not k for _, k in pairs)
    kept = len(pairs) - rejected
    allowed = math.floor(max_let_through * rejected + 1e-9)
    for t in sorted({s for s, _ in pairs}):
        auto = [k for s, k in pairs if s >= t]
        leaked = sum(not k for k in auto)
        if leaked <= allowed:
            return Threshold(t, len(auto), leaked, rejected, kept, saved=len(auto) / len(pairs))
    return None


def score_report(
    name: str, pairs: Sequence[tuple[float, bool]], max_let_through: float = MAX_LET_THROUGH
) -> ScoreReport:
    """Reliability bins, calibration error and threshold of one score signal."""
    rep = ScoreReport(name=name, n=len(pairs))
    if pairs:
        rep.lo, rep.hi = min(s for s, _ in pairs), max(s for s, _ in pairs)
        rep.bins = reliability_bins(pairs)
        rep.ece = expected_calibration_error(rep.bins)
    rep.note = threshold_problem(pairs, name)
    if not rep.note:
        rep.searched = True
        rep.threshold = best_threshold(pairs, max_let_through)
        if rep.threshold is None:
            rep.note = f"no {name} threshold lets through <= {max_let_through:.0%} of rejected samples"
    return rep


def uncertainty_order(scores: Mapping[str, float], bins: Sequence[Bin]) -> list[str]:
    """Ids most uncertain first: by how close their bin's observed keep rate (else the score) is to 1/2."""

    def p_keep(score: float) -> float:
        b = bins[bin_index(score, len(bins))] if bins else None
        return b.keep_rate if b is not None and b.keep_rate is not None else score

    order = {sid: i for i, sid in enumerate(scores)}
    return sorted(scores, key=lambda sid: (abs(p_keep(scores[sid]) - 0.5), order[sid]))


def calibrate(
    decisions: Iterable[tuple[str, str]],
    records: Mapping[str, Mapping],
    rule: str = "majority",
    max_let_through: float = MAX_LET_THROUGH,
) -> Calibration:
    """The whole calibration from (sample id, decision) pairs and the samples' shard records."""
    by_sample: dict[str, list[str]] = defaultdict(list)
    for sample_id, decision in decisions:
        by_sample[sample_id].append(decision)
    samples = [reviewed_sample(records[sid], ds, rule) for sid, ds in by_sample.items() if sid in records]
    kept_votes = {sid: [d in KEEP for d in ds] for sid, ds in by_sample.items() if sid in records}
    cal = Calibration(
        rule=rule,
        reviewed=len(samples),
        kept=sum(s.kept for s in samples),
        decisions=sum(len(ds) for ds in by_sample.values()),
        multi_rated=sum(len(v) >= 2 for v in kept_votes.values()),
        split=sum(len(set(v)) > 1 for v in kept_votes.values()),
        missing=len(by_sample) - len(samples),
    )
    cal.binary = {name: precision_recall(pairs) for name, pairs in binary_pairs(samples).items()}
    cal.scores = {name: score_report(name, pairs, max_let_through) for name, pairs in score_pairs(samples).items()}
    cal.notes = _notes(cal, samples)
    undecided = {sid: record_score(rec) for sid, rec in records.items() if sid not in by_sample}
    cal.undecided = len(undecided)
    cal.uncertain_first = uncertainty_order(undecided, cal.scores[VERIFIER].bins)
    return cal


def _notes(cal: Calibration, samples: Sequence[Reviewed]) -> list[str]:
    """Plain sentences on what the figures cannot say."""
    notes = [
        f"rule: {cal.rule} - {RULES[cal.rule]}; {cal.multi_rated} samples have several decisions, "
        f"{cal.split} of them split between keep and reject"
    ]
    if cal.missing:
        notes.append(f"{cal.missing} decided samples could not be read from their shards and are left out")
    if samples and not any(s.critic_reasons for s in samples):
        verdicts = sorted({s.critic_verdict or "n/a" for s in samples})
        notes.append(
            f"critic verdict on every reviewed sample: {', '.join(verdicts)}, no reasons raised (critic-rejected "
            "samples go to rejected/ and are not reviewed): critic reasons cannot be compared with the annotators"
        )
    if samples and not any(s.answer_vote_share is not None for s in samples):
        notes.append("no verifier votes (e.g. the offline backend): vote share not available")
    for rep in cal.scores.values():
        if rep.note and rep.n:
            notes.append(rep.note)
    if cal.reviewed and 0 < cal.reviewed - cal.kept < 50:
        notes.append(
            f"only {cal.reviewed - cal.kept} rejected samples: a {MAX_LET_THROUGH:.0%} let-through limit allows "
            f"{math.floor(MAX_LET_THROUGH * (cal.reviewed - cal.kept) + 1e-9)} of them through"
        )
    notes.append("thresholds are fitted on these same reviewed samples: check them on the next run before use")
    return notes


def from_store(store: ReviewStore, rule: str = "majority", max_let_through: float = MAX_LET_THROUGH) -> Calibration:
    """The calibration of a review store: its stored decisions joined with the samples' agent verdicts."""
    decisions = [(d.sample_id, d.decision) for d in store.decisions()]
    return calibrate(decisions, store.agent_records(), rule, max_let_through)
