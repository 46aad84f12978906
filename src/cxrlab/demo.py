"""``cxrlab demo``: the main job on the bundled sample, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.stats import format_stats, write_stats


def run_demo(out: str | Path, *, progress: bool = True) -> Iterator[str]:
    """Run the demo pipeline into ``out``, yielding lines to print as it goes."""
    out = Path(out)
    dataset = out / "dataset"
    yield "1/3 importing the bundled sample (real ieee8023 CXRs, redistributable licences)"
    yield import_source("sample", None, dataset, progress=progress).summary()
    yield "2/3 splitting by patient 60/20/20, seed 0"
    yield split_dataset(dataset, (0.6, 0.2, 0.2), seed=0).summary()
    yield "3/3 dataset statistics"
    yield format_stats(write_stats(dataset, out / "stats"))
    yield f"done: dataset in {dataset}, figures in {out / 'stats'}"
