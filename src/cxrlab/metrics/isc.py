"""Inception Score from class probabilities.

Reference: Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen. "Improved Techniques
for Training GANs", NeurIPS 2016: ``IS = exp(E_x KL(p(y|x) || p(y)))``, computed on
``splits`` disjoint chunks and reported as mean and standard deviation. It ranges from
1 (every image gets the same class distribution) to the number of classes (confident,
evenly spread predictions). With Inception's ImageNet classes it says little about
chest X-rays; it is kept to compare with the thesis.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr, softmax

from cxrlab.errors import CxrlabError
from cxrlab.metrics.frechet import ArrayLike, as_float64


def probabilities_from_logits(logits: ArrayLike) -> np.ndarray:
    """(N, C) logits -> (N, C) float64 softmax probabilities."""
    return softmax(as_float64(logits, "logits"), axis=1)


def inception_score(probabilities: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """Inception Score of N images' class probabilities.

    Args:
        probabilities: (N, C) rows summing to 1 (softmax outputs), N >= ``splits``.
        splits: number of consecutive, near-equal chunks (the order is kept; images
            from a generator are already in random order).

    Returns:
        ``(mean, std)`` over the chunks of ``exp(mean_i KL(p_i || mean_j p_j))``; the
        KL uses ``0 log 0 = 0``.
    """
    probabilities = as_float64(probabilities, "probabilities")
    if probabilities.ndim != 2:
        raise CxrlabError(f"Inception Score needs (N, C) probabilities, got {probabilities.shape}")
    if (probabilities < 0).any() or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4):
        raise CxrlabError(
            "Inception Score needs probabilities (rows >= 0 summing to 1), not logits"
        )
    if not 1 <= splits <= probabilities.shape[0]:
        raise CxrlabError(
            f"splits must be in 1..{probabilities.shape[0]} (one image per split at least)"
        )
    scores = []
    for chunk in np.array_split(probabilities, splits):
        marginal = chunk.mean(axis=0, keepdims=True)
        kl = rel_entr(chunk, marginal).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
