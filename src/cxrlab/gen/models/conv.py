"""Convolutional families: ``dcgan``, and the thesis' ``wgan`` / ``wgan-gp`` critics."""

from __future__ import annotations

import torch
from torch import nn

from cxrlab.gen.models import ModelOptions, OptimizerSpec, Recipe, check_size, register_model
from cxrlab.gen.models.layers import Dropout, dcgan_init, keras_batchnorm2d, maybe_sn
from cxrlab.gen.models.mlp import MLPGenerator

MAX_CHANNELS = 512


class DCGANGenerator(nn.Module):
    """Radford et al. 2016: z -> 4x4 -> one stride-2 transposed convolution per doubling.

    Channels halve as the resolution doubles: ``min(512, width * S / r)`` at resolution r
    (64 px, width 32: 512-256-128-64). BatchNorm + ReLU inside, tanh out. (B, latent) -> (B, 1, S, S).
    """

    def __init__(self, size_px: int, latent_dim: int = 100, width: int = 32) -> None:
        super().__init__()
        blocks = check_size(size_px)
        self.latent_dim = latent_dim

        def channels(resolution: int) -> int:
            return min(MAX_CHANNELS, width * size_px // resolution)

        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, channels(4), 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels(4)),
            nn.ReLU(True),
        ]
        resolution = 4
        for index in range(blocks):
            last = index == blocks - 1
            out_channels = 1 if last else channels(resolution * 2)
            layers.append(
                nn.ConvTranspose2d(channels(resolution), out_channels, 4, 2, 1, bias=last)
            )
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out_channels), nn.ReLU(True)]
            resolution *= 2
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """Strided 4x4 convolutions down to 4x4 (no BatchNorm on the first), LeakyReLU 0.2, then a
    4x4 convolution to one logit. Channels ``min(512, 2 * width * (S / 2) / r)``: 64-128-256-512 at 64 px."""

    def __init__(self, size_px: int, width: int = 32, spectral_norm: bool = False) -> None:
        super().__init__()
        blocks = check_size(size_px)

        def channels(resolution: int) -> int:
            return min(MAX_CHANNELS, 2 * width * (size_px // 2) // resolution)

        layers: list[nn.Module] = []
        in_channels, resolution = 1, size_px
        for index in range(blocks):
            out_channels = channels(resolution // 2)
            layers.append(
                maybe_sn(nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False), spectral_norm)
            )
            if index > 0 and not spectral_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_channels, resolution = out_channels, resolution // 2
        layers.append(maybe_sn(nn.Conv2d(in_channels, 1, 4, 1, 0), spectral_norm))
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(images).flatten()


class WGANCritic(nn.Module):
    """The thesis' (Keras-GAN) critic, one block per factor of 2 down to 4x4:
    3x3 stride-2 convolution (16-32-64-128-..., capped at 512), LeakyReLU 0.2, dropout 0.25,
    BatchNorm (momentum 0.8 in Keras terms) after the first block; a linear layer to one score.

    ``gradient_penalty=True`` (wgan-gp) leaves out BatchNorm and dropout: the penalty is
    defined per sample, and both make a sample's score depend on the rest of the batch or on noise.
    """

    def __init__(
        self, size_px: int, gradient_penalty: bool = False, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        blocks = check_size(size_px)
        layers: list[nn.Module] = []
        in_channels = 1
        for index in range(blocks):
            out_channels = min(MAX_CHANNELS, 16 * 2**index)
            layers += [
                maybe_sn(nn.Conv2d(in_channels, out_channels, 3, 2, 1), spectral_norm),
                nn.LeakyReLU(0.2),
            ]
            if not gradient_penalty:
                layers.append(Dropout(0.25))
                if index > 0 and not spectral_norm:
                    layers.append(keras_batchnorm2d(out_channels))
            in_channels = out_channels
        layers += [nn.Flatten(), maybe_sn(nn.Linear(in_channels * 16, 1), spectral_norm)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(images).squeeze(1)


def _wgan_generator(size_px: int, options: ModelOptions) -> nn.Module:
    if options.generator == "conv":
        return DCGANGenerator(size_px, options.latent_dim)
    return MLPGenerator(size_px, options.latent_dim)


@register_model("dcgan")
def build_dcgan(size_px: int, options: ModelOptions) -> Recipe:
    """DCGAN (Radford et al. 2016): Adam 2e-4, betas (0.5, 0.999), N(0, 0.02) init."""
    adam = OptimizerSpec("adam", 2e-4, (0.5, 0.999))
    return Recipe(
        generator=DCGANGenerator(size_px, options.latent_dim),
        discriminator=DCGANDiscriminator(size_px, spectral_norm=options.spectral_norm),
        loss="bce",
        g_optimizer=adam,
        d_optimizer=adam,
    )


@register_model("wgan")
def build_wgan(size_px: int, options: ModelOptions) -> Recipe:
    """WGAN (Arjovsky et al. 2017) as in the thesis: MLP generator, conv critic,
    RMSprop 5e-5, weight clipping 0.01, 5 critic steps per generator step."""
    rmsprop = OptimizerSpec("rmsprop", 5e-5)
    return Recipe(
        generator=_wgan_generator(size_px, options),
        discriminator=WGANCritic(size_px, spectral_norm=options.spectral_norm),
        loss="wasserstein",
        g_optimizer=rmsprop,
        d_optimizer=rmsprop,
        n_critic=5,
        clip_value=0.01,
    )


@register_model("wgan-gp")
def build_wgan_gp(size_px: int, options: ModelOptions) -> Recipe:
    """WGAN-GP (Gulrajani et al. 2017): gradient penalty 10 on interpolates instead of clipping,
    no BatchNorm in the critic, Adam 1e-4 betas (0, 0.9), 5 critic steps per generator step."""
    adam = OptimizerSpec("adam", 1e-4, (0.0, 0.9))
    return Recipe(
        generator=_wgan_generator(size_px, options),
        discriminator=WGANCritic(
            size_px, gradient_penalty=True, spectral_norm=options.spectral_norm
        ),
        loss="wasserstein",
        g_optimizer=adam,
        d_optimizer=adam,
        n_critic=5,
        gp_weight=10.0,
    )
