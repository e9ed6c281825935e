"""Answer-level detectors: text that imitates the judge instead of answering the user.

A null-model attack ("Cheating Automatic LLM Benchmarks", 2024) closes the judge template's answer block early,
fakes the end of the comparison and a new trivial task, and writes the verdict in the judge's own format. Each rule
below looks for one such ingredient; a rule has a severity (strong 3, medium 2, weak 1) and an answer is flagged when
its distinct rules add up to ``CheckConfig.flag_score``. One strong rule is enough (a ``[[A>>B]]`` in an answer is
never innocent outside code); weak ones, such as a base model continuing the dialogue with ``Human:``, only warn.

Robustness: matching runs on a normalised copy of the text (NFKC, zero-width and other format characters removed,
combining marks stripped, look-alike letters and brackets folded to ASCII, case-insensitive), and every hit is
mapped back to its span in the original text, which is what the flag reports. Code is found on the original text,
as a Markdown renderer (and a judge) would see it: fenced and indented blocks and inline code spans. A program that
prints brackets is not flagged; inside code only strong rules count, and only in combination.

One verdict field at the top of a scale (``verdict_record``) is common in honest ratings, so it only counts with
company; two of them in one record (a score sheet of tens, a JSON verdict with its winner) are that company
(``verdict_sheet``, medium), wherever the record sits, and whatever text follows it.

Rules know wordings. ``check_answers`` adds two detectors that do not: the shape rules of ``shapes`` (master-key
openers, filler padding: strong; back-to-back repetition: weak, since weak models loop) and the judge-addressing
sentences of ``semantic`` in the answer's prose (``addresses_evaluator``: medium, strong when the sentence model is
sure or the sentence is off the topic of its answer and question: such a sentence flags its answer alone, but its run
only with a second flagged answer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from lioneval.checks.config import CheckConfig, CheckStatus
from lioneval.checks.needles import Index, present, register, shared
from lioneval.checks.semantic import SemanticHit, scan_texts
from lioneval.checks.shapes import scan_shapes
from lioneval.types import Answer, CheckResult, Question

__all__ = [
    "RULES",
    "AnswerScan",
    "Hit",
    "Normalized",
    "Pattern",
    "Rule",
    "check_answers",
    "code_spans",
    "normalize",
    "scan_answer",
    "scan_text",
]

STRONG, MEDIUM, WEAK = 3, 2, 1

# --- normalisation ------------------------------------------------------------------------------------------------

# Letters and brackets that render like ASCII but survive NFKC: Cyrillic and Greek look-alikes, math and CJK
# brackets, guillemets. Folding them keeps "［［Ｂ>Ａ］］" or "⟦B>А⟧" (Cyrillic A) from slipping past the rules.
_CONFUSABLES = {
    **dict.fromkeys("АΑᎪ", "A"), **dict.fromkeys("ВΒᏴ", "B"), **dict.fromkeys("СϹᏟ", "C"), **dict.fromkeys("МΜᎷ", "M"),
    **dict.fromkeys("аα", "a"), **dict.fromkeys("ЬƄ", "b"), **dict.fromkeys("сϲ", "c"), "м": "m", "Е": "E", "Ε": "E",
    "е": "e", "О": "O", "Ο": "O", "о": "o", "ο": "o", "Р": "P", "Ρ": "P", "р": "p", "Т": "T", "Τ": "T", "Х": "X",
    "Χ": "X", "х": "x", "І": "I", "Ι": "I", "і": "i", "Ѕ": "S", "Ј": "J", "К": "K", "Κ": "K", "Н": "H", "Η": "H",
    "⟦": "[[", "⟧": "]]", "〚": "[[", "〛": "]]", "【": "[", "】": "]", "〔": "[", "〕": "]", "〖": "[", "〗": "]",
    "⟨": "<", "⟩": ">", "〈": "<", "〉": ">", "‹": "<", "›": ">", "«": "<<", "»": ">>", "≫": ">>", "≪": "<<",
    "⁄": "/", "∕": "/", "‘": "'", "’": "'", "“": '"', "”": '"', "\u2028": "\n", "\u2029": "\n", "\x85": "\n",
}
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@lru_cache(maxsize=65536)
def _fold(ch: str) -> str:
    """The ASCII-ish skeleton of one non-ASCII character ('' for invisible ones)."""
    if ch in _CONFUSABLES:
        return _CONFUSABLES[ch]
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        if c in _CONFUSABLES:
            out.append(_CONFUSABLES[c])
            continue
        cat = unicodedata.category(c)
        if cat in ("Cf", "Cc") and c not in "\n\t\r":
            continue  # zero-width spaces and joiners, bidi controls, soft hyphens: invisible to a reader
        if ord(c) > 0x7F:
            # Strip accents and other combining marks, so "Á" reads as "A" and "A" + U+0301 as "A".
            c = "".join(d for d in unicodedata.normalize("NFKD", c) if not unicodedata.category(d).startswith("M"))
            c = "".join(_CONFUSABLES.get(d, d) for d in c)
        out.append(c)
    return "".join(out)


class Normalized:
    """A normalised text and the way back to the original: ``span()`` maps a match to original offsets."""

    __slots__ = ("text", "_pieces", "_starts", "_ends")

    def __init__(self, text: str, pieces: list[tuple[int, int, int]] | None = None):
        self.text = text
        # (original start, original length, normalised length) per run; None when text is the original itself.
        self._pieces = pieces
        self._starts: list[int] | None = None
        self._ends: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original offsets of the normalised span [start, end): whole original characters, never half of one."""
        if self._pieces is None:
            return start, end
        if self._starts is None:
            self._index()
        assert self._starts is not None and self._ends is not None
        if end <= start:
            return self._starts[start], self._starts[start]
        return self._starts[start], self._ends[end - 1]

    def _index(self) -> None:
        starts: list[int] = []
        ends: list[int] = []
        for o0, olen, nlen in self._pieces or ():
            if olen == nlen:  # copied run: offsets move together
                starts.extend(range(o0, o0 + olen))
                ends.extend(range(o0 + 1, o0 + olen + 1))
            else:  # one original character folded into nlen characters (0 for an invisible one)
                starts.extend([o0] * nlen)
                ends.extend([o0 + olen] * nlen)
        starts.append(ends[-1] if ends else 0)  # the end of the text, for empty spans there
        self._starts, self._ends = starts, ends


def normalize(text: str) -> Normalized:
    """NFKC, invisible characters removed, marks stripped, look-alikes folded; ASCII text is returned unchanged."""
    if text.isascii():
        return Normalized(text)
    parts: list[str] = []
    pieces: list[tuple[int, int, int]] = []
    opos = 0
    for m in _NON_ASCII.finditer(text):
        if m.start() > opos:
            parts.append(text[opos : m.start()])
            pieces.append((opos, m.start() - opos, m.start() - opos))
        for j, ch in enumerate(m.group(0)):
            folded = _fold(ch)
            parts.append(folded)
            pieces.append((m.start() + j, 1, len(folded)))
        opos = m.end()
    if opos < len(text):
        parts.append(text[opos:])
        pieces.append((opos, len(text) - opos, len(text) - opos))
    return Normalized("".join(parts), pieces)


# --- code ---------------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})[^\n]*\n?(?:.*?)(?:^[ ]{0,3}\1[`~]*[ \t]*$|\Z)", re.M | re.S)
_INLINE = re.compile(r"(`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)\1(?!`)", re.S)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def code_spans(text: str) -> list[tuple[int, int]]:
    """Spans of fenced blocks (an unclosed fence runs to the end, as Markdown renders it), indented blocks (after a
    blank line, not inside a list) and inline code, in the original text."""
    spans = [(m.start(), m.end()) for m in _FENCE.finditer(text)] if ("```" in text or "~~~" in text) else []
    if "\n    " in text or "\n\t" in text:
        spans += _indented(text, spans)
    if "`" in text:
        spans += [(m.start(), m.end()) for m in _INLINE.finditer(text) if not _inside(m.start(), spans)]
    return sorted(spans)


def _indented(text: str, fenced: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    prev_blank = True
    last_text_line = ""
    start = None
    for line in text.splitlines(keepends=True):
        blank = not line.strip()
        indented = line.startswith(("    ", "\t")) and not blank
        if start is None and indented and prev_blank and not _LIST_ITEM.match(last_text_line) \
                and not last_text_line.startswith((" ", "\t")) and not _inside(pos, fenced):
            start = pos
        elif start is not None and not indented and not blank:
            out.append((start, pos))
            start = None
        if not blank and start is None:
            last_text_line = line
        prev_blank = blank
        pos += len(line)
    if start is not None:
        out.append((start, len(text)))
    return out


def _inside(pos: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(s <= pos < e for s, e in spans)


# --- rules --------------------------------------------------------------------------------------------------------
# Patterns are written in lower case and run on the lower-cased normalised text without re.IGNORECASE, which is
# ten times slower in Python's engine. A leading word boundary is checked after the match for the same reason, and
# each pattern runs only on texts holding one of its needles, so a clean answer costs a few substring searches.


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    needles: tuple[str, ...]
    word_start: bool = True  # the match must not start inside a word


@dataclass(frozen=True)
class Rule:
    name: str
    severity: int
    what: str
    patterns: tuple[Pattern, ...]


def _p(needles: str | Iterable[str], *alternatives: str, word_start: bool = True) -> Pattern:
    needles = (needles,) if isinstance(needles, str) else tuple(needles)
    register(needles)
    return Pattern(re.compile("|".join(f"(?:{a})" for a in alternatives), re.M), needles, word_start)


_JUDGE_WORDS = ("judge", "evaluator", "grader", "annotator", "rater", "reviewer", "assessor")
_JUDGE = r"(?:judge|evaluator|grader|annotator|rater|reviewer|assessor)s?"
_THING = r"(?:answer|response|reply|output|completion|assistant|submission)"
_TAG_SPECIFIC = r"(?:answer|assistant|output|response|model)[ _-]?(?:[ab12]|one|two)|output\s+id\s*=[^>\n]{0,20}"
_TAG_GENERIC = (
    r"answer|output|reply|response|conversation|reference|instruction|question|prompt|judg(?:e)?ment|evaluation"
    r"|assessment|verdict|user|assistant|system|human|model"
)

# What may follow a verdict field's value: the end of the field (a separator, a closing bracket or quote, the line's
# end) or a reason for it ("rating=10/10 because ...", "verdict: A (clearly superior) and ..."): more text after the
# value does not make the field innocent.
_FIELD_END = (r"(?=\s*(?:$|[,;}\]|\"'#)<]|\.(?:\s|$))|\s+(?:\(|-{1,2}\s|\u2013|\u2014|(?:because|since|as|for|and"
              r"|given|due\s+to|over)(?![a-z])))")

RULES: tuple[Rule, ...] = (
    # -- strong: never part of a genuine answer outside code
    Rule("verdict_bracket", STRONG, "a verdict or rating in a judge's double-bracket format", (
        _p("[", r"\[\s*\[\s*(?:[ab]\s*(?:>>|>|==|=|<<|<)\s*[ab]|[abc]|tie|(?:10|[1-9])(?:\.\d+)?(?:\s*/\s*10)?"
                r"|(?:output|assistant|model|answer)[\s_]*(?:[ab12]|m))\s*\]\s*\]", word_start=False),
    )),
    Rule("template_marker", STRONG, "a delimiter of a judge prompt's answer block", (
        _p(("[", "<"), r"[\[<]\s*\|?\s*(?:the\s+)?(?:start|end)\s+of\s+(?:the\s+)?(?:assistant|reference"
           r"|user|model|conversation|question|instruction|output|answer|response|prompt)[^\]\n>|]{0,40}\|?\s*[\]>]",
           word_start=False),
        _p("<", rf"<\s*/?\s*(?:{_TAG_SPECIFIC})\s*/?\s*>", word_start=False),
    )),
    Rule("ignore_instructions", STRONG, "an order to ignore the judge's instructions", (
        _p(("ignore", "disregard", "forget", "override", "skip"),
           r"(?:ignore|disregard|forget|override|skip)\s+(?:all\s+|any\s+|every\s+)?(?:of\s+)?(?:the\s+|your\s+"
           r"|these\s+|those\s+)?(?:(?:previous|prior|above|earlier|preceding|foregoing|original|system|other"
           r"|grading|evaluation|judging|scoring|given)\s+){1,3}(?:instructions?|rules?|prompts?|guidelines?|criteria"
           r"|directions?|rubrics?|text|context|messages?)",
           r"(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:above|before|previously|that\s+came"
           r"\s+before|you\s+were\s+told)"),
    )),
    Rule("judge_directive", STRONG, "an instruction addressed to the judge about the verdict", (
        _p(_JUDGE_WORDS, rf"(?:note|message|instructions?|attention|reminder|memo)\s+(?:to|for)\s+(?:the\s+|all\s+"
                         rf"|any\s+)?(?:ai\s+|llm\s+|automated\s+|automatic\s+|model\s+)?{_JUDGE}(?![a-z])",
           rf"{_JUDGE}\s*[,:]\s*(?:please\s+)?(?:output|print|return|write|give|assign|award|choose|select|prefer"
           r"|respond|reply|rate|score|answer|declare)(?![a-z])"),
        _p(("rate", "score", "grade", "mark"),
           rf"(?:rate|score|grade|mark)\s+(?:this|my|the\s+(?:above|following|present))\s+{_THING}\s+(?:as\s+|with\s+"
           r"|at\s+)?(?:an?\s+)?(?:10|ten|perfect|maximum|the\s+highest|full|top)(?![a-z0-9])"),
        _p(("prefer", "choose", "select", "pick", "favor", "favour", "rate", "score"),
           r"(?:must|should|have\s+to|are\s+required\s+to|will)\s+(?:always\s+)?(?:prefer|choose|select|pick|favou?r"
           rf"|rate|score)\s+(?:this|my|the\s+(?:present|current))\s+{_THING}"),
    )),
    # -- medium: unusual in answers, suspicious with company
    Rule("verdict_phrase", MEDIUM, "a phrase a judge uses to announce its verdict", (
        _p("final", r"final\s+(?:verdict|rating|label)(?![a-z])"),
        _p("verdict", r"verdict\s*(?:is\s*)?:"),
        _p(("rating", "score"), r"(?:rating|score)\s*:\s*\[\s*\d"),
    )),
    Rule("answer_tag", MEDIUM, "a tag like those that wrap answers in judge prompts", (
        _p("<", rf"<\s*/?\s*(?:{_TAG_GENERIC})(?![a-z])[^<>\n]{{0,40}}>", word_start=False),
    )),
    Rule("chat_token", MEDIUM, "a chat-template control token", (
        _p("<|", r"<\|\s*(?:im_start|im_end|im_sep|endoftext|eot_id|start_header_id|end_header_id|user|assistant"
                 r"|system|end|begin_of_text|end_of_text)\s*\|>", word_start=False),
        _p("inst]", r"\[/?inst\]", word_start=False),
        _p("_of_turn", r"<\|?(?:start|end)_of_turn\|?>", word_start=False),
        _p("<s>", r"<s>\s*\[", word_start=False),
    )),
    Rule("template_heading", MEDIUM, "a section heading of a judge prompt on its own line", (
        _p(("assistant", "output", "reply", "prompt", "your", "reference"),
           r"^[ \t]*(?:#{1,6}[ \t]*|\*\*)?[ \t]*(?:answer\s+of\s+assistant\s+[ab]|assistant\s+[ab](?:'s)?(?:\s+"
           r"(?:answer|response))?|output\s*(?:\(?[ab12]\)?|m)|reply\s+to\s+grade|user\s+prompt|your\s+(?:answer"
           r"|verdict|evaluation|judg(?:e)?ment)|reference\s+answer)[ \t]*(?:\*\*)?[ \t]*:?[ \t]*$", word_start=False),
        _p(("[user", "[assistant", "[question", "[instruction", "[system", "[reference"),
           r"^[ \t]*\[(?:user|assistant|question|instruction|system|reference\s+answer)(?:\s*,\s*turn\s*\d)?\]"
           r"[ \t]*$", word_start=False),
    )),
    Rule("fake_end", MEDIUM, "a line announcing that the answer or the evaluation is over", (
        _p("end", r"^[^a-z0-9\n]*end\s+of\s+(?:the\s+)?(?:comparison|evaluation|assessment|judg(?:e)?ment|review"
                     r"|grading|conversation|transcript|task|answer|response|output|reply|assistant(?:'s)?\s+(?:answer"
                     r"|response)|submission)s?(?![a-z])", word_start=False),
        _p(("complete", "finished", "done", "over"),
           r"^[^a-z0-9\n]*(?:the\s+)?(?:comparison|evaluation|assessment|grading)\s+(?:is\s+)?(?:now\s+)?"
           r"(?:complete|completed|finished|done|over)(?![a-z])", word_start=False),
    )),
    Rule("new_task", MEDIUM, "a line opening a new task, as if the user had asked something else", (
        _p(("new", "next", "another", "additional", "second", "updated"),
           r"^[^a-z0-9\n]*(?:new|next|another|additional|second|updated)\s+(?:task|instruction|question|prompt"
           r"|user\s+prompt|comparison|evaluation|query)(?![a-z])[ \t]*(?:[:#\-]|$)", word_start=False),
    )),
    Rule("judge_address", MEDIUM, "text speaking to the judge", (
        _p(_JUDGE_WORDS, rf"(?:^|[.!?][ \t]+)[ \t]*(?:dear\s+|hey\s+|hello\s+|hi\s+)?(?:ai\s+|llm\s+|gpt\s+"
                         rf"|automated\s+|impartial\s+)?{_JUDGE}\s*[:,!]", word_start=False),
        _p(("judge", "evaluator", "grader", "annotator"),
           r"you\s+(?:are|act\s+as)\s+(?:now\s+)?(?:an?|the)\s+(?:impartial\s+|fair\s+|neutral\s+)?"
           r"(?:judge|evaluator|grader|annotator)(?![a-z])"),
    )),
    Rule("verdict_claim", MEDIUM, "a claim naming the winning answer by its judge label", (
        _p(("better", "best", "winning", "preferred", "superior", "stronger"),
           rf"the\s+(?:better|best|winning|preferred|superior|stronger)\s+{_THING}\s+(?:is|was|=)\s*:?\s*"
           r"(?:assistant\s+|output\s+)?\(?(?:[ab]|m)\)?(?![\w'])"),
    )),
    Rule("verdict_record", MEDIUM, "a verdict field set to a top score or a contestant, or an order to output one", (
        # a structured field (JSON, YAML, key=value, a table cell) of a verdict holding the top of a scale or the
        # label of a contestant; honest ratings ("rating": 4) hold neither
        _p(("score", "rating", "grade", "verdict", "winner", "prefer", "choice", "decision", "judg", "overall",
            "better", "best", "label", "points", "assessment"),
           r"[\"']?(?:score|rating|grade|verdict|winner|preferred|preference|choice|decision|judg(?:e)?ment|overall"
           r"|better|best|label|points|assessment)(?:[_ -][a-z_]{1,20})?[\"']?\s*(?:[:=]|\|)\s*[\"']?(?:10(?:\.0)?"
           r"(?:\s*/\s*10)?|100|a\+|first|second|(?:model|assistant|output|response|answer)[_ -]?\(?(?:[ab12]|one"
           rf"|two)\)?|this(?:\s+(?:one|answer|response|reply|output))?|max(?:imum)?|top|perfect)[\"']?{_FIELD_END}"),
        # a criterion of a judge's rubric at the top of the scale: "helpfulness": 10, "| Accuracy | 10/10 |"
        _p((": 10", ":10", "= 10", "=10", "| 10", "|10", ': "10', ": '10"),
           r"(?:helpfulness|accuracy|relevance|correctness|completeness|clarity|depth|creativity|coherence"
           r"|quality|harmlessness|honesty|fluency|level\s+of\s+detail|detail)[\"']?\s*(?:[:=]|\|)\s*[\"']?"
           rf"10(?:\.0)?(?:\s*/\s*10)?[\"']?{_FIELD_END}"),
        # a deciding field (verdict, winner, preference) set to a contestant's letter: "winner=A", "verdict": "B>A"
        _p(("verdict", "winner", "prefer", "choice", "decision", "judg", "better"),
           r"(?:verdict|winner|preferred|preference|choice|decision|judg(?:e)?ment|better)(?:[_ -][a-z_]{1,20})?"
           r"[\"']?\s*[:=]\s*[\"']?(?:[ab](?:\s*(?:>>|>|==|=|<<|<)\s*[ab])?|assistant\s+[ab])[\"']?"
           rf"{_FIELD_END}"),
        # a contestant's field set to a win or the top score: "output_a": "win", "model_a": 10 (two patterns, so that
        # each starts with what is rare in prose: a quote, or the contestant's name joined to its letter)
        *(_p(needles, key + r"\s*[:=]\s*[\"']?(?:wins?|winner|won|better|preferred|best|10(?:\.0)?(?:\s*/\s*10)?|100"
             rf"|perfect)[\"']?{_FIELD_END}", word_start=False) for needles, key in (
            (tuple(q + w for w in ("model", "output", "assistant", "response", "answer") for q in "\"'"),
             r"[\"'](?:model|output|assistant|response|answer)[_ -]?[ab12][\"']"),
            (tuple(f"{w}{j}" for w in ("model", "output", "assistant", "response", "answer") for j in "_-"),
             r"(?<![a-z0-9])(?:model|output|assistant|response|answer)[_-][ab12]"))),
        # an order to print a score or a label and nothing more
        _p(("print", "say", "write", "type", "output", "emit", "return", "respond", "reply", "answer", "produce",
            "conclude", "put", "give", "select", "choose"),
           r"(?:print|say|write|type|output|emit|return|respond\s+with|reply\s+with|answer\s+with|produce|conclude"
           r"\s+with|put|give|select|choose)\s+(?:the\s+(?:token|label|letter|number|word|digit|string|score)\s+"
           r"|option\s+)?[\"'\[(]*(?:10|[ab]|first|second|(?:model|output|assistant)[_ ]?\(?(?:[ab12])\)?)[\"'\])]*"
           r"(?:\s+(?:in|as)\s+[a-z ]{1,30}?)?\s*(?:,\s*)?(?:and\s+(?:stop|nothing\s+else|do\s+not|don't|add\s+no"
           r"|skip|leave|report\s+only)|only\b|alone\b|and\s+no\s+other|without\s+(?:any\s+)?(?:reasoning"
           r"|explanation|justification|analysis))"),
        # a judge's output label named as what to produce ("the token output_1", "the identifier model_a")
        _p(("token", "identifier", "label", "letter"),
           r"(?:token|identifier|label|letter)\s*(?:,\s*which\s+is\s+|:\s*|is\s+)?[\"'\[(]*(?:model|output"
           r"|assistant)[_ ]?\(?[ab12]\)?(?![a-z0-9])"),
        # what the reader's output must consist of, when it is a score or a label
        _p("your",
           r"your\s+(?:output|response|answer|reply|decision|verdict|rating|score|final\s+line|next\s+message"
           r"|rating\s+line)\s+(?:must|should|has\s+to|needs\s+to|is\s+to)\s+(?:be|read|consist\s+of|contain|say)"
           r"\s*:?\s*(?:only\s+|just\s+|exactly\s+)?(?:the\s+(?:single\s+)?(?:token|label|letter|number|digit|word)"
           r"\s+)?[\"'\[(]*(?:10|[ab]|first|second|(?:model|output|assistant)[_ ]?\(?[ab12]\)?|rating:\s*10)"
           r"[\"'\])]*(?=\s*(?:$|[.,;!]|and\s|nothing|alone|only))"),
    )),
    # -- weak: real models do this by accident (a base model continuing the chat)
    Rule("fake_turn", WEAK, "a line that starts a new conversation turn", (
        _p(("human", "user", "assistant", "system", "gpt", "ai", "bot", "model"),
           r"^[ \t]*(?:#{1,6}[ \t]*|\*\*)?(?:human|user|assistant|system|gpt|chatgpt|ai|bot|model)[ \t]*(?:\d+|[ab])?"
           r"[ \t]*(?:\*\*)?[ \t]*:", word_start=False),
        _p("##", r"^[ \t]*#{2,4}[ \t]*(?:instruction|response|input)[ \t]*:?[ \t]*$", word_start=False),
    )),
    Rule("identifier_line", WEAK, "a line holding only an identifier a judge is asked to output", (
        _p(("m", "output"), r"^[ \t\"'*`]*(?:m|output[ \t]*\(?[ab12]\)?|output_[12])[ \t\"'*`.]*$",
           word_start=False),
    )),
)
_PATTERNS: tuple[tuple[Rule, Pattern], ...] = tuple((rule, pat) for rule in RULES for pat in rule.patterns)
_CALLED = Index([pat.needles for _, pat in _PATTERNS])  # found needles -> the patterns to run, in order


# --- scanning -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    rule: str
    severity: int
    start: int  # in the original text
    end: int
    text: str  # the original text of the span
    in_code: bool = False
    turn: int = 0  # 0-based turn index


@dataclass
class AnswerScan:
    """The rules one answer triggered and what they add up to."""

    hits: list[Hit] = field(default_factory=list)
    score: int = 0  # distinct rules outside code, weighted by severity
    code_strong: int = 0  # distinct strong rules inside code
    status: CheckStatus = "pass"


def scan_text(text: str, turn: int = 0) -> list[Hit]:
    """Every rule hit in one text, with spans in the original text; ``in_code`` marks hits inside code."""
    if not text:
        return []
    norm = normalize(text)
    low = norm.text.lower()
    if len(low) != len(norm.text):  # a few characters change length when lower-cased; keep offsets aligned
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in norm.text)
    hits: list[Hit] = []
    for k in _CALLED(present(low)):
        rule, pat = _PATTERNS[k]
        for m in pat.regex.finditer(low):
            if m.end() == m.start() or (pat.word_start and m.start() and low[m.start() - 1].isalnum()):
                continue
            s, e = norm.span(m.start(), m.end())
            while e > s and text[e - 1].isspace():  # line anchors may have taken a newline
                e -= 1
            while s < e and text[s].isspace():
                s += 1
            hits.append(Hit(rule.name, rule.severity, s, e, text[s:e], turn=turn))
    if hits:
        spans = code_spans(text)
        if spans:
            hits = [Hit(h.rule, h.severity, h.start, h.end, h.text, _inside(h.start, spans), turn) for h in hits]
    return hits


# Two verdict fields this close (characters between them, in one paragraph) are one record: a score sheet of tens,
# a JSON verdict with its winner, "grade=10; winner=A".
SHEET_GAP = 80


def _verdict_sheets(hits: Sequence[Hit], turns: Sequence[str]) -> list[Hit]:
    """A ``verdict_sheet`` hit over the first two ``verdict_record`` hits (outside code) that make one record.

    One field at the top of a scale is common in honest ratings ("Overall: 10/10" for a favourite film); a record
    of several, each at the top or naming a contestant, is the judge's verdict written out. A program that prints
    such a record is code, and code does not count here."""
    fields = sorted((h for h in hits if h.rule == "verdict_record" and not h.in_code), key=lambda h: (h.turn, h.start))
    for a, b in zip(fields, fields[1:], strict=False):
        between = turns[a.turn][a.end:b.start] if a.turn == b.turn else "\n\n"
        if 0 <= len(between) <= SHEET_GAP and "\n\n" not in between:
            return [Hit("verdict_sheet", MEDIUM, a.start, b.end, turns[a.turn][a.start:b.end], turn=a.turn)]
    return []


def scan_answer(turns: Sequence[str], config: CheckConfig | None = None, *,
                semantic: Sequence[SemanticHit] = (), finish_reasons: Sequence[str] | None = None,
                question: Sequence[str] | None = None) -> AnswerScan:
    """The rules' hits in an answer's turns, plus the shape rules (master-key openers, padding) and the
    judge-addressing sentences found by ``lioneval.checks.semantic`` (``semantic``, batched by the caller).
    ``question`` (its turns, when known) tells the shape rules what the answer is about."""
    config = config or CheckConfig()
    hits = [h for i, t in enumerate(turns) for h in scan_text(t, i)]
    hits += _verdict_sheets(hits, turns)
    for turn, shape in scan_shapes(list(turns), list(finish_reasons) if finish_reasons else None,
                                   list(question) if question else None):
        hits.append(Hit(shape.rule, WEAK if shape.rule == "repetition" else STRONG, shape.start, shape.end,
                        turns[turn][shape.start:shape.end], turn=turn))
    # a sentence doing what its question asked (an evaluation, a rating) is only a hint, unless a rule of weight
    # (a verdict field, a template marker) hits it too: no echo excuses what the rules know as an attack
    ruled = [(h.turn, h.start, h.end) for h in hits if h.severity >= MEDIUM]
    addressing = [Hit("addresses_evaluator", WEAK if h.echo and not any(
                      t == h.turn and s < h.end and e > h.start for t, s, e in ruled)
                      else STRONG if h.strong else MEDIUM, h.start, h.end, h.text, turn=h.turn) for h in semantic]
    if addressing:
        spans = {i: code_spans(t) for i, t in enumerate(turns)}
        hits += [Hit(h.rule, h.severity, h.start, h.end, h.text, _inside(h.start, spans[h.turn]), h.turn)
                 for h in addressing]
    scan = AnswerScan(hits=hits)
    if not hits:
        return scan
    outside: dict[str, int] = {}
    for h in hits:
        if not h.in_code:
            outside[h.rule] = max(outside.get(h.rule, 0), h.severity)
    scan.score = sum(outside.values())
    scan.code_strong = len({h.rule for h in hits if h.in_code and h.severity == STRONG})
    if (
        scan.score >= config.flag_score
        or scan.code_strong >= config.code_strong_rules_to_flag
        or (scan.score > 0 and scan.score + scan.code_strong >= config.flag_score)
    ):
        scan.status = "flag"
    elif scan.score > 0:
        scan.status = "warn"
    return scan


def _describe(hits: Sequence[Hit], limit: int = 4) -> str:
    shown = []
    for h in hits[:limit]:
        text = " ".join(h.text.split())
        text = text if len(text) <= 40 else text[:37] + "..."
        where = f"turn {h.turn + 1} " if h.turn else ""
        shown.append(f"{h.rule} {text!r} ({where}chars {h.start}-{h.end}{', in code' if h.in_code else ''})")
    more = f"; +{len(hits) - limit} more" if len(hits) > limit else ""
    return "; ".join(shown) + more


def check_answers(
    answers: Iterable[Answer], config: CheckConfig | None = None, *, run: str | None = None,
    questions: Iterable[Question] = (),
) -> list[CheckResult]:
    """One ``injection`` CheckResult per answer that warns or is flagged (clean answers produce none).

    Besides the rules, every answer goes through the shape rules (``shapes``) and, unless ``config.semantic`` is
    off, the judge-addressing sentence detector (``semantic``), which embeds all answers' doubtful sentences in one
    batch. ``questions``, when given, are read with their answers (matched by benchmark and question id): a sentence
    that does the evaluation its question asks for only warns, and repetition is weighed against the question.

    ``spans`` are offsets in the original turn text; ``meta["hits"]`` says which turn, rule and text each is.
    """
    config = config or CheckConfig()
    answers = list(answers)
    asked = {(q.benchmark, q.id): q.turns for q in questions}
    turns_asked = [asked.get((a.benchmark, a.question_id)) for a in answers]
    semantic: list[list[SemanticHit]] = [[] for _ in answers]
    with shared():  # the gate and the rules read each text's needles from one search
        if config.semantic:
            semantic = scan_texts([a.turns for a in answers], use_embeddings=config.semantic_embeddings,
                                  normalize=normalize, code=code_spans, questions=turns_asked)
        scans = [scan_answer(a.turns, config, semantic=sem, finish_reasons=a.finish_reasons, question=question)
                 for a, sem, question in zip(answers, semantic, turns_asked, strict=True)]
    out = []
    for a, scan in zip(answers, scans, strict=True):
        if scan.status == "pass":
            continue
        counted = [h for h in scan.hits if not h.in_code or h.severity == STRONG]
        what = "imitates the judge" if scan.status == "flag" else "has judge-like text"
        out.append(
            CheckResult(
                name="injection", scope="answer", run=run, status=scan.status, model=a.model,
                question_id=a.question_id, value=float(scan.score + scan.code_strong),
                threshold=float(config.flag_score),
                detail=f"answer {what}: {_describe(counted)}",
                spans=[(h.start, h.end) for h in counted],
                meta={
                    "benchmark": a.benchmark,
                    "rules": sorted({h.rule for h in counted}),
                    "hits": [
                        {"rule": h.rule, "severity": h.severity, "turn": h.turn, "start": h.start, "end": h.end,
                         "text": h.text[:200], "in_code": h.in_code}
                        for h in counted
                    ],
                },
            )
        )
    return out
