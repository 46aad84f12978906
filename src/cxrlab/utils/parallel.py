"""Process-parallel maps with a progress bar, used for all per-file work."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use: ``CXRLAB_WORKERS`` or the number of usable cores."""
    env = os.environ.get("CXRLAB_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _single_threaded_worker() -> None:
    """Each worker uses one thread: the parallelism is across processes."""
    import cv2

    cv2.setNumThreads(1)


def _context() -> multiprocessing.context.BaseContext:
    """Never plain fork: forking a process that already runs torch/OpenMP threads can
    deadlock the children. A fork server is started once, clean, with the decoding
    modules preloaded, so later pools start in milliseconds."""
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["cxrlab.data.io", "cxrlab.preprocess.transforms"])
        return context
    return multiprocessing.get_context("spawn")


def parallel_imap(
    function: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    serial_below: int = 16,
) -> Iterator[R]:
    """Yield ``function(x)`` for each item, in order, computed in worker processes.

    ``function`` must be a module-level function (it is pickled). Small inputs
    (fewer than ``serial_below`` items) and ``workers=1`` run in this process.
    Results stream out, so a caller can write them to disk without holding all.
    """
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="img", leave=False)
    try:
        if workers == 1 or len(items) < serial_below:
            for item in items:
                yield function(item)
                bar.update(1)
            return
        chunksize = max(1, min(16, len(items) // (workers * 32)))
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=_context(), initializer=_single_threaded_worker
        ) as pool:
            for result in pool.map(function, items, chunksize=chunksize):
                yield result
                bar.update(1)
    finally:
        bar.close()


def parallel_map(function: Callable[[T], R], items: Sequence[T], **options) -> list[R]:
    """``list(parallel_imap(function, items, **options))``."""
    return list(parallel_imap(function, list(items), **options))
