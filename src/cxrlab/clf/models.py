"""COVID-19 classifiers by name, each taking grey images in [0, 1].

Every network is a :class:`Classifier`: ``backbone`` turns prepared images into
feature maps (the layer Grad-CAM explains), ``head`` turns those into one logit
(sigmoid, binary cross-entropy) or two (softmax, cross-entropy). ``prepare`` makes
a grey batch what the backbone expects, so data, augmentation and explanations all
work on the same [0, 1] images:

* ``simple-cnn``: the thesis baseline. Convolutions of 128, 64, 32 and 32 filters
  (3 x 3, same padding, ReLU, each followed by a 2 x 2 max-pool), a dense layer of
  128 and the output. Inputs stay in [0, 1] (Keras' ``rescale=1/255``). The thesis
  put a softmax over a single neuron, whose output is always 1; here one logit goes
  with a sigmoid, two with a softmax.
* ``resnet18``: torchvision's ResNet-18. From scratch, its first convolution takes
  one channel and inputs are standardised with ImageNet's grey-averaged statistics.
  With ``pretrained="imagenet"`` the grey image is repeated into three channels and
  normalised with ImageNet's per-channel mean and std, exactly what the weights saw.
* ``densenet121-xrv``: torchxrayvision's DenseNet-121 trained on 8 public chest
  X-ray sets (``densenet121-res224-all``). One input channel, [-1024, 1024]
  scaling (torchxrayvision's convention); with its weights, images are resized to
  the 224 px they were trained at.

``standardize="zscore"`` (``clf train --standardize``) gives every image, after any
resize, zero mean and unit sd of its own before the backbone's scaling, then puts it
back at ImageNet's grey mean and sd, so each backbone's normalisation applies unchanged
(ResNet-18 from scratch then sees exactly the z-scores). ``standardize="histogram"``
matches each image's histogram to a reference, the mean quantile function of the real
training images, kept as a buffer in the weights. Either is part of ``prepare`` and of
the :class:`ModelSpec` every checkpoint stores, so training, validation, ``clf
evaluate``, Grad-CAM and the shortcut probes all apply it the same way.

Weights are found by :func:`pretrained_weights`: a local file, ``$CXRLAB_WEIGHTS_DIR``,
the library's cache, then a download (not when ``$CXRLAB_OFFLINE`` is set); when
none works, :class:`MissingWeightsError` names the file, its URL and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrlab.clf.config import ARCHS, HEADS, STANDARDIZATIONS
from cxrlab.data.loader import IMAGENET_GREY_MEAN, IMAGENET_GREY_STD, normalize_batch
from cxrlab.errors import CxrlabError
from cxrlab.metrics.extractors.weights import (
    OFFLINE_ENV,
    WEIGHTS_DIR_ENV,
    MissingWeightsError,
    WeightsFile,
    locate_weights,
)

if TYPE_CHECKING:
    from cxrlab.clf.data import ImageSet

#: ImageNet's per-channel statistics (torchvision's pretrained weights expect them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
XRV_INPUT_PX = 224
SIMPLE_CNN_FILTERS = (128, 64, 32, 32)
SIMPLE_CNN_DENSE = 128
#: The smallest per-image sd divided by in :func:`zscore` (a flat image stays flat).
ZSCORE_MIN_SD = 1e-3


def zscore(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> each image with zero mean and unit sd over its pixels, re-expressed
    at ImageNet's grey mean and sd (still about [0, 1] for a typical image), so that any
    contrast or brightness change of an image (``a x + b``, a > 0) gives the same output.
    """
    flat = images.float().flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    sd = flat.std(dim=1, correction=0).clamp_min(ZSCORE_MIN_SD).view(-1, 1, 1, 1)
    return ((images - mean) / sd * IMAGENET_GREY_STD + IMAGENET_GREY_MEAN).to(images.dtype)


#: Points of the reference quantile function of ``standardize="histogram"``.
HISTOGRAM_QUANTILES = 256


def image_quantiles(images: torch.Tensor, n_quantiles: int = HISTOGRAM_QUANTILES) -> torch.Tensor:
    """(B, C, H, W) -> (B, n_quantiles) each image's grey level at the fractions
    0, 1/(n-1), ..., 1 of its sorted pixels (linear between neighbours)."""
    ordered = images.float().flatten(1).sort(dim=1).values
    index = torch.linspace(0, ordered.shape[1] - 1, n_quantiles, device=images.device)
    low = index.floor().long().clamp(max=ordered.shape[1] - 1)
    high = (low + 1).clamp(max=ordered.shape[1] - 1)
    fraction = index - low
    return ordered[:, low] * (1 - fraction) + ordered[:, high] * fraction


def match_histograms(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> each image's grey levels replaced so that its histogram is the
    ``reference`` quantile function ((K,), ascending, e.g. :func:`reference_quantiles`).

    A pixel goes to the reference's value at its mid-rank in its own image (ties share
    one rank, so a flat region stays flat): any strictly increasing change of an
    image's grey levels (gamma, contrast, brightness) gives the same output.
    """
    flat = images.float().flatten(1)
    ordered = flat.sort(dim=1).values
    below = torch.searchsorted(ordered, flat, right=False)
    up_to = torch.searchsorted(ordered, flat, right=True)
    position = (below + up_to - 1).float() / (2 * max(flat.shape[1] - 1, 1))  # in [0, 1]
    reference = reference.to(flat)
    index = position * (reference.numel() - 1)
    low = index.floor().long().clamp(0, reference.numel() - 2)
    fraction = index - low
    out = reference[low] * (1 - fraction) + reference[low + 1] * fraction
    return out.view_as(images).to(images.dtype)


@torch.no_grad()
def reference_quantiles(batches) -> torch.Tensor:
    """(K,) the mean of the images' quantile functions (their 1-D Wasserstein barycentre):
    the histogram ``standardize="histogram"`` matches every image to.

    Args:
        batches: an iterable of (B, 1, H, W) batches in [0, 1] (the real training images).
    """
    total, count = torch.zeros(HISTOGRAM_QUANTILES, dtype=torch.float64), 0
    for batch in batches:
        total += image_quantiles(batch).double().sum(dim=0).cpu()
        count += len(batch)
    if count == 0:
        raise CxrlabError("a histogram reference needs at least one image")
    return (total / count).float()


def histogram_reference(images: ImageSet, batch_size: int = 256) -> torch.Tensor:
    """(K,) :func:`reference_quantiles` of the real images of ``images`` (never synthetic,
    augmented or oversampled copies): the training set's typical histogram."""
    real = np.nonzero(images.origins == "real")[0]
    return reference_quantiles(
        images.batch(real[i : i + batch_size]) for i in range(0, len(real), batch_size)
    )


class Classifier(nn.Module):
    """(B, 1, H, W) grey images in [0, 1] -> (B, K) logits, K = 1 or 2.

    Args:
        arch: the registered name.
        backbone: (B, C_in, H', W') prepared images -> (B, C, h, w) feature maps.
        head: (B, C, h, w) -> (B, K) logits.
        normalize: ``unit``, ``imagenet``, ``imagenet-rgb`` or ``xrv`` (see :meth:`prepare`).
        input_size_px: resize inputs to this side first (None: keep the data's size).
        standardize: ``none``, ``zscore`` (per image, :func:`zscore`) or ``histogram``
            (:func:`match_histograms` to the ``histogram_reference`` buffer, which is
            saved with the weights), before ``normalize``.
    """

    def __init__(
        self,
        arch: str,
        backbone: nn.Module,
        head: nn.Module,
        *,
        normalize: str,
        input_size_px: int | None = None,
        standardize: str = "none",
    ) -> None:
        super().__init__()
        self.arch = arch
        self.standardize = "none"
        self.set_standardize(standardize)
        self.backbone = backbone
        self.head = head
        self.normalize = normalize
        self.input_size_px = input_size_px
        self.backbone_frozen = False
        last_linear = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
        self.n_logits = last_linear.out_features
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("rgb_mean", mean, persistent=False)
        self.register_buffer("rgb_std", std, persistent=False)

    def set_standardize(self, standardize: str) -> None:
        """Choose the per-image standardisation; ``histogram`` adds the (persistent)
        ``histogram_reference`` buffer, a flat [0, 1] ramp until a reference is set
        (:meth:`set_histogram_reference`) or loaded with the weights."""
        if standardize not in STANDARDIZATIONS:
            raise CxrlabError(
                f"unknown --standardize {standardize!r}; choose one of {', '.join(STANDARDIZATIONS)}"
            )
        self.standardize = standardize
        if standardize == "histogram" and "histogram_reference" not in self._buffers:
            self.register_buffer("histogram_reference", torch.linspace(0, 1, HISTOGRAM_QUANTILES))

    def set_histogram_reference(self, reference: torch.Tensor) -> None:
        """(K,) ascending grey levels in [0, 1] (:func:`reference_quantiles`)."""
        self.histogram_reference.copy_(reference.to(self.histogram_reference))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> the backbone's input (resized, scaled, 1 or 3 channels)."""
        if images.ndim != 4 or images.shape[1] != 1:
            raise CxrlabError(f"expected (B, 1, H, W) grey images, got {tuple(images.shape)}")
        if self.input_size_px and images.shape[-2:] != (self.input_size_px, self.input_size_px):
            images = F.interpolate(
                images,
                size=(self.input_size_px, self.input_size_px),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        if self.standardize == "zscore":
            images = zscore(images)
        elif self.standardize == "histogram":
            images = match_histograms(images, self.histogram_reference)
        if self.normalize == "imagenet-rgb":
            return (images.expand(-1, 3, -1, -1) - self.rgb_mean) / self.rgb_std
        return normalize_batch(images, self.normalize)

    def forward(self, images: torch.Tensor, *, from_features: bool = False) -> torch.Tensor:
        """Logits of (B, 1, H, W) grey images, or (``from_features``) of the backbone's
        maps of them (:meth:`features`): the head alone, for a frozen backbone."""
        if from_features:
            return self.head(images)
        return self.head(self.features(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) grey images in [0, 1] -> (B, C, h, w) the backbone's feature maps;
        ``head`` of these is the logits.

        A frozen backbone run without autograd goes through :meth:`_inference_backbone`:
        the same maps (to float rounding), with each BatchNorm folded into the
        convolution before it.
        """
        backbone = self.backbone
        if self.backbone_frozen and not torch.is_grad_enabled():
            backbone = self._inference_backbone()
        return backbone(self.prepare(images))

    def _inference_backbone(self) -> nn.Module:
        """The frozen backbone with every convolution -> BatchNorm pair folded into one
        convolution (fixed statistics make BatchNorm an affine map per channel): one
        pass over each feature map instead of two, about 1.2x faster for ResNet-18 on a
        CPU. Built once and rebuilt whenever a weight changes (loading a checkpoint,
        moving devices); kept out of ``state_dict`` (not a registered submodule).
        """
        tensors = [*self.backbone.parameters(), *self.backbone.buffers()]
        key = tuple((t.device, t.data_ptr(), t._version) for t in tensors)
        cached = self.__dict__.get("_folded")
        if cached is not None and cached[0] == key:
            return cached[1]
        from torch.fx.experimental.optimization import fuse

        try:
            folded = fuse(self.backbone, inplace=False)
        except Exception:  # noqa: BLE001 - a backbone fx cannot trace runs as it is
            folded = self.backbone
        channels_last = any(
            p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last)
            and not p.is_contiguous()
            for p in self.backbone.parameters()
        )  # fmt: skip
        if channels_last:
            folded = folded.to(memory_format=torch.channels_last)
        self.__dict__["_folded"] = (key, folded.eval().requires_grad_(False))
        return folded

    # -------------------------------------------------------------- outputs
    def covid_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K) logits -> (B,) probability of COVID-19."""
        logits = logits.float()
        if self.n_logits == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)[:, 1]

    def covid_score(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K) logits -> (B,) log-odds of COVID-19 (the score Grad-CAM explains)."""
        if self.n_logits == 1:
            return logits[:, 0]
        return logits[:, 1] - logits[:, 0]

    def loss(
        self,
        logits: torch.Tensor,
        covid: torch.Tensor,
        class_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean loss of (B, K) logits against (B,) 0/1 labels, weighted per class if asked.

        With ``class_weights`` (2,) the mean is sum(w_i l_i) / sum(w_i), w_i the weight
        of sample i's class, for either head (as PyTorch's weighted cross-entropy).
        """
        logits = logits.float()
        if self.n_logits == 1:
            per_sample = F.binary_cross_entropy_with_logits(
                logits[:, 0], covid.float(), reduction="none"
            )
        else:
            per_sample = F.cross_entropy(logits, covid.long(), reduction="none")
        if class_weights is None:
            return per_sample.mean()
        weights = class_weights.to(per_sample.device)[covid.long()]
        return (per_sample * weights).sum() / weights.sum()

    # -------------------------------------------------------------- freezing
    def freeze_backbone(self) -> None:
        """Train only the head: the backbone's weights and normalisation statistics stay fixed."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()  # BatchNorm keeps its pretrained running statistics
        return self


# ------------------------------------------------------------------ weights
def _torch_hub_cache() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_file() -> WeightsFile:
    """torchvision's ResNet-18 ImageNet weights (``IMAGENET1K_V1``)."""
    from torchvision.models import ResNet18_Weights

    url = ResNet18_Weights.IMAGENET1K_V1.url
    return WeightsFile("resnet18", url.rsplit("/", 1)[-1], url, _torch_hub_cache)


def xrv_weights_file() -> WeightsFile:
    from cxrlab.metrics.extractors.xrv import xrv_weights_file as weights_file

    return weights_file()


#: (arch, pretrained name) -> its weights file.
WEIGHTS: dict[tuple[str, str], Callable[[], WeightsFile]] = {
    ("resnet18", "imagenet"): imagenet_weights_file,
    ("densenet121-xrv", "xrv"): xrv_weights_file,
}


def pretrained_weights(arch: str, pretrained: str, *, download: bool | None = None) -> Path | None:
    """The weights file for ``arch`` and ``pretrained`` (None for ``none``).

    Args:
        arch: a name of :data:`ARCHS`.
        pretrained: ``none``, ``imagenet``, ``xrv`` or a path to a local weights file.
        download: allow a download into the library's cache (None: unless ``$CXRLAB_OFFLINE``).

    Raises:
        MissingWeightsError: the file is not on this machine and cannot be downloaded.
        CxrlabError: the pretrained name does not fit the architecture.
    """
    if pretrained == "none":
        return None
    names = {name for a, name in WEIGHTS if a == arch}
    if pretrained not in names and pretrained not in {"imagenet", "xrv"}:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"--pretrained {pretrained}: no such file. Pass a weights file, or one of "
                f"{', '.join(sorted(names | {'none'}))} for {arch}"
            )
        return path
    if pretrained not in names:
        raise CxrlabError(
            f"--pretrained {pretrained} does not fit --arch {arch}; use "
            f"{' or '.join(sorted(names | {'none'}))}"
        )
    spec = WEIGHTS[(arch, pretrained)]()
    try:
        return locate_weights(spec, None, download=download)
    except MissingWeightsError as error:
        raise MissingWeightsError(
            f"--arch {arch} --pretrained {pretrained} needs {spec.filename}, which is not in "
            f"${WEIGHTS_DIR_ENV} or {spec.library_cache()} and could not be downloaded "
            f"(offline, or ${OFFLINE_ENV} set). Fix: download {spec.url} on a machine with "
            f"internet and pass --pretrained /path/to/{spec.filename}, or put it in "
            f"${WEIGHTS_DIR_ENV}; or train from scratch with --pretrained none",
            spec,
        ) from error


def _load_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign files
        raise CxrlabError(
            f"cannot read {path} as {what} weights ({type(error).__name__}: {error})"
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CxrlabError(f"{path} holds no state dict of {what} weights")
    return state


# ------------------------------------------------------------------ architectures
def _simple_cnn(size_px: int, n_logits: int) -> Classifier:
    layers: list[nn.Module] = []
    channels = 1
    for index, filters in enumerate(SIMPLE_CNN_FILTERS):
        layers += [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU()]
        if index < len(SIMPLE_CNN_FILTERS) - 1:
            layers.append(nn.MaxPool2d(2))
        channels = filters
    side = size_px
    for _ in SIMPLE_CNN_FILTERS:
        side //= 2
    if side < 1:
        raise CxrlabError(f"simple-cnn needs images of at least 16 px, got {size_px}")
    # The last pool belongs to the head so Grad-CAM sees the finer map of the last convolution.
    head = nn.Sequential(
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * side * side, SIMPLE_CNN_DENSE),
        nn.ReLU(inplace=True),
        nn.Linear(SIMPLE_CNN_DENSE, n_logits),
    )
    return Classifier("simple-cnn", nn.Sequential(*layers), head, normalize="unit")


def _resnet18(n_logits: int, weights: Path | None, rgb_input: bool) -> Classifier:
    """ResNet-18; ``rgb_input``: the ImageNet layout (grey repeated to 3 channels)."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights is not None:
        state = _load_state_dict(weights, "torchvision ResNet-18")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if set(missing) - {"fc.weight", "fc.bias"} or unexpected:
            raise CxrlabError(
                f"{weights} does not hold torchvision ResNet-18 weights "
                f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )
    if not rgb_input:
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    backbone = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, n_logits))
    return Classifier(
        "resnet18", backbone, head, normalize="imagenet-rgb" if rgb_input else "imagenet"
    )


def _densenet121_xrv(n_logits: int, weights: Path | None, resize: bool) -> Classifier:
    import torchxrayvision as xrv

    if weights is not None:
        from cxrlab.metrics.extractors.xrv import load_xrv

        densenet = load_xrv(weights).densenet
    else:
        densenet = xrv.models.DenseNet(weights=None)
    backbone = nn.Sequential(densenet.features, nn.ReLU(inplace=False))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, n_logits))
    return Classifier(
        "densenet121-xrv",
        backbone,
        head,
        normalize="xrv",
        input_size_px=XRV_INPUT_PX if resize else None,
    )


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`build_classifier` needs; stored in every checkpoint.

    Attributes:
        arch: a name of :data:`ARCHS`.
        size_px: side of the training images.
        head: ``logit`` or ``softmax``.
        pretrained: ``none``, ``imagenet``, ``xrv`` or a weights file.
        standardize: ``none``, ``zscore`` or ``histogram`` (per image, inside
            :meth:`Classifier.prepare`); checkpoints written before it existed read as
            ``none``.
    """

    arch: str
    size_px: int
    head: str = "logit"
    pretrained: str = "none"
    standardize: str = "none"

    def as_dict(self) -> dict:
        return {
            "arch": self.arch,
            "size_px": self.size_px,
            "head": self.head,
            "pretrained": self.pretrained,
            "standardize": self.standardize,
        }


def build_classifier(spec: ModelSpec, *, load_weights: bool = True) -> Classifier:
    """A classifier per ``spec``.

    Args:
        spec: architecture, image size, head and pretrained weights.
        load_weights: read the pretrained file (False: the same network, random
            weights; for rebuilding a trained model whose checkpoint holds every weight).
    """
    if spec.arch not in ARCHS:
        raise CxrlabError(f"unknown --arch {spec.arch!r}; choose one of {', '.join(ARCHS)}")
    if spec.head not in HEADS:
        raise CxrlabError(f"unknown --head {spec.head!r}; choose logit or softmax")
    if spec.standardize not in STANDARDIZATIONS:
        raise CxrlabError(
            f"unknown --standardize {spec.standardize!r}; "
            f"choose one of {', '.join(STANDARDIZATIONS)}"
        )
    n_logits = 1 if spec.head == "logit" else 2
    model = _build(spec, n_logits, load_weights)
    model.set_standardize(spec.standardize)  # the architectures' builders leave it "none"
    return model


def _build(spec: ModelSpec, n_logits: int, load_weights: bool) -> Classifier:
    pretrained = spec.pretrained
    if pretrained == "auto":
        pretrained = "xrv" if spec.arch == "densenet121-xrv" else "none"
    if spec.arch == "simple-cnn":
        if pretrained != "none":
            raise CxrlabError("simple-cnn has no pretrained weights; use --pretrained none")
        return _simple_cnn(spec.size_px, n_logits)
    uses_weights = pretrained != "none"
    weights = pretrained_weights(spec.arch, pretrained) if load_weights else None
    if spec.arch == "resnet18":
        return _resnet18(n_logits, weights, rgb_input=uses_weights)
    return _densenet121_xrv(n_logits, weights, resize=uses_weights)
