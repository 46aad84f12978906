"""`clf train --recipe transfer`: the recipe leave-site-out validation chose."""

from clf_factory import split_packed
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.clf.config import ClfConfig

runner = CliRunner()


def test_recipe_transfer_resolves_to_the_chosen_options(tmp_path):
    data = split_packed(tmp_path / "P", size_px=16)
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--recipe", "transfer", "--data", str(data), "--out", str(run),
         "--epochs", "1", "--batch-size", "8", "--bootstrap", "20", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = ClfConfig.read(run / "config.yaml")
    assert recorded.recipe == "transfer"
    assert recorded.arch == "simple-cnn"
    assert recorded.augment == "mild+acquisition"
    assert recorded.standardize == "zscore"
    assert recorded.balance == "oversample"
    assert recorded.pretrained == "auto" and recorded.init is None
    assert recorded.epochs == 1  # given: it wins over the recipe's 20
