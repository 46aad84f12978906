"""One view vocabulary for every source: frontal spellings kept, blanks are 'unknown', laterals out."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.api import import_source
from cxrlab.data.manifest import read_manifest, read_rejects
from cxrlab.data.sources.views import parse_views, view_class
from cxrlab.errors import DatasetError
from factory import rgb_png


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("PA", "PA"), ("PA erect", "PA"), ("postero-anterior", "PA"),
        ("AP", "AP"), ("AP erect", "AP"), ("AP semi erect", "AP"), ("ap-semi-erect", "AP"),
        ("AP (portable)", "AP"), ("Erect AP", "AP"), ("AP upright", "AP"),
        ("anteroposterior", "AP"),
        ("AP Supine", "AP Supine"), ("Supine AP", "AP Supine"), ("AP_horizontal", "AP Supine"),
        ("L", "lateral"), ("LL", "lateral"), ("RL", "lateral"), ("Lateral", "lateral"),
        ("left lateral", "lateral"),
        ("", "unknown"), ("  ", "unknown"), ("?", "unknown"), ("n/a", "unknown"),
        ("Axial", "other"), ("Coronal", "other"), ("AP/PA", "other"), ("PA and lateral", "other"),
    ],
)  # fmt: skip
def test_view_spellings_map_to_one_class(written, expected):
    assert view_class(written) == expected


def test_views_option_names_classes_and_refuses_unknown_names():
    assert parse_views("AP erect, pa") == ("PA", "AP")
    assert parse_views(["PA", "AP", "unknown"]) == ("PA", "AP", "unknown")
    with pytest.raises(DatasetError, match="Axial"):
        parse_views("PA,Axial")


def write_metadata(root, table, filename_column):
    (root / "images").mkdir(parents=True)
    for name in table[filename_column]:
        name = name if "." in name else f"{name}.png"
        rgb_png(root / "images" / name)
    table.to_csv(root / "metadata.csv", index=False, encoding="ISO-8859-1")
    return root


def test_ieee8023_keeps_ap_erect_and_semi_erect_rows_and_drops_laterals(tmp_path):
    names = ["erect.png", "semi.png", "lat.png", "blank.png"]
    table = pd.DataFrame(
        {
            "patientid": ["1", "2", "3", "4"],
            "finding": ["COVID-19", "Pneumonia", "COVID-19", "COVID-19"],
            "view": ["AP erect", "AP semi erect", "L", ""],
            "modality": ["X-ray"] * 4,
            "folder": ["images"] * 4,
            "filename": names,
        }
    )
    root = write_metadata(tmp_path / "ieee", table, "filename")
    report = import_source("ieee8023", root, tmp_path / "ds", progress=False)
    manifest = read_manifest(tmp_path / "ds").set_index("id")
    assert sorted(manifest.index) == ["ieee8023:erect.png", "ieee8023:semi.png"]
    assert set(manifest["view"]) == {"AP"}
    assert manifest.loc["ieee8023:semi.png", "view_as_written"] == "AP semi erect"
    rejects = read_rejects(tmp_path / "ds")
    assert sorted(rejects["id"]) == ["ieee8023:blank.png", "ieee8023:lat.png"]
    assert set(rejects["reason"]) == {"view not selected"}
    assert report.views == {"AP": 2}

    # the blank view is selectable by name; the lateral still stays out
    import_source("ieee8023", root, tmp_path / "ds2", views=["PA", "AP", "unknown"], progress=False)
    kept = read_manifest(tmp_path / "ds2").set_index("id")["view"].to_dict()
    assert kept == {
        "ieee8023:erect.png": "AP",
        "ieee8023:semi.png": "AP",
        "ieee8023:blank.png": "unknown",
    }


def figure1_like(root):
    """Figure1's shape: most frontal views blank, a few AP erect, one lateral."""
    table = pd.DataFrame(
        {
            "patientid": ["COVID-1", "COVID-2", "COVID-3", "COVID-4", "COVID-5"],
            "finding": ["COVID-19", "COVID-19", "No finding", "COVID-19", "Pneumonia"],
            "view": ["", "", "AP erect", "PA", "Lateral"],
            "modality": ["X-ray"] * 5,
        }
    )
    return write_metadata(root, table, "patientid")


def test_figure1_blank_views_are_kept_as_unknown_and_counted(tmp_path):
    root = figure1_like(tmp_path / "fig1")
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        app, ["data", "import", "figure1", str(root), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "accepted views: PA 1, AP 1, unknown 2" in result.output
    manifest = read_manifest(out).set_index("patient_id")
    assert manifest["view"].to_dict() == {
        "figure1:COVID-1": "unknown",
        "figure1:COVID-2": "unknown",
        "figure1:COVID-3": "AP",
        "figure1:COVID-4": "PA",
    }
    counts = json.loads((out / "dataset.json").read_text())["counts"]
    assert counts["accepted_by_view"] == {"PA": 1, "AP": 1, "unknown": 2}
    assert read_rejects(out)["detail"].str.contains("Lateral").all()


def test_views_pa_drops_unknown_and_bad_names_are_one_line_errors(tmp_path):
    root = figure1_like(tmp_path / "fig1")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "import", "figure1", str(root), "--views", "PA", "--out", str(tmp_path / "pa"), "-q"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "pa")["view"].tolist() == ["PA"]
    assert (read_rejects(tmp_path / "pa")["reason"] == "view not selected").sum() == 4

    result = runner.invoke(
        app, ["data", "import", "figure1", str(root), "--views", "PA,Axial", "--out", str(tmp_path / "bad")]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--views 'Axial' names no view class" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "bad").exists()


def test_actualmed_without_a_view_column_keeps_rows_as_unknown_with_a_warning(tmp_path):
    table = pd.DataFrame(
        {"patientid": ["A1", "A2"], "finding": ["COVID-19", "No finding"],
         "imagename": ["a.png", "b.png"], "modality": ["X-ray"] * 2}
    )  # fmt: skip
    root = write_metadata(tmp_path / "act", table, "imagename")
    report = import_source("actualmed", root, tmp_path / "ds", progress=False)
    assert report.views == {"unknown": 2}
    assert any("no view column" in w for w in report.warnings)
    report = import_source("actualmed", root, tmp_path / "ds2", views=["PA", "AP"], progress=False)
    assert report.n_accepted == 0 and report.reasons == {"view not selected": 2}
