import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.data.duplicates import near_distance_setting

README = Path(__file__).resolve().parents[2] / "README.md"


def test_null_and_negative_both_turn_near_duplicates_off():
    assert near_distance_setting(None) is None
    assert near_distance_setting(-1) is None
    assert near_distance_setting(0) == 0 and near_distance_setting(6) == 6
    with pytest.raises(ValueError, match="null or -1"):
        near_distance_setting("off")


def test_readme_and_cli_help_say_the_same_about_turning_it_off():
    comment = re.search(r"near_distance: 6 +# (.*)", README.read_text()).group(1)
    assert "null or -1: off" in comment
    result = CliRunner().invoke(app, ["data", "import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.replace("│", " ").split())
    assert "-1: off" in help_text and "null or -1" in help_text
