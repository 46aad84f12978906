"""Image grids of packed datasets (the thesis' figures 4.4-4.6)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from cxrlab.data.packed import open_packed
from cxrlab.errors import CxrlabError
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


#: Tiles of a labelled grid are enlarged (by whole factors, nearest neighbour) to at
#: least this side, so that a 32 px image and its caption can both be read.
MIN_TILE_PX = 128
CAPTION_PT = 11
_BACKGROUND = 40


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _fit(draw, text: str, width: int, font) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def labelled_grid(
    tiles: np.ndarray,
    captions: list[str],
    *,
    title: str = "",
    columns: int | None = None,
    min_tile_px: int = MIN_TILE_PX,
    padding_px: int = 4,
) -> np.ndarray:
    """A grid whose every tile says what it shows, under an optional title line.

    Args:
        tiles: (N, H, W) uint8/uint16 greyscale or (N, H, W, 3) uint8 RGB.
        captions: one line per tile (cut with an ellipsis when wider than the tile).
        title: a line above the grid (what the whole figure shows, the colour key).
        columns: tiles per row (default: about square).
        min_tile_px: tiles are enlarged by a whole factor to at least this side.
        padding_px: gap between tiles.

    Returns:
        (rows, cols, 3) uint8 RGB image, for :func:`save_grid`.
    """
    from PIL import ImageDraw

    if tiles.ndim not in (3, 4) or len(tiles) == 0 or len(captions) != len(tiles):
        raise CxrlabError(
            f"labelled_grid needs N tiles and N captions, got {tiles.shape} and {len(captions)}"
        )
    if tiles.dtype == np.uint16:
        tiles = (tiles >> 8).astype(np.uint8)
    if tiles.ndim == 3:
        tiles = np.repeat(tiles[..., None], 3, axis=-1)
    factor = max(1, math.ceil(min_tile_px / max(tiles.shape[1:3])))
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    n, height, width = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    font = _font(CAPTION_PT)
    line_px = CAPTION_PT + 5
    title_px = line_px + padding_px if title else 0
    cell_h, cell_w = height + line_px + padding_px, width + padding_px
    canvas = Image.new(
        "RGB",
        (max(columns * cell_w + padding_px, 1), rows * cell_h + padding_px + title_px),
        (_BACKGROUND,) * 3,
    )
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((padding_px, padding_px), _fit(draw, title, canvas.width - 2 * padding_px, font),
                  fill=(255, 255, 255), font=font)  # fmt: skip
    for i, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        r, c = divmod(i, columns)
        left, top = padding_px + c * cell_w, title_px + padding_px + r * cell_h
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (left, top))
        draw.text((left + 1, top + height + 1), _fit(draw, caption, width - 2, font),
                  fill=(235, 235, 235), font=font)  # fmt: skip
    return np.asarray(canvas)


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
    manifest = data.manifest
    where = f"split {split}" if split else "all splits"
    if augment:
        if not 0 <= index < len(rows):
            raise CxrlabError(f"--index must be in 0..{len(rows) - 1}")
        import torch  # here, not at the top: data stats draws grids without torch (550 MiB)

        from cxrlab.preprocess.augment import BatchAugment

        row = rows[index]
        original = np.asarray(data.images[row])
        top = float(np.iinfo(original.dtype).max)
        batch = torch.from_numpy(original.astype(np.float32) / top)[None, None].repeat(
            max(n - 1, 1), 1, 1, 1
        )
        variants = (
            BatchAugment(augment, seed=seed)(batch, 0)[:, 0].clamp(0, 1).mul(top).round().numpy()
        )
        images = np.concatenate([original[None], variants.astype(original.dtype)])[:n]
        captions = ["original"] + [f"{augment} #{k}" for k in range(1, len(images))]
        title = (
            f"{Path(packed).name}: image {index} of {where} ({_describe(manifest, row)}), "
            f"then {len(images) - 1} '{augment}' variants (seed {seed})"
        )
    else:
        chosen = np.sort(np.random.default_rng(seed).permutation(rows)[: min(n, len(rows))])
        images = np.asarray(data.images[chosen])
        captions = [_describe(manifest, row) for row in chosen]
        title = f"{Path(packed).name}: {len(chosen)} of {len(rows)} images, {where} (seed {seed})"
    return save_grid(labelled_grid(images, captions, title=title), out)


def _describe(manifest, row: int) -> str:
    """``label, split`` of a manifest row (``covid, train``); ``unsplit`` when it has none."""
    record = manifest.iloc[int(row)]
    label = str(record.get("label", "") or ("covid" if int(record["covid"]) else "non-covid"))
    return f"{label}, {record.get('split', '') or 'unsplit'}"
