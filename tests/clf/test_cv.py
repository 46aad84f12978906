"""Leave-site-out cross-validation (``clf train --cv sites``) on tiny PACKEDs with sites."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clf_factory import toy_images, write_packed
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import cxrlab.clf.cv as cv
import cxrlab.clf.data as clf_data
import cxrlab.clf.trainer as trainer
from cxrlab.clf.cli import app
from cxrlab.clf.config import ClfConfig
from cxrlab.clf.metrics import METRICS, bootstrap_intervals, paired_bootstrap
from cxrlab.errors import CxrlabError, DatasetError

SIZE = 16
SITES = ("Italy", "Spain", "China", "USA", "Iran")
runner = CliRunner()


def sited_packed(path, sites=SITES, per_site=8, unknown=4, with_site_column=True):
    """A PACKED whose train/val rows come from ``sites`` (``per_site`` images each, two per
    patient, half COVID-19), ``unknown`` train rows of site ``unknown``, and at every site
    two test and two external rows that cross-validation must never read."""
    rows = []

    def add(site, split, n, tag):
        for i in range(n):
            covid = i % 2
            rows.append(
                {
                    "id": f"toy:{site}:{tag}:{i}",
                    "covid": covid,
                    "label": "covid" if covid else "pneumonia",
                    "patient_id": f"toy:{site}:{tag}:p{i // 4}-{covid}",
                    "source": "toy",
                    "split": split,
                    "site": site,
                }
            )

    for number, site in enumerate(sites):
        add(site, "train" if number % 2 else "val", per_site // 2, "a")
        add(site, "train", per_site - per_site // 2, "b")
        add(site, "test", 2, "t")
        add(site, "external", 2, "x")
    add("unknown", "train", unknown, "u")
    labels = np.array([r["covid"] for r in rows])
    write_packed(path, toy_images(labels, SIZE, seed=1), rows)
    if not with_site_column:  # a PACKED made before cxrlab recorded sites
        manifest = pd.read_csv(path / "manifest.csv", dtype=str, keep_default_na=False)
        manifest.drop(columns="site").to_csv(path / "manifest.csv", index=False)
    return path


def config_for(tmp_path, out="cv", **overrides) -> ClfConfig:
    values = dict(
        arch="simple-cnn", data=str(tmp_path / "P"), out=str(tmp_path / out), epochs=2,
        batch_size=8, lr=2e-3, device="cpu", bootstrap=100, cv="sites",
    )  # fmt: skip
    values.update(overrides)
    return ClfConfig(**values)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One leave-site-out run (5 sites, 3 folds) and the ids of every image it read."""
    tmp_path = tmp_path_factory.mktemp("cv")
    sited_packed(tmp_path / "P")
    read_ids: set[str] = set()
    real_init = clf_data.ImageSet.__init__

    def spy_init(self, parts, table, size_px, mask=None):
        read_ids.update(table["id"])
        real_init(self, parts, table, size_px, mask)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clf_data.ImageSet, "__init__", spy_init)
        result = cv.cross_validate(config_for(tmp_path, folds=3), progress=False)
    return tmp_path, result, read_ids


def test_no_patient_or_site_is_in_a_folds_training_and_its_held_out_sites(finished):
    tmp_path, result, read_ids = finished
    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    by_id = manifest.set_index("id")
    assert len(result.plan.folds) == 3
    for fold in result.plan.folds:
        splits = pd.read_csv(tmp_path / "cv" / fold.name / "splits.csv", dtype=str)
        splits = splits.join(by_id[["site", "patient_id"]], on="id")
        training = splits[splits["split"].isin(["train", "val"])]
        held = splits[splits["split"] == "test"]
        assert len(held) and len(training)
        assert set(training["site"]) & set(held["site"]) == set()
        assert set(training["patient_id"]) & set(held["patient_id"]) == set()
        assert "unknown" not in set(held["site"])
        assert set(held["site"]) == set(fold.sites)
        assert set(training["split"]) == {"train", "val"}  # its own validation
        # the fold's run predicted exactly its held-out rows, and validated on its val rows
        seed = tmp_path / "cv" / fold.name / "seed_0"
        predicted = pd.read_csv(seed / "predictions_test.csv", dtype=str)
        assert sorted(predicted["id"]) == sorted(held["id"])
        validated = pd.read_csv(seed / "predictions_val.csv", dtype=str)
        assert sorted(validated["id"]) == sorted(splits.loc[splits["split"] == "val", "id"])
        # stratified: the data allow both classes in every held-out fold
        assert set(held.join(by_id["covid"].rename("label"), on="id")["label"]) == {"0", "1"}
    # test and external rows stay read-once: no image set ever held one
    unread = set(manifest.loc[manifest["split"].isin(["test", "external"]), "id"])
    assert read_ids and not (read_ids & unread)


def test_every_held_out_row_is_predicted_exactly_once(finished):
    tmp_path, _, _ = finished
    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    pooled = pd.read_csv(tmp_path / "cv" / "predictions.csv", dtype=str)
    assert list(pooled.columns[:6]) == ["id", "patient_id", "site", "fold", "seed", "covid"]
    eligible = manifest[manifest["split"].isin(["train", "val"]) & (manifest["site"] != "unknown")]
    assert sorted(pooled["id"]) == sorted(eligible["id"])  # each once, none missing
    assert (pooled["site"] == pooled["id"].map(eligible.set_index("id")["site"])).all()


def test_pooled_metrics_are_those_of_predictions_csv(finished):
    tmp_path, result, _ = finished
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    for name, pool in (("predictions.csv", "out_of_site"), ("predictions_in_site.csv", "in_site")):
        frame = pd.read_csv(tmp_path / "cv" / name)
        metrics = summary["per_seed"]["0"][pool]["metrics"]
        predicted = frame["probability"] >= frame["threshold"]  # each fold's own threshold
        positive = frame["covid"] == 1
        auc = roc_auc_score(frame["covid"], frame["probability"])
        assert metrics["roc_auc"]["value"] == pytest.approx(auc, abs=1e-6)
        assert metrics["sensitivity"]["value"] == pytest.approx(predicted[positive].mean())
        assert metrics["specificity"]["value"] == pytest.approx((~predicted[~positive]).mean())
        for item in metrics.values():
            if item["value"] is not None:
                assert item["low"] <= item["value"] + 1e-9 and item["value"] <= item["high"] + 1e-9
    gap = summary["per_seed"]["0"]["gap"]["roc_auc"]
    inside = summary["per_seed"]["0"]["in_site"]["metrics"]["roc_auc"]["value"]
    outside = summary["per_seed"]["0"]["out_of_site"]["metrics"]["roc_auc"]["value"]
    assert gap["value"] == pytest.approx(inside - outside, abs=1e-5)
    assert gap["low"] <= gap["high"]
    per_fold = [f["per_seed"]["0"]["out_of_site_auc"] for f in summary["folds"]]
    assert summary["per_seed"]["0"]["fold_mean"]["out_of_site_auc"] == pytest.approx(
        np.mean(per_fold), abs=1e-6
    )
    # per-fold and per-site AUCs come from the same predictions
    frame = pd.read_csv(tmp_path / "cv" / "predictions.csv")
    for fold in summary["folds"]:
        part = frame[frame["fold"] == fold["fold"]]
        assert fold["per_seed"]["0"]["out_of_site_auc"] == pytest.approx(
            roc_auc_score(part["covid"], part["probability"]), abs=1e-6
        )
    for site, item in summary["per_seed"]["0"]["per_site"].items():
        part = frame[frame["site"] == site]
        assert item["images"] == len(part)
        assert item["roc_auc"] == pytest.approx(roc_auc_score(part["covid"], part["probability"]), abs=1e-6)  # fmt: skip
    assert "out-of-site" in result.report and "gap (in - out)" in result.report
    assert "site 'unknown' are never held out" in result.report


def test_a_rerun_skips_finished_folds_and_resumes_an_interrupted_one(finished, monkeypatch):
    tmp_path, first, _ = finished
    folds = tmp_path / "cv"
    with pytest.raises(CxrlabError, match="--resume"):
        cv.cross_validate(config_for(tmp_path, folds=3), progress=False)
    # an ordinary run into the folder of a cross-validation, resumed or not, is refused
    with pytest.raises(CxrlabError, match="pass --resume"):
        trainer.train_classifier(config_for(tmp_path, cv="none"), progress=False)
    with pytest.raises(CxrlabError, match=r"cv \('sites' -> 'none'\)"):
        trainer.train_classifier(config_for(tmp_path, cv="none"), resume=True, progress=False)
    # fold-01 stopped after its last epoch, before its threshold and held-out predictions
    for name in ("metrics.json", "report.txt"):
        (folds / "fold-01" / name).unlink()
    for name in ("metrics.json", "predictions_test.csv"):
        (folds / "fold-01" / "seed_0" / name).unlink()
    trained, epochs = [], []
    real_train_seeds, real_epoch = trainer.train_seeds, trainer.SeedTrainer.train_epoch
    monkeypatch.setattr(
        trainer, "train_seeds", lambda f, c, *a: trained.append(c.out) or real_train_seeds(f, c, *a)
    )
    monkeypatch.setattr(
        trainer.SeedTrainer, "train_epoch", lambda self: epochs.append(1) or real_epoch(self)
    )
    again = cv.cross_validate(config_for(tmp_path, folds=3), resume=True, progress=False)
    assert trained == [str(folds / "fold-01")] and epochs == []  # resumed at its last epoch
    assert again.skipped == ["fold-00", "fold-02"]
    first_values = first.summary["per_seed"]["0"]["out_of_site"]["metrics"]
    assert again.summary["per_seed"]["0"]["out_of_site"]["metrics"] == first_values


def test_the_paired_bootstrap_draws_a_patient_for_every_set_at_once():
    rng = np.random.default_rng(0)
    covid = np.tile([0, 1], 30)
    probability = rng.uniform(size=60)
    patients = np.arange(60) // 3
    # the same patients with mirrored scores: AUC_a + AUC_b = 1 in every paired resample
    # (drawn separately, the two would not add up to 1)
    a, b = paired_bootstrap(
        [(covid, probability, 0.5, patients), (covid, 1 - probability, 0.5, patients)],
        n_resamples=300,
        seed=1,
    )
    np.testing.assert_allclose(a["roc_auc"] + b["roc_auc"], 1.0)
    assert set(a) == set(METRICS) and np.std(a["roc_auc"]) > 0
    # per-row thresholds that are all equal give the scalar threshold's intervals
    scalar = bootstrap_intervals(covid, probability, 0.4, patients, n_resamples=200, seed=2)
    per_row = bootstrap_intervals(covid, probability, np.full(60, 0.4), patients, n_resamples=200, seed=2)  # fmt: skip
    assert scalar == per_row


def test_fold_assignment_gives_every_fold_both_classes_and_is_seeded():
    # 6 units: two COVID-only sites, two non-COVID-only, two mixed
    counts = np.array([[0, 9], [0, 3], [8, 0], [2, 0], [5, 5], [1, 1]])
    for seed in range(5):
        folds = cv.assign_units(counts, 3, seed)
        assert set(folds) == {0, 1, 2}
        for fold in range(3):
            assert (counts[folds == fold].sum(0) > 0).all(), (seed, folds)
        assert (cv.assign_units(counts, 3, seed) == folds).all()


def test_unknown_sites_follow_a_known_site_they_share_a_patient_with(tmp_path):
    sited_packed(tmp_path / "P", sites=SITES[:3], unknown=0)
    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    # one of Spain's patients has a second image whose site is unknown
    extra = manifest[manifest["site"] == "Spain"].iloc[0].copy()
    extra["id"], extra["site"] = "toy:extra", "unknown"
    manifest = pd.concat([manifest, extra.to_frame().T], ignore_index=True)
    images = np.concatenate([np.load(tmp_path / "P" / "images.npy")] * 2)[: len(manifest)]
    write_packed(tmp_path / "Q", images, manifest.to_dict("records"))
    plan = cv.plan_folds(tmp_path / "Q", seed=0)
    fold = next(f for f in plan.folds if "Spain" in f.sites)
    assert fold.splits.set_index("id").loc["toy:extra", "split"] == "test"
    assert plan.unknown_rows == 0 and len(plan.folds) == 3
    assert plan.unknown_followers == 1 and "1 image(s) with site 'unknown' share" in plan.notes()[0]


def test_augmented_copies_of_held_out_images_never_train_in_that_fold(tmp_path):
    sited_packed(tmp_path / "P", sites=SITES[:3], unknown=0)
    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    parents = manifest[manifest["split"] == "train"].iloc[::3]
    copies = parents.assign(
        id=parents["id"] + ":aug", augmented="1", parent_id=parents["id"], site="unknown"
    )  # a copy whose site was lost still follows its patient
    manifest = pd.concat([manifest, copies], ignore_index=True)
    images = np.concatenate([np.load(tmp_path / "P" / "images.npy")] * 2)[: len(manifest)]
    write_packed(tmp_path / "Q", images, manifest.to_dict("records"))
    plan = cv.plan_folds(tmp_path / "Q", seed=0)
    site_of = parents.set_index("id")["site"]
    for fold in plan.folds:
        roles = fold.splits.set_index("id")["split"]
        for parent, site in site_of.items():
            if site in fold.sites:  # held out: the copy is neither trained nor judged on
                assert roles[parent] == "test" and f"{parent}:aug" not in roles.index
            else:  # trains: the copy goes where its parent goes
                assert roles[f"{parent}:aug"] == roles[parent]


@pytest.mark.parametrize(
    ("make", "folds", "message"),
    [
        (dict(with_site_column=False), None, "no 'site' column.*import the dataset again"),
        (dict(sites=()), None, "no sites: every train/val image has site 'unknown'"),
        (dict(sites=("Italy",)), None, r"at least 2 sites.*only one site \(Italy\)"),
        (dict(sites=SITES[:3]), 4, "--folds 4 is more than the 3 group"),
    ],
)
def test_unusable_sites_are_clear_errors_before_any_training(tmp_path, make, folds, message):
    sited_packed(tmp_path / "P", **make)
    with pytest.raises(DatasetError, match=message):
        cv.cross_validate(config_for(tmp_path, folds=folds), progress=False)
    assert not (tmp_path / "cv").exists()


def test_the_cli_trains_folds_and_reports_errors_in_one_line(tmp_path):
    sited_packed(tmp_path / "P", sites=SITES[:2], per_site=8)
    base = ["train", "--arch", "simple-cnn", "--data", str(tmp_path / "P"), "--epochs", "1",
            "--batch-size", "8", "--bootstrap", "50", "--device", "cpu", "-q"]  # fmt: skip
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "run"), "--cv", "sites"])
    assert result.exit_code == 0, result.output
    assert "fold-00" in result.output and "fold-01" in result.output
    assert "out-of-site" in result.output and (tmp_path / "run" / "cv.json").is_file()
    assert sorted(p.name for p in (tmp_path / "run").glob("fold-*")) == ["fold-00", "fold-01"]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "r2"), "--cv", "sites", "--folds", "3"])  # fmt: skip
    assert result.exit_code == 2 and "--folds 3 is more than the 2" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "r3"), "--folds", "3"])
    assert result.exit_code == 2 and "--folds needs --cv sites" in result.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "r4"), "--pretrain-epochs", "1"])
    assert result.exit_code == 2 and "--pretrain-epochs needs --cv sites" in result.output
    assert "Traceback" not in result.output


def test_evaluating_a_leave_site_out_folder_points_to_its_folds(finished):
    from cxrlab.clf.evaluate import seed_folders

    tmp_path, result, _ = finished
    with pytest.raises(
        CxrlabError, match="leave-site-out run: its models are in its folds"
    ) as error:
        seed_folders(tmp_path / "cv")
    assert "fold-00" in str(error.value)


def test_each_fold_pretrains_on_its_own_training_rows_and_an_interrupted_one_resumes(
    tmp_path, monkeypatch
):
    import dataclasses

    import torch

    import cxrlab.clf.pretrain as pretrain

    sited_packed(tmp_path / "P")
    # fold-01's pretraining is stopped in its second epoch (the fourth epoch overall)
    epochs = []
    real_epoch = pretrain.Pretrainer.train_epoch

    def stop_once(self):
        epochs.append(Path(self.out).name)
        if len(epochs) == 4:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(pretrain.Pretrainer, "train_epoch", stop_once)
    config = config_for(tmp_path, folds=2, epochs=1, pretrain_epochs=2)
    with pytest.raises(KeyboardInterrupt):
        cv.cross_validate(config, progress=False)
    assert epochs == ["fold-00", "fold-00", "fold-01", "fold-01"]
    with pytest.raises(CxrlabError, match="--resume"):  # a started pretraining is a started run
        cv.cross_validate(config, progress=False)
    epochs.clear()
    result = cv.cross_validate(config, resume=True, progress=False)
    assert epochs == ["fold-01"]  # fold-00's backbone reused, fold-01's from its epoch 1

    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    site_of = manifest.set_index("id")["site"]
    for fold, fold_row in zip(result.plan.folds, result.summary["folds"], strict=True):
        splits = pd.read_csv(tmp_path / "cv" / fold.name / "splits.csv", dtype=str)
        seen = pd.read_csv(tmp_path / "cv" / "pretrain" / fold.name / "images.csv", dtype=str)
        # only the fold's training rows: no held-out-site row, not its validation
        assert set(seen["id"]) == set(splits.loc[splits["split"] == "train", "id"])
        assert not set(site_of[seen["id"]]) & set(fold.sites)
        assert fold_row["pretrain"]["images"] == {"train": fold.count("train")}
        # the fold's classifier started from that backbone
        metrics = json.loads((tmp_path / "cv" / fold.name / "metrics.json").read_text())
        assert metrics["init"]["sha256"] == fold_row["pretrain"]["weights_sha256"]
    # the resumed backbone is, bitwise, the one an uninterrupted pretraining gives
    monkeypatch.setattr(pretrain.Pretrainer, "train_epoch", real_epoch)
    fold = result.plan.folds[1]
    whole = cv.pretrain_config(config, fold)
    whole = dataclasses.replace(whole, out=str(tmp_path / "whole"))
    expected = pretrain.pretrain_backbone(whole, progress=False).weights
    resumed = tmp_path / "cv" / "pretrain" / fold.name / "backbone.pt"
    expected, resumed = (torch.load(p, weights_only=True) for p in (expected, resumed))
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert result.summary["pretrain_epochs"] == 2
    assert "SimCLR-pretrained per fold for 2 epochs" in result.report


def test_per_fold_pretraining_needs_leave_site_out_and_no_other_weights(tmp_path):
    with pytest.raises(CxrlabError, match="--pretrain-epochs needs --cv sites"):
        config_for(tmp_path, cv="none", pretrain_epochs=2)
    with pytest.raises(CxrlabError, match="--init PT both set"):
        config_for(tmp_path, pretrain_epochs=2, init="PT")
