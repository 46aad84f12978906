"""``cxrlab demo``: the main job on the bundled sample, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.augmented import augment_packed
from cxrlab.data.packed import preprocess_dataset
from cxrlab.data.show import show_packed
from cxrlab.data.stats import format_stats, write_stats
from cxrlab.preprocess.transforms import PreprocessOptions


def run_demo(out: str | Path, *, progress: bool = True) -> Iterator[str]:
    """Run the demo pipeline into ``out``, yielding lines to print as it goes."""
    out = Path(out)
    dataset = out / "dataset"
    yield "1/5 importing the bundled sample (real ieee8023 CXRs, redistributable licences)"
    yield import_source("sample", None, dataset, progress=progress).summary()
    yield "2/5 splitting by patient 60/20/20, seed 0"
    yield split_dataset(dataset, (0.6, 0.2, 0.2), seed=0).summary()
    yield "3/5 dataset statistics"
    yield format_stats(write_stats(dataset, out / "stats"))
    yield "4/5 preprocessing to 64 px with CLAHE, packing"
    packed = out / "packed-64-clahe"
    yield preprocess_dataset(
        dataset, packed, PreprocessOptions(size_px=64, equalize="clahe"), progress=progress
    ).summary()
    yield "5/5 offline augmentation (thesis' mild preset, 10 per train image) and grids"
    augmented = out / "packed-64-clahe-mild"
    yield augment_packed(
        packed, augmented, preset="mild", per_image=10, progress=progress
    ).summary()
    grids = [
        show_packed(packed, out / "grid.png", n=64),
        show_packed(packed, out / "grid-mild.png", n=16, augment="mild", split="train"),
    ]
    yield f"done: dataset {dataset}, figures {out / 'stats'}, grids {', '.join(map(str, grids))}"
