"""Small building blocks shared by the families."""

from __future__ import annotations

import torch
from torch import nn


def maybe_sn(layer: nn.Module, spectral_norm: bool) -> nn.Module:
    """Wrap a Linear/Conv layer in spectral normalisation when asked."""
    return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer


def keras_batchnorm1d(features: int) -> nn.BatchNorm1d:
    """Keras' BatchNormalization(momentum=0.8) is PyTorch's momentum=0.2 (and eps 1e-3)."""
    return nn.BatchNorm1d(features, momentum=0.2, eps=1e-3)


def keras_batchnorm2d(features: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(features, momentum=0.2, eps=1e-3)


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights for convolutions and linears, N(1, 0.02) for BatchNorm scales (Radford et al. 2016)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        weight = getattr(module, "weight_orig", module.weight)
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class LabelEmbedding(nn.Module):
    """A learnt vector per class, multiplied into the input (Mirza & Osindero 2014, Keras-GAN's CGAN)."""

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes, features)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return inputs * self.embedding(labels)
