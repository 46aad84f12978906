import json

import numpy as np
import pandas as pd
import pytest
import torch
from clf_factory import split_packed, synthetic_pngs

import cxrlab.clf.trainer as trainer
from cxrlab.clf.config import ClfConfig
from cxrlab.clf.data import evaluation_set
from cxrlab.clf.metrics import youden_threshold
from cxrlab.clf.predict import load_trained, predict
from cxrlab.clf.trainer import SeedTrainer, class_weights, epoch_order, train_classifier
from cxrlab.errors import CxrlabError
from cxrlab.preprocess.augment import BatchAugment

SIZE = 16


def config_for(tmp_path, out="run", **overrides) -> ClfConfig:
    values = dict(
        arch="simple-cnn", data=str(tmp_path / "P"), out=str(tmp_path / out), epochs=2,
        batch_size=8, lr=2e-3, device="cpu", bootstrap=200,
    )  # fmt: skip
    values.update(overrides)
    return ClfConfig(**values)


def count_backbone_images(monkeypatch) -> dict:
    """``{"images": n}``: how many images the backbone has seen since (counted live)."""
    from cxrlab.clf.models import Classifier

    seen = {"images": 0}
    real_features = Classifier.features

    def counting_features(self, images):
        seen["images"] += len(images)
        return real_features(self, images)

    monkeypatch.setattr(Classifier, "features", counting_features)
    return seen


def test_no_synthetic_or_augmented_image_reaches_validation_or_test(tmp_path, monkeypatch):
    """Offline-augmented rows (even ones mislabelled val/test), synthetic PNGs and online
    augmentation all train; validation and test see real, unaltered images only; the
    test split is read once, after the last epoch."""
    packed = split_packed(
        tmp_path / "P", size_px=SIZE, augmented_copies=6, leak_augmented_into=("val", "test")
    )
    calls: list[tuple[str, ...]] = []
    augmented_counts: list[int] = []
    real_predict, real_augment = trainer.predict, BatchAugment.forward

    def spy_predict(model, images, **kwargs):
        assert (images.origins == "real").all(), "a generated image reached evaluation"
        calls.append(tuple(sorted(set(images.table["split"]))))
        return real_predict(model, images, **kwargs)

    def spy_augment(self, images, step):
        augmented_counts.append(len(images))
        return real_augment(self, images, step)

    monkeypatch.setattr(trainer, "predict", spy_predict)
    monkeypatch.setattr(BatchAugment, "forward", spy_augment)
    config = config_for(
        tmp_path, synthetic=str(synthetic_pngs(tmp_path / "D")), augment="mild", epochs=2,
        allow_mismatch=True,  # 32 px synthetic PNGs into a 16 px PACKED: resized, allowed
    )  # fmt: skip
    result = train_classifier(config, progress=False)

    # training: 32 real + 6 augmented copies + 6 synthetic, every one augmented online
    assert sum(augmented_counts) == 2 * (32 + 6 + 6)
    # validation each epoch, validation for the threshold, then the test split once
    assert calls == [("val",), ("val",), ("val",), ("test",)]
    folder = tmp_path / "run" / "seed_0"
    manifest = pd.read_csv(packed / "manifest.csv", dtype=str)
    for split in ("val", "test"):
        predicted = pd.read_csv(folder / f"predictions_{split}.csv", dtype=str)
        real = manifest[(manifest["split"] == split) & (manifest["augmented"] == "0")]
        assert sorted(predicted["id"]) == sorted(real["id"]), split
    # validation predictions are those of the final model on the clean images
    model, state = load_trained(folder, torch.device("cpu"))
    clean, _ = predict(model, evaluation_set(packed, "val"), device=torch.device("cpu"))
    written = pd.read_csv(folder / "predictions_val.csv")
    assert np.allclose(written["probability"], clean, atol=1e-5)
    # the threshold is Youden's on validation, and the one applied to the test split
    assert state["threshold"] == pytest.approx(youden_threshold(written["covid"], clean), abs=1e-5)
    test = pd.read_csv(folder / "predictions_test.csv")
    assert np.allclose(test["threshold"], state["threshold"])
    counts = json.loads((folder / "metrics.json").read_text())["training_images"]
    assert counts == {"real": 32, "augmented": 6, "synthetic": 6}
    assert result.seeds[0].test is not None


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    split_packed(tmp_path / "P", size_px=SIZE)
    options = dict(epochs=3, augment="mild", balance="oversample")
    train_classifier(config_for(tmp_path, "full", **options), progress=False)

    real_epoch = SeedTrainer.train_epoch

    def interrupted(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(SeedTrainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(config_for(tmp_path, "cut", **options), progress=False)
    monkeypatch.setattr(SeedTrainer, "train_epoch", real_epoch)
    train_classifier(config_for(tmp_path, "cut", **options), resume=True, progress=False)

    for name in ("best.pt", "checkpoints/last.pt"):
        full = torch.load(tmp_path / "full/seed_0" / name, weights_only=True)
        cut = torch.load(tmp_path / "cut/seed_0" / name, weights_only=True)
        for key, value in full["model"].items():
            assert torch.equal(value, cut["model"][key]), f"{name}: {key} differs after resume"
    full_log = pd.read_csv(tmp_path / "full/seed_0/epochs.csv").drop(columns="seconds")
    cut_log = pd.read_csv(tmp_path / "cut/seed_0/epochs.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(full_log, cut_log)
    # cosine over the whole run: still well above zero in the last epoch
    assert list(full_log["epoch"]) == [1, 2, 3]
    assert full_log["lr"].iloc[-1] > 0.2 * 2e-3


def test_seeds_are_reported_one_by_one_and_as_mean_and_sd(tmp_path):
    split_packed(tmp_path / "P", size_px=SIZE)
    result = train_classifier(config_for(tmp_path, seeds=[0, 1], epochs=1), progress=False)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(summary["per_seed"]) == {"0", "1"}
    auc = summary["test"]["roc_auc"]
    values = list(auc["per_seed"].values())
    assert auc["mean"] == pytest.approx(np.mean(values), abs=1e-6)
    assert auc["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
    assert "mean ± sd" in result.report and "seed 1" in result.report
    for seed in (0, 1):
        folder = tmp_path / "run" / f"seed_{seed}"
        assert (folder / "confusion_matrix_test.png").stat().st_size > 1000
        assert (folder / "roc_test.png").stat().st_size > 1000
    weights = [
        torch.load(tmp_path / f"run/seed_{s}/best.pt", weights_only=True)["model"] for s in (0, 1)
    ]
    key = next(iter(weights[0]))
    assert not torch.equal(weights[0][key], weights[1][key])
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_a_second_run_into_the_same_folder_needs_resume_with_the_same_options(tmp_path):
    split_packed(tmp_path / "P", size_px=SIZE)
    (tmp_path / "run" / "seed_0" / "checkpoints").mkdir(parents=True)
    config_for(tmp_path).write(tmp_path / "run" / "config.yaml")
    (tmp_path / "run" / "seed_0" / "checkpoints" / "last.pt").write_bytes(b"")  # a started run
    with pytest.raises(CxrlabError, match="--resume"):
        train_classifier(config_for(tmp_path), progress=False)
    with pytest.raises(CxrlabError, match="differs in lr"):
        train_classifier(config_for(tmp_path, lr=0.1), resume=True, progress=False)


def test_a_run_that_failed_before_its_first_epoch_can_be_started_again(tmp_path):
    """An unsplit PACKED or missing weights fail at start: the fixed command must run."""
    split_packed(tmp_path / "P", size_px=SIZE)
    with pytest.raises(CxrlabError, match="weights"):
        train_classifier(
            config_for(tmp_path, pretrained=str(tmp_path / "absent.pt")), progress=False
        )
    result = train_classifier(config_for(tmp_path, pretrained="none"), progress=False)
    assert result.seeds[0].best_epoch >= 1


def test_one_class_training_data_is_refused(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 4, "val": 4}, size_px=SIZE)
    manifest = (packed / "manifest.csv").read_text().replace(",1,", ",0,")
    (packed / "manifest.csv").write_text(manifest)
    with pytest.raises(CxrlabError, match="one class"):
        train_classifier(config_for(tmp_path), progress=False)


def test_balancing_weights_and_oversampling():
    labels = np.array([1] * 90 + [0] * 10)
    weights = class_weights(labels)
    assert torch.allclose(weights, torch.tensor([5.0, 100 / 180]))
    assert weights[0] * 10 == pytest.approx(weights[1] * 90)  # each class: half the loss
    drawn = epoch_order(labels, "oversample", torch.Generator().manual_seed(0)).numpy()
    assert len(drawn) == 100 and 0.35 < labels[drawn].mean() < 0.65
    order = epoch_order(labels, "none", torch.Generator().manual_seed(0)).numpy()
    assert sorted(order) == list(range(100))


def test_config_rejects_unknown_choices():
    with pytest.raises(CxrlabError, match="--augment"):
        ClfConfig(arch="simple-cnn", data="P", out="R", augment="wild")
    with pytest.raises(CxrlabError, match="--arch"):
        ClfConfig(arch="vgg", data="P", out="R")
    with pytest.raises(CxrlabError, match="needs --synthetic"):
        ClfConfig(arch="simple-cnn", data="P", out="R", synthetic_ratio=1.0)


def test_frozen_backbone_feature_cache_trains_and_predicts_as_without_it(tmp_path, monkeypatch):
    """Frozen ResNet-18 (BatchNorm in eval mode), no augmentation: the backbone's maps
    are computed once per run, and the run's losses, AUCs, weights and predictions are
    those of recomputing them every epoch (the cache turned off by a zero size limit)."""
    split_packed(tmp_path / "P", size_px=SIZE)
    seen = count_backbone_images(monkeypatch)
    options = dict(arch="resnet18", pretrained="none", freeze_backbone=True, epochs=4, lr=1e-2)
    cached = train_classifier(config_for(tmp_path, "cached", **options), progress=False)
    cached_images, seen["images"] = seen["images"], 0
    monkeypatch.setattr(trainer, "FEATURE_CACHE_MAX_BYTES", 0)
    recomputed = train_classifier(config_for(tmp_path, "recomputed", **options), progress=False)

    # 32 train + 16 val once, then 16 val (threshold) + 16 test at the end
    assert cached_images == 32 + 16 + 16 + 16
    # every epoch, plus the first batch that measured the cache too big for the limit
    assert seen["images"] == 4 * (32 + 16) + 16 + 16 + 16
    cached_log = pd.read_csv(tmp_path / "cached/seed_0/epochs.csv").drop(columns="seconds")
    recomputed_log = pd.read_csv(tmp_path / "recomputed/seed_0/epochs.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(cached_log, recomputed_log, rtol=1e-5)
    assert cached_log["train_loss"].iloc[-1] < cached_log["train_loss"].iloc[0]  # it learns
    cached_model = torch.load(tmp_path / "cached/seed_0/best.pt", weights_only=True)["model"]
    recomputed_model = torch.load(tmp_path / "recomputed/seed_0/best.pt", weights_only=True)[
        "model"
    ]
    for key, value in cached_model.items():  # BatchNorm statistics included
        torch.testing.assert_close(value, recomputed_model[key], rtol=1e-5, atol=1e-6)
    for name in ("predictions_val.csv", "predictions_test.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "cached/seed_0" / name),
            pd.read_csv(tmp_path / "recomputed/seed_0" / name),
            rtol=1e-5,
        )
    assert cached.seeds[0].best_epoch == recomputed.seeds[0].best_epoch
    assert cached.seeds[0].threshold == pytest.approx(recomputed.seeds[0].threshold, rel=1e-5)


def test_with_augmentation_a_frozen_backbone_still_sees_the_validation_images_once(
    tmp_path, monkeypatch
):
    split_packed(tmp_path / "P", size_px=SIZE)
    seen = count_backbone_images(monkeypatch)
    options = dict(arch="resnet18", pretrained="none", freeze_backbone=True, augment="mild")
    train_classifier(config_for(tmp_path, epochs=3, **options), progress=False)
    # augmented training images every epoch; validation once, again for the threshold; test
    assert seen["images"] == 3 * 32 + 16 + 16 + 16


def _shares(fabric, tmp_path):
    """One epoch in each of Fabric's processes, recording the training positions each saw."""
    config = config_for(tmp_path, epochs=1, devices=2)
    seed_trainer = SeedTrainer(config, 0, fabric, progress=False)
    seen = []
    real_batch = seed_trainer.train_images.batch

    def recording_batch(positions):
        seen.extend(int(p) for p in positions)
        return real_batch(positions)

    seed_trainer.train_images.batch = recording_batch
    seed_trainer.train_epoch()
    weights = torch.cat([p.detach().flatten() for p in seed_trainer.model.parameters()])
    torch.save(
        {"seen": torch.tensor(seen), "weights": weights}, tmp_path / f"rank{fabric.global_rank}.pt"
    )


@pytest.mark.slow
def test_each_ddp_process_trains_on_its_own_share_of_every_batch(tmp_path):
    from lightning_fabric import Fabric

    split_packed(tmp_path / "P", size_px=SIZE)
    Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn").launch(_shares, tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(rank0["seen"]) == len(rank1["seen"]) == 16  # half of the 32 training images
    assert sorted(torch.cat([rank0["seen"], rank1["seen"]]).tolist()) == list(range(32))
    assert torch.equal(rank0["weights"], rank1["weights"])  # gradients were averaged


@pytest.mark.slow
def test_clf_train_on_two_cpu_processes_matches_one_process(tmp_path):
    """`clf train --devices 2` (DDP with gloo on CPU) gives the metrics of the same run on
    one process: simple-cnn has no BatchNorm, so the average of the two halves' gradients
    is the whole batch's gradient, and the weights, losses and metrics files agree."""
    from typer.testing import CliRunner

    from cxrlab.cli import app

    split_packed(tmp_path / "P", size_px=SIZE)
    options = [
        "--arch", "simple-cnn", "--data", str(tmp_path / "P"), "--epochs", "2",
        "--batch-size", "8", "--lr", "2e-3", "--device", "cpu", "--bootstrap", "200", "-q",
    ]  # fmt: skip
    for out, devices in (("one", "1"), ("two", "2")):
        result = CliRunner().invoke(
            app, ["clf", "train", *options, "--out", str(tmp_path / out), "--devices", devices]
        )
        assert result.exit_code == 0, result.output
        assert "validation AUC at the chosen epoch" in result.output
        auc_line = next(
            line for line in result.output.splitlines() if "validation AUC at the chosen" in line
        )
        assert "±" not in auc_line  # one seed has no spread to show

    def keys(value, prefix=""):
        if not isinstance(value, dict):
            return {prefix}
        return set().union(*(keys(v, f"{prefix}/{k}") for k, v in value.items()))

    one, two = (json.loads((tmp_path / out / "metrics.json").read_text()) for out in ("one", "two"))
    assert keys(one) == keys(two)
    assert (one["devices"], two["devices"]) == (1, 2)
    one_log = pd.read_csv(tmp_path / "one/seed_0/epochs.csv").drop(columns="seconds")
    two_log = pd.read_csv(tmp_path / "two/seed_0/epochs.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(one_log, two_log, rtol=1e-4)
    one_model, two_model = (
        torch.load(tmp_path / out / "seed_0/best.pt", weights_only=True)["model"]
        for out in ("one", "two")
    )
    for name, weights in one_model.items():
        torch.testing.assert_close(two_model[name], weights, rtol=1e-4, atol=1e-5)
    trained = torch.load(tmp_path / "two/seed_0/checkpoints/last.pt", weights_only=True)
    assert trained["epoch"] == 2
