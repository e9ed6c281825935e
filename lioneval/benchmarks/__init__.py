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

__all__ = ["Benchmark", "DataSource", "find", "load", "names", "of", "spec_name", "split_version"]


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


def of(name: str, version: str | None = None) -> Benchmark:
    """The benchmark as stored records name it (``Report.benchmark`` and ``benchmark_version``): its default version
    when ``version`` is empty or not one the class lists (records of a benchmark that has a single version)."""
    cls = BENCHMARKS.get(name)
    if version and version in cls.versions and version != cls.versions[0]:
        return load(f"{name}@{version}")
    return load(name)


def spec_name(bench: Benchmark) -> str:
    """How to name this benchmark object's version on the command line: ``arena-hard@v2.0``, or just its name for
    the default version."""
    if bench.versions and bench.version != bench.versions[0]:
        return f"{bench.name}@{bench.version}"
    return bench.name


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
