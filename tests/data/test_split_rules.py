"""Split guarantees: both classes per split, linked patients together, holdout counts, --ratios."""

import json

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.manifest import MANIFEST_COLUMNS, dataframe_to_csv_text, read_manifest
from cxrlab.data.split import leakage_groups
from factory import make_packed, reference_image, rgb_png

runner = CliRunner()


def write_dataset(path, patients):
    """A dataset folder written directly: ``patients`` is [(patient, covid, source, n_images)]."""
    rows = []
    for patient, covid, source, n_images in patients:
        for i in range(n_images):
            row = dict.fromkeys(MANIFEST_COLUMNS, "")
            row.update(
                id=f"{patient}-{i}", path=f"/x/{patient}-{i}.png", label="covid" if covid else "normal",
                covid=covid, patient_id=patient, source=source, width=8, height=8, mode="L", bit_depth=8,
            )  # fmt: skip
            rows.append(row)
    path.mkdir(parents=True)
    (path / "manifest.csv").write_text(dataframe_to_csv_text(pd.DataFrame(rows)))
    (path / "dataset.json").write_text("{}")
    return path


def test_three_positive_patients_give_one_to_each_split(tmp_path):
    patients = [(f"pos{i}", 1, "a", 2) for i in range(3)] + [
        (f"neg{i}", 0, "a", 1) for i in range(20)
    ]
    dataset = write_dataset(tmp_path / "X", patients)
    for seed in range(5):
        result = runner.invoke(
            app,
            ["data", "split", str(dataset), "--ratios", "0.6", "0.2", "0.2", "--seed", str(seed)],
        )
        assert result.exit_code == 0, result.output
        manifest = read_manifest(dataset)
        positives = manifest[manifest["covid"] == 1].groupby("split")["patient_id"].nunique()
        assert positives.to_dict() == {"train": 1, "val": 1, "test": 1}
        warnings = [line for line in result.output.splitlines() if "warning" in line]
        # splitting again (another seed) says so; no other warning
        assert all("existing split" in w or "already split" in w for w in warnings), warnings


def test_too_few_positive_groups_are_said_loudly_and_recorded(tmp_path):
    patients = [(f"pos{i}", 1, "a", 1) for i in range(2)] + [
        (f"neg{i}", 0, "a", 1) for i in range(20)
    ]
    dataset = write_dataset(tmp_path / "X", patients)
    result = runner.invoke(app, ["data", "split", str(dataset), "--ratios", "0.6,0.2,0.2", "-q"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: covid=1 has only 2 patient/duplicate group(s) for 3 splits: test" in result.output
    )
    recorded = json.loads((dataset / "dataset.json").read_text())["split"]
    assert recorded["ratios"] == [0.6, 0.2, 0.2]
    assert recorded["warnings"] and "test" in recorded["warnings"][0]


@pytest.mark.parametrize(
    "args, splits",
    [
        (["--ratios", "0.6", "0.2", "0.2"], {"train", "val", "test"}),
        (["--ratios", "0.6,0.2,0.2"], {"train", "val", "test"}),
        (["--ratios=0.6,0.2,0.2"], {"train", "val", "test"}),
        (["--ratios", "0.8", "0.2"], {"train", "val"}),
    ],
)
def test_ratios_accept_spaces_commas_and_two_values(tmp_path, args, splits):
    dataset = write_dataset(tmp_path / "X", [(f"p{i}", i % 2, "a", 1) for i in range(20)])
    result = runner.invoke(app, ["data", "split", *args, str(dataset)])
    assert result.exit_code == 0, result.output
    assert set(read_manifest(dataset)["split"]) == splits


@pytest.mark.parametrize(
    "ratios", [["0.5", "0.2", "0.2"], ["0.7,0.2,0.2"], ["1"], ["0.5", "0.25", "0.25", "0"]]
)
def test_ratios_that_do_not_sum_to_one_or_miscount_are_refused(tmp_path, ratios):
    dataset = write_dataset(tmp_path / "X", [(f"p{i}", i % 2, "a", 1) for i in range(20)])
    before = (dataset / "manifest.csv").read_bytes()
    result = runner.invoke(app, ["data", "split", str(dataset), "--ratios", *ratios])
    assert result.exit_code == 2, result.output
    assert "error: --ratios" in result.output and "Traceback" not in result.output
    assert (dataset / "manifest.csv").read_bytes() == before


def test_split_refuses_a_packed_dataset(tmp_path):
    packed = make_packed(tmp_path / "P")
    before = (packed / "manifest.csv").read_bytes()
    result = runner.invoke(app, ["data", "split", str(packed)])
    assert result.exit_code == 2
    assert (
        "error:" in result.output
        and "packed dataset" in result.output
        and str(packed) in result.output
    )
    assert (packed / "manifest.csv").read_bytes() == before


def test_holdout_counts_followers_and_refuses_a_split_without_both_classes(tmp_path):
    patients = [(f"a{i}", i % 2, "a", 1) for i in range(20)] + [
        (f"b{i}", i % 2, "b", 1) for i in range(6)
    ]
    dataset = write_dataset(tmp_path / "X", patients)
    manifest = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[manifest["patient_id"].isin(["a0", "a1", "a2"]), "duplicate_group"] = [
        "d1",
        "d2",
        "d3",
    ]
    manifest.loc[manifest["patient_id"].isin(["b0", "b1", "b2"]), "duplicate_group"] = [
        "d1",
        "d2",
        "d3",
    ]
    (dataset / "manifest.csv").write_text(dataframe_to_csv_text(manifest))
    result = runner.invoke(app, ["data", "split", str(dataset), "--holdout-source", "b"])
    assert result.exit_code == 0, result.output
    assert (
        "external: b plus 3 images of other sources" in result.output and "(a 3)" in result.output
    )
    split = read_manifest(dataset).set_index("patient_id")["split"]
    assert (split[["a0", "a1", "a2", "b0", "b5"]] == "external").all()
    assert json.loads((dataset / "dataset.json").read_text())["split"]["external_followers"] == {
        "a": 3
    }

    lopsided = write_dataset(
        tmp_path / "Y",
        [(f"a{i}", 0, "a", 1) for i in range(10)] + [(f"b{i}", i % 2, "b", 1) for i in range(6)],
    )
    before = (lopsided / "manifest.csv").read_bytes()
    result = runner.invoke(app, ["data", "split", str(lopsided), "--holdout-source", "b"])
    assert result.exit_code == 2
    assert "error: --holdout-source b: train would have no images with covid=[1]" in result.output
    assert "Traceback" not in result.output
    assert (lopsided / "manifest.csv").read_bytes() == before


def _ieee8023_with_a_file_listed_twice(root):
    (root / "images").mkdir(parents=True)
    rgb_png(root / "images" / "shared.png")
    other = reference_image().copy()
    other[-4:, -4:] = 0
    Image.fromarray(other).save(root / "images" / "b_only.png")
    pd.DataFrame(
        {
            "patientid": ["A", "B", "B"],
            "finding": ["COVID-19", "COVID-19", "COVID-19"],
            "view": ["PA", "PA", "PA"],
            "modality": ["X-ray"] * 3,
            "filename": ["shared.png", "shared.png", "b_only.png"],
        }
    ).to_csv(root / "metadata.csv", index=False)
    return root


def test_a_file_listed_twice_keeps_its_second_patient_in_the_same_split(tmp_path):
    root = _ieee8023_with_a_file_listed_twice(tmp_path / "src")
    out = tmp_path / "X"
    assert (
        runner.invoke(
            app, ["data", "import", "ieee8023", str(root), "--out", str(out), "-q"]
        ).exit_code
        == 0
    )
    manifest = read_manifest(out)
    shared = manifest.set_index("id").loc["ieee8023:shared.png"]
    assert shared["patient_id"] == "ieee8023:A" and shared["linked_patients"] == "ieee8023:B"
    groups = leakage_groups(manifest)
    assert len(set(groups)) == 1  # A's image and B's other image are one group


def test_dedup_keeps_the_duplicate_patient_linked(tmp_path):
    for cls in ("COVID", "Normal"):
        (tmp_path / "src" / cls).mkdir(parents=True)
    rgb_png(tmp_path / "src" / "COVID" / "p1_a.png")
    rgb_png(tmp_path / "src" / "COVID" / "p2_a.png")  # same bytes, another patient
    other = reference_image().copy()
    other[-4:, -4:] = 0
    Image.fromarray(other).save(tmp_path / "src" / "COVID" / "p2_b.png")
    Image.fromarray(other[::-1].copy()).save(tmp_path / "src" / "Normal" / "p3_a.png")
    out = tmp_path / "X"
    result = runner.invoke(
        app,
        ["data", "import", "folders", str(tmp_path / "src"), "--patient-regex", r"^(p\d+)_",
         "--dedup", "--near-distance", "-1", "--out", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out).set_index("id")
    assert manifest.loc["folders:COVID/p1_a.png", "linked_patients"] == "folders:p2"
    groups = dict(zip(manifest.index, leakage_groups(manifest.reset_index()), strict=True))
    assert groups["folders:COVID/p1_a.png"] == groups["folders:COVID/p2_b.png"]
    assert groups["folders:COVID/p1_a.png"] != groups["folders:Normal/p3_a.png"]


def test_the_largest_seed_group_goes_to_train_and_a_far_share_is_warned(tmp_path):
    """3 positive patients with 2, 3 and 40 images: train gets the 40 (not test), and the
    split says that val and test hold far less than their 20 % of the positives."""
    patients = [("pos_small", 1, "a", 2), ("pos_mid", 1, "a", 3), ("pos_big", 1, "a", 40)]
    patients += [(f"neg{i}", 0, "a", 1) for i in range(60)]
    dataset = write_dataset(tmp_path / "X", patients)
    for seed in range(3):
        result = runner.invoke(app, ["data", "split", str(dataset), "--seed", str(seed), "-q"])
        assert result.exit_code == 0, result.output
        manifest = read_manifest(dataset)
        positives = manifest[manifest["covid"] == 1]["split"].value_counts().to_dict()
        assert positives == {"train": 40, "val": 3, "test": 2}
        assert "warning: covid=1: its images are split far from the ratios" in result.output
        assert "val 7% (ratio 20%), test 4% (ratio 20%)" in result.output
        assert "covid=0" not in result.output  # the negatives split near the ratios
        recorded = json.loads((dataset / "dataset.json").read_text())["split"]["warnings"]
        assert any("far from the ratios" in warning for warning in recorded)


def test_split_report_carries_the_far_share_warning(tmp_path):
    from cxrlab.data.api import split_dataset

    patients = [("p2", 1, "a", 2), ("p3", 1, "a", 3), ("p40", 1, "a", 40)]
    patients += [(f"neg{i}", 0, "a", 1) for i in range(60)]
    report = split_dataset(write_dataset(tmp_path / "X", patients), (0.6, 0.2, 0.2))
    assert report.counts["train"]["covid"] == 40
    assert [w for w in report.warnings if w.startswith("covid=1:") and "far" in w]
