"""Shared set-up for benchmarks: the dev data (or the bundled sample) as a dataset."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from cxrlab.data.api import import_source

REPO = Path(__file__).resolve().parents[1]
IEEE8023 = (
    Path(os.environ.get("CXRLAB_SHARED_DATA", REPO.parent / "shared" / "data")) / "ieee8023-2020-06"
)


def dev_dataset(workdir: Path) -> tuple[Path, str]:
    """Import ../shared/data/ieee8023-2020-06 (or, without it, the bundled sample)."""
    out = workdir / "dataset"
    if (IEEE8023 / "metadata.csv").is_file():
        import_source("ieee8023", IEEE8023, out, progress=False)
        return out, f"ieee8023 dev data ({IEEE8023})"
    import_source("sample", None, out, progress=False)
    return out, "bundled sample (dev data not found: ratios are not comparable)"


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="cxrlab-bench-")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
