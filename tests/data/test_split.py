import pandas as pd
import pytest

from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.manifest import read_manifest
from cxrlab.data.split import assign_splits
from cxrlab.errors import DatasetError


def synthetic_manifest(n_patients=60, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        covid = int(patient % 3 == 0)
        for image in range(int(rng.integers(1, 5))):
            rows.append(
                {
                    "id": f"p{patient}-{image}",
                    "patient_id": f"p{patient}",
                    "covid": covid,
                    "source": "a" if patient < 50 else "b",
                    "duplicate_group": "",
                }
            )
    frame = pd.DataFrame(rows)
    # one image of p1 duplicates one of p2: they must share a split
    frame.loc[frame["patient_id"] == "p1", "duplicate_group"] = "dup00001"
    frame.loc[frame.index[frame["patient_id"] == "p2"][0], "duplicate_group"] = "dup00001"
    return frame


def test_no_patient_or_duplicate_group_in_two_splits():
    frame = synthetic_manifest()
    frame["split"] = assign_splits(frame, (0.6, 0.2, 0.2), seed=3)
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()
    dup = frame[frame["duplicate_group"] != ""]
    assert dup["split"].nunique() == 1
    assert set(frame["split"]) == {"train", "val", "test"}


def test_split_is_stratified_and_near_the_ratios():
    frame = synthetic_manifest(300)
    frame["split"] = assign_splits(frame, (0.6, 0.2, 0.2), seed=0)
    shares = frame["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.6) < 0.05 and abs(shares["test"] - 0.2) < 0.05
    positive_share = frame.groupby("split")["covid"].mean()
    assert (abs(positive_share - frame["covid"].mean()) < 0.07).all()


def test_same_seed_same_split_other_seed_other_split():
    frame = synthetic_manifest(100)
    first = assign_splits(frame, seed=7)
    assert first.equals(assign_splits(frame, seed=7))
    assert not first.equals(assign_splits(frame, seed=8))


def test_holdout_source_becomes_external():
    frame = synthetic_manifest()
    split = assign_splits(frame, seed=0, holdout_source="b")
    assert (split[frame["source"] == "b"] == "external").all()
    assert (split[frame["source"] == "a"] != "external").all()
    with pytest.raises(DatasetError, match="not a source"):
        assign_splits(frame, holdout_source="zzz")


def test_dev_data_split_by_patient_is_reproducible(ieee8023_dir, tmp_path):
    import_source("ieee8023", ieee8023_dir, tmp_path / "X", progress=False)
    split_dataset(tmp_path / "X", (0.6, 0.2, 0.2), seed=0)
    first = (tmp_path / "X" / "manifest.csv").read_bytes()
    manifest = read_manifest(tmp_path / "X")
    assert (manifest.groupby("patient_id")["split"].nunique() == 1).all()
    split_dataset(tmp_path / "X", (0.6, 0.2, 0.2), seed=0)
    assert (tmp_path / "X" / "manifest.csv").read_bytes() == first
