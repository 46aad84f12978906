"""Per-image standardisation is part of the model: training and evaluation apply it alike."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from clf_factory import split_packed
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.clf.models import ModelSpec, build_classifier, zscore
from cxrlab.clf.predict import load_trained
from cxrlab.data.loader import IMAGENET_GREY_MEAN, IMAGENET_GREY_STD
from cxrlab.errors import CxrlabError

runner = CliRunner()


def test_zscore_gives_each_image_the_same_mean_and_sd_whatever_its_exposure():
    images = torch.rand(3, 1, 16, 16)
    out = zscore(images)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), torch.full((3,), IMAGENET_GREY_MEAN), atol=1e-5)
    sd = out.flatten(1).std(dim=1, correction=0)
    assert torch.allclose(sd, torch.full((3,), IMAGENET_GREY_STD), atol=1e-5)
    assert torch.allclose(zscore(0.4 * images + 0.3), out, atol=1e-5)
    flat = zscore(torch.full((1, 1, 8, 8), 0.7))
    assert torch.allclose(flat, torch.full_like(flat, IMAGENET_GREY_MEAN), atol=1e-4)


@pytest.mark.parametrize("arch", ["simple-cnn", "resnet18"])
def test_a_standardised_model_ignores_brightness_and_contrast(arch):
    images = torch.rand(4, 1, 32, 32)
    exposed = 0.5 * images + 0.25
    torch.manual_seed(0)
    plain = build_classifier(ModelSpec(arch, 32)).eval()
    torch.manual_seed(0)
    standardised = build_classifier(ModelSpec(arch, 32, standardize="zscore")).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(images), plain(exposed), atol=1e-4)
        assert torch.allclose(standardised(images), standardised(exposed), atol=1e-4)
    assert ModelSpec(arch, 32, standardize="zscore").as_dict()["standardize"] == "zscore"
    with pytest.raises(CxrlabError, match="--standardize"):
        build_classifier(ModelSpec(arch, 32, standardize="histogram"))


def test_evaluation_applies_the_standardisation_the_model_was_trained_with(tmp_path):
    data = split_packed(tmp_path / "P", size_px=16)
    # The same images 30 grey levels darker (toy pixels are >= 40: no clipping): what a
    # hospital with another exposure sends.
    darker = tmp_path / "darker"
    shutil.copytree(data, darker)
    np.save(darker / "images.npy", np.load(data / "images.npy") - 30)
    shifts = {}
    for standardize in ("none", "zscore"):
        run = tmp_path / f"run-{standardize}"
        result = runner.invoke(
            app,
            ["train", "--arch", "simple-cnn", "--data", str(data), "--out", str(run),
             "--standardize", standardize, "--epochs", "2", "--batch-size", "8",
             "--bootstrap", "20", "--device", "cpu", "-q"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        model, state = load_trained(run / "seed_0", torch.device("cpu"))
        assert state["spec"]["standardize"] == standardize == model.standardize
        trained = pd.read_csv(run / "seed_0" / "predictions_val.csv")["probability"].to_numpy()
        evaluated = {}
        for packed in (data, darker) if standardize == "zscore" else (darker,):
            out = tmp_path / f"eval-{standardize}-{packed.name}"
            result = runner.invoke(
                app,
                ["evaluate", str(run), "--data", str(packed), "--split", "val", "--out", str(out),
                 "--bootstrap", "20", "--device", "cpu", "-q"],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            frame = pd.read_csv(out / "seed_0" / "predictions_val.csv")
            evaluated[packed.name] = frame["probability"].to_numpy()
        if "P" in evaluated:  # clf evaluate gives exactly what training's validation gave
            np.testing.assert_allclose(evaluated["P"], trained, atol=1e-6)
        shifts[standardize] = np.abs(evaluated["darker"] - trained).max()
    assert shifts["zscore"] < 1e-4 < 1e-3 < shifts["none"]
