"""``xrv``: torchxrayvision's chest X-ray DenseNet-121 (``densenet121-res224-all``): a domain FID.

Reference: Cohen, Viviano, Bertin, Morrison, Torabian, Guarrera, Lungren, Chaudhari,
Brooks, Hashir, Bertrand. "TorchXRayVision: A library of chest X-ray datasets and
models", MIDL 2022. The ``all`` weights were trained on NIH, PadChest, CheXpert,
MIMIC-CXR, Google, OpenI and Kaggle RSNA images to predict 18 pathologies, so its
features describe what radiology cares about, unlike ImageNet's.

The weights file is the one torchxrayvision downloads into
``~/.torchxrayvision/models_data/`` (its ``get_weights``); cxrlab finds it there, in
``--weights``/``$CXRLAB_WEIGHTS_DIR``, or downloads it there itself (see
:mod:`cxrlab.metrics.extractors.weights`), then builds the network without
torchxrayvision's own downloader.

Input rule: one grey channel, resized to 224 x 224 (bilinear; antialiased when
shrinking), scaled from [0, 1] to torchxrayvision's [-1024, 1024]
(:func:`cxrlab.data.loader.normalize_batch` ``"xrv"``).

Outputs: the 1024-d features after the last dense block (ReLU, global average
pool: torchxrayvision's ``features2``). The 18 pathology outputs are independent
sigmoids, not a class distribution, so this extractor gives no Inception Score.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cxrlab.data.loader import normalize_batch
from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors.base import FeatureExtractor
from cxrlab.metrics.extractors.weights import WeightsFile

XRV_WEIGHTS_NAME = "densenet121-res224-all"


def xrv_weights_file() -> WeightsFile:
    """The weights file of torchxrayvision's ``densenet121-res224-all`` (name, URL, cache)."""
    import torchxrayvision as xrv

    url = xrv.models.model_urls[XRV_WEIGHTS_NAME]["weights_url"]
    return WeightsFile(
        extractor="xrv",
        filename=url.rsplit("/", 1)[-1],
        url=url,
        library_cache=lambda: Path(xrv.utils.get_cache_dir()),
    )


class XrvFeatures(nn.Module):
    """A torchxrayvision DenseNet reduced to its 1024-d features: (B, 1, 224, 224) -> (B, 1024)."""

    def __init__(self, densenet: nn.Module) -> None:
        super().__init__()
        self.densenet = densenet

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.densenet.features2(images)


def load_xrv(weights_path: Path) -> nn.Module:
    """torchxrayvision's DenseNet-121 with the weights of ``weights_path`` (no download).

    The published file is a whole pickled model; a plain state dict is accepted too.
    """
    import torchxrayvision as xrv

    densenet = xrv.models.DenseNet(weights=None)  # 18 outputs, as the "all" weights
    try:
        saved = torch.load(weights_path, map_location="cpu", weights_only=False)
        if isinstance(saved, nn.Module):
            for module in saved.modules():  # pickles from older torch lack this attribute
                if not hasattr(module, "_non_persistent_buffers_set"):
                    module._non_persistent_buffers_set = set()
            saved = saved.state_dict()
        densenet.load_state_dict(saved)
    except Exception as error:  # torch.load and load_state_dict raise many types
        raise CxrlabError(
            f"cannot load {weights_path} as torchxrayvision {XRV_WEIGHTS_NAME} weights "
            f"({type(error).__name__}: {error}); delete it and download "
            f"{xrv_weights_file().url} again"
        ) from error
    return XrvFeatures(densenet)


class XrvExtractor(FeatureExtractor):
    """torchxrayvision DenseNet-121 features (see the module doc for the input rule).

    Args:
        network: (B, 1, 224, 224) float in [-1024, 1024] -> (B, D) features. Tests
            inject tiny ones.
        identity: names the weights for the reference cache.
        device: where the network runs.
    """

    name = "xrv"
    input_size_px = 224
    feature_dim = 1024
    has_class_logits = False

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) [0, 1] -> (B, 1, 224, 224) in [-1024, 1024]."""
        if images.ndim != 4 or images.shape[1] != 1:
            raise CxrlabError(f"expected (B, 1, H, W) grey images, got {tuple(images.shape)}")
        images = images.to(self.device, torch.float32).clamp(0, 1)
        if images.shape[-2:] != (self.input_size_px, self.input_size_px):
            images = F.interpolate(
                images,
                size=(self.input_size_px, self.input_size_px),
                mode="bilinear",
                align_corners=False,
                antialias=True,  # only changes anything when shrinking
            )
        return normalize_batch(images, "xrv")

    def run(self, prepared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.network(prepared), None
