"""Errors a user can act on: each says what failed, why, and the fix. The CLI turns them into exit code 2."""

from __future__ import annotations


class LionEvalError(Exception):
    """Base for errors caused by input or environment, not by a bug."""

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message}. Fix: {fix}" if fix else message)


class UnknownNameError(LionEvalError, KeyError):
    """A registry name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class MissingExtraError(LionEvalError, ImportError):
    """An optional dependency is not installed."""


class DataError(LionEvalError, ValueError):
    """Benchmark or store data that cannot be read."""


class StoreError(LionEvalError):
    """The run store cannot be opened or written."""


class ConfigError(LionEvalError, ValueError):
    """A configuration (recipe, run settings, judge file) with an unknown key or a wrong value."""


class IncompleteError(LionEvalError):
    """Work left unfinished (judgments unanswered, or failed beyond the threshold): stored as incomplete, exit 3."""

    exit_code = 3


class JudgeUnavailableError(LionEvalError):
    """The judge answered none of the requests (down, unreachable, or refusing every call)."""
