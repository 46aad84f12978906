"""Metrics during `gen train`: the share of training time that swd,diversity take at the
default save interval (every 1,000 steps, 256 generated images), dcgan at 64 px, batch 32.

Measured here: seconds per training step (as in bench_gen.py) and seconds per metric
evaluation (``RunMetrics``, what ``gen train --metrics swd,diversity`` runs at each save),
the first one (reading the reference images) and a later one. The share over a run is
evaluation / (1,000 steps + evaluation), from these figures. ``gen train`` prints the
measured share of every run at its end. Target: at most 10%.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from bench_gen import steps_per_second
from common import dev_dataset, workdir
from cxrlab.data.api import split_dataset
from cxrlab.data.packed import preprocess_dataset
from cxrlab.gen.config import GenConfig
from cxrlab.gen.run_metrics import RunMetrics
from cxrlab.gen.trainer import GenTrainer, _fabric
from cxrlab.preprocess.transforms import PreprocessOptions

METRICS = ["swd", "diversity"]


def main() -> None:
    with workdir() as tmp:
        tmp = Path(tmp)
        dataset, what = dev_dataset(tmp)
        split_dataset(dataset, seed=0)
        packed = tmp / "P64"
        preprocess_dataset(dataset, packed, PreprocessOptions(size_px=64), progress=False)
        config = GenConfig(
            model="dcgan", data=str(packed), out=str(tmp / "run"), size_px=64, batch_size=32,
            device="cpu", label="positive", metrics=METRICS,
        )  # fmt: skip
        print(f"load average before: {os.getloadavg()[0]:.2f}; {what}")
        rate = steps_per_second(config)
        metrics = RunMetrics(config)
        generator = GenTrainer(config, _fabric(config), progress=False).generator
        seconds = []
        for step in (1, 2):
            began = time.perf_counter()
            with torch.random.fork_rng():
                metrics(generator, step)
            seconds.append(time.perf_counter() - began)
        training = config.save_interval / rate
        share = seconds[1] / (training + seconds[1])
        print(f"metrics {','.join(METRICS)} during gen train (dcgan, 64 px, batch 32, CPU)")
        print(
            f"  training   {rate:.2f} steps/s: {training:.0f} s per save interval ({config.save_interval} steps)"
        )
        print(
            f"  metrics    {seconds[1]:.2f} s per evaluation of {config.metrics_n} images (first {seconds[0]:.2f} s)"
        )
        print(f"  share      {100 * share:.1f}% of training time (target <= 10%)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
