"""The image sets that metrics compare: PACKED folders, image folders or tensors, one shape.

Whatever the source, an :class:`ImageSet` hands out float (B, 1, H, W) batches in
[0, 1]; the integer pixels stay stored until a batch is asked for.

Rules, explicit because they change the numbers:

* PACKED folder: its ``images.npy`` as preprocessed, divided by 255 (65535 when
  16-bit), rows chosen by split and label (:class:`ImageSource`);
* image folder: every ``.png .jpg .jpeg .bmp .tif .tiff .webp .dcm`` file below it,
  sorted by path, read by :func:`cxrlab.data.io.read_image` (greyscale, bright bone);
  files whose size differs from the first file's are stretched to it (bilinear,
  antialiased);
* tensor: (N, 1, H, W) or (N, H, W) float in [-1, 1] (the generators' tanh range),
  mapped by ``(x + 1) / 2`` and clamped; a uint8/uint16 array is taken as pixels;
* ``n``: a seeded random choice of ``n`` images (the same seed, the same images),
  kept in the source's order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrlab.data.io import read_image
from cxrlab.data.manifest import describe_splits
from cxrlab.data.packed import META, open_packed
from cxrlab.errors import CxrlabError
from cxrlab.utils.fs import sha256_file
from cxrlab.utils.parallel import parallel_imap

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm"}


@dataclass(frozen=True)
class ImageSource:
    """A PACKED folder or image folder, restricted to some rows.

    Attributes:
        path: the folder.
        split: PACKED only: keep these split(s) (None: all rows).
        covid: PACKED only: keep this label, 1 positive / 0 negative (None: both).
    """

    path: str | Path
    split: str | tuple[str, ...] | None = None
    covid: int | None = None


#: What the metrics API accepts for a set of images.
ImageInput = str | Path | ImageSource | torch.Tensor | np.ndarray


@dataclass
class ImageSet:
    """Images of one side of a comparison.

    Attributes:
        name: describes the set in messages and reports.
        pixels: (N, H, W) uint8/uint16 array (maybe a memory map), or (N, 1, H, W)
            float32 tensor in [0, 1].
        rows: the images of ``pixels`` in the set, increasing (None: all); read lazily.
        key: identifies content and selection for the reference cache; None when the
            set cannot be identified cheaply (tensors).
        ids: (len,) manifest ids for PACKED sets (to keep held-out and training apart).
    """

    name: str
    pixels: np.ndarray | torch.Tensor
    rows: np.ndarray | None = None
    key: str | None = None
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.pixels.shape[0]) if self.rows is None else len(self.rows)

    @property
    def size_px(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(int(s) for s in self.pixels.shape[-2:])

    def unit(self, positions: np.ndarray | slice | None = None) -> torch.Tensor:
        """Images at ``positions`` of the set (default all) as float32 (B, 1, H, W) in [0, 1]."""
        positions = slice(None) if positions is None else positions
        index = positions if self.rows is None else self.rows[positions]
        if isinstance(self.pixels, torch.Tensor):
            if isinstance(index, np.ndarray):
                index = torch.from_numpy(index)
            return self.pixels[index]
        chunk = np.asarray(self.pixels[index])
        scale = 1.0 / float(np.iinfo(chunk.dtype).max)
        return torch.from_numpy(chunk.astype(np.float32) * scale)[:, None]

    def batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        """Consecutive (B, 1, H, W) [0, 1] batches of every image."""
        for start in range(0, len(self), batch_size):
            yield self.unit(slice(start, start + batch_size))

    def resized(self, size_px: tuple[int, int], batch_size: int = 256) -> torch.Tensor:
        """Every image as float32 (N, 1, h, w) [0, 1], resized (bilinear, antialiased) if needed."""
        parts = [resize_unit(batch, size_px) for batch in self.batches(batch_size)]
        return torch.cat(parts) if parts else torch.zeros((0, 1, *size_px))

    def subset(self, positions: np.ndarray, suffix: str = "") -> ImageSet:
        """The images at increasing ``positions`` of this set, as a new set."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = positions if self.rows is None else self.rows[positions]
        key = None
        if self.key is not None:
            key = hashlib.sha256(f"{self.key}|{positions.tobytes().hex()}".encode()).hexdigest()
        ids = None if self.ids is None else self.ids[positions]
        return ImageSet(self.name + suffix, self.pixels, rows, key, ids)


def resize_unit(images: torch.Tensor, size_px: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, h, w), bilinear and antialiased; unchanged if already that size."""
    if tuple(images.shape[-2:]) == tuple(size_px):
        return images
    return F.interpolate(images, size=size_px, mode="bilinear", align_corners=False, antialias=True)


def choose(n_total: int, n: int | None, seed: int) -> np.ndarray | None:
    """Sorted seeded random choice of ``n`` of ``n_total`` rows; None when all are kept."""
    if n is None or n >= n_total:
        return None
    if n < 1:
        raise CxrlabError(f"--n must be at least 1, got {n}")
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def _packed_set(source: ImageSource) -> ImageSet:
    packed = open_packed(source.path)
    split = source.split
    rows = packed.select(list(split) if isinstance(split, tuple) else split, source.covid)
    if len(rows) == 0:
        raise CxrlabError(
            f"{packed.path}: no images with split={split!r} and covid={source.covid!r} "
            f"({describe_splits(packed.manifest)})"
        )
    # Content key: the rows and their order (manifest) and how the pixels were made (meta).
    digest = hashlib.sha256()
    digest.update((packed.path / "manifest.csv").read_bytes())
    meta = json.loads((packed.path / META).read_text())
    made = {k: meta.get(k) for k in ("options", "shape", "dtype", "cxrlab_version")}
    digest.update(json.dumps(made, sort_keys=True).encode())
    digest.update(rows.astype(np.int64).tobytes())
    ids = packed.manifest["id"].to_numpy()[rows]
    described = str(packed.path) + ("" if split is None else f" [{split}]")
    return ImageSet(described, packed.images, rows, digest.hexdigest(), ids)


def _read_grey(path: Path) -> np.ndarray:
    return read_image(path).pixels


def image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (by suffix), sorted by path."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _folder_set(folder: Path, progress: bool) -> ImageSet:
    files = image_files(folder)
    if not files:
        raise CxrlabError(
            f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and is not a "
            f"PACKED folder (no {META})"
        )
    decoded = list(parallel_imap(_read_grey, files, desc=f"reading {folder}", progress=progress))
    sixteen = any(p.dtype == np.uint16 for p in decoded)
    dtype = np.uint16 if sixteen else np.uint8
    height, width = decoded[0].shape
    pixels = np.empty((len(decoded), height, width), dtype=dtype)
    digest = hashlib.sha256()
    for index, (path, image) in enumerate(zip(files, decoded, strict=True)):
        digest.update(f"{path.relative_to(folder)}:{sha256_file(path)}\n".encode())
        if image.dtype != dtype:  # 8-bit among 16-bit: 255 -> 65535
            image = image.astype(np.uint16) * 257
        if image.shape != (height, width):
            unit = torch.from_numpy(image.astype(np.float32) / np.iinfo(dtype).max)[None, None]
            resized = resize_unit(unit, (height, width))[0, 0].clamp(0, 1).numpy()
            image = np.round(resized * np.iinfo(dtype).max).astype(dtype)
        pixels[index] = image
    return ImageSet(str(folder), pixels, key=digest.hexdigest())


def _tensor_set(images: torch.Tensor | np.ndarray, name: str) -> ImageSet:
    if isinstance(images, np.ndarray) and images.dtype in (np.uint8, np.uint16):
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3:
            raise CxrlabError(f"{name}: integer images must be (N, H, W), got {images.shape}")
        return ImageSet(name, images)
    tensor = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tensor.shape[1] != 1:
        raise CxrlabError(
            f"{name}: expected (N, 1, H, W) grey images in [-1, 1], got {tuple(tensor.shape)}"
        )
    if not torch.isfinite(tensor).all():
        raise CxrlabError(f"{name}: the images contain NaN or infinite values")
    return ImageSet(name, ((tensor + 1.0) / 2.0).clamp(0, 1))


def open_image_set(
    source: ImageInput,
    *,
    name: str = "images",
    n: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ImageSet:
    """Open any accepted image input as an :class:`ImageSet` (see the module doc for rules).

    Args:
        source: PACKED folder, image folder (path or :class:`ImageSource`), or a tensor.
        name: used for tensors in messages.
        n: keep a seeded random choice of at most ``n`` images.
        seed: seed of that choice.
        progress: progress bar while reading an image folder.
    """
    if isinstance(source, torch.Tensor | np.ndarray):
        image_set = _tensor_set(source, name)
    else:
        if not isinstance(source, ImageSource):
            source = ImageSource(source)
        path = Path(source.path)
        if (path / META).is_file():
            image_set = _packed_set(source)
        elif path.is_dir():
            if source.split is not None or source.covid is not None:
                raise CxrlabError(f"{path}: split and label choices need a PACKED folder")
            image_set = _folder_set(path, progress)
        else:
            raise CxrlabError(
                f"{path} is neither a PACKED folder nor a folder of images"
                + ("" if path.exists() else " (it does not exist)")
            )
    if len(image_set) == 0:
        raise CxrlabError(f"{image_set.name}: no images")
    rows = choose(len(image_set), n, seed)
    return image_set if rows is None else image_set.subset(rows, suffix=f" (n={n})")
