"""DCGAN+DiffAugment+EMA against ddpm and ldm for the same CPU time, on COVID-positive CXRs.

Prepares the ieee8023 dev data at 64 px (import, patient split with seed 0,
preprocess), then trains each model on the COVID-positive **train** images: the
recommended GAN for ``--dcgan-steps`` (2,000 by default), then each diffusion model
for the training time that took (its steps set from a short speed measurement; the
ldm spends half its time on the autoencoder), and compares each with the
held-out COVID-positive **validation** images, never the training ones: SWD (lower
is better), MS-SSIM between generated images beside the same for real ones (far
higher: collapse), and the memorization share (about 0.05 is what real held-out
images score; higher: copies of training images). Each model is then drawn again with two other
noise seeds and measured against the validation and, read only for this, the test
positives (``OUT/resampled.json``): how far the ranking holds. Grids of 64 generated images and
of the real validation images go to ``OUT/grids``; a markdown table is printed and
written to ``OUT/table.md``.

    OMP_NUM_THREADS=1 python scripts/diffusion_quality.py --out runs/diffusion-quality

Runs resume: running it again skips finished models (delete a run folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cxrlab.gen.config import GenConfig
from cxrlab.gen.trainer import GenTrainer, _fabric
from cxrlab.utils.fs import atomic_write_text
from quality_common import (
    METRICS,
    add_common_arguments,
    resampled_swd,
    start,
    table,
    train_and_measure,
)

#: Small diffusion networks: the budget is minutes of a shared CPU.
DIFFUSION_CPU = {"width": 32, "res_blocks": 1, "ema": 0.999}
GAN = "dcgan-diffaug-ema"
RUNS = {
    GAN: {
        "model": "dcgan",
        "diffaug": "translation,cutout,brightness,contrast",
        "ema": 0.999,
    },
    "ddpm": {"model": "ddpm", **DIFFUSION_CPU},
    "ldm": {"model": "ldm", **DIFFUSION_CPU},
}


def steps_per_second(config: GenConfig, warmup: int = 3, measured: int = 10) -> float:
    """Training speed of ``config``'s family, measured on a throwaway trainer."""
    trainer = GenTrainer(config, _fabric(config), progress=False)
    recipe = trainer.recipe
    if recipe.train_step is not None:

        def step():
            return recipe.train_step(trainer)
    else:
        step = trainer._vae_step if recipe.loss == "elbo" else trainer._adversarial_step
    for _ in range(warmup):
        step()
    began = time.perf_counter()
    for _ in range(measured):
        step()
    return measured / (time.perf_counter() - began)


def plan_steps(base: dict, settings: dict, seconds: float, work: Path) -> dict:
    """``steps`` (and the ldm's ``autoencoder_steps``) that fill ``seconds`` of training."""
    probe = {**base, "out": str(work / "probe"), "metrics": []}
    if settings["model"] != "ldm":
        rate = steps_per_second(GenConfig(**probe, **settings))
        return {"steps": max(10, int(seconds * rate))}
    autoencoder = steps_per_second(GenConfig(**probe, **{**settings, "autoencoder_steps": 10**6}))
    denoiser = steps_per_second(GenConfig(**probe, **{**settings, "autoencoder_steps": 0}))
    autoencoder_steps = max(10, int(seconds / 2 * autoencoder))
    return {
        "steps": autoencoder_steps + max(10, int(seconds / 2 * denoiser)),
        "autoencoder_steps": autoencoder_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--dcgan-steps", type=int, default=2000,
        help="the GAN's steps; its training time is each diffusion model's budget",
    )  # fmt: skip
    args = parser.parse_args()
    out: Path = args.out
    packed, n_real, summary = start(args)
    base = dict(
        data=str(packed), size_px=args.size, label="positive", split="train", device="cpu",
        batch_size=32, log_interval=10, metrics_n=args.n,
    )  # fmt: skip
    for name, settings in RUNS.items():
        if (args.only and name not in args.only) or name in summary.runs:
            continue
        if settings["model"] == "dcgan":
            plan = {"steps": args.dcgan_steps}
        elif GAN in summary.runs:
            plan = plan_steps(base, settings, summary.runs[GAN]["seconds"], out)
        else:
            raise SystemExit(f"{name}: its budget is {GAN}'s training time; run {GAN} first")
        # one grid and checkpoint at the end: a diffusion grid (64 images x 50 denoising
        # steps) costs minutes of CPU, which would count as training time
        config = GenConfig(
            **base, **settings, **plan, out=str(out / name), sample_interval=plan["steps"],
            save_interval=plan["steps"], metrics=METRICS,
        )  # fmt: skip
        print(f"{name}: {plan}", flush=True)
        summary.add(name, train_and_measure(config, out / "grids" / f"{name}.png"))
        print(name, summary.runs[name], flush=True)
    resampled = out / "resampled.json"
    redrawn = json.loads(resampled.read_text()) if resampled.is_file() else {}
    for name in RUNS:
        if args.only and name not in args.only:
            continue
        if name in summary.runs and name not in redrawn:
            config = GenConfig.read(out / name / "config.yaml")
            redrawn[name] = resampled_swd(config)
            atomic_write_text(resampled, json.dumps(redrawn, indent=2) + "\n")
        if name in redrawn:
            print(f"{name}: SWD with other seeds {redrawn[name]}", flush=True)
    text = table(
        summary.runs,
        f"COVID-positive train images of {args.dev_data.name} at {args.size} px; compared with "
        f"{n_real} held-out validation positives; {args.n} generated images each.",
    )
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
