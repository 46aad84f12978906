"""Which images a classifier sees: real, augmented and synthetic ones kept apart.

The one rule: **generated images train, never judge.** Rows marked ``augmented=1``
(offline copies from ``cxrlab data augment``) or ``synthetic=1`` (``cxrlab gen
sample``), and every image of a ``--synthetic`` source, enter only
:func:`training_set`. :func:`evaluation_set` (validation, test, external) keeps real
rows only, whatever their split says. Online augmentation is applied by the trainer
to training batches only.

Whether synthetic images may train a classifier on a PACKED (their provenance, copies
of held-out images, preprocessing) is decided in the data layer
(:func:`cxrlab.data.provenance.check_synthetic`): this package reads the files the
generator wrote, never the generator package.

An :class:`ImageSet` gathers (B, 1, S, S) float batches in [0, 1] from one or more
(N, H, W) arrays (memory maps of PACKED folders, or decoded PNGs); images whose side
differs from the set's are resized (bilinear, antialiased).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cxrlab.data.manifest import describe_splits
from cxrlab.data.packed import Packed, load_stack, note_touched, open_packed
from cxrlab.data.provenance import check_synthetic, preprocessing_of
from cxrlab.data.sources.labels import class_label
from cxrlab.errors import CxrlabError, DatasetError

#: Manifest columns that mark generated rows (missing columns count as 0).
GENERATED_COLUMNS = ("augmented", "synthetic")
ORIGINS = ("real", "augmented", "synthetic", "oversampled")
EVAL_SPLITS = ("val", "test", "external", "all")


def _flag(manifest: pd.DataFrame, column: str) -> np.ndarray:
    if column not in manifest.columns:
        return np.zeros(len(manifest), dtype=bool)
    values = manifest[column].astype(str).str.strip().str.lower()
    return values.isin({"1", "1.0", "true", "yes"}).to_numpy()


def generated_mask(manifest: pd.DataFrame) -> np.ndarray:
    """(N,) bool: rows that are augmented copies or synthetic images."""
    mask = np.zeros(len(manifest), dtype=bool)
    for column in GENERATED_COLUMNS:
        mask |= _flag(manifest, column)
    return mask


def row_origins(manifest: pd.DataFrame) -> np.ndarray:
    """(N,) str: ``synthetic``, ``augmented`` or ``real`` per row."""
    origins = np.full(len(manifest), "real", dtype=object)
    origins[_flag(manifest, "augmented")] = "augmented"
    origins[_flag(manifest, "synthetic")] = "synthetic"
    return origins


@dataclass
class ImagePart:
    """One array of images: ``images`` (N, H, W) uint8/uint16, of which ``rows`` are used."""

    images: np.ndarray
    rows: np.ndarray

    @property
    def scale(self) -> float:
        return 1.0 / float(np.iinfo(self.images.dtype).max)


class ImageSet:
    """Images with labels and identities, gathered in batches.

    Args:
        parts: the arrays images come from.
        table: one row per image, columns ``id``, ``patient_id``, ``source``,
            ``split``, ``covid`` (int), ``origin`` and ``part``/``row`` (which array
            and which index in it).
        size_px: side of the batches.
        mask: optional (N, size_px, size_px) bool lung masks, one per image.
    """

    def __init__(
        self,
        parts: list[ImagePart],
        table: pd.DataFrame,
        size_px: int,
        mask: np.ndarray | None = None,
    ) -> None:
        self.parts = parts
        self.table = table.reset_index(drop=True)
        self.size_px = size_px
        self.mask = mask
        self.labels = self.table["covid"].to_numpy().astype(np.int64)
        #: what was accepted that the outputs must say (unverified or mismatched synthetic images)
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.table)

    @property
    def origins(self) -> np.ndarray:
        return self.table["origin"].to_numpy()

    def batch(self, positions: np.ndarray | list[int]) -> torch.Tensor:
        """(B, 1, S, S) float32 in [0, 1] for the images at ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        out = torch.empty(len(positions), 1, self.size_px, self.size_px)
        parts = self.table["part"].to_numpy()[positions]
        rows = self.table["row"].to_numpy()[positions]
        for part_index in np.unique(parts):
            where = np.nonzero(parts == part_index)[0]
            part = self.parts[part_index]
            wanted = rows[where]
            order = np.argsort(wanted, kind="stable")  # one sorted read of the memory map
            pixels = np.empty((len(wanted),) + part.images.shape[1:], dtype=part.images.dtype)
            pixels[order] = part.images[wanted[order]]
            note_touched(part.images, pixels.nbytes)  # memory stays flat over an epoch
            images = torch.from_numpy(pixels.astype(np.float32) * part.scale)[:, None]
            if images.shape[-1] != self.size_px or images.shape[-2] != self.size_px:
                images = F.interpolate(
                    images,
                    size=(self.size_px, self.size_px),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                ).clamp(0, 1)
            out[torch.from_numpy(where)] = images
        return out

    def lung_mask(self, positions: np.ndarray | list[int]) -> torch.Tensor | None:
        """(B, 1, S, S) bool lung masks of ``positions``, or None when the set has none."""
        if self.mask is None:
            return None
        return torch.from_numpy(np.asarray(self.mask[np.asarray(positions)], dtype=bool))[:, None]


def _table(
    manifest: pd.DataFrame, rows: np.ndarray, part: int, origins: np.ndarray
) -> pd.DataFrame:
    chosen = manifest.iloc[rows]
    return pd.DataFrame(
        {
            "id": chosen["id"].to_numpy(),
            "patient_id": chosen["patient_id"].to_numpy(),
            "source": chosen["source"].to_numpy(),
            "split": chosen["split"].to_numpy(),
            "covid": chosen["covid"].to_numpy().astype(np.int64),
            "origin": origins[rows],
            "part": part,
            "row": rows,
        }
    )


def _open(packed: str | Path | Packed) -> Packed:
    return packed if isinstance(packed, Packed) else open_packed(packed)


def _packed_masks(packed: Packed, rows: np.ndarray, size_px: int) -> np.ndarray | None:
    """Lung masks from ``masks.npy`` beside ``images.npy`` (nonzero = lung), if any."""
    path = packed.path / "masks.npy"
    if not path.is_file():
        return None
    masks = load_stack(path)
    if masks.shape[0] != packed.images.shape[0]:
        raise DatasetError(
            f"{path} has {masks.shape[0]} masks for {packed.images.shape[0]} images; "
            "it must hold one (H, W) lung mask per image, in manifest order"
        )
    chosen = torch.from_numpy(np.asarray(masks[rows]) > 0).float()[:, None]
    if chosen.shape[-1] != size_px:
        chosen = F.interpolate(chosen, size=(size_px, size_px), mode="nearest")
    return chosen[:, 0].numpy() > 0.5


def evaluation_set(packed: str | Path | Packed, split: str, size_px: int | None = None) -> ImageSet:
    """The real images of ``split`` (``val``, ``test``, ``external`` or ``all``).

    Augmented and synthetic rows are left out whatever their split says: a model is
    only ever judged on real, unaltered images.

    Raises:
        DatasetError: when the split holds no real image.
    """
    data = _open(packed)
    if split not in EVAL_SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    size_px = size_px or int(data.images.shape[-1])
    wanted = np.ones(len(data.manifest), dtype=bool)
    if split != "all":
        wanted = data.manifest["split"].eq(split).to_numpy()
    rows = np.nonzero(wanted & ~generated_mask(data.manifest))[0]
    if len(rows) == 0:
        hint = {
            "external": "; for a dataset from another source that was never split, use --split all",
            "val": "; training chooses its epoch and threshold on a validation split: split with "
            "`cxrlab data split DATASET --by patient --ratios 0.6 0.2 0.2` and preprocess again",
        }.get(split, "")
        raise DatasetError(
            f"{data.path}: no real images in split {split!r} ({describe_splits(data.manifest)})"
            f"{hint}"
        )
    table = _table(data.manifest, rows, 0, row_origins(data.manifest))
    mask = _packed_masks(data, rows, size_px)
    return ImageSet([ImagePart(data.images, rows)], table, size_px, mask)


def _synthetic_dir(folder: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Decode a folder of synthetic PNGs; flat files are COVID-positive, labelled sub-folders say."""
    from cxrlab.data.io import read_image

    files = sorted(p for p in folder.rglob("*.png") if not p.name.startswith("."))
    if not files:
        raise DatasetError(f"--synthetic {folder}: the folder holds no PNG images")
    images, records = [], []
    for path in files:
        relative = path.relative_to(folder)
        covid = 1
        if len(relative.parts) > 1:
            # the labels module's one vocabulary: positive/COVID-19, negative/normal/Non-COVID...
            where = f"--synthetic {folder}: sub-folder {relative.parts[0]!r}"
            covid = class_label(relative.parts[0], where)[1]
        pixels = read_image(path).pixels
        if pixels.dtype != np.uint8:
            pixels = (pixels >> 8).astype(np.uint8)
        images.append(pixels)
        source = f"synthetic:{folder.name}"
        records.append({"id": f"{source}:{relative.as_posix()}", "covid": covid})
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DatasetError(f"--synthetic {folder}: images differ in size ({sorted(shapes)[:3]})")
    frame = pd.DataFrame(records)
    frame["patient_id"] = frame["id"]
    frame["source"] = f"synthetic:{folder.name}"
    frame["split"] = "train"
    return np.stack(images), frame


def synthetic_source(path: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Images (N, H, W) and a table (id, patient_id, source, split, covid) of a synthetic
    PACKED (every row, whatever its split) or folder of PNGs."""
    path = Path(path)
    if (path / "images.npy").is_file():
        data = open_packed(path)
        if not _flag(data.manifest, "synthetic").all():
            raise DatasetError(
                f"--synthetic {path} is a PACKED of real images (its manifest does not mark "
                "every row synthetic): training on it as synthetic data would put real "
                "images, its validation and test ones too, into training; give what "
                "`cxrlab gen sample RUN --packed --out S` writes"
            )
        frame = data.manifest[["id", "patient_id", "source", "split", "covid"]].copy()
        return data.images, frame
    if path.is_dir():
        return _synthetic_dir(path)
    raise DatasetError(
        f"--synthetic {path} is neither a PACKED folder nor a folder of PNGs; "
        "make one with `cxrlab gen sample RUN --out DIR`"
    )


def synthetic_notes(packed: str | Path | Packed, config) -> list[str]:
    """Check a run's ``--synthetic`` images against ``packed`` before training (see
    :func:`cxrlab.data.provenance.check_synthetic`); the notes its report must carry.

    Args:
        config: a :class:`~cxrlab.clf.config.ClfConfig` (``synthetic``,
            ``synthetic_unverified``, ``allow_mismatch``).
    """
    if not config.synthetic:
        return []
    images, _ = synthetic_source(config.synthetic)
    return check_synthetic(
        _open(packed),
        config.synthetic,
        images,
        unverified=config.synthetic_unverified,
        allow_mismatch=config.allow_mismatch,
    )


def data_preprocessing(packed: str | Path | Packed) -> dict:
    """How ``packed``'s images were made (size, equalization, crop, lungs, bit depth...),
    as a run records it for ``clf evaluate`` to compare."""
    data = _open(packed)
    return preprocessing_of(data.meta, int(data.images.shape[-1]))


def trained_preprocessing(run: str | Path) -> tuple[dict | None, str]:
    """How the images a classifier run learned from were made, and where that is read:
    its ``metrics.json`` record, else the ``meta.json`` of its config's ``data``; None
    when neither can be read (the PACKED moved)."""
    import json

    import yaml

    run = Path(run)
    try:
        recorded = json.loads((run / "metrics.json").read_text()).get("preprocessing")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, dict) and recorded:
        return recorded, str(run / "metrics.json")
    try:
        data = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("data")
        return data_preprocessing(data), str(data)
    except (OSError, ValueError, AttributeError, TypeError, yaml.YAMLError, CxrlabError):
        return None, ""  # the training PACKED is gone or unreadable: nothing to compare


def training_set(
    packed: str | Path | Packed,
    *,
    synthetic: str | Path | None = None,
    synthetic_ratio: float | None = None,
    oversample_positive: int = 0,
    seed: int = 0,
    synthetic_unverified: bool = False,
    allow_mismatch: bool = False,
) -> ImageSet:
    """The train split of ``packed`` (with its augmented copies) plus synthetic images.

    Args:
        packed: the real PACKED.
        synthetic: PACKED or PNG folder of synthetic images (all of them train).
        synthetic_ratio: synthetic images per real training image, drawn without
            replacement with ``seed``; None: all.
        oversample_positive: add this many copies of real COVID-positive training images
            (drawn with replacement with ``seed``; origin ``oversampled``): the control
            arm of a synthetic experiment, same prevalence change, no new images.
        synthetic_unverified: accept a synthetic source without provenance (its notes
            say so).
        allow_mismatch: accept synthetic images made from data preprocessed otherwise
            (its notes say how).

    The returned set's ``notes`` say what was accepted that the outputs must record.

    Raises:
        DatasetError: synthetic images that would put held-out images into training or
            were made otherwise (see :func:`cxrlab.data.provenance.check_synthetic`).
    """
    data = _open(packed)
    size_px = int(data.images.shape[-1])
    rows = data.select("train")
    if len(rows) == 0:
        raise DatasetError(
            f"{data.path}: no images in split 'train'; split the dataset first with "
            "`cxrlab data split DATASET --by patient` and preprocess it again"
        )
    parts = [ImagePart(data.images, rows)]
    tables = [_table(data.manifest, rows, 0, row_origins(data.manifest))]
    notes: list[str] = []
    if synthetic:
        images, frame = synthetic_source(synthetic)
        notes = check_synthetic(
            data,
            synthetic,
            images,
            unverified=synthetic_unverified,
            allow_mismatch=allow_mismatch,
        )
        chosen = np.arange(len(frame))
        real_count = int((tables[0]["origin"] == "real").sum())
        if synthetic_ratio is not None:
            wanted = round(synthetic_ratio * real_count)
            if wanted > len(frame):
                raise DatasetError(
                    f"--synthetic-ratio {synthetic_ratio} asks for {wanted} synthetic images "
                    f"but {synthetic} holds {len(frame)}; sample more or lower the ratio"
                )
            chosen = np.sort(np.random.default_rng(seed).permutation(len(frame))[:wanted])
        if len(chosen):
            frame = frame.iloc[chosen].reset_index(drop=True)
            frame["origin"] = "synthetic"
            frame["split"] = "train"
            frame["part"] = 1
            frame["row"] = chosen
            frame["covid"] = frame["covid"].astype(np.int64)
            parts.append(ImagePart(images, chosen))
            tables.append(frame[list(tables[0].columns)])
    if oversample_positive > 0:
        real = tables[0]
        positives = np.nonzero(((real["origin"] == "real") & (real["covid"] == 1)).to_numpy())[0]
        if len(positives) == 0:
            raise DatasetError(f"{data.path}: no real COVID-positive training image to oversample")
        drawn = np.random.default_rng([seed, 1]).choice(positives, oversample_positive)
        copies = real.iloc[drawn].reset_index(drop=True)
        copies["origin"] = "oversampled"
        tables.append(copies)
    result = ImageSet(parts, pd.concat(tables, ignore_index=True), size_px)
    result.notes = notes
    return result


def with_splits(packed: str | Path | Packed, splits_file: str | Path) -> Packed:
    """``packed`` with its split column replaced by ``splits_file`` (CSV: ``id``, ``split``).

    Rows the file does not list get the split ``""``: no training or evaluation set
    takes them. A cross-validation fold is a run whose file names its training,
    validation and held-out (``test``) rows.

    Raises:
        DatasetError: naming the file, when it is missing or malformed, lists an id twice
            or lists an id the PACKED does not have (a file of another PACKED).
    """
    import dataclasses

    data = _open(packed)
    path = Path(splits_file)
    if not path.is_file():
        raise DatasetError(f"splits file {path} not found (it is written by `clf train --cv`)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"id", "split"} <= set(table.columns):
        raise DatasetError(f"{path} must have the columns id and split")
    if table["id"].duplicated().any():
        twice = table.loc[table["id"].duplicated(), "id"].iloc[0]
        raise DatasetError(f"{path} lists id {twice!r} twice")
    unknown = sorted(set(table["id"]) - set(data.manifest["id"]))
    if unknown:
        raise DatasetError(
            f"{path} lists {len(unknown)} id(s) that {data.path} does not have (e.g. "
            f"{unknown[0]!r}): it was made for another PACKED"
        )
    manifest = data.manifest.copy()
    manifest["split"] = manifest["id"].map(dict(zip(table["id"], table["split"], strict=True)))
    manifest["split"] = manifest["split"].fillna("")
    return dataclasses.replace(data, manifest=manifest)


def patient_overlap(packed: str | Path | Packed) -> dict[str, int]:
    """Patients of the train split that also appear in val / test (should be 0 each)."""
    data = _open(packed)
    manifest = data.manifest[~generated_mask(data.manifest)]
    train = set(manifest.loc[manifest["split"] == "train", "patient_id"])
    return {
        split: len(train & set(manifest.loc[manifest["split"] == split, "patient_id"]))
        for split in ("val", "test")
    }
