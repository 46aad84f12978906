"""scripts/transfer_recipes.py: the lungs recipes' PACKEDs, per-fold pretraining, the table."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from lung_factory import masked_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("transfer_recipes", ROOT / "scripts" / "transfer_recipes.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lungs_recipes_train_on_packeds_made_with_predicted_lung_masks(
    tmp_path, script, monkeypatch
):
    monkeypatch.setattr(script, "SEG_SIZE", 32)
    monkeypatch.setattr(script, "SEG_EPOCHS", 1)
    masked_dataset(tmp_path / "OUT", n_per_class=4)  # OUT/dataset: the import is skipped
    args = script.parse_args(
        ["--out", str(tmp_path / "OUT"), "--size", "32", "--device", "cpu",
         "--recipes", "baseline", "lungs-crop", "lungs-mask", "pretrained"]
    )  # fmt: skip
    packed = script.prepare_data(args)
    assert set(packed) == {"none", "crop", "mask"}
    masks_csv = tmp_path / "OUT" / "masks" / "masks.csv"
    assert masks_csv.is_file()  # seg predict's masks, for every image
    for mode in ("crop", "mask"):
        meta = json.loads((packed[mode] / "meta.json").read_text())
        assert meta["options"]["lungs"] == mode
        assert meta["lung_masks"]["path"] == str(masks_csv.parent.resolve())
        assert (packed[mode] / "masks.npy").is_file()
    assert not (packed["none"] / "masks.npy").exists()

    run = tmp_path / "OUT" / "runs"
    crop = script.recipe_config("lungs-crop", packed, run, 0, args)
    assert crop.data == str(packed["crop"]) and crop.cv == "sites"
    pretrained = script.recipe_config("pretrained", packed, run, 1, args)
    assert pretrained.data == str(packed["none"]) and pretrained.pretrain_epochs == 20
    assert pretrained.seeds == [1]


def _row(script, recipe, seed, out_auc):
    estimate = {"value": out_auc, "low": out_auc - 0.1, "high": out_auc + 0.1}
    return {
        "recipe": recipe, "seed": seed, "in_site_auc": {"value": 0.8, "low": 0.7, "high": 0.9},
        "out_of_site_auc": estimate, "gap_auc": {"value": 0.8 - out_auc, "low": 0, "high": 0.5},
        "fold_mean_out_of_site_auc": out_auc, "out_of_site_auc_vs_baseline": None,
        "cpu_seconds": 100.0, "wall_seconds": 200.0, "load": [2.0, 3.0],
    }  # fmt: skip


def test_the_table_gives_mean_and_sd_over_seeds_best_first(tmp_path, script):
    rows = [
        _row(script, "baseline", 0, 0.50),
        _row(script, "baseline", 1, 0.54),
        _row(script, "lungs-crop", 0, 0.60),
    ]
    args = argparse.Namespace(
        folds=5, epochs=20, size=64, out=str(tmp_path), recipes=["baseline", "lungs-crop"], seeds=[0, 1]
    )  # fmt: skip
    text = script.write_table(rows, args)
    summary = json.loads((tmp_path / "recipes.json").read_text())["summary"]
    assert [r["recipe"] for r in summary] == ["lungs-crop", "baseline"]
    assert summary[1]["out_of_site_auc"] == "0.520 ± 0.028"
    assert "| baseline | 0,1 | 0.800 ± 0.000 | 0.520 ± 0.028 |" in text
    assert "Not finished: lungs-crop (seed 1)." in text
