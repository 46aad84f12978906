"""Pure preprocessing transforms on greyscale images (NumPy + OpenCV).

Every function takes and returns a 2-D array and has no hidden state, so the
same options on the same pixels always give the same bytes. Order used by
:func:`preprocess_pixels`: top crop -> lungs (crop to the lung box, or zero
outside the lungs) -> resize to a square -> quantise to the output bit depth ->
histogram equalisation or CLAHE -> gamma. :func:`preprocess_lung_mask` takes a
lung mask through the same geometry (top crop, lung box, square resize).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np

from cxrlab.errors import CxrlabError

ResizeMode = Literal["stretch", "pad", "crop"]
EqualizeMode = Literal["none", "hist", "clahe"]
LungsMode = Literal["none", "crop", "mask"]

MIN_SIZE_PX, MAX_SIZE_PX = 32, 1024


@dataclass(frozen=True)
class PreprocessOptions:
    """Every choice that changes the pixels of a packed dataset.

    Attributes:
        size_px: side of the square output, 32..1024 (the thesis used 64 and 256).
        resize: ``stretch`` (ignore aspect), ``pad`` (fit inside, black borders) or
            ``crop`` (fill, centre crop).
        crop_top: fraction of the height removed from the top before resizing
            (COVID-Net removes 0.08 to cut burned-in text).
        equalize: ``none``, ``hist`` (global histogram equalisation) or ``clahe``.
        clahe_clip: CLAHE clip limit (OpenCV's definition).
        clahe_grid: CLAHE tiles per side.
        gamma: output = input ** gamma on [0, 1]; 1 leaves the image unchanged.
        bit_depth: 8 (uint8) or 16 (uint16) output.
        draft: let JPEGs decode at a reduced DCT scale when that still leaves at
            least ``size_px`` (several times faster for large files).
        lungs: ``none``; ``crop`` (to the lung mask's bounding box plus
            ``lung_margin``, before the square resize); ``mask`` (pixels outside
            the lungs set to 0). Both need a lung mask per image.
        lung_margin: with ``crop``, the box grows by this fraction of its own height
            (top and bottom) and width (left and right), clipped to the image.
    """

    size_px: int = 64
    resize: ResizeMode = "stretch"
    crop_top: float = 0.0
    equalize: EqualizeMode = "none"
    clahe_clip: float = 2.0
    clahe_grid: int = 8
    gamma: float = 1.0
    bit_depth: int = 8
    draft: bool = True
    lungs: LungsMode = "none"
    lung_margin: float = 0.05

    def __post_init__(self) -> None:
        if not MIN_SIZE_PX <= self.size_px <= MAX_SIZE_PX:
            raise CxrlabError(f"--size must be {MIN_SIZE_PX}..{MAX_SIZE_PX} px, got {self.size_px}")
        if self.resize not in ("stretch", "pad", "crop"):
            raise CxrlabError(f"--resize must be stretch, pad or crop, got {self.resize!r}")
        if not 0.0 <= self.crop_top < 0.5:
            raise CxrlabError(f"--crop-top must be a fraction in [0, 0.5), got {self.crop_top}")
        if self.equalize not in ("none", "hist", "clahe"):
            raise CxrlabError(f"--equalize must be none, hist or clahe, got {self.equalize!r}")
        if self.bit_depth not in (8, 16):
            raise CxrlabError(f"--bit-depth must be 8 or 16, got {self.bit_depth}")
        if self.gamma <= 0:
            raise CxrlabError(f"--gamma must be positive, got {self.gamma}")
        if self.clahe_clip <= 0 or self.clahe_grid < 1:
            raise CxrlabError("--clahe-clip must be > 0 and --clahe-grid >= 1")
        if self.lungs not in ("none", "crop", "mask"):
            raise CxrlabError(f"--lungs must be none, crop or mask, got {self.lungs!r}")
        if not 0.0 <= self.lung_margin <= 1.0:
            raise CxrlabError(f"--lung-margin must be a fraction in [0, 1], got {self.lung_margin}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth == 8 else np.uint16)

    @property
    def draft_px(self) -> int | None:
        """The smallest decoded side that still allows an exact result after the top crop
        (None: decode at full size, always so with ``lungs=crop``: the lung box is smaller
        than the image)."""
        if not self.draft or self.lungs == "crop":
            return None
        return int(np.ceil(self.size_px / (1.0 - self.crop_top)))

    def as_dict(self) -> dict:
        return asdict(self)


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    raise CxrlabError(f"expected uint8 or uint16 pixels, got {pixels.dtype}")


def crop_top(image: np.ndarray, fraction: float) -> np.ndarray:
    """Remove ``fraction`` of the rows from the top."""
    rows = int(round(image.shape[0] * fraction))
    return image[rows:] if rows > 0 else image


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width <= image.shape[1] and height <= image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0) if not shrinking else resized


def resize_square(image: np.ndarray, size_px: int, mode: ResizeMode = "stretch") -> np.ndarray:
    """Resize a float image in [0, 1] to (size_px, size_px).

    Area interpolation when shrinking (no aliasing), bicubic (clipped) when enlarging.
    """
    height, width = image.shape
    if mode == "stretch":
        return _resize(image, size_px, size_px)
    if mode == "pad":
        scale = size_px / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = _resize(image, new_w, new_h)
        out = np.zeros((size_px, size_px), dtype=image.dtype)
        top, left = (size_px - new_h) // 2, (size_px - new_w) // 2
        out[top : top + new_h, left : left + new_w] = resized
        return out
    if mode == "crop":
        scale = size_px / min(height, width)
        new_w, new_h = max(size_px, round(width * scale)), max(size_px, round(height * scale))
        resized = _resize(image, new_w, new_h)
        top, left = (new_h - size_px) // 2, (new_w - size_px) // 2
        return np.ascontiguousarray(resized[top : top + size_px, left : left + size_px])
    raise CxrlabError(f"unknown resize mode {mode!r}")


def quantize(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float [0, 1] -> uint8 or uint16 with rounding."""
    top = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation (OpenCV for uint8; the same CDF mapping for uint16)."""
    if image.dtype == np.uint8:
        return cv2.equalizeHist(image)
    levels = 65536
    histogram = np.bincount(image.ravel(), minlength=levels)
    cdf = histogram.cumsum()
    cdf_min = cdf[np.nonzero(cdf)[0][0]]
    if cdf[-1] == cdf_min:  # a flat image stays as it is
        return image.copy()
    lut = np.round((cdf - cdf_min) / float(cdf[-1] - cdf_min) * (levels - 1))
    return np.clip(lut, 0, levels - 1).astype(np.uint16)[image]


def clahe(image: np.ndarray, clip: float = 2.0, grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV; uint8 or uint16)."""
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid, grid)).apply(image)


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma on the normalised range via a lookup table; 1.0 is the identity."""
    if gamma == 1.0:
        return image
    top = np.iinfo(image.dtype).max
    lut = np.round((np.arange(top + 1, dtype=np.float64) / top) ** gamma * top)
    return lut.astype(image.dtype)[image]


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) bool -> (height, width) bool, nearest neighbour (a mask stays binary)."""
    if mask.shape == (height, width):
        return mask
    resized = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool)


def lung_box(mask: np.ndarray, margin: float = 0.0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom/right exclusive: the bounding box of the True
    pixels of ``mask`` (H, W), grown by ``margin`` x its height (top and bottom) and
    width (left and right), rounded, clipped to the image.

    Raises:
        CxrlabError: when the mask has no True pixel.
    """
    rows, columns = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        raise CxrlabError("the lung mask is empty: no lung box")
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(columns[0]), int(columns[-1]) + 1
    grow_rows, grow_columns = round(margin * (bottom - top)), round(margin * (right - left))
    height, width = mask.shape
    return (
        max(0, top - grow_rows),
        min(height, bottom + grow_rows),
        max(0, left - grow_columns),
        min(width, right + grow_columns),
    )


def _lung_geometry(
    image: np.ndarray | None, lung_mask: np.ndarray | None, options: PreprocessOptions
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Top crop and the lungs step on a float image (H, W) and/or its lung mask; the mask
    is first resized (nearest) to the image's size when both are given and differ."""
    if lung_mask is not None and image is not None:
        lung_mask = resize_mask(lung_mask, *image.shape)
    if image is not None:
        image = crop_top(image, options.crop_top)
    if lung_mask is not None:
        lung_mask = crop_top(lung_mask, options.crop_top)
    if options.lungs == "none":
        return image, lung_mask
    if lung_mask is None:
        raise CxrlabError(f"--lungs {options.lungs} needs a lung mask for every image")
    if options.lungs == "crop":
        top, bottom, left, right = lung_box(lung_mask, options.lung_margin)
        lung_mask = lung_mask[top:bottom, left:right]
        if image is not None:
            image = np.ascontiguousarray(image[top:bottom, left:right])
    elif image is not None:
        image = np.where(lung_mask, image, 0.0).astype(image.dtype)
    return image, lung_mask


def preprocess_lung_mask(
    lung_mask: np.ndarray, image_shape: tuple[int, int], options: PreprocessOptions
) -> np.ndarray:
    """A lung mask (h, w) bool of an image of ``image_shape`` (H, W) -> (size_px, size_px)
    bool, cropped and resized exactly as :func:`preprocess_pixels` does the image."""
    lung_mask = resize_mask(lung_mask, *image_shape)
    _, lung_mask = _lung_geometry(None, lung_mask, options)
    square = resize_square(lung_mask.astype(np.float32), options.size_px, options.resize)
    return square >= 0.5


def preprocess_pixels(
    pixels: np.ndarray, options: PreprocessOptions, lung_mask: np.ndarray | None = None
) -> np.ndarray:
    """One decoded image (uint8/uint16, any size) -> (size_px, size_px) of ``options.dtype``.

    Args:
        pixels: (H, W) uint8 or uint16.
        options: the choices.
        lung_mask: (h, w) bool, True = lung, resized to (H, W) if it differs; needed
            when ``options.lungs`` is ``crop`` or ``mask``.
    """
    image = to_unit_float(pixels)
    image, _ = _lung_geometry(image, lung_mask, options)
    image = resize_square(image, options.size_px, options.resize)
    out = quantize(image, options.bit_depth)
    if options.equalize == "hist":
        out = equalize_hist(out)
    elif options.equalize == "clahe":
        out = clahe(out, options.clahe_clip, options.clahe_grid)
    return apply_gamma(out, options.gamma)
