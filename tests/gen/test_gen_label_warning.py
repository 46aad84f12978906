"""gen train warns when an unconditional generator would learn both classes as one."""

import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.gen.cli import unconditional_on_both_classes
from cxrlab.gen.config import GenConfig
from factory import make_packed

runner = CliRunner()


@pytest.mark.parametrize(
    ("model", "label", "warned"),
    [("gan", None, True), ("dcgan", None, True), ("vae", None, True),
     ("gan", "positive", False), ("cgan", None, False), ("ddpm", None, False)],
)  # fmt: skip
def test_only_unconditional_models_without_a_label_on_two_classes_are_warned(
    tmp_path, model, label, warned
):
    make_packed(tmp_path / "P")  # 12 train rows, half COVID-19
    config = GenConfig(model=model, data=str(tmp_path / "P"), out=str(tmp_path / "G"),
                       size_px=32, label=label)  # fmt: skip
    warnings = unconditional_on_both_classes(config)
    assert bool(warnings) == warned
    if warned:
        assert "6 COVID-19 and 6 other images" in warnings[0] and "--label" in warnings[0]


def test_one_class_data_is_not_warned(tmp_path):
    make_packed(tmp_path / "P")
    config = GenConfig(model="gan", data=str(tmp_path / "P"), out=str(tmp_path / "G"),
                       size_px=32, split="train")  # fmt: skip
    assert unconditional_on_both_classes(config)  # both classes in train
    import pandas as pd

    manifest = pd.read_csv(tmp_path / "P" / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.assign(covid="1").to_csv(tmp_path / "P" / "manifest.csv", index=False)
    assert unconditional_on_both_classes(config) == []


def test_gen_train_prints_the_warning(tmp_path):
    make_packed(tmp_path / "P")
    args = ["gen", "train", "--model", "gan", "--data", tmp_path / "P", "--size", 32,
            "--out", tmp_path / "run", "--batch-size", 4, "--steps", 1, "--device", "cpu", "-q"]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "warning: --model gan is unconditional and no --label was given" in result.output
