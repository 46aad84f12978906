"""Packed datasets: preprocessed images in one memory-mappable array.

A PACKED folder holds

* ``images.npy``: (N, H, W) uint8 or uint16, read with ``np.load(mmap_mode="r")``;
* ``manifest.csv``: the dataset's rows in the same order (split, label, covid, ...);
* ``meta.json``: every preprocessing option, the source manifest's SHA-256, the
  SHA-256 of its own ``manifest.csv`` and the cxrlab version: what makes the pixels
  and rows what they are;
* ``rejects.csv``: rows whose image could no longer be read (normally empty), or
  that have no usable lung mask when lung masks were asked for;
* ``masks.npy``: (N, H, W) uint8 lung masks (0 or 255) in manifest order, cropped and
  resized exactly like the images, when made with ``--lung-masks``.

The same options on the same dataset give byte-identical files; a folder appears
under its final name only once complete (written in a staging folder, then renamed).

Memory: ``images.npy`` is written and read through a memory map, and every page a
process touches there counts in its resident memory until the kernel needs it back.
An epoch over a 30,000-image PACKED at 224 px touches 1.5 GB; writing one, as much.
Writers and readers therefore hand touched pages back (:func:`release_pages`,
:func:`note_touched`) every :data:`RELEASE_BYTES`: the pages stay in the page cache, so
the next read of them costs a page-table fill, not a disk read, and a process's
memory stays flat however many images the PACKED holds.
"""

from __future__ import annotations

import json
import mmap
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlab import __version__
from cxrlab.data.manifest import (
    REJECT_COLUMNS,
    SPLITS,
    dataframe_to_csv_text,
    describe_splits,
    manifest_digest,
    read_manifest,
    require_folder,
)
from cxrlab.data.masks import mask_paths_by_id
from cxrlab.data.pack_worker import preprocess_one
from cxrlab.errors import CxrlabError, DatasetError
from cxrlab.preprocess.transforms import PreprocessOptions
from cxrlab.utils.fs import atomic_dir, sha256_file
from cxrlab.utils.outputs import PACKED as PACKED_KIND
from cxrlab.utils.outputs import OutputError, check_output
from cxrlab.utils.parallel import parallel_imap

IMAGES = "images.npy"
MASKS = "masks.npy"
META = "meta.json"
PACKED_FORMAT = "cxrlab-packed"
PACKED_FORMAT_VERSION = 1

#: A memory map's touched pages are handed back after this many bytes read or written.
#: Small: the kernel maps more than was asked for (read-around, large page-cache
#: folios: a random row can bring in megabytes), and handing back costs one madvise.
RELEASE_BYTES = 8 * 1024**2


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` behind a shared (``r``, ``r+``, ``w+``) memory-mapped array, or None."""
    while array is not None:
        mapped = getattr(array, "_mmap", None)
        if isinstance(mapped, mmap.mmap):
            # copy-on-write maps ("c") hold private changes that dropping would lose
            return None if getattr(array, "mode", "r") == "c" else mapped
        array = array.base if isinstance(array.base, np.ndarray) else None
    return None


def release_pages(array: np.ndarray) -> bool:
    """Drop this process's resident pages of the memory map behind ``array``.

    The file's contents are unaffected: written pages are in the page cache (flush
    first to have them on disk), and the next access maps them in again. Does
    nothing (False) for an array that is not a shared memory map.
    """
    mapped = _mapping(array)
    if mapped is None or mapped.closed or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapped.madvise(mmap.MADV_DONTNEED)
    return True


def note_touched(array: np.ndarray, n_bytes: int) -> None:
    """Count ``n_bytes`` read from (or written to) the memory map ``array``; every
    :data:`RELEASE_BYTES` its pages are handed back (:func:`release_pages`).

    Readers call this after each batch so that their resident memory stays flat over
    an epoch instead of growing to the whole PACKED.
    """
    mapped = _mapping(array)
    if mapped is None:
        return
    touched = _TOUCHED.get(mapped, 0) + n_bytes
    if touched >= RELEASE_BYTES:
        touched = 0
        release_pages(array)
    _TOUCHED[mapped] = touched


#: mmap -> bytes touched since its pages were last handed back (weak: a map closes
#: when its arrays go)
_TOUCHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class PackReport:
    out: Path
    n_images: int
    n_rejected: int
    reused: bool
    shape: tuple[int, ...]

    def summary(self) -> str:
        if self.reused:
            return f"{self.out}: an identical packed dataset already exists ({self.n_images} images); nothing to do"
        text = f"{self.out}: packed {self.n_images} images, shape {self.shape}"
        if self.n_rejected:
            text += f"; {self.n_rejected} could not be read (see rejects.csv)"
        return text


def packed_meta(
    dataset: str | Path,
    options: PreprocessOptions,
    splits: list[str] | None,
    lung_masks: str | Path | None = None,
) -> dict:
    """The meta.json a PACKED made from ``dataset`` with ``options`` will have (less counts).

    ``lung_masks`` (a MASKS folder) is recorded by path and by its ``masks.csv``'s SHA-256.
    """
    masks = None
    if lung_masks is not None:
        masks = {
            "path": str(Path(lung_masks).resolve()),
            "masks_csv_sha256": sha256_file(Path(lung_masks) / "masks.csv"),
        }
    return {
        "format": PACKED_FORMAT,
        "format_version": PACKED_FORMAT_VERSION,
        "cxrlab_version": __version__,
        "source_dataset": str(Path(dataset).resolve()),
        "source_manifest_sha256": manifest_digest(dataset),
        "splits": splits,
        "options": options.as_dict(),
        "lung_masks": masks,
    }


def read_meta(packed: str | Path) -> dict:
    path = Path(packed) / META
    if Path(packed).is_file():
        raise DatasetError(
            f"{packed} is a file, not a packed dataset folder: give its folder {Path(packed).parent}"
        )
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: is {packed} a packed dataset? "
            "Make one with `cxrlab data preprocess DATASET --out PACKED`."
        )
    return json.loads(path.read_text())


_WORK_KEYS = {
    "format_version": "format version",
    "cxrlab_version": "cxrlab version",
    "source_manifest_sha256": "source manifest (the dataset was imported or split again)",
    "splits": "--splits",
    "options": "preprocessing options",
    "lung_masks": "--lung-masks",
}


def _own_manifest_intact(packed: Path, meta: dict) -> bool:
    """Whether a PACKED's manifest.csv is still the one it was written with."""
    recorded = meta.get("manifest_sha256")
    return recorded is not None and recorded == manifest_digest(packed)


def existing_packed(
    out: Path, wanted: dict, inputs: list, force: bool, extra_same: str = "augmentation"
) -> dict | None:
    """Check ``out`` before packing into it; return its meta when it already holds this work.

    Raises:
        OutputError: when ``out`` is an input, another kind of folder, or (unless
            ``force``) a PACKED made otherwise; the message says what differs.
    """
    kind = check_output(out, kind=PACKED_KIND, inputs=inputs, force=True)
    if kind != PACKED_KIND:
        check_output(out, kind=PACKED_KIND, force=force)
        return None
    try:
        existing = read_meta(out)
    except ValueError:
        existing = {}
    differences = [
        label for key, label in _WORK_KEYS.items() if existing.get(key) != wanted.get(key)
    ]
    if existing.get(extra_same) != wanted.get(extra_same):
        differences.append(extra_same)
    if not (out / IMAGES).is_file() or not _own_manifest_intact(out, existing):
        differences.append("rows (its images.npy or manifest.csv changed after packing)")
    if not differences:
        return existing
    if not force:
        raise OutputError(
            f"--out {out} already holds a packed dataset made with another "
            f"{', '.join(differences)}; choose another --out, or pass --force to replace it"
        )
    return None


def preprocess_dataset(
    dataset: str | Path,
    out: str | Path,
    options: PreprocessOptions | None = None,
    *,
    splits: list[str] | None = None,
    lung_masks: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> PackReport:
    """Preprocess every (or every ``splits``) row of ``dataset`` into the PACKED folder ``out``.

    Does no work when ``out`` already holds the result of the same options on the
    same manifest, with its own manifest untouched (unless ``force``).

    Args:
        lung_masks: a MASKS folder (``cxrlab seg predict``): masks are matched to rows
            by id, used by ``options.lungs`` and stored as ``masks.npy``. Rows without
            a usable mask go to ``rejects.csv``. Needed when ``options.lungs`` is not
            ``none``.

    Raises:
        OutputError: before any work, when ``out`` is, holds or lies inside ``dataset``
            (or the masks), or (unless ``force``) holds another kind of folder or
            another PACKED.
    """
    options = options or PreprocessOptions()
    out = Path(out)
    require_folder(dataset)
    check_output(out, kind=PACKED_KIND, inputs=[dataset, lung_masks], force=True)
    if options.lungs != "none" and lung_masks is None:
        raise CxrlabError(
            f"--lungs {options.lungs} needs --lung-masks MASKS (make one with "
            "`cxrlab seg predict SEGRUN --data DATASET --out MASKS`)"
        )
    masks_by_id = mask_paths_by_id(lung_masks) if lung_masks is not None else None
    manifest = read_manifest(dataset)
    if splits:
        misspelt = [name for name in splits if name not in SPLITS]
        if misspelt:
            raise DatasetError(
                f"--splits {','.join(splits)}: {', '.join(misspelt)} is not a split name; "
                f"choose from {', '.join(SPLITS)}"
            )
        if not manifest["split"].isin(splits).any():
            raise DatasetError(
                f"no rows of {dataset} are in splits {', '.join(splits)}: "
                f"{describe_splits(manifest)}"
            )
        manifest = manifest[manifest["split"].isin(splits)].reset_index(drop=True)
    if manifest.empty:
        raise DatasetError(f"{dataset} has no rows to preprocess")
    meta = packed_meta(dataset, options, splits, lung_masks)
    existing = existing_packed(out, meta, [dataset, lung_masks], force)
    if existing is not None and not force:
        return PackReport(
            out,
            int(existing["n_images"]),
            int(existing.get("n_rejected", 0)),
            True,
            tuple(existing["shape"]),
        )

    jobs = [
        (path, options, None if masks_by_id is None else masks_by_id.get(image_id, ""))
        for path, image_id in zip(manifest["path"], manifest["id"], strict=True)
    ]
    square = (len(jobs), options.size_px, options.size_px)
    with atomic_dir(out) as staging:
        array = np.lib.format.open_memmap(
            staging / IMAGES, mode="w+", dtype=options.dtype, shape=square
        )
        masks = None
        if masks_by_id is not None:
            masks = np.lib.format.open_memmap(
                staging / MASKS, mode="w+", dtype=np.uint8, shape=square
            )
        ok = np.ones(len(jobs), dtype=bool)
        rejects = []
        for index, result in enumerate(
            parallel_imap(
                preprocess_one, jobs, workers=workers, desc="preprocessing", progress=progress
            )
        ):
            if "reason" in result:
                ok[index] = False
                row = manifest.iloc[index]
                rejects.append(
                    {
                        "source": row["source"],
                        "row": str(index),
                        "id": row["id"],
                        "path": row["path"],
                        "reason": result["reason"],
                        "detail": result["detail"],
                    }
                )
            else:
                array[index] = result["image"]
                note_touched(array, array[index].nbytes)
                if masks is not None:
                    masks[index] = result["mask"]
                    note_touched(masks, masks[index].nbytes)
        array.flush()
        del array
        names = [IMAGES] if masks is None else [IMAGES, MASKS]
        if masks is not None:
            masks.flush()
            del masks
        if not ok.all():  # rewrite without the failed rows, keeping order
            for name in names:
                _drop_rows(staging / name, ok)
            manifest = manifest[ok].reset_index(drop=True)
        if manifest.empty and masks_by_id is not None:
            raise DatasetError(
                f"--lung-masks {lung_masks}: no image of {dataset} has a usable lung mask "
                "(is it the MASKS folder of this dataset?; first reason: "
                f"{rejects[0]['reason']}: {rejects[0]['detail']})"
            )
        (staging / "manifest.csv").write_text(dataframe_to_csv_text(manifest))
        (staging / "rejects.csv").write_text(
            dataframe_to_csv_text(pd.DataFrame(rejects, columns=REJECT_COLUMNS))
        )
        shape = (len(manifest), options.size_px, options.size_px)
        meta.update(
            {
                "manifest_sha256": manifest_digest(staging),
                "n_images": len(manifest),
                "n_rejected": len(rejects),
                "shape": list(shape),
                "dtype": str(options.dtype),
            }
        )
        (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return PackReport(out, len(manifest), len(rejects), False, shape)


def _drop_rows(path: Path, keep: np.ndarray) -> None:
    """Rewrite the stack ``path`` with only the rows where ``keep`` is True, in order,
    a chunk at a time through memory maps (never the whole stack in memory)."""
    source = np.load(path, mmap_mode="r")
    kept = np.nonzero(keep)[0]
    if len(kept) == 0:  # nothing to map: an empty stack
        empty = np.zeros((0,) + source.shape[1:], dtype=source.dtype)
        del source
        np.save(path, empty)
        return
    partial = path.with_name(path.name + ".partial")
    target = np.lib.format.open_memmap(
        partial, mode="w+", dtype=source.dtype, shape=(len(kept),) + source.shape[1:]
    )
    chunk = max(1, RELEASE_BYTES // max(1, source[0].nbytes))
    for start in range(0, len(kept), chunk):
        rows = kept[start : start + chunk]
        target[start : start + len(rows)] = source[rows]
        note_touched(source, source[0].nbytes * len(rows))
        note_touched(target, source[0].nbytes * len(rows))
    target.flush()
    del target, source
    partial.replace(path)


@dataclass
class Packed:
    """A packed dataset opened for reading: ``images`` is a read-only memory map."""

    path: Path
    images: np.ndarray  # (N, H, W) uint8 or uint16
    manifest: pd.DataFrame
    meta: dict

    @property
    def max_value(self) -> float:
        return float(np.iinfo(self.images.dtype).max)

    def select(self, split: str | list[str] | None = None, covid: int | None = None) -> np.ndarray:
        """Row indices of the given split(s) and covid label (None: any)."""
        mask = np.ones(len(self.manifest), dtype=bool)
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            mask &= self.manifest["split"].isin(wanted).to_numpy()
        if covid is not None:
            mask &= (self.manifest["covid"] == int(covid)).to_numpy()
        return np.nonzero(mask)[0]


def load_stack(path: str | Path) -> np.ndarray:
    """A PACKED folder's ``images.npy`` or ``masks.npy``, memory-mapped read-only:
    (N, H, W) uint8 or uint16.

    Raises:
        DatasetError: naming the file, when it is missing, not a NumPy file, or not
            such a stack (replaced or damaged by hand), with the fix.
    """
    path = Path(path)
    again = (
        "make the PACKED folder again with `cxrlab data preprocess DATASET --out PACKED --force`"
    )
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: {again}") from None
    except (OSError, ValueError, EOFError) as error:
        objects = "pickle" in str(error) or "Python objects" in str(error)
        reason = "it holds Python objects" if objects else type(error).__name__
        raise DatasetError(f"{path} cannot be read as a NumPy array ({reason}): {again}") from None
    if not isinstance(array, np.ndarray) or array.ndim != 3 or array.dtype.kind != "u":
        shape = getattr(array, "shape", "?")
        dtype = getattr(array, "dtype", "?")
        raise DatasetError(
            f"{path} holds a {dtype} array of shape {shape}, not (N, H, W) unsigned "
            f"integers: {again}"
        )
    return array


def open_packed(packed: str | Path) -> Packed:
    """Open a PACKED folder; the images stay on disk until touched."""
    packed = Path(packed)
    meta = read_meta(packed)
    if meta.get("format") != PACKED_FORMAT:
        raise DatasetError(f"{packed}/meta.json is not a cxrlab packed dataset")
    images = load_stack(packed / IMAGES)
    manifest = read_manifest(packed)
    if len(manifest) != images.shape[0]:
        raise CxrlabError(
            f"{packed}: manifest.csv has {len(manifest)} rows but images.npy has {images.shape[0]}; "
            "the folder was modified by hand: preprocess again"
        )
    return Packed(packed, images, manifest, meta)
