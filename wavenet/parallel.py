"""Independent windows of one generation, computed side by side on CPU threads.

A student's stream is a sequence of windows that depend on nothing computed by another
window (each recomputes its own context), so on a CPU with several threads for torch they
can run at once. The small matrix products and element-wise passes of one window use two
intra-op threads poorly (measured on the 2-core development machine with the two-flow
student: a 10 s utterance's windows took 0.62 s with one thread, 0.57 s with two); one
window per thread, each running single-threaded, took 0.36 to 0.39 s.

`window_pool` gives the process's pool of `torch.get_num_threads()` workers (None where one
thread or a non-CPU device leaves nothing to share out), `in_order` runs jobs on it and
yields their results in submission order, with a bounded number in flight. A worker runs
its jobs under the caller's grad and inference modes (both are per-thread in torch).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["in_order", "submit", "window_pool"]

T = TypeVar("T")

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # by (process id, threads)
_lock = threading.Lock()


def _single_threaded() -> None:
    torch.set_num_threads(1)  # per worker thread: its windows' ops run on it alone


def window_pool(device: torch.device | str) -> ThreadPoolExecutor | None:
    """The shared pool with one worker per torch thread, or None (one thread, or not CPU)."""
    threads = torch.get_num_threads()
    if torch.device(device).type != "cpu" or threads <= 1:
        return None
    # Keyed by process too: a process forked from one that made a pool inherits the dict but
    # not the pool's threads.
    key = (os.getpid(), threads)
    with _lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(
                threads, thread_name_prefix="wavenet-window", initializer=_single_threaded
            )
        return _pools[key]


def submit(pool: ThreadPoolExecutor, job: Callable[[], T]) -> Future[T]:
    """`pool.submit(job)`, the job run under the caller's grad and inference modes."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run() -> T:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return job()

    return pool.submit(run)


def in_order(
    pool: ThreadPoolExecutor | None, jobs: Iterable[Callable[[], T]], ahead: int | None = None
) -> Iterator[T]:
    """Each job's result in the order of `jobs`; on `pool` with at most `ahead` jobs submitted
    and not yet yielded (default: twice the workers), or one by one here without a pool.

    Jobs are taken from `jobs` only as room frees up, so a job may be built from state the
    previous jobs' construction advanced (a phase running on from window to window). When
    the consumer stops early, submitted jobs not yet started are cancelled; running ones
    finish and their results are dropped.
    """
    if pool is None:
        for job in jobs:
            yield job()
        return
    ahead = ahead or 2 * pool._max_workers
    pending: deque[Future[T]] = deque()
    try:
        for job in jobs:
            pending.append(submit(pool, job))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
