"""The one image reader every stage of cxrlab uses.

``read_image`` turns any file found in public CXR collections into a 2-D greyscale
array with the anatomy the right way up and bright bone:

* the format is sniffed from the content, never the extension (a WebP or JPEG
  named ``.png`` is read as what it is; DICOM is found by its ``DICM`` preamble);
* EXIF orientation is applied; CMYK, palette, RGBA and LA images are converted;
  transparent pixels are composited on black;
* colour becomes grey with the ITU-R 601-2 luma weights (0.2989, 0.5870, 0.1140),
  the thesis' choice;
* 16-bit PNGs and DICOM keep 16-bit precision (``uint16``) until a later stage
  chooses an output bit depth;
* DICOM: rescale slope/intercept (modality LUT), then the VOI LUT or window, then
  MONOCHROME1 is inverted so that bone is bright;
* images larger than ``max_pixels`` are refused before decoding (decompression bombs).

Failures raise :class:`~cxrlab.errors.ImageReadError` with a stable ``reason``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxrlab.errors import ImageReadError

#: ITU-R 601-2 luma weights for R, G, B (the thesis' greyscale conversion).
LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)

#: Default pixel limit: the largest public CXRs are about 4300 x 4300 (18.5 Mpx).
DEFAULT_MAX_PIXELS = 64_000_000

# We enforce our own pixel limit (``max_pixels``); PIL's warning for its global one
# must not interfere. One filter for PIL's module, set once: ``catch_warnings`` around
# each open is not safe in the threads that decode in parallel.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning, module=r"PIL\.Image")

REASON_MISSING = "missing"
REASON_UNREADABLE = "unreadable"
REASON_BOMB = "decompression bomb"
REASON_DICOM_ENCODING = "unsupported DICOM encoding"


@dataclass(frozen=True)
class DecodedImage:
    """A decoded greyscale image.

    Attributes:
        pixels: (H, W) ``uint8`` or ``uint16`` array, row 0 at the top, bright = dense.
        width: original width in pixels (before any draft reduction).
        height: original height in pixels (before any draft reduction).
        mode: the file's colour mode as found (PIL mode, or ``DICOM:MONOCHROME1`` ...).
        bit_depth: bits per sample of the file (8 or 16 for PNG/JPEG; BitsStored for DICOM).
        format: the detected container format (``JPEG``, ``PNG``, ``WEBP``, ``DICOM`` ...).
    """

    pixels: np.ndarray
    width: int
    height: int
    mode: str
    bit_depth: int
    format: str


def is_dicom(path: Path) -> bool:
    """True if the file carries the DICOM Part 10 preamble ("DICM" at byte 128)."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_px: int | None = None,
) -> DecodedImage:
    """Read one image file as greyscale pixels.

    Args:
        path: the file.
        max_pixels: images with more pixels are refused as decompression bombs.
        draft_px: if given, the image may be decoded smaller, with both sides still
            >= ``draft_px``: JPEGs in the DCT domain (scale 1/2, 1/4, 1/8), other 8-bit
            images by an integer box reduction. This makes downscaling large files
            several times cheaper.

    Returns:
        A :class:`DecodedImage` whose ``pixels`` are (H, W) uint8 or uint16.

    Raises:
        ImageReadError: with reason ``missing``, ``unreadable``, ``decompression bomb``
            or ``unsupported DICOM encoding``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, REASON_MISSING, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, REASON_UNREADABLE, "empty file (0 bytes)")
    if is_dicom(path) or path.suffix.lower() in {".dcm", ".dicom"}:
        return _read_dicom(path, max_pixels)
    return _read_pil(path, max_pixels, draft_px)


def _read_pil(path: Path, max_pixels: int, draft_px: int | None) -> DecodedImage:
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageReadError(path, REASON_BOMB, str(error)) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, REASON_UNREADABLE, _message(error)) from error
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageReadError(
                path,
                REASON_BOMB,
                f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}",
            )
        file_format = image.format or "unknown"
        mode = image.mode
        bit_depth = 16 if mode.startswith("I") else 8
        try:
            pixels = _plain_grey_png(path, image)
            if pixels is not None:
                factor = _draft_factor(pixels.shape, draft_px)
                if factor >= 2 and pixels.dtype == np.uint8:  # as image.reduce below
                    pixels = np.asarray(Image.fromarray(pixels).reduce(factor))
                return DecodedImage(pixels, width, height, mode, bit_depth, file_format)
            if draft_px and file_format == "JPEG":
                image.draft(image.mode, (draft_px, draft_px))
            image.load()
            factor = _draft_factor(image.size, draft_px)
            if factor >= 2 and image.mode in ("L", "RGB", "RGBA", "LA"):
                image = image.reduce(factor)  # box filter: exact area averaging
            image = ImageOps.exif_transpose(image)
            pixels = _pil_to_grey(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise ImageReadError(path, REASON_UNREADABLE, _message(error)) from error
    return DecodedImage(pixels, width, height, mode, bit_depth, file_format)


def _draft_factor(size: tuple[int, int], draft_px: int | None) -> int:
    """The whole box-reduction factor that keeps both sides >= ``draft_px`` (0: none)."""
    return min(size) // draft_px if draft_px else 0


#: PIL modes of the PNGs that OpenCV decodes (see _plain_grey_png).
_PLAIN_PNG_MODES = {"L": np.uint8, "I;16": np.uint16, "I;16B": np.uint16}


def _plain_grey_png(path: Path, image: Image.Image) -> np.ndarray | None:
    """The pixels of an 8- or 16-bit greyscale PNG without transparency or EXIF, the
    most common kind in CXR collections, decoded by OpenCV's libpng: the same values
    as PIL's decoder for 10-20% less CPU, and the decode is the larger part of
    reading a PNG. None for any other PNG, or when OpenCV cannot read the file (PIL
    then decodes it, and reports why it is unreadable)."""
    expected = _PLAIN_PNG_MODES.get(image.mode)
    if image.format != "PNG" or expected is None or {"transparency", "exif"} & image.info.keys():
        return None
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.shape != (image.height, image.width) or pixels.dtype != expected:
        return None
    return pixels


def _message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) array -> (H, W) float32 with the ITU-R 601-2 weights."""
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return rgb[..., :3].astype(np.float32) @ weights


def _pil_to_grey(image: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W) uint8, or uint16 for 16-bit and 32-bit integer modes."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image)
        if array.dtype != np.uint16:
            array = np.clip(array.astype(np.int64), 0, 65535).astype(np.uint16)
        return np.ascontiguousarray(array)
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scale = 65535.0 / (high - low) if high > low else 0.0
        return np.round((array - low) * scale).astype(np.uint16)
    if mode == "L":
        return np.array(image, dtype=np.uint8)
    if mode == "1":
        return np.array(image.convert("L"), dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode == "CMYK":
        image = image.convert("RGB")
        mode = "RGB"
    if mode in ("LA", "La", "PA"):
        image = image.convert("LA")
        array = np.asarray(image, dtype=np.float32)
        grey = array[..., 0] * (array[..., 1] / 255.0)  # composite on black
        return np.round(grey).astype(np.uint8)
    if mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
        mode = image.mode
    # PIL's matrix conversion applies the luma weights in C (same result as float
    # arithmetic up to rare rounding ties), several times faster than NumPy.
    rgb = image.convert("RGB") if mode != "RGB" else image
    grey = np.asarray(rgb.convert("L", matrix=(*LUMA_WEIGHTS, 0.0)), dtype=np.uint8)
    if mode == "RGBA":  # composite on black: grey * alpha / 255, rounded
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint16)
        grey = ((grey.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(grey)


def _read_dicom(path: Path, max_pixels: int) -> DecodedImage:
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception as error:  # pydicom raises many types for broken files
        raise ImageReadError(path, REASON_UNREADABLE, _message(error)) from error
    if "PixelData" not in dataset:
        raise ImageReadError(path, REASON_UNREADABLE, "DICOM file has no PixelData")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns > max_pixels:
        raise ImageReadError(
            path,
            REASON_BOMB,
            f"{columns}x{rows} = {rows * columns} pixels exceeds the limit of {max_pixels}",
        )
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    try:
        array = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(dataset.file_meta, "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise ImageReadError(
            path,
            REASON_DICOM_ENCODING,
            f"transfer syntax {name} needs a decoder that is not installed "
            f"(pip install pylibjpeg pylibjpeg-libjpeg, or convert the file): {error}",
        ) from error
    except Exception as error:
        raise ImageReadError(path, REASON_UNREADABLE, _message(error)) from error
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        array = array[0]
    bits_stored = int(dataset.get("BitsStored", 8 * array.dtype.itemsize))
    if photometric.startswith("MONOCHROME"):
        pixels = _monochrome(array, dataset, photometric)
    else:
        from pydicom.pixels import convert_color_space

        if photometric.startswith("YBR"):
            array = convert_color_space(array, photometric, "RGB")
        grey = _luma(np.asarray(array))
        pixels = np.clip(np.round(grey), 0, 255).astype(np.uint8)
        bits_stored = 8
    return DecodedImage(
        pixels=pixels,
        width=columns or pixels.shape[1],
        height=rows or pixels.shape[0],
        mode=f"DICOM:{photometric}",
        bit_depth=16 if bits_stored > 8 else 8,
        format="DICOM",
    )


#: Stored-value spans up to this many entries go through a lookup table (see _monochrome).
LUT_MAX_ENTRIES = 1 << 17


def _monochrome(array: np.ndarray, dataset: object, photometric: str) -> np.ndarray:
    """Stored values -> uint16 display values: modality LUT, VOI LUT or window, range
    to black..white, MONOCHROME1 inverted.

    Every step maps each stored value on its own, so integer images (all real CXR
    DICOMs: 10-16 bits stored) are mapped through a table built by running the steps
    on each value between the image's minimum and maximum once: the same uint16
    values as running them on every pixel in float64, several times faster.
    """
    if array.dtype.kind in "iu" and array.size:
        low_value, high_value = int(array.min()), int(array.max())
        if high_value - low_value < LUT_MAX_ENTRIES:
            domain = np.arange(low_value, high_value + 1).astype(array.dtype)
            if array.dtype.kind == "u":  # stays unsigned: no value is below the minimum
                index = array - array.dtype.type(low_value) if low_value else array
            else:
                index = array.astype(np.int32 if array.itemsize <= 2 else np.int64) - low_value
            values = _stored_to_display(domain, dataset)
            present = values
            if not _has_voi(dataset):  # the range is the image's: of values it holds
                used = np.zeros(domain.size, dtype=bool)
                used[index] = True
                present = values[used]
            return _to_uint16(values, _display_range(present, dataset), photometric)[index]
    values = _stored_to_display(array, dataset)
    return _to_uint16(values, _display_range(values, dataset), photometric)


def _stored_to_display(array: np.ndarray, dataset: object) -> np.ndarray:
    """Modality LUT (or rescale), then VOI LUT (or window), as float64."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(array, dataset)
    values = apply_voi_lut(values, dataset, prefer_lut=True)
    return np.asarray(values, dtype=np.float64)


def _to_uint16(values: np.ndarray, value_range: tuple[float, float], photometric: str):
    low, high = value_range
    values = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    if photometric == "MONOCHROME1":  # low values are bright: invert after windowing
        values = 1.0 - values
    return np.round(values * 65535.0).astype(np.uint16)


def _has_voi(dataset: object) -> bool:
    return "WindowCenter" in dataset or "VOILUTSequence" in dataset


def _display_range(values: np.ndarray, dataset: object) -> tuple[float, float]:
    """The value range to map onto black..white after the VOI step.

    A VOI window or LUT maps into the output range that pydicom documents for
    ``apply_windowing``: [0, 2**BitsStored - 1] for unsigned data (or after a modality
    LUT sequence), the signed range otherwise. Without any VOI information the
    image's own minimum and maximum are used.
    """
    if _has_voi(dataset):
        bits = int(dataset.get("BitsStored", 16))
        signed = int(dataset.get("PixelRepresentation", 0)) == 1
        if signed and "ModalityLUTSequence" not in dataset:
            return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
        return 0.0, float(2**bits - 1)
    return float(values.min()), float(values.max())
