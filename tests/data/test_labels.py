"""The one label vocabulary: negations, `other`, ambiguity and the public folder layouts."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.manifest import read_manifest
from cxrlab.data.sources.labels import LabelError, harmonise
from factory import reference_image

runner = CliRunner()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("COVID", ("covid", 1)),
        ("COVID-19", ("covid", 1)),
        ("covid19", ("covid", 1)),
        ("SARS-CoV-2", ("covid", 1)),
        ("Pneumonia/Viral/COVID-19", ("covid", 1)),
        ("COVID-19, ARDS", ("covid", 1)),
        ("positive", ("covid", 1)),
        ("Non-COVID", ("negative", 0)),
        ("non_covid", ("negative", 0)),
        ("NonCOVID", ("negative", 0)),
        ("COVID-negative", ("negative", 0)),
        ("no covid", ("negative", 0)),
        ("not covid", ("negative", 0)),
        ("negative", ("negative", 0)),
        ("Non-COVID pneumonia", ("pneumonia", 0)),
        ("Normal", ("normal", 0)),
        ("No Finding", ("normal", 0)),
        ("no_findings", ("normal", 0)),
        ("Viral Pneumonia", ("pneumonia", 0)),
        ("Lung_Opacity", ("pneumonia", 0)),
        ("Streptococcus", ("pneumonia", 0)),
        ("SARS", ("pneumonia", 0)),
        ("Tuberculosis", ("other", 0)),
        ("No Lung Opacity / Not Normal", ("other", 0)),
        ("todo", None),
        ("", None),
        ("images", None),
    ],
)
def test_names_map_to_the_documented_label(name, expected):
    assert harmonise(name) == expected


@pytest.mark.parametrize("name", ["covid_vs_noncovid", "COVID normal", "Pneumonia, No finding"])
def test_ambiguous_names_are_errors_not_guesses(name):
    with pytest.raises(LabelError, match="ambiguous"):
        harmonise(name)


def _class_tree(root, names, per_class=2):
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = reference_image().copy()
            image[-5:, -5:] = 10 * i + len(name)  # distinct bytes per file
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def test_covid_qu_ex_and_radiography_layouts_flip_no_negative_class(tmp_path):
    names = ["COVID-19", "Non-COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"]
    root = _class_tree(tmp_path / "src", names)
    out = tmp_path / "ds"
    result = runner.invoke(app, ["data", "import", "folders", str(root), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    by_folder = manifest.groupby("class_folder")["covid"].agg(set).to_dict()
    assert by_folder == {
        "COVID-19": {1},
        "Non-COVID": {0},
        "Normal": {0},
        "Lung_Opacity": {0},
        "Viral Pneumonia": {0},
    }
    labels = manifest.groupby("class_folder")["label"].first().to_dict()
    assert labels["Non-COVID"] == "negative" and labels["Lung_Opacity"] == "pneumonia"


def test_covidx_binary_folders(tmp_path):
    root = _class_tree(tmp_path / "src", ["positive", "negative"])
    runner.invoke(app, ["data", "import", "folders", str(root), "--out", str(tmp_path / "d"), "-q"])
    manifest = read_manifest(tmp_path / "d")
    assert manifest.groupby("class_folder")["covid"].max().to_dict() == {
        "negative": 0,
        "positive": 1,
    }


@pytest.mark.parametrize("folder", ["covid_vs_noncovid", "images"])
def test_an_ambiguous_or_unknown_class_folder_is_an_error_naming_it(tmp_path, folder):
    root = _class_tree(tmp_path / "src", ["COVID", folder])
    out = tmp_path / "ds"
    result = runner.invoke(app, ["data", "import", "folders", str(root), "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "error:" in result.output and folder in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_synthetic_sub_folders_use_the_same_vocabulary(tmp_path):
    from cxrlab.clf.data import _synthetic_dir
    from cxrlab.errors import DatasetError

    for name in ("Non-COVID", "COVID-19", "normal"):
        (tmp_path / "syn" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "syn" / name / "a.png")
    _, frame = _synthetic_dir(tmp_path / "syn")
    folders = frame["id"].str.split(":").str[-1].str.split("/").str[0]
    covid = dict(zip(folders, frame["covid"], strict=True))
    assert covid == {"COVID-19": 1, "Non-COVID": 0, "normal": 0}
    (tmp_path / "syn" / "samples").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "syn" / "samples" / "b.png")
    with pytest.raises(DatasetError, match="samples"):
        _synthetic_dir(tmp_path / "syn")
