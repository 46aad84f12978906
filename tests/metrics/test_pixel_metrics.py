import numpy as np
import pytest
import torch
from metric_factory import smooth_images

from cxrlab.errors import CxrlabError
from cxrlab.metrics.diversity import MS_SSIM_WEIGHTS, mean_ms_ssim, ms_ssim_scales, random_pairs
from cxrlab.metrics.memorization import check_memorization, closest_pairs_grid, nearest_neighbours
from cxrlab.metrics.swd import laplacian_pyramid, pyramid_up, sliced_wasserstein_distance


def unit(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float()[:, None]


def test_laplacian_pyramid_levels_and_exact_reconstruction():
    images = torch.rand(2, 1, 64, 96, dtype=torch.float64)
    levels = laplacian_pyramid(images, min_size_px=16)
    assert [tuple(level.shape[-2:]) for level in levels] == [(64, 96), (32, 48), (16, 24)]
    rebuilt = levels[-1]
    for level in reversed(levels[:-1]):
        rebuilt = level + pyramid_up(rebuilt, level.shape[-2:])
    torch.testing.assert_close(rebuilt, images, rtol=0, atol=1e-12)


def test_swd_is_zero_for_identical_sets_and_grows_with_noise():
    images = unit(smooth_images(24, 32, seed=0))
    same = sliced_wasserstein_distance(images, images.clone())
    assert list(same) == [32, 16] and all(value == 0.0 for value in same.values())
    generator = torch.Generator().manual_seed(0)
    means = []
    for sigma in (0.02, 0.1, 0.3):
        noisy = (images + sigma * torch.randn(images.shape, generator=generator)).clamp(0, 1)
        levels = sliced_wasserstein_distance(images, noisy, n_directions=128)
        means.append(np.mean(list(levels.values())))
    assert 0 < means[0] < means[1] < means[2]


def test_swd_needs_same_sized_images():
    with pytest.raises(CxrlabError, match="one size"):
        sliced_wasserstein_distance(torch.rand(4, 1, 32, 32), torch.rand(4, 1, 16, 16))


def test_ms_ssim_scales_fit_the_image_size():
    assert ms_ssim_scales(256, 256) == MS_SSIM_WEIGHTS
    weights = ms_ssim_scales(64, 64)
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx(MS_SSIM_WEIGHTS[1] / MS_SSIM_WEIGHTS[0])
    with pytest.raises(CxrlabError):
        ms_ssim_scales(8, 8)


def test_diversity_flags_a_collapsed_set():
    varied = unit(smooth_images(12, 32, seed=1))
    generator = torch.Generator().manual_seed(1)
    collapsed = (
        varied[:1].repeat(12, 1, 1, 1) + 0.01 * torch.randn(12, 1, 32, 32, generator=generator)
    ).clamp(0, 1)
    identical = varied[:1].repeat(3, 1, 1, 1)
    assert mean_ms_ssim(identical) == pytest.approx(1.0, abs=1e-5)
    varied_score, collapsed_score = (
        mean_ms_ssim(varied, n_pairs=50),
        mean_ms_ssim(collapsed, n_pairs=50),
    )
    assert collapsed_score > 0.9 and varied_score < 0.5
    assert collapsed_score > 2 * varied_score


def test_random_pairs_never_pair_an_image_with_itself():
    pairs = random_pairs(3, 500, np.random.default_rng(0))
    assert (pairs[:, 0] != pairs[:, 1]).all() and pairs.min() >= 0 and pairs.max() <= 2


def test_nearest_neighbours_rms_distance():
    distances, indices = nearest_neighbours(
        np.ones((2, 16)), np.stack([np.zeros(16), np.full(16, 0.5)])
    )
    np.testing.assert_allclose(distances, [0.5, 0.5])
    np.testing.assert_array_equal(indices, [1, 1])


def test_memorization_flags_planted_copies_of_training_images():
    images = smooth_images(100, 16, seed=2).reshape(100, -1)
    train, heldout, fake = images[:50], images[50:80], images[80:].copy()
    planted = {0: 7, 3: 21, 5: 30, 9: 44}  # fake index -> copied training image
    rng = np.random.default_rng(3)
    for fake_index, train_index in planted.items():
        fake[fake_index] = np.clip(train[train_index] + rng.normal(0, 0.005, train.shape[1]), 0, 1)
    result = check_memorization(fake, heldout, train)
    assert result.flagged[list(planted)].all()
    np.testing.assert_array_equal(result.fake_nearest[list(planted)], list(planted.values()))
    others = np.setdiff1d(np.arange(len(fake)), list(planted))
    assert result.flagged[others].sum() <= 2  # independent images: ~5 % by chance
    assert result.share == pytest.approx(result.flagged.mean())
    assert 4 / 20 <= result.share <= 6 / 20
    assert result.summary()["memorization_threshold"] == pytest.approx(
        np.percentile(result.heldout_distances, 5)
    )


def test_closest_pairs_grid_puts_each_fake_beside_its_training_image():
    images = (smooth_images(12, 8, seed=4) * 255).round().astype(np.uint8)
    train, fake = images[:8], images[8:].copy()
    fake[2] = train[5]
    result = check_memorization(
        fake.reshape(4, -1) / 255, images[:2].reshape(2, -1) / 255, train.reshape(8, -1) / 255
    )
    grid = closest_pairs_grid(fake, train, result, n_pairs=4, pairs_per_row=2)
    assert grid.shape == (2 * 10 + 2, 4 * 10 + 2)  # 2 rows x (2 pairs x 2 tiles), 2-px padding
    np.testing.assert_array_equal(grid[2:10, 2:10], fake[2])  # closest first: the copy
    np.testing.assert_array_equal(grid[2:10, 12:20], train[5])
