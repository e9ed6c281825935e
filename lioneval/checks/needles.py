"""Which of the checks' needles a text holds, found once per text for the rules and the sentence gate alike.

A rule's pattern (``answers``) and a cue of the judge-addressing gate (``semantic``) each run only on texts holding
one of their needles (plain substrings of the lower-cased, normalised text), so a clean answer costs a few substring
searches rather than a regular expression per pattern. Both ask about many of the same needles ("judge", "verdict",
"answer"), and both read every answer of a batch; the union of their needles is searched once per text. Within
``shared()`` (``answers.check_answers`` reads a batch in it) the result is remembered for the second reader and
forgotten when the block ends, so nothing outlives the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_ALL: list[str] = []
_KNOWN: set[str] = set()
_local = threading.local()


def register(needles: Iterable[str]) -> None:
    """Adds ``needles`` to those ``present`` looks for (done when the rules and cues are defined)."""
    new = sorted(set(needles) - _KNOWN)
    _KNOWN.update(new)
    _ALL.extend(new)


def present(low: str) -> frozenset[str]:
    """The registered needles that occur in ``low`` (a lower-cased, normalised text)."""
    memo: dict[str, frozenset[str]] | None = getattr(_local, "memo", None)
    if memo is not None and low in memo:
        return memo[low]
    found = frozenset([n for n in _ALL if n in low])
    if memo is not None:
        memo[low] = found
    return found


@contextmanager
def shared() -> Iterator[None]:
    """Within the block (in this thread), each text's needles are searched once and remembered."""
    outer = getattr(_local, "memo", None)
    if outer is None:
        _local.memo = {}
    try:
        yield
    finally:
        if outer is None:
            _local.memo = None
