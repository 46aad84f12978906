"""Offline augmentation: a packed dataset plus N augmented copies of each train image.

The thesis drew 10 augmented images per original with Keras. Only train-split
images are augmented, so no augmented copy can reach validation or test; each
copy keeps its parent's patient, label and split, and is marked ``augmented=1``
with ``parent_id``. Augmenting an already augmented PACKED carries its copies
over but never augments a copy again: only originals are parents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrlab.data.manifest import dataframe_to_csv_text, manifest_digest
from cxrlab.data.packed import IMAGES, META, existing_packed, open_packed
from cxrlab.errors import DatasetError
from cxrlab.preprocess.augment import BatchAugment, get_preset
from cxrlab.utils.fs import atomic_dir
from cxrlab.utils.progress import tqdm


@dataclass
class AugmentReport:
    out: Path
    n_originals: int
    n_augmented: int
    reused: bool

    def summary(self) -> str:
        if self.reused:
            return f"{self.out}: an identical augmented dataset already exists; nothing to do"
        return (
            f"{self.out}: {self.n_originals} originals + {self.n_augmented} augmented copies "
            f"= {self.n_originals + self.n_augmented} images"
        )


def augment_packed(
    packed: str | Path,
    out: str | Path,
    *,
    preset: str = "mild",
    per_image: int = 10,
    covid: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = True,
    force: bool = False,
) -> AugmentReport:
    """Write PACKED2 = every image of ``packed`` + ``per_image`` copies of each train image.

    Args:
        packed: the source PACKED folder.
        out: the PACKED folder to write.
        preset: ``severe``, ``mild`` or ``anatomical`` (see :mod:`cxrlab.preprocess.augment`).
        per_image: copies per train image.
        covid: augment only images with this label (1 positive, 0 negative); None: all.
        seed: the same seed gives the same bytes.
    """
    if per_image < 1:
        raise DatasetError(f"--per-image must be at least 1, got {per_image}")
    params = get_preset(preset)
    source = open_packed(packed)
    out = Path(out)
    meta = {k: v for k, v in source.meta.items() if k != "manifest_sha256"}
    meta["augmentation"] = {
        "preset": preset,
        "params": params.as_dict(),
        "per_image": per_image,
        "covid": covid,
        "seed": seed,
        "parent_manifest_sha256": manifest_digest(packed),
    }
    if "augmentation" in source.meta:  # augmenting an augmented PACKED: keep the history
        meta["augmentation"]["previous"] = source.meta["augmentation"]
    existing = existing_packed(out, meta, [packed], force)
    if existing is not None and not force:
        return AugmentReport(out, int(existing["n_originals"]), int(existing["n_augmented"]), True)

    manifest = source.manifest.copy()
    if "augmented" not in manifest.columns:
        manifest["augmented"] = 0
        manifest["parent_id"] = ""
    is_copy = manifest["augmented"].astype(str).str.strip().isin({"1", "1.0", "true"}).to_numpy()
    # only originals are parents: a copy of a copy would count twice as "real" variety
    parents = np.array([i for i in source.select("train", covid) if not is_copy[i]], dtype=int)
    if len(parents) == 0:
        raise DatasetError(
            f"{packed} has no original train-split images to augment (covid={covid}); "
            "run `cxrlab data split` on its dataset and preprocess again"
        )
    augmenter = BatchAugment(params, seed=seed)
    top = float(np.iinfo(source.images.dtype).max)
    n_total = len(manifest) + len(parents) * per_image
    copies_rows = []
    with atomic_dir(out) as staging:
        array = np.lib.format.open_memmap(
            staging / IMAGES,
            mode="w+",
            dtype=source.images.dtype,
            shape=(n_total,) + source.images.shape[1:],
        )
        array[: len(manifest)] = source.images
        position = len(manifest)
        jobs = np.repeat(parents, per_image)
        bar = tqdm(
            total=len(jobs),
            desc=f"augmenting ({preset})",
            disable=not progress,
            unit="img",
            leave=False,
        )
        for step, start in enumerate(range(0, len(jobs), batch_size)):
            rows = jobs[start : start + batch_size]
            batch = torch.from_numpy(np.asarray(source.images[rows], dtype=np.float32) / top)[
                :, None
            ]
            augmented = augmenter(batch, step)[:, 0].clamp(0, 1).mul(top).round().numpy()
            array[position : position + len(rows)] = augmented.astype(source.images.dtype)
            position += len(rows)
            bar.update(len(rows))
        bar.close()
        array.flush()
        del array
        for parent in parents:
            row = source.manifest.iloc[parent]
            for copy in range(per_image):
                copies_rows.append(
                    {
                        **row.to_dict(),
                        "id": f"{row['id']}#aug{copy + 1}",
                        "augmented": 1,
                        "parent_id": row["id"],
                    }
                )
        full = pd.concat(
            [manifest, pd.DataFrame(copies_rows, columns=manifest.columns)], ignore_index=True
        )
        (staging / "manifest.csv").write_text(dataframe_to_csv_text(full))
        (staging / "rejects.csv").write_text(
            (source.path / "rejects.csv").read_text()
            if (source.path / "rejects.csv").is_file()
            else ""
        )
        n_originals = int((~is_copy).sum())
        meta.update(
            {
                "manifest_sha256": manifest_digest(staging),
                "n_images": n_total,
                "n_originals": n_originals,
                "n_augmented": n_total - n_originals,
                "shape": [n_total, *source.images.shape[1:]],
            }
        )
        (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return AugmentReport(out, n_originals, n_total - n_originals, False)
