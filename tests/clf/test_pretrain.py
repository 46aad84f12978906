"""`clf pretrain` (SimCLR on unlabelled training images) and `clf train --init`."""

import json

import pandas as pd
import pytest
import torch
from clf_factory import split_packed
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.clf.config import ClfConfig, PretrainConfig
from cxrlab.clf.pretrain import Pretrainer, build_backbone, pretrain_backbone
from cxrlab.clf.trainer import SeedTrainer
from cxrlab.errors import CxrlabError
from cxrlab.utils.checkpoint import load_checkpoint
from cxrlab.utils.device import make_fabric
from cxrlab.utils.fs import sha256_file

runner = CliRunner()
SIZE_PX = 16


def _pretrain(tmp_path, *options: str, data=None, out: str = "PT"):
    data = data or tmp_path / "P"
    if not data.exists():
        split_packed(data, size_px=SIZE_PX, augmented_copies=2)
    result = runner.invoke(
        app,
        ["pretrain", str(data), "--out", str(tmp_path / out), "--epochs", "2",
         "--batch-size", "8", "--device", "cpu", "-q", *options],
    )  # fmt: skip
    return result, tmp_path / out


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["simple-cnn", "resnet18"])
def test_pretrained_backbone_differs_from_its_random_start_and_loads_bitwise(tmp_path, arch):
    result, out = _pretrain(tmp_path, "--arch", arch)
    assert result.exit_code == 0, result.output
    assert "clf train --init" in result.output
    weights = torch.load(out / "backbone.pt", weights_only=True)
    record = json.loads((out / "pretrain.json").read_text())
    assert record["arch"] == arch and record["weights_sha256"] == sha256_file(out / "backbone.pt")
    assert len(record["loss_per_epoch"]) == 2
    random_start = build_backbone(PretrainConfig.read(out / "config.yaml"), SIZE_PX)
    start = random_start.backbone.state_dict()
    assert start.keys() == weights.keys()
    assert not all(torch.equal(start[k], weights[k]) for k in weights if k.endswith("weight"))

    config = ClfConfig(arch=arch, data=str(tmp_path / "P"), out=str(tmp_path / "run"), init=str(out))  # fmt: skip
    trainer = SeedTrainer(config, 0, make_fabric("cpu"), progress=False)
    assert _equal(trainer.model.backbone.state_dict(), weights)


def test_clf_train_init_records_the_pretraining_and_a_frozen_backbone_stays_it(tmp_path):
    result, out = _pretrain(tmp_path, "--arch", "simple-cnn")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--arch", "simple-cnn", "--data", str(tmp_path / "P"), "--out", str(run),
         "--init", str(out / "backbone.pt"), "--freeze-backbone", "--epochs", "2",
         "--batch-size", "8", "--bootstrap", "20", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"backbone initialised from {out / 'backbone.pt'}" in result.output
    best = load_checkpoint(run / "seed_0" / "best.pt")["model"]
    backbone = {k[len("backbone.") :]: v for k, v in best.items() if k.startswith("backbone.")}
    assert _equal(backbone, torch.load(out / "backbone.pt", weights_only=True))
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["init"]["sha256"] == sha256_file(out / "backbone.pt")
    assert summary["init"]["splits"] == ["train"] and summary["init"]["arch"] == "simple-cnn"
    assert ClfConfig.read(run / "config.yaml").init == str(out / "backbone.pt")


def test_pretraining_sees_the_real_training_images_only_unless_splits_are_named(tmp_path):
    result, out = _pretrain(tmp_path, "--arch", "simple-cnn")
    assert result.exit_code == 0, result.output
    seen = pd.read_csv(out / "images.csv")
    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv")
    real_train = manifest[(manifest["split"] == "train") & (manifest["augmented"] == 0)]
    assert set(seen["split"]) == {"train"} and set(seen["id"]) == set(real_train["id"])
    assert json.loads((out / "pretrain.json").read_text())["images"] == {"train": 32}

    result, wider = _pretrain(tmp_path, "--arch", "simple-cnn", "--pretrain-on", "train,val", out="PV")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((wider / "pretrain.json").read_text())
    assert record["splits"] == ["train", "val"] and record["images"] == {"train": 32, "val": 16}
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--arch", "simple-cnn", "--data", str(tmp_path / "P"), "--out", str(run),
         "--init", str(wider), "--epochs", "1", "--batch-size", "8", "--bootstrap", "20",
         "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pretraining saw 16 of the 16 val images" in result.output
    assert "test images" not in result.output


def test_an_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = split_packed(tmp_path / "P", size_px=SIZE_PX)
    common = {"backbone": "simple-cnn", "data": str(data), "epochs": 2, "batch_size": 8, "device": "cpu"}  # fmt: skip
    whole = pretrain_backbone(PretrainConfig(out=str(tmp_path / "whole"), **common), progress=False)

    epochs = []
    real_epoch = Pretrainer.train_epoch

    def stop_in_the_second(self):
        epochs.append(self.epoch)
        if len(epochs) == 2:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(Pretrainer, "train_epoch", stop_in_the_second)
    config = PretrainConfig(out=str(tmp_path / "cut"), **common)
    with pytest.raises(KeyboardInterrupt):
        pretrain_backbone(config, progress=False)
    monkeypatch.setattr(Pretrainer, "train_epoch", real_epoch)
    with pytest.raises(CxrlabError, match="--resume"):
        pretrain_backbone(config, progress=False)
    resumed = pretrain_backbone(config, resume=True, progress=False)
    assert resumed.record["loss_per_epoch"] == whole.record["loss_per_epoch"]
    assert _equal(
        torch.load(resumed.weights, weights_only=True), torch.load(whole.weights, weights_only=True)
    )


def test_mismatches_and_bad_inputs_are_one_line_errors(tmp_path):
    result, out = _pretrain(tmp_path, "--arch", "simple-cnn")
    assert result.exit_code == 0, result.output
    data = str(tmp_path / "P")

    def train(*options: str):
        return runner.invoke(
            app,
            ["train", "--data", data, "--out", str(tmp_path / "run"), "--epochs", "1",
             "--device", "cpu", "-q", *options],
        )  # fmt: skip

    for options, message in [
        (
            ["--arch", "resnet18", "--init", str(out)],
            "holds a simple-cnn backbone but --arch is resnet18",
        ),  # fmt: skip
        (
            ["--arch", "simple-cnn", "--init", str(out), "--standardize", "zscore"],
            "--standardize none",
        ),  # fmt: skip
        (
            ["--arch", "resnet18", "--init", str(out), "--pretrained", "imagenet"],
            "both set the backbone",
        ),  # fmt: skip
        (["--arch", "simple-cnn", "--init", str(tmp_path / "nowhere")], "no backbone.pt"),
        (["--arch", "simple-cnn", "--init", str(out / "images.csv")], "cannot read it"),
    ]:
        result = train(*options)
        assert result.exit_code == 2 and message in result.output, (options, result.output)
        assert "Traceback" not in result.output
    result, _ = _pretrain(tmp_path, "--pretrain-on", "train,holdout", out="bad")
    assert result.exit_code == 2 and "--pretrain-on train,holdout" in result.output
    result, _ = _pretrain(tmp_path, "--pretrain-on", "external", out="bad")
    assert result.exit_code == 2 and "no real images in split 'external'" in result.output
    result, _ = _pretrain(tmp_path, "--arch", "simple-cnn")  # the same --out again
    assert result.exit_code == 2 and "--resume" in result.output
    assert not (tmp_path / "bad").exists()


def test_a_splits_file_limits_pretraining_to_a_folds_training_rows(tmp_path):
    data = split_packed(tmp_path / "P", size_px=SIZE_PX)
    manifest = pd.read_csv(data / "manifest.csv")
    fold = manifest[manifest["split"] == "train"][["id"]].assign(split="test")
    fold.iloc[:12, fold.columns.get_loc("split")] = "train"  # the fold trains on 12 rows
    fold.to_csv(tmp_path / "splits.csv", index=False)
    result, out = _pretrain(tmp_path, "--arch", "simple-cnn", "--splits-file", str(tmp_path / "splits.csv"))  # fmt: skip
    assert result.exit_code == 0, result.output
    seen = pd.read_csv(out / "images.csv")
    assert set(seen["id"]) == set(fold["id"].iloc[:12])
    record = json.loads((out / "pretrain.json").read_text())
    assert record["images"] == {"train": 12} and record["splits_file"] == str(
        tmp_path / "splits.csv"
    )


def test_a_histogram_standardised_backbone_pretrains_and_initialises_a_run(tmp_path):
    result, out = _pretrain(tmp_path, "--arch", "simple-cnn", "--standardize", "histogram")
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["train", "--arch", "simple-cnn", "--data", str(tmp_path / "P"), "--out", str(tmp_path / "run"),
         "--init", str(out), "--standardize", "histogram", "--epochs", "1", "--batch-size", "8",
         "--bootstrap", "20", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
