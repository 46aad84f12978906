"""One-shot GPU check (``make gpu-check``): every figure a lent GPU's few minutes should give.

On one CUDA device, in well under 8 minutes: the training speed of every generative
family at 64 and 256 px (batch 32, bf16 autocast and channels_last through the
trainer's Fabric setup) beside the thesis' table 4.5 GPU times with the ratio, a
classifier epoch (ResNet-18 at 224 px), sampling 312 images, and with two or more GPUs
a 2-process DDP step. Synthetic blob images stand in for real ones (speed does not
depend on content), so the check needs no data on the machine.

``--dry`` runs the same code on the CPU at 32 px for a couple of steps (what CI runs, so
the check never rots). Any error, a CUDA one above all, is printed and makes the exit
code 1; ``--out FILE`` writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

#: Thesis table 4.5 (cloud GPUs, regular dataset): seconds for 10,000 steps of batch 32.
THESIS_SECONDS = {
    ("wgan-gp", 64): 5913.0,
    ("wgan", 64): 2687.0,
    ("cgan", 64): 2221.0,
    ("wgan-gp", 256): 6000.0,
    ("wgan", 256): 9042.0,
    ("cgan", 256): 818.0,
    ("dcgan", 256): 8967.0,  # listed as "drgan" in the thesis' table
}
TARGET_RATIO = 20.0


def make_packed(path: Path, size_px: int, n: int = 256, seed: int = 0) -> Path:
    """A PACKED of ``n`` blurred-blob images (half COVID-positive, 3/4 train, 1/4 val)."""
    import pandas as pd

    from cxrlab.data.manifest import MANIFEST_COLUMNS, dataframe_to_csv_text
    from cxrlab.data.packed import IMAGES, META, PACKED_FORMAT, PACKED_FORMAT_VERSION

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size_px, 0:size_px] / size_px
    centres = rng.uniform(0.3, 0.7, (n, 2))
    images = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 0.05)
    path.mkdir(parents=True)
    np.save(path / IMAGES, np.round(255 * images).astype(np.uint8))
    rows = []
    for i in range(n):
        row = dict.fromkeys(MANIFEST_COLUMNS, "")
        row.update(
            id=f"blob:{i}", covid=i % 2, label="covid" if i % 2 else "normal",
            patient_id=f"blob:p{i}", source="blob", width=size_px, height=size_px, mode="L",
            bit_depth=8, split="train" if i < n * 3 // 4 else ("val" if i % 8 < 6 else "test"),
        )  # fmt: skip
        rows.append(row)
    (path / "manifest.csv").write_text(dataframe_to_csv_text(pd.DataFrame(rows)))
    meta = {"format": PACKED_FORMAT, "format_version": PACKED_FORMAT_VERSION, "n_images": n}
    (path / META).write_text(json.dumps(meta))
    return path


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generator_speed(model: str, packed: Path, size_px: int, args) -> dict:
    """Steps per second of one family, and the seconds 10,000 steps would take."""
    from cxrlab.gen.config import GenConfig
    from cxrlab.gen.trainer import GenTrainer, _fabric

    config = GenConfig(
        model=model, data=str(packed), out=str(packed.parent / f"run-{model}-{size_px}"),
        size_px=size_px, batch_size=args.batch, device=args.device,
    )  # fmt: skip
    trainer = GenTrainer(config, _fabric(config), progress=False)
    for _ in range(args.warmup):
        trainer.train_step()
    _synchronize(trainer.device)
    began = time.perf_counter()
    for _ in range(args.steps):
        losses = trainer.train_step()
    values = [float(v) for v in losses.values()]  # waits for the device
    seconds = time.perf_counter() - began
    if not all(np.isfinite(values)):
        raise RuntimeError(f"{model} at {size_px} px: non-finite losses {losses}")
    rate = args.steps / seconds
    thesis = THESIS_SECONDS.get((model, size_px))
    projected = 10_000 / rate
    return {
        "model": model,
        "size_px": size_px,
        "steps_per_second": rate,
        "seconds_10k": projected,
        "thesis_seconds_10k": thesis,
        "ratio": None if thesis is None else thesis / projected,
        "trainer": trainer,
    }


def sampling_seconds(trainer, n: int) -> float:
    from cxrlab.gen.sampling import generate

    _synchronize(trainer.device)
    began = time.perf_counter()
    generate(trainer.sampler(), trainer.recipe, n, latent_dim=trainer.config.latent_dim, covid=1)
    _synchronize(trainer.device)
    return time.perf_counter() - began


def classifier_epoch_seconds(packed: Path, args) -> float:
    """One training epoch of ResNet-18 (no pretraining; the simple CNN in a dry run) with
    online mild augmentation."""
    from cxrlab.clf.config import ClfConfig
    from cxrlab.clf.trainer import SeedTrainer
    from cxrlab.utils.device import make_fabric

    config = ClfConfig(
        arch="simple-cnn" if args.dry else "resnet18", data=str(packed),
        out=str(packed.parent / "clf"), pretrained="none", batch_size=args.batch,
        augment="mild", device=args.device,
    )  # fmt: skip
    trainer = SeedTrainer(config, 0, make_fabric(args.device), progress=False)
    trainer.train_epoch()  # warm-up: kernels, cuDNN autotuning
    _synchronize(trainer.device)
    began = time.perf_counter()
    loss = trainer.train_epoch()
    if not np.isfinite(loss):
        raise RuntimeError(f"classifier epoch: non-finite loss {loss}")
    return time.perf_counter() - began


def _ddp_steps(fabric, packed: Path) -> None:
    from cxrlab.gen.config import GenConfig
    from cxrlab.gen.trainer import GenTrainer

    config = GenConfig(
        model="dcgan", data=str(packed), out=str(packed.parent / "ddp"), size_px=64, steps=3,
        batch_size=32, devices=2, device="cuda", sample_interval=3, save_interval=3,
    )  # fmt: skip
    GenTrainer(config, fabric, progress=False).train()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="tiny CPU run (what CI checks)")
    parser.add_argument("--out", type=Path, help="write every figure as JSON")
    parser.add_argument("--models", help="comma-separated families (default: all)")
    args = parser.parse_args(argv)
    if args.dry:
        args.device, args.sizes, args.batch, args.warmup, args.steps = "cpu", (32,), 4, 1, 2
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device; run with --dry on a CPU", file=sys.stderr)
            return 2
        args.device, args.sizes, args.batch, args.warmup, args.steps = "cuda", (64, 256), 32, 5, 30
        torch.backends.cudnn.benchmark = True
    from cxrlab.gen.models import model_names

    models = args.models.split(",") if args.models else model_names()
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run)"
    print(f"cxrlab GPU check on {name}, torch {torch.__version__}", flush=True)
    figures: dict = {"device": name, "torch": torch.__version__, "generators": [], "errors": []}
    began = time.perf_counter()

    def attempt(what: str, function, *a):
        try:
            return function(*a)
        except Exception as error:  # every failure is reported, none stops the others
            figures["errors"].append(f"{what}: {type(error).__name__}: {error}")
            print(f"FAILED {what}: {type(error).__name__}: {error}", flush=True)
            traceback.print_exc()
            return None

    with tempfile.TemporaryDirectory(prefix="cxrlab-gpu-check-") as tmp:
        print(f"{'model':8s} {'px':>4s} {'steps/s':>9s} {'10k steps (s)':>14s} "
              f"{'thesis (s)':>11s} {'ratio':>8s}", flush=True)  # fmt: skip
        for size_px in args.sizes:
            packed = make_packed(Path(tmp) / f"P{size_px}", size_px)
            for model in models:
                row = attempt(
                    f"{model} {size_px} px", generator_speed, model, packed, size_px, args
                )
                if row is None:
                    continue
                trainer = row.pop("trainer")
                if size_px == args.sizes[0]:
                    n = 312 if not args.dry else 4
                    row["sample_312_seconds"] = attempt(
                        f"{model} sampling", sampling_seconds, trainer, n
                    )
                del trainer
                figures["generators"].append(row)
                thesis = row["thesis_seconds_10k"]
                ratio = row["ratio"]
                flag = "" if ratio is None or ratio >= TARGET_RATIO else "  (below 20x)"
                print(
                    f"{model:8s} {size_px:4d} {row['steps_per_second']:9.2f} "
                    f"{row['seconds_10k']:14.1f} {thesis if thesis else '-':>11} "
                    f"{f'{ratio:.1f}x' if ratio else 'n/a':>8s}{flag}",
                    flush=True,
                )
                if args.device == "cuda":
                    torch.cuda.empty_cache()
        clf_size = 32 if args.dry else 224
        n_clf = 16 if args.dry else 512
        clf_packed = make_packed(Path(tmp) / "C", clf_size, n=n_clf)
        seconds = attempt("classifier epoch", classifier_epoch_seconds, clf_packed, args)
        figures["classifier_epoch_seconds"] = seconds
        if seconds is not None:
            arch = "simple CNN" if args.dry else "ResNet-18"
            print(f"classifier epoch ({arch}, {clf_size} px, {n_clf * 3 // 4} train images, "
                  f"augment mild): {seconds:.2f} s", flush=True)  # fmt: skip
        for row in figures["generators"]:
            if row.get("sample_312_seconds") is not None:
                print(f"sampling {row['model']}: {row['sample_312_seconds']:.2f} s "
                      f"for {4 if args.dry else 312} images", flush=True)  # fmt: skip
        if args.device == "cuda" and torch.cuda.device_count() >= 2:
            from lightning_fabric import Fabric

            packed = Path(tmp) / "P64"
            fabric = Fabric(
                accelerator="cuda", devices=2, strategy="ddp_spawn", precision="bf16-mixed"
            )
            errors = len(figures["errors"])
            attempt("2-process DDP", fabric.launch, _ddp_steps, packed)
            figures["ddp"] = "ok" if len(figures["errors"]) == errors else "failed"
        else:
            figures["ddp"] = "skipped: fewer than 2 GPUs"
        print(f"DDP: {figures['ddp']}", flush=True)
    figures["seconds"] = time.perf_counter() - began
    print(f"done in {figures['seconds']:.0f} s; {len(figures['errors'])} error(s)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
