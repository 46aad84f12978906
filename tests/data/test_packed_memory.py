"""A PACKED is written and read through memory maps whose touched pages are handed back:
a process's resident memory does not grow to the size of the PACKED (issue 25).

Each test reads how much of ``images.npy`` is resident in this process from
/proc/self/smaps (Linux), with the hand-back threshold lowered to 256 KB, over a 32 MB
stack read in order: the kernel maps whole page-cache folios (up to megabytes) around
what is read, so the bound is a quarter of the stack, not the threshold itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from factory import make_packed

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/smaps"
)

THRESHOLD = 256 * 1024
SIDE = 256  # 64 KB per image
N = 512  # 32 MB of images
BOUND = N * SIDE * SIDE // 4


def resident_bytes(array: np.ndarray) -> int:
    """Bytes of ``array``'s memory resident in this process (present bits of
    /proc/self/pagemap over its address range)."""
    page = os.sysconf("SC_PAGE_SIZE")
    first = array.ctypes.data // page
    last = (array.ctypes.data + array.nbytes - 1) // page
    with open("/proc/self/pagemap", "rb") as handle:
        handle.seek(first * 8)
        entries = np.frombuffer(handle.read((last - first + 1) * 8), dtype=np.uint64)
    return int(((entries >> np.uint64(63)) & np.uint64(1)).sum()) * page


def assert_measurable(images: np.ndarray) -> None:
    """The measure sees a plain read of the map (a bound of 0 proves nothing otherwise)."""
    int(images[: len(images) // 2].sum())
    assert resident_bytes(images) > BOUND


@pytest.fixture
def low_threshold(monkeypatch):
    import cxrlab.data.packed as packed

    monkeypatch.setattr(packed, "RELEASE_BYTES", THRESHOLD)


def big_packed(tmp_path: Path) -> Path:
    return make_packed(tmp_path / "P", n=N, size_px=SIDE)


def test_packed_loader_epoch_keeps_little_of_the_map_resident(tmp_path, low_threshold):
    from cxrlab.data.loader import packed_loader

    packed = big_packed(tmp_path)
    loader = packed_loader(packed, batch_size=8, shuffle=False)
    stack = loader.dataset.packed.images
    most, seen = 0, 0
    for images, _ in loader:
        seen += len(images)
        most = max(most, resident_bytes(stack))
    assert seen == N
    assert most <= BOUND  # not the 32 MB of the whole stack
    assert_measurable(stack)


def test_classifier_batches_keep_little_of_the_map_resident(tmp_path, low_threshold):
    from cxrlab.clf.data import training_set

    packed = big_packed(tmp_path)
    images = training_set(packed)
    most = 0
    for start in range(0, len(images), 16):
        batch = images.batch(np.arange(start, min(start + 16, len(images))))
        assert batch.shape[1:] == (1, SIDE, SIDE)
        most = max(most, resident_bytes(images.parts[0].images))
    assert most <= BOUND
    assert_measurable(images.parts[0].images)


def test_generator_reads_real_images_lazily_with_the_same_values(tmp_path, low_threshold):
    from cxrlab.gen.config import GenConfig
    from cxrlab.gen.trainer import load_real_images

    packed = big_packed(tmp_path)
    config = GenConfig(model="dcgan", data=str(packed), out=str(tmp_path / "run"), size_px=SIDE)
    real, labels = load_real_images(config)
    train = N * 3 // 4
    assert len(real) == len(labels) == train
    assert resident_bytes(real.images) == 0  # nothing converted up front
    most = 0
    for start in range(0, train, 32):
        real[start : start + 32]
        most = max(most, resident_bytes(real.images))
    assert most <= BOUND
    assert_measurable(real.images)
    stack = np.load(packed / "images.npy")[:train]
    expected = torch.from_numpy(stack.astype(np.float32) / 255.0 * 2.0 - 1.0)[:, None]
    index = torch.tensor([5, 3, 3, train - 1, 0])
    assert torch.equal(real[index], expected[index])  # bitwise, repeats and order kept
    assert torch.equal(real[:4], expected[:4])


def test_preprocess_hands_back_written_pages(tmp_path, low_threshold, monkeypatch):
    """While ``data preprocess`` writes images.npy, little of it is resident at any time."""
    import cxrlab.data.packed as packed_module
    from cxrlab.data.api import import_source
    from cxrlab.preprocess.transforms import PreprocessOptions

    dataset = tmp_path / "dataset"
    import_source("sample", None, dataset, progress=False)
    seen = []
    release = packed_module.release_pages

    def measuring_release(array):
        seen.append(resident_bytes(array))
        return release(array)

    monkeypatch.setattr(packed_module, "release_pages", measuring_release)
    report = packed_module.preprocess_dataset(
        dataset, tmp_path / "P", PreprocessOptions(size_px=512), progress=False
    )
    stack = report.n_images * 512 * 512
    assert stack > 64 * THRESHOLD  # enough images to need handing back many times
    assert len(seen) >= stack // THRESHOLD - 1
    assert max(seen) <= stack // 4


def test_dropping_rejected_rows_keeps_the_file_identical(tmp_path, low_threshold):
    from cxrlab.data.packed import _drop_rows

    stack = np.random.default_rng(0).integers(0, 65535, (40, 64, 64), dtype=np.uint16)
    keep = np.ones(40, dtype=bool)
    keep[[0, 7, 39]] = False
    np.save(tmp_path / "old.npy", stack[keep])
    np.save(tmp_path / "new.npy", stack)
    _drop_rows(tmp_path / "new.npy", keep)
    assert (tmp_path / "new.npy").read_bytes() == (tmp_path / "old.npy").read_bytes()
    _drop_rows(tmp_path / "new.npy", np.zeros(37, dtype=bool))
    assert np.load(tmp_path / "new.npy").shape == (0, 64, 64)
