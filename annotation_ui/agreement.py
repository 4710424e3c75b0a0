"""Inter-annotator agreement: raw agreement, Cohen's kappa (two raters) and Fleiss' kappa (any number).

Kappa is undefined when chance agreement is 1 (every rating in one category); we return None then
rather than a number that looks meaningful.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from itertools import combinations


def percent_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Share of items on which two raters agree (None when there are no items)."""
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items")
    if not a:
        return None
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters over the same items: (p_o - p_e) / (1 - p_e)."""
    p_o = percent_agreement(a, b)
    if p_o is None:
        return None
    n = len(a)
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of rating counts (each item rated by the same n >= 2)."""
    if not counts:
        return None
    n = sum(counts[0])
    if n < 2 or any(sum(row) != n for row in counts):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every item")
    n_items = len(counts)
    k = len(counts[0])
    p_j = [sum(row[j] for row in counts) / (n_items * n) for j in range(k)]
    p_i = [(sum(x * x for x in row) - n) / (n * (n - 1)) for row in counts]
    p_bar = sum(p_i) / n_items
    p_e = sum(p * p for p in p_j)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def ratings_table(item_ratings: dict[str, list[Hashable]], categories: Sequence[Hashable], n: int) -> list[list[int]]:
    """Items x categories counts from each item's first `n` ratings; items with fewer ratings are left out."""
    table = []
    for ratings in item_ratings.values():
        if len(ratings) < n:
            continue
        c = Counter(ratings[:n])
        table.append([c[cat] for cat in categories])
    return table


def pairwise_cohen(ratings: dict[str, dict[str, Hashable]]) -> list[dict]:
    """Cohen's kappa and raw agreement for every pair of raters over the items both rated.

    `ratings` maps rater -> {item -> category}. Returns one dict per pair with at least one shared item.
    """
    out = []
    for r1, r2 in combinations(sorted(ratings), 2):
        shared = sorted(ratings[r1].keys() & ratings[r2].keys())
        if not shared:
            continue
        a = [ratings[r1][i] for i in shared]
        b = [ratings[r2][i] for i in shared]
        out.append(
            {"raters": (r1, r2), "items": len(shared), "agreement": percent_agreement(a, b), "kappa": cohen_kappa(a, b)}
        )
    return out
