"""One epoch of batches: a packed memory map vs decoding and resizing the source files.

Baseline: a torch Dataset that opens each file with PIL, converts to L, resizes to
64 px and returns a tensor, through a DataLoader with the same batch size and as
many worker processes as cores. Target: >= 50x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from common import Timer, dev_dataset, workdir
from cxrlab.data.loader import packed_loader
from cxrlab.data.manifest import read_manifest
from cxrlab.data.packed import preprocess_dataset
from cxrlab.preprocess.transforms import PreprocessOptions
from cxrlab.utils.parallel import default_workers

SIZE_PX, BATCH = 64, 32


class DecodeEachEpoch(Dataset):
    def __init__(self, paths: list[str], labels: list[int]) -> None:
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            pixels = np.asarray(image.convert("L").resize((SIZE_PX, SIZE_PX)), dtype=np.float32)
        return torch.from_numpy(pixels / 127.5 - 1.0)[None], self.labels[i]


def one_epoch(loader) -> int:
    seen = 0
    for images, _ in loader:
        seen += images.shape[0]
    return seen


def main() -> None:
    with workdir() as tmp:
        dataset, what = dev_dataset(Path(tmp))
        manifest = read_manifest(dataset)
        packed = Path(tmp) / "packed"
        preprocess_dataset(dataset, packed, PreprocessOptions(size_px=SIZE_PX), progress=False)
        workers = default_workers()
        baseline_loader = DataLoader(
            DecodeEachEpoch(manifest["path"].tolist(), manifest["covid"].tolist()),
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
        )
        ours_loader = packed_loader(packed, batch_size=BATCH, shuffle=True)
        one_epoch(ours_loader)  # the first touch maps the file: count steady-state epochs
        with Timer() as baseline:
            n_baseline = one_epoch(baseline_loader)
        with Timer() as ours:
            epochs = 20
            n_ours = sum(one_epoch(ours_loader) for _ in range(epochs))
        per_epoch = ours.seconds / epochs
        print(f"one epoch of {n_baseline} images at {SIZE_PX} px, batch {BATCH}, of the {what}")
        print(
            f"  baseline  decode + resize source files, DataLoader {workers} workers: {baseline.seconds:8.3f} s"
        )
        print(
            f"  cxrlab    packed memory map (mean of {epochs} epochs):              {per_epoch:8.4f} s"
        )
        print(f"  ratio     {baseline.seconds / per_epoch:.0f}x faster (target >= 50x)")
        assert n_ours == epochs * n_baseline


if __name__ == "__main__":
    main()
