"""Files the tests make themselves: every kind of good and bad input found in public CXR sets.

The reference picture is a 40 x 60 greyscale image whose left half is darker
(value 50) than its right half (200), with a bright square in the top-left
quarter (value 255) so that flips and rotations are detectable.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 40, 60
DARK, BRIGHT, MARK = 50, 200, 255


def reference_image() -> np.ndarray:
    """(40, 60) uint8: dark left half, bright right half, a white mark at the top left."""
    image = np.full((HEIGHT, WIDTH), BRIGHT, dtype=np.uint8)
    image[:, : WIDTH // 2] = DARK
    image[2:10, 2:10] = MARK
    return image


def assert_upright(pixels: np.ndarray, tolerance: float = 20) -> None:
    """The decoded image has the reference's shape, polarity and orientation."""
    assert pixels.shape == (HEIGHT, WIDTH), pixels.shape
    scale = 257.0 if pixels.dtype == np.uint16 else 1.0
    values = pixels.astype(np.float64) / scale
    left = values[15:, : WIDTH // 2 - 2].mean()
    right = values[:, WIDTH // 2 + 2 :].mean()
    assert abs(left - DARK) < tolerance and abs(right - BRIGHT) < tolerance, (left, right)
    assert values[3:9, 3:9].mean() > BRIGHT, "the top-left mark moved: orientation is wrong"


def save_png(path: Path, image: Image.Image) -> Path:
    image.save(path, format="PNG")
    return path


def rgb_png(path: Path) -> Path:
    grey = reference_image()
    return save_png(path, Image.fromarray(np.stack([grey] * 3, axis=-1)))


def rgba_png(path: Path) -> Path:
    """Fully opaque except a transparent bottom-right corner (which must become black)."""
    grey = reference_image()
    alpha = np.full_like(grey, 255)
    alpha[-5:, -5:] = 0
    return save_png(path, Image.fromarray(np.stack([grey, grey, grey, alpha], axis=-1), "RGBA"))


def palette_png(path: Path) -> Path:
    return save_png(path, Image.fromarray(reference_image()).convert("P"))


def png16(path: Path) -> Path:
    """16-bit greyscale PNG with values that need all 16 bits."""
    values = reference_image().astype(np.uint16) * 256 + 3  # +3 is lost in 8 bits
    image = Image.fromarray(values)  # mode I;16
    return save_png(path, image)


def cmyk_jpeg(path: Path) -> Path:
    Image.fromarray(reference_image()).convert("CMYK").save(path, format="JPEG", quality=95)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Pixels stored rotated by 90 degrees with EXIF Orientation 6 (display: rotate 90 CW)."""
    stored = np.ascontiguousarray(np.rot90(reference_image(), 1))  # 90 CCW
    image = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def webp_named_png(path: Path) -> Path:
    Image.fromarray(reference_image()).save(path, format="WEBP", lossless=True)
    return path


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text_named_png(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    noisy = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupted_png(path: Path) -> Path:
    """A PNG whose IDAT chunk has a flipped byte (CRC mismatch)."""
    buffer = io.BytesIO()
    Image.fromarray(reference_image()).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    index = data.index(b"IDAT") + 10
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def bomb_png(path: Path, side: int = 3000) -> Path:
    """A tiny file that decodes to side x side pixels (over the tests' pixel limit)."""
    Image.new("L", (side, side)).save(path, format="PNG")
    return path


def dicom(
    path: Path,
    photometric: str = "MONOCHROME2",
    *,
    compressed: bool = False,
    window: tuple[float, float] | None = (2048.0, 4096.0),
) -> Path:
    """A 12-bit DICOM of the reference picture (MONOCHROME1 stores it inverted).

    Stored values: reference * 16 (0..4080), so with the full window (centre 2048,
    width 4096) the displayed image equals the reference.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    values = reference_image().astype(np.uint16) * 16
    if photometric == "MONOCHROME1":
        values = 4095 - values
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEG2000Lossless if compressed else ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.PatientID = "TEST"
    dataset.Rows, dataset.Columns = values.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, 0
    if window:
        dataset.WindowCenter, dataset.WindowWidth = window
    if compressed:
        dataset.PixelData = encapsulate([b"\x00" * 64])
        dataset["PixelData"].VR = "OB"
    else:
        dataset.PixelData = values.tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


#: Every readable kind: (file name, maker). Names with a wrong extension are deliberate.
READABLE = {
    "rgb.png": rgb_png,
    "rgba.png": rgba_png,
    "palette.png": palette_png,
    "sixteen_bit.png": png16,
    "cmyk.jpg": cmyk_jpeg,
    "exif_rotated.jpg": exif_rotated_jpeg,
    "webp_named.png": webp_named_png,
    "mono2_12bit.dcm": lambda p: dicom(p, "MONOCHROME2"),
    "mono1_12bit.dcm": lambda p: dicom(p, "MONOCHROME1"),
}

#: Every broken kind: (file name, maker, expected reject reason).
BROKEN = {
    "zero_bytes.png": (zero_bytes, "unreadable"),
    "truncated.jpg": (truncated_jpeg, "unreadable"),
    "corrupted_chunk.png": (corrupted_png, "unreadable"),
    "text.png": (text_named_png, "unreadable"),
    "bomb.png": (bomb_png, "decompression bomb"),
    "jpeg2000.dcm": (
        lambda p: dicom(p, "MONOCHROME2", compressed=True),
        "unsupported DICOM encoding",
    ),
}

#: The pixel limit tests use, so that ``bomb_png`` counts as a bomb.
TEST_MAX_PIXELS = 4_000_000


def make_bad_input_folders(root: Path) -> Path:
    """A folders dataset: ``root/COVID`` holds every readable kind, ``root/Normal`` every broken one."""
    covid, normal = root / "COVID", root / "Normal"
    covid.mkdir(parents=True)
    normal.mkdir(parents=True)
    for name, maker in READABLE.items():
        maker(covid / name)
    for name, (maker, _) in BROKEN.items():
        maker(normal / name)
    return root


def folders_tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """A folders dataset with sites: ``layout`` {class: {site: n}} ->
    ``root/<class>/<site>/<site>_<i>.png`` (reference images, for ``--site-level 1``)."""
    for label, sites in layout.items():
        for site, n in sites.items():
            (root / label / site).mkdir(parents=True)
            for i in range(n):
                rgb_png(root / label / site / f"{site}_{i}.png")
    return root


def make_packed(path: Path, n: int = 16, size_px: int = 32, seed: int = 0) -> Path:
    """A small PACKED folder written directly (for trainers' tests): blurred blobs, half COVID."""
    import json

    import pandas as pd

    from cxrlab.data.manifest import MANIFEST_COLUMNS, dataframe_to_csv_text
    from cxrlab.data.packed import IMAGES, META, PACKED_FORMAT, PACKED_FORMAT_VERSION

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size_px, 0:size_px] / size_px
    images = []
    for _ in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        images.append(np.round(255 * blob).astype(np.uint8))
    path.mkdir(parents=True)
    np.save(path / IMAGES, np.stack(images))
    rows = []
    for i in range(n):
        row = dict.fromkeys(MANIFEST_COLUMNS, "")
        row.update(
            id=f"t:{i}", covid=i % 2, label="covid" if i % 2 else "normal", patient_id=f"t:p{i}", source="t",
            width=size_px, height=size_px, mode="L", bit_depth=8, split="train" if i < n * 3 // 4 else "val",
        )  # fmt: skip
        rows.append(row)
    (path / "manifest.csv").write_text(dataframe_to_csv_text(pd.DataFrame(rows)))
    meta = {"format": PACKED_FORMAT, "format_version": PACKED_FORMAT_VERSION, "n_images": n}
    (path / META).write_text(json.dumps(meta))
    return path
