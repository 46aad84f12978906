import pandas as pd
import pytest
from PIL import Image

from cxrlab.data.api import build_dataset, import_source
from cxrlab.data.manifest import MANIFEST_COLUMNS, read_manifest, read_rejects
from cxrlab.data.sources.covidx import parse_covidx_line, repair_covidx
from cxrlab.errors import DatasetError
from factory import (
    BROKEN,
    READABLE,
    TEST_MAX_PIXELS,
    make_bad_input_folders,
    reference_image,
    rgb_png,
)


def test_bad_input_folders_import_without_crashing(tmp_path):
    root = make_bad_input_folders(tmp_path / "src")
    report = import_source(
        "folders", root, tmp_path / "ds", max_pixels=TEST_MAX_PIXELS, progress=False
    )
    manifest, rejects = read_manifest(tmp_path / "ds"), read_rejects(tmp_path / "ds")
    assert report.n_inputs == len(READABLE) + len(BROKEN) == len(manifest) + len(rejects)
    assert set(manifest["path"].map(lambda p: p.rsplit("/", 1)[-1])) == set(READABLE)
    assert (manifest["covid"] == 1).all() and (manifest["label"] == "covid").all()
    reasons = dict(
        zip(rejects["path"].map(lambda p: p.rsplit("/", 1)[-1]), rejects["reason"], strict=True)
    )
    assert reasons == {name: reason for name, (_, reason) in BROKEN.items()}
    assert all(rejects["detail"] != "")
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    by_name = manifest.set_index(manifest["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert by_name.loc["sixteen_bit.png", "bit_depth"] == 16
    assert by_name.loc["mono1_12bit.dcm", "mode"] == "DICOM:MONOCHROME1"
    assert by_name.loc["webp_named.png", "format"] == "WEBP"


def test_folders_skips_mask_folders_and_uses_patient_regex(tmp_path):
    for name in ("p1_a.png", "p1_b.png", "p2_a.png"):
        (tmp_path / "src" / "COVID" / "images").mkdir(parents=True, exist_ok=True)
        rgb_png(tmp_path / "src" / "COVID" / "images" / name)
    (tmp_path / "src" / "COVID" / "masks").mkdir()
    rgb_png(tmp_path / "src" / "COVID" / "masks" / "p1_a.png")
    import_source(
        "folders", tmp_path / "src", tmp_path / "ds", patient_regex=r"^(p\d+)_", progress=False
    )
    manifest = read_manifest(tmp_path / "ds")
    assert len(manifest) == 3
    assert sorted(manifest["patient_id"].unique()) == ["folders:p1", "folders:p2"]


def write_ieee8023(root, rows):
    (root / "images").mkdir(parents=True)
    table = pd.DataFrame(rows)
    for name in table.loc[table["exists"], "filename"]:
        rgb_png(root / "images" / name)
    table["folder"] = "images"
    table.drop(columns="exists").to_csv(root / "metadata.csv", index=False)
    return root


def test_ieee8023_filters_and_accounts_for_every_row(tmp_path):
    base = {
        "patientid": "1",
        "finding": "COVID-19",
        "view": "PA",
        "modality": "X-ray",
        "exists": True,
    }
    rows = [
        {**base, "filename": "ok.png"},
        {**base, "filename": "ct.png", "modality": "CT"},
        {**base, "filename": "lat.png", "view": "L"},
        {**base, "filename": "todo.png", "finding": "todo"},
        {**base, "filename": "gone.png", "exists": False},
        {
            **base,
            "filename": "neg.png",
            "patientid": "2",
            "finding": "Streptococcus",
            "view": "AP Supine",
        },
        {**base, "filename": "ok.png", "patientid": "3"},
    ]
    root = write_ieee8023(tmp_path / "ieee", rows)
    report = import_source("ieee8023", root, tmp_path / "ds", progress=False)
    manifest, rejects = read_manifest(tmp_path / "ds"), read_rejects(tmp_path / "ds")
    assert report.n_inputs == 7 == len(manifest) + len(rejects)
    assert sorted(manifest["id"]) == ["ieee8023:neg.png", "ieee8023:ok.png"]
    assert manifest.set_index("id").loc["ieee8023:neg.png", "covid"] == 0
    assert sorted(rejects["reason"]) == sorted(
        ["not an X-ray", "view not selected", "no label", "missing", "file listed twice"]
    )
    import_source(
        "ieee8023", root, tmp_path / "ds2", views=["PA", "AP Supine", "L"], progress=False
    )
    assert len(read_manifest(tmp_path / "ds2")) == 3


def test_ieee8023_dev_data_accounts_for_all_rows(ieee8023_dir, tmp_path):
    report = import_source("ieee8023", ieee8023_dir, tmp_path / "ds", progress=False)
    rejects = read_rejects(tmp_path / "ds")
    assert report.n_inputs == 505 == report.n_accepted + report.n_rejected
    assert (rejects["reason"] == "missing").sum() == 10


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("COVID 1 COVID(1).png positive sirm", ("COVID_1", "COVID(1).png", "positive", "sirm")),
        ("5 ARDSSevere.png negative cohen", ("5", "ARDSSevere.png", "negative", "cohen")),
        ("3 a-b.jpeg COVID-19 cohen", ("3", "a-b.jpeg", "COVID-19", "cohen")),
        (
            "47c78742-4998-4878-aec4-37b11b1354ac 47c78742-4998-4878-aec4-37b11b1354ac.png normal",
            (
                "47c78742-4998-4878-aec4-37b11b1354ac",
                "47c78742-4998-4878-aec4-37b11b1354ac.png",
                "normal",
                "rsna",
            ),
        ),
        ("ANON1 x.png pneumonia", ("ANON1", "x.png", "pneumonia", "unknown")),
    ],
)
def test_parse_covidx_line_all_formats(line, expected):
    parsed = parse_covidx_line(line)
    assert (parsed.patient_id, parsed.filename, parsed.label, parsed.source) == expected


def test_parse_covidx_line_rejects_garbage():
    with pytest.raises(DatasetError):
        parse_covidx_line("just some words")


def test_repair_covidx_dev_file(covidx_labels_dir, tmp_path):
    source = covidx_labels_dir / "train_COVIDx8B.txt"
    counts = repair_covidx(source, tmp_path / "fixed.txt")
    lines = (tmp_path / "fixed.txt").read_text().splitlines()
    assert counts["lines"] == len(lines) == len(source.read_text().splitlines()) == 15952
    assert all(len(line.split()) == 4 for line in lines)
    covid1 = [line for line in lines if " COVID(1).png " in line]
    assert covid1 == ["COVID_1 COVID(1).png positive sirm"]


def test_covidx_import_and_build_with_dedup(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    rgb_png(images / "a.png")
    rgb_png(images / "COVID(1).png")  # same bytes as a.png
    noisy = (reference_image()[::-1]).copy()
    Image.fromarray(noisy).save(images / "b.png")
    labels = tmp_path / "train.txt"
    labels.write_text(
        "1 a.png positive cohen\nCOVID 1 COVID(1).png positive sirm\n2 b.png negative rsna\n"
        "3 missing.png negative rsna\n4 c.png unsure rsna\n"
    )
    report = import_source("covidx", labels, tmp_path / "ds", images=images, progress=False)
    manifest = read_manifest(tmp_path / "ds")
    assert report.n_inputs == 5 and len(manifest) == 3
    assert set(read_rejects(tmp_path / "ds")["reason"]) == {"missing", "no label"}
    groups = manifest.set_index("id")["duplicate_group"]
    assert groups["covidx:a.png"] == groups["covidx:COVID(1).png"] != ""
    assert manifest.set_index("id").loc["covidx:COVID(1).png", "source"] == "covidx:sirm"

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "dedup: true\nsources:\n  - format: covidx\n    path: train.txt\n    images: imgs\n"
        "  - format: folders\n    path: folders\n"
    )
    (tmp_path / "folders" / "Normal").mkdir(parents=True)
    rgb_png(tmp_path / "folders" / "Normal" / "copy.png")  # also the same bytes
    report = build_dataset(spec, tmp_path / "built", progress=False)
    manifest, rejects = read_manifest(tmp_path / "built"), read_rejects(tmp_path / "built")
    assert report.n_inputs == 6 == len(manifest) + len(rejects)
    duplicates = rejects[rejects["reason"] == "exact duplicate"]
    assert len(duplicates) == 2 and all("covidx:a.png" in d for d in duplicates["detail"])


def test_bundled_sample_imports(tmp_path):
    report = import_source("sample", None, tmp_path / "ds", progress=False)
    manifest = read_manifest(tmp_path / "ds")
    assert report.n_rejected == 0 and 140 <= len(manifest) <= 160
    assert set(manifest["covid"]) == {0, 1}
    assert manifest["license"].str.contains("ND").sum() == 0
    assert (manifest["url"] != "").all()
