"""The manifest's site column: from each source's metadata, unknown when unstated, never guessed."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.api import import_source
from cxrlab.data.manifest import MANIFEST_COLUMNS, read_manifest
from cxrlab.data.sources.sites import site_from_doi, site_from_location, site_from_url
from cxrlab.errors import DatasetError
from factory import folders_tree, rgb_png


@pytest.mark.parametrize(
    ("rule", "value", "site"),
    [
        (site_from_location, "Hannover Medical School, Hannover, Germany", "Germany"),
        (site_from_location, "Ospedale Santo Spirito. Rome, Italy", "Italy"),
        (site_from_location, "Snohomish County, Washington, USA", "USA"),
        (site_from_location, "Edinburgh, Scotland", "United Kingdom"),
        (site_from_location, "Hong Kong", "Hong Kong"),
        (site_from_location, "?", "unknown"),
        (site_from_location, "", "unknown"),
        (site_from_url, "https://radiopaedia.org/cases/covid-19-pneumonia-7", "radiopaedia.org"),
        (site_from_url, "https://www.eurorad.org/case/12943", "eurorad.org"),
        (site_from_url, "pubs.rsna.org/doi/10.1148/radiol.2020200490", "pubs.rsna.org"),
        (site_from_url, " ", "unknown"),
        (site_from_doi, "10.1148/radiol.2020200490", "10.1148"),
        (site_from_doi, "https://doi.org/10.1056/NEJMoa2001191", "10.1056"),
        (site_from_doi, "?", "unknown"),
        (site_from_doi, "not a doi", "unknown"),
    ],
)
def test_site_rules_read_what_the_metadata_states(rule, value, site):
    assert rule(value) == site


def write_ieee8023(root):
    (root / "images").mkdir(parents=True)
    names = ["a.png", "b.png", "c.png"]
    for name in names:
        rgb_png(root / "images" / name)
    pd.DataFrame(
        {
            "patientid": ["1", "2", "3"],
            "finding": ["COVID-19", "Pneumonia", "COVID-19"],
            "view": ["PA"] * 3,
            "modality": ["X-ray"] * 3,
            "folder": ["images"] * 3,
            "filename": names,
            "location": ["Brescia, Italy", "", "Wuhan, China"],
            "url": ["https://www.sirm.org/x", "https://radiopaedia.org/y", ""],
            "doi": ["", "10.1148/radiol.1", "10.1056/NEJMoa1"],
        }
    ).to_csv(root / "metadata.csv", index=False)
    return root


@pytest.mark.parametrize(
    ("site_from", "expected"),
    [
        (None, ["Italy", "unknown", "China"]),  # the default: location
        ("location", ["Italy", "unknown", "China"]),
        ("url", ["sirm.org", "radiopaedia.org", "unknown"]),
        ("doi", ["unknown", "10.1148", "10.1056"]),
        ("none", ["unknown"] * 3),
    ],
)
def test_ieee8023_site_from_each_column(tmp_path, site_from, expected):
    root = write_ieee8023(tmp_path / "ieee")
    options = {} if site_from is None else {"site_from": site_from}
    report = import_source("ieee8023", root, tmp_path / "ds", progress=False, **options)
    manifest = read_manifest(tmp_path / "ds")
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert MANIFEST_COLUMNS.index("site") == MANIFEST_COLUMNS.index("source") + 1
    manifest = manifest.set_index("id")
    sites = [manifest.loc[f"ieee8023:{n}", "site"] for n in ("a.png", "b.png", "c.png")]
    assert sites == expected
    assert report.sites.get("unknown", 0) == expected.count("unknown")


def test_site_from_a_missing_column_or_bad_choice_is_an_error(tmp_path):
    root = write_ieee8023(tmp_path / "ieee")
    table = pd.read_csv(root / "metadata.csv").drop(columns="location")
    table.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(DatasetError, match="no 'location' column; choose one of url, doi, none"):
        import_source("ieee8023", root, tmp_path / "ds", site_from="location", progress=False)
    report = import_source("ieee8023", root, tmp_path / "ds", progress=False)  # not chosen
    assert report.sites == {"radiopaedia.org": 1, "sirm.org": 1, "unknown": 1}
    assert any("sites come from its 'url' column" in w for w in report.warnings)
    result = CliRunner().invoke(
        app, ["data", "import", "covidx", str(root), "--site-from", "url", "--out", str(tmp_path / "x")]
    )  # fmt: skip
    assert result.exit_code == 2 and "--site-from" in result.output


def test_collections_record_their_site_and_covidx_each_lines_source(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        rgb_png(images / name)
    labels = tmp_path / "train.txt"
    labels.write_text(
        "1 a.png positive cohen\n2 b.png negative sirm\n3 c.png negative\n4 d.png normal rnsa\n"
    )
    import_source("covidx", labels, tmp_path / "ds", images=images, progress=False)
    sites = read_manifest(tmp_path / "ds").set_index("id")["site"].to_dict()
    assert sites == {
        "covidx:a.png": "cohen",
        "covidx:b.png": "sirm",
        "covidx:c.png": "unknown",
        "covidx:d.png": "rsna",  # COVIDx 9A's misspelling
    }

    root = tmp_path / "fig1"
    (root / "images").mkdir(parents=True)
    rgb_png(root / "images" / "P1.png")
    pd.DataFrame(
        {"patientid": ["P1"], "finding": ["COVID-19"], "view": [""], "modality": ["X-ray"]}
    ).to_csv(root / "metadata.csv", index=False, encoding="ISO-8859-1")
    import_source("figure1", root, tmp_path / "f", source="fig1-extra", progress=False)
    assert read_manifest(tmp_path / "f")["site"].tolist() == ["figure1"]


def test_bundled_sample_has_sites_from_its_urls(tmp_path):
    import_source("sample", None, tmp_path / "ds", progress=False)
    manifest = read_manifest(tmp_path / "ds")
    assert (manifest["site"] != "unknown").all()
    assert {"radiopaedia.org", "eurorad.org"} <= set(manifest["site"])


def test_folders_site_level_and_site_regex(tmp_path):
    root = folders_tree(tmp_path / "src", {"COVID": {"hosp_a": 2}, "Normal": {"hosp_b": 1}})
    rgb_png(root / "Normal" / "loose.png")  # no site folder: unknown, with a warning
    report = import_source("folders", root, tmp_path / "lvl", site_level=1, progress=False)
    sites = read_manifest(tmp_path / "lvl")["site"].value_counts().to_dict()
    assert sites == {"hosp_a": 2, "hosp_b": 1, "unknown": 1}
    assert any("no site for 1 of 4" in w for w in report.warnings)

    import_source("folders", root, tmp_path / "rx", site_regex=r"/(hosp_\w)/", progress=False)
    assert read_manifest(tmp_path / "rx")["site"].value_counts().to_dict() == sites
    with pytest.raises(DatasetError, match="none of the 4 files"):
        import_source("folders", root, tmp_path / "no", site_regex=r"(clinic\d)", progress=False)
    with pytest.raises(DatasetError, match="not both"):
        import_source(
            "folders", root, tmp_path / "both", site_level=1, site_regex="(x)", progress=False
        )
    assert import_source("folders", root, tmp_path / "none", progress=False).sites == {"unknown": 4}


def test_old_manifest_without_site_reads_as_unknown_and_site_reaches_the_packed(tmp_path):
    root = folders_tree(tmp_path / "src", {"COVID": {"s1": 2}, "Normal": {"s2": 2}})
    import_source("folders", root, tmp_path / "ds", site_level=1, progress=False)
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "preprocess", str(tmp_path / "ds"), "--size", "32", "--out", str(tmp_path / "P"), "-q"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    packed = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    assert sorted(packed["site"]) == ["s1", "s1", "s2", "s2"]

    old = pd.read_csv(tmp_path / "ds" / "manifest.csv", dtype=str).drop(columns="site")
    old.to_csv(tmp_path / "ds" / "manifest.csv", index=False)
    manifest = read_manifest(tmp_path / "ds")
    assert (manifest["site"] == "unknown").all()
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS


def test_a_patient_whose_rows_name_two_sites_is_reported_not_resolved(tmp_path):
    root = write_ieee8023(tmp_path / "ieee")
    table = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    table.loc[2, "patientid"] = "1"  # patient 1: Brescia, Italy and Wuhan, China
    table.to_csv(root / "metadata.csv", index=False)
    report = import_source("ieee8023", root, tmp_path / "ds", progress=False)
    assert sorted(read_manifest(tmp_path / "ds")["site"]) == ["China", "Italy", "unknown"]
    assert any("patients with images of more than one site: 1" in w for w in report.warnings)
    assert any("ieee8023:1: China, Italy" in w for w in report.warnings)
