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


def demo_workers(device: str = "auto") -> int:
    """Cells the demo runs at once: 2 on a CPU of two or more cores, each worker with
    half of them, else 1. The demo's cells are small (a 64 px MLP GAN, a small CNN on a
    few hundred images) and mostly independent: two of them side by side, one thread
    each, keep both cores busy, where one cell's two threads spend much of their time
    waiting for each other. On a GPU the cells run one after another on it."""
    from cxrlab.study.executor import cores

    if device.startswith("cuda"):
        return 1
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return min(2, cores())


def run_demo(
    out: str | Path,
    *,
    progress: bool = True,
    device: str = "auto",
    log: Callable[[str], None] = print,
    workers: int | None = None,
) -> Path:
    """Run the demo study into ``out``; return the report's path.

    Args:
        out: the study folder.
        progress: progress bars (cells run in this process only).
        device: auto, cpu or cuda for every cell.
        log: where the plan and progress lines go.
        workers: cells run at the same time (None: :func:`demo_workers`).
    """
    began = time.perf_counter()
    spec = bundled_specs()["demo"]
    workers = demo_workers(device) if workers is None else workers
    log(
        f"demo study {spec} -> {out}, {workers} cell(s) at a time "
        "(rerun to continue after an interruption)"
    )
    result = run_study(spec, out, device=device, progress=progress, log=log, workers=workers)
    log(result.summary())
    report = write_report(out)
    log(f"demo finished in {time.perf_counter() - began:.0f} s")
    return report
