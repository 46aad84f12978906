"""The MASKS folder format: one lung mask PNG per image plus ``masks.csv``.

A MASKS folder (written by ``cxrlab seg predict``, read by ``cxrlab data preprocess
--lung-masks`` and ``cxrlab clf evaluate --lung-masks``) holds

* ``<safe id>.png``: a greyscale mask, 0 (not lung) or 255 (lung), at the image's
  original size and orientation;
* ``masks.csv``: ``id, mask_path, lung_fraction, components, flag``, one row per
  image; ``mask_path`` is relative to the folder; ``flag`` names predictions that
  look wrong (``no lung``, ``one lung``, ``touches border``, joined by ``; ``) and is
  empty when the mask looks fine.

Every reader goes through :func:`read_masks_table` and :func:`read_lung_mask`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrlab.data.io import read_image
from cxrlab.errors import CxrlabError, ImageReadError

if TYPE_CHECKING:
    import pandas as pd

MASKS_CSV = "masks.csv"
MASK_COLUMNS = ["id", "mask_path", "lung_fraction", "components", "flag"]

FLAG_NO_LUNG = "no lung"
FLAG_ONE_LUNG = "one lung"
FLAG_BORDER = "touches border"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class LungMaskError(CxrlabError):
    """A lung mask is missing, unreadable or empty.

    Attributes:
        reason: a short reason written to ``rejects.csv`` (``no lung mask``,
            ``unreadable lung mask``, ``empty lung mask``).
    """

    def __init__(self, message: str, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


def safe_name(image_id: str) -> str:
    """A file name stem for ``image_id``: characters other than letters, digits,
    ``.``, ``_`` and ``-`` become ``_`` (``ieee8023:a/b.png`` -> ``ieee8023_a_b.png``)."""
    return _UNSAFE.sub("_", image_id).strip("._") or "image"


def unique_names(image_ids: list[str]) -> list[str]:
    """:func:`safe_name` of every id, a short hash added where two ids would collide."""
    import pandas as pd

    stems = [safe_name(i) for i in image_ids]
    counts = pd.Series(stems).value_counts()
    return [
        f"{stem}-{hashlib.sha1(i.encode()).hexdigest()[:8]}" if counts[stem] > 1 else stem
        for stem, i in zip(stems, image_ids, strict=True)
    ]


def read_masks_table(folder: str | Path) -> pd.DataFrame:
    """``masks.csv`` of a MASKS folder, ``mask_path`` made absolute.

    Raises:
        CxrlabError: when the folder has no ``masks.csv`` or it lacks columns.
    """
    import pandas as pd  # here, not above: read_lung_mask alone needs no pandas

    folder = Path(folder)
    path = folder / MASKS_CSV
    if not path.is_file():
        raise CxrlabError(
            f"{path} not found: --lung-masks must be a MASKS folder; make one with "
            "`cxrlab seg predict SEGRUN --data DATASET --out MASKS`"
        )
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("id", "mask_path") if c not in table.columns]
    if missing:
        raise CxrlabError(f"{path} lacks the columns {missing}; was it written by cxrlab?")
    table["mask_path"] = [str(folder / p) if p else "" for p in table["mask_path"]]
    return table


def mask_paths_by_id(folder: str | Path) -> dict[str, str]:
    """id -> absolute mask path of every row of a MASKS folder that has a mask file."""
    table = read_masks_table(folder)
    return {i: p for i, p in zip(table["id"], table["mask_path"], strict=True) if p}


def read_lung_mask(path: str | Path | None) -> np.ndarray:
    """A lung mask file -> (H, W) bool (True = lung: pixels above half the range).

    Raises:
        LungMaskError: when ``path`` is empty, missing, unreadable or holds no lung pixel.
    """
    if not path:
        raise LungMaskError("no lung mask for this image", "no lung mask")
    try:
        pixels = read_image(path).pixels
    except ImageReadError as error:
        raise LungMaskError(
            f"cannot read lung mask {path}: {error.reason}", "unreadable lung mask"
        ) from None
    mask = pixels > np.iinfo(pixels.dtype).max // 2
    if not mask.any():
        raise LungMaskError(f"lung mask {path} is empty (no lung pixel)", "empty lung mask")
    return mask
