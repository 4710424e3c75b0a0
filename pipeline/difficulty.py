"""The difficulty card: how often naive solvers answer the accepted samples, per task family, next to chance.

Four solvers, none of which should do well on fine-grained samples:

- `answer_prior`: question and options only (no images). Leave-one-out over the other samples of the
  same task type: the option whose text was most often the correct answer's text, ties broken by how
  often the answer sat at that position, then the first option. It measures text-only shortcuts.
  (Leave-one-out is slightly pessimistic: on exactly balanced answers it falls below chance.)
- `thumbnail`, `plain_subtraction`, `single_image`: see `pipeline.difficulty_solvers`.

Chance is 1 / (number of options), averaged over the samples. `mifg stats` and every exported dataset
card show the table. At most `CAP` samples are solved: the `CAP` ids with the smallest seeded hash, a
random subset that does not depend on shard order, so the card is reproducible.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import Sample, Status

SOLVERS = ("answer_prior", "thumbnail", "plain_subtraction", "single_image")
IMAGE_SOLVERS = SOLVERS[1:]
CAP = 2000  # samples solved per card: keeps `mifg stats` and the export fast


@dataclass
class SolvedRow:
    """What the card keeps of one sample: no pixels, only the text and the image solvers' picks."""

    id: str
    task_type: str
    options: tuple[str, ...]
    answer: int
    picks: dict[str, int | None] = field(default_factory=dict)  # single_image None: use the prior's pick


def _prior_picks(items: Sequence[tuple[str, Sequence[str], int]]) -> list[int]:
    """Leave-one-out answer-prior picks for (task_type, options, answer index) triples."""
    texts: dict[str, Counter] = defaultdict(Counter)
    places: dict[str, Counter] = defaultdict(Counter)
    for task, options, answer in items:
        texts[task][options[answer].strip()] += 1
        places[task][answer] += 1
    picks = []
    for task, options, answer in items:
        own = options[answer].strip()
        t, p = texts[task], places[task]

        def key(i: int, options=options, own=own, answer=answer, t=t, p=p) -> tuple[int, int, int]:
            text = options[i].strip()
            return (t[text] - (text == own), p[i] - (i == answer), -i)

        picks.append(max(range(len(options)), key=key))
    return picks


def answer_prior(samples: Sequence[Sample]) -> list[int]:
    """The answer prior's option index for each sample (leave-one-out within its task type)."""
    return _prior_picks([(s.task_type.value, s.options, s.answer_index) for s in samples])


def solve_sample(sample: Sample, errors: Counter | None = None) -> SolvedRow:
    """Decode the sample's images once and run the image solvers (a solver that raises picks the first option).

    Raises when an image does not decode.
    """
    from pipeline import difficulty_solvers as ds

    arrays = ds.decode(sample)
    q, opts = sample.question, list(sample.options)
    runs = {
        "thumbnail": lambda: ds.thumbnail(arrays, sample),
        "plain_subtraction": lambda: ds.plain_subtraction(arrays, q, opts),
        "single_image": lambda: ds.single_image(arrays, q, opts),
    }
    picks: dict[str, int | None] = {}
    for name, run in runs.items():
        try:
            picks[name] = run()
        except Exception:  # noqa: BLE001 - a naive solver's crash on one sample is a wrong guess, counted
            picks[name] = 0
            if errors is not None:
                errors[name] += 1
    return SolvedRow(sample.id, sample.task_type.value, tuple(opts), sample.answer_index, picks)


class DifficultyTally:
    """Collects samples one at a time (pixels are dropped after solving) and builds the card.

    At most `cap` samples (None: all) are solved: those whose seeded hash of the id is smallest.
    `select(ids)` fixes that subset up front, so no work is spent on samples that would be dropped.
    """

    def __init__(self, cap: int | None = CAP, seed: int = 0) -> None:
        self.cap, self.seed = cap, seed
        self.rows: dict[str, tuple[str, SolvedRow]] = {}  # id -> (hash key, row)
        self._heap: list[tuple[str, str]] = []  # bottom-k by key without select(): (negated, id)
        self._threshold: str | None = None
        self._total: int | None = None
        self.offered: set[str] = set()
        self.skipped: Counter = Counter()  # why samples or shards were not solved
        self.solver_errors: Counter = Counter()

    def key(self, sample_id: str) -> str:
        """The seeded hash that orders samples for the subset."""
        return hashlib.sha256(f"{self.seed}:{sample_id}".encode()).hexdigest()

    def select(self, ids: Iterable[str]) -> None:
        """Fix the subset: the `cap` smallest keys among `ids` (all of them when they are fewer)."""
        keys = sorted({self.key(i) for i in ids})
        self._total = len(keys)
        if self.cap is not None and len(keys) > self.cap:
            self._threshold = keys[self.cap - 1] if self.cap > 0 else ""

    def wants(self, sample_id: str) -> bool:
        """Whether a sample with this id would be solved now."""
        if sample_id in self.rows:
            return False
        k = self.key(sample_id)
        if self._threshold is not None:
            return k <= self._threshold
        if self.cap is None or len(self.rows) < self.cap:
            return True
        return bool(self._heap) and k < _flip(self._heap[0][0])

    def add(self, sample: Sample) -> None:
        """Solve `sample` if it belongs to the subset (a sample whose images do not decode is skipped)."""
        self.offered.add(sample.id)
        if not self.wants(sample.id):
            return
        try:
            row = solve_sample(sample, self.solver_errors)
        except Exception:  # noqa: BLE001 - an undecodable sample is counted and left out, never fatal
            self.skipped["bad_image"] += 1
            return
        k = self.key(sample.id)
        self.rows[sample.id] = (k, row)
        if self._threshold is None and self.cap is not None:
            heapq.heappush(self._heap, (_flip(k), sample.id))
            while len(self.rows) > self.cap:
                _, dropped = heapq.heappop(self._heap)
                del self.rows[dropped]

    def card(self) -> dict[str, Any]:
        """The JSON-able card of the samples solved so far."""
        rows = [r for _, r in sorted(self.rows.values(), key=lambda kr: kr[0])]
        total = self._total if self._total is not None else len(self.offered)
        return _card(rows, total, dict(self.skipped), dict(self.solver_errors))


def _flip(hex_key: str) -> str:
    """A key that sorts in reverse (heapq is a min-heap; the largest key is evicted first)."""
    return "".join("0123456789abcdef"[15 - int(c, 16)] for c in hex_key)  # its own inverse


def _card(rows: list[SolvedRow], total: int, skipped: dict, solver_errors: dict) -> dict[str, Any]:
    prior = _prior_picks([(r.task_type, r.options, r.answer) for r in rows])
    groups: dict[str, list[tuple[SolvedRow, dict[str, int]]]] = defaultdict(list)
    for row, p in zip(rows, prior, strict=True):
        picks = {"answer_prior": p, **{k: v for k, v in row.picks.items() if v is not None}}
        picks.setdefault("single_image", p)
        groups[row.task_type].append((row, picks))

    def summary(items: list[tuple[SolvedRow, dict[str, int]]]) -> dict[str, Any]:
        n = len(items)
        out: dict[str, Any] = {"n": n, "chance": round(sum(1 / len(r.options) for r, _ in items) / n, 4) if n else 0.0}
        for name in SOLVERS:
            hits = sum(1 for r, picks in items if picks.get(name, 0) == r.answer)
            out[name] = round(hits / n, 4) if n else 0.0
        return out

    return {
        "solvers": list(SOLVERS),
        "samples": len(rows),
        "of": max(total, len(rows)),
        "skipped": skipped,
        "solver_errors": solver_errors,
        "task_types": {task: summary(items) for task, items in sorted(groups.items())},
        "overall": summary([it for items in groups.values() for it in items]),
    }


def difficulty_card(samples: Iterable[Sample], cap: int | None = None, seed: int = 0) -> dict[str, Any]:
    """The card of `samples` (an iterable: pixels are not kept), per task type plus an "overall" row."""
    tally = DifficultyTally(cap, seed)
    for s in samples:
        tally.add(s)
    return tally.card()


def run_difficulty(root: str | Path, cap: int | None = CAP, seed: int = 0) -> dict[str, Any]:
    """The card of a store root's shards (a run's accepted shards), skipping unreadable shards and rows."""
    from pipeline.shard_store import MANIFESTS
    from pipeline.store_reader import StoreReader, StoreReport

    tally = DifficultyTally(cap, seed)
    root = Path(root)
    if not (root / MANIFESTS).is_dir():
        return tally.card()
    reader = StoreReader(root, report=StoreReport(quiet=True))  # the command itself reports damage once
    ids: dict[str, list[str]] = {}
    for shard, _, row in reader.rows(columns=["id"]):
        ids.setdefault(shard.info.file, []).append(row["id"])
    tally.select(i for shard_ids in ids.values() for i in shard_ids if i)
    solved: set[str] = set()
    for shard in reader.shards():
        if not any(i and tally.wants(i) for i in ids.get(shard.info.file, ())):
            continue
        for item in reader.shard_samples(shard):
            sample = item.sample
            if tally.wants(sample.id) and sample.id not in solved and sample.status != Status.REJECTED:
                solved.add(sample.id)
                tally.add(sample)
    tally.skipped.update(reader.report.skipped)  # each damaged shard once (a reader reports a file once)
    return tally.card()


def _pct(x: float) -> str:
    return f"{x:.1%}"


def format_card(card: dict[str, Any]) -> str:
    """The card as a plain-text table (for `mifg stats`)."""
    if not card.get("samples"):
        return "difficulty: no accepted samples to solve"
    names = card["solvers"]
    head = f"  {'task type':<20} {'n':>6} {'chance':>7}" + "".join(f" {n:>{max(len(n), 7)}}" for n in names)
    lines = [
        f"difficulty: naive solvers' accuracy on {card['samples']} of {card['of']} accepted samples"
        " (chance = 1 / options, averaged):",
        head,
    ]
    for task, row in [*card["task_types"].items(), ("overall", card["overall"])]:
        cells = "".join(f" {_pct(row[n]):>{max(len(n), 7)}}" for n in names)
        lines.append(f"  {task:<20} {row['n']:>6} {_pct(row['chance']):>7}{cells}")
    notes = {**card.get("skipped", {}), **{f"{k}_errors": v for k, v in card.get("solver_errors", {}).items()}}
    if notes:
        lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(notes.items())))
    return "\n".join(lines)


def markdown_card(card: dict[str, Any]) -> str:
    """The card as a Markdown table (for the dataset card)."""
    if not card.get("samples"):
        return "No samples were solved."
    names = card["solvers"]
    lines = [
        "| task type | n | chance | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|" + "---|" * (len(names) + 3),
    ]
    for task, row in [*card["task_types"].items(), ("**overall**", card["overall"])]:
        cells = " | ".join(_pct(row[n]) for n in names)
        lines.append(f"| {task} | {row['n']} | {_pct(row['chance'])} | {cells} |")
    return "\n".join(lines)
