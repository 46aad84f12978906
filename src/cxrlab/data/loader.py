"""torch Dataset and DataLoader over a packed dataset's memory map.

Batches are gathered with one fancy-indexing read of ``images.npy`` per batch
(``__getitems__``), so an epoch costs little more than copying the bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cxrlab.data.packed import Packed, note_touched, open_packed
from cxrlab.errors import CxrlabError

Normalize = Literal["generator", "unit", "imagenet", "xrv"]
NORMALIZATIONS = ("generator", "unit", "imagenet", "xrv")

#: ImageNet's RGB mean/std averaged over channels (a grey image repeated to 3 channels).
IMAGENET_GREY_MEAN = (0.485 + 0.456 + 0.406) / 3
IMAGENET_GREY_STD = (0.229 + 0.224 + 0.225) / 3


def normalize_batch(unit: torch.Tensor, normalize: Normalize) -> torch.Tensor:
    """Map images in [0, 1] to a model's input range.

    * ``generator``: [-1, 1] (tanh outputs of GANs);
    * ``unit``: [0, 1];
    * ``imagenet``: (x - mean) / std with ImageNet's channel statistics averaged for grey;
    * ``xrv``: torchxrayvision's convention, [-1024, 1024].
    """
    if normalize == "generator":
        return unit * 2.0 - 1.0
    if normalize == "unit":
        return unit
    if normalize == "imagenet":
        return (unit - IMAGENET_GREY_MEAN) / IMAGENET_GREY_STD
    if normalize == "xrv":
        return unit * 2048.0 - 1024.0
    raise CxrlabError(
        f"unknown normalization {normalize!r}; use one of {', '.join(NORMALIZATIONS)}"
    )


class PackedDataset(Dataset):
    """Images of a packed dataset as float tensors (1, H, W) with their covid label.

    Args:
        packed: a PACKED folder or an opened :class:`Packed`.
        split: keep only these split(s) (None: all rows).
        covid: keep only this label, 1 positive / 0 negative (None: both).
        normalize: output range, see :func:`normalize_batch`.

    Items are ``(image, covid)``; ``image`` is float32 (1, H, W).
    """

    def __init__(
        self,
        packed: str | Path | Packed,
        split: str | list[str] | None = None,
        covid: int | None = None,
        normalize: Normalize = "generator",
    ) -> None:
        if normalize not in NORMALIZATIONS:  # fail here, not at the first batch
            raise CxrlabError(
                f"normalize={normalize!r} is unknown; use one of {', '.join(NORMALIZATIONS)}"
            )
        self.packed = packed if isinstance(packed, Packed) else open_packed(packed)
        self.indices = self.packed.select(split, covid)
        if len(self.indices) == 0:
            raise CxrlabError(
                f"{self.packed.path}: no images with split={split!r} and covid={covid!r}"
            )
        self.labels = self.packed.manifest["covid"].to_numpy()[self.indices].astype(np.int64)
        self.normalize = normalize
        self.scale = 1.0 / self.packed.max_value

    def __len__(self) -> int:
        return len(self.indices)

    def _to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        unit = torch.from_numpy(pixels.astype(np.float32)) * self.scale
        return normalize_batch(unit, self.normalize)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = np.asarray(self.packed.images[self.indices[i]])
        return self._to_tensor(pixels)[None], int(self.labels[i])

    def __getitems__(self, positions: list[int]) -> list[tuple[torch.Tensor, int]]:
        # One sorted gather from the memory map, then back to the asked order.
        positions = np.asarray(positions)
        rows = self.indices[positions]
        order = np.argsort(rows, kind="stable")
        gathered = np.empty(
            (len(rows),) + self.packed.images.shape[1:], dtype=self.packed.images.dtype
        )
        gathered[order] = self.packed.images[rows[order]]
        note_touched(self.packed.images, gathered.nbytes)  # memory stays flat over an epoch
        images = self._to_tensor(gathered)[:, None]
        return list(zip(images, self.labels[positions].tolist(), strict=True))

    def all_images(self) -> torch.Tensor:
        """Every selected image as one (N, 1, H, W) float tensor."""
        return self._to_tensor(np.asarray(self.packed.images[self.indices]))[:, None]


def _collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([image for image, _ in batch])
    labels = torch.tensor([label for _, label in batch], dtype=torch.int64)
    return images, labels


def packed_loader(
    packed: str | Path | Packed,
    *,
    batch_size: int = 32,
    split: str | list[str] | None = None,
    covid: int | None = None,
    normalize: Normalize = "generator",
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of ``(images (B, 1, H, W) float32, covid (B,) int64)`` batches over PACKED."""
    dataset = PackedDataset(packed, split, covid, normalize)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_collate,
    )


class PackedTensor:
    """Rows of a PACKED's memory map seen as one (N, 1, S, S) float32 tensor in [-1, 1],
    gathered only when indexed: memory does not grow with N.

    ``tensor[index]`` (a 1-D integer tensor or array, repeats allowed, or a slice)
    gives exactly ``torch.from_numpy(images[rows] / max * 2 - 1)[:, None][index]`` with
    the whole array converted first, the arithmetic being per element and the same.
    ``.to(device)`` on a CUDA device uploads every row (a chunk at a time), so a GPU
    indexes its own memory; on the CPU it stays lazy.
    """

    #: rows converted at a time when uploading to a device
    CHUNK = 1024

    def __init__(self, images: np.ndarray, rows: np.ndarray) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.top = float(np.iinfo(images.dtype).max)
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), 1, *self.images.shape[1:])

    def _convert(self, pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / self.top * 2.0 - 1.0)[
            :, None
        ]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            wanted = self.rows[index]
        else:
            positions = index.cpu().numpy() if torch.is_tensor(index) else np.asarray(index)
            wanted = self.rows[positions.astype(np.int64)]
        order = np.argsort(wanted, kind="stable")  # one sorted read of the memory map
        pixels = np.empty((len(wanted),) + self.images.shape[1:], dtype=self.images.dtype)
        pixels[order] = self.images[wanted[order]]
        note_touched(self.images, pixels.nbytes)
        return self._convert(pixels).to(self.device)

    def to(self, device: torch.device | str) -> PackedTensor | torch.Tensor:
        """Lazy on the CPU; on another device every row, uploaded a chunk at a time."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        out = torch.empty(self.shape, dtype=torch.float32, device=device)
        for start in range(0, len(self.rows), self.CHUNK):
            out[start : start + self.CHUNK] = self[start : start + self.CHUNK].to(device)
        return out
