"""Sliced Wasserstein distance between Laplacian-pyramid patches: a metric without a network.

Reference: Karras, Aila, Laine, Lehtinen. "Progressive Growing of GANs for Improved
Quality, Stability, and Variation", ICLR 2018, section 5 and appendix D. Each image
is split into a Laplacian pyramid (5-tap binomial filter, down to 16 px); from each
level random 7 x 7 patches are drawn, normalised per set (zero mean, unit standard
deviation over all patches), and the two sets of patches are compared by the sliced
Wasserstein distance: the mean absolute difference of their sorted projections on
random unit directions. Fine levels measure texture, coarse levels layout. The paper
reports values x 1e3, as does :func:`cxrlab.metrics.registry` (``swd``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cxrlab.errors import CxrlabError

#: The binomial filter of Burt & Adelson's pyramid, (1, 4, 6, 4, 1) / 16, applied separably.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


def _blur(images: torch.Tensor) -> torch.Tensor:
    """Separable 5 x 5 binomial blur of (N, C, H, W) images with mirrored borders."""
    channels = images.shape[1]
    kernel = _BINOMIAL.to(images)
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    horizontal = kernel.view(1, 1, 1, 5).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, 5, 1).repeat(channels, 1, 1, 1)
    blurred = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(blurred, vertical, groups=channels)


def pyramid_down(images: torch.Tensor) -> torch.Tensor:
    """Blur then keep every second row and column: (N, C, H, W) -> (N, C, H/2, W/2)."""
    return _blur(images)[:, :, ::2, ::2]


def pyramid_up(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Insert zeros between samples, blur, and multiply by 4 to keep the brightness."""
    n, c, h, w = images.shape
    upsampled = images.new_zeros((n, c, size[0], size[1]))
    upsampled[:, :, ::2, ::2] = images
    return _blur(upsampled) * 4.0


def laplacian_pyramid(images: torch.Tensor, min_size_px: int = 16) -> list[torch.Tensor]:
    """Laplacian pyramid, finest level first; the last level is the blurred remainder.

    Args:
        images: (N, C, H, W) float images (any range).
        min_size_px: stop once the smaller side would drop below this (16 in the paper).

    Returns:
        Levels of shape (N, C, H / 2^i, W / 2^i); their upsampled sum is the input.
    """
    levels = []
    current = images
    while min(current.shape[-2:]) // 2 >= min_size_px:
        smaller = pyramid_down(current)
        levels.append(current - pyramid_up(smaller, current.shape[-2:]))
        current = smaller
    levels.append(current)
    return levels


def patch_descriptors(
    level: torch.Tensor, n_patches: int, rng: np.random.Generator, patch_px: int = 7
) -> np.ndarray:
    """Random ``patch_px`` x ``patch_px`` patches of a pyramid level, normalised per channel.

    Args:
        level: (N, C, H, W) one pyramid level, H and W >= ``patch_px``.
        n_patches: patches to draw (images and positions uniformly, with replacement).
        rng: the random source; the same seed on same-shaped levels gives the same patches.
        patch_px: side of a patch (7 in the paper).

    Returns:
        (n_patches, C * patch_px^2) float64, each channel with zero mean and unit std
        over all patches (a flat channel stays at zero).
    """
    n, channels, height, width = level.shape
    if height < patch_px or width < patch_px:
        raise CxrlabError(
            f"SWD needs pyramid levels of at least {patch_px} px, got {height}x{width}"
        )
    image = torch.from_numpy(rng.integers(0, n, n_patches))
    top = torch.from_numpy(rng.integers(0, height - patch_px + 1, n_patches))
    left = torch.from_numpy(rng.integers(0, width - patch_px + 1, n_patches))
    offsets = torch.arange(patch_px)
    rows = (top[:, None] + offsets[None, :])[:, :, None]  # (P, 7, 1)
    cols = (left[:, None] + offsets[None, :])[:, None, :]  # (P, 1, 7)
    patches = level.permute(0, 2, 3, 1)[image[:, None, None], rows, cols]  # (P, 7, 7, C)
    patches = patches.permute(0, 3, 1, 2).to(torch.float64).numpy()  # (P, C, 7, 7)
    mean = patches.mean(axis=(0, 2, 3), keepdims=True)
    std = patches.std(axis=(0, 2, 3), keepdims=True)
    patches = (patches - mean) / np.where(std > 0, std, 1.0)
    return patches.reshape(n_patches, -1)


def sliced_wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    n_directions: int = 512,
    directions_per_block: int = 128,
) -> float:
    """Sliced 1-Wasserstein distance between two equal-size point sets.

    Args:
        a: (P, D) points.
        b: (P, D) points.
        rng: draws the random unit directions (shared by both sets).
        n_directions: directions averaged over (4 x 128 in the paper).
        directions_per_block: directions projected at once (bounds memory to P x block).

    Returns:
        Mean over directions of the mean absolute difference of sorted projections.
    """
    if a.shape != b.shape:
        raise CxrlabError(f"sliced Wasserstein needs equal-size sets, got {a.shape} and {b.shape}")
    total, done = 0.0, 0
    while done < n_directions:
        count = min(directions_per_block, n_directions - done)
        directions = rng.standard_normal((a.shape[1], count))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        projected_a = np.sort(a @ directions, axis=0)
        projected_b = np.sort(b @ directions, axis=0)
        total += float(np.abs(projected_a - projected_b).mean(axis=0).sum())
        done += count
    return total / n_directions


def sliced_wasserstein_distance(
    real_images: torch.Tensor,
    fake_images: torch.Tensor,
    *,
    patches_per_image: int = 128,
    max_patches: int = 65536,
    min_size_px: int = 16,
    n_directions: int = 512,
    seed: int = 0,
) -> dict[int, float]:
    """SWD per Laplacian-pyramid level between real and generated images.

    Args:
        real_images: (N, C, H, W) float images in [0, 1].
        fake_images: (M, C, H, W) float images in [0, 1], the same C, H, W.
        patches_per_image: patches per image of the smaller set (128 in the paper).
        max_patches: cap on patches per level and set (memory: 65536 x 49 x 8 B = 26 MB).
        min_size_px: coarsest level's side.
        n_directions: random projection directions per level.
        seed: the same seed draws the same patch positions for both sets (so identical
            sets give exactly 0) and the same directions.

    Returns:
        ``{level side in px: distance}``, finest first; raw values (multiply by 1e3
        for the paper's tables).
    """
    if real_images.ndim != 4 or real_images.shape[1:] != fake_images.shape[1:]:
        raise CxrlabError(
            f"SWD needs (N, C, H, W) images of one size, got {tuple(real_images.shape)} and "
            f"{tuple(fake_images.shape)}"
        )
    n_patches = min(min(len(real_images), len(fake_images)) * patches_per_image, max_patches)
    real_levels = laplacian_pyramid(real_images.to(torch.float64), min_size_px)
    fake_levels = laplacian_pyramid(fake_images.to(torch.float64), min_size_px)
    distances = {}
    for index, (real_level, fake_level) in enumerate(zip(real_levels, fake_levels, strict=True)):
        level_seed = (seed, index)
        real_patches = patch_descriptors(real_level, n_patches, np.random.default_rng(level_seed))
        fake_patches = patch_descriptors(fake_level, n_patches, np.random.default_rng(level_seed))
        distances[int(real_level.shape[-2])] = sliced_wasserstein(
            real_patches, fake_patches, np.random.default_rng((seed, index, 1)), n_directions
        )
    return distances
