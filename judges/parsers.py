"""Verdict parsers for the three judge protocols: MT-Bench ratings and pairwise verdicts, Arena-Hard labels, and the
AlpacaEval preferences (the 2.0 weighted one from logprobs, and the ranking one from the judge's text).

A parser never raises on judge output and never guesses: a verdict it cannot read is a ``ParseResult`` with
``value=None``, a human ``error`` and a machine ``code``, so a failure is counted as a failure and not as a loss.
The caller keeps the raw judge text next to the result.

Rules that differ from the reference implementations, and why:

* ``parse_rating`` follows FastChat v0.2.36 (``fastchat/llm_judge/common.py``): the first ``[[n]]`` wins, and only
  when there is none does a single-bracket ``[n]`` count. On the 5,280 published GPT-4 judgments this reproduces
  every recorded score. Two additions: the 1-10 range is checked (FastChat stores 0 or 11 as a score), and a
  single-bracket number counts only when it reads as a rating (alone on its line, or after "rating"/"score"/"rate"
  on the same line), so a citation ``[1]`` in prose or code such as ``array[0]`` is not taken for a score. FastChat
  read ``array[0]`` in two weak-judge outputs as a score of 0; here they are "no rating found".
* ``parse_mtbench_pairwise`` fails with "ambiguous" when distinct verdicts appear, where FastChat prefers A, then B,
  then C by substring search (which would silently favour position A).
* ``parse_pairwise_verdict`` matches Arena-Hard's ``get_score``: one distinct label, or none at all (then the judge
  is asked once more, see ``needs_followup``); it also accepts spaces inside the brackets and mirrored spellings.
* ``parse_alpaca_ranking`` reads what alpaca_eval's ``ranking_parser`` reads (the rank of output_1's name in a list of
  ``{'model', 'rank'}`` entries) but also finds the list inside prose or a code fence, where ``ranking_parser``
  evaluates the whole reply and fails on anything around the list (open judges often wrap it). Two entries with
  the same rank are "ambiguous": the official parser would count such a tie for output_1, a position bias.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AMBIGUOUS",
    "MALFORMED",
    "MISSING_IDS",
    "NO_LOGPROBS",
    "NO_VERDICT",
    "OUT_OF_RANGE",
    "PAIRWISE_LABELS",
    "PARSER_VERSION",
    "ParseResult",
    "needs_followup",
    "parse_alpaca_logprobs",
    "parse_alpaca_ranking",
    "parse_mtbench_pairwise",
    "parse_pairwise_verdict",
    "parse_rating",
    "parser_for",
]

# Goes into the judge id: bump it whenever a rule below changes what a given text parses to.
PARSER_VERSION = "1"

NO_VERDICT = "no_verdict"
AMBIGUOUS = "ambiguous"
OUT_OF_RANGE = "out_of_range"
MALFORMED = "malformed"
NO_LOGPROBS = "no_logprobs"
MISSING_IDS = "missing_ids"

PAIRWISE_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
# Position A's share of the game; how strongly a label counts is left to the scoring code, which keeps the label.
_PAIRWISE_SHARE = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}


@dataclass(frozen=True)
class ParseResult:
    """A parsed verdict, or why there is none (``value is None`` and ``error`` says why; ``code`` is its kind)."""

    value: float | None = None
    label: str | None = None
    error: str | None = None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None


def _fail(code: str, error: str, label: str | None = None) -> ParseResult:
    return ParseResult(value=None, label=label, error=error, code=code)


def _excerpt(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else "..." + text[-n:])


# --- MT-Bench single grading ---------------------------------------------------------------------------------------

# The lookbehind keeps code such as `a[[0]]` or `m[0]` from reading as a score.
_DOUBLE = re.compile(r"(?<!\w)\[\[\s*(\d+(?:\.\d*)?)\s*\]\]")
_SINGLE = re.compile(r"(?<![\w\]\[])\[\s*(\d+(?:\.\d*)?)\s*\](?![\[\]\(])")
# Text before a single-bracket number on its line that marks it as a rating ("Rating: [7]", "I rate it [7]").
_RATING_CUE = re.compile(r"(?i)\b(?:rating|rated|rate|score|scored|grade)\b[^.!?\n]{0,40}$")
_DECOR = re.compile(r"^[\s*_#>:.\-|`\"']*$")


def _rating_like(text: str, m: re.Match[str]) -> bool:
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    before = text[line_start : m.start()]
    after = text[m.end() : len(text) if line_end < 0 else line_end]
    if _DECOR.match(before) and _DECOR.match(after):
        return True
    return bool(_RATING_CUE.search(before))


def _number_label(s: str) -> tuple[float, str]:
    value = float(s)
    return value, (str(int(value)) if value.is_integer() else repr(value))


def parse_rating(
    text: str | None,
    *,
    low: float = 1,
    high: float = 10,
    multiple: Literal["first", "last", "fail"] = "first",
) -> ParseResult:
    """Read an MT-Bench rating written as ``[[N]]`` (``[[8]]``, ``[[8.5]]``, ``[[ 8 ]]``).

    ``multiple`` decides between several different ratings: ``"first"`` is FastChat's rule (and agrees with every
    published GPT-4 judgment), ``"last"`` takes the judge's final word, ``"fail"`` reports them as ambiguous.
    """
    if not text or not text.strip():
        return _fail(NO_VERDICT, "no rating found: the judge output is empty")
    candidates = [m.group(1) for m in _DOUBLE.finditer(text)]
    if not candidates:
        candidates = [m.group(1) for m in _SINGLE.finditer(text) if _rating_like(text, m)]
    if not candidates:
        return _fail(NO_VERDICT, f"no rating found: no [[N]] in the judge output (ends with {_excerpt(text)})")
    parsed = [_number_label(c) for c in candidates]
    distinct = sorted({v for v, _ in parsed})
    if len(distinct) > 1 and multiple == "fail":
        shown = ", ".join(f"[[{_number_label(str(v))[1]}]]" for v in distinct)
        return _fail(AMBIGUOUS, f"ambiguous: several different ratings ({shown})")
    value, label = parsed[-1] if multiple == "last" else parsed[0]
    if not low <= value <= high:
        return _fail(OUT_OF_RANGE, f"rating {label} is outside the {low:g}-{high:g} scale", label=label)
    return ParseResult(value=value, label=label)


# --- MT-Bench pairwise -------------------------------------------------------------------------------------------

_MTB_PAIR = re.compile(r"\[\[\s*([ABCabc])\s*\]\]")
_MTB_LABEL = {"A": ("A", 1.0), "B": ("B", 0.0), "C": ("tie", 0.5)}


def parse_mtbench_pairwise(text: str | None) -> ParseResult:
    """Read an MT-Bench pairwise verdict: ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie).

    ``value`` is position A's share (1, 0, 0.5); ``label`` is "A", "B" or "tie" as FastChat stores the winner.
    """
    if not text or not text.strip():
        return _fail(NO_VERDICT, "no verdict found: the judge output is empty")
    found = {m.group(1).upper() for m in _MTB_PAIR.finditer(text)}
    if not found:
        return _fail(NO_VERDICT, f"no verdict found: no [[A]], [[B]] or [[C]] (ends with {_excerpt(text)})")
    if len(found) > 1:
        shown = ", ".join(f"[[{c}]]" for c in sorted(found))
        return _fail(AMBIGUOUS, f"ambiguous: several different verdicts ({shown})")
    label, value = _MTB_LABEL[found.pop()]
    return ParseResult(value=value, label=label)


# --- Arena-Hard pairwise -----------------------------------------------------------------------------------------

_BRACKETED = re.compile(r"\[\[([^\[\]\n]{1,24})\]\]")
_VERDICT = re.compile(r"([AB])(>>|>|==|=|<<|<)([AB])")
_VERDICT_CHARS = re.compile(r"^[AB<>=]+$")


def _normalise_verdict(raw: str) -> str | None:
    """'B<<A' -> 'A>>B', 'A<B' -> 'B>A', 'B=A' -> 'A=B'; None for anything that is not a verdict."""
    m = _VERDICT.fullmatch(raw)
    if not m:
        return None
    left, op, right = m.groups()
    if left == right:
        return None
    if op in ("=", "=="):
        return "A=B"
    if op.startswith("<"):
        left, right, op = right, left, op.replace("<", ">")
    return f"{left}{op}{right}"


def parse_pairwise_verdict(text: str | None, *, rule: str = "one") -> ParseResult:
    """Read an Arena-Hard verdict: exactly one of ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]``.

    Mirrored spellings (``[[B<<A]]``), lower case and spaces inside the brackets are accepted and normalised.
    ``rule="one"`` (v0.1's ``get_score``): repeating the same verdict is fine; two different ones are "ambiguous".
    ``rule="last"`` (v2.0's ``get_score``): the last verdict counts, and only when there is no double-bracket one
    does a single-bracket ``[A>B]`` count. ``value`` is position A's share (1, 1, 0.5, 0, 0); the label keeps the
    strength.
    """
    if not text or not text.strip():
        return _fail(NO_VERDICT, "no verdict found: the judge output is empty")
    if rule == "last":
        return _last_verdict(text)
    verdicts: list[str] = []
    malformed: list[str] = []
    for m in _BRACKETED.finditer(text):
        raw = re.sub(r"\s+", "", m.group(1)).upper()
        if not _VERDICT_CHARS.match(raw):
            continue  # some other bracketed text, e.g. a rating
        label = _normalise_verdict(raw)
        if label is None:
            malformed.append(m.group(0))
        else:
            verdicts.append(label)
    distinct = sorted(set(verdicts), key=PAIRWISE_LABELS.index)
    if len(distinct) > 1:
        shown = ", ".join(f"[[{v}]]" for v in distinct)
        return _fail(AMBIGUOUS, f"ambiguous: several different verdicts ({shown})")
    if distinct:
        return ParseResult(value=_PAIRWISE_SHARE[distinct[0]], label=distinct[0])
    if malformed:
        return _fail(MALFORMED, f"malformed verdict {malformed[0]}: expected one of " + ", ".join(PAIRWISE_LABELS))
    return _fail(NO_VERDICT, f"no verdict found: no [[A>B]]-style label (ends with {_excerpt(text)})")


_SINGLE_BRACKETED = re.compile(r"(?<!\[)\[([^\[\]\n]{1,24})\](?!\])")


def _last_verdict(text: str) -> ParseResult:
    """Arena-Hard v2.0: the last double-bracket verdict, else the last single-bracket one."""
    for pattern in (_BRACKETED, _SINGLE_BRACKETED):
        labels = []
        for m in pattern.finditer(text):
            raw = re.sub(r"\s+", "", m.group(1)).upper()
            if _VERDICT_CHARS.match(raw):
                labels.append(_normalise_verdict(raw))
        if labels:
            label = labels[-1]
            if label is None:
                return _fail(MALFORMED, "malformed final verdict: expected one of " + ", ".join(PAIRWISE_LABELS))
            return ParseResult(value=_PAIRWISE_SHARE[label], label=label)
    return _fail(NO_VERDICT, f"no verdict found: no [[A>B]]-style label (ends with {_excerpt(text)})")


def needs_followup(result: ParseResult) -> bool:
    """Whether to ask the judge once more for its final label, as Arena-Hard v0.1 does when it found none.

    Only a missing verdict qualifies: an ambiguous or malformed one is the judge's answer and stays a failure.
    """
    return result.code == NO_VERDICT


# --- AlpacaEval 2.0 weighted -------------------------------------------------------------------------------------

# Byte-level BPE and SentencePiece spell a leading space this way when a server returns raw tokens.
_SPACE_MARKS = "\u0120\u2581"


def _token_key(token: str) -> str:
    return token.strip().lstrip(_SPACE_MARKS).strip()


def parse_alpaca_logprobs(
    top_logprobs: Sequence[Mapping[str, float]] | Mapping[str, float] | None,
    ids: tuple[str, str] = ("m", "M"),
    *,
    text: str | None = None,
    binarize: bool = False,
) -> ParseResult:
    """Preference from the first generated token's top logprobs (AlpacaEval 2.0 "weighted" evaluators).

    ``ids[0]`` names output_1 and ``ids[1]`` output_2; ``value = 1 + p2 / (p1 + p2)`` lies in [1, 2] (2 means
    output_2 is preferred). The ids are case-sensitive ("m" and "M" are different answers); surrounding whitespace
    on a token is ignored and the probabilities of spellings that differ only by it are added. An id missing from
    the top-k counts as probability 0, as in alpaca_eval's ``logprob_parser``; when both are missing the result is a
    failure, never 0.5. Without logprobs there is no weighted preference: the text answer alone (``text``) is only
    reported in the error, since reading it would silently change the protocol to a binary one.

    ``binarize`` is ``is_binarize`` of alpaca_eval's ``logprob_parser`` (the ``alpaca_eval_clf_*`` evaluators): 1 when
    ``ids[0]`` is strictly likelier than ``ids[1]``, else 2.
    """
    if len(ids) != 2 or ids[0] == ids[1]:
        raise ValueError(f"ids must be two different tokens, got {ids!r}")
    first: Mapping[str, float] | None
    if top_logprobs is None:
        first = None
    elif isinstance(top_logprobs, Mapping):
        first = top_logprobs
    else:
        first = top_logprobs[0] if len(top_logprobs) else None
    if not first:
        said = f" (its text answer was {_excerpt(text, 20)})" if text is not None else ""
        return _fail(NO_LOGPROBS, "backend returned no logprobs" + said + "; ask for top_logprobs >= 2")
    mass = [0.0, 0.0]
    seen = False
    for token, logprob in first.items():
        key = _token_key(str(token))
        if key not in ids:
            continue
        if logprob is None or math.isnan(logprob):
            return _fail(MALFORMED, f"logprob for token {token!r} is not a number")
        seen = True
        mass[ids.index(key)] += math.exp(min(float(logprob), 0.0))
    total = mass[0] + mass[1]
    if not seen or total <= 0.0:
        shown = ", ".join(repr(t) for t in list(first)[:8])
        return _fail(MISSING_IDS, f"neither {ids[0]!r} nor {ids[1]!r} among the first token's top logprobs ({shown})")
    value = (1.0 if mass[0] > mass[1] else 2.0) if binarize else 1.0 + mass[1] / total
    return ParseResult(value=value, label=ids[0] if mass[0] >= mass[1] else ids[1])


# --- AlpacaEval ranking ------------------------------------------------------------------------------------------

# A list of dicts: what a ranking answer looks like, found anywhere in the reply (prose, a code fence around it).
_RANKING_LIST = re.compile(r"\[\s*\{.*?\}\s*(?:,\s*\{.*?\}\s*)*,?\s*\]", re.DOTALL)
_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}


def _literal(text: str) -> object:
    """A Python or JSON literal, or None when ``text`` is neither (never evaluates code)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return None


def _ranks(entries: object, model_1: str) -> tuple[list[object], list[tuple[str, object]]] | None:
    """(ranks given to ``model_1``, (name, rank) of the other entries), or None when ``entries`` is not a ranking."""
    if not isinstance(entries, list) or not entries:
        return None
    mine: list[object] = []
    others: list[tuple[str, object]] = []
    for e in entries:
        if not isinstance(e, dict) or "model" not in e or "rank" not in e:
            return None
        name = str(e["model"]).strip()
        (mine.append(e["rank"]) if name == model_1 else others.append((name, e["rank"])))
    return mine, others


def _rank_value(rank: object) -> float | None:
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or rank not in (1, 2):
        return None
    return float(rank)


def parse_alpaca_ranking(text: str | None, model_1: str = "model_1") -> ParseResult:
    """Preference from a ranking answer, as AlpacaEval's ``ranking_parser`` evaluators ask for (``alpaca_eval_gpt4``
    and its twins): a list such as ``[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]``, in Python
    or JSON spelling, alone or inside prose or a code fence.

    ``model_1`` is the name output_1 carries in the prompt (the parser's ``model_1_name``; case-sensitive). ``value``
    is its rank: 1 when output_1 is preferred, 2 when output_2 is, the [1, 2] scale of the weighted preference.
    ``label`` names the output ranked first. A rank other than 1 or 2, no entry for ``model_1``, or two entries with
    the same rank fail; several lists in the reply must agree.
    """
    if not text or not text.strip():
        return _fail(NO_VERDICT, "no ranking found: the judge output is empty")
    whole = _ranks(_literal(text.strip()), model_1)  # the official parser reads the whole reply this way
    found = [whole] if whole is not None else [_ranks(_literal(m.group(0)), model_1)
                                               for m in _RANKING_LIST.finditer(text)]
    rankings = [r for r in found if r is not None]
    if not rankings:
        return _fail(NO_VERDICT, f"no ranking found: no list of model/rank entries (ends with {_excerpt(text)})")
    results = [_one_ranking(mine, others, model_1) for mine, others in rankings]
    ok = [r for r in results if r.ok]
    if len({r.value for r in ok}) > 1:
        return _fail(AMBIGUOUS, f"ambiguous: the reply holds rankings that put {model_1!r} both first and second")
    return ok[0] if ok else results[0]


def _one_ranking(mine: list[object], others: list[tuple[str, object]], model_1: str) -> ParseResult:
    if not mine:
        shown = ", ".join(repr(n) for n, _ in others[:4])
        return _fail(MISSING_IDS, f"the ranking has no entry for {model_1!r} (it ranks {shown})")
    values = {_rank_value(r) for r in mine}
    if None in values:
        bad = next(r for r in mine if _rank_value(r) is None)
        return _fail(OUT_OF_RANGE, f"rank {bad!r} of {model_1!r} is not 1 or 2")
    if len(values) > 1:
        return _fail(AMBIGUOUS, f"ambiguous: {model_1!r} is ranked both 1 and 2")
    value = values.pop()
    assert value is not None
    tied = [n for n, r in others if _rank_value(r) == value]
    if tied:
        return _fail(AMBIGUOUS, f"ambiguous: {model_1!r} and {tied[0]!r} share rank {int(value)}")
    if value == 1.0:
        return ParseResult(value=1.0, label=model_1)
    first = next((n for n, r in others if _rank_value(r) == 1.0), f"not {model_1}")
    return ParseResult(value=2.0, label=first)


def parser_for(output_format: str):
    """The text parser for a template's ``output_format`` ("[[rating]]", "[[A]]", "[[A>B]]", "ranking")."""
    table = {"[[rating]]": parse_rating, "[[A]]": parse_mtbench_pairwise, "[[A>B]]": parse_pairwise_verdict,
             "ranking": parse_alpaca_ranking}
    try:
        return table[output_format]
    except KeyError:
        raise ValueError(
            f"no text parser for output format {output_format!r}; known: {', '.join(table)} "
            "(the AlpacaEval logprob format is read with parse_alpaca_logprobs)"
        ) from None
