"""Train every generative family on the COVID-positive train images and summarise quality.

For each run: wall time, the last sample grid's path, and the per-pixel standard
deviation across 64 generated images beside the same across 64 real ones (a
collapsed generator shows a far smaller value), plus mean MS-SSIM between random
pairs (collapse: far higher than real).

    python scripts/gen_quality.py --data P64 --out runs/quality --steps 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cxrlab.data.packed import open_packed
from cxrlab.gen.config import GenConfig
from cxrlab.gen.sample import generate_uint8, load_generator
from cxrlab.gen.trainer import train_generator
from cxrlab.metrics.diversity import mean_ms_ssim

RUNS = {
    "gan": {},
    "wgan": {},
    "wgan-gp": {},
    "cgan": {},
    "dcgan": {},
    "dcgan-diffaug": {
        "model": "dcgan",
        "diffaug": "translation,cutout,brightness,contrast",
        "ema": 0.999,
    },
    "vae": {},
}


def pixel_std(images: np.ndarray) -> float:
    """Mean over pixels of the standard deviation across images, in grey levels (0-255)."""
    return float(images.astype(np.float64).std(axis=0).mean())


def training_seconds(run: Path, fallback: float) -> float:
    """Training time over all resumes: the last ``seconds`` in metrics.csv (checkpointed)."""
    metrics = run / "metrics.csv"
    if not metrics.is_file():
        return fallback
    import pandas as pd

    table = pd.read_csv(metrics)
    return float(table["seconds"].dropna().iloc[-1]) if len(table) else fallback


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="PACKED at --size px with a train split")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="run names to do (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    packed = open_packed(args.data)
    rows = packed.select("train", 1)
    real = np.asarray(packed.images[rows[np.random.default_rng(0).permutation(len(rows))[:64]]])
    real_unit = torch.from_numpy(real.astype(np.float32) / 255.0)[:, None]
    summary = {
        "real": {"pixel_std": pixel_std(real), "ms_ssim": mean_ms_ssim(real_unit, n_pairs=500)}
    }
    print(
        f"real: pixel std {summary['real']['pixel_std']:.1f}, MS-SSIM {summary['real']['ms_ssim']:.3f}",
        flush=True,
    )
    for name, overrides in RUNS.items():
        if args.only and name not in args.only:
            continue
        settings = {"model": name, **overrides}
        run = out / name
        config = GenConfig(
            data=args.data, out=str(run), size_px=args.size, label="positive", steps=args.steps,
            sample_interval=200, save_interval=500, device="cpu", **settings,
        )  # fmt: skip
        began = time.perf_counter()
        train_generator(config, resume=True, progress=False)
        seconds = training_seconds(run, time.perf_counter() - began)
        loaded = load_generator(run, device="cpu")
        fake = generate_uint8(loaded, 64, label="positive" if loaded.conditional else None, seed=1)
        fake_unit = torch.from_numpy(fake.astype(np.float32) / 255.0)[:, None]
        summary[name] = {
            "seconds": round(seconds, 1),
            "steps_per_second": round(args.steps / seconds, 2),
            "pixel_std": round(pixel_std(fake), 2),
            "ms_ssim": round(mean_ms_ssim(fake_unit, n_pairs=500), 3),
            "last_grid": str(run / "samples" / f"step_{args.steps:06d}.png"),
        }
        print(name, json.dumps(summary[name]), flush=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
