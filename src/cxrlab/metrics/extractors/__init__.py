"""Feature extractors by name, kept apart from the metric functions that use their features.

* ``inception``: Inception-v3 as in FID/IS (:mod:`~cxrlab.metrics.extractors.inception`);
* ``xrv``: torchxrayvision's chest X-ray DenseNet-121 (:mod:`~cxrlab.metrics.extractors.xrv`).

:func:`get_extractor` finds the weights first (see
:mod:`~cxrlab.metrics.extractors.weights`), so a missing file fails before any image
is read. Loaded networks are kept per (name, weights file, device) for the life of the
process: a trainer that evaluates at every save interval loads them once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors.base import FeatureExtractor, Features
from cxrlab.metrics.extractors.inception import (
    INCEPTION_WEIGHTS,
    InceptionExtractor,
    load_inception,
)
from cxrlab.metrics.extractors.weights import (
    MissingWeightsError,
    WeightsFile,
    locate_weights,
)
from cxrlab.metrics.extractors.xrv import XrvExtractor, load_xrv, xrv_weights_file
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import sha256_file


@dataclass(frozen=True)
class ExtractorEntry:
    """How to build one registered extractor."""

    cls: type[FeatureExtractor]
    weights_file: Callable[[], WeightsFile]
    load: Callable[[Path], nn.Module]


EXTRACTORS: dict[str, ExtractorEntry] = {
    "inception": ExtractorEntry(InceptionExtractor, lambda: INCEPTION_WEIGHTS, load_inception),
    "xrv": ExtractorEntry(XrvExtractor, xrv_weights_file, load_xrv),
}

_LOADED: dict[tuple[str, str, str], FeatureExtractor] = {}


def get_extractor(
    name: str,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "auto",
    network: nn.Module | None = None,
    download: bool | None = None,
) -> FeatureExtractor:
    """A ready feature extractor.

    Args:
        name: ``inception`` or ``xrv``.
        weights: the weights file or a folder holding it (else ``$CXRLAB_WEIGHTS_DIR``,
            the library's cache, then a download).
        device: ``auto``, ``cpu``, ``cuda``...
        network: use this module instead of the pretrained one (no weights are looked
            for); it must follow the extractor's interface. For tests.
        download: allow downloading missing weights (None: unless ``$CXRLAB_OFFLINE``).

    Raises:
        MissingWeightsError: the weights cannot be had; the message names the file and URL.
        CxrlabError: unknown name.
    """
    if name not in EXTRACTORS:
        raise CxrlabError(f"unknown feature extractor {name!r}; use one of {sorted(EXTRACTORS)}")
    entry = EXTRACTORS[name]
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    if network is not None:
        return entry.cls(network, f"{name}:module:{module_digest(network)}", torch_device)
    path = locate_weights(entry.weights_file(), weights, download=download).resolve()
    key = (name, str(path), str(torch_device))
    if key not in _LOADED:
        identity = f"{name}:{path.name}:{sha256_file(path)[:16]}"
        _LOADED[key] = entry.cls(entry.load(path), identity, torch_device)
    return _LOADED[key]


def module_digest(network: nn.Module) -> str:
    """SHA-256 prefix of a module's class and state (names, shapes, values)."""
    digest = hashlib.sha256(type(network).__qualname__.encode())
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


__all__ = [
    "EXTRACTORS",
    "FeatureExtractor",
    "Features",
    "MissingWeightsError",
    "get_extractor",
    "locate_weights",
]
