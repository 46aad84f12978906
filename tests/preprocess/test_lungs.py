import numpy as np
import pytest

from cxrlab.errors import CxrlabError
from cxrlab.preprocess.transforms import (
    PreprocessOptions,
    lung_box,
    preprocess_lung_mask,
    preprocess_pixels,
)

ORIENTATIONS = {"portrait": (64, 32), "landscape": (32, 64)}


def gradient(shape: tuple[int, int], bit_depth: int) -> np.ndarray:
    """Distinct values everywhere, so a misplaced crop cannot go unnoticed."""
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    values = np.arange(shape[0] * shape[1]).reshape(shape)
    return (values * (250 if bit_depth == 16 else 1) % np.iinfo(dtype).max).astype(dtype)


def test_lung_box_grows_by_the_margin_of_its_own_sides_and_stays_inside():
    mask = np.zeros((50, 40), dtype=bool)
    mask[10:30, 5:25] = True
    assert lung_box(mask) == (10, 30, 5, 25)
    assert lung_box(mask, 0.1) == (8, 32, 3, 27)
    assert lung_box(mask, 0.5) == (0, 40, 0, 35)  # clipped at the top and left
    with pytest.raises(CxrlabError, match="empty"):
        lung_box(np.zeros((4, 4), dtype=bool))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_crop_keeps_exactly_the_lung_box(orientation, bit_depth):
    shape = (96, 48) if orientation == "portrait" else (48, 96)
    image = gradient(shape, bit_depth)
    mask = np.zeros(shape, dtype=bool)
    top, left = (41, 7) if orientation == "portrait" else (5, 53)
    mask[top : top + 32, left : left + 32] = True  # with a 1/16 margin: a 36 x 36 box
    margin = PreprocessOptions(size_px=32, lungs="crop", lung_margin=1 / 16, bit_depth=bit_depth)
    plain = PreprocessOptions(size_px=32, bit_depth=bit_depth)
    expected = preprocess_pixels(image[top - 2 : top + 34, left - 2 : left + 34], plain)
    out = preprocess_pixels(image, margin, mask)
    assert out.dtype == image.dtype and out.shape == (32, 32)
    assert np.array_equal(out, expected)
    # no margin, a box of exactly the output size: the pixels themselves
    exact = PreprocessOptions(size_px=32, lungs="crop", lung_margin=0.0, bit_depth=bit_depth)
    assert np.array_equal(
        preprocess_pixels(image, exact, mask), image[top : top + 32, left : left + 32]
    )


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_mask_zeroes_exactly_outside_the_lungs(orientation, bit_depth):
    shape = ORIENTATIONS[orientation]
    top = np.iinfo(np.uint8 if bit_depth == 8 else np.uint16).max
    image = np.full(shape, top, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    mask = np.zeros(shape, dtype=bool)
    mask[8:24, 4:20] = True  # on the 2 x 2 grid of the stretch to 32 px
    mask[30:32, 26:32] = True
    options = PreprocessOptions(size_px=32, lungs="mask", bit_depth=bit_depth)
    out = preprocess_pixels(image, options, mask)
    scale = (shape[0] // 32, shape[1] // 32)
    expected = mask.reshape(32, scale[0], 32, scale[1]).all(axis=(1, 3))
    assert np.array_equal(out == top, expected) and np.array_equal(out == 0, ~expected)
    # the mask at another size is resized (nearest) to the image's first
    small = mask[:: scale[0], :: scale[1]]
    assert np.array_equal(preprocess_pixels(image, options, small), out)
    # and the stored mask goes through the same geometry
    assert np.array_equal(preprocess_lung_mask(small, shape, options), expected)


def test_the_stored_mask_follows_the_crop_and_the_top_crop():
    image = gradient((64, 48), 8)
    mask = np.zeros((64, 48), dtype=bool)
    mask[20:40, 10:20] = mask[20:40, 28:38] = True
    for options in (
        PreprocessOptions(size_px=32, lungs="crop", lung_margin=0.1),
        PreprocessOptions(size_px=32, lungs="none", crop_top=0.25, resize="pad"),
    ):
        stored = preprocess_lung_mask(mask, image.shape, options)
        painted = preprocess_pixels(np.where(mask, 255, 0).astype(np.uint8), options, mask)
        assert np.array_equal(stored, painted >= 128)


def test_lung_options_are_checked():
    with pytest.raises(CxrlabError, match="--lungs"):
        PreprocessOptions(lungs="box")
    with pytest.raises(CxrlabError, match="--lung-margin"):
        PreprocessOptions(lung_margin=-0.1)
    with pytest.raises(CxrlabError, match="needs a lung mask"):
        preprocess_pixels(np.zeros((40, 40), np.uint8), PreprocessOptions(size_px=32, lungs="mask"))
