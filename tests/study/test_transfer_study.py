"""studies/transfer.yaml's machinery at tiny size: recipes as a study axis, synthetic
images under leave-site-out from per-fold generators (never a held-out site), and the
report's "Will it transfer?" section with its verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cxrlab.study.runner import run_study
from cxrlab.study.spec import SpecError, load_spec

TINY = {
    "name": "tiny-transfer",
    "evaluation": "leave-site-out",
    "data": {"sources": [{"format": "sample"}], "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}},
    "preprocess": {"size": 32},
    "generators": {
        "runs": [{"name": "vae", "model": "vae"}],
        "label": "positive",
        "steps": 2,
        "batch_size": 8,
        "sample_interval": 2,
        "save_interval": 2,
        "metrics": ["swd"],
        "metrics_n": 16,
        "collapse_ratio": None,
        "memorization_limit": None,
    },
    "synthetic": {"amounts": [0, 6], "control": True},
    "classifier": {
        "recipe": ["baseline", "transfer"],
        "epochs": 1,
        "batch_size": 16,
        "seeds": [0],
        "bootstrap": 20,
        "folds": 2,
    },
}


def write_spec(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("transfer")
    result = run_study(write_spec(root, TINY), root / "out", device="cpu", progress=False,
                       log=lambda line: None)  # fmt: skip
    return {"out": root / "out", "result": result}


def test_the_bundled_transfer_spec_crosses_recipes_with_synthetic_arms():
    from cxrlab.study.bundled import bundled_specs

    spec = load_spec(bundled_specs()["transfer"])
    assert spec.evaluation == "leave-site-out"
    assert spec.classifier_axes["recipe"] == ["baseline", "transfer"]
    arms = {(c["recipe"], c["synthetic"], c["control"]) for c in spec.classifier_grid()}
    amount = max(spec.synthetic_amounts)
    assert amount > 0
    for recipe in ("baseline", "transfer"):
        assert {(recipe, 0, False), (recipe, amount, False), (recipe, amount, True)} <= arms
    assert spec.data["sources"][0]["path"].startswith("${CXRLAB_DATA}")


def test_a_recipe_axis_is_applied_and_checked(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY))
    assert spec.classifier_axes["recipe"] == ["baseline", "transfer"]
    bad = {**TINY, "classifier": {**TINY["classifier"], "recipe": ["baseline", "magic"]}}
    with pytest.raises(SpecError, match="--recipe 'magic' is not known"):
        load_spec(write_spec(tmp_path / "bad", bad))


def test_the_recipe_cells_train_with_their_recipe(study):
    out = study["out"]
    for cell, recipe, standardize in (
        ("simple-cnn-recipe_baseline-syn_0", "baseline", "none"),
        ("simple-cnn-recipe_transfer-syn_0", "transfer", "zscore"),
    ):
        for config in (out / "clf/32px-none" / cell).glob("**/config.yaml"):
            values = yaml.safe_load(config.read_text())
            if "arch" not in values:
                continue
            assert values["recipe"] == recipe, config
            assert values["standardize"] == standardize, config
    # a setting the spec gives wins over the recipe's (epochs: transfer's own is 20)
    values = yaml.safe_load(
        (out / "clf/32px-none/simple-cnn-recipe_transfer-syn_0/run/config.yaml").read_text()
    )
    assert values["epochs"] == 1


def test_every_arm_is_validated_out_of_site(study):
    table = study["result"].results
    rows = table[table["kind"] == "classifier"].set_index("cell")
    assert len(rows) == 6
    assert rows["out_of_site_roc_auc"].notna().all()
    assert rows["pooled_out_of_site_roc_auc_low"].notna().all()
    arms = set(zip(rows["recipe"], rows["synthetic"].astype(str), strict=True))
    assert arms == {(r, a) for r in ("baseline", "transfer") for a in ("0", "6", "6 oversampled")}


def test_each_fold_learns_synthetic_images_from_its_training_rows_only(study):
    out = study["out"]
    cell = out / "clf/32px-none/simple-cnn-recipe_transfer-syn_6"
    folds = sorted((cell / "cv").glob("fold-*"))
    assert len(folds) == 2
    manifest = pd.read_csv(out / "data/dataset/manifest.csv", dtype=str, keep_default_na=False)
    site_of = dict(zip(manifest["id"], manifest["site"], strict=True))
    for fold in folds:
        splits = pd.read_csv(fold / "splits.csv", dtype=str)
        held_out = set(splits.loc[splits["split"] == "test", "id"])
        training = set(splits.loc[splits["split"] == "train", "id"])
        held_sites = {site_of[i] for i in held_out}
        config = yaml.safe_load((fold / "config.yaml").read_text())
        synthetic = Path(config["synthetic"])
        assert synthetic.parts[-3:] == ("n6", fold.name, "packed")
        provenance = json.loads((synthetic / "provenance.json").read_text())
        learned = set(provenance["learned"]["ids"])
        assert learned and learned <= training
        assert not learned & held_out
        assert not {site_of[i] for i in learned} & held_sites
        # the PACKED the fold's generator read holds no held-out row at all
        generator = yaml.safe_load(
            (out / "gen-folds/32px-none/vae" / fold.name / "run/config.yaml").read_text()
        )
        packed = pd.read_csv(Path(generator["data"]) / "manifest.csv", dtype=str)
        assert not set(packed["id"]) & held_out
        assert set(packed.loc[packed["split"] == "train", "id"]) == training
    # the control arm's folds add no synthetic images (they oversample real positives)
    control = out / "clf/32px-none/simple-cnn-recipe_transfer-syn_6-oversampled"
    for fold in sorted((control / "cv").glob("fold-*")):
        values = yaml.safe_load((fold / "config.yaml").read_text())
        assert values["synthetic"] is None and values["oversample_positive"] == 6


def test_fold_generators_are_shared_by_the_cells_of_a_variant(study):
    status = json.loads((study["out"] / "study.json").read_text())
    kinds = pd.Series([cell["kind"] for cell in status["cells"]]).value_counts()
    assert kinds["fold-generator"] == 2  # one per fold, for both recipes' synthetic cells
    assert kinds["fold-synthetic"] == 2


def test_the_report_opens_with_will_it_transfer(study):
    from cxrlab.study.report import render_report

    html = render_report(study["out"])
    section = html[html.index('<section id="transfer">') :]
    section = section[: section.index("</section>")]
    assert html.index("Will it transfer?") < html.index("<h2", html.index("Will it transfer?") + 1)
    # the first section after the title: before the summary and every other one
    assert html.index("<section", html.index("</header>")) == html.index('<section id="transfer">')
    assert html.index('<section id="transfer">') < html.index('<section id="summary">')
    for question in (
        "Does it hold in a site it never saw?",
        "Did synthetic images help out of site?",
        "Does the chosen setting look at the lungs?",
    ):
        assert question in section
    assert section.count('class="summary"') >= 4  # 2 recipes + 1 pair + 2 synthetic
    assert "with 6 synthetic images minus with 6 real positives oversampled" in section
    assert "recipe transfer" in section and "recipe baseline" in section
    # the sample has no lung masks: the probe says so instead of a verdict
    assert "not probed (no lung masks in the data)" in section


def test_a_split_study_has_no_transfer_section(tmp_path):
    from cxrlab.study.report.study import Study
    from cxrlab.study.transfer import transfer_section

    assert transfer_section(Study(tmp_path, info={"evaluation": "split"})) == ""


def test_verdicts_say_no_clear_effect_when_the_interval_includes_zero():
    from cxrlab.study.transfer import difference_verdict

    words = ("helped", "hurt")
    assert difference_verdict({"value": 0.1, "low": -0.02, "high": 0.2}, *words).startswith(
        "no clear effect"
    )
    assert difference_verdict({"value": 0.1, "low": 0.01, "high": 0.2}, *words) == "helped"
    assert difference_verdict({"value": -0.1, "low": -0.2, "high": -0.01}, *words) == "hurt"
    assert difference_verdict(None, *words).startswith("cannot tell")


def test_the_paired_difference_pairs_images_and_patients():
    from cxrlab.study.transfer import paired_auc_difference

    ids = [f"i{k}" for k in range(40)]
    covid = [k % 2 for k in range(40)]
    base = pd.DataFrame({"id": ids, "patient_id": [f"p{k // 2}" for k in range(40)],
                         "covid": covid, "threshold": 0.5})  # fmt: skip
    perfect = base.assign(probability=[0.9 if c else 0.1 for c in covid])
    useless = base.assign(probability=0.5)
    diff = paired_auc_difference(perfect, useless)
    assert diff["value"] == pytest.approx(0.5) and diff["n_images"] == 40
    assert diff["low"] > 0
    same = paired_auc_difference(perfect, perfect)
    assert same["value"] == 0 and same["low"] == same["high"] == 0


def test_the_probe_of_the_chosen_cell_is_reported(study, tmp_path):
    """With lung masks in the data, the runner writes CELL/eval-probe; the section reads
    the chosen cell's (the best mean out-of-site AUC) and gives its verdict."""
    import shutil

    from cxrlab.study.report import render_report

    out = tmp_path / "out"
    shutil.copytree(study["out"], out)
    rows = study["result"].results
    rows = rows[rows["kind"] == "classifier"]
    chosen = rows.groupby("cell")["out_of_site_roc_auc"].mean().idxmax()
    probe = {"value": 0.52, "low": 0.3, "high": 0.75}
    values = {
        "seed": 0,
        "shortcut_probe": {
            "n_images": 17,
            "intact": {"metrics": {"roc_auc": {"value": 0.61, "low": 0.4, "high": 0.8}}},
            "lungs_removed": {"metrics": {"roc_auc": probe}},
            "lungs_only": {"metrics": {"roc_auc": {"value": 0.58, "low": 0.35, "high": 0.8}}},
            "finding": "cannot tell",
            "verdict": "ROC-AUC 0.61 intact: cannot tell, the model is not better than chance",
        },
    }
    target = out / chosen / "eval-probe" / "seed_0"
    target.mkdir(parents=True)
    (target / "metrics.json").write_text(json.dumps(values))
    html = render_report(out)
    section = html[html.index('<section id="transfer">') :]
    section = section[: section.index("</section>")]
    assert "not probed" not in section
    assert "ROC-AUC 0.61 intact: cannot tell" in section
    assert "0.520" in section and "cannot tell" in section


def test_the_runner_takes_lung_masks_from_the_manifest(study, tmp_path):
    """The probe's MASKS folder holds the dataset's own masks (mask_path), by id."""
    from cxrlab.data.manifest import read_manifest, write_manifest
    from cxrlab.data.masks import mask_paths_by_id
    from cxrlab.study.runner import StudyRunner

    dataset = tmp_path / "out" / "data" / "dataset"
    dataset.mkdir(parents=True)
    frame = read_manifest(study["out"] / "data" / "dataset")
    mask = tmp_path / "a_mask.png"
    mask.write_bytes(b"png")
    frame["mask_path"] = ""
    frame.loc[0, "mask_path"] = str(mask)
    write_manifest(dataset, frame)
    runner = StudyRunner.__new__(StudyRunner)  # only its folder is read
    runner.out = tmp_path / "out"
    folder = runner._lung_masks(tmp_path / "masks")
    assert mask_paths_by_id(folder) == {str(frame.loc[0, "id"]): str(mask)}
    frame["mask_path"] = ""
    write_manifest(dataset, frame)
    assert runner._lung_masks(tmp_path / "none") is None


def test_every_setting_on_real_images_comes_before_the_synthetic_arms(tmp_path):
    """A study stopped early (a shared machine, a time limit) has compared its recipes."""
    grid = load_spec(write_spec(tmp_path, TINY)).classifier_grid()
    assert [(g["recipe"], g["synthetic"], g["control"]) for g in grid] == [
        ("baseline", 0, False),
        ("transfer", 0, False),
        ("baseline", 6, False),
        ("baseline", 6, True),
        ("transfer", 6, False),
        ("transfer", 6, True),
    ]


def test_lungs_is_a_preprocessing_axis_with_masks_from_the_spec(tmp_path):
    """preprocess.lungs: [none, crop] with preprocess.lung_masks (a MASKS folder, relative
    to the spec): the crop variant is cut to the masks, the none variant keeps every
    image (no masks asked for)."""
    from cxrlab.data.packed import open_packed
    from lung_factory import masked_dataset, masks_folder

    dataset = masked_dataset(tmp_path / "src")
    masks_folder(dataset, tmp_path / "spec" / "masks", leave_out=0)
    spec = {
        "name": "lungs",
        "data": {
            "sources": [{"format": "folders", "path": str(tmp_path / "src" / "radiography")}],
            "split": {"ratios": [0.5, 0.25, 0.25], "seed": 0},
        },
        "preprocess": {"size": 32, "lungs": ["none", "crop"], "lung_masks": "masks"},
        "classifier": {"epochs": 1, "batch_size": 8, "seeds": [0], "bootstrap": 20},
    }
    loaded = load_spec(write_spec(tmp_path / "spec", spec))
    assert [v.name for v in loaded.variants()] == ["32px-none-lungs_none", "32px-none-lungs_crop"]
    run_study(loaded, tmp_path / "out", device="cpu", progress=False, log=lambda line: None)
    plain = open_packed(tmp_path / "out" / "packed" / "32px-none-lungs_none")
    cropped = open_packed(tmp_path / "out" / "packed" / "32px-none-lungs_crop")
    assert len(plain.manifest) == 16 and plain.meta["lung_masks"] is None
    assert cropped.meta["options"]["lungs"] == "crop"
    assert cropped.meta["lung_masks"]["path"] == str((tmp_path / "spec" / "masks").resolve())
    assert len(cropped.manifest) == 14  # the two images without a mask are rejected
    missing = {**spec, "preprocess": {"size": 32, "lungs": ["none", "crop"]}}
    with pytest.raises(SpecError, match="needs preprocess.lung_masks"):
        load_spec(write_spec(tmp_path / "bad", missing))


def test_a_study_stopped_before_its_synthetic_arms_says_so(study, tmp_path):
    import shutil

    from cxrlab.study.report import render_report

    out = tmp_path / "out"
    shutil.copytree(study["out"], out)
    results = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    keep = (results["kind"] != "classifier") | (results["synthetic"] == "0")
    results[keep].to_csv(out / "results.csv", index=False)
    html = render_report(out)
    section = html[html.index('<section id="transfer">') :]
    assert "not answered yet: no synthetic arm has finished with its control" in section


def test_amounts_read_as_numbers_are_one_arm_each():
    """A results.csv whose synthetic column holds amounts only reads as floats."""
    from cxrlab.study.transfer import _arm

    assert [_arm(v) for v in (0.0, 30.0, "30", "30 oversampled")] == [
        "0",
        "30",
        "30",
        "30 oversampled",
    ]
