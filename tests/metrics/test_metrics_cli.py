import json

import numpy as np
import typer
from metric_factory import smooth_images, write_packed
from PIL import Image
from typer.testing import CliRunner

from cxrlab.metrics.cli import metrics_command

runner = CliRunner()


def app() -> typer.Typer:
    application = typer.Typer()
    application.command("metrics")(metrics_command)
    application.command("other")(lambda: None)  # keeps "metrics" a subcommand
    return application


def make_inputs(tmp_path):
    images = (smooth_images(30, 32, seed=20) * 255).round().astype(np.uint8)
    packed = write_packed(tmp_path / "P", images, ["train"] * 20 + ["test"] * 10)
    samples = tmp_path / "samples"
    samples.mkdir()
    for i, image in enumerate((smooth_images(12, 32, seed=21) * 255).round().astype(np.uint8)):
        Image.fromarray(image).save(samples / f"{i:03d}.png")
    Image.fromarray(images[0]).save(samples / "copy.png")  # a training image, copied
    return packed, samples


def test_offline_metrics_write_json_grid_and_table(tmp_path):
    packed, samples = make_inputs(tmp_path)
    out = tmp_path / "run" / "metrics.json"
    result = runner.invoke(
        app(),
        ["metrics", str(packed), str(samples), "--metrics", "swd,diversity,memorization",
         "--train", str(packed), "--real-split", "test", "--out", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_real"] == 10 and report["n_fake"] == 13
    assert set(report["metrics"]) >= {"swd", "ms_ssim_fake", "ms_ssim_real", "memorization_share"}
    assert report["metrics"]["memorization_share"] >= 1 / 13
    assert (tmp_path / "run" / "metrics-memorization.png").is_file()
    assert "memorization_share" in result.output and "lower is better" in result.output


def test_network_metric_without_weights_fails_fast_naming_the_file(tmp_path):
    packed, samples = make_inputs(tmp_path)
    result = runner.invoke(
        app(), ["metrics", str(packed), str(samples), "--features", "inception", "--metrics", "fid"]
    )
    assert result.exit_code == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in result.output
    assert "https://github.com/toshas/torch-fidelity/releases" in result.output
    assert not (tmp_path / "metrics.json").exists()
