"""The thesis' generative families, faithful and with recommended settings, on held-out images.

Prepares the ieee8023 dev data at 64 px (import, patient split with seed 0,
preprocess), trains each run on the COVID-positive **train** images (cgan: on both
classes, conditioned) for ``--steps`` (the thesis trained 10,000), and compares its
last generator with the held-out COVID-positive **validation** images: SWD, MS-SSIM
diversity beside the real images', memorization share (see ``quality_common``).
Grids of 64 generated positives go to ``OUT/grids``; a markdown table is printed and
written to ``OUT/table.md``.

Two sets of runs:

* ``faithful``: each family as the thesis trained it (cxrlab's defaults);
* ``recommended``: the same architectures with settings chosen by this script's
  ``--set candidates`` runs (gan, 3,000 steps, held-out SWD), among options cxrlab
  already has: EMA of the generator, DiffAugment, spectral norm, hinge loss. EMA
  (0.999) gave nearly all of the gain (SWD 126.6 -> 102.6, MS-SSIM 0.21 -> 0.40 beside
  the real 0.44); spectral norm and the hinge loss moved SWD by 2-3% more, within what
  one seed can tell, for 20% more time; DiffAugment made the MLP families worse (117.7).
  So EMA for every thesis GAN, and dcgan keeps DiffAugment (its own 2,000-step
  finding, see the README); the VAE, which learns as it is, keeps its settings. At
  10,000 steps cgan with EMA alone still drew frames of noise and scored worse than
  the thesis' settings (``cgan+ema``); with spectral norm in its discriminator too it
  learned, so cgan's recommended settings add ``--spectral-norm``.

    python scripts/gen_quality.py --out runs/families --set faithful recommended --steps 10000

Runs resume: running it again skips finished runs (delete a run folder to redo it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrlab.gen.config import GenConfig
from quality_common import (
    METRICS,
    add_common_arguments,
    start,
    table,
    train_and_measure,
)

DIFFAUG = "translation,cutout,brightness,contrast"
#: cgan learns both classes (conditioned); the others learn positives only.
CGAN = {"model": "cgan", "label": None}

FAITHFUL = {
    "gan": {"model": "gan"},
    "cgan": CGAN,
    "wgan": {"model": "wgan"},
    "wgan-gp": {"model": "wgan-gp"},
    "dcgan": {"model": "dcgan"},
    "vae": {"model": "vae"},
}

#: What was tried, on gan at a short budget, to choose the recommended settings.
CANDIDATES = {
    "gan+ema": {"model": "gan", "ema": 0.999},
    "gan+ema+sn": {"model": "gan", "ema": 0.999, "spectral_norm": True},
    "gan+ema+diffaug": {"model": "gan", "ema": 0.999, "diffaug": DIFFAUG},
    "gan+ema+sn+diffaug": {"model": "gan", "ema": 0.999, "spectral_norm": True, "diffaug": DIFFAUG},
    "gan+hinge+sn+ema": {"model": "gan", "ema": 0.999, "spectral_norm": True, "loss": "hinge"},
    # cgan at 10,000 steps: EMA alone kept its frames of noise (and its SWD rose)
    "cgan+ema": {**CGAN, "ema": 0.999},
    # the VAE at 10,000 steps copies its training images: when does it start to?
    "vae-curve": {"model": "vae", "steps": 4000, "save_interval": 1000},
}

RECOMMENDED = {
    "gan-rec": {"model": "gan", "ema": 0.999},
    "cgan-rec": {**CGAN, "ema": 0.999, "spectral_norm": True},
    "wgan-rec": {"model": "wgan", "ema": 0.999},
    "wgan-gp-rec": {"model": "wgan-gp", "ema": 0.999},
    "dcgan-rec": {"model": "dcgan", "ema": 0.999, "diffaug": DIFFAUG},
}

SETS = {"faithful": FAITHFUL, "candidates": CANDIDATES, "recommended": RECOMMENDED}


def describe(settings: dict) -> str:
    """The settings beyond the family's defaults, as command-line options."""
    words = []
    for key, value in settings.items():
        if key in ("model", "label"):
            continue
        option = "--" + key.replace("_", "-")
        words.append(option if value is True else f"{option} {value}")
    return "`" + " ".join(words) + "`" if words else "thesis defaults"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser)
    parser.add_argument("--set", nargs="+", choices=sorted(SETS), default=["faithful"])
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    out: Path = args.out
    packed, n_real, summary = start(args)
    runs = {name: settings for chosen in args.set for name, settings in SETS[chosen].items()}
    base = dict(
        data=str(packed), size_px=args.size, label="positive", split="train", device="cpu",
        batch_size=32, log_interval=50, sample_interval=1000, save_interval=args.steps,
        metrics_n=args.n, steps=args.steps,
    )  # fmt: skip
    for name, settings in runs.items():
        if (args.only and name not in args.only) or name in summary.runs:
            continue
        config = GenConfig(**{**base, **settings}, out=str(out / name), metrics=METRICS)
        print(f"{name}: {describe(settings)}, {config.steps} steps", flush=True)
        summary.add(name, train_and_measure(config, out / "grids" / f"{name}.png"))
        print(name, summary.runs[name], flush=True)
    described = {name: describe(settings) for name, settings in runs.items()}
    done = {name: summary.runs[name] for name in runs if name in summary.runs}
    text = table(
        done,
        f"Trained on the COVID-positive train images of {args.dev_data.name} at {args.size} px; "
        f"compared with {n_real} held-out validation positives; {args.n} generated images each.",
        described,
    )
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
