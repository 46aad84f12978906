"""The thesis' Keras-GAN multilayer perceptrons: ``gan`` and ``cgan`` (and wgan's generator)."""

from __future__ import annotations

import torch
from torch import nn

from cxrlab.gen.models import ModelOptions, OptimizerSpec, Recipe, register_model
from cxrlab.gen.models.layers import Dropout, LabelEmbedding, keras_batchnorm1d, maybe_sn


class MLPGenerator(nn.Module):
    """z (B, latent) -> Dense 256-512-1024 (LeakyReLU 0.2, BatchNorm) -> Dense S*S -> tanh -> (B, 1, S, S)."""

    def __init__(self, size_px: int, latent_dim: int = 100, num_classes: int = 0) -> None:
        super().__init__()
        self.size_px, self.latent_dim = size_px, latent_dim
        self.label_embedding = LabelEmbedding(num_classes, latent_dim) if num_classes else None
        layers: list[nn.Module] = []
        features = latent_dim
        for width in (256, 512, 1024):
            layers += [nn.Linear(features, width), nn.LeakyReLU(0.2), keras_batchnorm1d(width)]
            features = width
        layers += [nn.Linear(features, size_px * size_px), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            z = self.label_embedding(z, labels)
        return self.net(z).view(-1, 1, self.size_px, self.size_px)


class MLPDiscriminator(nn.Module):
    """(B, 1, S, S) -> Dense 512-256 (LeakyReLU 0.2) -> 1 logit. ``cgan``: label embedding,
    Dense 512-512-512 with dropout 0.4 as in Keras-GAN's CGAN."""

    def __init__(
        self, size_px: int, num_classes: int = 0, spectral_norm: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        inputs = size_px * size_px
        self.label_embedding = LabelEmbedding(num_classes, inputs) if num_classes else None
        widths = (512, 512, 512) if num_classes else (512, 256)
        layers: list[nn.Module] = []
        features = inputs
        for index, width in enumerate(widths):
            layers += [maybe_sn(nn.Linear(features, width), spectral_norm), nn.LeakyReLU(0.2)]
            if dropout and index > 0:
                layers.append(Dropout(dropout))
            features = width
        layers.append(maybe_sn(nn.Linear(features, 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        flat = images.flatten(1)
        if self.label_embedding is not None:
            flat = self.label_embedding(flat, labels)
        return self.net(flat).squeeze(1)


KERAS_ADAM = OptimizerSpec("adam", 2e-4, (0.5, 0.999))


@register_model("gan")
def build_gan(size_px: int, options: ModelOptions) -> Recipe:
    """Goodfellow et al. 2014 with the Keras-GAN MLPs the thesis used; Adam 2e-4, beta1 0.5."""
    return Recipe(
        generator=MLPGenerator(size_px, options.latent_dim),
        discriminator=MLPDiscriminator(size_px, spectral_norm=options.spectral_norm),
        loss="bce",
        g_optimizer=KERAS_ADAM,
        d_optimizer=KERAS_ADAM,
    )


@register_model("cgan")
def build_cgan(size_px: int, options: ModelOptions) -> Recipe:
    """Conditional GAN (Mirza & Osindero 2014): the class label, embedded, multiplies the
    generator's noise and the discriminator's input; discriminator dropout 0.4."""
    return Recipe(
        generator=MLPGenerator(size_px, options.latent_dim, num_classes=options.num_classes),
        discriminator=MLPDiscriminator(
            size_px,
            num_classes=options.num_classes,
            spectral_norm=options.spectral_norm,
            dropout=0.4,
        ),
        loss="bce",
        g_optimizer=KERAS_ADAM,
        d_optimizer=KERAS_ADAM,
        conditional=True,
    )
