"""Training speed of every generative family at 64 px, batch 32, on this machine's CPU.

Side by side with the thesis' table 4.5 (cloud GPUs, 10,000 steps). The projected
time for 10,000 steps is measured steps/s extrapolated; the ratio is
thesis seconds / our projected seconds (> 1: faster than the thesis' GPU runs).
gan and dcgan have no table 4.5 entry at 64 px; gan is compared with cgan's figure.
Targets (issue #14): gan, cgan, wgan and wgan-gp at least 1.5x faster than the thesis
on this 2-core CPU, dcgan at least 1.5x faster than the baseline.
The ``dcgan bf16`` row trains under ``--precision bf16`` (bf16 autocast on the CPU,
which has bf16 units here: AVX512-BF16) against the same float32 baseline.

Baseline: ``GenTrainer(speedups=False)``, the CPU code path before issue #14
(``nn.Dropout``, contiguous convolutions, per-tensor Adam/RMSprop loops, clipping one
tensor at a time), same models, losses and optimisers. Each family's baseline and
current trainers take turns, one step each, in the same process, so a change of load
on this shared machine hits both alike; "speedup" is the baseline's total time over
the current one's. The load average is printed before and after.

Diffusion rows (no thesis figure): training steps/s of ddpm and of both ldm phases
(autoencoder, latent denoiser) with the CPU-sized networks of
scripts/diffusion_quality.py (UNet width 32, one residual block per level; the
default width 64 with two blocks is about 5.6x slower per forward pass here), and
the seconds to draw the thesis' 312 synthetic images with DDIM in 50 steps (``gen
sample``'s default), projected from one timed batch of 64 (sampling time grows
linearly with the number of batches), beside the dcgan generator's time for 312.
``--diffusion`` runs only those rows, ``--no-diffusion`` leaves them out.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import dev_dataset
from cxrlab.data.api import split_dataset
from cxrlab.data.packed import preprocess_dataset
from cxrlab.gen.config import GenConfig
from cxrlab.gen.sampling import SamplingOptions, generate
from cxrlab.gen.trainer import GenTrainer, _fabric
from cxrlab.preprocess.transforms import PreprocessOptions

#: Thesis table 4.5, seconds for 10,000 steps at 64 px (cloud GPUs).
THESIS_64PX = {"wgan": 2687.0, "wgan-gp": 5913.0, "cgan": 2221.0}
COMPARE_WITH = {"gan": "cgan"}
MODELS = ["gan", "cgan", "wgan", "wgan-gp", "dcgan", "vae"]
#: Rows with options beyond the family's defaults: row name -> (family, options).
OPTION_ROWS = {"dcgan bf16": ("dcgan", {"precision": "bf16"})}
WARMUP, MEASURED = 5, 40


CPU_SIZED = {"width": 32, "res_blocks": 1}
DIFFUSION = {  # row name -> settings; ldm-autoencoder stays in its first phase
    "ddpm": {"model": "ddpm", **CPU_SIZED},
    "ldm-autoencoder": {"model": "ldm", "autoencoder_steps": 10_000, **CPU_SIZED},
    "ldm-denoiser": {"model": "ldm", "autoencoder_steps": 0, **CPU_SIZED},
}
SYNTHETIC_IMAGES, TIMED_IMAGES, DDIM_STEPS = 312, 64, 50


def make_trainer(config: GenConfig, speedups: bool = True) -> GenTrainer:
    return GenTrainer(config, _fabric(config), progress=False, speedups=speedups)


def side_by_side(config: GenConfig) -> tuple[float, float]:
    """Steps/s of the current trainer and of the baseline (``speedups=False``, float32),
    one step of each in turn."""
    baseline = GenConfig.from_dict({**config.as_dict(), "precision": "auto"})
    trainers = [make_trainer(config), make_trainer(baseline, speedups=False)]
    seconds = [0.0, 0.0]
    for measured in (False, True):
        for _ in range(MEASURED if measured else WARMUP):
            for arm, trainer in enumerate(trainers):
                began = time.perf_counter()
                losses = trainer.train_step()
                float(next(iter(losses.values())))  # wait for the step's work
                if measured:
                    seconds[arm] += time.perf_counter() - began
    return MEASURED / seconds[0], MEASURED / seconds[1]


def steps_per_second(config: GenConfig, trainer: GenTrainer | None = None) -> float:
    trainer = trainer or make_trainer(config)
    step = trainer.train_step
    for _ in range(WARMUP):
        step()
    began = time.perf_counter()
    last = None
    for _ in range(MEASURED):
        last = step()
    float(next(iter(last.values())))  # wait for the last step's work
    return MEASURED / (time.perf_counter() - began)


def sampling_seconds(trainer: GenTrainer, n: int = SYNTHETIC_IMAGES) -> float:
    """Seconds to draw ``n`` COVID-positive images in batches of 64 (DDIM, 50 steps for
    diffusion), projected to 312 images."""
    options = SamplingOptions(sampler="ddim", steps=DDIM_STEPS, guidance=0.0)
    began = time.perf_counter()
    generate(
        trainer.sampler(),
        trainer.recipe,
        n,
        latent_dim=trainer.config.latent_dim,
        covid=1,
        options=options,
        batch_size=TIMED_IMAGES,
    )
    return (time.perf_counter() - began) * SYNTHETIC_IMAGES / n


def diffusion_rows(packed: Path, tmp: Path) -> None:
    print(
        f"diffusion at 64 px, batch 32, UNet width 32, CPU ({torch.get_num_threads()} threads); "
        f"{SYNTHETIC_IMAGES} images with DDIM {DDIM_STEPS} steps, projected from {TIMED_IMAGES}"
    )
    print(f"{'model':16s} {'steps/s':>8s} {'10k steps (s)':>14s} {'312 images (s)':>15s}")
    common = {"data": str(packed), "size_px": 64, "batch_size": 32, "device": "cpu"}
    dcgan = make_trainer(GenConfig(out=str(tmp / "dcgan-sampling"), model="dcgan", **common))
    print(f"{'dcgan':16s} {'':>8s} {'':>14s} {sampling_seconds(dcgan):15.2f}  (one pass)")
    for name, settings in DIFFUSION.items():
        config = GenConfig(out=str(tmp / name), **common, **settings)
        trainer = make_trainer(config)
        rate = steps_per_second(config, trainer)
        seconds = (
            "" if name == "ldm-autoencoder" else f"{sampling_seconds(trainer, TIMED_IMAGES):15.1f}"
        )
        print(f"{name:16s} {rate:8.2f} {10_000 / rate:14.0f} {seconds:>15s}", flush=True)
        assert np.isfinite(rate)


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="cxrlab-bench-") as tmp:
        dataset, what = dev_dataset(Path(tmp))
        split_dataset(dataset, seed=0)
        packed = Path(tmp) / "P64"
        preprocess_dataset(dataset, packed, PreprocessOptions(size_px=64), progress=False)
        if "--diffusion" in sys.argv:
            diffusion_rows(packed, Path(tmp))
            return
        print(
            f"gen training speed at 64 px, batch 32, CPU ({torch.get_num_threads()} threads), {what}"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(
            f"{'model':10s} {'steps/s':>8s} {'10k steps (s)':>14s} {'thesis 10k (s)':>15s} "
            f"{'ratio':>7s} {'baseline 10k (s)':>17s} {'speedup':>8s}"
        )
        rows = {name: (name, {}) for name in MODELS} | OPTION_ROWS
        for name, (model, options) in rows.items():
            config = GenConfig(
                **options,
                model=model,
                data=str(packed),
                out=str(Path(tmp) / name.replace(" ", "-")),
                size_px=64,
                batch_size=32,
                device="cpu",
                label="positive",
            )
            rate, baseline_rate = side_by_side(config)
            projected, baseline = 10_000 / rate, 10_000 / baseline_rate
            reference = THESIS_64PX.get(COMPARE_WITH.get(name, name))
            ratio = f"{reference / projected:6.2f}x" if reference else "    n/a"
            thesis = f"{reference:15.0f}" if reference else f"{'-':>15s}"
            note = f"  (thesis: {COMPARE_WITH[name]}'s)" if name in COMPARE_WITH else ""
            print(
                f"{name:10s} {rate:8.2f} {projected:14.0f} {thesis} {ratio} {baseline:17.0f} "
                f"{baseline / projected:7.2f}x{note}",
                flush=True,
            )
        assert np.isfinite(rate)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if "--no-diffusion" not in sys.argv:
            diffusion_rows(packed, Path(tmp))


if __name__ == "__main__":
    main()
