"""Diversity: mean MS-SSIM over random pairs of images of one set (collapse detector).

Reference: Odena, Olah, Shlens. "Conditional Image Synthesis with Auxiliary Classifier
GANs", ICML 2017, section 4.2, using the MS-SSIM of Wang, Simoncelli, Bovik,
"Multiscale structural similarity for image quality assessment", 2003.

MS-SSIM is a similarity: the higher the mean over pairs, the less diverse the set. A
generator that collapsed to a handful of images scores well above the real images'
own value, which is computed the same way beside it.

Scales: MS-SSIM's five scales need images of at least 176 px with its 11-px window;
smaller images use as many scales as fit (64 px: 3, 128 px: 4), with the first weights
of Wang et al. renormalised to sum to 1. Negative contrast terms are clipped at 0
(torchmetrics' ``normalize="relu"``) so that fractional powers stay defined.
"""

from __future__ import annotations

import numpy as np
import torch

from cxrlab.errors import CxrlabError

#: Wang et al. 2003's weights of the five scales, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_PX = 11


def ms_ssim_scales(height: int, width: int, window_px: int = WINDOW_PX) -> tuple[float, ...]:
    """The scale weights usable for images of this size (see the module doc).

    Uses the most scales (up to 5) for which the coarsest scale is still at least one
    window wide and torchmetrics' own size check passes; all five keep Wang et al.'s
    weights unchanged, fewer are renormalised to sum to 1.
    """
    side = min(height, width)
    for count in range(len(MS_SSIM_WEIGHTS), 0, -1):
        coarsest = side // 2 ** (count - 1)
        torchmetrics_ok = side // max(1, count - 1) ** 2 > window_px - 1 and side >= 2**count
        if coarsest >= window_px and torchmetrics_ok:
            if count == len(MS_SSIM_WEIGHTS):
                return MS_SSIM_WEIGHTS
            weights = np.asarray(MS_SSIM_WEIGHTS[:count])
            return tuple(float(w) for w in weights / weights.sum())
    raise CxrlabError(f"MS-SSIM needs images of at least {window_px} px, got {height}x{width}")


def random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(n_pairs, 2) index pairs (i, j) with i != j, uniformly at random (with replacement)."""
    if n < 2:
        raise CxrlabError(f"diversity needs at least 2 images, got {n}")
    first = rng.integers(0, n, n_pairs)
    second = (first + rng.integers(1, n, n_pairs)) % n  # never equal to first
    return np.stack([first, second], axis=1)


def pairwise_ms_ssim(
    images: torch.Tensor, pairs: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """MS-SSIM of given pairs of images of one set.

    Args:
        images: (N, C, H, W) float images in [0, 1].
        pairs: (P, 2) integer indices into ``images``.
        batch_size: pairs per call (default: about 4 M pixels per call, e.g. 1024 pairs
            of 64-px images).

    Returns:
        (P,) float64 similarities in [0, 1] (1: identical images).
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    betas = ms_ssim_scales(*images.shape[-2:])
    if batch_size is None:
        batch_size = max(1, 2**22 // (images.shape[-2] * images.shape[-1] * images.shape[1]))
    values = []
    for start in range(0, len(pairs), batch_size):
        chunk = torch.from_numpy(pairs[start : start + batch_size])
        first = images[chunk[:, 0]].to(torch.float32)
        second = images[chunk[:, 1]].to(torch.float32)
        score = multiscale_structural_similarity_index_measure(
            first, second, data_range=1.0, kernel_size=WINDOW_PX, betas=betas, reduction="none"
        )
        values.append(score.reshape(-1).to(torch.float64).cpu().numpy())
    return np.concatenate(values)


def mean_ms_ssim(images: torch.Tensor, n_pairs: int = 1000, seed: int = 0) -> float:
    """Mean MS-SSIM over ``n_pairs`` random pairs of distinct images of one set.

    Args:
        images: (N, C, H, W) float images in [0, 1], N >= 2.
        n_pairs: random pairs (with replacement); all N (N - 1) ordered pairs when fewer.
        seed: seed of the pair choice.

    Returns:
        The mean similarity in [0, 1]: higher means less diverse.
    """
    if images.ndim != 4:
        raise CxrlabError(f"diversity needs (N, C, H, W) images, got {tuple(images.shape)}")
    n = len(images)
    if n >= 2 and n * (n - 1) <= n_pairs:
        first, second = np.nonzero(~np.eye(n, dtype=bool))
        pairs = np.stack([first, second], axis=1)
    else:
        pairs = random_pairs(n, n_pairs, np.random.default_rng(seed))
    return float(pairwise_ms_ssim(images, pairs).mean())
