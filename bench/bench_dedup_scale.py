"""Scale of near-duplicate search (`pipeline.hash_index.HashIndex`) at 10k / 30k / 100k perceptual hashes.

    .venv/bin/python bench/bench_dedup_scale.py                    # 10k, 30k, 100k; radius 8
    .venv/bin/python bench/bench_dedup_scale.py --sizes 100000 --brute 100000

Two hash sets per size: "uniform" (random 64-bit hashes, plus 1% planted copies with <= 3 bits
flipped) and "clustered" (groups of 10 hashes within ~6 bits of a centre, like bursts and edited
variants of one photo; far more near pairs and fuller buckets). For each: build the index
(`add_many`), answer every near-duplicate query at once (`all_pairs`), and answer them one by one
(`query` for every stored hash; up to --query-each, as it is O(n) per query at this radius: 9 bands
of ~7 bits, so each band bucket holds ~n/128 hashes). Brute force (vectorised
numpy XOR + popcount over all n^2/2 pairs, in blocks) runs where --brute allows, and its pairs must
equal the index's. Target: build + all queries <= 10 s at 100k on 2 cores.

Writes bench/results/bench_dedup_scale.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.endpoint_harness import machine, write_json
from pipeline.hash_index import HashIndex

ONE = np.uint64(1)


def flip_bits(values: np.ndarray, max_bits: int, rng: np.random.Generator) -> np.ndarray:
    """Each value with between 0 and `max_bits` random bits flipped."""
    out = values.copy()
    counts = rng.integers(0, max_bits + 1, size=len(values))
    for k in range(max_bits):
        bits = rng.integers(0, 64, size=len(values)).astype(np.uint64)
        out ^= np.where(counts > k, np.left_shift(ONE, bits), np.uint64(0))
    return out


def make_hashes(n: int, kind: str, seed: int = 0) -> np.ndarray:
    """`n` 64-bit hashes of the given kind."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        base = rng.integers(0, 2**64, size=n - n // 100, dtype=np.uint64, endpoint=False)
        planted = flip_bits(base[: n // 100], 3, rng)
        return np.concatenate([base, planted])
    centres = rng.integers(0, 2**64, size=n // 10, dtype=np.uint64, endpoint=False)
    return flip_bits(np.repeat(centres, 10), 6, rng)


def brute_pairs(hashes: np.ndarray, radius: int, block: int = 2048) -> np.ndarray:
    """All pairs i < j within `radius`, by blocks of the full n x n distance matrix."""
    n = len(hashes)
    found = []
    for a in range(0, n, block):
        ha = hashes[a : a + block]
        d = np.bitwise_count(ha[:, None] ^ hashes[None, a:])  # only j >= a: the upper triangle
        ii, jj = np.nonzero(d <= radius)
        i, j = ii + a, jj + a
        keep = i < j
        found.append(np.stack([i[keep], j[keep]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def bench_one(n: int, kind: str, radius: int, brute_max: int, query_max: int) -> dict:
    """Figures for one size and kind."""
    hashes = make_hashes(n, kind)
    values = [int(h) for h in hashes]
    t0 = time.perf_counter()
    idx = HashIndex(radius)
    idx.add_many(values)
    t1 = time.perf_counter()
    pairs = idx.all_pairs()
    t2 = time.perf_counter()
    hits = 0
    if n <= query_max:
        for v in values:
            hits += len(idx.query(v)) - 1  # minus itself
    t3 = time.perf_counter()
    row = {
        "n": n,
        "kind": kind,
        "radius": radius,
        "build_s": round(t1 - t0, 3),
        "all_pairs_s": round(t2 - t1, 3),
        "build_plus_all_pairs_s": round(t2 - t0, 3),
        "pairs": len(pairs),
    }
    if n <= query_max:
        row["query_each_s"] = round(t3 - t2, 3)
        row["query_each_us_per_hash"] = round(1e6 * (t3 - t2) / n, 1)
        row["query_hits_match_pairs"] = hits == 2 * len(pairs)
    if n <= brute_max:
        t4 = time.perf_counter()
        ref = brute_pairs(hashes, radius)
        row["brute_force_s"] = round(time.perf_counter() - t4, 3)
        got = pairs[:, :2][np.lexsort((pairs[:, 1], pairs[:, 0]))]
        row["same_pairs_as_brute_force"] = bool(np.array_equal(got, ref))
        row["speedup_vs_brute_force"] = round(row["brute_force_s"] / max(row["all_pairs_s"], 1e-9), 1)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the sizes, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--brute", type=int, default=30_000, help="run brute force up to this size")
    ap.add_argument(
        "--query-each", type=int, default=30_000, help="answer queries one by one (`query`) up to this size"
    )
    args = ap.parse_args(argv)
    rows = []
    print(
        f"{'n':>7} {'kind':<10} {'build s':>8} {'all pairs s':>11} {'build+all':>9} {'query each s':>12}"
        f" {'pairs':>8} {'brute s':>8} {'same':>5}"
    )
    for kind in ("uniform", "clustered"):
        for n in args.sizes:
            r = bench_one(n, kind, args.radius, args.brute, args.query_each)
            rows.append(r)
            print(
                f"{n:>7} {kind:<10} {r['build_s']:>8.2f} {r['all_pairs_s']:>11.2f} {r['build_plus_all_pairs_s']:>9.2f}"
                f" {r.get('query_each_s', '-'):>12} {r['pairs']:>8} {r.get('brute_force_s', '-'):>8}"
                f" {str(r.get('same_pairs_as_brute_force', '-')):>5}",
                flush=True,
            )
    ok = all(r.get("query_hits_match_pairs", True) and r.get("same_pairs_as_brute_force", True) for r in rows)
    figures = {"bench": "dedup_scale", "machine": machine(), "results": rows, "ok": ok}
    print(f"wrote {write_json('bench_dedup_scale', figures)}")
    print("RESULT:", "OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
