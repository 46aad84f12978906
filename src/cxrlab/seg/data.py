"""Images and lung masks for segmentation: the dataset rows that have a ``mask_path``.

Images are read with the one reader (:func:`cxrlab.data.io.read_image`), scaled to
[0, 1] and stretched to a ``size_px`` square (the whole image, aspect ignored, so a
prediction stretched back lands on the original pixels). Masks are resized to their
image's size first (nearest), then to the square (area average, >= 0.5 is lung).
The split is the dataset's own ``split`` column (patient-grouped by ``data split``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxrlab.data.io import read_image
from cxrlab.data.manifest import read_manifest, require_folder
from cxrlab.data.masks import LungMaskError, read_lung_mask
from cxrlab.errors import DatasetError, ImageReadError
from cxrlab.preprocess.transforms import resize_mask, resize_square, to_unit_float


def network_input(pixels: np.ndarray, size_px: int) -> np.ndarray:
    """(H, W) uint8/uint16 -> (size_px, size_px) float32 in [0, 1], stretched."""
    return resize_square(to_unit_float(pixels), size_px, "stretch").astype(np.float32)


def mask_target(lung_mask: np.ndarray, image_shape: tuple[int, int], size_px: int) -> np.ndarray:
    """(h, w) bool mask of an image of ``image_shape`` -> (size_px, size_px) float32 {0, 1}."""
    full = resize_mask(lung_mask, *image_shape).astype(np.float32)
    return (resize_square(full, size_px, "stretch") >= 0.5).astype(np.float32)


@dataclass
class SegSet:
    """Images and masks of one split, in memory.

    Attributes:
        ids: (N,) image ids.
        images: (N, 1, S, S) float32 in [0, 1].
        masks: (N, 1, S, S) float32, 1 = lung.
        skipped: (id, reason) of rows left out (unreadable image or mask).
    """

    ids: list[str]
    images: torch.Tensor
    masks: torch.Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def masked_rows(dataset: str | Path):
    """The manifest rows of ``dataset`` whose ``mask_path`` is set.

    Raises:
        DatasetError: when the dataset has no ``mask_path`` column or no row with a mask.
    """
    require_folder(dataset)
    if (Path(dataset) / "meta.json").is_file():
        raise DatasetError(
            f"{dataset} is a packed dataset: the lung U-Net trains on a dataset folder (its "
            "images at full size with their masks), e.g. the one it was made from"
        )
    manifest = read_manifest(dataset)
    if "mask_path" not in manifest.columns or not manifest["mask_path"].ne("").any():
        raise DatasetError(
            f"{dataset}: no row has a lung mask (mask_path column); import a source that "
            "ships masks (ieee8023 with annotations/lungVAE-masks, or folders with "
            "<class>/images + <class>/masks)"
        )
    return manifest[manifest["mask_path"] != ""].reset_index(drop=True)


def load_split(dataset: str | Path, split: str, size_px: int) -> SegSet:
    """Images and masks of the masked rows of ``split``, at ``size_px``.

    Raises:
        DatasetError: when no masked row is in ``split`` (e.g. the dataset is not split).
    """
    rows = masked_rows(dataset)
    rows = rows[rows["split"] == split]
    if rows.empty:
        raise DatasetError(
            f"{dataset}: no image with a lung mask in split {split!r}; split the dataset "
            "by patient first (`cxrlab data split DATASET --by patient`)"
        )
    ids, images, masks, skipped = [], [], [], []
    for image_id, path, mask_path in zip(rows["id"], rows["path"], rows["mask_path"], strict=True):
        try:
            pixels = read_image(path, draft_px=size_px).pixels
            lung_mask = read_lung_mask(mask_path)
        except (ImageReadError, LungMaskError) as error:
            skipped.append((image_id, str(error)))
            continue
        ids.append(image_id)
        images.append(network_input(pixels, size_px))
        masks.append(mask_target(lung_mask, pixels.shape, size_px))
    if not ids:
        raise DatasetError(f"{dataset}: no readable image/mask pair in split {split!r}")
    return SegSet(
        ids,
        torch.from_numpy(np.stack(images))[:, None],
        torch.from_numpy(np.stack(masks))[:, None],
        skipped,
    )
