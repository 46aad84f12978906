import numpy as np
import pytest

from cxrlab.errors import CxrlabError
from cxrlab.metrics.prdc import knn_radii, precision_recall_density_coverage


def test_by_hand_on_a_line():
    # k = 1: every real ball has radius 1. Fake 0.5 lies in the balls of 0 and 1, fake 10
    # in none. The two fakes' balls (radius 9.5) hold every real. Reals 0 and 1 have a
    # fake within their radius 1.
    real = np.arange(5.0)[:, None]
    fake = np.array([[0.5], [10.0]])
    result = precision_recall_density_coverage(real, fake, k=1)
    assert result.precision == pytest.approx(0.5)
    assert result.recall == pytest.approx(1.0)
    assert result.density == pytest.approx(2 / (1 * 2))
    assert result.coverage == pytest.approx(2 / 5)


def integer_cloud(n: int, seed: int) -> np.ndarray:
    # Integer coordinates: every distance is computed exactly, so ties are real ties.
    return np.random.default_rng(seed).integers(0, 1_000_000, (n, 3)).astype(np.float64)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_sets(k):
    cloud = integer_cloud(60, seed=k)
    result = precision_recall_density_coverage(cloud, cloud.copy(), k=k)
    assert (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)
    # each real ball holds its own point and its k nearest neighbours
    assert result.density == pytest.approx((k + 1) / k)


def test_disjoint_sets_score_zero():
    cloud = integer_cloud(40, seed=0)
    result = precision_recall_density_coverage(cloud, cloud + 1e7, k=5)
    assert result.as_dict() == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_collapse_keeps_precision_but_loses_recall_and_coverage():
    real = integer_cloud(50, seed=1)
    collapsed = np.repeat(real[:1], 20, axis=0)  # every fake is the first real point
    result = precision_recall_density_coverage(real, collapsed, k=5)
    assert result.precision == 1.0
    assert result.recall == pytest.approx(1 / 50)  # fake balls have radius 0
    assert result.coverage < 0.3


def test_knn_radii_and_too_few_samples():
    np.testing.assert_allclose(knn_radii(np.array([[0.0], [1.0], [3.0]]), 1), [1.0, 1.0, 2.0])
    with pytest.raises(CxrlabError, match="nearest neighbours"):
        precision_recall_density_coverage(np.zeros((5, 2)), np.zeros((10, 2)), k=5)
