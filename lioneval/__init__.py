"""lioneval: evaluation-in-the-loop benchmarking and judging for aligned LLMs.

Importing this package is cheap: names below load their modules on first use. Benchmarks, judges, backends and
trainers are imported when chosen.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the single source: pyproject reads it from here

_LAZY = {
    "Answer": "lioneval.types",
    "CheckResult": "lioneval.types",
    "Estimate": "lioneval.types",
    "Game": "lioneval.types",
    "Judgment": "lioneval.types",
    "Question": "lioneval.types",
    "Report": "lioneval.types",
    "RunSpec": "lioneval.types",
    "LionEvalError": "lioneval.errors",
    "MissingExtraError": "lioneval.errors",
    "UnknownNameError": "lioneval.errors",
    "RunStore": "lioneval.store",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lioneval' has no attribute {name!r}")
