"""Precision, recall, density and coverage on k-nearest-neighbour manifolds.

References:

* Kynkäänniemi, Karras, Laine, Lehtinen, Aila. "Improved Precision and Recall Metric
  for Assessing Generative Models", NeurIPS 2019 (precision, recall);
* Naeem, Oh, Uh, Choi, Yoo. "Reliable Fidelity and Diversity Metrics for Generative
  Models", ICML 2020 (density, coverage).

Each sample's ball reaches its k-th nearest neighbour in its own set (Euclidean).
Precision: share of fakes inside some real ball (fidelity). Recall: share of reals
inside some fake ball (diversity). Density: average number of real balls holding a
fake, divided by k (about 1 when the fakes follow the reals; robust to real outliers).
Coverage: share of real balls holding at least one fake (robust to fake outliers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cxrlab.errors import CxrlabError
from cxrlab.metrics.frechet import ArrayLike, as_float64

#: Rows per block of the pairwise distance matrix (block x N float64 in memory).
BLOCK_ROWS = 1024


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of (N, D) ``x`` and (M, D) ``y`` -> (N, M) float64."""
    squared = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.clip(squared, 0, None))


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row: (N, D) -> (N,) float64."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise CxrlabError(f"k = {k} nearest neighbours need more than k samples, got {n}")
    radii = np.empty(n, dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):
        block = pairwise_distances(features[start : start + BLOCK_ROWS], features)
        # position k of the sorted row: position 0 is the sample itself (distance 0)
        radii[start : start + BLOCK_ROWS] = np.partition(block, k, axis=1)[:, k]
    return radii


@dataclass(frozen=True)
class PRDC:
    """Precision and density (fidelity), recall and coverage (diversity); see the module doc."""

    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def precision_recall_density_coverage(
    real_features: ArrayLike, fake_features: ArrayLike, k: int = 5
) -> PRDC:
    """PRDC of generated features against real features.

    Args:
        real_features: (N, D) features of real images, N > k.
        fake_features: (M, D) features of generated images, M > k.
        k: neighbours defining each ball (5 in both papers).

    Returns:
        A :class:`PRDC`; precision, recall, coverage in [0, 1], density in [0, N/k].
        Identical sets give 1, 1, (k+1)/k, 1 when no distances tie.
    """
    real = as_float64(real_features, "real features")
    fake = as_float64(fake_features, "fake features")
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise CxrlabError(f"PRDC needs (N, D) and (M, D) features, got {real.shape}, {fake.shape}")
    real_radii = knn_radii(real, k)
    fake_radii = knn_radii(fake, k)

    inside_count = np.zeros(fake.shape[0], dtype=np.int64)  # real balls holding each fake
    for start in range(0, fake.shape[0], BLOCK_ROWS):
        block = pairwise_distances(fake[start : start + BLOCK_ROWS], real)
        inside_count[start : start + BLOCK_ROWS] = (block <= real_radii[None, :]).sum(axis=1)

    recalled = np.zeros(real.shape[0], dtype=bool)
    covered = np.zeros(real.shape[0], dtype=bool)
    for start in range(0, real.shape[0], BLOCK_ROWS):
        block = pairwise_distances(real[start : start + BLOCK_ROWS], fake)
        recalled[start : start + BLOCK_ROWS] = (block <= fake_radii[None, :]).any(axis=1)
        covered[start : start + BLOCK_ROWS] = (
            block.min(axis=1) <= real_radii[start : start + BLOCK_ROWS]
        )

    return PRDC(
        precision=float((inside_count > 0).mean()),
        recall=float(recalled.mean()),
        density=float(inside_count.sum() / (k * fake.shape[0])),
        coverage=float(covered.mean()),
    )
