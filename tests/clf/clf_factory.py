"""Tiny datasets the classifier tests make themselves.

``toy_images``: COVID-19 images carry a bright disc in the centre (the "lungs"),
others a dark centre, both over noise, so a small CNN separates them in a few
steps. ``corner_marker`` instead hides the label in a bright top-left square (a
burnt-in marker) over pure noise: a shortcut outside the lung field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlab.data.manifest import MANIFEST_COLUMNS, dataframe_to_csv_text
from cxrlab.data.packed import IMAGES, META, PACKED_FORMAT, PACKED_FORMAT_VERSION

SIZE_PX = 32


def toy_images(labels: np.ndarray, size_px: int = SIZE_PX, seed: int = 0) -> np.ndarray:
    """(N, S, S) uint8: noise, plus a bright central disc when the label is 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size_px, 0:size_px] / size_px - 0.5
    disc = (yy**2 + xx**2) < 0.2**2
    images = rng.uniform(40, 120, (len(labels), size_px, size_px))
    images[np.asarray(labels) == 1] += 120 * disc
    return np.clip(images, 0, 255).astype(np.uint8)


def corner_marker(labels: np.ndarray, size_px: int = SIZE_PX, seed: int = 0) -> np.ndarray:
    """(N, S, S) uint8: noise everywhere, a white top-left square when the label is 1."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(40, 160, (len(labels), size_px, size_px))
    side = max(2, size_px // 8)
    images[np.asarray(labels) == 1, :side, :side] = 255
    return images.astype(np.uint8)


def write_packed(path: Path, images: np.ndarray, rows: list[dict]) -> Path:
    """A PACKED folder of ``images`` with manifest ``rows`` (missing columns left empty)."""
    path.mkdir(parents=True)
    np.save(path / IMAGES, images)
    records = []
    for row in rows:
        record = dict.fromkeys(MANIFEST_COLUMNS, "")
        record.update(width=images.shape[2], height=images.shape[1], mode="L", bit_depth=8)
        record.update(row)
        records.append(record)
    (path / "manifest.csv").write_text(dataframe_to_csv_text(pd.DataFrame(records)))
    meta = {
        "format": PACKED_FORMAT,
        "format_version": PACKED_FORMAT_VERSION,
        "n_images": len(images),
    }
    (path / META).write_text(json.dumps(meta))
    return path


def split_packed(
    path: Path,
    counts: dict[str, int] | None = None,
    *,
    maker=toy_images,
    size_px: int = SIZE_PX,
    seed: int = 0,
    augmented_copies: int = 0,
    leak_augmented_into: tuple[str, ...] = (),
) -> Path:
    """A PACKED with splits (default 32 train, 16 val, 16 test), half COVID-19 each,
    two images per patient.

    Args:
        augmented_copies: rows marked ``augmented=1`` copied from train images (split train).
        leak_augmented_into: splits that each also get one augmented row (a broken
            manifest that must still never be evaluated on).
    """
    counts = counts or {"train": 32, "val": 16, "test": 16}
    rows = []
    for split, n in counts.items():
        for i in range(n):
            covid = i % 2
            rows.append(
                {
                    "id": f"toy:{split}:{i}",
                    "covid": covid,
                    "label": "covid" if covid else "pneumonia",
                    "patient_id": f"toy:{split}:p{i // 4}-{covid}",
                    "source": "toy",
                    "split": split,
                    "augmented": "0",
                    "parent_id": "",
                }
            )
    for i in range(augmented_copies):
        parent = rows[i]
        rows.append({**parent, "id": f"{parent['id']}:aug{i}", "augmented": "1", "parent_id": parent["id"]})  # fmt: skip
    for split in leak_augmented_into:
        parent = next(r for r in rows if r["split"] == split)
        rows.append({**parent, "id": f"{parent['id']}:leak", "augmented": "1", "parent_id": parent["id"]})  # fmt: skip
    labels = np.array([r["covid"] for r in rows])
    return write_packed(path, maker(labels, size_px, seed), rows)


def unrelated_provenance(folder: Path, size_px: int = SIZE_PX) -> Path:
    """``folder/provenance.json`` of a generator that learned rows of another dataset
    (no id or image in common with the tests' PACKEDs)."""
    from cxrlab.data.provenance import write_provenance

    learned = {"data": "/elsewhere/P", "split": "train", "label": "positive",
               "source_manifest_sha256": "0" * 64, "manifest_sha256": "0" * 64,
               "options": None, "ids": [], "phash": [], "pixel_phash": [],
               "shape": [0, size_px, size_px]}  # fmt: skip
    return write_provenance(folder, {"path": "/elsewhere/run"}, learned)


def synthetic_packed(
    path: Path, n: int = 6, covid: int = 1, size_px: int = SIZE_PX, provenance: bool = True
) -> Path:
    """A synthetic PACKED as `cxrlab gen sample --packed` writes it (with a provenance
    file of an unrelated generator unless ``provenance`` is False)."""
    labels = np.full(n, covid)
    rows = [
        {"id": f"synthetic:run:{i:06d}", "covid": covid, "label": "covid", "patient_id": f"synthetic:run:{i:06d}",
         "source": "synthetic:run", "split": "train", "synthetic": 1}
        for i in range(n)
    ]  # fmt: skip
    write_packed(path, toy_images(labels, size_px, seed=99), rows)
    if provenance:
        unrelated_provenance(path, size_px)
    return path


def synthetic_pngs(
    folder: Path, n_positive: int = 4, n_negative: int = 2, provenance: bool = True
) -> Path:
    """A folder of synthetic PNGs: flat files are COVID-19, ``normal/`` ones are not
    (with a provenance file of an unrelated generator unless ``provenance`` is False)."""
    folder.mkdir(parents=True)
    (folder / "normal").mkdir()
    for i, image in enumerate(toy_images(np.ones(n_positive, dtype=int), seed=7)):
        Image.fromarray(image).save(folder / f"synthetic_{i:06d}.png")
    for i, image in enumerate(toy_images(np.zeros(n_negative, dtype=int), seed=8)):
        Image.fromarray(image).save(folder / "normal" / f"synthetic_{i:06d}.png")
    if provenance:
        unrelated_provenance(folder)
    return folder


def class_folders(root: Path, n: int = 8, size_px: int = 48, seed: int = 3) -> Path:
    """An image-folder dataset from "another hospital": ``root/COVID`` and ``root/Normal``."""
    for name, covid in (("COVID", 1), ("Normal", 0)):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(toy_images(np.full(n, covid), size_px, seed + covid)):
            Image.fromarray(image).save(root / name / f"{name.lower()}_{i}.png")
    return root
