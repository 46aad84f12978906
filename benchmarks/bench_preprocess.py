"""Preprocess to 256 px: cxrlab (parallel, JPEG draft decoding) vs a naive one-process loop.

Baseline: for each file, PIL open -> convert("L") -> resize((256, 256)) -> collect.
Target: >= 3x on a 2-core machine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from common import Timer, dev_dataset, workdir
from cxrlab.data.manifest import read_manifest
from cxrlab.data.packed import preprocess_dataset
from cxrlab.preprocess.transforms import PreprocessOptions
from cxrlab.utils.parallel import default_workers

SIZE_PX = 256


def naive(paths: list[str]) -> np.ndarray:
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("L").resize((SIZE_PX, SIZE_PX))))
    return np.stack(out)


def main() -> None:
    with workdir() as tmp:
        from pathlib import Path

        dataset, what = dev_dataset(Path(tmp))
        paths = read_manifest(dataset)["path"].tolist()
        naive(paths[:5])  # warm the page cache for both contenders alike
        with Timer() as baseline:
            naive_images = naive(paths)
        with Timer() as ours:
            preprocess_dataset(
                dataset,
                Path(tmp) / "packed",
                PreprocessOptions(size_px=SIZE_PX),
                progress=False,
                force=True,
            )
        print(
            f"preprocess {len(paths)} images of the {what} to {SIZE_PX} px, {default_workers()} workers"
        )
        print(
            f"  baseline  naive PIL loop (open, convert L, resize), 1 process: {baseline.seconds:7.2f} s"
        )
        print(
            f"  cxrlab    data preprocess (parallel, JPEG draft, area resize):  {ours.seconds:7.2f} s"
        )
        print(f"  ratio     {baseline.seconds / ours.seconds:.1f}x faster (target >= 3x)")
        assert naive_images.shape == (len(paths), SIZE_PX, SIZE_PX)


if __name__ == "__main__":
    main()
