"""An ordered map over forked worker processes that inherit the caller's large read-only inputs
(two whole radiographs, the engine) instead of receiving them pickled with every task.

The joints of a hand are independent once placed: on 2 cores two processes measure them in about
half the wall time. Threads do not: the refinement's many small numpy and scipy calls hold the GIL
(14 joints: 1.35x with 2 threads). Only a process that owns no GUI or event loop should fork, so
the default is one worker, in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

_INHERITED: tuple = ()  # what forked workers read; set only while a pool is open


def default_workers() -> int:
    """The cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def _call(item):
    fn, task = item
    return fn(*_INHERITED, task)


@contextmanager
def worker_map(inherited: tuple, workers: int = 1) -> Iterator[Callable[[Callable, Iterable], Iterator]]:
    """A map_(fn, tasks) giving fn(*inherited, task) for each task, in task order.

    workers > 1 (where the platform can fork): in that many forked processes; fn must be a
    module-level function and its results picklable. An exception in a task is raised here, in
    the caller, and so is a worker that dies (killed, out of memory): WorkerDied, never a hang.
    Leaving the block (also by an exception or a cancel) waits for the tasks under way (one joint
    each) and drops the rest."""
    global _INHERITED
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield lambda fn, tasks: (fn(*inherited, task) for task in tasks)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _INHERITED = inherited  # the workers fork at the first task, and inherit it
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))

    def map_(fn, tasks):
        try:
            yield from pool.map(_call, [(fn, task) for task in tasks])
        except BrokenProcessPool:
            raise WorkerDied("a worker process stopped unexpectedly (killed, or out of memory?): "
                             "run again with one worker (--workers 1)") from None

    try:
        yield map_
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _INHERITED = ()


class WorkerDied(RuntimeError):
    """A forked worker process ended without returning its task."""
