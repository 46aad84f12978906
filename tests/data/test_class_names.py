"""The label vocabulary against real-world class names (tests/data/class_names.csv).

Each row is a name users meet in a public layout or metadata column, the class it must
map to (``none``: states no class; ``ambiguous``: a LabelError naming it) and where it
comes from.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrlab.data.sources.labels import LabelError, class_label, harmonise
from cxrlab.errors import DatasetError

TABLE = Path(__file__).with_name("class_names.csv")


def _rows():
    with TABLE.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_the_table_covers_enough_real_world_names():
    rows = _rows()
    assert len(rows) >= 40
    assert len({row["name"] for row in rows}) == len(rows)  # no name listed twice


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row["name"])
def test_class_name_maps_to_its_expected_class(row):
    name, expected = row["name"], row["expected_label"]
    if expected == "ambiguous":
        with pytest.raises(LabelError, match="ambiguous") as error:
            harmonise(name)
        assert repr(name) in str(error.value)  # the error names the name
    elif expected == "none":
        assert harmonise(name) is None
    else:
        assert harmonise(name) == (expected, int(row["expected_covid"]))


@pytest.mark.parametrize("name", ["seed0", "seed1", "run1", "site1", "group_1", "unlabelled"])
def test_a_folder_whose_digit_is_not_its_whole_name_states_no_class(name):
    with pytest.raises(DatasetError, match="states no class"):
        class_label(name, f"class folder {name}")


def test_synthetic_seed_folders_are_refused_not_read_as_classes(tmp_path):
    """`gen sample --out S/seed0` and `S/seed1`, then `clf train --synthetic S`: before, half
    the COVID images trained as negatives."""
    from cxrlab.clf.data import _synthetic_dir

    for name in ("seed0", "seed1"):
        (tmp_path / "S" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "S" / name / "a.png")
    with pytest.raises(DatasetError, match="seed0.*states no class"):
        _synthetic_dir(tmp_path / "S")
