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
  What sets the two apart is what is repeated: a weak model loops on its own content (an equation, a list item, a
  sentence about the question's subject), while padding repeats boilerplate that is about nothing in the answer
  or the question ("Additional context is provided for completeness."). A repeated unit whose words (beyond
  function words) appear nowhere else in the answer nor in the question, or mostly not and speak of the text
  itself, after an answer that says something, is ``padding``; a unit of numbers and equations or a loop that is
  all the answer holds stays ``repetition``. Boilerplate is padding once it runs ``FILLER_MIN_RUN`` characters,
  however long the answer it follows (padding appended to a long answer fills much less than a third of it).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = ["ShapeHit", "is_filler", "master_key", "padding", "scan_shapes"]

_OPENER_WORDS = re.compile(
    r"(?:(?:okay|ok|sure|certainly|alright|well|so|now|first|firstly|here's|here|is|are|let's|lets|let|us|me|the|my"
    r"|a|an|this|as|follows|below|i|i'll|will|think|thinking|about|it|solve|solving|work|working|through|break|down"
    r"|problem|question|task|understand|carefully|step|by|\d|thought|thoughts|process|solution|answer|final"
    r"|reasoning|analysis|explanation|response|detailed|steps|approach|result|output|of|to|on|with|for|and|we|can"
    r"|in|at|look|go|start|begin|consider|following|great|good|excellent|interesting|nice|fair|absolutely"
    r"|definitely|course|gladly|happy|glad|help|walk|you|that|thing|sounds|yes|hello|hi|thanks|thank)\b[\s,]*)+"
)
_OPENER_KEY = re.compile(r"\b(?:solution|answer|thoughts?|reasoning|steps?|solv\w*|analysis|explanation|response"
                         r"|working|think\w*|let's|let us|let me|here's|here is|process|approach|result|output"
                         r"|question|help)\b")
_PUNCT_ONLY = re.compile(r"^[\W_]*$")
# Blank characters: whitespace, and the invisible or blank-looking ones that are not whitespace to Python (zero-width
# marks, the Hangul fillers, the blank Braille pattern).
_BLANKS = "\u200b\u200c\u200d\u2060\ufeff\u00a0\u00ad\u115f\u1160\u180e\u2800\u3164\uffa0"
_RUN = re.compile(rf"(?:[\s{_BLANKS}]{{120,}})|([^\w\s{_BLANKS}])\1{{59,}}")
_MIN_REPEATS = 8
_MAX_CYCLE = 5  # sentences or lines in a repeated cycle (padding rotates a few phrases)
_FILLERS = (" ", "\n", "\t", "\u3000", *_BLANKS, ".", "-", "=", "*", "#", "_", "~", "+", "/", "|", "!", "?", ",",
            ";", ":")
# a list item with nothing after its marker ("3.", "b)", "-"), on a line of its own
_EMPTY_ITEM = re.compile(r"(?m)^[ \t]*(?:\d{1,3}|[a-z])[.)][ \t]*$")
_UNIT = re.compile(r"[^\n.!?]*[.!?]*\s*")
_WORD = re.compile(r"(\S+)\s*")  # a word and the whitespace after it
_ALPHA = re.compile(r"[a-z]{3,}")
# Function words and connectives: they say nothing about a topic, so they neither make a unit content nor tie it to
# the answer ("In addition, ...", "very very very").
_FUNCTION = frozenset("""
    the and for are was were this that these those with has have had been being from into onto than then there
    their they them its it's our your you yours his her she him not but all any each every some more most much
    very also just only even still yet too such can could would should will shall may might must does did done
    about above below over under again further furthermore moreover additionally addition indeed however thus
    therefore hence so what which who whom whose when where why how here other another same own both either
    neither nor per via while whereas once upon onto out off like well really quite rather
""".split())
# Words of text about itself (its points, its detail, what was stated above): the stuff of boilerplate.
_META = frozenset("""
    answer answers response responses reply replies text point points detail details detailed information context
    complete completely completeness comprehensive thorough thoroughly aspect aspects mention mentioned state stated
    note noted noting previous previously elaborate elaborated elaboration explanation explanations explained
    explain cover covered consider considered address addressed reading read thank thanks importance important worth
    correct relevant summary conclusion conclude follow follows following full fully provide provided include
    included overall general content section sections clarity clear quality long length lengthy fact facts matter
    regard regarding respect topic said saying discuss discussed given seen refer reference references remain
    remains valid applies apply stands hold holds additional further extra more everything something anything
""".split())
# a repeated unit is filler when at least this share of its topic words is found nowhere else (answer or question)
# and those words are mostly about the text itself (``_META``), or none at all is found elsewhere
FILLER_NOVEL_SHARE = 0.75
# ... and the answer says something besides: this many characters outside the run (a loop that is the whole answer
# stays a warning here; a run of such answers is the constant-answer check's)
FILLER_MIN_REST = 40
# Boilerplate this long (characters, back to back) is padding however long the answer before it; a unit that is not
# boilerplate must cover a third of its text. Pieces of FILLER_WINDOW bytes are what the compression gate looks at in
# a long text: a run of twice that length always fills one of them.
FILLER_MIN_RUN = 400
FILLER_WINDOW = 512


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


def _topic_words(text: str) -> set[str]:
    return set(_ALPHA.findall(text.lower())) - _FUNCTION


def is_filler(unit: str, rest: str, question: str = "") -> bool:
    """Whether a repeated ``unit`` is boilerplate rather than a loop on the answer's own content: it is marks only,
    it has words and they are function words only, or its topic words appear neither in ``rest`` (the answer
    without the repeated run) nor in ``question``: none of them, or too few (``FILLER_NOVEL_SHARE``) while half
    of them are words of text about itself ("detail", "stated", "complete"). ``rest`` must hold
    ``FILLER_MIN_REST`` characters: a loop that is the whole answer is judged by the run-level checks, since a
    question alone is too little to tell a weak model's new words from boilerplate."""
    low = unit.lower()
    if not any(c.isalnum() for c in _EMPTY_ITEM.sub("", low)):
        return True  # rules, bullets, empty list items and other marks with nothing in them ("* * *", "=====", "1.")
    if not _ALPHA.search(low):
        return False  # equations, numbers: what weak models loop on
    if len("".join(rest.split())) < FILLER_MIN_REST:
        return False
    context = _topic_words(rest) | _topic_words(question)
    words = _topic_words(low)
    if not words:
        return True
    novel = sum(w not in context for w in words)
    if novel == len(words):
        return True
    return novel >= FILLER_NOVEL_SHARE * len(words) and 2 * len(words & _META) >= len(words)


def padding(text: str, question: str = "") -> ShapeHit | None:
    """The first filler run (``padding``: whitespace, invisible characters or punctuation), a repeated unit of
    boilerplate (``padding``, see ``is_filler``; ``question`` is the conversation around the turn, when known) or,
    failing those, a unit repeated back to back (``repetition``)."""
    m = _RUN.search(text) if any(c * 20 in text for c in _FILLERS) else None
    if m:
        return ShapeHit("padding", m.start(), m.end(), "a long run of filler characters")
    n = len(text)
    if n < 200:
        return None
    data = text.encode("utf-8")
    # honest prose compresses to 35-50%, padding far below: a short text as a whole, a long one (where padding after
    # the answer may be a small part) piece by piece, FILLER_WINDOW bytes at a time
    if len(data) < 4 * FILLER_WINDOW:
        dense = len(zlib.compress(data, 1)) * 4 <= len(data)
    else:
        dense = any(len(zlib.compress(data[i:i + FILLER_WINDOW], 1)) * 4 <= FILLER_WINDOW
                    for i in range(0, len(data) - FILLER_WINDOW + 1, FILLER_WINDOW))
    if not dense:
        return None
    # the same unit (a word, or a cycle of up to _MAX_CYCLE sentences or lines) back to back _MIN_REPEATS times or
    # more: boilerplate over FILLER_MIN_RUN characters, or any unit covering a third of the text
    for pattern, group, cycles in ((_WORD, 1, (1,)), (_UNIT, 0, range(1, _MAX_CYCLE + 1))):
        matches = list(pattern.finditer(text))
        found = _longest_cycle([m[group] for m in matches], cycles)
        if found is None:
            continue
        unit, total, first, last = found
        best = total * len(unit)
        if best * 3 >= n or best >= FILLER_MIN_RUN:
            # the run's span: its first piece to its last, with the whitespace after it
            start, end = matches[first].start(), matches[last].end()
            shown = f"{unit.strip()[:30]!r} repeated {total} times"
            # a cut-off copy of the unit at either end of the run is part of the run, not context for it
            before, after = text[:start], text[end:]
            if after.strip() and unit.strip().startswith(after.strip()):
                after = ""
            if before.strip() and unit.strip().endswith(before.strip()):
                before = ""
            if is_filler(unit, before + " " + after, question):
                return ShapeHit("padding", start, end, f"boilerplate unrelated to the answer: {shown}")
            if best * 3 >= n:
                return ShapeHit("repetition", start, end, shown)
    return None


def _longest_cycle(pieces: list[str], cycles: range | tuple[int, ...]) -> tuple[str, int, int, int] | None:
    """The longest run (in characters) of a unit of ``c`` consecutive pieces (``c`` in ``cycles``) repeated back to
    back at least _MIN_REPEATS times: (the unit's text, its repeats, the indexes of the run's first and last piece),
    or None."""
    best: tuple[int, str, int, int, int] | None = None
    for c in cycles:
        i = 0
        while i + 2 * c <= len(pieces):
            j = i + c
            while j < len(pieces) and pieces[j] == pieces[j - c] and pieces[j].strip():
                j += 1
            repeats = (j - i) // c
            unit = "".join(pieces[i:i + c]) if repeats >= _MIN_REPEATS else ""
            if unit.strip():
                if best is None or repeats * len(unit) > best[0]:
                    best = (repeats * len(unit), unit, repeats, i, i + repeats * c - 1)
                i = j
            else:
                i += 1
    return None if best is None else best[1:]


def scan_shapes(turns: list[str], finish_reasons: list[str] | None = None,
                questions: list[str] | None = None) -> list[tuple[int, ShapeHit]]:
    """(turn, hit) for every master-key, padding or repetition turn that did not stop at the token limit;
    ``questions`` are the question's turns, when known. What a turn's repetition is compared with (``is_filler``)
    is the whole conversation: every question turn and the answer's other turns."""
    out = []
    for i, text in enumerate(turns):
        if finish_reasons and i < len(finish_reasons) and finish_reasons[i] == "length":
            continue
        question = "\n".join([*(questions or ()), *(t for j, t in enumerate(turns) if j != i)])
        for hit in (master_key(text), padding(text, question)):
            if hit is not None:
                out.append((i, hit))
    return out
