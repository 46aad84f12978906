"""Small building blocks shared by the families."""

from __future__ import annotations

import torch
from torch import nn


def maybe_sn(layer: nn.Module, spectral_norm: bool) -> nn.Module:
    """Wrap a Linear/Conv layer in spectral normalisation when asked."""
    return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same scaling by ``1 / (1 - p)``, same module in state
    dicts) with a cheaper mask in training on the CPU.

    ``nn.Dropout`` draws one Bernoulli variate per element, which took 40% of a wgan
    training step on a 2-core CPU (its critic has four dropout layers on 32x32 to 4x4
    maps). Here each element gets ``w`` uniform random bits, cut from 64-bit random
    words, and is kept when they reach ``p * 2**w`` (as unsigned numbers): ``w`` is the
    smallest of 8, 16 and 32 for which ``p * 2**w`` is whole, so p = 0.25 keeps an
    element with probability exactly 0.75 from 8 bits; otherwise ``w`` = 32 and the
    threshold is rounded (an error under 1e-9). Elements are independent, the words come
    from torch's global generator (seeded and restored on resume like ``nn.Dropout``'s):
    only the random stream differs from ``nn.Dropout``.
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.p >= 1.0 or inputs.device.type != "cpu":
            return super().forward(inputs)
        bits, threshold = _mask_bits(self.p)
        per_word = 64 // bits
        count = inputs.numel()
        words = torch.empty(-(-count // per_word), dtype=torch.int64).random_(-(2**63), None)
        # signed view: unsigned u >= t is signed u - 2**(w-1) >= t - 2**(w-1)
        uniform = words.view(_SIGNED[bits])[:count]
        noise = torch.empty_like(inputs)  # dense, in the input's memory format
        noise.as_strided((count,), (1,)).copy_(uniform >= threshold - 2 ** (bits - 1))
        return inputs * noise.div_(1.0 - self.p)


_SIGNED = {8: torch.int8, 16: torch.int16, 32: torch.int32}


def _mask_bits(p: float) -> tuple[int, int]:
    """Bits per element and the threshold (on unsigned values) that drop with probability ``p``."""
    for bits in (8, 16):
        if (p * 2**bits).is_integer():
            return bits, int(p * 2**bits)
    return 32, round(p * 2**32)


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
