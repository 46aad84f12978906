"""What every feature extractor provides, and batched extraction over an image set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cxrlab.utils.progress import tqdm


@dataclass
class Features:
    """Network outputs for a set of images.

    Attributes:
        features: (N, D) float32 embedding (FID, KID, PRDC).
        logits: (N, C) float32 class logits, or None when the extractor has none
            usable for the Inception Score.
    """

    features: np.ndarray
    logits: np.ndarray | None = None


class FeatureExtractor(ABC):
    """A pretrained network turned into a function of greyscale images.

    Every extractor takes the same input, whatever its network needs: float
    (B, 1, H, W) images in [0, 1] of any size. Its :meth:`prepare` documents the
    explicit conversion (channels, resizing, value range) to the network's input.

    Attributes:
        name: the registered name (``inception``, ``xrv``).
        input_size_px: side of the square input the network sees.
        feature_dim: D of :attr:`Features.features`.
        has_class_logits: whether :attr:`Features.logits` are softmax class scores (IS).
        identity: names the network and its weights; part of the reference-statistics
            cache key, so that other weights never reuse cached features.
    """

    name: str = ""
    input_size_px: int = 0
    feature_dim: int = 0
    has_class_logits: bool = False

    def __init__(self, network: nn.Module, identity: str, device: torch.device) -> None:
        self.network = network.to(device).eval().requires_grad_(False)
        self.identity = identity
        self.device = device

    @abstractmethod
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float in [0, 1] -> the network's input, on :attr:`device`."""

    @abstractmethod
    def run(self, prepared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network on a prepared batch -> ((B, D) features, (B, C) logits or None)."""

    @torch.inference_mode()
    def extract(
        self, batches: Iterable[torch.Tensor], *, total: int | None = None, progress: bool = False
    ) -> Features:
        """Features of every image of ``batches`` (each (B, 1, H, W) float in [0, 1])."""
        features, logits = [], []
        with tqdm(
            total=total, desc=f"{self.name} features", unit="img", disable=not progress, leave=False
        ) as bar:
            for batch in batches:
                batch_features, batch_logits = self.run(self.prepare(batch))
                features.append(batch_features.float().cpu().numpy())
                if batch_logits is not None:
                    logits.append(batch_logits.float().cpu().numpy())
                bar.update(len(batch))
        return Features(
            features=np.concatenate(features) if features else np.zeros((0, self.feature_dim)),
            logits=np.concatenate(logits) if logits else None,
        )
