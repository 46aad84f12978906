"""Study specs: grid expansion, and a clear error for every malformed field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cxrlab.study.bundled import bundled_specs, resolve_spec
from cxrlab.study.runner import StudyRunner
from cxrlab.study.spec import SpecError, load_spec

BASE = {
    "name": "t",
    "data": {"sources": [{"format": "sample"}], "split": {"seed": 1}},
    "preprocess": {"size": [32, 64], "equalize": ["none", "hist", "clahe"]},
    "generators": {
        "runs": [{"name": "a", "model": "dcgan"}, "vae"],
        "steps": 10,
        "label": "positive",
    },
    "synthetic": {"amounts": [0, 5, 10]},
    "classifier": {"arch": "simple-cnn", "augment": ["none", "mild"], "epochs": 1},
}


def write(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_grid_expands_every_axis(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    names = [v.name for v in spec.variants()]
    assert names == [
        "32px-none",
        "32px-hist",
        "32px-clahe",
        "64px-none",
        "64px-hist",
        "64px-clahe",
    ]
    assert spec.variants()[4].options().equalize == "hist"
    assert spec.variants()[4].options().size_px == 64
    grid = spec.classifier_grid()
    assert len(grid) == 2 * 3
    assert {(g["augment"], g["synthetic"]) for g in grid} == {
        (a, n) for a in ("none", "mild") for n in (0, 5, 10)
    }
    assert [g.name for g in spec.generators] == ["a", "vae"]
    assert spec.gen_settings == {"steps": 10, "label": "positive"}
    # data + 6 variants x (1 preprocess + 2 generators + 2 synthetic sets + 6 classifiers)
    assert StudyRunner(spec, tmp_path / "s").planned_cells() == 1 + 6 * (1 + 2 + 2 + 6)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"extra": 1}, "unknown field(s) extra"),
        ({"data": {}}, "data"),
        ({"data": {"sources": []}}, "data.sources"),
        ({"preprocess": {"size": 64, "equalize": "sharpen"}}, "equalize"),
        ({"preprocess": {"size": 64, "colour": 1}}, "colour"),
        ({"generators": {"runs": [{"name": "a"}]}}, "model"),
        ({"generators": {"runs": ["dcgan", "dcgan"]}}, "named 'dcgan'"),
        ({"generators": {"runs": ["dcgan"], "lr": 1}}, "lr"),
        ({"generators": {"runs": ["stylegan"]}}, "unknown model 'stylegan'"),
        ({"generators": {"runs": ["dcgan"], "ema": 1.5}}, "--ema"),
        ({"synthetic": {"amounts": [0, 5], "from": "stylegan"}}, "stylegan"),
        ({"synthetic": {"amounts": [-1]}}, ">= 0"),
        ({"classifier": {"arch": "vit"}}, "vit"),
        ({"classifier": {"epochs": 0}}, "epochs"),
        ({"classifier": {"data": "elsewhere"}}, "data"),
    ],
)
def test_malformed_specs_name_the_file_and_field(tmp_path, change, words):
    spec = {**BASE, **change}
    path = write(tmp_path, spec)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_synthetic_images_need_a_generator(tmp_path):
    spec = {**BASE, "generators": None}
    with pytest.raises(SpecError, match="no generators"):
        load_spec(write(tmp_path, spec))
    spec["synthetic"] = {"amounts": [0]}
    assert load_spec(write(tmp_path, spec)).generators == []


def test_not_yaml_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nothing.yaml")


def test_bundled_specs_load_and_resolve_by_name():
    specs = bundled_specs()
    assert {"demo", "thesis", "preprocessing"} <= set(specs)
    for path in specs.values():
        load_spec(path)
    assert resolve_spec("demo") == specs["demo"]
    thesis = load_spec(specs["thesis"])
    assert len(thesis.generators) * len(thesis.gen_augment) * len(thesis.variants()) == 6 * 2 * 2
    assert thesis.synthetic_amounts == [0, 312]
    preprocessing = load_spec(specs["preprocessing"])
    assert len(preprocessing.variants()) == 4 * 3
    # 4 augmentations x (real only, + 312 synthetic, + 312 real positives oversampled)
    assert len(preprocessing.classifier_grid()) == 4 * 3
    assert all(load_spec(p).synthetic_control for p in specs.values())


def test_every_generator_measures_what_its_checks_read_whatever_the_spec_lists(tmp_path):
    # memorization used to be measured only when a spec listed it, so a copying
    # generator passed for lack of a value (demo, preprocessing and thesis listed none)
    listed = {**BASE, "generators": {**BASE["generators"], "metrics": ["swd"]}}
    for raw in (BASE, listed):
        spec = load_spec(write(tmp_path, raw))
        for generator in spec.generators:
            assert {"memorization", "diversity"} <= set(generator.settings["metrics"])
    off = {**BASE, "generators": {**BASE["generators"], "memorization_limit": None}}
    for generator in load_spec(write(tmp_path, off)).generators:
        assert "memorization" not in generator.settings["metrics"]
    for name, path in bundled_specs().items():
        spec = load_spec(path)
        assert spec.memorization_limit is not None, name
        for generator in spec.generators:
            assert "memorization" in generator.settings["metrics"], (name, generator.name)


def test_the_evaluation_mode_is_checked_with_the_spec(tmp_path):
    assert load_spec(write(tmp_path, BASE)).evaluation == "split"
    real_only = {
        **BASE,
        "evaluation": "leave-site-out",
        "synthetic": {"amounts": [0]},
        "classifier": {**BASE["classifier"], "folds": 3},
    }
    spec = load_spec(write(tmp_path, real_only))
    assert (spec.evaluation, spec.folds) == ("leave-site-out", 3)
    assert "folds" not in spec.classifier_settings  # the ordinary run has none
    problems = [
        ({"evaluation": "k-fold"}, "evaluation must be one of split, leave-site-out"),
        ({"classifier": {**BASE["classifier"], "folds": 3}}, "folds needs evaluation"),
        ({**real_only, "classifier": {**BASE["classifier"], "folds": 1}}, "--folds must be"),
        ({**real_only, "classifier": {**BASE["classifier"], "cv": "sites"}}, "unknown field"),
    ]
    for change, words in problems:
        with pytest.raises(SpecError, match=words):
            load_spec(write(tmp_path, {**BASE, **change}))
