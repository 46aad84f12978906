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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
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


class BatchAugment(nn.Module):
    """Seeded online augmentation for training loops.

    Call ``augment(images, step)``: the draw depends only on ``(seed, step)``, so a
    resumed run augments exactly as an uninterrupted one. Runs on the images' device.
    """

    def __init__(self, params: KerasAugment | str, seed: int = 0) -> None:
        super().__init__()
        self.params = get_preset(params) if isinstance(params, str) else params
        self.seed = seed
        self.augmenter = build_augmenter(self.params)

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
