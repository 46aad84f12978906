"""`clf train --recipe NAME`: one table of option bundles; explicit options win."""

import dataclasses

import pytest
from clf_factory import split_packed
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.clf.config import ClfConfig
from cxrlab.clf.recipes import RECIPE_FIELDS, RECIPES, with_recipe
from cxrlab.errors import CxrlabError
from cxrlab.utils.config import config_defaults

runner = CliRunner()


def test_baseline_is_clf_train_as_it_is_and_every_recipe_is_a_valid_config():
    defaults = config_defaults(ClfConfig)
    assert RECIPES["baseline"] == {k: defaults[k] for k in RECIPES["baseline"]}
    fields = {f.name for f in dataclasses.fields(ClfConfig)}
    assert set(RECIPE_FIELDS) <= fields
    for name, options in RECIPES.items():
        assert set(options) <= set(RECIPE_FIELDS), name
        values = with_recipe(name, {"arch": "simple-cnn", "data": "d", "out": "o"}, set())
        assert ClfConfig(**values).recipe == name


def test_given_options_win_over_the_recipe():
    values = {"arch": "resnet18", "data": "d", "out": "o", "augment": "mild", "epochs": 3}
    chosen = with_recipe("baseline", values, given={"augment"})
    assert chosen["augment"] == "mild" and chosen["epochs"] == 50 and chosen["recipe"] == "baseline"
    assert with_recipe(None, values, set()) == values
    with pytest.raises(CxrlabError, match="choose one of baseline"):
        with_recipe("transfer-someday", values, set())
    with pytest.raises(CxrlabError, match="--recipe"):
        ClfConfig(arch="resnet18", data="d", out="o", recipe="nope")


def test_clf_train_recipe_sets_what_was_not_given_and_the_run_records_it(tmp_path, monkeypatch):
    monkeypatch.setitem(
        RECIPES,
        "trial",
        {"arch": "simple-cnn", "augment": "acquisition", "standardize": "zscore", "epochs": 1},
    )
    data = split_packed(tmp_path / "P", size_px=16)
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--recipe", "trial", "--data", str(data), "--out", str(run),
         "--standardize", "none", "--batch-size", "8", "--bootstrap", "20", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = ClfConfig.read(run / "config.yaml")
    assert recorded.recipe == "trial" and recorded.arch == "simple-cnn"
    assert recorded.augment == "acquisition" and recorded.epochs == 1
    assert recorded.standardize == "none"  # given on the command line: it wins
    assert recorded.batch_size == 8


def test_clf_train_without_arch_or_with_an_unknown_recipe_is_a_one_line_error(tmp_path):
    common = ["--data", str(tmp_path / "P"), "--out", str(tmp_path / "run"), "--device", "cpu"]
    result = runner.invoke(app, ["train", *common])
    assert result.exit_code == 2 and "--arch is required" in result.output
    result = runner.invoke(app, ["train", "--arch", "simple-cnn", "--recipe", "nope", *common])
    assert result.exit_code == 2 and "--recipe 'nope' is not known" in result.output
    assert not (tmp_path / "run").exists()


def test_a_config_naming_a_recipe_it_does_not_hold_is_refused(monkeypatch):
    """ClfConfig(recipe=...) alone (a study spec, a script) would record an unused recipe."""
    monkeypatch.setitem(RECIPES, "trial", {"augment": "acquisition", "epochs": 50})
    with pytest.raises(CxrlabError, match="not applied.*augment='acquisition'"):
        ClfConfig(arch="resnet18", data="d", out="o", recipe="trial")
    applied = with_recipe("trial", {"arch": "resnet18", "data": "d", "out": "o"}, set())
    assert ClfConfig(**applied).augment == "acquisition"
    partly = with_recipe("trial", {"arch": "resnet18", "data": "d", "out": "o", "epochs": 3}, {"epochs"})  # fmt: skip
    assert ClfConfig(**partly).epochs == 3
