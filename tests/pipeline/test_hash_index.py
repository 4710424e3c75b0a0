"""The multi-index hash index finds exactly what brute force finds."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.hash_index import HashIndex, brute_force_pairs, hamming, hash_to_int


def _hashes(seed: int, n_base: int, n_near: int, max_flips: int) -> list[int]:
    rng = np.random.default_rng(seed)
    hs = [int(x) for x in rng.integers(0, 2**63, size=n_base, dtype=np.uint64) * 2 + rng.integers(0, 2, size=n_base)]
    for _ in range(n_near):  # planted near-duplicates at every distance up to max_flips
        h = hs[int(rng.integers(len(hs)))]
        for b in rng.choice(64, size=int(rng.integers(0, max_flips + 1)), replace=False):
            h ^= 1 << int(b)
        hs.append(h)
    hs += [0, 0, 2**64 - 1, 1]  # exact duplicates and the extremes
    return hs


@pytest.mark.parametrize("radius", [0, 3, 8, 12])
def test_all_pairs_match_brute_force(radius):
    hs = _hashes(radius, 800, 400, radius + 3)
    idx = HashIndex(radius)
    idx.add_many(hs)
    got = idx.all_pairs()
    want = brute_force_pairs(hs, radius)
    assert len(want) > 0
    assert np.array_equal(got, want)


def test_query_matches_brute_force_and_smaller_radius():
    hs = _hashes(1, 500, 300, 10)
    idx = HashIndex(10)
    idx.add_many(hs, keys=[f"k{i}" for i in range(len(hs))])
    for q in hs[::37]:
        for r in (4, 10):
            got = idx.query(q, r)
            want = sorted(
                ((i, hamming(q, h)) for i, h in enumerate(hs) if hamming(q, h) <= r), key=lambda t: (t[1], t[0])
            )
            assert got == want
    assert idx.keys[3] == "k3"
    with pytest.raises(ValueError):
        idx.query(hs[0], 11)


def test_hex_hashes_and_bad_input():
    assert hash_to_int("ffffffffffffffff") == 2**64 - 1
    assert hamming("0f", "ff") == 4
    with pytest.raises(ValueError):
        hash_to_int("1" * 17)
    with pytest.raises(ValueError):
        HashIndex(40)
