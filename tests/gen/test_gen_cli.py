"""`gen train` as a user meets it: options checked before the first step, a resume that
needs only --out, and Ctrl-C that says how to go on."""

import pytest
import torch
from typer.testing import CliRunner

from cxrlab.cli import app
from factory import make_packed

runner = CliRunner()


def _train_args(tmp_path, *extra):
    args = ["gen", "train", "--model", "gan", "--data", tmp_path / "P", "--size", 32]
    args += ["--out", tmp_path / "run", "--batch-size", 4, "--save-interval", 2]
    args += ["--sample-interval", 2, "--device", "cpu", "-q", *extra]
    return [str(a) for a in args]


def _steps_saved(run):
    return sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))


@pytest.mark.parametrize(
    "metrics, words",
    [("swd,fdi", "unknown metric(s) fdi"), ("fid", "needs its weights file")],
)
def test_gen_train_checks_its_metrics_before_the_first_step(tmp_path, monkeypatch, metrics, words):
    monkeypatch.setenv("CXRLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("CXRLAB_WEIGHTS_DIR", raising=False)
    make_packed(tmp_path / "P")
    result = runner.invoke(app, _train_args(tmp_path, "--steps", 4, "--metrics", metrics))
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() or not _steps_saved(run)


def test_a_resume_needs_only_out_and_may_change_metrics_and_steps(tmp_path):
    make_packed(tmp_path / "P")
    result = runner.invoke(app, _train_args(tmp_path, "--steps", 2, "--lr-g", "0.0003"))
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    args = ["gen", "train", "--out", str(run), "--resume", "--steps", "4", "-q"]
    result = runner.invoke(app, [*args, "--metrics", "swd", "--metrics-n", "8"])
    assert result.exit_code == 0, result.output
    assert _steps_saved(run) == [2, 4]
    recorded = (run / "config.yaml").read_text()
    assert "lr_g: 0.0003" in recorded and "model: gan" in recorded  # the run's own settings
    # an option that changes the maths is still refused on resume, naming it
    result = runner.invoke(app, [*args, "--steps", "6", "--lr-g", "0.001"])
    assert result.exit_code == 2 and "lr_g" in result.output, result.output
    # without --resume, a new run still needs --model and --data
    result = runner.invoke(app, ["gen", "train", "--out", str(tmp_path / "new"), "-q"])
    assert result.exit_code == 2 and "--model is required" in result.output, result.output


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch):
    import cxrlab.gen.train_api as train_api

    make_packed(tmp_path / "P")
    run = tmp_path / "run"

    def interrupted(config, **_):
        (run / "checkpoints").mkdir(parents=True)
        torch.save({"step": 2}, run / "checkpoints" / "step_000002.pt")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_api, "train_with_metrics", interrupted)
    result = runner.invoke(app, _train_args(tmp_path, "--steps", 4))
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "step_000002.pt" in result.output
    assert f"cxrlab gen train --out {run} --resume" in result.output
    assert "Traceback" not in result.output
