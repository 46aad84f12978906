import numpy as np
import pytest
from PIL import Image

from cxrlab.data.io import LUMA_WEIGHTS, read_image
from cxrlab.errors import ImageReadError
from factory import (
    BRIGHT,
    BROKEN,
    READABLE,
    TEST_MAX_PIXELS,
    assert_upright,
    dicom,
    png16,
    reference_image,
    rgba_png,
)


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_kinds_are_upright_with_bright_bone(tmp_path, name):
    path = READABLE[name](tmp_path / name)
    image = read_image(path, max_pixels=TEST_MAX_PIXELS)
    assert image.pixels.ndim == 2
    assert_upright(image.pixels)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_kinds_raise_with_reason(tmp_path, name):
    maker, reason = BROKEN[name]
    path = maker(tmp_path / name)
    with pytest.raises(ImageReadError) as caught:
        read_image(path, max_pixels=TEST_MAX_PIXELS)
    assert caught.value.reason == reason
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "nope.png")
    assert caught.value.reason == "missing"


def test_format_is_sniffed_not_taken_from_extension(tmp_path):
    path = READABLE["webp_named.png"](tmp_path / "x.png")
    assert read_image(path).format == "WEBP"


def test_greyscale_uses_itu_601_weights(tmp_path):
    colours = np.zeros((2, 3, 3), dtype=np.uint8)
    colours[0, 0] = (255, 0, 0)
    colours[0, 1] = (0, 255, 0)
    colours[0, 2] = (0, 0, 255)
    colours[1, :] = (10, 200, 30)
    Image.fromarray(colours).save(tmp_path / "c.png")
    grey = read_image(tmp_path / "c.png").pixels
    r, g, b = LUMA_WEIGHTS
    assert grey[0].tolist() == [round(255 * r), round(255 * g), round(255 * b)]
    assert grey[1, 0] == round(10 * r + 200 * g + 30 * b)


def test_transparent_pixels_become_black(tmp_path):
    pixels = read_image(rgba_png(tmp_path / "a.png")).pixels
    assert (pixels[-5:, -5:] == 0).all()
    assert (pixels[:, 35:50] == BRIGHT).all()


def test_sixteen_bit_png_keeps_precision(tmp_path):
    image = read_image(png16(tmp_path / "s.png"))
    assert image.pixels.dtype == np.uint16 and image.bit_depth == 16
    expected = reference_image().astype(np.uint16) * 256 + 3
    np.testing.assert_array_equal(image.pixels, expected)


def test_dicom_windowing_and_monochrome1(tmp_path):
    # A narrow window saturates: values above centre + width/2 are white, below are black.
    mono2 = read_image(dicom(tmp_path / "m2.dcm", "MONOCHROME2", window=(1600.0, 400.0))).pixels
    assert mono2.dtype == np.uint16
    assert mono2[20, 5] == 0 and mono2[20, 55] == 65535  # 800 -> black, 3200 -> white
    mono1 = read_image(dicom(tmp_path / "m1.dcm", "MONOCHROME1", window=(1600.0, 400.0))).pixels
    # MONOCHROME1 stores 4095 - v; inverted after windowing it shows the same picture
    # only where the window is symmetric, so check polarity: dense (bright) stays bright.
    assert mono1[20, 55] > mono1[20, 5]


def test_dicom_without_window_uses_data_range(tmp_path):
    pixels = read_image(dicom(tmp_path / "nw.dcm", window=None)).pixels
    assert pixels.min() == 0 and pixels.max() == 65535
    assert_upright(pixels, tolerance=60)


def test_decompression_bomb_limit_is_configurable(tmp_path):
    path = BROKEN["bomb.png"][0](tmp_path / "b.png")
    assert read_image(path).width == 3000  # default limit lets it through
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(path, max_pixels=1000)


def test_jpeg_draft_decodes_smaller_but_reports_original_size(tmp_path):
    big = np.kron(reference_image(), np.ones((20, 20), dtype=np.uint8))  # 800 x 1200
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    image = read_image(tmp_path / "big.jpg", draft_px=100)
    assert (image.width, image.height) == (1200, 800)
    assert min(image.pixels.shape) >= 100 and image.pixels.shape[0] < 800


def _dicom_dataset(pixel_representation: int, bits: int, **elements):
    from pydicom.dataset import Dataset

    dataset = Dataset()
    dataset.BitsStored, dataset.PixelRepresentation = bits, pixel_representation
    for key, value in elements.items():
        setattr(dataset, key, value)
    return dataset


def _lut_item(entries: int, first: int, data: list[int], **extra):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [entries, first, 16]
    item.LUTData = data
    for key, value in extra.items():
        setattr(item, key, value)
    return item


DICOM_CASES = {
    "window": (np.uint16, 0, 12, {"WindowCenter": 1500.0, "WindowWidth": 900.0}),
    "signed, rescaled, window": (
        np.int16,
        1,
        16,
        {
            "RescaleSlope": 2.0,
            "RescaleIntercept": -1024.0,
            "WindowCenter": 40.0,
            "WindowWidth": 4000.0,
        },
    ),
    "no window: range of the values present": (
        np.uint16,
        0,
        12,
        {"RescaleSlope": 0.5, "RescaleIntercept": 7.0},
    ),
    "modality LUT sequence": (np.uint16, 0, 12, {}),
    "VOI LUT sequence": (np.uint16, 0, 12, {}),
}


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_dicom_table_mapping_equals_per_pixel_mapping(case, photometric):
    # Integer DICOMs are mapped through a table of their stored values; the result must
    # be the very uint16 values of the float64 steps run on every pixel.
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    from pydicom.sequence import Sequence

    from cxrlab.data.io import _display_range, _monochrome

    dtype, representation, bits, elements = DICOM_CASES[case]
    dataset = _dicom_dataset(representation, bits, **elements)
    dataset.PhotometricInterpretation = photometric
    rng = np.random.default_rng(len(case))
    low = -2000 if representation else 37
    array = rng.integers(low, low + 3000, (40, 50)).astype(dtype)
    array[:, :25] = array[:, :25] // 7 * 7 + low % 7  # gaps: not every value is present
    if case == "modality LUT sequence":
        table = [int(v) for v in (np.arange(4096) * 13 % 4096)]  # not monotonic
        dataset.ModalityLUTSequence = Sequence([_lut_item(4096, 0, table, ModalityLUTType="US")])
    if case == "VOI LUT sequence":
        table = [int(v) for v in np.sqrt(np.arange(2048) * 4096.0)]
        dataset.VOILUTSequence = Sequence([_lut_item(2048, 512, table)])
    values = apply_voi_lut(apply_modality_lut(array, dataset), dataset, prefer_lut=True)
    values = np.asarray(values, dtype=np.float64)
    low_value, high_value = _display_range(values, dataset)
    unit = np.clip((values - low_value) / max(high_value - low_value, 1e-12), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    expected = np.round(unit * 65535.0).astype(np.uint16)
    mapped = _monochrome(array, dataset, photometric)
    assert mapped.dtype == np.uint16 and mapped.shape == array.shape
    np.testing.assert_array_equal(mapped, expected)
    assert len(np.unique(expected)) > 20  # the case exercises a real mapping


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("draft_px", [None, 100])
def test_plain_grey_png_fast_path_gives_pils_pixels(tmp_path, monkeypatch, bits, draft_px):
    # Greyscale PNGs are decoded by OpenCV; the pixels must be PIL's, at every size.
    from cxrlab.data import io

    rng = np.random.default_rng(bits)
    top = 255 if bits == 8 else 65535
    values = rng.integers(0, top + 1, (430, 310)).astype(np.uint8 if bits == 8 else np.uint16)
    path = tmp_path / "grey.png"
    Image.fromarray(values).save(path)
    calls = []
    real = io._plain_grey_png
    monkeypatch.setattr(io, "_plain_grey_png", lambda *a: calls.append(1) or real(*a))
    fast = read_image(path, draft_px=draft_px)
    assert calls and real(path, Image.open(path)) is not None  # the fast path was taken
    monkeypatch.setattr(io, "_plain_grey_png", lambda *a: None)
    slow = read_image(path, draft_px=draft_px)
    assert fast.pixels.dtype == slow.pixels.dtype == values.dtype
    np.testing.assert_array_equal(fast.pixels, slow.pixels)
    assert (fast.width, fast.height, fast.mode, fast.bit_depth, fast.format) == (
        slow.width,
        slow.height,
        slow.mode,
        slow.bit_depth,
        slow.format,
    )
    if draft_px is None:
        np.testing.assert_array_equal(fast.pixels, values)


def test_plain_grey_png_fast_path_leaves_other_pngs_to_pil(tmp_path):
    from cxrlab.data import io

    grey = np.full((20, 30), 90, dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "t.png", transparency=90)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    for name in ("t.png", "rgb.png"):
        assert io._plain_grey_png(tmp_path / name, Image.open(tmp_path / name)) is None
    cut = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200), np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:2000])
    assert io._plain_grey_png(cut, Image.open(cut)) is None
    with pytest.raises(ImageReadError) as caught:
        read_image(cut)
    assert caught.value.reason == "unreadable"
