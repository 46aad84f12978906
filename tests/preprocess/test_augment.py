import kornia.augmentation as K
import pytest
import torch

from cxrlab.clf.config import AUGMENTS, ClfConfig
from cxrlab.errors import CxrlabError
from cxrlab.preprocess.augment import (
    AUGMENT_CHOICES,
    INTENSITY_PRESETS,
    PRESETS,
    BatchAugment,
    IntensityAugment,
    IntensityShift,
    KerasAugment,
    build_augmenter,
    parse_augment,
)


def test_presets_match_the_thesis():
    assert PRESETS["severe"] == KerasAugment(30, 0.15, 0.2, 0.2, 0.15, True)
    assert PRESETS["mild"] == KerasAugment(15, 0.15, 0.1, 0.1, 0.15, True)
    anatomical = PRESETS["anatomical"]
    assert anatomical.horizontal_flip is False and anatomical.rotation_range == 15


def test_anatomical_never_flips_and_mild_can():
    assert not any(isinstance(m, K.RandomHorizontalFlip) for m in build_augmenter("anatomical"))
    assert any(isinstance(m, K.RandomHorizontalFlip) for m in build_augmenter("mild"))


def test_flip_only_flips_about_half_of_a_batch():
    flip_only = KerasAugment(0, 0.0, 0.0, 0.0, 0.0, True)
    images = torch.zeros(400, 1, 8, 8)
    images[..., :4] = 1.0  # bright left half
    out = BatchAugment(flip_only, seed=0)(images, step=0)
    flipped = (out[:, 0, :, 0] == 0).all(dim=1)
    assert 0.4 < flipped.float().mean() < 0.6
    kept = out[~flipped]
    assert torch.equal(kept, images[: len(kept)])


def test_shift_range_is_a_fraction_of_the_size():
    shift_only = KerasAugment(0, 0.0, 0.25, 0.0, 0.0, False, fill_mode="constant")
    images = torch.ones(200, 1, 16, 16)
    out = BatchAugment(shift_only, seed=0)(images, step=0)
    # zeros enter from one side: at most a quarter of the columns are empty
    empty_columns = (out[:, 0].amax(dim=1) < 0.5).sum(dim=1)
    assert empty_columns.max() <= 4 and empty_columns.float().mean() > 0.5


def test_same_seed_and_step_same_draw_per_sample_parameters():
    images = torch.rand(6, 1, 32, 32)
    augment = BatchAugment("severe", seed=3)
    a, b = augment(images, 5), augment(images, 5)
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(images, 6))
    same = images[:1].repeat(6, 1, 1, 1)
    out = augment(same, 0)
    assert not torch.allclose(out[0], out[1])  # each sample gets its own parameters


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(CxrlabError, match="choose one of"):
        build_augmenter("wild")


# ------------------------------------------------------------------ acquisition
def _only(**change) -> IntensityAugment:
    """Intensity parameters with every change off but ``change``, applied to every image."""
    p = change.pop("p", 1.0)
    off = dict.fromkeys(("gamma", "contrast", "blur_sigma", "noise_std", "resolution"))
    return IntensityAugment(**{**off, **change}, p=p)


def _stripes(n: int = 4, side: int = 64) -> torch.Tensor:
    """(n, 1, side, side) vertical stripes one pixel wide, 0.2 and 0.8: all high frequency."""
    images = torch.full((n, 1, side, side), 0.2)
    images[..., ::2] = 0.8
    return images


def test_gamma_bends_mid_tones_and_keeps_black_white_and_order():
    images = torch.linspace(0, 1, 64).view(1, 1, 1, 64).repeat(3, 1, 64, 1)
    out = IntensityShift(_only(gamma=(2.0, 2.0)))(images)
    assert torch.allclose(out, images**2)
    assert out[..., 0].eq(0).all() and out[..., -1].eq(1).all()
    assert (out[..., 1:] >= out[..., :-1]).all()  # monotone: the order of grey levels stays


def test_contrast_scales_about_the_image_mean():
    images = 0.5 + 0.1 * torch.randn(4, 1, 32, 32)
    out = IntensityShift(_only(contrast=(0.5, 0.5)))(images.clamp(0, 1))
    inside = images.clamp(0, 1)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), inside.mean(dim=(1, 2, 3)), atol=1e-5)
    ratio = out.std(dim=(1, 2, 3)) / inside.std(dim=(1, 2, 3))
    assert torch.allclose(ratio, torch.full_like(ratio, 0.5), atol=1e-4)


def test_blur_removes_fine_detail_keeps_the_mean_and_a_flat_image():
    stripes = _stripes()
    out = IntensityShift(_only(blur_sigma=(4.0, 4.0)))(stripes)  # 1 px at 64 px
    detail = (out[..., 1:] - out[..., :-1]).abs().mean()
    assert detail < 0.2 * (stripes[..., 1:] - stripes[..., :-1]).abs().mean()
    assert torch.allclose(out.mean(), stripes.mean(), atol=1e-3)
    flat = torch.full((2, 1, 32, 32), 0.3)
    assert torch.allclose(IntensityShift(_only(blur_sigma=(4.0, 4.0)))(flat), flat)


def test_blur_sigma_scales_with_the_image_side():
    """The same draw blurs a 32 px image by half the pixels of a 64 px one (same anatomy)."""
    augment = IntensityShift(_only(blur_sigma=(2.0, 2.0)))
    small, large = augment(_stripes(side=32)), augment(_stripes(side=64))
    assert (small[..., 1:] - small[..., :-1]).abs().mean() > (
        large[..., 1:] - large[..., :-1]
    ).abs().mean()


def test_noise_has_the_drawn_strength_and_stays_in_range():
    images = torch.full((8, 1, 64, 64), 0.5)
    out = IntensityShift(_only(noise_std=(0.02, 0.02)))(images)
    assert abs(float((out - images).std()) - 0.02) < 0.002
    edges = IntensityShift(_only(noise_std=(0.03, 0.03)))(torch.cat([images * 0, images * 2]))
    assert edges.min() >= 0 and edges.max() <= 1


def test_resolution_drop_loses_detail_but_keeps_size_and_smooth_images():
    stripes = _stripes()
    out = IntensityShift(_only(resolution=(0.5, 0.5)))(stripes)
    assert out.shape == stripes.shape
    assert (out - 0.5).abs().max() < 0.05  # one-pixel stripes averaged away
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).repeat(2, 1, 64, 1)
    assert (IntensityShift(_only(resolution=(0.5, 0.5)))(ramp) - ramp).abs().max() < 0.03


def test_each_change_applies_with_its_probability():
    images = torch.full((400, 1, 8, 8), 0.5)
    out = IntensityShift(_only(noise_std=(0.05, 0.05), p=0.5))(images)
    changed = (out != images).flatten(1).any(dim=1).float().mean()
    assert 0.4 < changed < 0.6


def test_acquisition_preset_stays_in_range_is_seeded_and_draws_per_image():
    images = torch.rand(16, 1, 32, 32)
    images[0], images[1] = 0.0, 1.0  # the extremes stay in range too
    augment = BatchAugment("acquisition", seed=4)
    a = augment(images, 7)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, augment(images, 7))
    assert torch.equal(a, BatchAugment("acquisition", seed=4)(images, 7))
    assert not torch.equal(a, augment(images, 8))
    assert not torch.equal(a, BatchAugment("acquisition", seed=5)(images, 7))
    same = augment(images[2:3].repeat(8, 1, 1, 1), 0)
    assert len({tuple(image.flatten()[:16].tolist()) for image in same}) > 1


def test_geometric_and_acquisition_presets_combine_with_a_plus():
    combined = BatchAugment("anatomical+acquisition", seed=0)
    kinds = [type(module) for module in combined.augmenter]
    assert kinds == [torch.nn.Sequential, IntensityShift]
    assert combined.params == PRESETS["anatomical"]
    assert BatchAugment("acquisition").params is None
    assert parse_augment("mild+acquisition") == [PRESETS["mild"], INTENSITY_PRESETS["acquisition"]]
    with pytest.raises(CxrlabError, match="mild\\+acquisition"):
        parse_augment("mild+fog")


def test_clf_train_offers_every_augmentation():
    assert AUGMENTS == AUGMENT_CHOICES
    assert ClfConfig(arch="simple-cnn", data="d", out="o", augment="mild+acquisition")
