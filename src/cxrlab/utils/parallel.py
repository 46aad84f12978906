"""Parallel maps with a progress bar, used for all per-file work.

Two kinds of workers: processes (the default: any Python function scales), and
threads (``threads=True``) for functions whose time is spent in C code that releases
the GIL, such as Pillow's decoders and OpenCV's resizing: threads start at once and
hand results back without pickling them.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

from cxrlab.utils.progress import tqdm

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


def _context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """Never plain fork: forking a process that already runs torch/OpenMP threads can
    deadlock the children. A fork server is started once, clean, with the decoding
    modules (and the mapped function's module) preloaded, so that every worker forked
    from it starts with them imported, and later pools start in milliseconds."""
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["cxrlab.data.io", "cxrlab.preprocess.transforms", *preload])
        return context
    return multiprocessing.get_context("spawn")


def _ready() -> None:
    """Nothing: submitted once to start the pool's processes."""


def _run_chunk(function: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [function(item) for item in chunk]


def _chunks(items: Sequence[T], workers: int) -> list[Sequence[T]]:
    """Small chunks: the first results come early and the tail is shared evenly; a
    chunk still amortises the round trip to a worker over a few items."""
    size = max(1, min(8, len(items) // (workers * 16)))
    return [items[start : start + size] for start in range(0, len(items), size)]


def _thread_imap(
    function: Callable[[T], R], items: Sequence[T], workers: int, bar: tqdm
) -> Iterator[R]:
    """``function`` over ``items`` in ``workers`` threads, results in order, at most a
    few chunks ahead of the consumer. OpenCV runs one thread per call meanwhile, as in
    a worker process."""
    import cv2

    chunks = _chunks(items, workers)
    in_flight = workers * 4
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrlab-worker")
    try:
        futures: dict[int, Future] = {}
        for index in range(len(chunks)):
            for ahead in range(index, min(index + in_flight, len(chunks))):
                if ahead not in futures:
                    futures[ahead] = pool.submit(_run_chunk, function, chunks[ahead])
            for result in futures.pop(index).result():
                yield result
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(cv2_threads)


def parallel_imap(
    function: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    serial_below: int = 16,
    threads: bool = False,
) -> Iterator[R]:
    """Yield ``function(x)`` for each item, in order, computed in worker processes
    (or threads).

    ``function`` must be a module-level function (it is pickled); keep its module
    light, since every worker imports it. Small inputs (fewer than ``serial_below``
    items) and ``workers=1`` run in this process. Results stream out, so a caller can
    write them to disk without holding all. ``threads``: run it in threads instead,
    for functions that spend their time in C code releasing the GIL.

    Starting a pool takes a second or more (a fork server, the workers' imports);
    meanwhile, and whenever the next result in order is not ready yet, this process
    computes the next chunk nobody has taken, so no core waits for the pool. The
    results are the same as a one-process run: each item goes through ``function``
    exactly once, and they come out in the items' order.
    """
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="img", leave=False)
    try:
        if workers == 1 or len(items) < serial_below:
            for item in items:
                yield function(item)
                bar.update(1)
            return
        if threads:
            yield from _thread_imap(function, items, workers, bar)
            return
        chunks = _chunks(items, workers)
        in_flight = workers * 4  # chunks queued in the pool at any time
        futures: dict[int, Future] = {}
        done_here: dict[int, list[R]] = {}
        next_free = 0  # chunks [next_free:] are taken by nobody yet
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_context([function.__module__]),
            initializer=_single_threaded_worker,
        )
        # The first submit blocks until the fork server has imported its modules:
        # a thread waits for that while this one computes.
        pool_ready = threading.Event()

        def start_pool() -> None:
            try:
                pool.submit(_ready)
            finally:
                pool_ready.set()

        threading.Thread(target=start_pool, daemon=True).start()

        def top_up() -> None:
            nonlocal next_free
            while next_free < len(chunks) and len(futures) < in_flight:
                futures[next_free] = pool.submit(_run_chunk, function, chunks[next_free])
                next_free += 1

        try:
            for index in range(len(chunks)):
                while True:
                    if pool_ready.is_set():
                        top_up()
                    ready = index in done_here or (index in futures and futures[index].done())
                    if ready or next_free == len(chunks):
                        break
                    # chunk `index` is not done: compute the next untaken one here
                    done_here[next_free] = _run_chunk(function, chunks[next_free])
                    next_free += 1
                if index in done_here:
                    results = done_here.pop(index)
                else:
                    results = futures.pop(index).result()
                for result in results:
                    yield result
                    bar.update(1)
        finally:
            pool_ready.wait()
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def parallel_map(function: Callable[[T], R], items: Sequence[T], **options) -> list[R]:
    """``list(parallel_imap(function, items, **options))``."""
    return list(parallel_imap(function, list(items), **options))
