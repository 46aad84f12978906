import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.image.inception import InceptionScore

from cxrlab.errors import CxrlabError
from cxrlab.metrics.isc import inception_score, probabilities_from_logits
from cxrlab.metrics.kid import kernel_inception_distance, mmd2_unbiased


def test_mmd_by_hand():
    # d = 1, k(a, b) = (ab + 1)^3. Kxx off-diagonal: k(0, 1) = 1; Kyy: k(2, 3) = 343;
    # Kxy: 1, 1, 27, 64 -> MMD^2 = 1 + 343 - 2 * 93 / 4 = 297.5
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    assert mmd2_unbiased(x, y) == pytest.approx(297.5, rel=1e-12)
    mean, std = kernel_inception_distance(x, y, subset_size=2, n_subsets=3)
    assert mean == pytest.approx(297.5, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_kid_of_identical_sets_is_about_zero_and_of_shifted_sets_positive():
    features = np.random.default_rng(0).standard_normal((300, 16))
    same, _ = kernel_inception_distance(features, features, subset_size=100, n_subsets=50)
    shifted, shifted_std = kernel_inception_distance(
        features, features + 0.5, subset_size=100, n_subsets=50
    )
    assert shifted > 0 and shifted > 5 * shifted_std
    # Subsets of one set share images, which pulls the estimate slightly below 0.
    assert abs(same) < 0.1 * shifted


def test_kid_is_unbiased_for_independent_samples_of_one_distribution():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((1000, 8)), rng.standard_normal((1000, 8))
    mean, std = kernel_inception_distance(a, b, subset_size=500, n_subsets=10)
    shifted, _ = kernel_inception_distance(a, b + 0.3, subset_size=500, n_subsets=10)
    assert abs(mean) < 2 * std and shifted > 10 * std


def test_kid_equals_torch_fidelity_on_whole_sets():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((40, 8)) * 3 + 2, rng.standard_normal((40, 8)) * 3 + 2.5
    for x, y in ((a, b), (a, a)):
        reference = kid_features_to_metric(
            torch.from_numpy(x),
            torch.from_numpy(y),
            kid_subsets=2,
            kid_subset_size=40,
            verbose=False,
        )["kernel_inception_distance_mean"]
        ours, _ = kernel_inception_distance(x, y, n_subsets=2, subset_size=40)
        assert ours == pytest.approx(reference, rel=1e-9)


def test_kid_is_seeded_and_checks_inputs():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((60, 4))
    first = kernel_inception_distance(a, b, subset_size=20, n_subsets=5, seed=3)
    assert kernel_inception_distance(a, b, subset_size=20, n_subsets=5, seed=3) == first
    with pytest.raises(CxrlabError):
        kernel_inception_distance(a, b[:, :3])
    with pytest.raises(CxrlabError, match="at least 2"):
        kernel_inception_distance(a[:1], b)


def test_inception_score_one_hot_is_the_class_count_and_uniform_is_one():
    classes = 10
    one_hot = np.eye(classes)[np.arange(100) % classes]  # every split holds every class once
    mean, std = inception_score(one_hot, splits=10)
    assert mean == pytest.approx(classes, rel=1e-12) and std == pytest.approx(0, abs=1e-12)
    mean, std = inception_score(np.full((40, classes), 1 / classes), splits=4)
    assert mean == pytest.approx(1.0, rel=1e-12) and std == pytest.approx(0, abs=1e-12)


def test_inception_score_by_hand():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    marginal = np.array([0.75, 0.25])
    kl = [np.log(1 / 0.75), 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)]
    assert inception_score(p, splits=1)[0] == pytest.approx(np.exp(np.mean(kl)), rel=1e-12)
    assert marginal.sum() == 1


class Logits(nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


@pytest.mark.filterwarnings("ignore::UserWarning")  # its memory note, std of one split
def test_inception_score_equals_torchmetrics_on_the_same_logits():
    logits = torch.from_numpy(np.random.default_rng(2).standard_normal((64, 7)) * 3)
    metric = InceptionScore(feature=Logits(), splits=1)
    metric.update(logits)
    reference = float(metric.compute()[0])
    ours = inception_score(probabilities_from_logits(logits), splits=1)[0]
    assert ours == pytest.approx(reference, rel=1e-6)


def test_inception_score_refuses_logits_and_too_many_splits():
    with pytest.raises(CxrlabError, match="not logits"):
        inception_score(np.array([[2.0, -1.0], [0.5, 0.5]]))
    with pytest.raises(CxrlabError, match="splits"):
        inception_score(np.full((3, 2), 0.5), splits=4)
