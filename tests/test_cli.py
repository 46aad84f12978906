import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cxrlab.cli import app
from factory import make_bad_input_folders

runner = CliRunner()


def test_help_lists_command_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output and "demo" in result.output


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "cxrlab", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("cxrlab ")


def test_import_split_stats_end_to_end(tmp_path):
    root = make_bad_input_folders(tmp_path / "src")
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            "folders",
            str(root),
            "--out",
            str(out),
            "-q",
            "--max-pixels",
            "4000000",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "15 inputs = 9 accepted + 6 rejected" in result.output
    result = runner.invoke(
        app, ["data", "split", str(out), "--ratios", "0.5", "0.25", "0.25", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "stats", str(out), "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["images"] == 9
    assert stats["rejected_by_reason"]["unreadable"] == 4
    for figure in ("class_balance.png", "sizes.png", "modes.png"):
        assert (tmp_path / "st" / figure).stat().st_size > 1000


def test_errors_name_the_file_without_traceback(tmp_path):
    result = runner.invoke(app, ["data", "split", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere" in result.output and "Traceback" not in result.output


def test_repair_covidx_cli(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("COVID 1 COVID(1).png positive sirm\n1 a.png negative cohen\n")
    result = runner.invoke(
        app, ["data", "repair-covidx", str(source), "--out", str(tmp_path / "o.txt")]
    )
    assert result.exit_code == 0, result.output
    assert "2 lines in and out, 1 repaired" in result.output
    assert (tmp_path / "o.txt").read_text().splitlines()[0] == "COVID_1 COVID(1).png positive sirm"


def test_preprocess_augment_show_cli(tmp_path):
    dataset = tmp_path / "ds"
    assert (
        runner.invoke(app, ["data", "import", "sample", "--out", str(dataset), "-q"]).exit_code == 0
    )
    assert runner.invoke(app, ["data", "split", str(dataset)]).exit_code == 0
    packed = tmp_path / "P"
    args = [
        "data",
        "preprocess",
        str(dataset),
        "--size",
        "32",
        "--equalize",
        "clahe",
        "--out",
        str(packed),
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "packed 150 images, shape (150, 32, 32)" in result.output, (
        result.output
    )
    result = runner.invoke(app, args)
    assert "identical packed dataset already exists" in result.output
    result = runner.invoke(
        app,
        [
            "data",
            "augment",
            str(packed),
            "--preset",
            "anatomical",
            "--per-image",
            "2",
            "--out",
            str(tmp_path / "P2"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "data",
            "show",
            str(tmp_path / "P2"),
            "--augment",
            "mild",
            "--n",
            "9",
            "--out",
            str(tmp_path / "g.png"),
        ],
    )
    assert result.exit_code == 0 and (tmp_path / "g.png").is_file()
    result = runner.invoke(
        app, ["data", "preprocess", str(dataset), "--size", "8", "--out", str(tmp_path / "bad")]
    )
    assert result.exit_code == 2 and "--size must be 32..1024" in result.output


# ------------------------------------------------ nothing a user does by mistake loses data


def _snapshot(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A split sample dataset X, its PACKED P, an augmented P2, a label file, a spec, stats."""
    root = tmp_path_factory.mktemp("ws")
    invoke = lambda *args: runner.invoke(app, [str(a) for a in args])  # noqa: E731
    assert invoke("data", "import", "sample", "--out", root / "X", "-q").exit_code == 0
    assert invoke("data", "split", root / "X").exit_code == 0
    assert (
        invoke(
            "data", "preprocess", root / "X", "--size", "32", "--out", root / "P", "-q"
        ).exit_code
        == 0
    )
    assert (
        invoke(
            "data", "augment", root / "P", "--per-image", "1", "--out", root / "P2", "-q"
        ).exit_code
        == 0
    )
    assert invoke("data", "stats", root / "X", "--out", root / "S").exit_code == 0
    make_bad_input_folders(root / "SRC")
    (root / "labels.txt").write_text("COVID 1 COVID(1).png positive sirm\n1 a.png negative cohen\n")
    (root / "other.txt").write_text("my notes\n")
    (root / "spec.yaml").write_text("sources:\n  - format: sample\n")
    return root


def _guard_cases(ws):
    return [
        # (command, the folder/file the message must name)
        (["data", "import", "folders", ws / "SRC", "--out", ws / "SRC"], ws / "SRC"),
        (["data", "import", "folders", ws / "SRC", "--out", ws / "P"], ws / "P"),
        (["data", "import", "sample", "--out", ws / "X"], ws / "X"),  # a split dataset
        (["data", "build", ws / "spec.yaml", "--out", ws / "spec.yaml"], ws / "spec.yaml"),
        (["data", "build", ws / "spec.yaml", "--out", ws / "P"], ws / "P"),
        (
            ["data", "repair-covidx", ws / "labels.txt", "--out", ws / "labels.txt"],
            ws / "labels.txt",
        ),
        (["data", "repair-covidx", ws / "labels.txt", "--out", ws / "P"], ws / "P"),
        (["data", "repair-covidx", ws / "labels.txt", "--out", ws / "other.txt"], ws / "other.txt"),
        (["data", "preprocess", ws / "X", "--size", "32", "--out", ws / "X"], ws / "X"),
        (["data", "preprocess", ws / "X", "--size", "32", "--out", ws / "S"], ws / "S"),
        (
            [
                "data",
                "preprocess",
                ws / "X",
                "--size",
                "32",
                "--equalize",
                "clahe",
                "--out",
                ws / "P",
            ],
            ws / "P",
        ),
        (["data", "augment", ws / "P", "--out", ws / "P"], ws / "P"),
        (["data", "augment", ws / "P", "--out", ws / "X"], ws / "X"),
        (["data", "augment", ws / "P", "--per-image", "3", "--out", ws / "P2"], ws / "P2"),
        (["data", "show", ws / "P", "--out", ws / "P"], ws / "P"),
        (["data", "show", ws / "P", "--out", ws / "X"], ws / "X"),
        (["data", "show", ws / "P", "--out", ws / "X" / "manifest.csv"], ws / "X"),
        (["data", "show", ws / "P", "--out", ws / "other.txt"], ws / "other.txt"),
        (["metrics", ws / "P", ws / "P2", "--out", ws / "P" / "images.npy"], ws / "P"),
        (["metrics", ws / "P", ws / "P2", "--out", ws / "X" / "manifest.csv"], ws / "X"),
        (["metrics", ws / "P", ws / "P2", "--out", ws / "S"], ws / "S"),
        (["metrics", ws / "P", ws / "nothing", "--out", ws / "m.json"], ws / "nothing"),
        (["data", "stats", ws / "X", "--out", ws / "X"], ws / "X"),
        (["data", "stats", ws / "X", "--out", ws / "P"], ws / "P"),
    ]


def test_no_writing_data_command_replaces_its_input_or_another_kind(workspace):
    before = _snapshot(workspace)
    for args, named in _guard_cases(workspace):
        result = runner.invoke(app, [str(a) for a in args] + ["-q"])
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and str(named) in result.output, result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert _snapshot(workspace) == before, args


def test_force_replaces_another_kind_but_never_an_input(tmp_path):
    root = make_bad_input_folders(tmp_path / "SRC")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.docx").write_text("x")
    args = ["data", "import", "folders", str(root), "-q", "--max-pixels", "4000000"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "mine")]).exit_code == 2
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "mine"), "--force"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "mine" / "notes.docx").exists()
    result = runner.invoke(app, [*args, "--out", str(root / "COVID"), "--force"])
    assert result.exit_code == 2 and "is inside the input" in result.output


def test_force_never_lets_a_grid_replace_a_datasets_manifest(workspace, tmp_path):
    import shutil

    other = tmp_path / "X"
    shutil.copytree(workspace / "X", other)
    manifest = (other / "manifest.csv").read_bytes()
    args = ["data", "show", str(workspace / "P"), "--n", "4", "-q"]
    result = runner.invoke(app, [*args, "--out", str(other / "manifest.csv"), "--force"])
    assert result.exit_code == 2 and "would break the dataset" in result.output, result.output
    assert "--force" not in result.output.split("error:")[-1]
    assert (other / "manifest.csv").read_bytes() == manifest
    assert runner.invoke(app, ["data", "stats", str(other), "-q"]).exit_code == 0


def test_a_packed_whose_manifest_changed_is_not_identical(workspace, tmp_path):
    import shutil

    packed = tmp_path / "P"
    shutil.copytree(workspace / "P", packed)
    args = ["data", "preprocess", str(workspace / "X"), "--size", "32", "--out", str(packed), "-q"]
    assert "identical packed dataset already exists" in runner.invoke(app, args).output
    manifest = (packed / "manifest.csv").read_text()
    (packed / "manifest.csv").write_text(manifest.replace(",train,", ",test,", 1))
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "manifest.csv changed after packing" in result.output
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0 and "packed 150 images" in result.output
    assert (packed / "manifest.csv").read_text() == manifest


def test_augmenting_an_augmented_packed_augments_originals_only(workspace, tmp_path):
    from cxrlab.data.packed import open_packed

    out = tmp_path / "P3"
    result = runner.invoke(
        app, ["data", "augment", str(workspace / "P2"), "--per-image", "2", "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    first, second = open_packed(workspace / "P2").manifest, open_packed(out).manifest
    n_train = int(((first["augmented"] == "0") & (first["split"] == "train")).sum())
    copies = second[second["augmented"] == "1"]
    assert len(copies) == n_train * (1 + 2)  # P2's copies carried, 2 new per original
    assert not copies["parent_id"].str.contains("#aug").any()
    assert (
        f"{(first['augmented'] == '0').sum()} originals + {len(copies)} augmented" in result.output
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["data", "repair-covidx", "nope.txt", "--out", "x.txt"], "nope.txt not found"),
        (["data", "show", "{P}", "--n", "0", "--out", "{tmp}/g.png"], "--n must be at least 1"),
        (
            ["data", "import", "folders", "{SRC}", "--patient-regex", r"p\d+", "--out", "{tmp}/d"],
            "has no group",
        ),
        (
            ["data", "import", "folders", "{SRC}", "--patient-regex", "(", "--out", "{tmp}/d"],
            "is not a regular expression",
        ),
        (
            [
                "data",
                "import",
                "folders",
                "{SRC}",
                "--patient-regex",
                r"^(zzz\d+)",
                "--out",
                "{tmp}/d",
            ],
            "matched none of the 15",
        ),
    ],
)
def test_mistakes_are_one_line_errors_not_tracebacks(workspace, tmp_path, args, words):
    fill = {"P": workspace / "P", "SRC": workspace / "SRC", "tmp": tmp_path}
    result = runner.invoke(app, [a.format(**fill) for a in args] + ["-q"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and words in result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )


def test_a_regex_matching_some_files_says_how_many(workspace, tmp_path):
    result = runner.invoke(
        app,
        ["data", "import", "folders", str(workspace / "SRC"), "--patient-regex", r"^(cmyk)",
         "--out", str(tmp_path / "d"), "-q", "--max-pixels", "4000000"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: --patient-regex '^(cmyk)' matched 1 of 15 file names" in result.output


def test_an_import_that_accepts_almost_nothing_warns_with_the_likely_fix(tmp_path):
    labels = tmp_path / "train.txt"
    labels.write_text(
        "".join(f"p{i} img{i}.png {'positive' if i % 2 else 'negative'} sirm\n" for i in range(30))
    )
    (tmp_path / "empty").mkdir()
    result = runner.invoke(
        app, ["data", "import", "covidx", str(labels), "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "d"), "-q"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "30 inputs = 0 accepted + 30 rejected" in result.output
    assert (
        "warning: none of 30 inputs accepted; most were rejected as 'missing' (30)" in result.output
    )
    assert "--images" in result.output
    info = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert info["warnings"] and "missing" in info["warnings"][0]


def test_split_and_stats_take_quiet(workspace, tmp_path):
    import shutil

    shutil.copytree(workspace / "X", tmp_path / "X")
    assert runner.invoke(app, ["data", "split", str(tmp_path / "X"), "-q"]).exit_code == 0
    assert runner.invoke(app, ["data", "stats", str(tmp_path / "X"), "-q"]).exit_code == 0
    assert (tmp_path / "X" / "stats" / "stats.json").is_file()


def test_every_command_that_shows_progress_takes_quiet():
    """-q/--quiet everywhere but in the commands that finish at once and show no bar."""
    import typer.main

    instant = {"study list", "study report"}

    def commands(group, prefix=""):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    found = dict(commands(typer.main.get_command(app)))
    assert instant <= set(found)
    for name, command in found.items():
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert ({"-q", "--quiet"} <= options) != (name in instant), name


def test_loader_refuses_an_unknown_normalization_at_construction(tmp_path):
    from cxrlab.data.loader import packed_loader
    from cxrlab.errors import CxrlabError
    from factory import make_packed

    packed = make_packed(tmp_path / "P")
    with pytest.raises(CxrlabError, match="minmax"):
        packed_loader(packed, normalize="minmax")


def test_the_cli_imports_no_heavy_library_before_a_command_needs_it():
    """`cxrlab --help` and `cxrlab data import --help` start at once: the import graph of
    the CLI holds no torch, scikit-learn, pandas, numpy, matplotlib, MONAI or kornia."""
    import subprocess
    import sys

    heavy = ("torch", "sklearn", "pandas", "numpy", "matplotlib", "monai", "kornia", "scipy")
    code = (
        "import sys; import cxrlab.cli; from typer.testing import CliRunner; "
        "CliRunner().invoke(cxrlab.cli.app, sys.argv[1:]); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    for args in ([], ["--help"], ["data", "import", "--help"], ["gen", "train", "--help"]):
        loaded = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert loaded == "", f"cxrlab {' '.join(args)} imported {loaded}"


def test_the_gpu_check_runs_in_its_dry_mode_on_a_cpu(tmp_path):
    """`make gpu-check` is run on a GPU only now and then: its CPU dry mode keeps it working."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(script), "--dry", "--models", "dcgan,vae", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["errors"] == []
    assert [(g["model"], g["size_px"]) for g in figures["generators"]] == [
        ("dcgan", 32),
        ("vae", 32),
    ]
    assert all(
        g["steps_per_second"] > 0 and g["sample_312_seconds"] >= 0 for g in figures["generators"]
    )
    assert figures["classifier_epoch_seconds"] > 0
    assert "DDP: skipped" in result.stdout


def test_help_texts_never_break_a_sentence_mid_line():
    """typer's rich help keeps a docstring's line breaks: every command's help is
    reflowed, so a paragraph is one line (the terminal wraps it) and `clf train --help`
    no longer reads 'chosen⏎on the validation split'."""
    import re

    import typer.main

    from cxrlab.cli import app

    def commands(command, path=()):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))

    checked = 0
    for path, command in commands(typer.main.get_command(app)):
        for paragraph in (command.help or "").split("\n\n"):
            lines = paragraph.split("\n")
            assert all(re.match(r"[-*] ", line) for line in lines[1:]), (path, paragraph)
        checked += bool(command.help)
    assert checked >= 25  # every command of every group
    runner = CliRunner()
    result = runner.invoke(app, ["clf", "train", "--help"], env={"COLUMNS": "200"})
    assert "are chosen on the validation split" in result.output


@pytest.mark.parametrize(
    "module, function, args, resume",
    [
        ("cxrlab.clf.trainer", "train_classifier", ["clf", "train", "--arch", "simple-cnn",
         "--data", "{tmp}/P"], "with --resume"),
        ("cxrlab.seg.trainer", "train_segmenter", ["seg", "train", "--data", "{tmp}/X"],
         "cxrlab seg train --out {out} --resume"),
        ("cxrlab.study.runner", "run_study", ["study", "run", "demo"],
         "cxrlab study run demo --out {out}"),
    ],
)  # fmt: skip
def test_ctrl_c_in_a_long_command_says_what_was_kept_and_how_to_go_on(
    tmp_path, monkeypatch, module, function, args, resume
):
    import importlib

    out = tmp_path / "out"

    def interrupted(*_, **__):
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.pt").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(out), "-q"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and str(out / "checkpoints" / "last.pt") in result.output
    assert resume.format(out=out) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["data", "preprocess", "{X}/manifest.csv", "--size", "32", "--out", "{tmp}/P9"],
         "is a file, not a dataset folder: give its folder"),
        (["data", "split", "{X}/manifest.csv"], "is a file, not a dataset folder"),
        (["data", "stats", "{X}/manifest.csv"], "is a file, not a dataset folder"),
        (["data", "show", "{P}/images.npy", "--out", "{tmp}/g.png"],
         "is a file, not a packed dataset folder"),
        (["clf", "train", "--arch", "simple-cnn", "--data", "{P}/manifest.csv", "--out",
          "{tmp}/R"], "is a file, not a packed dataset folder"),
        (["seg", "train", "--data", "{X}/manifest.csv", "--out", "{tmp}/S9"], "is a file"),
        (["seg", "train", "--data", "{P}", "--out", "{tmp}/S9"], "is a packed dataset"),
        (["data", "preprocess", "{X}", "--splits", "trian,val", "--size", "32", "--out",
          "{tmp}/P9"], "trian is not a split name"),
        (["gen", "sample", "{P}", "--out", "{tmp}/SYN"], "not a generator run"),
    ],
)  # fmt: skip
def test_a_file_or_folder_of_the_wrong_kind_is_one_clear_line(workspace, tmp_path, args, words):
    names = {"{X}": str(workspace / "X"), "{P}": str(workspace / "P"), "{tmp}": str(tmp_path)}
    argv = []
    for arg in args:
        for key, value in names.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    before = _snapshot(workspace)
    result = runner.invoke(app, [*argv, "-q"])
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output, result.output
    assert "gen train --out" not in result.output  # never advise training into data
    assert _snapshot(workspace) == before and not list(tmp_path.iterdir())


def test_an_unsplit_packed_says_it_is_not_split(tmp_path):
    assert (
        runner.invoke(
            app, ["data", "import", "sample", "--out", str(tmp_path / "X"), "-q"]
        ).exit_code
        == 0
    )
    args = ["data", "preprocess", str(tmp_path / "X"), "--size", "32", "--out", str(tmp_path / "P")]
    assert runner.invoke(app, [*args, "-q"]).exit_code == 0
    result = runner.invoke(
        app, ["metrics", str(tmp_path / "P"), str(tmp_path / "P"), "--real-split", "val", "-q"]
    )
    assert "not split yet" in result.output and "['']" not in result.output, result.output
