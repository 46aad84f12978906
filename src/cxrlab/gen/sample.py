"""Draw synthetic images from a trained run: PNG files or a PACKED marked synthetic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxrlab import __version__
from cxrlab.data.manifest import dataframe_to_csv_text
from cxrlab.data.packed import IMAGES, META, PACKED_FORMAT, PACKED_FORMAT_VERSION
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import LABELS, GenConfig
from cxrlab.gen.trainer import build_recipe, latest_checkpoint
from cxrlab.utils.checkpoint import load_checkpoint
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import atomic_dir


@dataclass
class LoadedGenerator:
    """A trained generator ready to sample, with its run's config."""

    generator: torch.nn.Module
    config: GenConfig
    step: int
    conditional: bool
    uses_ema: bool


def load_generator(
    run: str | Path, *, step: int | None = None, ema: bool = True, device: str = "auto"
) -> LoadedGenerator:
    """Rebuild the generator of ``run`` from its checkpoint (newest, or of ``step``).

    Uses the EMA weights when the run kept them and ``ema`` is True.
    """
    run = Path(run)
    checkpoint = latest_checkpoint(run, step)
    if checkpoint is None:
        raise CxrlabError(
            f"{run}/checkpoints holds no checkpoint: train with `cxrlab gen train --out {run}` first"
        )
    state = load_checkpoint(checkpoint)
    config = GenConfig.from_dict(state["config"])
    recipe = build_recipe(config)
    generator = recipe.generator
    use_ema = ema and "ema" in state
    generator.load_state_dict(state["ema"] if use_ema else state["generator"])
    generator.to(resolve_device(device)).eval()
    return LoadedGenerator(generator, config, int(state["step"]), recipe.conditional, use_ema)


@torch.no_grad()
def generate(
    loaded: LoadedGenerator,
    n: int,
    *,
    label: str | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """``n`` images as (n, S, S) uint8. ``label`` picks the class of a conditional model."""
    if loaded.conditional and label is None:
        raise CxrlabError("this model is conditional: pass --label positive or --label negative")
    device = next(loaded.generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        z = torch.randn(count, loaded.config.latent_dim, generator=rng).to(device)
        labels = torch.full((count,), LABELS[label], device=device) if loaded.conditional else None
        images = loaded.generator(z, labels).float().clamp(-1, 1)
        chunks.append(((images[:, 0] + 1) * 127.5).round().to(torch.uint8).cpu().numpy())
    return np.concatenate(chunks)


def sample_run(
    run: str | Path,
    out: str | Path,
    *,
    n: int = 312,
    label: str | None = None,
    step: int | None = None,
    ema: bool = True,
    packed: bool = False,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Write ``n`` synthetic images of ``run`` to ``out``: PNGs, or a PACKED (``packed=True``)
    whose manifest marks each image ``synthetic=1``, split ``train``, with the run as its source."""
    loaded = load_generator(run, step=step, ema=ema, device=device)
    images = generate(loaded, n, label=label, seed=seed)
    trained_label = label or loaded.config.label
    if packed and trained_label is None:
        raise CxrlabError(
            f"{run} was trained on both classes without conditioning, so its images have no label; "
            "train with --label positive (or a conditional model with --label) to make labelled synthetic data"
        )
    covid = LABELS.get(trained_label, 0) if trained_label else 0
    out = Path(out)
    source = f"synthetic:{Path(run).name}"
    with atomic_dir(out) as staging:
        if not packed:
            for index, image in enumerate(images):
                Image.fromarray(image).save(staging / f"synthetic_{index:06d}.png")
        else:
            np.save(staging / IMAGES, images)
            size = images.shape[1]
            manifest = pd.DataFrame(
                {
                    "id": [f"{source}:{i:06d}" for i in range(n)],
                    "path": "",
                    "label": "covid" if covid == 1 else "negative",
                    "covid": covid,
                    "patient_id": [f"{source}:{i:06d}" for i in range(n)],
                    "source": source,
                    "view": "",
                    "width": size,
                    "height": size,
                    "mode": "L",
                    "bit_depth": 8,
                    "sha256": "",
                    "phash": "",
                    "duplicate_group": "",
                    "split": "train",
                    "synthetic": 1,
                    "run": str(Path(run).resolve()),
                    "step": loaded.step,
                }
            )
            (staging / "manifest.csv").write_text(dataframe_to_csv_text(manifest))
            meta = {
                "format": PACKED_FORMAT,
                "format_version": PACKED_FORMAT_VERSION,
                "cxrlab_version": __version__,
                "synthetic": {
                    "run": str(Path(run).resolve()),
                    "step": loaded.step,
                    "ema": loaded.uses_ema,
                    "seed": seed,
                    "label": trained_label,
                },
                "n_images": n,
                "shape": list(images.shape),
                "dtype": "uint8",
            }
            (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
