"""``cxrlab demo``: the main job on the bundled sample, end to end.

Runs the bundled ``studies/demo.yaml`` (import -> split by patient -> stats ->
preprocessing variants -> a GAN with an EMA of its weights per variant, checked for
collapse and memorization -> synthetic images and their oversampled control ->
classifiers with and without augmentation and synthetic data, two seeds each) and
writes the HTML report. Rerunning continues where an interrupted demo stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cxrlab.study.bundled import bundled_specs
from cxrlab.study.report import write_report
from cxrlab.study.runner import run_study


def run_demo(
    out: str | Path,
    *,
    progress: bool = True,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> Path:
    """Run the demo study into ``out``; return the report's path."""
    began = time.perf_counter()
    spec = bundled_specs()["demo"]
    log(f"demo study {spec} -> {out} (rerun to continue after an interruption)")
    result = run_study(spec, out, device=device, progress=progress, log=log)
    log(result.summary())
    report = write_report(out)
    log(f"demo finished in {time.perf_counter() - began:.0f} s")
    return report
