from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.study.bundled import bundled_specs, shorten, spec_description


def test_study_list_shows_each_description_on_one_line():
    result = CliRunner().invoke(app, ["study", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, path in bundled_specs().items():
        description = spec_description(path)
        assert description, f"bundled spec {name} has no description"
        (line,) = [line for line in lines if line.split(" ", 1)[0] == name]
        assert len(line) <= 80
        words = line.split()
        assert words[1] == description.split()[0]  # the description starts beside the name


def test_shorten_cuts_at_a_word_and_marks_it():
    assert shorten("short text", 20) == "short text"
    cut = shorten("a fairly long description of a study", 20)
    assert len(cut) <= 20 and cut.endswith("...") and cut == "a fairly long..."
