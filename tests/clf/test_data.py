import numpy as np
import pytest
from clf_factory import split_packed, synthetic_packed, synthetic_pngs

from cxrlab.clf.data import evaluation_set, generated_mask, patient_overlap, training_set
from cxrlab.data.packed import open_packed
from cxrlab.errors import DatasetError


def test_generated_rows_train_but_never_judge(tmp_path):
    packed = split_packed(tmp_path / "P", augmented_copies=5, leak_augmented_into=("val", "test"))
    train = training_set(packed, synthetic=synthetic_packed(tmp_path / "S"))
    assert (train.origins == "augmented").sum() == 5
    assert (train.origins == "synthetic").sum() == 6
    assert (train.origins == "real").sum() == 32
    for split in ("val", "test", "all"):
        images = evaluation_set(packed, split)
        assert (images.origins == "real").all(), split
        assert not images.table["id"].str.contains("aug|leak|synthetic").any(), split
    assert len(evaluation_set(packed, "val")) == 16  # the leaked augmented row is left out


def test_missing_flag_columns_count_as_real(tmp_path):
    packed = split_packed(tmp_path / "P")
    manifest = open_packed(packed).manifest.drop(columns=["augmented"])
    assert not generated_mask(manifest).any()
    manifest["synthetic"] = ["1"] + ["0"] * (len(manifest) - 1)
    assert generated_mask(manifest).sum() == 1


def test_synthetic_ratio_draws_a_seeded_share(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 8, "val": 4})
    synthetic = synthetic_packed(tmp_path / "S", n=10)
    a = training_set(packed, synthetic=synthetic, synthetic_ratio=0.5, seed=1)
    b = training_set(packed, synthetic=synthetic, synthetic_ratio=0.5, seed=1)
    assert (a.origins == "synthetic").sum() == 4
    assert a.table["id"].tolist() == b.table["id"].tolist()
    with pytest.raises(DatasetError, match="holds 10"):
        training_set(packed, synthetic=synthetic, synthetic_ratio=2.0)


def test_synthetic_png_folders_are_covid_unless_stated(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 8, "val": 4})
    train = training_set(packed, synthetic=synthetic_pngs(tmp_path / "D"))
    synthetic = train.table[train.table["origin"] == "synthetic"]
    assert len(synthetic) == 6
    assert synthetic["covid"].sum() == 4  # the two in normal/ are negative
    batch = train.batch(np.arange(len(train)))
    assert batch.shape == (14, 1, 32, 32) and 0 <= batch.min() and batch.max() <= 1
    (tmp_path / "D" / "mystery").mkdir()
    (tmp_path / "D" / "normal" / "synthetic_000000.png").rename(
        tmp_path / "D" / "mystery" / "x.png"
    )
    with pytest.raises(DatasetError, match="mystery"):
        training_set(packed, synthetic=tmp_path / "D")


def test_real_images_are_refused_as_synthetic(tmp_path):
    from PIL import Image

    packed = split_packed(tmp_path / "P", {"train": 8, "val": 4, "test": 4})
    with pytest.raises(DatasetError, match="PACKED of real images"):
        training_set(packed, synthetic=packed)  # the real PACKED itself
    data = open_packed(packed)
    copies = synthetic_pngs(tmp_path / "D")
    test_row = int(data.select("test")[2])
    Image.fromarray(np.asarray(data.images[test_row])).save(copies / "synthetic_000009.png")
    with pytest.raises(DatasetError, match=f"copy of {data.manifest['id'][test_row]} of the test"):
        training_set(packed, synthetic=copies)
    # a copy of a training image is no leak (a generator may reproduce one)
    train_row = int(data.select("train")[0])
    Image.fromarray(np.asarray(data.images[train_row])).save(copies / "synthetic_000009.png")
    assert (training_set(packed, synthetic=copies).origins == "synthetic").sum() == 7


def test_batches_resize_images_of_another_size(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 4, "val": 4})
    other = synthetic_packed(tmp_path / "S", n=2, size_px=48)
    train = training_set(packed, synthetic=other)
    assert train.batch([0, 5, 4]).shape == (3, 1, 32, 32)
    assert evaluation_set(packed, "val", size_px=16).batch([0, 1]).shape == (2, 1, 16, 16)


def test_batches_match_the_packed_pixels_in_the_asked_order(tmp_path):
    packed = split_packed(tmp_path / "P")
    data = open_packed(packed)
    images = evaluation_set(data, "test")
    batch = images.batch([3, 0, 2])
    rows = images.table["row"].to_numpy()[[3, 0, 2]]
    assert np.allclose(batch[:, 0].numpy() * 255, data.images[rows])


def test_empty_splits_and_patient_overlap_are_reported(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 8, "val": 4})
    with pytest.raises(DatasetError, match="--split all"):
        evaluation_set(packed, "external")
    assert patient_overlap(packed) == {"val": 0, "test": 0}
