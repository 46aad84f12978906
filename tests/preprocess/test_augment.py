import kornia.augmentation as K
import pytest
import torch

from cxrlab.errors import CxrlabError
from cxrlab.preprocess.augment import PRESETS, BatchAugment, KerasAugment, build_augmenter


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
