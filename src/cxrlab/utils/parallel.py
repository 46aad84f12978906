"""A process-parallel map with a progress bar, used for all per-file work."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
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


def parallel_map(
    function: Callable[[T], R],
    items: Sequence[T] | Iterable[T],
    *,
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    serial_below: int = 16,
) -> list[R]:
    """``[function(x) for x in items]`` in worker processes, order kept, with a progress bar.

    ``function`` must be a module-level function (it is pickled). Small inputs
    (fewer than ``serial_below`` items) and ``workers=1`` run in this process.
    """
    items = list(items)
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="img", leave=False)
    try:
        if workers == 1 or len(items) < serial_below:
            results = []
            for item in items:
                results.append(function(item))
                bar.update(1)
            return results
        chunksize = max(1, min(32, len(items) // (workers * 8)))
        results = []
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(function, items, chunksize=chunksize):
                results.append(result)
                bar.update(1)
        return results
    finally:
        bar.close()
