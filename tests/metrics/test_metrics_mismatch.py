"""`metrics` compares images of one pipeline only, unless told (--allow-mismatch)."""

import json

import numpy as np
import pytest
import typer
from metric_factory import smooth_images, write_packed
from PIL import Image
from typer.testing import CliRunner

from cxrlab.data.provenance import PreprocessingMismatchError, write_provenance
from cxrlab.metrics.api import compute_metrics
from cxrlab.metrics.cli import metrics_command
from cxrlab.preprocess.transforms import PreprocessOptions

runner = CliRunner()


def app() -> typer.Typer:
    application = typer.Typer()
    application.command("metrics")(metrics_command)
    application.command("other")(lambda: None)  # keeps "metrics" a subcommand
    return application


def _packed(path, size_px, **options):
    images = (smooth_images(12, size_px, seed=3) * 255).round().astype(np.uint8)
    packed = write_packed(path, images, ["train"] * 6 + ["test"] * 6)
    meta = json.loads((packed / "meta.json").read_text())
    meta["options"] = PreprocessOptions(size_px=size_px, **options).as_dict()
    (packed / "meta.json").write_text(json.dumps(meta))
    return packed


def _pngs(folder, size_px):
    folder.mkdir()
    for i, image in enumerate((smooth_images(8, size_px, seed=4) * 255).round().astype(np.uint8)):
        Image.fromarray(image).save(folder / f"synthetic_{i:06d}.png")
    return folder


def test_metrics_refuse_100_px_real_images_against_64_px_generated_ones(tmp_path):
    real = _packed(tmp_path / "P100", 100)
    fake = _pngs(tmp_path / "S64", 64)
    out = tmp_path / "m.json"
    args = ["metrics", str(real), str(fake), "--metrics", "swd", "--out", str(out), "-q"]
    result = runner.invoke(app(), args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "size (px) 100 vs 64" in lines[0] and "--allow-mismatch" in lines[0]
    assert not out.exists()
    result = runner.invoke(app(), [*args, "--allow-mismatch"])
    assert result.exit_code == 0, result.output
    assert "preprocessing mismatch allowed" in result.output
    recorded = json.loads(out.read_text())["preprocessing_mismatch"]
    assert len(recorded) == 1 and "size (px) 100 vs 64" in recorded[0]


def test_generated_images_of_a_generator_trained_without_clahe_meet_no_clahe_reference(tmp_path):
    """The generator's options come from the provenance its images carry."""
    real = _packed(tmp_path / "P", 32, equalize="clahe")
    fake = _pngs(tmp_path / "S", 32)
    learned = {"data": "/elsewhere/P", "ids": [], "phash": [], "pixel_phash": [],
               "options": PreprocessOptions(size_px=32).as_dict()}  # fmt: skip
    write_provenance(fake, {"path": "/elsewhere/run"}, learned)
    with pytest.raises(PreprocessingMismatchError, match="equalization clahe vs none"):
        compute_metrics(real, fake, "swd")
    same = _packed(tmp_path / "Q", 32)  # no CLAHE: the same pipeline, nothing to say
    assert "preprocessing_mismatch" not in compute_metrics(same, fake, "swd").info
