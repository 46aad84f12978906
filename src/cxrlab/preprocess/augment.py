"""Classical augmentation with the parameters of Keras' ImageDataGenerator, on whole batches.

The thesis augmented with ``ImageDataGenerator(rotation_range, zoom_range,
width_shift_range, height_shift_range, shear_range, horizontal_flip,
fill_mode="nearest")``. Here each preset maps onto kornia's batched, per-sample
random affine warp, so the same code augments offline (CPU, into a packed
dataset) and online (on the training device, inside the loop):

* rotation: uniform in +-``rotation_range`` degrees;
* zoom: Keras draws x and y zoom independently in [1 - z, 1 + z] and a zoom
  above 1 shows *less* of the image, so the image scale is drawn in
  [1 / (1 + z), 1 / (1 - z)] per axis;
* shifts: uniform in +- the fraction of the width/height;
* shear: Keras' ``shear_range`` is an angle in **degrees**, so the thesis' 0.15 is
  a 0.15 degree shear, almost nothing; kept faithful on purpose;
* horizontal flip with probability 0.5 (puts the heart on the wrong side: the
  ``anatomical`` preset leaves it out);
* ``fill_mode="nearest"``: borders are replicated.

What differs between hospitals is less the pose than the acquisition: detector
response and post-processing (gamma, contrast), sharpness (blur), noise and
resolution. :class:`IntensityAugment` draws those per image (the ``acquisition``
preset); ``--augment mild+acquisition`` warps first, then changes the intensities.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxrlab.errors import CxrlabError


@dataclass(frozen=True)
class KerasAugment:
    """ImageDataGenerator's geometric parameters (same names and units)."""

    rotation_range: float
    zoom_range: float
    width_shift_range: float
    height_shift_range: float
    shear_range: float
    horizontal_flip: bool
    fill_mode: str = "nearest"

    def as_dict(self) -> dict:
        return asdict(self)


#: The thesis' presets: figure 4.5 (severe), figure 4.6 (mild), and mild without flips.
PRESETS: dict[str, KerasAugment] = {
    "severe": KerasAugment(30, 0.15, 0.2, 0.2, 0.15, True),
    "mild": KerasAugment(15, 0.15, 0.1, 0.1, 0.15, True),
    "anatomical": KerasAugment(15, 0.15, 0.1, 0.1, 0.15, False),
}

_PADDING = {"nearest": "border", "constant": "zeros", "reflect": "reflection"}


def get_preset(name: str) -> KerasAugment:
    try:
        return PRESETS[name]
    except KeyError:
        raise CxrlabError(
            f"unknown augmentation preset {name!r}; choose one of {sorted(PRESETS)}"
        ) from None


def build_augmenter(params: KerasAugment | str) -> nn.Module:
    """A kornia module that augments (B, C, H, W) float batches, each sample its own draw."""
    import kornia.augmentation as K

    if isinstance(params, str):
        params = get_preset(params)
    if params.fill_mode not in _PADDING:
        raise CxrlabError(
            f"fill_mode {params.fill_mode!r} is not supported; use {sorted(_PADDING)}"
        )
    z = params.zoom_range
    scale = (1.0 / (1.0 + z), 1.0 / (1.0 - z)) * 2 if z > 0 else None
    layers: list[nn.Module] = [
        K.RandomAffine(
            degrees=params.rotation_range,
            translate=(params.width_shift_range, params.height_shift_range),
            scale=scale,
            shear=params.shear_range or None,
            padding_mode=_PADDING[params.fill_mode],
            resample="bilinear",
            p=1.0,
        )
    ]
    if params.horizontal_flip:
        layers.append(K.RandomHorizontalFlip(p=0.5))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class IntensityAugment:
    """Acquisition changes drawn per image; each one applies with probability ``p``.

    A range of None leaves that change out. Images stay in [0, 1].

    Attributes:
        gamma: ``x ** g``, g drawn log-uniformly in the range (g > 1 darkens mid-tones;
            detector response and look-up tables differ between vendors).
        contrast: ``m + c (x - m)`` about the image's mean m, c drawn uniformly.
        blur_sigma: Gaussian blur, sigma drawn uniformly in pixels of a 256 px image
            (scaled with the side, so a 64 px image gets a quarter of it).
        noise_std: additive Gaussian noise, its standard deviation drawn uniformly (in
            units of the [0, 1] range).
        resolution: a resolution drop: down-scaled to this fraction of the side
            (uniform draw; area-averaged), then back up (bilinear).
        p: each change's probability, drawn independently per image.
    """

    gamma: tuple[float, float] | None = (0.7, 1.5)
    contrast: tuple[float, float] | None = (0.75, 1.3)
    blur_sigma: tuple[float, float] | None = (0.5, 2.0)
    noise_std: tuple[float, float] | None = (0.005, 0.03)
    resolution: tuple[float, float] | None = (0.4, 0.9)
    p: float = 0.5

    def __post_init__(self) -> None:
        for name in ("gamma", "contrast", "blur_sigma", "noise_std", "resolution"):
            bounds = getattr(self, name)
            if bounds is not None and not 0 < bounds[0] <= bounds[1]:
                raise CxrlabError(f"{name} range {bounds} must be positive and ordered")
        if self.resolution is not None and self.resolution[1] > 1:
            raise CxrlabError(f"resolution {self.resolution} must lie in (0, 1]")
        if not 0.0 <= self.p <= 1.0:
            raise CxrlabError(f"p must be in [0, 1], got {self.p}")

    def as_dict(self) -> dict:
        return asdict(self)


#: Intensity presets; ``acquisition`` is what differs between hospitals' machines.
INTENSITY_PRESETS: dict[str, IntensityAugment] = {"acquisition": IntensityAugment()}

#: Reference side of :attr:`IntensityAugment.blur_sigma` (pixels).
BLUR_REFERENCE_PX = 256


def _uniform(n: int, bounds: tuple[float, float], device: torch.device) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, device=device)


class IntensityShift(nn.Module):
    """(B, 1, H, W) images in [0, 1] -> the same with :class:`IntensityAugment`'s changes.

    The order follows the imaging chain: resolution drop, blur, contrast, gamma, noise.
    Draws come from torch's global generator (seed it, or wrap in :class:`BatchAugment`).
    """

    def __init__(self, params: IntensityAugment) -> None:
        super().__init__()
        self.params = params

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        params, n, device = self.params, len(images), images.device
        out = images.clamp(0, 1)
        side = min(images.shape[-2:])

        def chosen() -> torch.Tensor:  # (B,) bool: which images get the change
            return torch.rand(n, device=device) < params.p

        if params.resolution is not None:
            where = chosen()
            fractions = _uniform(n, params.resolution, device)
            low_px = (side * fractions).round().clamp_min(2).long()
            out = out.clone()
            # one down-and-up pass per drawn side (few distinct values), not per image
            for size in torch.unique(low_px[where]).tolist():
                group = torch.nonzero(where & (low_px == size)).flatten()
                small = F.interpolate(out[group], size=(size, size), mode="area")
                back = F.interpolate(small, size=out.shape[-2:], mode="bilinear", align_corners=False)  # fmt: skip
                out[group] = back.clamp(0, 1)
        if params.blur_sigma is not None:
            from kornia.filters import gaussian_blur2d

            where = chosen()
            sigma = _uniform(n, params.blur_sigma, device) * side / BLUR_REFERENCE_PX
            sigma = sigma.clamp_min(1e-3)
            kernel = 2 * math.ceil(3 * float(sigma.max())) + 1  # +-3 sigma of the widest
            blurred = gaussian_blur2d(out, kernel, torch.stack([sigma, sigma], dim=1))
            out = torch.where(where.view(-1, 1, 1, 1), blurred, out)
        if params.contrast is not None:
            where = chosen()
            factor = _uniform(n, params.contrast, device).view(-1, 1, 1, 1)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            contrasted = (mean + factor * (out - mean)).clamp(0, 1)
            out = torch.where(where.view(-1, 1, 1, 1), contrasted, out)
        if params.gamma is not None:
            where = chosen()
            low, high = (math.log(b) for b in params.gamma)
            gamma = torch.exp(_uniform(n, (low, high), device)).view(-1, 1, 1, 1)
            out = torch.where(where.view(-1, 1, 1, 1), out.clamp_min(0) ** gamma, out)
        if params.noise_std is not None:
            where = chosen()
            std = _uniform(n, params.noise_std, device).view(-1, 1, 1, 1)
            noisy = (out + std * torch.randn_like(out)).clamp(0, 1)
            out = torch.where(where.view(-1, 1, 1, 1), noisy, out)
        return out


#: Every ``--augment`` value of ``clf train``: a geometric preset, an intensity preset,
#: or both joined by ``+`` (geometry first).
AUGMENT_CHOICES = (
    "none",
    *PRESETS,
    *INTENSITY_PRESETS,
    *(f"{g}+{i}" for g in PRESETS for i in INTENSITY_PRESETS),
)

AugmentParams = KerasAugment | IntensityAugment | str | tuple


def parse_augment(params: AugmentParams) -> list[KerasAugment | IntensityAugment]:
    """The parts of an augmentation: a preset name (``mild``, ``acquisition``,
    ``mild+acquisition``), one parameter set, or a tuple of them, in the order applied.

    Raises:
        CxrlabError: naming an unknown preset and the choices.
    """
    if isinstance(params, (KerasAugment, IntensityAugment)):
        return [params]
    if isinstance(params, tuple):
        return [part for item in params for part in parse_augment(item)]
    parts: list[KerasAugment | IntensityAugment] = []
    for name in params.split("+"):
        if name in INTENSITY_PRESETS:
            parts.append(INTENSITY_PRESETS[name])
        elif name in PRESETS:
            parts.append(PRESETS[name])
        else:
            raise CxrlabError(
                f"unknown augmentation {params!r}; choose one of {', '.join(AUGMENT_CHOICES[1:])}"
            )
    return parts


class BatchAugment(nn.Module):
    """Seeded online augmentation for training loops.

    Call ``augment(images, step)``: the draw depends only on ``(seed, step)``, so a
    resumed run augments exactly as an uninterrupted one. Runs on the images' device.

    Args:
        params: what :func:`parse_augment` takes (a preset name such as ``mild`` or
            ``mild+acquisition``, parameters, or a tuple of them).
        seed: the stream's seed.
    """

    def __init__(self, params: AugmentParams, seed: int = 0) -> None:
        super().__init__()
        parts = parse_augment(params)
        #: the geometric parameters (None: intensity changes only)
        self.params = next((p for p in parts if isinstance(p, KerasAugment)), None)
        self.seed = seed
        self.augmenter = nn.Sequential(
            *(
                build_augmenter(p) if isinstance(p, KerasAugment) else IntensityShift(p)
                for p in parts
            )
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor, step: int) -> torch.Tensor:
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + step)
            return self.augmenter(images)


#: Lung segmentation's warp: the anatomical preset with black (constant) fill, so the
#: area brought in by the warp is "no lung" in the mask and black in the image.
SEGMENTATION_WARP = KerasAugment(15, 0.15, 0.1, 0.1, 0.15, False, fill_mode="constant")


class PairedAugment(nn.Module):
    """Seeded augmentation of images and their masks for segmentation training.

    The spatial warp is drawn once per sample and applied to the image and its mask
    together (they travel as two channels of one tensor through one kornia call), so
    they stay aligned exactly; the warped mask is thresholded at 0.5 to stay binary.
    A random gamma in [``1 / max_gamma``, ``max_gamma``] changes the image's contrast
    only. The draw depends only on ``(seed, step)``, as in :class:`BatchAugment`.

    Args:
        params: the warp (default :data:`SEGMENTATION_WARP`).
        max_gamma: the largest gamma (1: no contrast change).
        seed: the stream's seed.
    """

    def __init__(
        self, params: KerasAugment = SEGMENTATION_WARP, max_gamma: float = 1.4, seed: int = 0
    ) -> None:
        super().__init__()
        self.seed = seed
        self.max_gamma = max_gamma
        self.augmenter = build_augmenter(params)

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) images in [0, 1] and (B, 1, H, W) masks in {0, 1} -> both warped."""
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + step)
            warped = self.augmenter(torch.cat([images, masks.to(images.dtype)], dim=1))
            log_gamma = (torch.rand(len(images), 1, 1, 1, device=images.device) * 2 - 1) * (
                torch.log(torch.tensor(self.max_gamma))
            )
        out_images = warped[:, :1].clamp(0, 1) ** log_gamma.exp()
        out_masks = (warped[:, 1:] >= 0.5).to(masks.dtype)
        return out_images, out_masks
