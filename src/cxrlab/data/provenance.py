"""Where images come from: synthetic images' provenance, held-out copies, preprocessing.

Three checks that keep images of one pipeline from silently meeting a model of another,
kept in the data layer so that the generator (which writes provenance) and the
classifier (which reads it) only meet through files:

* **Provenance.** ``cxrlab gen sample`` writes ``provenance.json`` beside the images
  it draws (a PNG folder or a synthetic PACKED): the run, and for the PACKED its
  generator learned from, the SHA-256 of the dataset manifest, the ids of the rows it
  learned, their perceptual hashes (the manifest's ``phash`` of the source file and
  the hash of the preprocessed pixels) and the preprocessing options.
  :func:`check_synthetic` refuses synthetic images whose generator learned a
  validation, test or external image of the classifier's PACKED: by id when the
  generator learned from the same dataset, by content (perceptual hash) otherwise, so
  a generator trained on another dataset holding the same images is caught too.
* **Copies.** Any "synthetic" image that is a copy of a held-out image, resized,
  re-encoded, touched up or saved at another bit depth, is refused
  (:func:`refuse_held_out_copies`): a 64-bit DCT perceptual hash (computed at 32 px
  whatever the image's size) finds candidates, 32 px thumbnails confirm them.
* **Preprocessing.** :func:`preprocessing_differences` names every option (size,
  equalization, crop, lungs, bit depth...) in which two sets of images differ; callers
  refuse a difference unless the user allows it (``--allow-mismatch``), and record it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cxrlab import __version__
from cxrlab.data.packed import META, Packed
from cxrlab.errors import DatasetError
from cxrlab.utils.fs import atomic_write_text

PROVENANCE = "provenance.json"
PROVENANCE_FORMAT = "cxrlab-synthetic-provenance"
PROVENANCE_VERSION = 1

#: Largest Hamming distance (of 64 bits) between the perceptual hashes of a learned image
#: and a held-out one taken for the same image, where only hashes are known (provenance).
#: The bundled sample's images (downscaled ieee8023 files) lie 0 or 2 bits from their
#: originals; of the 59,474 pairs of different patients' ieee8023 images, one pair (a
#: near-duplicate group of the importer's, so always in one split) lies within 6.
COPY_DISTANCE = 6
#: With pixels on both sides (:func:`refuse_held_out_copies`), a pair within this many
#: bits is a candidate, confirmed by its thumbnails: copies resized to 40 px, JPEG at
#: quality 50, with one pixel changed or at 16 bits lie within 6 bits.
COPY_CANDIDATE_DISTANCE = 8
#: Mean absolute difference of two 32 px thumbnails, each scaled to mean 0 and sd 1,
#: under which a candidate is a copy: those copies stay under 0.09; no two images of
#: different ieee8023 patients (64 px) come closer than 0.21.
COPY_THUMBNAIL_DISTANCE = 0.15
THUMBNAIL_PX = 32

#: Preprocessing options that change what a model sees, with the words messages use.
COMPARED_OPTIONS = {
    "size_px": "size (px)",
    "resize": "resize",
    "crop_top": "crop (--crop-top)",
    "equalize": "equalization",
    "clahe_clip": "CLAHE clip",
    "clahe_grid": "CLAHE grid",
    "gamma": "gamma",
    "bit_depth": "bit depth",
    "lungs": "lungs",
    "lung_margin": "lung margin",
}


class PreprocessingMismatchError(DatasetError):
    """Two sets of images meant to meet were preprocessed differently."""


class HeldOutLeakError(DatasetError):
    """Synthetic images whose generator learned (or that copy) images a classifier is judged on."""


# ------------------------------------------------------------------ perceptual hashes
def pixel_hashes(images: np.ndarray) -> np.ndarray:
    """(N,) uint64: the 64-bit DCT perceptual hash of each (H, W) uint8/uint16 image.

    The hash is ``imagehash.phash`` (the one the manifest's ``phash`` column holds):
    the image is resized to 32 px, so hashes of one image at two sizes or bit depths
    are close and can be compared with those of source files.
    """
    from cxrlab.data.duplicates import phash_hex

    return np.array([int(phash_hex(np.asarray(image)), 16) for image in images], dtype=np.uint64)


def parse_hashes(values: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Hex hashes (blank or malformed allowed) -> ((K,) uint64 hashes, (K,) positions)."""
    hashes, positions = [], []
    for position, value in enumerate(values):
        text = str(value).strip() if value is not None else ""
        if len(text) != 16:
            continue
        try:
            hashes.append(int(text, 16))
        except ValueError:
            continue
        positions.append(position)
    return np.array(hashes, dtype=np.uint64), np.array(positions, dtype=np.int64)


def near_pairs(
    first: np.ndarray, second: np.ndarray, max_distance: int = COPY_DISTANCE
) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every hash ``first[i]`` within ``max_distance`` bits of ``second[j]``."""
    found: list[tuple[int, int, int]] = []
    if len(first) == 0 or len(second) == 0:
        return found
    block = 256  # (block, len(second)) uint64 at a time
    for start in range(0, len(first), block):
        distance = np.bitwise_count(first[start : start + block, None] ^ second[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        found += [
            (start + int(r), int(c), int(distance[r, c]))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        ]
    return found


def held_out_rows(data: Packed) -> np.ndarray:
    """Rows of ``data`` a classifier is chosen or judged on: every row outside the train
    split (a row with no split counts as held out)."""
    split = data.manifest["split"].astype(str).str.strip()
    return np.nonzero(split.ne("train").to_numpy())[0]


_PIXEL_HASH_CACHE: dict[tuple, np.ndarray] = {}


def _packed_pixel_hashes(data: Packed, rows: np.ndarray) -> np.ndarray:
    """Pixel hashes of ``rows`` of ``data``, remembered per PACKED content (one classifier
    run checks its synthetic images once per seed)."""
    images = Path(data.path) / "images.npy"
    key = (
        str(Path(data.path).resolve()),
        images.stat().st_mtime_ns if images.is_file() else None,
        data.meta.get("manifest_sha256"),
        tuple(data.images.shape),
        rows.tobytes(),
    )
    if key not in _PIXEL_HASH_CACHE:
        _PIXEL_HASH_CACHE.clear()  # one PACKED at a time: memory stays small
        _PIXEL_HASH_CACHE[key] = (
            pixel_hashes(data.images[rows]) if len(rows) else np.zeros(0, np.uint64)
        )
    return _PIXEL_HASH_CACHE[key]


def _source_hashes(data: Packed, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's ``phash`` (of each source file) of ``rows`` that have one, and their rows."""
    if "phash" not in data.manifest.columns:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    hashes, positions = parse_hashes(data.manifest["phash"].to_numpy()[rows])
    return hashes, rows[positions]


# ------------------------------------------------------------------ preprocessing
def preprocessing_of(meta: dict | None, size_px: int | None = None) -> dict:
    """The options of :data:`COMPARED_OPTIONS` a PACKED's ``meta.json`` records.

    CLAHE settings count only with ``equalize: clahe``, the lung margin only with
    ``lungs: crop``. ``size_px`` (the images' side) fills in the size when the meta
    has no options (a PACKED written by hand, a folder of PNGs).
    """
    options = (meta or {}).get("options")
    chosen = {}
    if isinstance(options, dict):
        chosen = {key: options[key] for key in COMPARED_OPTIONS if key in options}
    if chosen.get("equalize") != "clahe":
        chosen.pop("clahe_clip", None)
        chosen.pop("clahe_grid", None)
    if chosen.get("lungs") != "crop":
        chosen.pop("lung_margin", None)
    if "size_px" not in chosen and size_px is not None:
        chosen["size_px"] = int(size_px)
    return chosen


def preprocessing_differences(first: dict, second: dict) -> list[str]:
    """``["size (px) 64 vs 100", "equalization none vs clahe"]``: every option recorded
    on both sides that differs (an option one side does not record cannot be compared)."""
    return [
        f"{words} {first[key]} vs {second[key]}"
        for key, words in COMPARED_OPTIONS.items()
        if key in first and key in second and first[key] != second[key]
    ]


def folder_preprocessing(path: str | Path, size_px: int | None = None) -> dict:
    """What is known of how the images of ``path`` were made: a PACKED's own options, or
    for synthetic images (PACKED or PNG folder) those of the data their generator learned."""
    path = Path(path)
    provenance = read_provenance(path)
    meta = None
    if (path / META).is_file():
        try:
            meta = json.loads((path / META).read_text())
        except ValueError:
            meta = None
    if meta and isinstance(meta.get("options"), dict):
        return preprocessing_of(meta, size_px)
    if provenance and provenance.get("learned"):
        learned = provenance["learned"]
        return preprocessing_of({"options": learned.get("options")}, size_px)
    return preprocessing_of(None, size_px)


def check_preprocessing(
    first: dict,
    second: dict,
    *,
    what: str,
    allow_mismatch: bool,
    fix: str,
) -> list[str]:
    """Refuse (or, with ``allow_mismatch``, note) a difference between two preprocessings.

    Args:
        first, second: from :func:`preprocessing_of`.
        what: ``"--synthetic S (learned from A) and --data P"``: who differs.
        allow_mismatch: go on, returning the note that the outputs record.
        fix: how to make them agree.

    Returns:
        Notes for the outputs (empty when nothing differs).

    Raises:
        PreprocessingMismatchError: naming each difference, unless ``allow_mismatch``.
    """
    differences = preprocessing_differences(first, second)
    if not differences:
        return []
    if not allow_mismatch:
        raise PreprocessingMismatchError(
            f"{what} were preprocessed differently ({'; '.join(differences)}): {fix}, or "
            "pass --allow-mismatch to go on anyway (the outputs record it)"
        )
    return [
        f"preprocessing mismatch allowed (--allow-mismatch): {what} differ in "
        f"{'; '.join(differences)}"
    ]


# ------------------------------------------------------------------ provenance files
def learned_record(data: Packed, rows: np.ndarray, *, split: str | None, label: str | None) -> dict:
    """What a generator trained on ``rows`` of ``data`` learned: the ``learned`` part of
    ``provenance.json``."""
    rows = np.asarray(rows, dtype=np.int64)
    manifest = data.manifest.iloc[rows]
    source_hashes = (
        manifest["phash"].astype(str).tolist() if "phash" in manifest.columns else [""] * len(rows)
    )
    return {
        "data": str(Path(data.path).resolve()),
        "split": split,
        "label": label,
        "source_manifest_sha256": data.meta.get("source_manifest_sha256"),
        "manifest_sha256": data.meta.get("manifest_sha256"),
        "options": data.meta.get("options"),
        "lung_masks": data.meta.get("lung_masks"),
        "shape": list(data.images.shape),
        "n_images": len(rows),
        "ids": manifest["id"].astype(str).tolist(),
        "phash": source_hashes,
        "pixel_phash": [f"{value:016x}" for value in pixel_hashes(data.images[rows])],
    }


def write_provenance(folder: str | Path, run: dict, learned: dict | None, why: str = "") -> Path:
    """Write ``folder/provenance.json``: ``run`` (path, step, seed...) and ``learned``
    (:func:`learned_record`; None with ``why`` when it cannot be known)."""
    record = {
        "format": PROVENANCE_FORMAT,
        "format_version": PROVENANCE_VERSION,
        "cxrlab_version": __version__,
        "run": run,
        "learned": learned,
    }
    if learned is None:
        record["why_unknown"] = why
    path = Path(folder) / PROVENANCE
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def read_provenance(folder: str | Path) -> dict | None:
    """``folder/provenance.json`` if it is one cxrlab wrote, else None (see :func:`knows_learned`)."""
    path = Path(folder) / PROVENANCE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != PROVENANCE_FORMAT:
        return None
    return record


def knows_learned(provenance: dict | None) -> bool:
    """Whether a provenance record says which rows its generator learned."""
    learned = (provenance or {}).get("learned")
    return isinstance(learned, dict) and isinstance(learned.get("ids"), list)


# ------------------------------------------------------------------ the checks
def _describe(data: Packed, row: int) -> str:
    found = data.manifest.iloc[row]
    split = str(found["split"]).strip()
    return f"{found['id']} of the {split} split" if split else f"{found['id']} (no split)"


def same_dataset(learned: dict, data: Packed) -> bool:
    """Whether a generator's PACKED (``learned``) holds the rows of ``data``'s dataset, so
    that ids name the same images: one source manifest, one PACKED manifest, or one folder."""
    for key in ("source_manifest_sha256", "manifest_sha256"):
        if learned.get(key) and learned.get(key) == data.meta.get(key):
            return True
    try:
        return Path(str(learned.get("data"))).resolve() == Path(data.path).resolve()
    except OSError:
        return False


def refuse_learned_held_out(data: Packed, provenance: dict, where: str) -> None:
    """Refuse synthetic images whose generator learned a held-out image of ``data``.

    When the generator learned from ``data``'s own dataset (:func:`same_dataset`), by
    id: split again or not, a learned id outside today's train split is a leak (and
    near-duplicate images share a split, ``cxrlab data split`` keeps them together).
    Otherwise by content: a learned image whose perceptual hash (of the source file,
    or of the preprocessed pixels) lies within :data:`COPY_DISTANCE` bits of a held-out
    image's is the same image, found in another dataset or another copy of this one.

    Raises:
        HeldOutLeakError: naming an example, how it was found, and the fix.
    """
    learned = provenance["learned"]
    held_out = held_out_rows(data)
    if len(held_out) == 0:
        return
    fix = (
        "a classifier trained on its images would have seen images it is chosen or judged "
        f"on; train the generator on the train split of {data.path} only (`cxrlab gen "
        f"train --data {data.path} --split train`) and sample again"
    )
    by = f"its generator ({(provenance.get('run') or {}).get('path', '?')}) learned"
    if same_dataset(learned, data):
        ids = data.manifest["id"].astype(str).to_numpy()
        learned_ids = set(map(str, learned["ids"]))
        leaked = [int(row) for row in held_out if ids[row] in learned_ids]
        if leaked:
            raise HeldOutLeakError(
                f"{where}: {by} {len(leaked)} image(s) of {data.path} outside its train "
                f"split, e.g. {_describe(data, leaked[0])} (same dataset, by id): {fix}"
            )
        return
    pairs = []  # (row of data, distance): source hashes with source, pixels with pixels
    held_source, source_rows = _source_hashes(data, held_out)
    learned_source = parse_hashes(learned.get("phash") or [])[0]
    pairs += [(int(source_rows[i]), d) for i, _, d in near_pairs(held_source, learned_source)]
    learned_pixels = parse_hashes(learned.get("pixel_phash") or [])[0]
    held_pixels = _packed_pixel_hashes(data, held_out)
    pairs += [(int(held_out[i]), d) for i, _, d in near_pairs(held_pixels, learned_pixels)]
    if pairs:
        rows = sorted({row for row, _ in pairs})
        closest = min(pairs, key=lambda pair: pair[1])
        raise HeldOutLeakError(
            f"{where}: {by} {len(rows)} image(s) that are validation/test/external images of "
            f"{data.path}, found by content in another dataset, e.g. "
            f"{_describe(data, closest[0])} (perceptual hash {closest[1]} of 64 bits away, "
            f"at most {COPY_DISTANCE} is the same image): {fix}"
        )


def thumbnails(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32) float32: each (H, W) uint8/uint16 image resized (bilinear, antialiased)
    and scaled to mean 0, sd 1, so size, bit depth and contrast do not count."""
    import torch
    import torch.nn.functional as F

    images = np.asarray(images)
    scale = 1.0 / float(np.iinfo(images.dtype).max)
    unit = torch.from_numpy(images.astype(np.float32) * scale)[:, None]
    small = F.interpolate(
        unit,
        size=(THUMBNAIL_PX, THUMBNAIL_PX),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[:, 0].numpy()
    mean = small.mean(axis=(1, 2), keepdims=True)
    sd = small.std(axis=(1, 2), keepdims=True)
    return (small - mean) / (sd + 1e-6)


def refuse_held_out_copies(data: Packed, images: np.ndarray, where: str) -> None:
    """Refuse "synthetic" ``images`` (N, H, W) that are copies of held-out images of
    ``data``, however saved: resized, re-encoded, touched up, at another bit depth.

    A pair is a copy when its perceptual hashes lie within
    :data:`COPY_CANDIDATE_DISTANCE` bits and its thumbnails within
    :data:`COPY_THUMBNAIL_DISTANCE` (two tests, so distinct X-rays, which look alike
    at low resolution, are not taken for copies).

    Raises:
        HeldOutLeakError: naming the first copy and the image it copies.
    """
    held_out = held_out_rows(data)
    if len(held_out) == 0 or len(images) == 0:
        return
    held_hashes = _packed_pixel_hashes(data, held_out)
    pairs = near_pairs(pixel_hashes(images), held_hashes, COPY_CANDIDATE_DISTANCE)
    for index, position, distance in sorted(pairs):
        row = int(held_out[position])
        copy = thumbnails(np.asarray(images[index])[None])[0]
        original = thumbnails(np.asarray(data.images[row])[None])[0]
        difference = float(np.abs(copy - original).mean())
        if difference <= COPY_THUMBNAIL_DISTANCE:
            raise HeldOutLeakError(
                f"{where}: image {index} is a copy of {_describe(data, row)} of {data.path} "
                f"(perceptual hash {distance} of 64 bits away, thumbnails {difference:.3f} "
                "sd apart); images a classifier is chosen or judged on must never train it: "
                "give images drawn with `cxrlab gen sample`"
            )


def check_synthetic(
    data: Packed,
    source: str | Path,
    images: np.ndarray,
    *,
    unverified: bool = False,
    allow_mismatch: bool = False,
) -> list[str]:
    """Whether the synthetic ``images`` (N, H, W) of ``source`` may train a classifier on
    the train split of ``data``; returns the notes its outputs must carry.

    Refuses, in this order: a source without provenance (unless ``unverified``), one
    whose generator learned a held-out image of ``data`` (by id or content), one made
    from data preprocessed otherwise than ``data`` (unless ``allow_mismatch``), and any
    image that is a copy of a held-out image.

    Raises:
        DatasetError: :class:`HeldOutLeakError`, :class:`PreprocessingMismatchError`, or
            a source without provenance.
    """
    where = f"--synthetic {source}"
    provenance = read_provenance(source)
    notes: list[str] = []
    if not knows_learned(provenance):
        if not unverified:
            missing = (
                f"has no {PROVENANCE} saying which images its generator learned"
                if provenance is None
                else f"has a {PROVENANCE} that cannot say which images its generator learned "
                f"({provenance.get('why_unknown') or 'not recorded'})"
            )
            raise DatasetError(
                f"{where} {missing}, so it may hold validation or test images of --data: "
                "draw it with `cxrlab gen sample` from a run whose PACKED is readable, or "
                "pass --synthetic-unverified to accept it unverified (the run's report then "
                "says so)"
            )
        notes.append(
            f"synthetic images unverified (--synthetic-unverified): {source} has no "
            "provenance, so whether its generator learned validation or test images is not "
            "known; only copies of held-out images among the images themselves were refused"
        )
        learned_options = preprocessing_of(None, int(images.shape[-1]))
    else:
        refuse_learned_held_out(data, provenance, where)
        learned = provenance["learned"]
        learned_options = preprocessing_of(
            {"options": learned.get("options")}, int(images.shape[-1])
        )
        learned_options["size_px"] = int(images.shape[-1])  # what the classifier will get
    notes += check_preprocessing(
        learned_options,
        preprocessing_of(data.meta, int(data.images.shape[-1])),
        what=f"{where} (its generator's data) and --data {data.path}",
        allow_mismatch=allow_mismatch,
        fix="train the generator on a PACKED made with the options of --data and sample again",
    )
    refuse_held_out_copies(data, images, where)
    return notes
