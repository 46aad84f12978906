"""The shortcut probe with real lung masks, on classifiers whose reading is known."""

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion
from torch import nn
from typer.testing import CliRunner

from cxrlab.clf import evaluate as evaluate_module
from cxrlab.clf.cli import app
from cxrlab.clf.evaluate import evaluate_run
from cxrlab.clf.models import Classifier
from cxrlab.data.packed import preprocess_dataset
from cxrlab.preprocess.transforms import PreprocessOptions
from lung_factory import lung_ellipses, masked_dataset, masks_folder

S = 32
runner = CliRunner()


def region_reader(region: np.ndarray) -> Classifier:
    """A hand-set 'model': logit = 20 x (mean brightness of ``region`` - 0.5)."""
    region = torch.from_numpy(region)
    backbone = nn.Conv2d(1, 1, 1)
    head = nn.Sequential(nn.Flatten(), nn.Linear(S * S, 1))
    with torch.no_grad():
        backbone.weight.fill_(1.0)
        backbone.bias.zero_()
        head[1].weight.copy_(20 * region.flatten().float()[None] / region.sum())
        head[1].bias.fill_(-10.0)
    return Classifier("reader", backbone, head, normalize="unit")


CORNER = np.zeros((S, S), dtype=bool)
CORNER[:4, :4] = True
LUNG_CORES = binary_erosion(lung_ellipses(S, S), iterations=3)


class Regions(nn.Module):
    """(B, 1, H, W) -> (B, 1, H, W): the image inside ``region``, 0 outside."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("region", torch.from_numpy(region).float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.region


def region_looker(region: np.ndarray) -> Classifier:
    """A 'model' whose logit is the mean brightness of ``region`` seen through one
    (B, 1, S, S) feature map: its Grad-CAM heat lies inside ``region`` only."""
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 1))
    with torch.no_grad():
        head[-1].weight.fill_(S * S / region.sum())
        head[-1].bias.fill_(-0.5)
    return Classifier("looker", Regions(region), head, normalize="unit")


def probe_run(tmp_path, monkeypatch, sign: str, model: Classifier, explain: int = 0):
    dataset = masked_dataset(tmp_path, n_per_class=12, covid_sign=sign)
    packed = tmp_path / "P"
    preprocess_dataset(dataset, packed, PreprocessOptions(size_px=S), progress=False)
    masks = masks_folder(dataset, tmp_path / "M", leave_out=1)
    run = tmp_path / "run"
    (run / "seed_0").mkdir(parents=True)
    (run / "seed_0" / "best.pt").write_bytes(b"")  # the model below stands in for it
    state = {"threshold": 0.5, "spec": {"size_px": S}}
    monkeypatch.setattr(evaluate_module, "load_trained", lambda folder, device: (model, state))
    return evaluate_run(
        run, packed, split="all", shortcut_probe=True, lung_masks=masks, device="cpu",
        bootstrap=200, out=tmp_path / "eval", explain=explain,
    )  # fmt: skip


def test_a_classifier_reading_a_corner_marker_keeps_its_auc_without_lungs(tmp_path, monkeypatch):
    result = probe_run(tmp_path, monkeypatch, "corner", region_reader(CORNER))
    probe = result.probes[0]
    # 24 images: 2 have no mask in the dataset, 1 was left out of MASKS
    assert probe["n_images"] == 21 and probe["n_left_out_without_mask"] == 3
    auc = {k: probe[k]["metrics"]["roc_auc"]["value"] for k in ("intact", "lungs_removed", "lungs_only")}  # fmt: skip
    assert auc["intact"] == 1.0 and auc["lungs_removed"] == 1.0 and auc["lungs_only"] == 0.5
    assert "still scores well without the lungs" in probe["verdict"]
    assert "it is using shortcuts" in result.report and "3 without a mask left out" in result.report
    for name in ("lungs_removed_examples.png", "lungs_only_examples.png"):
        assert (tmp_path / "eval" / "seed_0" / name).stat().st_size > 200
    saved = json.loads((tmp_path / "eval" / "seed_0" / "metrics.json").read_text())
    assert saved["shortcut_probe"]["lungs_removed"]["metrics"]["roc_auc"]["low"] > 0.5


def test_a_classifier_reading_the_lungs_loses_its_auc_without_them(tmp_path, monkeypatch):
    result = probe_run(tmp_path, monkeypatch, "lungs", region_reader(LUNG_CORES))
    probe = result.probes[0]
    auc = {k: probe[k]["metrics"]["roc_auc"]["value"] for k in ("intact", "lungs_removed", "lungs_only")}  # fmt: skip
    assert auc["intact"] == 1.0 and auc["lungs_only"] == 1.0 and auc["lungs_removed"] == 0.5
    assert "no evidence of shortcuts" in probe["verdict"]
    assert "using shortcuts" not in result.report


def test_lung_masks_need_the_probe(tmp_path):
    result = runner.invoke(
        app, ["evaluate", str(tmp_path), "--data", str(tmp_path), "--lung-masks", str(tmp_path)]
    )
    assert result.exit_code == 2 and "add --shortcut-probe" in result.output


@pytest.mark.parametrize("lungs", ["crop"])
def test_probing_a_lung_cropped_packed_says_it_is_not_meaningful(tmp_path, monkeypatch, lungs):
    dataset = masked_dataset(tmp_path, n_per_class=12, covid_sign="corner")
    masks = masks_folder(dataset, tmp_path / "M", leave_out=0)
    packed = tmp_path / "P"
    preprocess_dataset(
        dataset, packed, PreprocessOptions(size_px=S, lungs=lungs), lung_masks=masks,
        progress=False,
    )  # fmt: skip
    run = tmp_path / "run"
    (run / "seed_0").mkdir(parents=True)
    (run / "seed_0" / "best.pt").write_bytes(b"")
    state = {"threshold": 0.5, "spec": {"size_px": S}}
    model = region_reader(CORNER)
    monkeypatch.setattr(evaluate_module, "load_trained", lambda folder, device: (model, state))
    result = evaluate_run(
        run, packed, split="all", shortcut_probe=True, lung_masks=masks, device="cpu",
        bootstrap=50, out=tmp_path / "eval",
    )  # fmt: skip
    assert "probe is not meaningful" in result.report


def test_a_classifier_at_chance_cannot_tell_with_lung_masks(tmp_path, monkeypatch):
    # COVID-19 brightens the lungs; the corner carries nothing: the model is at chance
    result = probe_run(tmp_path, monkeypatch, "lungs", region_reader(CORNER))
    probe = result.probes[0]
    low, high = (probe["intact"]["metrics"]["roc_auc"][k] for k in ("low", "high"))
    assert low <= 0.5 <= high
    assert "cannot tell: the model is not better than chance on these images" in result.report
    assert "no evidence of shortcuts" not in result.report
    assert probe["finding"] == "chance"


def test_grad_cam_measures_the_heat_on_the_given_lung_masks(tmp_path, monkeypatch):
    from scipy.ndimage import binary_dilation

    from cxrlab.clf.data import evaluation_set
    from cxrlab.clf.explain import GradCam, central_box_mask, heat_share_inside

    # a model looking between and above the lungs: inside the central box, outside the lungs
    box = central_box_mask(S).numpy()
    between = box & ~binary_dilation(lung_ellipses(S, S), iterations=3)
    result = probe_run(tmp_path, monkeypatch, "lungs", region_looker(between), explain=6)
    gradcam = result.explanations[0]
    images = evaluation_set(tmp_path / "P", "all")
    cams, _ = GradCam(region_looker(between))(images.batch(np.arange(len(images))))
    in_box = heat_share_inside(cams, torch.from_numpy(box)).mean().item()
    assert in_box > 0.99  # the central box would say the model looks at the lungs
    assert gradcam["lung_field"] == f"lung masks from {tmp_path / 'M'}"
    assert gradcam["mean_heat_share_in_lung_field"] < 0.1  # the real lungs say it does not
    explained = {image["id"] for image in gradcam["images"]}
    with_mask = {line.split(",")[0] for line in (tmp_path / "M" / "masks.csv").open()}
    assert len(explained) == 6 and explained <= with_mask  # only images with a mask
    assert f"lung masks from {tmp_path / 'M'}" in result.report
