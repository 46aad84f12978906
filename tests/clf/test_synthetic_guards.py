"""Images of one pipeline never silently meet a model of another; unverified synthetic
images are said in words."""

import json
import shutil

import numpy as np
import pytest
import yaml
from clf_factory import split_packed, synthetic_pngs
from typer.testing import CliRunner

from cxrlab.clf.cli import app
from cxrlab.clf.data import training_set
from cxrlab.data.provenance import PreprocessingMismatchError, write_provenance
from cxrlab.preprocess.transforms import PreprocessOptions

runner = CliRunner()


def _with_options(packed, **options):
    """Record preprocessing options in a test PACKED's meta.json, as `data preprocess` does."""
    meta = json.loads((packed / "meta.json").read_text())
    meta["options"] = PreprocessOptions(**options).as_dict()
    (packed / "meta.json").write_text(json.dumps(meta))
    return packed


def _learned_from(folder, **options):
    """A provenance file: a generator that learned another dataset made with ``options``."""
    learned = {"data": "/elsewhere/P", "ids": [], "phash": [], "pixel_phash": [],
               "options": PreprocessOptions(**options).as_dict()}  # fmt: skip
    write_provenance(folder, {"path": "/elsewhere/run"}, learned)
    return folder


def _one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_synthetic_images_of_a_run_without_clahe_never_train_a_clahe_classifier(tmp_path):
    packed = _with_options(split_packed(tmp_path / "P", {"train": 8, "val": 4}), size_px=32, equalize="clahe")  # fmt: skip
    synthetic = _learned_from(synthetic_pngs(tmp_path / "D"), size_px=32, equalize="none")
    with pytest.raises(PreprocessingMismatchError, match="equalization none vs clahe.*--allow-mismatch"):  # fmt: skip
        training_set(packed, synthetic=synthetic)
    notes = training_set(packed, synthetic=synthetic, allow_mismatch=True).notes
    assert len(notes) == 1 and "equalization none vs clahe" in notes[0]


def test_64_px_synthetic_images_are_not_silently_upscaled_into_a_100_px_classifier(tmp_path):
    from clf_factory import toy_images
    from PIL import Image

    packed = _with_options(split_packed(tmp_path / "P", {"train": 8, "val": 4}, size_px=100), size_px=100)  # fmt: skip
    synthetic = tmp_path / "D"
    synthetic.mkdir()
    for i, image in enumerate(toy_images(np.ones(4, dtype=int), 64, seed=11)):
        Image.fromarray(image).save(synthetic / f"synthetic_{i:06d}.png")
    _learned_from(synthetic, size_px=64)
    with pytest.raises(PreprocessingMismatchError, match=r"size \(px\) 64 vs 100"):
        training_set(packed, synthetic=synthetic)


@pytest.fixture(scope="module")
def unverified_run(tmp_path_factory):
    """A tiny run trained with synthetic PNGs that carry no provenance, accepted unverified."""
    root = tmp_path_factory.mktemp("unverified")
    packed = _with_options(split_packed(root / "P"), size_px=32)
    folder = synthetic_pngs(root / "D", provenance=False)
    args = ["train", "--arch", "simple-cnn", "--data", str(packed), "--out", str(root / "run"),
            "--epochs", "1", "--batch-size", "8", "--bootstrap", "20", "--device", "cpu", "-q",
            "--synthetic", str(folder)]  # fmt: skip
    refused = runner.invoke(app, args)
    result = runner.invoke(app, [*args, "--synthetic-unverified"])
    return root, refused, result


def test_synthetic_images_without_provenance_need_saying_and_the_run_says_it(unverified_run):
    root, refused, result = unverified_run
    _one_line_error(refused, "no provenance.json", "--synthetic-unverified")
    assert result.exit_code == 0, result.output
    report = (root / "run" / "report.txt").read_text()
    assert "synthetic images unverified (--synthetic-unverified)" in report
    assert "whether its generator learned validation or test images is not known" in report
    assert yaml.safe_load((root / "run" / "config.yaml").read_text())["synthetic_unverified"] is True  # fmt: skip
    summary = json.loads((root / "run" / "metrics.json").read_text())
    assert any("unverified" in note for note in summary["notes"])
    assert summary["preprocessing"]["size_px"] == 32 and summary["preprocessing"]["lungs"] == "none"  # fmt: skip


def test_clf_evaluate_refuses_a_full_image_model_on_lung_cropped_images(unverified_run, tmp_path):
    root, _, trained = unverified_run
    assert trained.exit_code == 0, trained.output
    cropped = shutil.copytree(root / "P", tmp_path / "P-lungs")
    _with_options(cropped, size_px=32, lungs="crop")
    args = ["evaluate", str(root / "run"), "--data", str(cropped), "--bootstrap", "20",
            "--device", "cpu", "--out", str(tmp_path / "eval"), "-q"]  # fmt: skip
    _one_line_error(runner.invoke(app, args), "lungs none vs crop", "--allow-mismatch")
    assert not (tmp_path / "eval").exists()
    result = runner.invoke(app, [*args, "--allow-mismatch"])
    assert result.exit_code == 0, result.output
    notes = json.loads((tmp_path / "eval" / "metrics.json").read_text())["notes"]
    assert any("lungs none vs crop" in note for note in notes)
