"""Every error reaches the terminal in one form: one red ``error: ...`` line, exit code 2."""

import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from factory import make_packed

runner = CliRunner()


@pytest.mark.parametrize(
    ("arguments", "names"),
    [
        (["data", "stats", "--bogus"], "--bogus"),  # click: unknown option
        (["clf", "train", "--epochs", "two"], "--epochs"),  # click: bad value
        (["gen", "sample"], "run"),  # click: missing argument
        (["data", "import", "nope", "x", "--out", "y"], "FORMAT"),  # click: bad choice
        (["data", "split", "x", "--ratios", "a,b"], "--ratios"),  # cxrlab's list parser
        (["data", "stats", "no/such/folder"], "no/such/folder"),  # cxrlab's own error
    ],
)
def test_usage_errors_and_cxrlab_errors_print_one_lowercase_error_line(arguments, names):
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert names in lines[0] and "Error" not in result.output


def test_metrics_refuses_a_file_for_a_folder_before_looking_for_weights(tmp_path, monkeypatch):
    packed = make_packed(tmp_path / "P")

    def no_weights(*args, **kwargs):
        raise AssertionError("looked for the extractor's weights before checking the inputs")

    monkeypatch.setattr("cxrlab.metrics.extractors.weights.locate_weights", no_weights)
    for real, fake in ((packed / "images.npy", packed), (packed, packed / "images.npy")):
        result = runner.invoke(
            app, ["metrics", str(real), str(fake), "--out", str(tmp_path / "m.json")]
        )
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and "is a file" in result.output
        assert f"its folder {packed}" in result.output
