"""Metrics at save intervals: the metric suite of :mod:`cxrlab.metrics` on a fixed noise batch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cxrlab.data.packed import open_packed
from cxrlab.gen.config import GenConfig
from cxrlab.metrics.api import compute_metrics
from cxrlab.metrics.images import ImageSource


class RunMetrics:
    """``RunMetrics(config)(generator, step) -> {name: value}``.

    The reference is the run's own training selection (split and label), whose network
    features are cached after the first evaluation, so each evaluation only processes
    ``config.metrics_n`` generated images. ``memorization`` compares them with the
    training images, calibrated on the PACKED's other splits of the same label.
    """

    def __init__(self, config: GenConfig) -> None:
        self.config = config
        splits = tuple(config.splits) if config.splits else None
        self.train = ImageSource(config.data, split=splits, covid=config.covid)
        packed = open_packed(config.data)
        held_out = sorted(set(packed.manifest["split"]) - set(splits or ()))
        self.held_out = (
            ImageSource(config.data, split=tuple(held_out), covid=config.covid)
            if held_out
            else None
        )
        self.noise = torch.randn(
            config.metrics_n,
            config.latent_dim,
            generator=torch.Generator().manual_seed(config.seed + 777),
        )

    @torch.no_grad()
    def generate(self, generator: nn.Module) -> torch.Tensor:
        device = next(generator.parameters()).device
        was_training = generator.training
        generator.eval()
        chunks = []
        for z in self.noise.split(64):
            labels = None
            if self.config.model == "cgan":
                covid = self.config.covid if self.config.covid is not None else 1
                labels = torch.full((len(z),), covid, device=device)
            chunks.append(generator(z.to(device), labels).float().clamp(-1, 1).cpu())
        generator.train(was_training)
        return torch.cat(chunks)

    def __call__(self, generator: nn.Module, step: int) -> dict[str, float]:
        fake = self.generate(generator)
        names = [m for m in self.config.metrics if m != "memorization"]
        values: dict[str, float] = {}
        common = {
            "features": self.config.features,
            "device": self.config.device,
            "seed": self.config.seed,
        }
        if names:
            values.update(compute_metrics(self.train, fake, names, **common))
        if "memorization" in self.config.metrics and self.held_out is not None:
            grid = Path(self.config.out) / "metrics" / f"memorization_step_{step:06d}.png"
            values.update(
                compute_metrics(
                    self.held_out,
                    fake,
                    ["memorization"],
                    train=self.train,
                    grid_path=grid,
                    **common,
                )
            )
        return {k: float(v) for k, v in values.items()}
