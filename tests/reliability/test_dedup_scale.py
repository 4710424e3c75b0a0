"""The near-duplicate index finds exactly the brute-force pairs on both hash distributions of the benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_dedup_scale import brute_pairs, make_hashes
from pipeline.hash_index import HashIndex


@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_all_pairs_equal_brute_force(kind):
    hashes = make_hashes(4000, kind, seed=5)
    idx = HashIndex(8)
    idx.add_many(int(h) for h in hashes)
    pairs = idx.all_pairs()
    got = pairs[:, :2][np.lexsort((pairs[:, 1], pairs[:, 0]))]
    ref = brute_pairs(hashes, 8)
    assert len(ref) > 0
    assert np.array_equal(got, ref)
    d = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
    assert np.array_equal(d, pairs[:, 2])  # distances reported right
