"""Metrics at save intervals: the metric suite of :mod:`cxrlab.metrics` on a fixed noise batch.

Fidelity and diversity are measured against **held-out** real images of the class
being drawn (the PACKED's validation split), never against the generator's own
training images: a generator that copied its training set would otherwise score
best. The training images serve memorization only, calibrated on the same
validation images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cxrlab.data.packed import open_packed
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.gen.models import Recipe
from cxrlab.gen.sampling import generate
from cxrlab.metrics.api import compute_metrics, parse_metric_names
from cxrlab.metrics.extractors import get_extractor
from cxrlab.metrics.images import ImageSource
from cxrlab.metrics.registry import METRICS

#: The split generator metrics compare with.
REFERENCE_SPLIT = "val"


def metrics_covid(config: GenConfig, conditional: bool) -> int | None:
    """The class a run's metrics draw and compare: its training label; a conditional
    run trained on both classes is measured on COVID-positive images (what synthetic
    data is for); an unconditional two-class run on both (None)."""
    if config.covid is not None:
        return config.covid
    return 1 if conditional else None


class RunMetrics:
    """``RunMetrics(config)(generator, step) -> {name: value}``.

    The reference is the validation split of the run's class (see the module doc); its
    network features are cached after the first evaluation, so each evaluation only
    processes ``config.metrics_n`` generated images.

    Raises:
        CxrlabError: when the PACKED has no validation images of that class, or the run
            trains on the validation split itself.
    """

    def __init__(self, config: GenConfig, recipe: Recipe | None = None) -> None:
        from cxrlab.gen.trainer import build_recipe

        self.config = config
        # Every name and the extractor's weights are checked here, before the first
        # step: a typo or a missing weights file must not surface after an hour.
        names = parse_metric_names(config.metrics) or []
        self.extractor = None
        if any(METRICS[name].needs_network for name in names):
            self.extractor = get_extractor(config.features, device=config.device)
        self.recipe = recipe if recipe is not None else build_recipe(config)
        self.covid = metrics_covid(config, self.recipe.conditional)
        splits = tuple(config.splits) if config.splits else None
        if splits is None or REFERENCE_SPLIT in splits:
            raise CxrlabError(
                f"metrics during training compare with held-out {REFERENCE_SPLIT} images, but "
                f"the run trains on {'every split' if splits is None else ','.join(splits)}; "
                "train on --split train, or pass --no-metrics"
            )
        packed = open_packed(config.data)
        if len(packed.select(REFERENCE_SPLIT, self.covid)) < 2:
            raise CxrlabError(
                f"{config.data} has fewer than 2 {REFERENCE_SPLIT} images of covid={self.covid}; "
                "metrics during training need held-out images of the class drawn: split the "
                "dataset (cxrlab data split) and preprocess again, or pass --no-metrics"
            )
        self.reference = ImageSource(config.data, split=REFERENCE_SPLIT, covid=self.covid)
        self.train = ImageSource(config.data, split=splits, covid=self.covid)
        self.noise_seed = config.seed + 777

    def generate(self, generator: nn.Module) -> torch.Tensor:
        """``metrics_n`` images from the same noise at every evaluation."""
        return generate(
            generator,
            self.recipe,
            self.config.metrics_n,
            latent_dim=self.config.latent_dim,
            covid=self.covid,
            generator=torch.Generator().manual_seed(self.noise_seed),
            batch_size=64,
        )

    def __call__(self, generator: nn.Module, step: int) -> dict[str, float]:
        fake = self.generate(generator)
        common = {
            "features": self.config.features,
            "device": self.config.device,
            "seed": self.config.seed,
            "extractor": self.extractor,
        }
        names = [m for m in self.config.metrics if m != "memorization"]
        values: dict[str, float] = {}
        if names:
            values.update(compute_metrics(self.reference, fake, names, **common))
        if "memorization" in self.config.metrics:
            grid = Path(self.config.out) / "metrics" / f"memorization_step_{step:06d}.png"
            values.update(
                compute_metrics(
                    self.reference,
                    fake,
                    ["memorization"],
                    train=self.train,
                    grid_path=grid,
                    **common,
                )
            )
        return {k: float(v) for k, v in values.items()}
