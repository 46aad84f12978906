"""Kernel Inception Distance: an unbiased MMD^2 that, unlike FID, does not grow as sets shrink.

Reference: Bińkowski, Sutherland, Arbel, Gretton. "Demystifying MMD GANs", ICLR 2018.
The kernel is the cubic polynomial ``k(x, y) = (x . y / d + 1)^3`` on d-dimensional
features; the estimate is averaged over random equal-size subsets of both sets.
"""

from __future__ import annotations

import numpy as np

from cxrlab.errors import CxrlabError
from cxrlab.metrics.frechet import ArrayLike, as_float64


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0
) -> np.ndarray:
    """``(x @ y.T / d + coef) ** degree`` for (N, d) and (M, d) float64 arrays -> (N, M)."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD^2 estimate between two equal-size samples under the polynomial kernel.

    Args:
        x: (m, d) float64 features, m >= 2.
        y: (m, d) float64 features.
        degree: polynomial degree (3 in KID).

    Returns:
        ``sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (m (m-1))
        - 2 sum_{i,j} k(x_i, y_j) / m^2``; its expectation is 0 when x and y share a
        distribution, so single estimates may be slightly negative.
    """
    m = x.shape[0]
    k_xx = polynomial_kernel(x, x, degree)
    k_yy = polynomial_kernel(y, y, degree)
    k_xy = polynomial_kernel(x, y, degree)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_inception_distance(
    real_features: ArrayLike,
    fake_features: ArrayLike,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between two sets of features: mean and standard deviation over random subsets.

    Args:
        real_features: (N, D) features of real images.
        fake_features: (M, D) features of generated images.
        n_subsets: number of random subset pairs.
        subset_size: images per subset; reduced to ``min(N, M)`` when larger.
        seed: seed of the subset choice (without replacement within a subset).

    Returns:
        ``(mean, std)`` of the unbiased MMD^2 estimates (std with divisor 1). When the
        subset is the whole of both sets, every estimate is the same and std is 0.
    """
    real = as_float64(real_features, "real features")
    fake = as_float64(fake_features, "fake features")
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise CxrlabError(f"KID needs (N, D) and (M, D) features, got {real.shape}, {fake.shape}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise CxrlabError(
            f"KID needs at least 2 images in each set, got {real.shape[0]}, {fake.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    estimates = np.empty(n_subsets, dtype=np.float64)
    for i in range(n_subsets):
        x = real[rng.choice(real.shape[0], m, replace=False)]
        y = fake[rng.choice(fake.shape[0], m, replace=False)]
        estimates[i] = mmd2_unbiased(x, y)
    return float(estimates.mean()), float(estimates.std())
