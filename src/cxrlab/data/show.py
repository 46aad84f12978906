"""Image grids of packed datasets (the thesis' figures 4.4-4.6)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrlab.data.packed import open_packed
from cxrlab.errors import CxrlabError
from cxrlab.preprocess.augment import BatchAugment
from cxrlab.utils.fs import atomic_path
from cxrlab.utils.outputs import PNG_SIGNATURE, check_output_file, starts_with


def image_grid(images: np.ndarray, columns: int | None = None, padding_px: int = 2) -> np.ndarray:
    """(N, H, W) uint8/uint16 -> one (rows*(H+p)+p, cols*(W+p)+p) uint8 grid image."""
    if images.ndim != 3 or len(images) == 0:
        raise CxrlabError(f"image_grid needs (N, H, W) images, got shape {images.shape}")
    if images.dtype == np.uint16:
        images = (images >> 8).astype(np.uint8)
    n, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros(
        (rows * (height + padding_px) + padding_px, columns * (width + padding_px) + padding_px),
        dtype=np.uint8,
    )
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = padding_px + r * (height + padding_px), padding_px + c * (width + padding_px)
        grid[top : top + height, left : left + width] = image
    return grid


def save_grid(grid: np.ndarray, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return out


def show_packed(
    packed: str | Path,
    out: str | Path,
    *,
    n: int = 64,
    augment: str | None = None,
    index: int = 0,
    split: str | None = None,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write a grid of ``n`` images of ``packed`` (a seeded random choice), or, with
    ``augment``, of image ``index``: the original first, then ``n - 1`` augmented variants.

    Raises:
        CxrlabError: for ``n < 1`` or an ``index`` outside the split.
        OutputError: when ``out`` is inside ``packed``, is a folder, or (unless ``force``)
            an existing file that is not a PNG.
    """
    if n < 1:
        raise CxrlabError(f"--n must be at least 1 (images in the grid), got {n}")
    check_output_file(
        out, what="a PNG image", is_kind=starts_with(PNG_SIGNATURE), inputs=[packed], force=force
    )
    data = open_packed(packed)
    rows = data.select(split)
    if len(rows) == 0:
        raise CxrlabError(f"{packed}: no images in split {split!r}")
    if augment:
        if not 0 <= index < len(rows):
            raise CxrlabError(f"--index must be in 0..{len(rows) - 1}")
        original = np.asarray(data.images[rows[index]])
        top = float(np.iinfo(original.dtype).max)
        batch = torch.from_numpy(original.astype(np.float32) / top)[None, None].repeat(
            max(n - 1, 1), 1, 1, 1
        )
        variants = (
            BatchAugment(augment, seed=seed)(batch, 0)[:, 0].clamp(0, 1).mul(top).round().numpy()
        )
        images = np.concatenate([original[None], variants.astype(original.dtype)])[:n]
    else:
        chosen = np.sort(np.random.default_rng(seed).permutation(rows)[: min(n, len(rows))])
        images = np.asarray(data.images[chosen])
    return save_grid(image_grid(images), out)
