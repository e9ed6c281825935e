"""Threads for the independent per-model work of a scoring pass (the LC fits of one chunk of models, one model's
bootstrap): numpy releases the GIL in its ufuncs, products and einsum, so a few threads use a few cores.

Results never depend on the threads: every task computes from its own inputs the same operations in the same order
as a serial loop, and the results are assembled by index. The number of threads is the CPUs this process may run on
(at most :data:`MAX_WORKERS`), or ``LIONEVAL_THREADS`` when set (``1``: everything on the calling thread), read at
each call. Inside the threads BLAS runs on one thread (``lioneval.stats.alpaca``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from lioneval.errors import ConfigError

__all__ = ["ENV", "MAX_WORKERS", "Pool", "worker_count"]

ENV = "LIONEVAL_THREADS"
# By default no more threads than this: each running task holds 20-45 MB of working arrays (an LC chunk fit of 16
# models, one model's 1000-round bootstrap), and with more of them at once a leaderboard of many models would need
# more memory than fitting them one by one with scikit-learn. LIONEVAL_THREADS may ask for more.
MAX_WORKERS = 2

T = TypeVar("T")


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # a container or taskset often allows fewer CPUs than the machine has
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(requested: int | None = None, tasks: int | None = None) -> int:
    """Threads to use: ``requested``, else ``LIONEVAL_THREADS``, else the usable CPUs (at most MAX_WORKERS); never
    more than ``tasks``, never fewer than 1."""
    if requested is None:
        raw = os.environ.get(ENV, "").strip()
        if raw:
            if not raw.isdigit() or int(raw) < 1:
                raise ConfigError(f"{ENV}={raw!r} is not a number of threads",
                                  fix=f"set {ENV} to a whole number from 1 up (1: no extra threads), or unset it")
            requested = int(raw)
        else:
            requested = min(_usable_cpus(), MAX_WORKERS)
    elif requested < 1:
        raise ConfigError(f"threads={requested} is not a number of threads", fix="pass a whole number from 1 up")
    return max(1, min(requested, tasks if tasks is not None else requested))


class Pool:
    """Runs tasks on ``workers`` threads, or on the calling thread when ``workers`` is 1 (no thread is started).

    :meth:`submit` returns a future either way; a task that raises re-raises in :meth:`Future.result`. Leaving the
    ``with`` block waits for every task (and cancels the queued ones after an error in the block)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lioneval-stats") if workers > 1 else None

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args))
        except Exception as e:  # handed to the caller through the future, as from a thread
            done.set_exception(e)
        return done

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
