"""Benchmarks: one module each, opening with what it implements (paper, dataset, version).

Every benchmark is a :class:`~lioneval.benchmarks.base.Benchmark` registered in ``lioneval.registry.BENCHMARKS``
(or through the ``lioneval.benchmarks`` entry-point group); callers get one with :func:`load` and ask it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lioneval.benchmarks.base import Benchmark
from lioneval.errors import ConfigError, LionEvalError
from lioneval.registry import BENCHMARKS

__all__ = ["Benchmark", "find", "load", "names"]


def load(name: str | Benchmark, data: str | Path | None = None, *, baseline: str | None = None,
         **options: Any) -> Benchmark:
    """The benchmark registered as ``name`` on ``data`` (its default location when None), with ``baseline``
    (default: the benchmark's). A Benchmark object passes through unchanged."""
    if isinstance(name, Benchmark):
        return name
    cls = BENCHMARKS.get(name)
    try:
        bench = cls(data, baseline=baseline, **options)
    except TypeError as e:
        raise ConfigError(f"benchmark {name!r} does not take these settings: {e}",
                          fix=f"leave out the options {sorted(options)} for {name}") from e
    bench.name = name  # records carry the name it is registered under, so they find it again
    return bench


def find(name: str) -> type[Benchmark] | None:
    """The class registered as ``name``, or None when it is not registered or cannot be imported (a store may hold
    records of a benchmark whose plug-in is not installed here): for reading class attributes such as
    ``headline`` without loading any data."""
    if name not in BENCHMARKS.entries:
        return None
    try:
        return BENCHMARKS.get(name)
    except (ImportError, LionEvalError):
        return None


def names() -> list[str]:
    return BENCHMARKS.names()
