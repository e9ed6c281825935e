"""Benchmarks: one module each, opening with what it implements (paper, dataset, version).

Every benchmark is a :class:`~lioneval.benchmarks.base.Benchmark` registered in ``lioneval.registry.BENCHMARKS``
(or through the ``lioneval.benchmarks`` entry-point group); callers get one with :func:`load` and ask it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lioneval.benchmarks.base import Benchmark
from lioneval.registry import BENCHMARKS

__all__ = ["Benchmark", "load", "names"]


def load(name: str | Benchmark, data: str | Path | None = None, *, baseline: str | None = None,
         **options: Any) -> Benchmark:
    """The benchmark registered as ``name`` on ``data`` (its default location when None), with ``baseline``
    (default: the benchmark's). A Benchmark object passes through unchanged."""
    if isinstance(name, Benchmark):
        return name
    cls = BENCHMARKS.get(name)
    return cls(data, baseline=baseline, **options)


def names() -> list[str]:
    return BENCHMARKS.names()
