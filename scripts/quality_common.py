"""What the quality scripts share: the dev data at 64 px, held-out measurement, grids, table.

Every comparison trains on the COVID-positive **train** images and measures against
the held-out COVID-positive **validation** images (never the training ones): SWD
(lower is better), MS-SSIM between generated images beside the same for real ones
(far higher: collapse), and the memorization share (about 0.05 is what real held-out
images score; higher: copies of training images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.packed import open_packed, preprocess_dataset
from cxrlab.data.show import image_grid, save_grid
from cxrlab.gen.config import GenConfig
from cxrlab.gen.run_metrics import RunMetrics
from cxrlab.gen.sample import LoadedGenerator, load_generator
from cxrlab.gen.sampling import generate, to_uint8
from cxrlab.gen.trainer import train_generator
from cxrlab.metrics.api import compute_metrics
from cxrlab.metrics.images import ImageSource
from cxrlab.preprocess.transforms import PreprocessOptions
from cxrlab.utils.fs import atomic_write_text

DEV_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ieee8023-2020-06"
METRICS = ["swd", "diversity", "memorization"]
#: The values followed over a run's checkpoints (``train_and_measure``).
CURVE = ("swd", "ms_ssim_fake", "memorization_share")


def prepare(dev_data: Path, work: Path, size_px: int) -> Path:
    """The PACKED of the dev data at ``size_px`` (made once, then reused): ieee8023
    imported, split by patient with seed 0, preprocessed."""
    packed = work / f"P{size_px}"
    if (packed / "manifest.csv").is_file():
        return packed
    dataset = work / "dataset"
    if not (dataset / "manifest.csv").is_file():
        import_source("ieee8023", dev_data, dataset, progress=False)
        split_dataset(dataset, seed=0)
    preprocess_dataset(dataset, packed, PreprocessOptions(size_px=size_px), progress=False)
    return packed


def write_grid(images: torch.Tensor, path: Path) -> Path:
    """64 images (N, 1, S, S) in [-1, 1] as an 8 x 8 PNG grid."""
    return save_grid(image_grid(to_uint8(images[:64]), columns=8), path)


def real_validation_grid(packed: Path, out: Path) -> int:
    """The held-out validation positives' grid (``out/grids/real_val.png``); their count."""
    real = open_packed(packed)
    rows = real.select("val", 1)
    images = np.asarray(real.images[rows], dtype=np.float32) / 127.5 - 1
    write_grid(torch.from_numpy(images)[:, None], out / "grids" / "real_val.png")
    return len(rows)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every comparison takes: the dev data, the output folder, the image
    size, the generated images per comparison and the runs to do."""
    parser.add_argument("--dev-data", type=Path, default=DEV_DATA, help="ieee8023-2020-06 folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=256, help="generated images per comparison")
    parser.add_argument("--only", nargs="*", help="run names to do (default: all)")


def start(args: argparse.Namespace) -> tuple[Path, int, Summary]:
    """The comparison's folder prepared: its PACKED, the number of held-out validation
    positives (their grid written) and the runs finished so far."""
    args.out.mkdir(parents=True, exist_ok=True)
    packed = prepare(args.dev_data, args.out, args.size)
    return packed, real_validation_grid(packed, args.out), Summary(args.out)


class Summary:
    """``OUT/summary.json``: one entry per finished run, so a rerun skips those."""

    def __init__(self, out: Path) -> None:
        self.path = out / "summary.json"
        self.runs: dict[str, dict] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {}
        )

    def add(self, name: str, values: dict) -> None:
        """Record a finished run (merged with what other processes recorded meanwhile)."""
        if self.path.is_file():
            self.runs = {**json.loads(self.path.read_text()), **self.runs}
        self.runs[name] = values
        atomic_write_text(self.path, json.dumps(self.runs, indent=2) + "\n")


def draw_positives(loaded: LoadedGenerator, n: int, seed: int) -> torch.Tensor:
    """``n`` COVID-positive images (n, 1, S, S) in [-1, 1] from ``loaded``, noise seeded
    with ``seed``."""
    return generate(
        loaded.generator,
        loaded.recipe,
        n,
        latent_dim=loaded.config.latent_dim,
        covid=1,
        generator=torch.Generator().manual_seed(seed),
        batch_size=64,
    )


def train_and_measure(config: GenConfig, grid: Path) -> dict:
    """Train (or resume) ``config``'s run, then measure its last generator on the
    held-out positives and write a grid of 64 positives drawn with seed 1. With a
    ``save_interval`` under ``steps``, every earlier checkpoint is measured too
    (``curve``: SWD, MS-SSIM and memorization share by step)."""
    result = train_generator(config, resume=True, progress=False)
    loaded = load_generator(config.out, device="cpu")
    measure = RunMetrics(config, loaded.recipe)
    values = measure(loaded.generator, result.step)
    curve = {}
    for step in range(config.save_interval, result.step, config.save_interval):
        earlier = measure(load_generator(config.out, step=step, device="cpu").generator, step)
        curve[step] = {k: round(earlier[k], 4) for k in CURVE if k in earlier}
    write_grid(draw_positives(loaded, 64, seed=1), grid)
    return {
        "steps": result.step,
        "seconds": round(result.seconds, 1),
        **{k: round(v, 4) for k, v in values.items()},
        **({"curve": curve} if curve else {}),
    }


def resampled_swd(config: GenConfig, seeds: tuple[int, ...] = (11, 12)) -> dict[str, list]:
    """SWD of ``config``'s last generator drawn again with other noise ``seeds``, against
    the validation positives and the test positives (read here only, to report how far
    a result holds beyond the images choices were made on): ``{split: [swd per seed]}``."""
    loaded = load_generator(config.out, device="cpu")
    references = {
        split: ImageSource(config.data, split=split, covid=1) for split in ("val", "test")
    }
    values: dict[str, list] = {split: [] for split in references}
    for seed in seeds:
        fake = draw_positives(loaded, config.metrics_n, seed)
        for split, real in references.items():
            swd = compute_metrics(real, fake, ["swd"], device="cpu", seed=config.seed)["swd"]
            values[split].append(round(float(swd), 1))
    return values


def table(summary: dict[str, dict], heading: str, settings: dict[str, str] | None = None) -> str:
    """The markdown table of every run in ``summary`` (``settings``: a column of words)."""
    settings = settings or {}
    extra = " settings |" if settings else ""
    lines = [
        heading,
        "",
        f"| run |{extra} steps | seconds | SWD (lower better) | MS-SSIM fake (real) | memorization share |",
        "| --- |" + (" --- |" if settings else "") + " ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, values in summary.items():
        column = f" {settings.get(name, '')} |" if settings else ""
        lines.append(
            f"| {name} |{column} {values['steps']} | {values['seconds']:.0f} | {values['swd']:.1f} | "
            f"{values['ms_ssim_fake']:.3f} ({values['ms_ssim_real']:.3f}) | "
            f"{values['memorization_share']:.2f} |"
        )
    return "\n".join(lines) + "\n"
