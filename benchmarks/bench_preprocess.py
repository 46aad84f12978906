"""Preprocess to 256 px: the whole `cxrlab data preprocess` command, cold, vs a naive loop.

Baseline: a naive one-process loop in this (already started) process: for each file,
PIL open -> convert("L") -> resize((256, 256)) -> collect.
cxrlab: a subprocess running ``python -m cxrlab data preprocess DATASET --size 256
--out P -q``, timed end to end (interpreter start, imports, worker threads, decoding,
writing), as a user feels it from the shell.
Two sizes: the dev dataset's rows, and 2,000 rows (the dev rows listed again under
distinct ids). Targets on a 2-core machine: >= 2x on the dev rows, >= 3x on 2,000.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common import REPO, Timer, dev_dataset, workdir
from cxrlab.data.manifest import read_manifest, write_manifest
from cxrlab.utils.parallel import default_workers

SIZE_PX = 256
MANY_ROWS = 2000


def naive(paths: list[str]) -> np.ndarray:
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("L").resize((SIZE_PX, SIZE_PX))))
    return np.stack(out)


def repeated_dataset(dataset: Path, out: Path, n_rows: int) -> Path:
    """A dataset folder whose manifest lists ``dataset``'s rows again and again, to
    ``n_rows`` rows, each copy with its own id."""
    rows = read_manifest(dataset)
    copies = []
    for copy in range(-(-n_rows // len(rows))):
        copy_rows = rows.copy()
        copy_rows["id"] = [f"{i}#copy{copy}" for i in rows["id"]]
        copies.append(copy_rows)

    out.mkdir(parents=True)
    write_manifest(out, pd.concat(copies, ignore_index=True).iloc[:n_rows])
    return out


def cxrlab_command(dataset: Path, out: Path) -> None:
    """The command as a user types it, in a fresh interpreter."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "cxrlab", "data", "preprocess", str(dataset)]
    command += ["--size", str(SIZE_PX), "--out", str(out), "-q", "--force"]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def compare(dataset: Path, out: Path, label: str, target: float) -> None:
    paths = read_manifest(dataset)["path"].tolist()
    with Timer() as baseline:
        naive_images = naive(paths)
    with Timer() as ours:
        cxrlab_command(dataset, out)
    packed = np.load(out / "images.npy", mmap_mode="r")
    assert naive_images.shape[0] == len(paths) == packed.shape[0]
    print(f"preprocess {len(paths)} images ({label}) to {SIZE_PX} px, {default_workers()} workers")
    print(
        f"  baseline  naive PIL loop (open, convert L, resize), 1 process:    {baseline.seconds:7.2f} s"
    )
    print(
        f"  cxrlab    `cxrlab data preprocess` from the shell, cold, whole:  {ours.seconds:7.2f} s"
    )
    print(f"  ratio     {baseline.seconds / ours.seconds:.2f}x faster (target >= {target:g}x)")


def main() -> None:
    with workdir() as tmp:
        tmp = Path(tmp)
        dataset, what = dev_dataset(tmp)
        naive(read_manifest(dataset)["path"].tolist())  # warm the page cache for both alike
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        compare(dataset, tmp / "packed", f"rows of the {what}", 2)
        many = repeated_dataset(dataset, tmp / "many", MANY_ROWS)
        compare(many, tmp / "packed-many", "the dev rows repeated under distinct ids", 3)
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
