"""Near-duplicate search over COVIDx-sized imports (issue 25): exact, and fast enough."""

from __future__ import annotations

import time

import numpy as np

from cxrlab.data import duplicates
from cxrlab.data.duplicates import hamming_matrix_pairs


def brute_force(hashes: list[str], max_distance: int) -> list[tuple[int, int]]:
    values = [int(h, 16) for h in hashes]
    return [
        (i, j)
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if bin(values[i] ^ values[j]).count("1") <= max_distance
    ]


def planted_hashes(n: int, seed: int = 0) -> list[str]:
    """Random hashes with near copies planted at distances 0 to 8."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    for distance in range(9):
        i, j = rng.choice(n, 2, replace=False)
        bits = rng.choice(64, distance, replace=False)
        values[j] = values[i] ^ np.uint64(sum(1 << int(b) for b in bits))
    return [f"{int(v):016x}" for v in values]


def test_pairs_are_exactly_the_brute_force_ones(monkeypatch):
    hashes = planted_hashes(700)
    for max_distance in (0, 3, 6):
        expected = brute_force(hashes, max_distance)
        assert sorted(hamming_matrix_pairs(hashes, max_distance)) == expected
    # the byte-table popcount of NumPy < 2 gives the same pairs
    monkeypatch.delattr(duplicates.np, "bitwise_count", raising=False)
    assert sorted(hamming_matrix_pairs(hashes, 6)) == brute_force(hashes, 6)


def test_twelve_thousand_images_take_seconds_not_minutes():
    hashes = planted_hashes(12_000, seed=1)
    start = time.process_time()
    pairs = hamming_matrix_pairs(hashes, 6)
    assert time.process_time() - start < 10  # the matrix-product search took > 20 s of CPU
    assert len(pairs) >= 7  # the planted pairs at distance <= 6
