"""Who runs a study's cells: this process, a local process pool, or a Ray cluster.

:func:`dispatch` is the whole of the ordering: it walks the study
(:meth:`StudyRunner._walk <cxrlab.study.runner.StudyRunner._walk>`), hands the cells
whose inputs are finished to an executor, and walks again whenever one finishes (a
finished generator makes its variant's choice, and so its synthetic and classifier
cells, known). Distributing the cells is left to the executor:

* :class:`InlineExecutor`: one cell at a time in this process (``--workers 1``, the
  default), in the order of a sequential run;
* :class:`PoolExecutor`: the standard library's process pool (``--workers N``), each
  worker process with its own device (one GPU each, round robin over the visible ones)
  and ``cores / N`` torch threads;
* :class:`RayExecutor`: Ray tasks (``--executor ray``) on a local or existing cluster,
  one GPU per task on CUDA; Ray retries a task whose worker died.

A cell writes only its own folder (its ``cell.json`` last, atomically); the study's
shared records (study.json, results.csv) are written by the process that runs
:func:`dispatch` only, after each finished cell. A worker killed mid-cell leaves the
cell without ``cell.json``: the next run, or Ray's retry, resumes it from its
checkpoints like any interrupted cell.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from cxrlab.errors import CxrlabError

EXECUTORS = ("local", "ray")
#: Tries of a Ray task whose worker process died (a killed node, out of memory).
RAY_RETRIES = 2


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to run one cell: the spec, the study folder, the cell and its
    settings as planned by the sending process, and the torch threads to use."""

    spec: Any  # cxrlab.study.spec.StudySpec
    out: str
    device: str
    cell: str
    settings: dict
    threads: int = 0  # 0: leave torch's default


@dataclass
class Outcome:
    """A finished cell: its record (as in cell.json), its rows, the lines it logged."""

    record: dict
    rows: list[dict]
    lines: list[str] = field(default_factory=list)


def run_cell(job: CellJob) -> Outcome:
    """Run one cell in a worker (a pool process or a Ray task); see :class:`CellJob`."""
    from cxrlab.study.runner import StudyRunner

    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    lines: list[str] = []
    runner = StudyRunner(job.spec, job.out, device=job.device, progress=False, log=lines.append)
    record, rows = runner.run_one(job.cell, job.settings)
    return Outcome(record, rows, lines)


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes on this machine: the cores shared
    out (at least 1), never more than ``$OMP_NUM_THREADS`` when that is set."""
    threads = max(1, cores() // max(1, workers))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        threads = min(threads, int(limit))
    return threads


def check_one_device_per_cell(spec, how: str) -> None:
    """Refuse a spec whose generators or classifiers train on several devices (their
    ``devices`` setting) when its cells run in workers: a worker has one GPU, and a pool
    worker may not start the processes data-parallel training needs.

    Raises:
        CxrlabError: naming the setting and the two ways out.
    """
    settings = [("classifier", spec.classifier_settings)]
    settings += [
        (f"generator {g.name}", {**spec.gen_settings, **g.settings}) for g in spec.generators
    ]
    for what, values in settings:
        devices = int(values.get("devices", 1) or 1)
        if devices > 1:
            raise CxrlabError(
                f"{spec.path}: the {what} trains on {devices} devices (devices: {devices}), "
                f"which a cell cannot do in {how} (one GPU each); run the study with "
                "--workers 1, or set devices: 1 in the spec and let cells run side by side"
            )


class InlineExecutor:
    """Runs one cell at a time in this process, with progress bars and live log lines."""

    workers = 1
    live = True

    def start(self, runner) -> None:
        self.runner = runner

    def room(self, running: int) -> int:
        return 1 - running

    def submit(self, todo):
        return todo

    def wait(self, running: dict[str, Any]) -> list[tuple[str, Outcome | BaseException]]:
        cell_id, todo = next(iter(running.items()))
        record, rows = self.runner.execute(todo.cell, todo.work)
        return [(cell_id, Outcome(record, rows))]

    def close(self, abort: bool = False) -> None:
        pass


def _start_worker(devices, threads: int) -> None:
    """A pool worker's first act: take one device (before torch starts CUDA) and its
    share of the cores."""
    device = devices.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from cxrlab.utils.allocator import tune_allocator

    tune_allocator()


def visible_gpus(device: str) -> list[str]:
    """The CUDA devices cells may use (ids as ``CUDA_VISIBLE_DEVICES`` names them); none
    when ``device`` is cpu or there is no CUDA."""
    if device == "cpu":
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named:
        return [d.strip() for d in named.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(index) for index in range(torch.cuda.device_count())]


class PoolExecutor:
    """``workers`` processes of the standard library's process pool (spawned, so each
    starts its own torch), one device each."""

    live = False

    def __init__(self, workers: int, device: str) -> None:
        self.workers = workers
        self.device = device
        self.pool = None
        self.threads = threads_per_worker(workers)

    def start(self, runner) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        check_one_device_per_cell(runner.spec, f"--workers {self.workers}")
        self.runner = runner
        context = multiprocessing.get_context("spawn")
        gpus = visible_gpus(self.device)
        devices = context.Queue()
        for index in range(self.workers):  # one GPU per worker; more workers share them
            devices.put(gpus[index % len(gpus)] if gpus else None)
        if gpus and self.workers > len(gpus):
            runner.log(
                f"warning: {self.workers} workers share {len(gpus)} GPU(s); give --workers "
                f"{len(gpus)} for one GPU per worker"
            )
        self.pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(devices, self.threads),
        )

    def room(self, running: int) -> int:
        return self.workers - running

    def submit(self, todo):
        runner = self.runner
        return self.pool.submit(run_cell, _job(runner, todo, self.threads))

    def wait(self, running: dict[str, Any]) -> list[tuple[str, Outcome | BaseException]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_for
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait_for(list(running.values()), return_when=FIRST_COMPLETED)
        finished = []
        for cell_id, future in running.items():
            if future not in done:
                continue
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                error = WorkerDied(
                    f"a worker process died (killed, or out of memory) while the cells "
                    f"{', '.join(running)} ran"
                )
            finished.append((cell_id, error if error is not None else future.result()))
        return finished

    def close(self, abort: bool = False) -> None:
        if self.pool is None:
            return
        if abort:  # Ctrl-C or a dead worker: stop the other cells now (they resume later)
            processes = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(timeout=10)
        else:
            self.pool.shutdown(wait=True)
        self.pool = None


class RayExecutor:
    """Cells as Ray tasks on a local or existing cluster (``address``): one GPU per task
    on CUDA, the cluster's CPUs shared out among ``workers`` tasks; at most ``workers``
    at once (0: as many as Ray places)."""

    live = False

    def __init__(self, workers: int, device: str, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise CxrlabError(
                "--executor ray needs Ray, which is not installed: pip install 'cxrlab[ray]' "
                "(or leave out --executor ray: --workers N runs cells in local processes)"
            ) from None
        self.ray = ray
        self.workers = workers
        self.device = device
        self.address = address
        self.started_here = False

    def start(self, runner) -> None:
        check_one_device_per_cell(runner.spec, "Ray tasks")
        ray = self.ray
        self.runner = runner
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address)
                else:
                    ray.init(include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise CxrlabError(
                    f"--executor ray could not start or join a Ray cluster"
                    f"{f' at --address {self.address}' if self.address else ''}: {error}; "
                    "check the address (ray status on the head node prints it)"
                ) from None
            self.started_here = True
        resources = ray.cluster_resources()
        gpus = 0 if self.device == "cpu" else int(resources.get("GPU", 0))
        if self.device == "cuda" and not gpus:
            raise CxrlabError(
                "--device cuda with --executor ray: the Ray cluster has no GPU; add GPU nodes "
                "or give --device cpu"
            )
        cpus = int(resources.get("CPU", 1))
        self.threads = max(1, cpus // self.workers) if self.workers else 1
        self.options = {
            "num_gpus": 1 if gpus else 0,
            "num_cpus": self.threads,
            "max_retries": RAY_RETRIES,  # a dead worker's cell resumes from its checkpoints
            "retry_exceptions": False,  # an error in a cell is not retried: it would recur
        }
        self.task = ray.remote(run_cell).options(**self.options)
        runner.log(
            f"ray: {cpus} CPUs, {gpus} GPUs; each cell a task with {self.options['num_cpus']} "
            f"CPU(s), {self.options['num_gpus']} GPU"
        )

    def room(self, running: int) -> int:
        return self.workers - running if self.workers else 1 << 30

    def submit(self, todo):
        # a GPU task sees only its GPU; torch threads follow the CPUs Ray gave it
        return self.task.remote(_job(self.runner, todo, self.threads))

    def wait(self, running: dict[str, Any]) -> list[tuple[str, Outcome | BaseException]]:
        ray = self.ray
        ready, _ = ray.wait(list(running.values()), num_returns=1)
        finished = []
        for cell_id, ref in running.items():
            if ref not in ready:
                continue
            try:
                finished.append((cell_id, ray.get(ref)))
            except ray.exceptions.RayTaskError as error:  # the cell's own error
                cause = getattr(error, "cause", None)
                finished.append((cell_id, cause if isinstance(cause, Exception) else error))
            except ray.exceptions.RayError as error:  # the worker died, retries spent
                finished.append((cell_id, WorkerDied(f"the Ray task of {cell_id} failed: {error}")))
        return finished

    def close(self, abort: bool = False) -> None:
        if self.started_here:
            self.ray.shutdown()
            self.started_here = False


class WorkerDied(CxrlabError):
    """A worker process ended while it ran cells; they resume on the next run."""


def _job(runner, todo, threads: int) -> CellJob:
    from cxrlab.study.runner import _jsonable

    return CellJob(
        spec=runner.spec,
        out=str(runner.out),
        device=runner.device,
        cell=todo.cell.id,
        settings=_jsonable(todo.cell.settings),
        threads=threads,
    )


def make_executor(
    name: str = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    device: str = "auto",
):
    """The executor ``study run`` asked for (``workers`` None: 1 locally, and as many as
    the cluster places with Ray).

    Raises:
        CxrlabError: an unknown executor, workers below 1 (0 with Ray only), --address
            without Ray, or Ray not installed.
    """
    if name not in EXECUTORS:
        raise CxrlabError(f"--executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "ray":
        workers = 0 if workers is None else workers
        if workers < 0:
            raise CxrlabError(f"--workers {workers}: give 0 (as many as Ray places) or more")
        return RayExecutor(workers, device, address)
    if address:
        raise CxrlabError("--address names a Ray cluster: give it with --executor ray")
    workers = 1 if workers is None else workers
    if workers < 1:
        raise CxrlabError(f"--workers {workers}: give 1 (one cell at a time) or more")
    return InlineExecutor() if workers == 1 else PoolExecutor(workers, device)


def dispatch(runner, executor) -> None:
    """Run every cell of ``runner``'s study not finished yet with ``executor``: walk the
    study, start the cells that wait for nothing (in the study's order, as many as the
    executor has room for), record each that finishes (results.csv and study.json, here
    only), and walk again, until nothing is left to run.

    Raises:
        The first error of a cell, after the cells running beside it finished (they are
        kept); KeyboardInterrupt stops the running cells at once (they resume later).
    """
    running: dict[str, Any] = {}
    todos: dict[str, Any] = {}
    failure: BaseException | None = None
    runner._walk()
    runner.log(runner.plan_text())
    if not runner.todo:
        return
    executor.start(runner)
    try:
        while True:
            runner._write_results()
            runner._write_status()
            done = len(runner.cells) - len(runner.todo)
            ready = [t for t in runner.todo if not t.waits and t.cell.id not in running]
            if failure is None:
                for todo in ready[: max(0, executor.room(len(running)))]:
                    running[todo.cell.id] = executor.submit(todo)
                    todos[todo.cell.id] = todo
                    total = runner.planned_cells()
                    place = f"[{done + len(running)}/{total}] {todo.cell.kind} {todo.cell.id}"
                    more = "" if executor.live else f" (started; {len(running)} running)"
                    runner.log(place + more)
            if not running:
                break
            began = time.perf_counter()
            for cell_id, outcome in executor.wait(running):
                del running[cell_id]
                if isinstance(outcome, BaseException):
                    failure = failure or outcome
                    continue
                todo = todos[cell_id]
                runner.finished(todo.cell, outcome.record, outcome.rows)
                for line in outcome.lines:
                    runner.log(line)
                seconds = outcome.record.get("seconds") or (time.perf_counter() - began)
                done = sum(1 for c in runner.cells if c.id in runner.records)
                name = "" if executor.live else f" {cell_id}"
                runner.log(
                    f"    done{name} in {seconds:.0f} s "
                    f"({done}/{runner.planned_cells()} cells done)"
                )
            runner._walk()  # what finished may make other cells ready, or known
    except BaseException:
        executor.close(abort=True)
        raise
    if failure is not None:
        executor.close(abort=True)
        if isinstance(failure, WorkerDied):
            raise WorkerDied(
                f"{failure}; finished cells are kept in {runner.out}, and the cells that "
                "were running resume from their checkpoints when the same command runs again"
            ) from None
        raise failure
    executor.close()
    if runner.todo:  # every cell waited for is in the study: this would be a bug
        stuck = {todo.cell.id: todo.waits for todo in runner.todo}
        raise CxrlabError(f"cells wait for cells the study does not have: {stuck}")
