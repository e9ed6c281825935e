"""Benchmarks: one module each, opening with what it implements (paper, dataset, version).

Every benchmark is a :class:`~lioneval.benchmarks.base.Benchmark` registered in ``lioneval.registry.BENCHMARKS``
(or through the ``lioneval.benchmarks`` entry-point group); callers get one with :func:`load` and ask it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lioneval.benchmarks.base import Benchmark, DataSource
from lioneval.errors import ConfigError, LionEvalError
from lioneval.registry import BENCHMARKS

__all__ = ["Benchmark", "DataSource", "find", "load", "names", "split_version"]


def load(name: str | Benchmark, data: str | Path | None = None, *, baseline: str | None = None,
         **options: Any) -> Benchmark:
    """The benchmark registered as ``name`` on ``data`` (its default location when None), with ``baseline``
    (default: the benchmark's). A Benchmark object passes through unchanged."""
    if isinstance(name, Benchmark):
        return name
    name, version = split_version(name)
    cls = BENCHMARKS.get(name)
    if version is not None:
        if version not in cls.versions:
            raise ConfigError(f"{name} has no version {version!r}",
                              fix=f"use one of: {', '.join(f'{name}@{v}' for v in cls.versions) or name}")
        options["version"] = version
    try:
        bench = cls(data, baseline=baseline, **options)
    except TypeError as e:
        raise ConfigError(f"benchmark {name!r} does not take these settings: {e}",
                          fix=f"leave out the options {sorted(options)} for {name}") from e
    bench.name = name  # records carry the name it is registered under, so they find it again
    return bench


def split_version(spec: str) -> tuple[str, str | None]:
    """``"arena-hard@v2.0"`` -> ``("arena-hard", "v2.0")``; a name without ``@`` has no version (the default)."""
    name, sep, version = spec.partition("@")
    if sep and not version:
        raise ConfigError(f"benchmark {spec!r} names no version after '@'", fix=f"e.g. {name}@VERSION, or just {name}")
    return name, (version if sep else None)


def find(name: str) -> type[Benchmark] | None:
    """The class registered as ``name``, or None when it is not registered or cannot be imported (a store may hold
    records of a benchmark whose plug-in is not installed here): for reading class attributes such as
    ``headline`` without loading any data."""
    name = name.partition("@")[0]
    if name not in BENCHMARKS.entries:
        return None
    try:
        return BENCHMARKS.get(name)
    except (ImportError, LionEvalError):
        return None


def names() -> list[str]:
    return BENCHMARKS.names()
