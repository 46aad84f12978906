from pathlib import Path

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
    train = training_set(packed, synthetic=other, allow_mismatch=True)
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


# ------------------------------------------------------------------ synthetic provenance and copies
def test_the_classifier_package_never_imports_the_generator_package():
    """Siblings talk through files and the data layer: clf reads what gen sample wrote.
    Every import statement counts, those inside functions too."""
    import ast

    import cxrlab.clf

    offending = []
    for path in sorted(Path(cxrlab.clf.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offending += [f"{path.name}: {n}" for n in names if n.startswith("cxrlab.gen")]
    assert offending == []


def test_synthetic_images_without_provenance_train_only_when_accepted_unverified(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 8, "val": 4})
    folder = synthetic_pngs(tmp_path / "D", provenance=False)
    with pytest.raises(DatasetError, match="no provenance.json.*--synthetic-unverified"):
        training_set(packed, synthetic=folder)
    train = training_set(packed, synthetic=folder, synthetic_unverified=True)
    assert (train.origins == "synthetic").sum() == 6
    assert any("unverified" in note and "not known" in note for note in train.notes)
    # with provenance nothing needs saying
    assert training_set(packed, synthetic=synthetic_pngs(tmp_path / "E")).notes == []


def _copy_of(image: np.ndarray, how: str) -> np.ndarray:
    """A held-out image as someone might have saved it."""
    import io

    from PIL import Image

    if how == "resized to 40 px":
        return np.asarray(Image.fromarray(image).resize((40, 40), Image.BILINEAR))
    if how == "one pixel changed":
        copy = image.copy()
        copy[5, 5] = 255 - copy[5, 5]
        return copy
    if how == "re-encoded as JPEG":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=75)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    # "saved at another bit depth": an 8-bit PNG of a 16-bit PACKED's image
    return np.round(image.astype(np.float64) / 257).astype(np.uint8)


@pytest.mark.parametrize(
    "how", ["resized to 40 px", "one pixel changed", "re-encoded as JPEG", "at another bit depth"]
)
def test_copies_of_held_out_images_are_refused_however_they_are_saved(tmp_path, how):
    from clf_factory import toy_images
    from PIL import Image

    packed = split_packed(tmp_path / "P", {"train": 8, "val": 4, "test": 4}, size_px=48)
    if how == "at another bit depth":  # a 16-bit PACKED whose values are not 8-bit ones x 257
        images = np.load(packed / "images.npy").astype(np.uint16) * 256 + 77
        np.save(packed / "images.npy", images)
    data = open_packed(packed)
    folder = synthetic_pngs(tmp_path / "D")
    test_row = int(data.select("test")[1])
    Image.fromarray(_copy_of(np.asarray(data.images[test_row]), how)).save(
        folder / "synthetic_000009.png"
    )
    for other in folder.glob("*.png"):  # the other images at the copy's size
        if other.name != "synthetic_000009.png":
            side = Image.open(folder / "synthetic_000009.png").size[0]
            Image.fromarray(toy_images(np.ones(1, int), side, seed=int(other.stem[-1]) + 20)[0]).save(other)  # fmt: skip
    for other in (folder / "normal").glob("*.png"):
        other.unlink()
    with pytest.raises(DatasetError, match=f"copy of {data.manifest['id'][test_row]} of the test"):
        training_set(packed, synthetic=folder, allow_mismatch=True)


def test_distinct_images_are_not_taken_for_copies(tmp_path):
    """The toy images differ only in their noise and disc: none is a copy of another."""
    from cxrlab.data.provenance import refuse_held_out_copies

    packed = split_packed(tmp_path / "P", {"train": 8, "val": 16, "test": 16})
    data = open_packed(packed)
    others = split_packed(tmp_path / "Q", {"train": 40}, seed=5)
    refuse_held_out_copies(data, np.asarray(open_packed(others).images), "--synthetic Q")
