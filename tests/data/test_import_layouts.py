"""A source layout that does not match its format is an error naming what was expected."""

import pytest
from typer.testing import CliRunner

from cxrlab.cli import app

runner = CliRunner()

IEEE_HEADER = (
    "patientid,offset,sex,age,finding,view,modality,location,folder,filename,url,license\n"
)


@pytest.fixture
def ieee_folder(tmp_path):
    root = tmp_path / "ieee"
    (root / "images").mkdir(parents=True)
    (root / "metadata.csv").write_text(
        IEEE_HEADER + "1,0,M,50,COVID-19,PA,X-ray,Italy,images,a.png,http://x.org/1,CC BY\n"
    )
    return root


@pytest.mark.parametrize(
    "fmt, words",
    [
        ("figure1", "is the ieee8023 collection's metadata"),
        ("actualmed", "import it with `cxrlab data import ieee8023"),
        ("sample", "takes no PATH"),
        ("covidx", "is a folder; covidx reads one COVIDx label file: give one of labels.txt"),
    ],
)
def test_a_path_of_another_layout_is_one_clear_error(ieee_folder, tmp_path, fmt, words):
    (ieee_folder / "labels.txt").write_text("1 a.png positive cohen\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "import", fmt, str(ieee_folder), "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()), result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output
    assert not out.exists()


def test_folders_without_a_patient_regex_warn_that_each_image_is_its_own_patient(tmp_path):
    from factory import make_bad_input_folders

    root = make_bad_input_folders(tmp_path / "SRC")
    args = ["data", "import", "folders", str(root), "-q", "--max-pixels", "4000000"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "is its own patient" in " ".join(result.output.split())
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "e"), "--patient-regex", r"^(\w)"])
    assert "is its own patient" not in " ".join(result.output.split()), result.output


def test_splitting_again_says_what_it_replaced(tmp_path):
    from cxrlab.data.api import split_dataset

    assert (
        runner.invoke(
            app, ["data", "import", "sample", "--out", str(tmp_path / "X"), "-q"]
        ).exit_code
        == 0
    )
    assert not any("replaced" in w for w in split_dataset(tmp_path / "X", seed=0).warnings)
    same = split_dataset(tmp_path / "X", seed=0).warnings
    assert any("already split the same way" in w for w in same), same
    other = split_dataset(tmp_path / "X", seed=1).warnings
    assert any("replaced the existing split" in w and "preprocess again" in w for w in other), other
