"""``clf predict``: new image files get the run's own preprocessing, then every seed."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from clf_factory import class_folders
from PIL import Image
from typer.testing import CliRunner

from cxrlab.clf.data import ImagePart, ImageSet
from cxrlab.clf.predict import load_trained, predict
from cxrlab.clf.unlabelled import image_files, preprocess_files, run_preprocessing
from cxrlab.cli import app
from cxrlab.data.api import import_source, split_dataset
from cxrlab.data.packed import open_packed, preprocess_dataset
from cxrlab.preprocess.transforms import PreprocessOptions
from cxrlab.utils.device import resolve_device

runner = CliRunner()
OPTIONS = PreprocessOptions(size_px=32, crop_top=0.1, equalize="hist", gamma=0.8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Image folders, a PACKED made with unusual options, a 2-seed run trained on it."""
    root = tmp_path_factory.mktemp("predict")
    images = class_folders(root / "images", n=10, size_px=40)
    import_source("folders", images, root / "X", near_distance=None, progress=False)
    split_dataset(root / "X", (0.6, 0.2, 0.2), seed=0)
    preprocess_dataset(root / "X", root / "P", OPTIONS, progress=False)
    result = runner.invoke(
        app,
        ["clf", "train", "--arch", "simple-cnn", "--data", str(root / "P"), "--out",
         str(root / "run"), "--epochs", "1", "--batch-size", "8", "--seeds", "0", "1",
         "--bootstrap", "20", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root


def test_new_files_get_exactly_the_pixels_data_preprocess_gave_the_training_images(trained):
    options, described = run_preprocessing(trained / "run")
    assert (options.size_px, options.crop_top, options.equalize, options.gamma) == (
        32, 0.1, "hist", 0.8
    )  # fmt: skip
    assert "equalization hist" in described and "CLAHE" not in described
    packed = open_packed(trained / "P")
    files = image_files([trained / "images"])
    assert len(files) == 20
    pixels = preprocess_files(files, options, progress=False)
    row_of = {path: i for i, path in enumerate(packed.manifest["path"])}
    for path, image in zip(files, pixels, strict=True):
        assert np.array_equal(image, packed.images[row_of[str(path.resolve())]]), path


def test_predict_writes_every_seed_and_the_mean_with_the_validation_threshold(trained, tmp_path):
    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app, ["clf", "predict", str(trained / "run"), str(trained / "images"), "--out", str(out),
              "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "probability", "threshold", "prediction",
                                   "probability_seed_0", "probability_seed_1"]  # fmt: skip
    assert len(table) == 20 and "20 images" in result.output
    # the same numbers as the model on the PACKED's own rows of those images
    packed = open_packed(trained / "P")
    row_of = {path: i for i, path in enumerate(packed.manifest["path"])}
    rows = np.array([row_of[str(Path(p).resolve())] for p in table["path"]])
    frame = pd.DataFrame({"id": table["path"], "patient_id": table["path"], "source": "t",
                          "split": "", "covid": 0, "origin": "real", "part": 0, "row": rows})  # fmt: skip
    device = resolve_device("cpu")
    thresholds = []
    for seed in (0, 1):
        model, state = load_trained(trained / "run" / f"seed_{seed}", device)
        images = ImageSet([ImagePart(packed.images, rows)], frame, 32)
        expected, _ = predict(model, images, device=device)
        assert table[f"probability_seed_{seed}"].to_numpy() == pytest.approx(expected, abs=1e-5)
        thresholds.append(state["threshold"])
    assert table["threshold"].iloc[0] == pytest.approx(np.mean(thresholds), abs=1e-5)
    called = table["probability"] >= table["threshold"]
    assert (table["prediction"] == np.where(called, "covid", "other")).all()


def test_grad_cam_is_optional(trained, tmp_path):
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app, ["clf", "predict", str(trained / "run"), str(trained / "images" / "COVID"),
              "--out", str(out), "--explain", "3", "--device", "cpu", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p-gradcam.png").mode == "RGB"
    assert "Grad-CAM of seed 0" in result.output


def test_unreadable_images_missing_paths_and_lung_runs_are_refused_before_predicting(
    trained, tmp_path
):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = next((trained / "images" / "COVID").iterdir())
    cases = [
        ([str(good), str(text)], "cannot read 1 of 2 images"),
        ([str(tmp_path / "missing.png")], "does not exist"),
        ([str(tmp_path / "empty")], "holds no image files"),
    ]
    (tmp_path / "empty").mkdir()
    for images, message in cases:
        out = tmp_path / "x.csv"
        result = runner.invoke(app, ["clf", "predict", str(trained / "run"), *images,
                                     "--out", str(out), "--device", "cpu", "-q"])  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output
        assert result.output.startswith("error: ") and not out.exists()
    # a run that learned from lung-cropped images: a new image has no lung mask
    lungs = tmp_path / "lungs"
    lungs.mkdir()
    for name in ("config.yaml",):
        (lungs / name).write_text((trained / "run" / name).read_text())
    (lungs / "seed_0").symlink_to(trained / "run" / "seed_0")
    (lungs / "metrics.json").write_text(
        '{"preprocessing": {"size_px": 32, "lungs": "crop", "lung_margin": 0.05}}'
    )
    result = runner.invoke(app, ["clf", "predict", str(lungs), str(good), "--out",
                                 str(tmp_path / "l.csv")])  # fmt: skip
    assert result.exit_code == 2 and "--lungs crop" in result.output
    assert "seg predict" in result.output
    # a run whose preprocessing is unknown (no record, training PACKED gone)
    (lungs / "metrics.json").write_text("{}")
    config = yaml.safe_load((lungs / "config.yaml").read_text())
    (lungs / "config.yaml").write_text(yaml.safe_dump({**config, "data": str(tmp_path / "gone")}))
    result = runner.invoke(app, ["clf", "predict", str(lungs), str(good), "--out",
                                 str(tmp_path / "l.csv")])  # fmt: skip
    assert result.exit_code == 2 and "cannot tell how the training images" in result.output
