"""Figure1, Actualmed and RSNA layouts, made here in miniature."""

import pandas as pd
from PIL import Image

from cxrlab.data.api import import_source
from cxrlab.data.manifest import read_manifest, read_rejects
from factory import dicom, rgb_png, text_named_png


def test_figure1_layout(tmp_path):
    root = tmp_path / "fig1"
    (root / "images").mkdir(parents=True)
    rgb_png(root / "images" / "COVID-00001.png")
    Image.open(root / "images" / "COVID-00001.png").save(root / "images" / "COVID-00002.jpg")
    table = pd.DataFrame(
        {
            "patientid": [
                "COVID-00001",
                "COVID-00002",
                "COVID-00003",
                "COVID-00004",
                "COVID-00005",
            ],
            "finding": ["COVID-19", "No finding", "COVID-19", "", "Pneumonia, other"],
            "view": ["PA", "AP", "PA", "PA", "PA"],
            "modality": ["X-ray", "X-ray", "X-ray", "X-ray", "CT"],
        }
    )
    table.to_csv(root / "metadata.csv", index=False, encoding="ISO-8859-1")
    report = import_source("figure1", root, tmp_path / "ds", progress=False)
    manifest, rejects = read_manifest(tmp_path / "ds"), read_rejects(tmp_path / "ds")
    assert report.n_inputs == 5 == len(manifest) + len(rejects)
    labels = manifest.set_index("patient_id")["label"].to_dict()
    assert labels == {"figure1:COVID-00001": "covid", "figure1:COVID-00002": "normal"}
    assert sorted(rejects["reason"]) == ["missing", "no label", "not an X-ray"]


def test_actualmed_layout(tmp_path):
    root = tmp_path / "actmed"
    (root / "images").mkdir(parents=True)
    rgb_png(root / "images" / "a.png")
    text_named_png(root / "images" / "b.png")
    pd.DataFrame(
        {
            "patientid": ["ANON1", "ANON2"],
            "finding": ["COVID-19", "No finding"],
            "imagename": ["a.png", "b.png"],
            "modality": ["X-ray", "X-ray"],
        }
    ).to_csv(root / "metadata.csv", index=False)
    report = import_source("actualmed", root, tmp_path / "ds", progress=False)
    assert (report.n_accepted, report.n_rejected) == (1, 1)
    assert read_rejects(tmp_path / "ds")["reason"].tolist() == ["unreadable"]


def test_rsna_layout_one_image_per_patient(tmp_path):
    root = tmp_path / "rsna"
    (root / "stage_2_train_images").mkdir(parents=True)
    dicom(root / "stage_2_train_images" / "p1.dcm", "MONOCHROME2")
    dicom(root / "stage_2_train_images" / "p2.dcm", "MONOCHROME1")
    pd.DataFrame(
        {
            "patientId": ["p1", "p2", "p2", "p3"],
            "class": ["Normal", "Lung Opacity", "Lung Opacity", "Normal"],
        }
    ).to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    pd.DataFrame(
        {"patientId": ["p1", "p2", "p2", "p3"], "x": ["", 1, 5, ""], "y": ["", 1, 5, ""],
         "width": ["", 3, 3, ""], "height": ["", 3, 3, ""], "Target": [0, 1, 1, 0]}
    ).to_csv(root / "stage_2_train_labels.csv", index=False)  # fmt: skip
    report = import_source("rsna", root, tmp_path / "ds", progress=False)
    manifest = read_manifest(tmp_path / "ds")
    assert report.n_inputs == 3 and len(manifest) == 2
    assert manifest.set_index("id")["label"].to_dict() == {
        "rsna:p1": "normal",
        "rsna:p2": "pneumonia",
    }
    assert (manifest["covid"] == 0).all() and (manifest["bit_depth"] == 16).all()
    assert read_rejects(tmp_path / "ds")["reason"].tolist() == ["missing"]


def test_partner_sources_keep_every_finding_and_frontal_views_only(tmp_path):
    from typer.testing import CliRunner

    from cxrlab.cli import app

    root = tmp_path / "fig1"
    (root / "images").mkdir(parents=True)
    for name in ("P1", "P2", "P3", "P4"):
        rgb_png(root / "images" / f"{name}.png")
    pd.DataFrame(
        {
            "patientid": ["P1", "P2", "P3", "P4"],
            "finding": ["Pneumonia, COVID-19", "COVID-19", "Pneumonia", "No finding"],
            "view": ["PA", "L", "AP", "AP Supine"],
            "modality": ["X-ray"] * 4,
        }
    ).to_csv(root / "metadata.csv", index=False, encoding="ISO-8859-1")
    report = import_source("figure1", root, tmp_path / "ds", progress=False)
    manifest, rejects = read_manifest(tmp_path / "ds"), read_rejects(tmp_path / "ds")
    assert report.n_inputs == 4 == len(manifest) + len(rejects)
    by_patient = manifest.set_index("patient_id")
    assert by_patient.loc["figure1:P1", "covid"] == 1
    assert by_patient.loc["figure1:P1", "finding"] == "Pneumonia, COVID-19"
    assert by_patient.loc["figure1:P3", "label"] == "pneumonia"
    assert rejects["reason"].tolist() == ["view not selected"]
    assert "figure1:P2" not in set(manifest["patient_id"])

    result = CliRunner().invoke(
        app, ["data", "import", "figure1", str(root), "--views", "PA", "--out", str(tmp_path / "pa"), "-q"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "pa")["view"].tolist() == ["PA"]
    assert (read_rejects(tmp_path / "pa")["reason"] == "view not selected").sum() == 3
