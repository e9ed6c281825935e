"""Which of the checks' needles a text holds, found once per text for the rules and the sentence gate alike.

A rule's pattern (``answers``) and a cue of the judge-addressing gate (``semantic``) each run only on texts holding
one of their needles (plain substrings of the lower-cased, normalised text), so a clean answer costs one search for
needles rather than a regular expression per pattern. Both ask about many of the same needles ("judge", "verdict",
"answer"), and both read every answer of a batch; the union of their needles is searched once per text. Within
``shared()`` (``answers.check_answers`` reads a batch in it) the result is remembered for the second reader and
forgotten when the block ends, so nothing outlives the batch.

The needles are found in one pass over the text by an Aho-Corasick automaton (``pyahocorasick``), which reports
every occurrence of every needle, overlapping ones included; one-character needles, which would report most
characters of a text, are found by ``in``. ``Index`` maps found needles back to the patterns that asked for them, so
a reader visits only the patterns it must run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ahocorasick

_KNOWN: set[str] = set()
_local = threading.local()
_lock = threading.Lock()
_search: tuple[Any, tuple[str, ...]] | None = None  # the automaton of the longer needles, the one-character ones


def register(needles: Iterable[str]) -> None:
    """Adds ``needles`` to those ``present`` looks for (done when the rules and cues are defined)."""
    global _search
    new = set(needles) - _KNOWN
    if new:
        with _lock:
            _KNOWN.update(new)
            _search = None


def _build() -> tuple[Any, tuple[str, ...]]:
    automaton = ahocorasick.Automaton()
    for n in sorted(_KNOWN):
        if len(n) > 1:
            automaton.add_word(n, n)
    automaton.make_automaton()
    return automaton, tuple(sorted(n for n in _KNOWN if len(n) <= 1))


def present(low: str) -> frozenset[str]:
    """The registered needles that occur in ``low`` (a lower-cased, normalised text)."""
    global _search
    memo: dict[str, frozenset[str]] | None = getattr(_local, "memo", None)
    if memo is not None and low in memo:
        return memo[low]
    search = _search
    if search is None:
        with _lock:
            search = _search = _search or _build()
    automaton, chars = search
    found = {n for _, n in automaton.iter(low)} if len(automaton) else set()
    found.update(c for c in chars if c in low)
    out = frozenset(found)
    if memo is not None:
        memo[low] = out
    return out


class Index:
    """Which of a reader's patterns (given in order by their needles) a text's found needles call for."""

    def __init__(self, needles: Sequence[Iterable[str]]):
        by: dict[str, list[int]] = {}
        for i, group in enumerate(needles):
            for n in set(group):
                by.setdefault(n, []).append(i)
        self._by = {n: tuple(v) for n, v in by.items()}

    def __call__(self, found: Iterable[str]) -> list[int]:
        """Positions, in order, of the patterns holding one of ``found`` among their needles."""
        hit: set[int] = set()
        for n in found:
            hit.update(self._by.get(n, ()))
        return sorted(hit)


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
