"""DCGAN+DiffAugment+EMA against ddpm and ldm for the same CPU time, on COVID-positive CXRs.

Prepares the ieee8023 dev data at 64 px (import, patient split with seed 0,
preprocess), then trains each model on the COVID-positive **train** images for
about ``--minutes`` of training time (steps are set from a short speed measurement;
the ldm spends half its time on the autoencoder), and compares each with the
held-out COVID-positive **validation** images, never the training ones: SWD (lower
is better), MS-SSIM between generated images beside the same for real ones (far
higher: collapse), and the memorization share (about 0.05 is what real held-out
images score; higher: copies of training images). Grids of 64 generated images and
of the real validation images go to ``OUT/grids``; a markdown table is printed and
written to ``OUT/table.md``.

    python scripts/diffusion_quality.py --out runs/diffusion-quality --minutes 10

Runs resume: running it again skips finished models (delete a run folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.packed import open_packed, preprocess_dataset
from cxrlab.data.show import image_grid, save_grid
from cxrlab.gen.config import GenConfig
from cxrlab.gen.run_metrics import RunMetrics
from cxrlab.gen.sample import load_generator
from cxrlab.gen.sampling import generate, to_uint8
from cxrlab.gen.trainer import GenTrainer, _fabric, train_generator
from cxrlab.preprocess.transforms import PreprocessOptions

DEV_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ieee8023-2020-06"
METRICS = ["swd", "diversity", "memorization"]
#: Small diffusion networks: the budget is minutes of a shared CPU.
DIFFUSION_CPU = {"width": 32, "res_blocks": 1, "ema": 0.999}
RUNS = {
    "dcgan-diffaug-ema": {
        "model": "dcgan",
        "diffaug": "translation,cutout,brightness,contrast",
        "ema": 0.999,
    },
    "ddpm": {"model": "ddpm", **DIFFUSION_CPU},
    "ldm": {"model": "ldm", **DIFFUSION_CPU},
}


def prepare(dev_data: Path, work: Path, size_px: int) -> Path:
    """The PACKED of the dev data at ``size_px`` (made once, then reused)."""
    packed = work / f"P{size_px}"
    if (packed / "manifest.csv").is_file():
        return packed
    dataset = work / "dataset"
    if not (dataset / "manifest.csv").is_file():
        import_source("ieee8023", dev_data, dataset, progress=False)
        split_dataset(dataset, seed=0)
    preprocess_dataset(dataset, packed, PreprocessOptions(size_px=size_px), progress=False)
    return packed


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


def write_grid(images: torch.Tensor, path: Path) -> Path:
    """64 images (N, 1, S, S) in [-1, 1] as an 8 x 8 PNG grid."""
    return save_grid(image_grid(to_uint8(images[:64]), columns=8), path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev-data", type=Path, default=DEV_DATA, help="ieee8023-2020-06 folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per model")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=256, help="generated images per comparison")
    parser.add_argument("--only", nargs="*", help="run names to do (default: all)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    packed = prepare(args.dev_data, out, args.size)
    real = open_packed(packed)
    rows = real.select("val", 1)
    real_val = torch.from_numpy(np.asarray(real.images[rows], dtype=np.float32) / 127.5 - 1)[
        :, None
    ]
    write_grid(real_val, out / "grids" / "real_val.png")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    base = dict(
        data=str(packed), size_px=args.size, label="positive", split="train", device="cpu",
        batch_size=32, log_interval=10, metrics_n=args.n,
    )  # fmt: skip
    for name, settings in RUNS.items():
        if (args.only and name not in args.only) or name in summary:
            continue
        run = out / name
        plan = plan_steps(base, settings, args.minutes * 60, out)
        # one grid and checkpoint at the end: a diffusion grid (64 images x 50 denoising
        # steps) costs minutes of CPU, which would count as training time
        config = GenConfig(
            **base, **settings, **plan, out=str(run), sample_interval=plan["steps"],
            save_interval=plan["steps"], metrics=METRICS,
        )  # fmt: skip
        print(f"{name}: {plan}", flush=True)
        result = train_generator(config, resume=True, progress=False)
        loaded = load_generator(run, device="cpu")
        values = RunMetrics(config, loaded.recipe)(loaded.generator, result.step)
        fake = generate(
            loaded.generator,
            loaded.recipe,
            64,
            latent_dim=config.latent_dim,
            covid=1,
            generator=torch.Generator().manual_seed(1),
        )
        write_grid(fake, out / "grids" / f"{name}.png")
        summary[name] = {
            "steps": result.step,
            "seconds": round(result.seconds, 1),
            **{k: round(v, 4) for k, v in values.items()},
        }
        print(name, json.dumps(summary[name]), flush=True)
        summary_path.write_text(json.dumps(summary, indent=2))
    table = [
        f"COVID-positive train images of {args.dev_data.name} at {args.size} px; compared with "
        f"{len(rows)} held-out validation positives; {args.n} generated images each.",
        "",
        "| model | steps | seconds | SWD (lower better) | MS-SSIM fake (real) | memorization share |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, values in summary.items():
        table.append(
            f"| {name} | {values['steps']} | {values['seconds']:.0f} | {values['swd']:.1f} | "
            f"{values['ms_ssim_fake']:.3f} ({values['ms_ssim_real']:.3f}) | "
            f"{values['memorization_share']:.2f} |"
        )
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
