"""Leakage-free train/test splits: samples that share any source photo form one group.

Groups come from union-find over `ImageMeta.source`, so two samples that share even one source
photo (directly or through a chain of other samples) always land in the same split. Groups are
then assigned to test greedily, largest first, so that each task type gets as close to
`test_fraction` of its samples as whole groups allow. Everything is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TRAIN = "train"
TEST = "test"
SPLITS = (TRAIN, TEST)


@dataclass(frozen=True)
class SplitItem:
    """What the splitter needs to know about one sample."""

    id: str
    sources: tuple[str, ...]
    task_type: str


@dataclass
class SplitPlan:
    """The split of every sample, the source groups, and the per-type targets it aimed for."""

    split_of: dict[str, str]  # sample id -> "train" | "test"
    group_of: dict[str, str]  # sample id -> group id
    groups: dict[str, list[str]]  # group id -> sample ids (input order)
    group_sources: dict[str, list[str]]  # group id -> sorted source ids
    targets: dict[str, int]  # task type -> wanted test count
    seed: int = 0
    test_fraction: float = 0.0
    counts: dict[str, Counter] = field(default_factory=dict)  # split -> task type -> n

    def to_json(self) -> dict:
        """JSON-able record of the plan (written as splits.json)."""
        group_split = {g: self.split_of[ids[0]] for g, ids in self.groups.items()}
        return {
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "grouping": "union-find over image_meta.source: samples sharing any source photo share a split",
            "counts": {s: dict(sorted(self.counts.get(s, Counter()).items())) for s in SPLITS},
            "test_targets": dict(sorted(self.targets.items())),
            "groups": {
                g: {"split": group_split[g], "sources": self.group_sources[g], "samples": ids}
                for g, ids in sorted(self.groups.items())
            },
            "samples": {
                sid: {"split": self.split_of[sid], "group": self.group_of[sid]} for sid in sorted(self.split_of)
            },
        }


class _UnionFind:
    """Disjoint sets over hashable keys, with path halving."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # keep the smaller key as root so the result does not depend on call order
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def group_by_source(items: Sequence[SplitItem]) -> dict[str, list[str]]:
    """Connected components of samples linked by shared sources, keyed by a stable group id."""
    uf = _UnionFind()
    for item in items:
        node = f"sample:{item.id}"
        uf.find(node)
        for src in item.sources:
            uf.union(node, f"source:{src}")
    members: dict[str, list[str]] = {}
    for item in items:
        members.setdefault(uf.find(f"sample:{item.id}"), []).append(item.id)
    # Number groups by their smallest sample id, so ids are stable across runs and input orders.
    ordered = sorted(members.values(), key=min)
    return {f"g{i:05d}": ids for i, ids in enumerate(ordered)}


def _targets(type_counts: Counter, test_fraction: float, n_groups: int) -> dict[str, int]:
    """Per-type test counts by largest remainder, summing to round(N * fraction)."""
    total = sum(type_counts.values())
    want = round(total * test_fraction)
    if test_fraction > 0 and n_groups >= 2:
        want = max(want, 1)  # a non-zero fraction should give a non-empty test split when possible
    want = min(want, max(total - 1, 0))
    exact = {t: n * test_fraction for t, n in type_counts.items()}
    base = {t: int(v) for t, v in exact.items()}
    rest = want - sum(base.values())
    # the types with the largest fractional parts get the leftover slots (ties by name)
    for t in sorted(exact, key=lambda t: (-(exact[t] - base[t]), t))[: max(rest, 0)]:
        base[t] += 1
    return base


def plan_splits(items: Iterable[SplitItem], test_fraction: float = 0.1, seed: int = 0) -> SplitPlan:
    """Assign every sample to train or test: grouped by source photo, stratified by task type."""
    items = list(items)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    by_id = {it.id: it for it in items}
    groups = group_by_source(items)
    group_counts = {g: Counter(by_id[s].task_type for s in ids) for g, ids in groups.items()}
    targets = _targets(Counter(it.task_type for it in items), test_fraction, len(groups))
    want_total = sum(targets.values())

    order = sorted(groups)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -len(groups[g]))  # stable: the seed breaks ties among equal sizes

    in_test: set[str] = set()
    got: Counter = Counter()
    for g in order:
        if want_total == 0:
            break
        counts = group_counts[g]
        free = {t: max(targets.get(t, 0) - got[t], 0) for t in counts}
        fill = sum(min(n, free[t]) for t, n in counts.items())
        over = sum(max(n - free[t], 0) for t, n in counts.items())
        size = sum(counts.values())
        fits = sum(got.values()) + size <= want_total
        if fill > over or (fill == over and fill > 0 and fits):
            in_test.add(g)
            got.update(counts)
    if want_total > 0 and not in_test and len(groups) >= 2:
        smallest = order[-1]  # nothing fitted: the smallest group keeps the test split non-empty
        in_test.add(smallest)
        got.update(group_counts[smallest])

    split_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    counts: dict[str, Counter] = {TRAIN: Counter(), TEST: Counter()}
    for g, ids in groups.items():
        split = TEST if g in in_test else TRAIN
        for sid in ids:
            split_of[sid] = split
            group_of[sid] = g
            counts[split][by_id[sid].task_type] += 1
    # "sha256:..." links (identical image bytes) join groups but are not source photos: keep them out of the record
    group_sources = {
        g: sorted({src for sid in ids for src in by_id[sid].sources if not src.startswith("sha256:")})
        for g, ids in groups.items()
    }
    return SplitPlan(split_of, group_of, groups, group_sources, targets, seed, test_fraction, counts)
