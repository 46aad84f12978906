"""The segmentation network: MONAI's residual U-Net, built from a :class:`SegConfig`."""

from __future__ import annotations

import torch
from torch import nn

from cxrlab.seg.config import SegConfig


def build_segmenter(config: SegConfig) -> nn.Module:
    """``monai.networks.nets.UNet`` for (B, 1, S, S) images in [0, 1] -> (B, 1, S, S)
    lung logits; each level halves the resolution (stride 2) and has
    ``config.res_units`` residual units, batch-normalised."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=tuple(config.channels),
        strides=(2,) * (len(config.channels) - 1),
        num_res_units=config.res_units,
        norm="batch",
    )


def lung_probability(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) images -> (B, 1, S, S) float32 lung probabilities (model in eval mode)."""
    return torch.sigmoid(model(images).float())
