import math

import numpy as np
import pytest
import torch
from clf_factory import corner_marker, split_packed, toy_images
from PIL import Image
from torch import nn

from cxrlab.clf.data import evaluation_set
from cxrlab.clf.explain import (
    GradCam,
    central_box_mask,
    choose_examples,
    explain_images,
    heat_share_inside,
    hide_lungs,
    shortcut_finding,
    shortcut_verdict,
)
from cxrlab.clf.metrics import evaluate_predictions
from cxrlab.clf.models import Classifier, ModelSpec, build_classifier
from cxrlab.clf.predict import predict, predictions_frame

S = 16
CPU = torch.device("cpu")


class Regions(nn.Module):
    """(B, 1, H, W) -> (B, 2, H, W): the image inside ``region`` in channel 0, outside in 1."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images * self.region, images * (1 - self.region)], dim=1)


def regions_model(region: torch.Tensor, weights: list[list[float]]) -> Classifier:
    """Logits = ``weights`` (K, 2) @ mean brightness (inside, outside) of ``region``."""
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, len(weights)))
    with torch.no_grad():
        head[-1].weight.copy_(torch.tensor(weights))
        head[-1].bias.zero_()
    return Classifier("regions", Regions(region), head, normalize="unit")


def pixel_reader(region: torch.Tensor) -> Classifier:
    """A 'model' whose logit is the mean brightness of ``region`` ((S, S) bool) minus 0.5."""
    backbone = nn.Conv2d(1, 1, 1)
    head = nn.Sequential(nn.Flatten(), nn.Linear(S * S, 1))
    with torch.no_grad():
        backbone.weight.fill_(1.0)
        backbone.bias.zero_()
        head[1].weight.copy_(region.flatten().float()[None] / region.sum())
        head[1].bias.fill_(-0.5)
    return Classifier("reader", backbone, head, normalize="unit")


def test_grad_cam_lights_up_the_region_that_raises_the_score():
    images = torch.rand(3, 1, S, S) + 0.1
    left = torch.zeros(S, S, dtype=torch.bool)
    left[:, : S // 2] = True
    cams, probability = GradCam(regions_model(left, [[1.0, 0.0]]))(images)
    assert cams.shape == (3, S, S) and cams.max() == pytest.approx(1.0)
    assert heat_share_inside(cams, left).min() > 0.99
    cams, _ = GradCam(regions_model(left, [[0.0, 1.0]]))(images)
    assert heat_share_inside(cams, ~left).min() > 0.99
    # two logits: the score is the COVID-19 log-odds, logit 1 - logit 0
    cams, _ = GradCam(regions_model(left, [[1.0, 0.0], [0.0, 1.0]]))(images)
    assert heat_share_inside(cams, ~left).min() > 0.99
    # nothing raises the score: an all-zero map, not a division by zero
    cams, _ = GradCam(regions_model(left, [[-1.0, -1.0]]))(images)
    assert torch.count_nonzero(cams) == 0


def test_grad_cam_works_through_a_frozen_backbone_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = build_classifier(ModelSpec("resnet18", 32))
    model.freeze_backbone()
    model.train()
    cams, probability = GradCam(model)(torch.rand(2, 1, 32, 32))
    assert cams.shape == (2, 32, 32) and torch.isfinite(cams).all()
    assert 0 <= cams.min() and cams.max() <= 1 and probability.shape == (2,)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_hide_lungs_blacks_out_the_box_or_the_masks_only():
    images = torch.ones(2, 1, 20, 20)
    hidden = hide_lungs(images)
    box = central_box_mask(20)
    assert (hidden[:, 0][:, box] == 0).all() and (hidden[:, 0][:, ~box] == 1).all()
    masks = torch.zeros(2, 1, 20, 20, dtype=torch.bool)
    masks[0, 0, :5] = True
    hidden = hide_lungs(images, masks)
    assert hidden[0, 0, :5].sum() == 0 and hidden[0, 0, 5:].min() == 1 and hidden[1].min() == 1


def probe(model, packed):
    images = evaluation_set(packed, "test")
    intact, _ = predict(model, images, device=CPU)
    hidden, _ = predict(
        model, images, device=CPU, transform=lambda batch, pos: hide_lungs(batch, None)
    )
    frames = [predictions_frame(images, p) for p in (intact, hidden)]
    evaluations = [evaluate_predictions(f, 0.0, split="test", n_resamples=300) for f in frames]
    return shortcut_verdict(*evaluations), evaluations


def test_shortcut_probe_flags_a_model_that_reads_a_corner_marker(tmp_path):
    counts = {"train": 4, "test": 40}
    corner = torch.zeros(S, S, dtype=torch.bool)
    corner[:2, :2] = True
    packed = split_packed(tmp_path / "C", counts, maker=corner_marker, size_px=S)
    verdict, (intact, hidden) = probe(pixel_reader(corner), packed)
    assert intact.metrics["roc_auc"] == 1.0 and hidden.metrics["roc_auc"] == 1.0
    assert "using shortcuts" in verdict

    packed = split_packed(tmp_path / "L", counts, maker=toy_images, size_px=S)
    verdict, (intact, hidden) = probe(pixel_reader(central_box_mask(S)), packed)
    assert intact.metrics["roc_auc"] > 0.95 and hidden.metrics["roc_auc"] == 0.5
    assert "no evidence of shortcuts" in verdict


def test_explanations_are_written_as_a_png_grid_with_a_summary(tmp_path):
    packed = split_packed(tmp_path / "P", {"train": 4, "test": 12}, size_px=S)
    images = evaluation_set(packed, "test")
    positions = choose_examples(images.labels, 5, seed=0)
    assert len(positions) == 5 and set(images.labels[positions]) == {0, 1}
    summary = explain_images(
        regions_model(central_box_mask(S), [[1.0, 0.0]]), images, positions, tmp_path / "g.png",
        device=CPU, threshold=0.5,
    )  # fmt: skip
    grid = Image.open(tmp_path / "g.png")
    assert grid.mode == "RGB" and grid.width > 2 * 160
    assert len(summary["images"]) == 5 and summary["mean_heat_share_in_lung_field"] > 0.99
    assert np.asarray(grid).std() > 10  # not blank


def auc_only(value: float, low: float, high: float):
    from cxrlab.clf.metrics import METRICS, Evaluation

    metrics = dict.fromkeys(METRICS, 0.5) | {"roc_auc": value}
    intervals = dict.fromkeys(METRICS, (0.4, 0.6)) | {"roc_auc": (low, high)}
    return Evaluation("test", 0.5, metrics, intervals, [[1, 1], [1, 1]], 4, 4, 2)


@pytest.mark.parametrize(
    ("hidden", "says"),
    [
        ((0.78, 0.65, 0.9), "using shortcuts"),
        ((0.25, 0.1, 0.4), "ranking inverts"),
        ((0.7, 0.45, 0.9), "inconclusive"),
        ((0.52, 0.35, 0.68), "no evidence of shortcuts"),
    ],
)
def test_shortcut_verdicts(hidden, says):
    verdict = shortcut_verdict(auc_only(0.8, 0.7, 0.9), auc_only(*hidden))
    assert says in verdict and "0.800 [0.700, 0.900] intact" in verdict


def test_grad_cam_layer_is_the_deepest_with_maps_of_7_px_or_more():
    from cxrlab.clf.explain import cam_layer

    resnet = build_classifier(ModelSpec("resnet18", 64))
    assert cam_layer(resnet, 224)[0] == "backbone.7.1"  # layer4: 7 x 7, Grad-CAM's usual layer
    assert cam_layer(resnet, 64)[0] == "backbone.5.1"  # layer2: 8 x 8; layer4 would be 2 x 2
    cnn = build_classifier(ModelSpec("simple-cnn", 64))
    name, module = cam_layer(cnn, 64)
    assert name == "backbone.10" and isinstance(module, nn.ReLU)  # the last convolution's maps


def test_grad_cam_probabilities_are_the_models_and_one_instance_serves_many_calls():
    torch.manual_seed(0)
    for head in ("logit", "softmax"):
        model = build_classifier(ModelSpec("simple-cnn", 32, head=head)).eval()
        images = torch.rand(3, 1, 32, 32)
        with torch.no_grad():
            expected = model.covid_probability(model(images))
        cam = GradCam(model)
        for _ in range(3):  # MONAI's hooks stay on the layer: no stale maps between calls
            cams, probability = cam(images)
            assert torch.allclose(probability, expected, atol=1e-5)
        assert cams.shape == (3, 32, 32)


def conclusion(verdict: str) -> str:
    """What a probe's sentence concludes: the words after the AUCs it reports."""
    return verdict.split(": ", 1)[1]


CHANCE = "cannot tell: the model is not better than chance on these images"


@pytest.mark.parametrize(
    "without",
    [(0.5, 0.3, 0.7), (0.51, 0.28, 0.72), (0.9, 0.8, 0.97), (0.2, 0.1, 0.35)],
)
def test_a_model_at_chance_cannot_tell_from_either_probe(without):
    from cxrlab.clf.evaluate import lung_mask_verdict

    # the model: intact ROC-AUC 0.519 [0.238, 0.738], whatever the probe measures
    intact = auc_only(0.519, 0.238, 0.738)
    box = shortcut_verdict(intact, auc_only(*without))
    lungs = lung_mask_verdict(intact, auc_only(*without), auc_only(0.5, 0.3, 0.7))
    assert CHANCE in box and CHANCE in lungs
    assert "no evidence" not in box + lungs and "using shortcuts" not in box + lungs
    assert "0.519 [0.238, 0.738] intact" in box
    assert shortcut_finding(intact, auc_only(*without))[0] == "chance"


@pytest.mark.parametrize(
    ("intact", "without", "finding"),
    [
        # 0.62 is above the old real-lung rule's 0.6, but keeps 27% of the skill
        ((0.95, 0.9, 0.99), (0.62, 0.45, 0.8), "no shortcuts"),
        # 0.57 is under 0.6, but keeps 70% of a weak model's skill
        ((0.6, 0.52, 0.68), (0.57, 0.45, 0.7), "inconclusive"),
        ((0.8, 0.7, 0.9), (0.78, 0.65, 0.9), "shortcuts"),
        ((0.8, 0.7, 0.9), (0.25, 0.1, 0.4), "inverted"),
        ((0.8, math.nan, math.nan), (0.5, 0.4, 0.6), "undefined"),
    ],
)
def test_one_rule_decides_both_probes(intact, without, finding):
    from cxrlab.clf.evaluate import lung_mask_verdict

    intact, without = auc_only(*intact), auc_only(*without)
    box = shortcut_verdict(intact, without)
    lungs = lung_mask_verdict(intact, without, auc_only(0.7, 0.6, 0.8))
    assert conclusion(box) == conclusion(lungs) == shortcut_finding(intact, without)[1]
    assert shortcut_finding(intact, without)[0] == finding
