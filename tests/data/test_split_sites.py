"""`data split --holdout-site`: whole sites become `external`, patients never straddle."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.manifest import MANIFEST_COLUMNS, dataframe_to_csv_text, read_manifest

runner = CliRunner()


def write_sited_dataset(path, images, with_site=True):
    """A dataset folder written directly: ``images`` is [(patient, covid, site)], one image each."""
    rows = []
    for i, (patient, covid, site) in enumerate(images):
        row = dict.fromkeys(MANIFEST_COLUMNS, "")
        row.update(
            id=f"{patient}-{i}", path=f"/x/{patient}-{i}.png", label="covid" if covid else "normal",
            covid=covid, patient_id=patient, source="folders", width=8, height=8, mode="L",
            bit_depth=8,
        )  # fmt: skip
        if with_site:
            row["site"] = site
        else:
            row.pop("site", None)
        rows.append(row)
    path.mkdir(parents=True)
    (path / "manifest.csv").write_text(dataframe_to_csv_text(pd.DataFrame(rows)))
    (path / "dataset.json").write_text("{}")
    return path


def four_sites():
    """Sites A-D with both classes each, an unknown-site group, and a patient seen at A and B."""
    images = [(f"{site}{k}", k % 2, site) for site in "ABCD" for k in range(8)] + [
        (f"u{k}", k % 2, "unknown") for k in range(4)
    ]
    images += [("travels", 1, "A"), ("travels", 1, "B")]
    return images


def test_held_out_sites_become_external_with_every_patient_they_share(tmp_path):
    dataset = write_sited_dataset(tmp_path / "X", four_sites())
    result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-site", "A", "-q"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(dataset)
    external = manifest[manifest["split"] == "external"]
    assert set(external["site"]) == {"A", "B"}  # B only through the travelling patient
    assert (manifest.loc[manifest["site"] == "A", "split"] == "external").all()
    assert set(external.loc[external["site"] == "B", "patient_id"]) == {"travels"}
    assert (manifest.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(manifest["split"]) == {"train", "val", "test", "external"}
    assert "external: site(s) A plus 1 images of other sites" in result.output
    assert "(B 1)" in result.output
    recorded = json.loads((dataset / "dataset.json").read_text())["split"]
    assert recorded["holdout_site"] == ["A"] and recorded["external_site_followers"] == {"B": 1}


def test_several_sites_are_held_out_together(tmp_path):
    dataset = write_sited_dataset(tmp_path / "X", four_sites())
    result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-site", "C, D"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(dataset)
    assert set(manifest.loc[manifest["split"] == "external", "site"]) == {"C", "D"}
    assert not (
        manifest.loc[manifest["site"].isin(["A", "B", "unknown"]), "split"] == "external"
    ).any()


def test_an_unknown_site_name_is_an_error_listing_the_sites(tmp_path):
    dataset = write_sited_dataset(tmp_path / "X", four_sites())
    before = (dataset / "manifest.csv").read_bytes()
    for name in ("Z", "unknown"):
        result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-site", name])
        assert result.exit_code == 2, result.output
        assert f"error: --holdout-site {name}" in result.output
        assert "sites: A, B, C, D" in result.output and "Traceback" not in result.output
    assert (dataset / "manifest.csv").read_bytes() == before


def test_a_manifest_without_sites_says_to_import_again(tmp_path):
    dataset = write_sited_dataset(tmp_path / "X", four_sites(), with_site=False)
    before = (dataset / "manifest.csv").read_bytes()
    result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-site", "A"])
    assert result.exit_code == 2, result.output
    # read_manifest reads a manifest from before sites as every site unknown
    assert "error: --holdout-site" in result.output and "records no site" in result.output
    assert "import it again" in result.output
    assert (dataset / "manifest.csv").read_bytes() == before
    # a manifest whose site column says nothing (every row unknown) gets the same advice
    unsited = [(patient, covid, "unknown") for patient, covid, _ in four_sites()]
    dataset = write_sited_dataset(tmp_path / "Y", unsited)
    result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-site", "A"])
    assert result.exit_code == 2, result.output
    assert "records no site" in result.output and "import it again" in result.output


def test_a_site_holdout_that_leaves_train_one_class_is_refused(tmp_path):
    images = [(f"A{k}", 1, "A") for k in range(6)] + [(f"B{k}", 0, "B") for k in range(10)]
    dataset = write_sited_dataset(tmp_path / "X", images)
    result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-site", "A"])
    assert result.exit_code == 2
    assert "error: --holdout-site A: train would have no images with covid=[1]" in result.output


def test_a_study_spec_takes_holdout_site(tmp_path):
    import yaml

    from cxrlab.study.spec import load_spec

    spec = {
        "name": "t",
        "data": {"sources": [{"format": "sample"}], "split": {"holdout_site": ["A", "B"]}},
        "preprocess": {"size": 32},
        "classifier": {"epochs": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert load_spec(path).split["holdout_site"] == ["A", "B"]


def test_a_frame_without_a_site_column_is_an_error_not_a_key_error():
    from cxrlab.data.split import plan_splits
    from cxrlab.errors import DatasetError

    frame = pd.DataFrame(
        {"patient_id": ["a", "b"], "covid": [0, 1], "source": "s", "duplicate_group": ""}
    )
    with pytest.raises(DatasetError, match="no 'site' column.*import it again"):
        plan_splits(frame, (0.5, 0.5), holdout_site="A")
