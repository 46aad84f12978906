"""Study cells in parallel: ``--workers 2`` (a local process pool) and ``--executor ray``
give the results of a sequential run; a worker killed mid-cell leaves the cell to resume;
``--dry-run`` prints the plan and writes nothing; a run prints its plan and progress."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_runner import TINY, write_spec
from typer.testing import CliRunner

from cxrlab.cli import app
from cxrlab.errors import CxrlabError
from cxrlab.study.executor import InlineExecutor, PoolExecutor, WorkerDied, make_executor
from cxrlab.study.runner import run_study

pytestmark = pytest.mark.slow

#: The tiny study, smaller still: one variant, one seed, no Grad-CAM, 3 epochs (a worker
#: is killed after the first and the cell resumes from it). Its generator and its
#: classifier without synthetic images can run at once.
SPEC = {
    **TINY,
    "preprocess": {"size": 32, "equalize": ["none"]},
    "generators": {**TINY["generators"], "steps": 2, "metrics_n": 8},
    "classifier": {**TINY["classifier"], "epochs": 3, "seeds": [0], "bootstrap": 10, "explain": 0},
}
CELLS = 6
KILLED = "clf/32px-none/simple-cnn-syn_0"


def run(spec: Path, out: Path, lines: list | None = None, **options):
    log = (lambda line: None) if lines is None else lines.append
    return run_study(spec, out, device="cpu", progress=False, log=log, **options)


def results(study: Path) -> pd.DataFrame:
    """results.csv without the columns of time taken (they differ from run to run)."""
    table = pd.read_csv(study / "results.csv")
    return table[[c for c in table.columns if "seconds" not in c]]


def cells(study: Path) -> list[tuple[str, str]]:
    return [(c["id"], c["status"]) for c in json.loads((study / "study.json").read_text())["cells"]]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workers")
    write_spec(root, SPEC)
    return root


@pytest.fixture(autouse=True)
def one_thread(root, monkeypatch):
    """Every process trains with one torch thread (workers take their share of the
    cores: one each here), so sequential and parallel runs do the same arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CXRLAB_CACHE_DIR", str(root / "cache"))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequential(root) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines: list[str] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CXRLAB_CACHE_DIR", str(root / "cache"))
            result = run(root / "spec.yaml", root / "sequential", lines)
    finally:
        torch.set_num_threads(threads)
    return {"study": root / "sequential", "lines": lines, "result": result}


def test_a_run_prints_its_plan_then_each_cell_against_the_total(sequential):
    lines = "\n".join(sequential["lines"]).splitlines()
    assert lines[0] == f"plan: {CELLS} cells in {sequential['study']}: 0 done, {CELLS} to run"
    assert "  to run  gen/32px-none/dc  (after preprocess/32px-none)" in lines
    starts = [line for line in lines if line.startswith("[")]
    assert starts[0] == f"[1/{CELLS}] data data" and starts[-1].startswith(f"[{CELLS}/{CELLS}] ")
    assert sum(f"({CELLS}/{CELLS} cells done)" in line for line in lines) == 1
    assert sequential["result"].ran == [cell for cell, _ in cells(sequential["study"])]


def test_two_workers_give_the_results_of_a_sequential_run(root, sequential):
    lines: list[str] = []
    result = run(root / "spec.yaml", root / "two", lines, workers=2)
    pd.testing.assert_frame_equal(results(root / "two"), results(sequential["study"]))
    assert cells(root / "two") == cells(sequential["study"])
    assert result.ran == sequential["result"].ran  # in the study's order, not as finished
    # two cells ran at once, and each one's own lines came back with it
    assert any(line.endswith("(started; 2 running)") for line in lines)
    assert any("packed 150 images" in line for line in lines)


def kill_workers_when(path: Path, stop: threading.Event) -> None:
    """Kill every worker process (SIGKILL, as the OOM killer does) once ``path`` exists."""
    import multiprocessing

    while not stop.is_set():
        if path.exists():
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
            return
        time.sleep(0.02)


def test_a_worker_killed_mid_cell_leaves_it_to_resume(root, sequential):
    study = root / "killed"
    checkpoint = study / KILLED / "run" / "seed_0" / "checkpoints" / "last.pt"
    stop = threading.Event()
    killer = threading.Thread(target=kill_workers_when, args=(checkpoint, stop), daemon=True)
    killer.start()
    try:
        with pytest.raises(WorkerDied, match="resume"):
            run(root / "spec.yaml", study, workers=2)
    finally:
        stop.set()
        killer.join()
    assert not (study / KILLED / "cell.json").exists()
    epochs = study / KILLED / "run" / "seed_0" / "epochs.csv"
    kept = pd.read_csv(epochs)
    assert 1 <= len(kept) < 3
    assert (KILLED, "pending") in cells(study)  # the parent's records say so

    second = run(root / "spec.yaml", study, workers=2)
    assert KILLED in second.ran
    pd.testing.assert_frame_equal(results(study), results(sequential["study"]))
    # resumed from its checkpoint: the epochs trained before the kill were not redone
    after = pd.read_csv(epochs)
    assert list(after["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(after.iloc[: len(kept)], kept)


def test_ray_tasks_give_the_results_of_a_sequential_run(root, sequential):
    pytest.importorskip("ray")
    lines: list[str] = []
    run(root / "spec.yaml", root / "ray", lines, executor="ray", workers=2)
    pd.testing.assert_frame_equal(results(root / "ray"), results(sequential["study"]))
    assert cells(root / "ray") == cells(sequential["study"])
    assert any(line.startswith("ray: ") for line in lines)


def test_dry_run_prints_the_plan_and_writes_nothing(root, sequential):
    runner = CliRunner()
    fresh = root / "not-yet"
    argv = ["study", "run", str(root / "spec.yaml"), "--dry-run", "-q"]
    result = runner.invoke(app, [*argv, "--out", str(fresh)])
    assert result.exit_code == 0, result.output
    assert f"plan: {CELLS} cells in {fresh}: 0 done, {CELLS} to run" in result.output
    assert "  to run  data\n" in result.output and not fresh.exists()

    study = sequential["study"]
    before = {p: p.stat().st_mtime_ns for p in study.rglob("*")}
    result = runner.invoke(app, [*argv, "--out", str(study)])
    assert result.exit_code == 0, result.output
    assert f"{CELLS} done, 0 to run" in result.output and "  done    data\n" in result.output
    assert {p: p.stat().st_mtime_ns for p in study.rglob("*")} == before
    assert "report" not in result.output


def test_ray_without_ray_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray fails
    with pytest.raises(CxrlabError, match=r"pip install 'cxrlab\[ray\]'"):
        make_executor("ray", workers=2)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"workers": 0}, "--workers 0"),
        ({"executor": "dask"}, "--executor 'dask'"),
        ({"address": "10.0.0.1:6379"}, "--executor ray"),
    ],
)
def test_bad_executor_options_are_refused(options, words):
    name = options.get("executor", "local")
    with pytest.raises(CxrlabError, match=words):
        make_executor(name, **{k: v for k, v in options.items() if k != "executor"})


def test_workers_default_to_one_here_and_to_what_the_ray_cluster_places():
    assert isinstance(make_executor(), InlineExecutor)
    assert isinstance(make_executor(workers=2), PoolExecutor)
    pytest.importorskip("ray")
    assert make_executor("ray").workers == 0  # no cap: Ray places tasks by resources


@pytest.mark.parametrize("part", ["generators", "classifier"])
def test_cells_training_on_several_devices_are_not_sent_to_workers(tmp_path, part):
    spec = {**SPEC, part: {**SPEC[part], "devices": 2}}
    with pytest.raises(CxrlabError, match="devices: 2.*--workers 1"):
        run(write_spec(tmp_path, spec), tmp_path / "out", workers=2)
    assert not (tmp_path / "out" / "data" / "cell.json").exists()  # refused before any cell
