"""Which of the checks' needles a text holds, found once per text for the rules and the sentence gate alike.

A rule's pattern (``answers``) and a cue of the judge-addressing gate (``semantic``) each run only on texts holding
one of their needles (plain substrings of the lower-cased, normalised text), so a clean answer costs a few substring
searches rather than a regular expression per pattern. Both ask about many of the same needles ("judge", "verdict",
"answer"), and both read every answer; the union of their needles is searched once per text here and remembered.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

_ALL: list[str] = []
_KNOWN: set[str] = set()


def register(needles: Iterable[str]) -> None:
    """Adds ``needles`` to those ``present`` looks for (done when the rules and cues are defined)."""
    new = sorted(set(needles) - _KNOWN)
    if new:
        _KNOWN.update(new)
        _ALL.extend(new)
        present.cache_clear()


@lru_cache(maxsize=32768)
def present(low: str) -> frozenset[str]:
    """The registered needles that occur in ``low`` (a lower-cased, normalised text)."""
    return frozenset([n for n in _ALL if n in low])
