"""lioneval: evaluation-in-the-loop benchmarking and judging for aligned LLMs.

Importing this package is cheap: it loads the vocabulary and registries only. Benchmarks, judges, backends and
trainers are imported when chosen.
"""

__version__ = "0.1.0"  # the single source: pyproject reads it from here

from lioneval.errors import LionEvalError, MissingExtraError, UnknownNameError
from lioneval.types import (
    Answer,
    CheckResult,
    Estimate,
    Game,
    Judgment,
    Question,
    Report,
    RunSpec,
)

__all__ = [
    "__version__",
    "Answer",
    "CheckResult",
    "Estimate",
    "Game",
    "Judgment",
    "LionEvalError",
    "MissingExtraError",
    "Question",
    "Report",
    "RunSpec",
    "UnknownNameError",
]
