import pytest
import torch

from cxrlab.errors import CxrlabError
from cxrlab.utils.checkpoint import load_checkpoint, save_checkpoint
from cxrlab.utils.device import resolve_device
from cxrlab.utils.fs import atomic_dir, atomic_write_text
from cxrlab.utils.parallel import parallel_imap


def test_checkpoint_round_trip_with_rng_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    state = {
        "step": 7,
        "model": model.state_dict(),
        "rng": torch.get_rng_state(),
        "config": {"a": [1, 2]},
    }
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and loaded["config"] == {"a": [1, 2]} and loaded["version"] == 1
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert torch.equal(loaded["rng"], state["rng"])


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CxrlabError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CxrlabError, match="cannot load"):
        load_checkpoint(tmp_path / "bad.pt")


def test_atomic_writes_leave_old_content_on_failure(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as staging:
        (staging / "x").write_text("partial")
        raise RuntimeError
    assert not (tmp_path / "d").exists()
    assert (tmp_path / "f.txt").read_text() == "old"


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(CxrlabError, match="CUDA is not available"):
            resolve_device("cuda")


def test_atomic_writes_get_the_permissions_a_plain_write_gets(tmp_path):
    atomic_write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = (tmp_path / "atomic.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert mode & 0o044  # readable by others under the usual umask, not mkstemp's 0600


# ------------------------------------------------------------------ the overwrite rule
def _packed_folder(path):
    path.mkdir(parents=True)
    (path / "meta.json").write_text('{"format": "cxrlab-packed"}')
    (path / "images.npy").write_bytes(b"x")
    return path


def test_folder_kinds_are_recognised(tmp_path):
    from cxrlab.utils import outputs

    assert outputs.folder_kind(tmp_path / "none") is None
    (tmp_path / "empty").mkdir()
    assert outputs.folder_kind(tmp_path / "empty") == outputs.EMPTY
    assert outputs.folder_kind(_packed_folder(tmp_path / "p")) == outputs.PACKED
    dataset = tmp_path / "d"
    dataset.mkdir()
    (dataset / "manifest.csv").write_text("id\n")
    (dataset / "dataset.json").write_text("{}")
    assert outputs.folder_kind(dataset) == outputs.DATASET
    run = tmp_path / "g"
    run.mkdir()
    (run / "config.yaml").write_text("model: dcgan\ndata: x\n")
    assert outputs.folder_kind(run) == outputs.GENERATOR_RUN
    (run / "config.yaml").write_text("arch: resnet18\n")
    assert outputs.folder_kind(run) == outputs.CLASSIFIER_RUN
    (tmp_path / "f.txt").write_text("x")
    assert outputs.folder_kind(tmp_path / "f.txt") == outputs.FILE
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("x")
    assert outputs.folder_kind(tmp_path / "mine") == outputs.OTHER


def test_out_may_never_be_hold_or_lie_inside_an_input_even_with_force(tmp_path):
    from cxrlab.utils.outputs import PACKED, OutputError, check_output

    source = tmp_path / "data" / "X"
    source.mkdir(parents=True)
    for out, words in (
        (source, "is the input"),
        (source / "sub", "is inside the input"),
        (tmp_path / "data", "holds the input"),
    ):
        with pytest.raises(OutputError, match=words):
            check_output(out, kind=PACKED, inputs=[source], force=True)


def test_another_kind_or_other_settings_need_force(tmp_path):
    from cxrlab.utils.outputs import DATASET, PACKED, OutputError, check_output

    packed = _packed_folder(tmp_path / "P")
    with pytest.raises(OutputError, match="already holds a packed dataset, not a dataset"):
        check_output(packed, kind=DATASET)
    with pytest.raises(OutputError, match="other settings"):
        check_output(packed, kind=PACKED, same_settings=False)
    assert check_output(packed, kind=PACKED, same_settings=True) == PACKED
    assert check_output(packed, kind=DATASET, force=True) == PACKED
    assert check_output(tmp_path / "new", kind=PACKED) is None


@pytest.mark.parametrize(
    "folder, own_file",
    [
        ("dataset", "manifest.csv"),
        ("dataset", "dataset.json"),
        ("packed", "meta.json"),
        ("study", "results.csv"),
        ("study", "spec.yaml"),
        ("run", "config.yaml"),
    ],
)
def test_a_one_file_output_never_replaces_a_file_of_a_cxrlab_folder_even_with_force(
    tmp_path, folder, own_file
):
    from cxrlab.utils.outputs import OutputError, check_output_file, starts_with

    root = tmp_path / folder
    if folder == "packed":
        _packed_folder(root)
    else:
        root.mkdir()
        files = {
            "dataset": {"manifest.csv": "id\n", "dataset.json": "{}"},
            "study": {"results.csv": "cell\n", "spec.yaml": "name: s\n", "study.json": "{}"},
            "run": {"config.yaml": "arch: resnet18\n"},
        }[folder]
        for name, text in files.items():
            (root / name).write_text(text)
    before = (root / own_file).read_bytes()
    is_png = starts_with(b"\x89PNG")
    for force in (False, True):
        with pytest.raises(OutputError, match="would break") as error:
            check_output_file(root / own_file, what="a PNG image", is_kind=is_png, force=force)
        assert "--force" not in str(error.value)  # never suggested where it cannot apply
    assert (root / own_file).read_bytes() == before
    # a file of the command's own kind in the same folder is still replaced by a rerun
    (root / "grid.png").write_bytes(b"\x89PNG rest")
    check_output_file(root / "grid.png", what="a PNG image", is_kind=is_png)
    # outside cxrlab's folders, --force still replaces another kind of file
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="--force"):
        check_output_file(tmp_path / "notes.txt", what="a PNG image", is_kind=is_png)
    check_output_file(tmp_path / "notes.txt", what="a PNG image", is_kind=is_png, force=True)


def test_the_lock_file_pins_every_dependency_of_the_project():
    """`make` installs requirements.lock: each pyproject dependency has an exact version."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    pinned = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ]", requirement)[0]).lower()
        assert name in pinned, f"{name} is not pinned in requirements.lock: run `make lock`"
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"


@pytest.mark.parametrize("n_items", [1, 7, 100, 203])
def test_parallel_imap_yields_every_result_once_in_order(n_items):
    import threading

    items = list(range(-n_items, 0))
    calls, where = [], set()

    def record(x):
        calls.append(x)
        where.add(threading.current_thread().name)
        return abs(x)

    results = parallel_imap(record, items, workers=2, progress=False, serial_below=1)
    assert list(results) == [abs(x) for x in items]
    assert sorted(calls) == items  # each item once
    assert all(name.startswith("cxrlab-worker") for name in where)


def test_the_python_api_decodes_in_parallel_from_a_script_without_a_main_guard(tmp_path):
    """A notebook, a piped script or a trainer calls the API at module level: the
    per-file work must not need `if __name__ == "__main__"` (a spawned or forkserver
    process pool re-runs the caller's `__main__` and broke there)."""
    import subprocess
    import sys

    script = (
        "from cxrlab.data.api import import_source\n"
        "from cxrlab.data.packed import preprocess_dataset\n"
        "from cxrlab.preprocess.transforms import PreprocessOptions\n"
        f"import_source('sample', None, {str(tmp_path / 'X')!r}, workers=2, progress=False)\n"
        f"report = preprocess_dataset({str(tmp_path / 'X')!r}, {str(tmp_path / 'P')!r},\n"
        "    PreprocessOptions(size_px=32), workers=2, progress=False)\n"
        "print(report.n_images)\n"
    )
    result = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["150"]


def test_parallel_imap_raises_the_error_of_an_item():
    import cv2

    before = cv2.getNumThreads()
    with pytest.raises(TypeError):
        list(parallel_imap(abs, [1] * 40 + ["x"] + [1] * 40, workers=2, progress=False))
    assert cv2.getNumThreads() == before  # the workers' one-thread setting is undone


def test_run_log_widens_its_header_and_resumes_as_if_never_stopped(tmp_path):
    """A new column rewrites the header (earlier rows keep blanks); on resume the rows
    after the checkpoint and a row cut short by a crash are dropped."""
    import csv

    from cxrlab.utils.runlog import RunLog

    path = tmp_path / "metrics.csv"
    log = RunLog(path, ["step", "loss"], keep_through=0, key="step")
    log.append({"step": 10, "loss": 0.5})
    log.append({"step": 20, "loss": 0.25, "swd": 3.0})
    log.append({"step": 30, "loss": 0.125})
    with open(path, "a") as handle:
        handle.write("4")  # killed while writing step 40's row
    rows = list(csv.DictReader(open(path)))
    assert [r["step"] for r in rows] == ["10", "20", "30", "4"]
    assert (rows[0]["swd"], rows[1]["swd"]) == ("", "3")

    resumed = RunLog(path, ["step", "loss"], keep_through=20, key="step")
    assert resumed.columns == ["step", "loss", "swd"]
    resumed.append({"step": 30, "loss": 0.125})
    rows = list(csv.DictReader(open(path)))
    assert [(r["step"], r["loss"], r["swd"]) for r in rows] == [
        ("10", "0.5", ""),
        ("20", "0.25", "3"),
        ("30", "0.125", ""),
    ]
    assert RunLog(path, ["step", "loss"], keep_through=0, key="step").rows == []
