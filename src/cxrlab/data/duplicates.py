"""Exact (SHA-256) and near (perceptual hash) duplicate detection.

COVIDx once counted the same positive images from several sources; a duplicate
that lands in both train and test inflates every metric. Near duplicates are
found with the 64-bit DCT perceptual hash of ``imagehash`` (robust to resizing,
re-encoding and mild contrast changes): two images whose hashes differ in at
most ``max_distance`` bits are grouped.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NEAR_DISTANCE = 6


def near_distance_setting(value: int | None) -> int | None:
    """The near-duplicate distance as used and recorded: ``None`` (off) for ``None`` or
    any negative number (``-1`` on the command line, ``null`` or ``-1`` in a build spec)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"near_distance must be a whole number, null or -1, not {value!r}")
    return None if value < 0 else value


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


#: Images whose shorter side is at least twice this are box-reduced by a whole factor
#: (shorter side kept in [HASH_SIDE, 2 * HASH_SIDE)) before ``imagehash.phash`` makes
#: its 32 px thumbnail. The thumbnail's Lanczos filter then spans 8-16 source pixels
#: instead of up to 130: the hash moves by a bit or two at most (bits near the median
#: DCT coefficient), and a 2048 px image hashes about ten times faster. ``data import``
#: decodes at this size directly (JPEGs in the DCT domain, see ``read_image``).
HASH_SIDE = 256


def phash_hex(pixels: np.ndarray) -> str:
    """64-bit perceptual hash (hex) of a greyscale uint8/uint16 image (see ``HASH_SIDE``)."""
    import imagehash
    from PIL import Image

    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    image = Image.fromarray(pixels)
    factor = min(pixels.shape[:2]) // HASH_SIDE
    if factor >= 2:
        image = image.reduce(factor)  # area average, as a DCT-domain JPEG decode is
    return str(imagehash.phash(image))


def hamming_matrix_pairs(hashes: list[str], max_distance: int) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose 64-bit hex hashes differ in <= ``max_distance`` bits.

    Each block of rows is XORed with every later hash and the differing bits counted
    (one popcount per pair): about a second for 30,000 images, memory O(block * n).
    """
    if len(hashes) < 2:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    block = 512
    for start in range(0, len(values) - 1, block):
        chunk = values[start : start + block]
        later = values[start + 1 :]  # pairs i < j only: row r meets columns after it
        distance = _popcount(chunk[:, None] ^ later[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i, j = start + r, start + 1 + c
            if i < j:
                pairs.append((i, j))
    return pairs


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (as uint8)."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(values)
    as_bytes = values.view(np.uint8).reshape(values.shape + (8,))
    return _BYTE_BITS[as_bytes].sum(axis=-1, dtype=np.uint8)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def duplicate_groups(
    sha256: list[str], phash: list[str], max_distance: int | None = DEFAULT_NEAR_DISTANCE
) -> list[str]:
    """Group images that are exact or near duplicates of each other.

    Args:
        sha256: per image, the file's SHA-256.
        phash: per image, the perceptual hash (hex).
        max_distance: largest Hamming distance between near duplicates; None for exact only.

    Returns:
        Per image, a group name ``dup00001``... shared by all members of a group of two
        or more, or ``""`` for an image with no duplicate. Group numbers follow the
        first member's position, so the result is deterministic.
    """
    n = len(sha256)
    sets = UnionFind(n)
    first_with_hash: dict[str, int] = {}
    for i, digest in enumerate(sha256):
        if digest in first_with_hash:
            sets.union(first_with_hash[digest], i)
        else:
            first_with_hash[digest] = i
    if max_distance is not None and max_distance >= 0:
        for i, j in hamming_matrix_pairs(phash, max_distance):
            sets.union(i, j)
    roots = [sets.find(i) for i in range(n)]
    sizes: dict[int, int] = {}
    for root in roots:
        sizes[root] = sizes.get(root, 0) + 1
    names: dict[int, str] = {}
    groups = []
    for root in roots:
        if sizes[root] < 2:
            groups.append("")
            continue
        if root not in names:
            names[root] = f"dup{len(names) + 1:05d}"
        groups.append(names[root])
    return groups
