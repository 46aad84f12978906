import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from cxrlab.errors import CxrlabError
from cxrlab.metrics.frechet import feature_statistics, fid_from_features, frechet_distance


def random_spd(dim: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_equal_covariances_give_the_squared_mean_distance():
    rng = np.random.default_rng(0)
    sigma = random_spd(8, rng)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(
        np.sum((mu1 - mu2) ** 2), rel=1e-9
    )


def test_commuting_covariances_closed_form():
    # Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    expected = 9.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(1).standard_normal((50, 20)) * 3 + 1
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_are_mean_and_unbiased_covariance():
    features = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    mu, sigma = feature_statistics(features)
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-10)


class PassThrough(nn.Module):
    """torchmetrics calls this 'inception': the inputs are already the features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@pytest.mark.parametrize(("n", "dim"), [(200, 16), (40, 64)])  # full rank, rank deficient
def test_equals_torchmetrics_fid_on_the_same_features(n, dim):
    rng = np.random.default_rng(dim)
    real = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim))
    fake = rng.standard_normal((n, dim)) * 1.5 + 0.3
    metric = FrechetInceptionDistance(feature=PassThrough(dim))
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    reference = float(metric.compute())
    assert fid_from_features(real, fake) == pytest.approx(reference, rel=1e-6)


def test_bad_shapes_and_values_are_cxrlab_errors():
    with pytest.raises(CxrlabError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(CxrlabError, match="NaN"):
        fid_from_features(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(CxrlabError, match="N >= 2"):
        feature_statistics(np.zeros((1, 5)))
