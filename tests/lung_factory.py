"""Tiny chest-X-ray-like images with lung masks, made by the tests themselves.

An image is a grey body on a black background with two darker ellipses (the
lungs) and noise; its mask is the two ellipses (0/255). Sizes vary, portrait and
landscape, so resizing back to the original size is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrlab.data.api import import_source, split_dataset


def lung_ellipses(height: int, width: int, shift: float = 0.0) -> np.ndarray:
    """(H, W) bool: two vertical ellipses left and right of the centre."""
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = yy / height, xx / width
    left = ((x - 0.32 - shift) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1
    right = ((x - 0.68 - shift) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1
    return left | right


def fake_cxr(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 image and (H, W) bool lung mask."""
    rng = np.random.default_rng(seed)
    mask = lung_ellipses(height, width, shift=rng.uniform(-0.04, 0.04))
    image = np.full((height, width), 150.0)
    image[:, : width // 10] = image[:, -width // 10 :] = 10  # black borders
    image[mask] = 60
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def radiography_folders(
    root: Path, n_per_class: int = 8, seed: int = 0, covid_sign: str | None = None
) -> Path:
    """The COVID-19 Radiography Database layout: ``<class>/images`` + ``<class>/masks``.

    The last image of each class has no mask. ``covid_sign`` marks the COVID images:
    ``corner`` (a white square in the top-left corner, outside the lungs: a shortcut)
    or ``lungs`` (brighter lungs: a finding inside the lungs).
    """
    for c, cls in enumerate(("COVID", "Normal")):
        (root / cls / "images").mkdir(parents=True)
        (root / cls / "masks").mkdir(parents=True)
        for i in range(n_per_class):
            height, width = (72, 56) if i % 2 else (56, 72)
            image, mask = fake_cxr(height, width, seed + 100 * c + i)
            if cls == "COVID" and covid_sign == "corner":
                image[: height // 5, : width // 5] = 255
            elif cls == "COVID" and covid_sign == "lungs":
                image[mask] = np.clip(image[mask].astype(int) + 60, 0, 255)
            Image.fromarray(image).save(root / cls / "images" / f"{cls}-{i}.png")
            if i < n_per_class - 1:
                Image.fromarray(mask.astype(np.uint8) * 255).save(
                    root / cls / "masks" / f"{cls}-{i}.png"
                )
    return root


def masked_dataset(tmp_path: Path, n_per_class: int = 8, covid_sign: str | None = None) -> Path:
    """A split dataset (one patient per image) of :func:`radiography_folders`."""
    source = radiography_folders(tmp_path / "radiography", n_per_class, covid_sign=covid_sign)
    out = tmp_path / "dataset"
    import_source("folders", source, out, near_distance=None, progress=False)
    split_dataset(out, (0.5, 0.25, 0.25), seed=0)
    return out


def masks_folder(dataset: Path, out: Path, *, leave_out: int = 1) -> Path:
    """A MASKS folder made from the dataset's own masks (as `seg predict` writes it),
    without the masks of the first ``leave_out`` masked rows."""
    from cxrlab.data.manifest import read_manifest
    from cxrlab.data.masks import safe_name

    out.mkdir(parents=True)
    rows = []
    masked = read_manifest(dataset)
    masked = masked[masked["mask_path"] != ""].iloc[leave_out:]
    for image_id, mask_path in zip(masked["id"], masked["mask_path"], strict=True):
        name = f"{safe_name(image_id)}.png"
        (out / name).write_bytes(Path(mask_path).read_bytes())
        rows.append(f"{image_id},{name},0.3,2,")
    (out / "masks.csv").write_text(
        "id,mask_path,lung_fraction,components,flag\n" + "\n".join(rows) + "\n"
    )
    return out
