"""Convolutional variational autoencoder (Kingma & Welling 2014)."""

from __future__ import annotations

import torch
from torch import nn

from cxrlab.gen.models import ModelOptions, OptimizerSpec, Recipe, check_size, register_model
from cxrlab.gen.models.conv import MAX_CHANNELS, DCGANGenerator


class ConvVAE(nn.Module):
    """Encoder: strided 4x4 convolutions (32-64-128-..., BatchNorm, LeakyReLU) to 4x4, then
    linear heads for the posterior mean and log-variance. Decoder: the DCGAN generator
    architecture, producing Bernoulli logits per pixel.

    ``forward(z)`` decodes prior samples into images in [-1, 1], so the VAE samples through
    the same call as every generator. ``reconstruct(x)`` returns (logits, mu, logvar).
    """

    def __init__(self, size_px: int, latent_dim: int = 100, width: int = 32) -> None:
        super().__init__()
        blocks = check_size(size_px)
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        in_channels = 1
        for index in range(blocks):
            out_channels = min(MAX_CHANNELS, width * 2**index)
            layers += [
                nn.Conv2d(in_channels, out_channels, 4, 2, 1),
                nn.BatchNorm2d(out_channels),
                nn.LeakyReLU(0.2),
            ]
            in_channels = out_channels
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.to_mu = nn.Linear(in_channels * 16, latent_dim)
        self.to_logvar = nn.Linear(in_channels * 16, latent_dim)
        decoder = DCGANGenerator(size_px, latent_dim, width)
        decoder.net[-1] = nn.Identity()  # logits, not tanh
        self.decoder = decoder

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(images)
        return self.to_mu(hidden), self.to_logvar(hidden).clamp(-12.0, 12.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode_logits(z), mu, logvar

    def forward(
        self,
        z: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
    ):
        """Decode ``z`` into images in [-1, 1]; with ``images=`` return ``reconstruct(images)``
        (one entry point, so data-parallel wrappers see every training computation)."""
        if images is not None:
            return self.reconstruct(images)
        return torch.sigmoid(self.decode_logits(z)) * 2.0 - 1.0


@register_model("vae")
def build_vae(size_px: int, options: ModelOptions) -> Recipe:
    """VAE trained on the ELBO (Bernoulli likelihood on [0, 1] pixels + KL), Adam 1e-3."""
    return Recipe(
        generator=ConvVAE(size_px, options.latent_dim),
        discriminator=None,
        loss="elbo",
        g_optimizer=OptimizerSpec("adam", 1e-3, (0.9, 0.999)),
        d_optimizer=None,
    )
