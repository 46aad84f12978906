"""Draw synthetic images from a trained run: PNG files or a PACKED marked synthetic."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxrlab import __version__
from cxrlab.data.manifest import dataframe_to_csv_text
from cxrlab.data.packed import IMAGES, META, PACKED_FORMAT, PACKED_FORMAT_VERSION, open_packed
from cxrlab.data.provenance import learned_record, write_provenance
from cxrlab.data.sources.labels import COVID, NEGATIVE
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import LABELS, GenConfig
from cxrlab.gen.models import Recipe
from cxrlab.gen.sampling import (
    SamplingOptions,
    check_finite,
    generate,
    sampling_label,
    to_uint8,
)
from cxrlab.gen.trainer import build_recipe, latest_checkpoint, newest_good_checkpoint
from cxrlab.utils import outputs
from cxrlab.utils.checkpoint import load_checkpoint
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import atomic_dir
from cxrlab.utils.outputs import check_output


@dataclass
class LoadedGenerator:
    """A trained generator ready to sample, with its run's config."""

    generator: torch.nn.Module
    config: GenConfig
    step: int
    recipe: Recipe
    uses_ema: bool

    @property
    def conditional(self) -> bool:
        return self.recipe.conditional


def _article(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _checkpoint_state(run: Path, step: int | None) -> dict:
    if step is not None:
        return load_checkpoint(latest_checkpoint(run, step))
    state = newest_good_checkpoint(run)
    if state is None:
        from cxrlab.utils.outputs import GENERATOR_RUN, folder_kind

        kind = folder_kind(run)
        if kind not in (GENERATOR_RUN, None, "empty folder"):  # never advise training into data
            raise CxrlabError(
                f"{run} is {_article(kind)}, not a generator run: give the --out "
                "folder of `cxrlab gen train`"
            )
        raise CxrlabError(
            f"{run}/checkpoints holds no checkpoint: train with `cxrlab gen train --out {run}` first"
        )
    return state


def load_generator(
    run: str | Path, *, step: int | None = None, ema: bool = True, device: str = "auto"
) -> LoadedGenerator:
    """Rebuild the generator of ``run`` from its checkpoint (newest loadable, or of ``step``).

    Uses the EMA weights when the run kept them and ``ema`` is True.

    Raises:
        CxrlabError: no checkpoint, or one holding non-finite weights (a diverged run).
    """
    run = Path(run)
    if not run.is_dir():
        raise CxrlabError(f"{run} is not a folder: give the --out of `cxrlab gen train`")
    state = _checkpoint_state(run, step)
    config = GenConfig.from_dict(state["config"])
    recipe = build_recipe(config)
    generator = recipe.generator
    use_ema = ema and "ema" in state
    generator.load_state_dict(state["ema"] if use_ema else state["generator"])
    check_finite(generator, f"{run} at step {state['step']}")
    generator.to(resolve_device(device)).eval()
    return LoadedGenerator(generator, config, int(state["step"]), recipe, use_ema)


def generate_uint8(
    loaded: LoadedGenerator,
    n: int,
    *,
    label: str | None = None,
    seed: int = 0,
    options: SamplingOptions | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """``n`` images as (n, S, S) uint8 of class ``label`` (see :func:`sampling_label`)."""
    label = sampling_label(loaded.conditional, loaded.config.label, label)
    images = generate(
        loaded.generator,
        loaded.recipe,
        n,
        latent_dim=loaded.config.latent_dim,
        covid=None if label is None else LABELS[label],
        generator=torch.Generator().manual_seed(seed),
        options=options,
        batch_size=batch_size,
        progress=progress,
    )
    return to_uint8(images)


def _learned(config: GenConfig) -> tuple[dict | None, str]:
    """The ``learned`` record of the run's training rows, or None and why it is unknown."""
    try:
        data = open_packed(config.data)
    except CxrlabError as error:
        return None, f"the generator's PACKED {config.data} cannot be read ({error})"
    rows = data.select(config.splits, config.covid)
    return learned_record(data, rows, split=config.split, label=config.label), ""


def _drawn_from(out: Path, run: str | Path) -> bool:
    """Whether ``out`` holds images drawn from ``run`` earlier (which a new draw may replace):
    a synthetic PACKED whose meta names the run, or PNGs named as this module names them."""
    meta = out / META
    if meta.is_file():
        try:
            synthetic = json.loads(meta.read_text()).get("synthetic") or {}
        except ValueError:
            return False
        return synthetic.get("run") == str(Path(run).resolve())
    return (
        all(p.name.startswith("synthetic_") for p in out.rglob("*.png")) if out.is_dir() else True
    )


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
    options: SamplingOptions | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``n`` synthetic images of ``run`` to ``out``: PNGs, or a PACKED (``packed=True``)
    whose manifest marks each image ``synthetic=1``, split ``train``, with the run as its source.

    Either way ``out/provenance.json`` says what the generator learned (its PACKED's
    dataset manifest, the ids and perceptual hashes of the rows, the preprocessing
    options; :mod:`cxrlab.data.provenance`), so ``clf train --synthetic`` can refuse
    images of a generator that learned images the classifier is judged on.

    ``label``: the class to draw; an unconditional run draws only the class it was trained
    on (:func:`~cxrlab.gen.sampling.sampling_label`). ``out`` may not replace an input or a
    folder of another kind (a real PACKED!) unless ``force``.
    """
    if n < 1:
        raise CxrlabError(f"--n must be at least 1, got {n}")
    out = Path(out)
    check_output(
        out,
        kind=outputs.PACKED if packed else outputs.IMAGES,
        inputs=[run],
        force=force,
        same_settings=_drawn_from(out, run),
    )
    loaded = load_generator(run, step=step, ema=ema, device=device)
    trained_label = sampling_label(loaded.conditional, loaded.config.label, label)
    if packed and trained_label is None:
        raise CxrlabError(
            f"{run} was trained on both classes without conditioning, so its images have no label; "
            "train with --label positive (or a conditional model with --label) to make labelled synthetic data"
        )
    images = generate_uint8(
        loaded, n, label=trained_label, seed=seed, options=options, progress=progress
    )
    covid = LABELS[trained_label] if trained_label else 0
    source = f"synthetic:{Path(run).name}"
    learned, why = _learned(loaded.config)
    drawn = {
        "path": str(Path(run).resolve()),
        "step": loaded.step,
        "ema": loaded.uses_ema,
        "seed": seed,
        "label": trained_label,
        "n_images": n,
        "size_px": int(images.shape[-1]),
    }
    with atomic_dir(out) as staging:
        write_provenance(staging, drawn, learned, why)
        if not packed:
            # flat PNGs are COVID-positive to `clf train --synthetic`; others say their class
            folder = staging if covid == 1 else staging / (trained_label or "unlabelled")
            folder.mkdir(exist_ok=True)
            for index, image in enumerate(images):
                Image.fromarray(image).save(folder / f"synthetic_{index:06d}.png")
        else:
            np.save(staging / IMAGES, images)
            size = images.shape[1]
            manifest = pd.DataFrame(
                {
                    "id": [f"{source}:{i:06d}" for i in range(n)],
                    "path": "",
                    "label": COVID if covid == 1 else NEGATIVE,
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
                    # the rows it learned: a classifier judged on others may use its images
                    "trained_on": {"data": loaded.config.data, "split": loaded.config.split},
                },
                "n_images": n,
                "sampling": asdict(options or SamplingOptions()),
                "shape": list(images.shape),
                "dtype": "uint8",
            }
            (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
