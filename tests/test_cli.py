import json
import subprocess
import sys

from typer.testing import CliRunner

from cxrlab.cli import app
from factory import make_bad_input_folders

runner = CliRunner()


def test_help_lists_command_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output and "demo" in result.output


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "cxrlab", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("cxrlab ")


def test_import_split_stats_end_to_end(tmp_path):
    root = make_bad_input_folders(tmp_path / "src")
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            "folders",
            str(root),
            "--out",
            str(out),
            "-q",
            "--max-pixels",
            "4000000",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "15 inputs = 9 accepted + 6 rejected" in result.output
    result = runner.invoke(
        app, ["data", "split", str(out), "--ratios", "0.5", "0.25", "0.25", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "stats", str(out), "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["images"] == 9
    assert stats["rejected_by_reason"]["unreadable"] == 4
    for figure in ("class_balance.png", "sizes.png", "modes.png"):
        assert (tmp_path / "st" / figure).stat().st_size > 1000


def test_errors_name_the_file_without_traceback(tmp_path):
    result = runner.invoke(app, ["data", "split", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere" in result.output and "Traceback" not in result.output


def test_repair_covidx_cli(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("COVID 1 COVID(1).png positive sirm\n1 a.png negative cohen\n")
    result = runner.invoke(
        app, ["data", "repair-covidx", str(source), "--out", str(tmp_path / "o.txt")]
    )
    assert result.exit_code == 0, result.output
    assert "2 lines in and out, 1 repaired" in result.output
    assert (tmp_path / "o.txt").read_text().splitlines()[0] == "COVID_1 COVID(1).png positive sirm"


def test_preprocess_augment_show_cli(tmp_path):
    dataset = tmp_path / "ds"
    assert (
        runner.invoke(app, ["data", "import", "sample", "--out", str(dataset), "-q"]).exit_code == 0
    )
    assert runner.invoke(app, ["data", "split", str(dataset)]).exit_code == 0
    packed = tmp_path / "P"
    args = [
        "data",
        "preprocess",
        str(dataset),
        "--size",
        "32",
        "--equalize",
        "clahe",
        "--out",
        str(packed),
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "packed 150 images, shape (150, 32, 32)" in result.output, (
        result.output
    )
    result = runner.invoke(app, args)
    assert "identical packed dataset already exists" in result.output
    result = runner.invoke(
        app,
        [
            "data",
            "augment",
            str(packed),
            "--preset",
            "anatomical",
            "--per-image",
            "2",
            "--out",
            str(tmp_path / "P2"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "data",
            "show",
            str(tmp_path / "P2"),
            "--augment",
            "mild",
            "--n",
            "9",
            "--out",
            str(tmp_path / "g.png"),
        ],
    )
    assert result.exit_code == 0 and (tmp_path / "g.png").is_file()
    result = runner.invoke(
        app, ["data", "preprocess", str(dataset), "--size", "8", "--out", str(tmp_path / "bad")]
    )
    assert result.exit_code == 2 and "--size must be 32..1024" in result.output
