"""Differentiable augmentation (DiffAugment; Zhao et al. 2020, arXiv:2006.10738).

The same random transform family is applied to real and generated images right
before the discriminator, so the discriminator cannot memorise a few hundred
training images, and gradients flow through the transform to the generator.
Each op draws its own parameters per sample. Images are (B, C, H, W) in [-1, 1].

Policy: a comma-separated list of ``translation``, ``cutout``, ``brightness``,
``contrast`` (``color`` = brightness + contrast), e.g. ``"translation,cutout"``.
"""

from __future__ import annotations

import torch

from cxrlab.errors import CxrlabError


def brightness(images: torch.Tensor, strength: float = 0.5) -> torch.Tensor:
    """Add a per-sample offset drawn from U(-strength, strength) (images in [-1, 1])."""
    offset = (
        (torch.rand(images.shape[0], 1, 1, 1, device=images.device, dtype=images.dtype) - 0.5)
        * 2
        * strength
    )
    return images + offset


def contrast(images: torch.Tensor, low: float = 0.5, high: float = 1.5) -> torch.Tensor:
    """Scale each sample's deviation from its mean by a factor in U(low, high)."""
    factor = (
        torch.rand(images.shape[0], 1, 1, 1, device=images.device, dtype=images.dtype)
        * (high - low)
        + low
    )
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * factor + mean


def translation(images: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to ``ratio`` of its size, filling with -1 (black)."""
    batch, _, height, width = images.shape
    max_dy, max_dx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (batch, 1, 1), device=images.device)
    dx = torch.randint(-max_dx, max_dx + 1, (batch, 1, 1), device=images.device)
    rows = (
        torch.arange(height, device=images.device).view(1, height, 1) - dy
    )  # source row per output row
    cols = torch.arange(width, device=images.device).view(1, 1, width) - dx
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    flat = rows * width + cols  # (B, H, W) gather index into each flattened image
    gathered = images.flatten(2).gather(
        2, flat.flatten(1).unsqueeze(1).expand(-1, images.shape[1], -1)
    )
    shifted = gathered.view_as(images)
    return torch.where(valid.unsqueeze(1), shifted, torch.full_like(shifted, -1.0))


def cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Black out one square of ``ratio`` x the size per sample, at a random position."""
    batch, _, height, width = images.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height - cut_h + 1, (batch, 1, 1), device=images.device)
    left = torch.randint(0, width - cut_w + 1, (batch, 1, 1), device=images.device)
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
    return images.masked_fill(inside.unsqueeze(1), -1.0)


OPS = {
    "translation": (translation,),
    "cutout": (cutout,),
    "brightness": (brightness,),
    "contrast": (contrast,),
    "color": (brightness, contrast),
}

#: Recommended for a few hundred CXRs: geometric + photometric, as in the DiffAugment paper.
DEFAULT_POLICY = "translation,cutout,brightness,contrast"


def parse_policy(policy: str | None) -> list[str]:
    """``"translation, cutout"`` -> ["translation", "cutout"]; empty/None/"none" -> []."""
    if not policy or policy.strip().lower() == "none":
        return []
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise CxrlabError(f"unknown DiffAugment op(s) {unknown}; choose from {sorted(OPS)}")
    return names


def diff_augment(images: torch.Tensor, policy: str | list[str] | None) -> torch.Tensor:
    """Apply the policy's ops in order; differentiable with respect to ``images``."""
    names = parse_policy(policy) if isinstance(policy, str) or policy is None else policy
    for name in names:
        for op in OPS[name]:
            images = op(images)
    return images
