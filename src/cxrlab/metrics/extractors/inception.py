"""``inception``: the standard FID/IS network (Inception-v3, TensorFlow 2015-12-05 weights).

The network is torch-fidelity's ``FeatureExtractorInceptionV3``, the port of the
TensorFlow graph that the original FID and IS code used (also what torchmetrics
wraps). Its weights, ``weights-inception-2015-12-05-6726825d.pth``, are what
torch-fidelity downloads through ``torch.hub`` into ``$TORCH_HOME/hub/checkpoints``;
pytorch-fid publishes the same conversion as ``pt_inception-2015-12-05-6726825d.pth``,
accepted as well. See :mod:`cxrlab.metrics.extractors.weights` for the search order.

Input rule (explicit, as in clean-fid): grey [0, 1] is quantised to uint8 by
``round(255 x)``, repeated to three identical RGB channels, and resized to 299 x 299
inside the network with TensorFlow 1.x's bilinear interpolation (no antialiasing), so
that values compare with published FIDs.

Outputs: the 2048-d pool features (FID, KID, PRDC) and the 1008 unbiased logits
(``fc`` without its bias; torch-fidelity's choice for IS) for the Inception Score.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors.base import FeatureExtractor
from cxrlab.metrics.extractors.weights import WeightsFile

#: Published by torch-fidelity (the URL its FeatureExtractorInceptionV3 downloads).
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)


def _torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


INCEPTION_WEIGHTS = WeightsFile(
    extractor="inception",
    filename="weights-inception-2015-12-05-6726825d.pth",
    url=INCEPTION_URL,
    library_cache=_torch_hub_checkpoints,
    aliases=("pt_inception-2015-12-05-6726825d.pth",),
)


def load_inception(weights_path: Path) -> nn.Module:
    """torch-fidelity's Inception-v3 with the weights of ``weights_path`` (no download).

    Its forward takes (B, 3, H, W) uint8 and returns ``(pool (B, 2048), logits (B, 1008))``.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat",
            ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(weights_path),
        )
    except Exception as error:  # torch.load and load_state_dict raise many types
        raise CxrlabError(
            f"cannot load {weights_path} as Inception-v3 weights ({type(error).__name__}: "
            f"{error}); delete it and download {INCEPTION_URL} again"
        ) from error


class InceptionExtractor(FeatureExtractor):
    """Inception-v3 pool features and logits (see the module doc for the input rule).

    Args:
        network: a module with torch-fidelity's interface: (B, 3, H, W) uint8 in,
            ``(features (B, D), logits (B, C))`` out. Tests inject tiny ones.
        identity: names the weights for the reference cache.
        device: where the network runs.
    """

    name = "inception"
    input_size_px = 299
    feature_dim = 2048
    has_class_logits = True

    def __init__(self, network: nn.Module, identity: str, device: torch.device) -> None:
        super().__init__(network, identity, device)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) [0, 1] -> (B, 3, H, W) uint8; the 299-px resize happens in the network."""
        if images.ndim != 4 or images.shape[1] != 1:
            raise CxrlabError(f"expected (B, 1, H, W) grey images, got {tuple(images.shape)}")
        quantised = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        return quantised.repeat(1, 3, 1, 1).to(self.device)

    def run(self, prepared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, logits = self.network(prepared)
        return features, logits
