import numpy as np
import pytest
import torch
from PIL import Image

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.augmented import augment_packed
from cxrlab.data.loader import PackedDataset, packed_loader
from cxrlab.data.manifest import read_manifest
from cxrlab.data.packed import open_packed, preprocess_dataset
from cxrlab.data.show import show_packed
from cxrlab.errors import CxrlabError, DatasetError
from cxrlab.preprocess.transforms import PreprocessOptions
from cxrlab.utils.outputs import OutputError
from factory import rgb_png


@pytest.fixture
def dataset(tmp_path):
    """24 images, 12 patients, two classes, split 50/25/25."""
    rng = np.random.default_rng(0)
    for cls in ("COVID", "Normal"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(12):
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            noise = rng.integers(0, 255, size[::-1], dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / "src" / cls / f"p{i % 6}_{cls}_{i}.png")
    out = tmp_path / "ds"
    import_source(
        "folders",
        tmp_path / "src",
        out,
        patient_regex=r"^(p\d+)_",
        near_distance=None,
        progress=False,
    )
    split_dataset(out, (0.5, 0.25, 0.25), seed=0)
    return out


def test_preprocess_shapes_order_and_reuse(dataset, tmp_path):
    out = tmp_path / "P"
    report = preprocess_dataset(dataset, out, PreprocessOptions(size_px=32), progress=False)
    images = np.load(out / "images.npy", mmap_mode="r")
    assert images.shape == (24, 32, 32) and images.dtype == np.uint8 and not report.reused
    assert read_manifest(out)["id"].tolist() == read_manifest(dataset)["id"].tolist()
    first = {
        name: (out / name).read_bytes() for name in ("images.npy", "manifest.csv", "meta.json")
    }
    again = preprocess_dataset(dataset, out, PreprocessOptions(size_px=32), progress=False)
    assert again.reused
    preprocess_dataset(dataset, out, PreprocessOptions(size_px=32), progress=False, force=True)
    assert first == {name: (out / name).read_bytes() for name in first}
    with pytest.raises(OutputError, match="another preprocessing options"):
        preprocess_dataset(dataset, out, PreprocessOptions(size_px=32, equalize="hist"), progress=False)  # fmt: skip
    assert first == {name: (out / name).read_bytes() for name in first}
    changed = preprocess_dataset(
        dataset, out, PreprocessOptions(size_px=32, equalize="hist"), progress=False, force=True
    )
    assert not changed.reused


def test_preprocess_in_worker_threads_gives_the_bytes_of_one_thread(dataset, tmp_path):
    # workers=2: two decoding threads, results written in row order
    options = PreprocessOptions(size_px=32, equalize="clahe")
    preprocess_dataset(dataset, tmp_path / "one", options, workers=1, progress=False)
    preprocess_dataset(dataset, tmp_path / "two", options, workers=2, progress=False)
    for name in ("images.npy", "manifest.csv", "rejects.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_preprocess_sixteen_bit_and_splits(dataset, tmp_path):
    report = preprocess_dataset(
        dataset,
        tmp_path / "P",
        PreprocessOptions(size_px=48, bit_depth=16),
        splits=["train"],
        progress=False,
    )
    packed = open_packed(tmp_path / "P")
    assert packed.images.dtype == np.uint16 and set(packed.manifest["split"]) == {"train"}
    assert (
        report.n_images
        == len(packed.manifest)
        == (read_manifest(dataset)["split"] == "train").sum()
    )
    with pytest.raises(DatasetError, match="no rows"):
        preprocess_dataset(dataset, tmp_path / "Q", splits=["external"], progress=False)


def test_interrupted_preprocess_leaves_no_packed_folder(dataset, tmp_path, monkeypatch):
    import cxrlab.data.pack_worker as packed_module  # the per-image work

    calls = {"n": 0}
    real = packed_module.preprocess_pixels

    def fail_midway(pixels, options):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(pixels, options)

    monkeypatch.setattr(packed_module, "preprocess_pixels", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(dataset, tmp_path / "P", workers=1, progress=False)
    assert not (tmp_path / "P").exists()
    assert not any(p.name.startswith(".P.partial") for p in tmp_path.iterdir())


def test_vanished_file_becomes_a_reject_not_a_gap(dataset, tmp_path):
    victim = read_manifest(dataset)["path"].iloc[3]
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "x.png").write_bytes(open(victim, "rb").read())
    import os

    os.remove(victim)
    report = preprocess_dataset(
        dataset, tmp_path / "P", PreprocessOptions(size_px=32), progress=False
    )
    packed = open_packed(tmp_path / "P")
    assert report.n_rejected == 1 and len(packed.manifest) == 23 == packed.images.shape[0]
    assert victim not in set(packed.manifest["path"])


def test_a_damaged_images_file_is_a_clear_error_naming_it(dataset, tmp_path):
    packed = tmp_path / "P"
    preprocess_dataset(dataset, packed, PreprocessOptions(size_px=32), progress=False)
    images = packed / "images.npy"
    for damage, words in (
        (lambda: np.save(images, np.array([{"a": 1}], dtype=object)), "holds Python objects"),
        (lambda: images.write_text('{"metrics": {}}'), "cannot be read as a NumPy array"),
        (lambda: np.save(images, np.zeros((24, 32), np.uint8)), "not \\(N, H, W\\)"),
        (lambda: np.save(images, np.zeros((24, 32, 32), np.float32)), "float32 array"),
        (images.unlink, "is missing"),
    ):
        damage()
        with pytest.raises(DatasetError, match=words) as error:
            open_packed(packed)
        assert str(images) in str(error.value) and "--force" in str(error.value)


def test_loader_ranges_filters_and_batches(dataset, tmp_path):
    preprocess_dataset(dataset, tmp_path / "P", PreprocessOptions(size_px=32), progress=False)
    positives = PackedDataset(tmp_path / "P", split="train", covid=1)
    assert (positives.labels == 1).all() and len(positives) > 0
    images = positives.all_images()
    assert images.shape[1:] == (1, 32, 32) and images.min() >= -1 and images.max() <= 1
    batch = positives.__getitems__([2, 0, 1])
    for (image, label), position in zip(batch, [2, 0, 1], strict=True):
        single, single_label = positives[position]
        assert torch.equal(image, single) and label == single_label
    loader = packed_loader(tmp_path / "P", batch_size=5, split=["train", "val"], normalize="unit")
    images, labels = next(iter(loader))
    assert images.shape == (5, 1, 32, 32) and labels.dtype == torch.int64 and images.min() >= 0
    with pytest.raises(CxrlabError):
        PackedDataset(tmp_path / "P", split="external")


def test_offline_augment_only_train_exactly_n_copies(dataset, tmp_path):
    preprocess_dataset(dataset, tmp_path / "P", PreprocessOptions(size_px=32), progress=False)
    report = augment_packed(
        tmp_path / "P", tmp_path / "P2", preset="mild", per_image=10, progress=False
    )
    source = open_packed(tmp_path / "P")
    packed = open_packed(tmp_path / "P2")
    manifest = packed.manifest
    n_train = (source.manifest["split"] == "train").sum()
    assert report.n_augmented == 10 * n_train == (manifest["augmented"] == "1").sum()
    copies = manifest[manifest["augmented"] == "1"]
    assert set(copies["split"]) == {"train"}
    assert (copies.groupby("parent_id").size() == 10).all()
    parents = source.manifest.set_index("id")
    for column in ("patient_id", "covid", "label", "split"):
        assert (
            copies[column].to_numpy() == parents.loc[copies["parent_id"], column].to_numpy()
        ).all()
    np.testing.assert_array_equal(packed.images[: len(source.manifest)], source.images)
    assert augment_packed(
        tmp_path / "P", tmp_path / "P2", preset="mild", per_image=10, progress=False
    ).reused
    augment_packed(tmp_path / "P", tmp_path / "P3", preset="mild", per_image=10, progress=False)
    assert (tmp_path / "P2" / "images.npy").read_bytes() == (
        tmp_path / "P3" / "images.npy"
    ).read_bytes()
    only_positive = augment_packed(
        tmp_path / "P", tmp_path / "P4", per_image=2, covid=1, progress=False
    )
    train = source.manifest[source.manifest["split"] == "train"]
    assert only_positive.n_augmented == 2 * (train["covid"] == 1).sum()


def test_show_writes_grids(dataset, tmp_path):
    preprocess_dataset(dataset, tmp_path / "P", PreprocessOptions(size_px=32), progress=False)
    grid = Image.open(show_packed(tmp_path / "P", tmp_path / "g.png", n=16))
    assert grid.width > 4 * 128 and grid.height > 4 * 128  # 32 px tiles shown at 128 px
    variants = Image.open(show_packed(tmp_path / "P", tmp_path / "a.png", n=9, augment="severe"))
    assert 3 * 128 < variants.width < 4 * 128  # 3 columns


def test_rgb_png_helper_is_readable(tmp_path):  # guards the fixture files themselves
    assert Image.open(rgb_png(tmp_path / "x.png")).mode == "RGB"


def test_dev_data_preprocess_64_clahe_256(ieee8023_dir, tmp_path):
    import_source("ieee8023", ieee8023_dir, tmp_path / "X", progress=False)
    n_rows = len(read_manifest(tmp_path / "X"))
    report = preprocess_dataset(
        tmp_path / "X", tmp_path / "P", PreprocessOptions(size_px=64), progress=False
    )
    assert np.load(tmp_path / "P" / "images.npy", mmap_mode="r").shape == (n_rows, 64, 64)
    assert report.n_rejected == 0
    assert preprocess_dataset(
        tmp_path / "X", tmp_path / "P", PreprocessOptions(size_px=64), progress=False
    ).reused
    big = preprocess_dataset(
        tmp_path / "X",
        tmp_path / "P256",
        PreprocessOptions(size_px=256, equalize="clahe"),
        progress=False,
    )
    assert big.shape == (n_rows, 256, 256)
