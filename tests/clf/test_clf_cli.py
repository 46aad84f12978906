import json

import pandas as pd
from clf_factory import class_folders, split_packed
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.data.api import import_source
from cxrlab.data.packed import preprocess_dataset
from cxrlab.preprocess.transforms import PreprocessOptions

runner = CliRunner()


def test_train_then_evaluate_on_an_external_folder_dataset(tmp_path):
    split_packed(tmp_path / "P", size_px=16)
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--arch", "simple-cnn", "--data", str(tmp_path / "P"), "--out", str(run),
         "--epochs", "2", "--batch-size", "8", "--lr", "2e-3", "--seeds", "0", "1",
         "--bootstrap", "200", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mean ± sd" in result.output and "roc_auc" in result.output
    assert sorted(p.name for p in run.glob("seed_*")) == ["seed_0", "seed_1"]
    for name in ("config.yaml", "metrics.json", "report.txt"):
        assert (run / name).is_file()
    assert (run / "seed_0" / "epochs.csv").read_text().count("\n") == 3

    # every image of the training data: the report says the numbers are optimistic
    result = runner.invoke(
        app, ["evaluate", str(run), "--data", str(tmp_path / "P"), "--split", "all", "--bootstrap", "50"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "32 evaluated images are the model's training images" in result.output

    # a dataset from "another hospital": image folders, never split, 32 px
    import_source("folders", class_folders(tmp_path / "hospital"), tmp_path / "X", progress=False)
    preprocess_dataset(tmp_path / "X", tmp_path / "PX", PreprocessOptions(size_px=32), progress=False)  # fmt: skip
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["evaluate", str(run), "--data", str(tmp_path / "PX"), "--split", "all", "--explain", "4",
         "--shortcut-probe", "--bootstrap", "200", "--out", str(out), "--device", "cpu",
         "--allow-mismatch"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resized from 32 to the model's 16 px" in result.output
    assert "preprocessing mismatch allowed (--allow-mismatch)" in result.output
    assert "size (px) 16 vs 32" in result.output
    assert "shortcut probe" in result.output and "Grad-CAM" in result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["metrics"]) == {
        "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc"
    }  # fmt: skip
    for seed in (0, 1):
        folder = out / f"seed_{seed}"
        predictions = pd.read_csv(folder / "predictions_all.csv")
        assert len(predictions) == 16 and predictions["covid"].sum() == 8
        for png in ("confusion_matrix_all.png", "roc_all.png", "gradcam.png", "lungs_hidden_examples.png"):  # fmt: skip
            assert (folder / png).stat().st_size > 500, png
        values = json.loads((folder / "metrics.json").read_text())
        low = values["evaluation"]["metrics"]["roc_auc"]["low"]
        high = values["evaluation"]["metrics"]["roc_auc"]["high"]
        assert low <= values["evaluation"]["metrics"]["roc_auc"]["value"] <= high
        assert "verdict" in values["shortcut_probe"]


def test_errors_are_one_line_with_the_fix(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nowhere"), "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no trained seed" in result.output and "cxrlab clf train" in result.output
    split_packed(tmp_path / "P", size_px=16)
    result = runner.invoke(
        app,
        ["train", "--arch", "resnet18", "--pretrained", "imagenet", "--data", str(tmp_path / "P"),
         "--out", str(tmp_path / "r"), "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "resnet18-f37072fd.pth" in result.output and "--pretrained none" in result.output


def test_a_train_that_failed_at_start_is_run_again_by_the_fixed_command(tmp_path):
    split_packed(tmp_path / "P", size_px=16)
    common = ["--data", str(tmp_path / "P"), "--out", str(tmp_path / "r"), "--device", "cpu",
              "--epochs", "1", "--bootstrap", "20", "-q"]  # fmt: skip
    failed = runner.invoke(
        app, ["train", "--arch", "resnet18", "--pretrained", "imagenet", *common]
    )
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    fixed = runner.invoke(app, ["train", "--arch", "resnet18", "--pretrained", "none", *common])
    assert fixed.exit_code == 0, fixed.output
    assert "already holds a run" not in fixed.output
    again = runner.invoke(app, ["train", "--arch", "resnet18", "--pretrained", "none", *common])
    assert again.exit_code == 2 and "already holds a run" in again.output  # now it is a run
    code = runner.invoke(app, ["train", "--arch", "simple-cnn", "--data", str(tmp_path / "P"),
                               "--out", str(tmp_path / "P"), "--device", "cpu", "-q"])  # fmt: skip
    assert code.exit_code == 2 and "is the input" in code.output


def test_clf_train_option_defaults_are_the_configs():
    """The CLI states no default of its own: each comes from ClfConfig."""
    import inspect

    from cxrlab.clf.cli import train
    from cxrlab.clf.config import ClfConfig
    from cxrlab.utils.config import config_defaults

    defaults = config_defaults(ClfConfig)
    for name, parameter in inspect.signature(train).parameters.items():
        if name in defaults and name != "seeds":
            assert parameter.default == defaults[name], name
