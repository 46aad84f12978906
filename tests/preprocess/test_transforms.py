import numpy as np
import pytest

from cxrlab.data.io import read_image
from cxrlab.errors import CxrlabError
from cxrlab.preprocess.transforms import (
    PreprocessOptions,
    apply_gamma,
    clahe,
    crop_top,
    equalize_hist,
    preprocess_pixels,
    resize_square,
)
from factory import READABLE, TEST_MAX_PIXELS


def test_resize_modes_shapes_and_aspect():
    image = np.ones((50, 100), dtype=np.float32)  # wide, all white
    for mode in ("stretch", "pad", "crop"):
        assert resize_square(image, 32, mode).shape == (32, 32)
    padded = resize_square(image, 32, "pad")
    assert padded[:7].max() == 0 and padded[-7:].max() == 0  # black bars top and bottom
    assert padded[9:23].min() == pytest.approx(1.0)
    assert resize_square(image, 32, "crop").min() == pytest.approx(1.0)  # no bars


def test_area_interpolation_averages_blocks():
    image = np.zeros((64, 64), dtype=np.float32)
    image[:, ::2] = 1.0  # stripes alias under nearest/linear sampling
    assert resize_square(image, 32) == pytest.approx(np.full((32, 32), 0.5))


def test_crop_top_removes_fraction_of_rows():
    image = np.arange(100, dtype=np.float32).reshape(100, 1)
    assert crop_top(image, 0.08)[0, 0] == 8 and crop_top(image, 0.08).shape == (92, 1)


def test_histogram_equalization_spreads_a_narrow_range():
    rng = np.random.default_rng(0)
    narrow = rng.integers(100, 120, (64, 64)).astype(np.uint8)
    out = equalize_hist(narrow)
    assert out.min() == 0 and out.max() == 255
    # the CDF mapping is monotonic
    order = np.argsort(narrow.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()
    wide16 = narrow.astype(np.uint16) * 100
    out16 = equalize_hist(wide16)
    assert out16.dtype == np.uint16 and out16.min() == 0 and out16.max() == 65535


def test_clahe_raises_local_contrast_and_keeps_dtype():
    rng = np.random.default_rng(1)
    image = (rng.normal(128, 5, (64, 64))).clip(0, 255).astype(np.uint8)
    out = clahe(image, clip=4.0, grid=4)
    assert out.dtype == np.uint8 and out.std() > image.std()
    assert clahe(image.astype(np.uint16) * 256).dtype == np.uint16


def test_gamma_identity_and_direction():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert apply_gamma(image, 1.0) is image
    darker = apply_gamma(image, 2.0)
    assert darker[0, 0] == 0 and darker[-1, -1] == 255 and darker[8, 0] < image[8, 0]


@pytest.mark.parametrize(
    "bad",
    [
        {"size_px": 16},
        {"size_px": 2048},
        {"resize": "zoom"},
        {"crop_top": 0.6},
        {"bit_depth": 12},
        {"gamma": 0},
    ],
)
def test_invalid_options_are_clear_errors(bad):
    with pytest.raises(CxrlabError):
        PreprocessOptions(**bad)


@pytest.mark.parametrize(
    "name", ["sixteen_bit.png", "mono1_12bit.dcm", "exif_rotated.jpg", "cmyk.jpg", "rgba.png"]
)
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("equalize", ["none", "clahe"])
def test_orientation_and_polarity_survive_preprocessing(tmp_path, name, bit_depth, equalize):
    path = READABLE[name](tmp_path / name)
    options = PreprocessOptions(size_px=32, bit_depth=bit_depth, equalize=equalize)
    out = preprocess_pixels(
        read_image(path, max_pixels=TEST_MAX_PIXELS, draft_px=32).pixels, options
    )
    assert out.shape == (32, 32) and out.dtype == options.dtype
    left, right = out[10:, :14].mean(), out[:, 18:].mean()
    assert left < right, "the darker left half is no longer darker"
    # the white mark sits at the top of the dark half: brighter than the rest of that half
    assert out[1:5, 1:5].mean() > out[16:, :12].mean(), "the bright top-left mark moved"
