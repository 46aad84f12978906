"""Fréchet distance between Gaussians fitted to features (FID when the features are Inception's).

Reference: Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter. "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017; the
distance itself is Dowson & Landau, "The Fréchet distance between multivariate
normal distributions", J. Multivariate Anal. 1982:

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

Everything is computed in float64: with a few hundred images the covariance of
2048-d features is rank deficient and float32 loses the small eigenvalues.
"""

from __future__ import annotations

import numpy as np
import torch

from cxrlab.errors import CxrlabError

ArrayLike = np.ndarray | torch.Tensor


def as_float64(array: ArrayLike, name: str = "features") -> np.ndarray:
    """A float64 numpy copy of an array or tensor; raises if it holds NaN or infinity."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    result = np.asarray(array, dtype=np.float64)
    if not np.isfinite(result).all():
        raise CxrlabError(f"{name} contain NaN or infinite values; the images or network diverged")
    return result


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, the Gaussian that FID compares.

    Args:
        features: (N, D) features of N >= 2 images, any float dtype.

    Returns:
        ``(mu, sigma)``: (D,) mean and (D, D) unbiased covariance (divisor N - 1), float64.
    """
    features = as_float64(features)
    if features.ndim != 2 or features.shape[0] < 2:
        raise CxrlabError(f"feature statistics need (N >= 2, D) features, got {features.shape}")
    mu = features.mean(axis=0)
    centred = features - mu
    sigma = centred.T @ centred / (features.shape[0] - 1)
    return mu, sigma


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``tr((S1 S2)^(1/2))`` is the sum of the square roots of the eigenvalues of the
    symmetric matrix ``S1^(1/2) S2 S1^(1/2)`` (which has the eigenvalues of ``S1 S2``),
    so no complex square root is needed; eigenvalues below zero by rounding count as 0.

    Args:
        mu1: (D,) mean of the first Gaussian.
        sigma1: (D, D) covariance of the first Gaussian (symmetric, PSD).
        mu2: (D,) mean of the second Gaussian.
        sigma2: (D, D) covariance of the second Gaussian.

    Returns:
        The distance squared (FID's convention); rounding below zero is reported as 0.

    Example:
        With equal covariances it is the squared distance between the means.
    """
    mu1, mu2 = as_float64(mu1, "mu1"), as_float64(mu2, "mu2")
    sigma1, sigma2 = as_float64(sigma1, "sigma1"), as_float64(sigma2, "sigma2")
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,):
        raise CxrlabError(f"means must both be (D,), got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise CxrlabError(
            f"covariances must both be ({dim}, {dim}), got {sigma1.shape} and {sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    return max(0.0, mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt)


def fid_from_features(real_features: ArrayLike, fake_features: ArrayLike) -> float:
    """FID between two sets of features: Gaussian fit to each, then :func:`frechet_distance`.

    Args:
        real_features: (N, D) features of real images.
        fake_features: (M, D) features of generated images (same D).

    Returns:
        The Fréchet distance; 0 for identical sets. Biased upward for small N, M
        (Chong & Forsyth 2020), so compare values only at equal image counts.
    """
    mu_real, sigma_real = feature_statistics(real_features)
    mu_fake, sigma_fake = feature_statistics(fake_features)
    return frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake)
