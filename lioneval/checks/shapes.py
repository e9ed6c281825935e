"""Answer shapes that game a judge without a word to it: master-key openers and length-only padding.

* ``master_key``: a turn that is nothing but an opener (":", "Thought process:", "Solution", "Let's solve this step
  by step.") and stopped there. Published work (after Zheng et al., ICLR 2025) shows that such content-free openers
  make LLM judges accept empty answers, across judge families. A turn that stopped at the token limit is not one:
  the model was cut off, a quality problem, not an attack.
* ``padding``: filler that only makes an answer longer: a long run of whitespace, invisible characters or repeated
  punctuation. Nothing a model writes for a reader looks like that.
* ``repetition``: one short unit (a line, a sentence, a word) repeated back to back until it fills a third of the
  answer. Padding can look like this, but so do the degenerate loops of weak models (several of the 31 official
  MT-Bench answer sets have them), so alone it is only worth a look; with judge-addressing text it counts.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = ["ShapeHit", "master_key", "padding", "scan_shapes"]

_OPENER_WORDS = re.compile(
    r"(?:(?:okay|ok|sure|certainly|alright|well|so|now|first|firstly|here's|here|is|are|let's|lets|let|us|me|the|my"
    r"|a|an|this|as|follows|below|i|i'll|will|think|thinking|about|it|solve|solving|work|working|through|break|down"
    r"|problem|question|task|understand|carefully|step|by|\d|thought|thoughts|process|solution|answer|final"
    r"|reasoning|analysis|explanation|response|detailed|steps|approach|result|output|of|to|on|with|for|and|we|can"
    r"|in|at|look|go|start|begin|consider|following)\b[\s,]*)+"
)
_OPENER_KEY = re.compile(r"\b(?:solution|answer|thoughts?|reasoning|steps?|solv\w*|analysis|explanation|response"
                         r"|working|think\w*|let's|let us|let me|here's|here is|process|approach|result|output)\b")
_PUNCT_ONLY = re.compile(r"^[\W_]*$")
_RUN = re.compile(r"(?:[\s\u200b\u200c\u200d\u2060\ufeff\u00a0]{120,})|([^\w\s])\1{59,}")
_MIN_REPEATS = 8
_FILLERS = (" ", "\n", "\t", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00a0", ".", "-", "=", "*", "#", "_",
            "~", "+", "/", "|", "!", "?", ",", ";", ":")
_UNIT = re.compile(r"[^\n.!?]*[.!?]*\s*")


@dataclass(frozen=True)
class ShapeHit:
    rule: str
    start: int
    end: int
    what: str


def master_key(text: str) -> ShapeHit | None:
    """The turn when it is only an opener or punctuation (at most eight words), else None."""
    stripped = text.strip()
    if len(stripped) > 60 or len(stripped.split()) > 8:
        return None
    core = stripped.lower().replace("\u2019", "'").rstrip(":.!…-–— \t").lstrip("#*>- \t")
    opener = "\n" not in core and _OPENER_WORDS.fullmatch(core) is not None and _OPENER_KEY.search(core) is not None
    if (stripped and _PUNCT_ONLY.match(stripped)) or opener:
        s = text.find(stripped[:1]) if stripped else 0
        return ShapeHit("master_key", s, s + len(stripped), "an answer that is only an opener")
    return None


def padding(text: str) -> ShapeHit | None:
    """The first filler run (``padding``: whitespace, invisible characters or punctuation) or, failing that, a unit
    repeated back to back (``repetition``)."""
    m = _RUN.search(text) if any(c * 20 in text for c in _FILLERS) else None
    if m:
        return ShapeHit("padding", m.start(), m.end(), "a long run of filler characters")
    n = len(text)
    if n < 200:
        return None
    data = text.encode("utf-8")
    if len(zlib.compress(data, 1)) * 4 > len(data):  # honest prose compresses to 35-50%; padding far below
        return None
    # the same unit (a word, a sentence or a line) back to back _MIN_REPEATS times or more, covering a third
    for pieces in (text.split(), _UNIT.findall(text)):
        best, run, total = 0, 1, 0
        for prev, cur in zip(pieces, pieces[1:], strict=False):
            run = run + 1 if cur == prev and cur.strip() else 1
            if run >= _MIN_REPEATS and run * len(cur) > best:
                best, total = run * len(cur), run
                unit = cur
        if best * 3 >= n:
            start = text.find(unit)
            return ShapeHit("repetition", start, start + best, f"{unit.strip()[:30]!r} repeated {total} times")
    return None


def scan_shapes(turns: list[str], finish_reasons: list[str] | None = None) -> list[tuple[int, ShapeHit]]:
    """(turn, hit) for every master-key, padding or repetition turn that did not stop at the token limit."""
    out = []
    for i, text in enumerate(turns):
        if finish_reasons and i < len(finish_reasons) and finish_reasons[i] == "length":
            continue
        for hit in (master_key(text), padding(text)):
            if hit is not None:
                out.append((i, hit))
    return out
