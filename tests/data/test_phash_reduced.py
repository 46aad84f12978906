"""The perceptual hash of a large image is taken from a whole-factor area reduction
(``HASH_SIDE``), and ``data import`` decodes at that size: a truncated file is still
refused, and the hash still finds the same image at another size or encoding."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from cxrlab.data.duplicates import HASH_SIDE, phash_hex
from cxrlab.data.ingest import _probe
from cxrlab.data.io import DEFAULT_MAX_PIXELS


def _picture(height: int, width: int, seed: int = 0, grid: tuple = (12, 9)) -> np.ndarray:
    """Random grey levels on a ``grid``, enlarged bicubically, plus a little grain."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, grid).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    grain = rng.integers(0, 6, (height, width)).astype(np.uint8)
    return np.clip(big.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def _distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_large_image_is_hashed_from_its_area_reduction():
    pixels = _picture(1400, 1100, grid=(300, 250))  # fine detail: the filters differ
    factor = 1100 // HASH_SIDE
    assert factor >= 2
    reduced = Image.fromarray(pixels).reduce(factor)
    assert phash_hex(pixels) == str(imagehash.phash(reduced))
    whole = str(imagehash.phash(Image.fromarray(pixels)))  # the hash before HASH_SIDE
    assert 0 < _distance(phash_hex(pixels), whole) <= 2
    # 16-bit images: top byte first, as before
    wide = pixels.astype(np.uint16) * 256 + 77
    assert phash_hex(wide) == phash_hex(pixels)


def test_image_below_twice_the_side_is_hashed_as_it_is():
    pixels = _picture(2 * HASH_SIDE - 1, 600)
    assert phash_hex(pixels) == str(imagehash.phash(Image.fromarray(pixels)))


def test_hash_finds_the_image_resized_and_reencoded(tmp_path):
    pixels = _picture(1800, 1500, seed=3)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    Image.fromarray(pixels).resize((300, 360), Image.LANCZOS).save(tmp_path / "small.jpg")
    other = _picture(1800, 1500, seed=4)
    Image.fromarray(other).save(tmp_path / "other.jpg", quality=90)
    big, small, different = (
        _probe((str(tmp_path / name), DEFAULT_MAX_PIXELS))
        for name in ("big.png", "small.jpg", "other.jpg")
    )
    assert big["ok"] and small["ok"] and different["ok"]
    assert (big["width"], big["height"]) == (1500, 1800)  # the file's size, not the hash's
    assert _distance(big["phash"], small["phash"]) <= 2
    assert _distance(big["phash"], different["phash"]) > 10


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_large_file_is_still_refused(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(_picture(1600, 1200)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    fact = _probe((str(path), DEFAULT_MAX_PIXELS))
    assert fact["ok"] is False and fact["reason"] == "unreadable"
