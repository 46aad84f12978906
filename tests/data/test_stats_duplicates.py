"""data stats: duplicates as the README says, a CSV and a picture of the groups."""

import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data import stats as stats_module
from cxrlab.data.api import import_source
from factory import folders_tree

runner = CliRunner()


def grouped_dataset(tmp_path):
    layout = {"COVID": {"a": 4}, "Normal": {"b": 4}}
    root = folders_tree(tmp_path / "src", layout)
    import_source("folders", root, tmp_path / "ds", near_distance=None, progress=False)
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", dtype=str, keep_default_na=False)
    # two groups: rows 0-1 both in train; rows 2, 5, 6 spanning train and test
    manifest["split"] = ["train"] * 4 + ["test"] * 4
    manifest["duplicate_group"] = ""  # (the factory's images are all alike)
    manifest.loc[[0, 1], "duplicate_group"] = "dup00001"
    manifest.loc[[2, 5, 6], "duplicate_group"] = "dup00002"
    manifest.to_csv(tmp_path / "ds" / "manifest.csv", index=False)
    return tmp_path / "ds", manifest


def test_stats_write_the_duplicate_groups_as_csv_and_png(tmp_path, monkeypatch):
    dataset, manifest = grouped_dataset(tmp_path)
    seen = {}
    real = stats_module.duplicates_figure

    def spy(duplicates):
        seen["groups"] = list(dict.fromkeys(duplicates["duplicate_group"]))
        return real(duplicates)

    monkeypatch.setattr(stats_module, "duplicates_figure", spy)
    result = runner.invoke(app, ["data", "stats", str(dataset), "-q"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(dataset / "stats" / "duplicates.csv", dtype=str, keep_default_na=False)
    # the group spanning splits first, then the other; every member listed
    assert list(table["duplicate_group"]) == ["dup00002"] * 3 + ["dup00001"] * 2
    assert set(table["id"]) == set(manifest["id"].iloc[[0, 1, 2, 5, 6]])
    assert seen["groups"] == ["dup00002", "dup00001"]
    picture = Image.open(dataset / "stats" / "duplicates.png")
    assert picture.mode == "RGB" and picture.width >= 3 * 160  # the 3-image group's row


def test_no_duplicates_no_picture_and_an_empty_csv(tmp_path):
    root = folders_tree(tmp_path / "src", {"COVID": {"a": 2}, "Normal": {"b": 2}})
    import_source("folders", root, tmp_path / "ds", near_distance=None, progress=False)
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.assign(duplicate_group="").to_csv(tmp_path / "ds" / "manifest.csv", index=False)
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "ds"), "-q"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "ds" / "stats" / "duplicates.png").exists()
    table = pd.read_csv(tmp_path / "ds" / "stats" / "duplicates.csv")
    assert table.empty and "duplicate_group" in table.columns


def test_stats_with_duplicate_groups_never_load_torch(tmp_path):
    # Importing torch maps about 550 MiB; data stats drew its duplicates picture through
    # a module that imported torch at the top (peak 778 MiB at 3,000 images, now 176).
    import subprocess
    import sys

    dataset, _ = grouped_dataset(tmp_path)
    script = (
        "import sys\n"
        "from cxrlab.cli import app\n"
        "try:\n"
        f"    app(['data', 'stats', {str(dataset)!r}, '-q'])\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "assert 'torch' not in sys.modules, 'data stats imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (dataset / "stats" / "duplicates.png").is_file()
