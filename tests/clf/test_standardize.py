"""Per-image standardisation is part of the model: training and evaluation apply it alike."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from clf_factory import split_packed
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.clf.models import (
    HISTOGRAM_QUANTILES,
    ModelSpec,
    build_classifier,
    image_quantiles,
    match_histograms,
    reference_quantiles,
    zscore,
)
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


@pytest.mark.parametrize(
    ("arch", "standardize"),
    [("simple-cnn", "zscore"), ("resnet18", "zscore"), ("simple-cnn", "histogram")],
)
def test_a_standardised_model_ignores_brightness_and_contrast(arch, standardize):
    images = torch.rand(4, 1, 32, 32)
    exposed = 0.5 * images + 0.25
    torch.manual_seed(0)
    plain = build_classifier(ModelSpec(arch, 32)).eval()
    torch.manual_seed(0)
    standardised = build_classifier(ModelSpec(arch, 32, standardize=standardize)).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(images), plain(exposed), atol=1e-4)
        assert torch.allclose(standardised(images), standardised(exposed), atol=1e-4)
    assert ModelSpec(arch, 32, standardize=standardize).as_dict()["standardize"] == standardize
    with pytest.raises(CxrlabError, match="--standardize"):
        build_classifier(ModelSpec(arch, 32, standardize="equalize"))


def test_evaluation_applies_the_standardisation_the_model_was_trained_with(tmp_path):
    data = split_packed(tmp_path / "P", size_px=16)
    # The same images 30 grey levels darker (toy pixels are >= 40: no clipping): what a
    # hospital with another exposure sends.
    darker = tmp_path / "darker"
    shutil.copytree(data, darker)
    np.save(darker / "images.npy", np.load(data / "images.npy") - 30)
    shifts = {}
    for standardize in ("none", "zscore", "histogram"):
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
        if standardize == "histogram":  # the training images' reference travels with the weights
            assert not torch.allclose(model.histogram_reference, torch.linspace(0, 1, HISTOGRAM_QUANTILES))  # fmt: skip
            assert "histogram_reference" in state["model"]
        trained = pd.read_csv(run / "seed_0" / "predictions_val.csv")["probability"].to_numpy()
        evaluated = {}
        for packed in (data, darker) if standardize != "none" else (darker,):
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
    assert max(shifts["zscore"], shifts["histogram"]) < 1e-4 < 1e-3 < shifts["none"]


def test_histogram_matching_ignores_any_increasing_grey_level_change():
    images = torch.rand(3, 1, 16, 16)
    reference = torch.linspace(0.1, 0.9, HISTOGRAM_QUANTILES) ** 2
    out = match_histograms(images, reference)
    changed = match_histograms(0.8 * images**2.2 + 0.05, reference)  # gamma, contrast, level
    assert torch.allclose(out, changed, atol=1e-6)
    # each image now has the reference's grey levels (up to the 256 pixels' resolution)
    assert torch.allclose(image_quantiles(out), reference.expand(3, -1), atol=5e-3)
    flat = match_histograms(torch.full((1, 1, 8, 8), 0.3), reference)
    assert torch.allclose(flat, torch.full_like(flat, float(reference[HISTOGRAM_QUANTILES // 2])), atol=5e-3)  # fmt: skip


def test_the_histogram_reference_is_the_mean_quantile_function():
    dark, bright = torch.rand(1, 1, 8, 8) * 0.5, 0.5 + torch.rand(1, 1, 8, 8) * 0.5
    reference = reference_quantiles([dark, bright])
    expected = (image_quantiles(dark) + image_quantiles(bright))[0] / 2
    assert torch.allclose(reference, expected, atol=1e-6)
    assert torch.equal(image_quantiles(dark)[0, [0, -1]], torch.stack([dark.min(), dark.max()]))
    assert (reference[1:] >= reference[:-1]).all()
