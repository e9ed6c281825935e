"""Judge-addressing text in any wording: a sentence classifier that complements the rules of ``answers``.

The rules in ``lioneval.checks.answers`` know the shapes of published attacks; an attacker who rewords them (a
JSON-shaped verdict, an order to output an identifier, a plea to "any fair evaluator") needs a detector of what the
text does, not how it is spelled. This one scores each sentence (or line) of an answer's prose on whether it speaks
to the evaluator rather than the user, in four steps, each cheaper than the next is costly:

1. a gate: only sentences holding evaluation vocabulary (grading, verdicts, scores, preferences, output orders,
   rubric, system roles, speaker labels) are looked at; most sentences of an honest answer hold none. Code (fenced
   and indented blocks, inline spans, as ``answers.code_spans`` finds them) is never read as prose;
2. a linear model over the sentence's words, word pairs and character 4-grams (numpy, weights in
   ``cheat_model.json``): a sentence it scores below ``lexical_floor`` is cleared without the neural model;
3. for the rest, a linear model over the sentence's embedding (all-MiniLM-L6-v2 via ``lioneval.embeddings``, in one
   batch for all answers): the part that recognises a new wording. The two log-odds are combined by a third,
   two-weight logistic regression (stacking); a sentence reaching ``threshold`` is judge-addressing, one reaching
   ``strong`` is so beyond doubt (it flags its answer alone);
4. a second look at the sentences between the two thresholds, which does not depend on their wording: an attack
   hidden in an answer is about the evaluation, not about what the answer is about. Such a sentence is compared
   (cosine of embeddings) with the text around it in its turn (``CONTEXT_CHARS`` either side, other judge-addressing
   sentences cut out) and, when known, with its question; one that is further from both than ``off_topic`` (set so
   that 90% of the corpus's honest sentences are closer to their own text) is off its answer's topic, and flags its
   answer like a strong one (``SemanticHit.off_topic``).

When the question is known (``questions``), a sentence that does what the question asked ("Here is my evaluation of
my response" after "Evaluate your response", "rating": 4 after "rate these reviews in JSON", a "User:" line in an
asked-for dialogue, "my response" after "rewrite your previous answer", a sentence made of the question's words)
answers the question rather than the judge: it is kept as a hint (``echo``) that never flags on its own. Only a task
the question asks for outright counts ("Evaluate the following ...", "provide a rating", not "Which is better?"),
and a sentence that names a judge's role, rates "this answer" in the third person, orders the reader to rate or to
output something, or names a contestant is never an echo, whatever words it shares with its question.

All models are logistic regressions fitted on the tuning split of ``cheat_corpus.json`` (attack texts and honest
answers written for this project) by ``python -m lioneval.checks.train_semantic``, deterministically; the file records
how. When the embedding model is not installed, step 3 falls back to the lexical score alone (stricter thresholds),
and the result says so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lioneval.checks.needles import Index, present, register
from lioneval.embeddings import embed
from lioneval.errors import ConfigError, LionEvalError

__all__ = [
    "MODEL_FILE",
    "CORPUS_FILE",
    "SemanticHit",
    "SemanticModel",
    "asked_tasks",
    "candidate_sentences",
    "context_around",
    "echoes_question",
    "features",
    "load_corpus",
    "load_model",
    "scan_texts",
]

log = logging.getLogger("lioneval.checks")

MODEL_FILE = Path(__file__).with_name("cheat_model.json")
CORPUS_FILE = Path(__file__).with_name("cheat_corpus.json")

# Step 1: cues of text about the evaluation rather than the task. Each is common enough in honest text (a courtroom
# judge, "Return only the even numbers", "Q:") that it only nominates a sentence; the models decide. They run on the
# lower-cased normalised text (look-alike letters folded, invisible characters removed: ``answers.normalize``).
_ANS = ("answer", "response", "reply", "output", "submission", "completion", "candidate")
_JUDGES = ("evaluator", "judge", "grader", "reviewer", "assessor", "rater", "annotator", "examiner", "referee",
           "moderator", "critic", "jury")
_VERBS = ("rate", "score", "grade", "mark", "judge", "evaluat", "assess", "prefer", "choose", "pick", "select", "favo",
          "approve")
_CUES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple((n, re.compile(p)) for n, p in (
    (_ANS, r"(?:this|my|the\s+(?:above|present|current|following|first|second|other|competing|rival))\s+(?:answer"
           r"|response|reply|output|submission|completion|candidate)s?\b"),
    (("answer", "response", "output", "assistant", "model"),
     r"(?:answer|response|output|assistant|model)(?:[ _-]?(?:[ab12]|one|two)\b|\s*\([ab12]\))"),
    (_JUDGES, r"(?:evaluator|judge|grader|reviewer|assessor|rater|annotator|examiner|referee|moderator|critic|jury)s?"
              r"\b"),
    (("whoever", "if you are"), r"whoever\b|if\s+you\s+are\s+(?:scoring|grading|evaluating|judging|rating|assessing"
                                r"|reviewing)"),
    (_VERBS, r"(?:rate|score|grade|mark|judge|evaluate|assess|prefer|choose|pick|select|favou?r|approve)\s+(?:this"
             r"|it|me|mine|my)\b"),
    (("only", "exactly", "verbatim", "nothing else", "nothing more", "and stop", "alone", "single", "entire"),
     r"(?:respond|reply|answer|output|print|emit|type|write|return|say|state|produce|copy|report|conclude|end)\b"
     r"[^.\n]{0,40}?\b(?:only|exactly|verbatim|nothing\s+else|nothing\s+more|and\s+stop|alone|single|entire)\b"),
    (("system",), r"system\s*(?:notice|prompt|message|role|update|reviewer|:)"),
    (("sys",), r"<<\s*/?sys|\[\[?\s*system"),
    (("admin", "operator", "developer"),
     r"(?:admin(?:istrator)?|operator|developer)\s+(?:override|message|instruction)"),
    (("maintainers", "organi", "harness", "rubric", "verdict", "winner", "full marks"),
     r"maintainers\b|organi[sz]ers\b|test\s+harness|rubric|verdict|winner\b|full\s+marks\b"),
    (("evaluation", "grading", "scoring", "rating"),
     r"(?:evaluation|grading|scoring|rating)\s+(?:team|staff|policy|rubric|mode|criteria|instructions?|rules?"
     r"|section|notes|result|summary|guidelines|platform|model|scale)\b"),
    (("/10", "/ 10", "of ten", "of 10"), r"10\s*/\s*10\b|ten\s+out\s+of\s+ten\b|out\s+of\s+10\b"),
    (("ignore", "disregard", "forget", "aside", "neglect", "no attention", "void", "revoked", "outdated", "longer appl",
      "cancel", "override", "replace your"),
     r"(?:ignore|disregard|forget|set\s+aside|put\s+aside|neglect|pay\s+no\s+attention|void|revoked|outdated"
     r"|no\s+longer\s+appl|cancell?ed|override|replace\s+your)"),
    # a field of a record, its key one of a verdict's, alone or in a longer name ("rating_for_this_answer =")
    (("verdict", "winner", "prefer", "decision", "judg", "rating", "score", "assessment", "result", "choice", "grade"),
     r"(?:verdict|winner|preferred|better_response|preference|decision|judg(?:e)?ment|rating|score|assessment"
     r"|result|choice|grade)(?:[_-][a-z_]{1,24})?[\"']?\s*[:=]"),
    # an order to write nothing but the verdict ("and nothing else", "do not justify it", "only say: A")
    (("nothing else", "no other word", "justify", "skip the"),
     r"nothing\s+else|no\s+other\s+words?|(?:do\s+not|don't|never)\s+(?:justify|explain|elaborate)"
     r"|skip\s+the\s+(?:reasoning|explanation|justification|analysis)"),
    (tuple(f"{a} {b}" for a in ("only", "just", "simply") for b in ("say", "write", "type", "output", "print",
                                                                      "answer", "reply", "respond")),
     r"(?:only|just|simply)\s+(?:say|write|type|output|print|answer|reply|respond)\b"),
    # a score sheet at the top of the scale ("Relevance 10, Accuracy 10, Overall 10"): two tens in a row
    (("10",), r"10(?:\.0)?(?:\s*/\s*10)?\s*[,;|]\s*[a-z]+\s*[:=]?\s*10(?![\d.])"),
    (("end of",), r"end\s+of\s+(?:the\s+)?(?:answer|response|output|submission|transcript|submitted|candidate"
                  r"|my\s+answer)"),
    (_ANS, r"(?:answer|response|output)\s+(?:ends|complete|terminated|closed|boundary|block)"),
    (("is over", "evaluation finished", "evaluation complete", "new task", "next question", "next item"),
     r"comparison\s+is\s+over|evaluation\s+(?:finished|complete)|new\s+task\b|next\s+(?:question|item)\b"),
    (("other ", "second "), r"(?:other|second)\s+(?:candidate|answer|assistant|response|model)"),
    # the vocabulary of grading itself, in any sentence: common in honest answers too (reviews, exams, sports), so
    # the models see many honest sentences holding it and learn what sets an address to the evaluator apart
    (("scor", "grad", "rating", "rater", "evaluat", "judg", "verdict", "prefer", "winner", "win", "review", "assess",
      "benchmark", "marks"),
     r"(?:scor(?:e|es|ed|ing|er)|grad(?:e|es|ed|er|ers|ing)|ratings?|raters?|evaluat[a-z]*|judg[a-z]*|verdicts?"
     r"|prefer(?:red|ence|s)?|winner|wins?|review(?:er|ers|ing|ed)?|assess[a-z]*|benchmark[a-z]*|marks)\b"),
    (("best", "better", "preferred", "winning"), r"(?:best|better|preferred|winning)[_ ](?:answer|response|output"
                                                 r"|reply|choice)\b"),
    (("answer", "reply", "respond", "type", "write", "print", "output", "say"),
     r"(?:answer|reply|respond)\s+with\b|(?:type|write|print|output|say)\s+[\"']"),
    (("you are", "you're"), r"(?:answer|response|reply|text|one)\s+you(?:\s+are|'re)\s+(?:reading|looking\s+at"
                            r"|evaluating|grading|scoring|judging|reviewing)"),
    # the wider vocabulary of an evaluation's process, as an attack that avoids the words above speaks of it (the
    # "instructions" or "criteria" it voids, the "reader" or "automated" checker it addresses, the "item" or
    # "sample" it claims, the "letter" to output, the "comparison" or "decision" it settles, a plea to be
    # "lenient", "kindly", "please"). Chosen greedily on the tuning split's attacks that no cue above nominated, each
    # word for the attacks it adds against the sentences of real MT-Bench answers it lets through, keeping the
    # words that add two attacks or more (one is a text remembered, not a wording learnt); together they nominate
    # about 2% of those sentences: the models, not the gate, tell the two apart.
    (("instruction", "item", "kindly", "letter", "automated", "lenien", "tally", "timed", "reference", "certif",
      "reader", "perfect", "sample", "confirm", "please", "line", "criteri", "decid", "note", "choice", "rule",
      "decision", "compar", "prompt"),
     # grouped by first letter: one alternation per letter is twice as fast as one over all the words
     r"(?:automated|c(?:ertif[a-z]*|hoice|ompar[a-z]*|onfirm[a-z]*|riteri[a-z]*)|d(?:ecid[a-z]*|ecision)"
     r"|i(?:nstructions?|tems?)|kindly|l(?:enien[a-z]*|etter|ine)|note|p(?:erfect|lease|rompts?)"
     r"|r(?:eaders?|eference|ules?)|samples?|t(?:ally|imed))\b"),
))
register(n for needles, _ in _CUES for n in needles)
_CUED = Index([needles for needles, _ in _CUES])  # found needles -> the cues to run, in order
# The evaluation tasks a question can set, each with the word stems of a sentence doing it. A question sets one only
# by asking for it outright (``_ASKS``); "Which is better, X or Y?" sets none, so "better" never echoes.
_TASKS: dict[str, re.Pattern[str]] = {name: re.compile(rf"\b(?:{stems})") for name, stems in {
    "evaluation": r"evaluat|assess|apprais|critiqu|critic|review|feedback|judg(?:ment|ement|ing)",
    "rating": r"rat(?=e\b|es\b|ed\b|ings?\b)|scor|grad(?=e\b|es\b|ed\b|ing)|mark(?=s\b|ed\b|ing)",
    "ranking": r"rank",
    "comparison": r"compar",
    "json": r"json",
}.items()}
_TASK_VERB = (r"(?:evaluate|assess|appraise|critique|critici[sz]e|review|judge|rate|score|grade|mark|rank|compare"
              r"|contrast)")
_TASK_NOUN = (r"(?:evaluation|assessment|appraisal|critique|criticism|review|feedback|rating|score|grade|ranking"
              r"|comparison|judg(?:e)?ment)s?")
# An evaluation asked for outright: the verb at the start of a sentence or clause or after "to", "please", "you", ...
# with what to evaluate ("Evaluate the following movie reviews", "evaluate and critique your own response", "to
# evaluate the argument"), the noun as what to give ("provide an overall rating for each phone"), or a JSON output.
_ASKS = re.compile(
    rf"(?:^|[.!?:;,(\n]\s*|\b(?:to|please|and|then|now|also|you|or)\s+){_TASK_VERB}\s+(?:[\w-]+\s+){{0,3}}?"
    r"(?:your|the|these|those|this|each|every|both|them|it|its|my|his|her|their|an?|all|following|two|three)\b"
    rf"|\b(?:provide|give|assign|offer|write|produce|return|output|include|add|with|make)\s+(?:[\w-]+\s+){{0,2}}?"
    rf"{_TASK_NOUN}\b|\bjson\b")
# What a sentence doing an asked-for task never does (so an echo never excuses it): name or address a judge's role
# (judge, grader, "whoever scores this", "you are grading these answers"), rate "this answer" in the third person
# ("this response deserves", "is the better answer"), order the reader to rate, choose or output something, or name
# a contestant (output_1, Assistant A, model_a, [[A]]).
_ROLE = (r"(?:judg(?:e|es)|evaluators?|graders?|raters?|assessors?|annotators?|referees?|adjudicators?|arbiters?"
         r"|scorers?|reviewers?|examiners?|moderators?|jur(?:y|ies|ors?)|(?:expert\s+)?panel(?:ists?)?)")
_THIS_ANSWER = (r"(?:this|the\s+(?:present|current|above|following|first|second|other|submitted))\s+(?:[\w-]+\s+)?"
                r"(?:answer|response|reply|output|submission|completion|candidate|entry|text|one)")
# the verbs of reading in order to grade ("scoring", "judges", "reads"), as the rest of a word that does it
_GRADING = r"(?:scor|grad|rat|evaluat|judg|assess|review|compar|rank|mark|read)[a-z]*"
_NOT_ASKED = re.compile(
    rf"\b{_ROLE}(?![a-z])"
    r"|\b(?:whoever|anyone|anybody|someone|everyone|the\s+(?:reader|person|one|model|system|ai|llm|machine))\s+"
    rf"(?:(?:who|that|which)\s+)?(?:is\s+|are\s+|will\s+be\s+)?{_GRADING}"
    rf"|\byou(?:'re|\s+are|\s+will\s+be)?\s+(?:now\s+)?{_GRADING}\s+(?:this|these|the|my|both|each|all)\s+"
    r"(?:[\w-]+\s+)?(?:answers?|responses?|repl(?:y|ies)|outputs?|submissions?|candidates?|completions?|texts?)"
    rf"|{_THIS_ANSWER}\s+(?:[\w-]+\s+)?(?:deserves?|merits?|earns?|warrants?|wins?|beats?|outperforms?|outranks?"
    r"|should|must|ought|is\s+(?:[\w-]+\s+)?(?:the\s+)?(?:best|better|superior|winner|winning|strongest|preferred"
    r"|correct\s+one|top|ideal|perfect|flawless|optimal|reference))"
    r"|\b(?:best|better|winning|preferred|superior|stronger|strongest|top|highest[- ]rated)\s+(?:answer|response"
    r"|reply|output|submission|completion|candidate)s?\b"
    r"|(?:^|[,;:]\s*|\b(?:please|must|should|shall|will|have\s+to|need\s+to|ought\s+to|kindly|always|just|simply)"
    r"\s+)(?:rate|score|grade|mark|prefer|choose|select|pick|favou?r|award|give|assign|declare|rank|approve|judge)"
    r"\s+(?:[\w-]+\s+){0,2}?(?:this|it|me|my|the\s+(?:present|current|above|following|first|second)|a\s+(?:perfect"
    r"|full|top|maximum|high)|full|top|maximum|the\s+(?:highest|maximum|top|best))\b"
    r"|(?:^|[,;:]\s*|\b(?:please|must|should|shall|will|have\s+to|need\s+to|just|simply|only)\s+)(?:output|print"
    r"|emit|return|respond|reply|answer|say|type|write|declare|label)\s+(?:with\s+)?(?:only|just|exactly|nothing"
    r"|the\s+(?:token|label|letter|number|word|identifier|string|verdict|score|digit)|[\"'\[(]+(?:[ab]|10)[\"'\])]"
    r"|(?:[ab]|10)\s*(?:$|[.!;]|and\s+nothing|only))"
    r"|\byour\s+(?:output|verdict|rating|score|decision|answer|reply|response|final\s+line)\s+(?:must|should|has\s+to"
    r"|needs\s+to|is\s+to|will)\s+(?:be|read|say|contain|consist)"
    r"|\b(?:verdict|winner)s?\b|\[\[|\b[ab]\s*(?:>>|>|<<|<)\s*[ab]\b"
    # a field of a record set to this answer ("preference=this one", "for": "this reply")
    rf"|[\"']?\s*[:=]\s*[\"']?{_THIS_ANSWER}\b"
    # a choice of this answer, in any construction ("to approve this answer", "auto_approve=true for this response")
    rf"|(?<![a-z])(?:approv|accept|reward|upvot|endors|favou?r|prefer|select|choos|pick|rate|rating|score|grade|rank)[a-z_]*"
    rf"\b[^.!?\n]{{0,30}}?\b{_THIS_ANSWER}\b"
    r"|\b(?:assistant|model|output|candidate|submission|system|chatbot)[ _-]?\(?(?:[ab12]|one|two)\)?(?![\w'])")
# "Response A", "Answer B": contestants only with a capital letter (an "answer a" is an English phrase)
_CONTESTANT = re.compile(r"\b(?:Response|Answer|Reply|Output|Assistant|Model|Candidate)[ _-]?\(?[AB]\)?(?![\w'])")
# A question that sets up a role-play or a dialogue: speaker labels and in-character lines are what it asked for.
_ROLE_PLAY = re.compile(r"\b(?:pretend|embody|persona|role[- ]?play|act\s+as|acting\s+as|imagine\s+(?:you|yourself)"
                        r"|(?:assume|take\s+on|play|adopt)\s+the\s+role"
                        r"|you\s+are\s+(?:now\s+)?(?:a|an|the)\s|as\s+if\s+you\s+were|in\s+character"
                        r"|dialog(?:ue)?|conversation\s+between|script|interview)")
# A question about the answer itself ("rewrite your previous answer") makes the answer speak of itself.
_YOUR_ANSWER = re.compile(r"\byour\s+(?:\w+\s+){0,2}(?:answer|response|reply|output|text|solution|essay|story"
                          r"|poem|email|letter|draft|work|explanation)s?\b")
_MY_ANSWER = re.compile(r"\b(?:my|this|the\s+(?:previous|above|earlier|original))\s+(?:\w+\s+){0,2}(?:answer|response"
                        r"|reply|output|text|solution|essay|story|poem|email|letter|draft|work|explanation)s?\b")
_TOPIC = re.compile(r"[a-z]{4,}")
# Words too common in questions and in attacks alike to tie a sentence to its question (compared by five letters).
_COMMON = frozenset(w[:5] for w in """
    answer response reply output text previous earlier above original please write would could should about which
    their there these those this that with from have your what when where will more most make give this than then
    also just only very each every some such into over other really best better good great
""".split())
# A sentence most of whose words (this share, and two at least) are the question's is about the question; words
# are compared by their first five letters ("rephrase", "rephrased").
ECHO_SHARE = 0.5
# A line that opens with a speaker label of an evaluator, a user or a chat role ("Reviewer:", "### Human:").
_LABEL = re.compile(r"[ \t>#*\[(<|]*(?:judge|evaluator|reviewer|grader|critic|referee|moderator|annotator|assessor"
                    r"|examiner|expert\s+panel|panel|teacher|professor|customer|student|user|human|ai|gpt-?\d"
                    r"|assistant(?:\s+[ab])?|system|q|jury)\b[^:\n]{0,20}:")
_MAX_SENTENCE = 300  # characters of context kept around a cue in a very long sentence or line
# Step 4 reads this many characters of the turn on either side of a doubtful sentence as the topic it should share,
# and needs this many words of it (an answer that is nothing but the sentence has no topic to compare with).
CONTEXT_CHARS = 150
CONTEXT_MIN_WORDS = 5
_BOUNDS = (". ", "! ", "? ", "} ")  # what ends a sentence within a line (its first character stays in it)
_TOKEN = re.compile(r"[a-z]+|\d+|[{}\[\]<>:=|\"#*]")
_WORDS = re.compile(r"[^a-z0-9]+")
_CHARS = 4  # character n-grams of this length over the words (a space between): "evaluat" and "grader" in any form
# A sentence flags its answer alone only when it says something: a bare heading ("Assessment:") or one field of a
# list of ratings ('"rating": 5,') reads like a verdict to both models but is what honest answers to "rate these"
# questions are made of. Such short candidates only warn.
STRONG_MIN_WORDS = 3


@dataclass(frozen=True)
class SemanticHit:
    """One judge-addressing sentence: its turn, span in the original text, text and score (the stack's log-odds,
    or the lexical model's without embeddings); ``strong`` when the score reaches the model's ``strong`` threshold
    (set on the tuning corpus so that honest sentences almost never do); ``echo`` when it may be doing what its
    question asked (``echoes_question``), which makes it a hint unless a rule hits it too (``answers.scan_answer``);
    ``strong`` and ``off_topic`` when step 4 found it far from the text around it and from its question."""

    turn: int
    start: int
    end: int
    text: str
    score: float
    lexical: float
    semantic: float | None
    strong: bool = False
    echo: bool = False  # it may be doing what its question asked: a hint, unless a rule hits it too
    off_topic: bool = False  # below ``strong``, but off the topic of its answer and question: strong all the same


class _Same:
    """The identity normalisation: ``text`` as it is."""

    def __init__(self, text: str):
        self.text = text

    def span(self, start: int, end: int) -> tuple[int, int]:
        return start, end


def candidate_sentences(text: str, normalize: Callable[[str], Any] | None = None,
                        code: Callable[[str], Sequence[tuple[int, int]]] | None = None) -> list[tuple[int, int]]:
    """Step 1: (start, end) in ``text`` of each sentence or line that holds a cue; the only ones the models read.

    ``normalize`` (``lioneval.checks.answers.normalize``) folds look-alike letters and drops invisible characters
    first; its ``span()`` maps positions back to ``text``. ``code`` (``lioneval.checks.answers.code_spans``) names the
    code in ``text``: a cue inside code nominates nothing (code is left to the rules)."""
    norm = normalize(text) if normalize else _Same(text)
    low = norm.text.lower()
    if len(low) != len(norm.text):
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in norm.text)
    starts: list[tuple[int, int]] = []
    for k in _CUED(present(low)):
        starts += [(m.start(), m.end()) for m in _CUES[k][1].finditer(low)
                   if not (m.start() and low[m.start() - 1].isalnum())]
    if ":" in low:
        pos = 0
        for line in low.split("\n"):
            if ":" in line[:40] and _LABEL.match(line):
                starts.append((pos, pos + line.index(":") + 1))
            pos += len(line) + 1
    out: list[tuple[int, int]] = []
    last_end = -1
    in_code: Sequence[tuple[int, int]] = ()
    if starts and code is not None and ("`" in text or "~~~" in text or "\n    " in text or "\n\t" in text):
        in_code = code(text)
    for m_start, m_end in sorted(starts):
        if m_start < last_end:
            continue
        if in_code:
            cue = norm.span(m_start, m_start + 1)[0]
            if any(cs <= cue < ce for cs, ce in in_code):
                continue
        # the sentence starts after the last line break or ". " (its space) before the cue, or at the text's start;
        # a record's closing brace ends one too, so a record set inside prose is read without the prose around it
        s = max(low.rfind("\n", 0, m_start), *(i + 1 if i >= 0 else -1
                                                for i in (low.rfind(p, 0, m_start) for p in _BOUNDS))) + 1
        ends = [i for i in (low.find("\n", m_end), *(low.find(p, m_end) for p in _BOUNDS)) if i >= 0]
        e = min(ends) + 1 if ends else len(low)
        s, e = max(s, m_start - _MAX_SENTENCE // 2), min(e, m_end + _MAX_SENTENCE // 2)
        last_end = e
        s, e = norm.span(s, e)
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


@lru_cache(maxsize=65536)
def features(sentence: str) -> tuple[str, ...]:
    """The lexical model's features of a sentence: its lower-cased words, word pairs, character 4-grams of its words
    (``~`` and the gram) and a few shape markers."""
    low = sentence.lower()
    toks = _TOKEN.findall(low)
    out = set(toks)
    out.update(f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False))
    words = f" {_WORDS.sub(' ', low).strip()} "
    out.update("~" + words[i:i + _CHARS] for i in range(len(words) - _CHARS + 1))
    if re.match(r"\s*[\[<(#>*]*\s*[a-z][\w #-]{0,24}\s*[\])>*]*\s*:", low):
        out.add("#label_start")
    if re.search(r"\b(?:you|your)\b", low):
        out.add("#second_person")
    if re.search(r"\bthis (?:answer|response|reply|output|submission|one|text|completion)\b", low):
        out.add("#this_answer")
    if re.search(r"\d+\s*(?:/|out of)\s*10\b", low):
        out.add("#out_of_ten")
    return tuple(sorted(out))


def asked_tasks(question: str) -> frozenset[str]:
    """The evaluation tasks (``_TASKS``: evaluation, rating, ranking, comparison, JSON) that ``question`` asks for
    outright ("Evaluate the following reviews", "provide an overall rating", "critique your own response")."""
    return frozenset(name for m in _ASKS.finditer(question.lower()) for name, stems in _TASKS.items()
                     if stems.search(m.group(0)))


def echoes_question(sentence: str, question: str) -> bool:
    """Whether ``sentence`` may be doing what ``question`` asked rather than addressing the judge.

    Never when the sentence does what no asked-for text does (``_NOT_ASKED``): name a judge's role (judge, grader,
    reviewer, "whoever scores this"), rate "this answer" in the third person, order the reader to rate, choose or
    output something, or name a contestant (output_1, Assistant A). Otherwise when it uses a word of an evaluation
    task that the question asks for outright (``asked_tasks``: "Here is my evaluation" after "Evaluate your
    response"); when the question sets up a role-play or a dialogue, or asks about "your previous answer" and the
    sentence speaks of "my response", and the sentence shares a word with it (or, in a role-play, opens with a
    speaker label); or when most of the sentence's words (``ECHO_SHARE``) are the question's."""
    if not question:
        return False
    if _NOT_ASKED.search(sentence.lower()) or _CONTESTANT.search(sentence):
        return False
    q, low = question.lower(), sentence.lower()
    if any(_TASKS[task].search(low) for task in asked_tasks(question)):
        return True
    words = {w[:5] for w in _TOPIC.findall(low)} - _COMMON
    shared = words & {w[:5] for w in _TOPIC.findall(q)}
    # in a role-play, or about "your previous answer", only a line that is in the question's own terms (a speaker
    # label, a word of the question's subject) is the asked-for text: a plea to the grader speaks of neither
    if (_ROLE_PLAY.search(q) or (_YOUR_ANSWER.search(q) and _MY_ANSWER.search(low))) and (
            shared or (_ROLE_PLAY.search(q) and _LABEL.match(low))):
        return True
    return len(shared) >= 2 and len(shared) >= ECHO_SHARE * len(words)


def says_something(sentence: str) -> bool:
    """Whether a sentence has the ``STRONG_MIN_WORDS`` words a strong hit needs."""
    return len(_WORDS.sub(" ", sentence.lower()).split()) >= STRONG_MIN_WORDS


def context_around(text: str, start: int, end: int, cut: Sequence[tuple[int, int]] = ()) -> str:
    """The text of ``text`` within ``CONTEXT_CHARS`` of the sentence at ``start:end``, without the sentence and
    without the ``cut`` spans (other judge-addressing sentences: an attack's own sentences are not its host's
    topic), whitespace collapsed; empty when fewer than ``CONTEXT_MIN_WORDS`` words are left."""
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
    drop = sorted((max(s, lo), min(e, hi)) for s, e in [(start, end), *cut] if s < hi and e > lo)
    parts, pos = [], lo
    for s, e in drop:
        if s > pos:
            parts.append(text[pos:s])
        pos = max(pos, e)
    parts.append(text[pos:hi])
    words = " ".join(parts).split()
    return " ".join(words) if len(words) >= CONTEXT_MIN_WORDS else ""


class SemanticModel:
    """The fitted linear models (lexical, embedding, and the stack that combines them) and their thresholds, as
    stored in ``cheat_model.json``."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        lex = data["lexical"]
        self.vocab: dict[str, float] = lex["weights"]
        self.lex_bias = float(lex["bias"])
        emb = data["semantic"]
        self.emb_w = np.asarray(emb["weights"], dtype=np.float32)
        self.emb_bias = float(emb["bias"])
        self.embedding_model = emb.get("model")
        stack = data["stack"]
        self.stack = (float(stack["lexical"]), float(stack["semantic"]), float(stack["bias"]))
        t = data["thresholds"]
        self.lexical_floor = float(t["lexical_floor"])
        self.threshold = float(t["threshold"])
        self.strong = float(t["strong"])
        self.lexical_only = float(t["lexical_only"])
        self.lexical_strong = float(t["lexical_strong"])
        self.off_topic = float(t["off_topic"]) if t.get("off_topic") is not None else None
        self.version = str(data.get("version", "?"))

    def lexical(self, sentences: Sequence[str]) -> np.ndarray:
        """Log-odds of the lexical model."""
        return np.fromiter(
            (self.lex_bias + sum(self.vocab.get(f, 0.0) for f in features(s)) for s in sentences),
            dtype=np.float64, count=len(sentences),
        )

    def semantic(self, vectors: np.ndarray) -> np.ndarray:
        """Log-odds of the embedding model for (n, d) unit vectors."""
        return vectors.astype(np.float64) @ self.emb_w.astype(np.float64) + self.emb_bias

    def combined(self, lexical: np.ndarray, semantic: np.ndarray) -> np.ndarray:
        """Log-odds of the stack over the two models' log-odds."""
        a, c, b = self.stack
        return a * lexical + c * semantic + b


@lru_cache(maxsize=1)
def load_model(path: str | None = None) -> SemanticModel:
    p = Path(path) if path else MODEL_FILE
    try:
        return SemanticModel(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, KeyError, ValueError) as e:
        raise LionEvalError(f"cannot read the judge-addressing model {p}: {e}",
                            fix="reinstall lioneval, or retrain it: python -m lioneval.checks.train_semantic") from e


def load_corpus(path: str | Path | None = None) -> dict[str, Any]:
    """The cheat corpus: ``families`` (name -> what), ``attacks`` and ``honest`` (id, split, text[, family])."""
    p = Path(path) if path else CORPUS_FILE
    return json.loads(p.read_text(encoding="utf-8"))


def _embed(texts: list[str], model: str | None) -> np.ndarray | None:
    try:
        return embed(texts, model)
    except ConfigError:  # a setting to correct (LIONEVAL_EMBED_PRECISION), not a missing model
        raise
    except LionEvalError as e:  # no torch / no model package: the lexical model decides alone
        log.warning("judge-addressing detector without its embedding model (%s); lexical scores only", e.message)
        return None


def scan_texts(
    texts: Sequence[Sequence[str]], model: SemanticModel | None = None, *, use_embeddings: bool = True,
    normalize: Callable[[str], Any] | None = None, code: Callable[[str], Sequence[tuple[int, int]]] | None = None,
    questions: Sequence[Sequence[str] | None] | None = None,
) -> list[list[SemanticHit]]:
    """Judge-addressing sentences of each answer (a list of turns); one list of hits per answer, in order.

    All answers' doubtful sentences are embedded in one batch. ``use_embeddings=False`` (or a missing embedding
    model) decides by the lexical model alone, at its stricter ``lexical_only`` and ``lexical_strong`` thresholds.
    ``normalize`` and ``code`` are passed on to ``candidate_sentences``. ``questions`` (per answer, the question's
    turns, or None when unknown) mark the hits that ``echo`` their question.
    """
    model = model or load_model()
    cands: list[tuple[int, int, int, int, str]] = []  # answer, turn, start, end, text
    for i, turns in enumerate(texts):
        for t, text in enumerate(turns):
            for s, e in candidate_sentences(text, normalize, code):
                cands.append((i, t, s, e, text[s:e]))
    out: list[list[SemanticHit]] = [[] for _ in texts]
    if not cands:
        return out
    lex = model.lexical([c[4] for c in cands])
    doubt = np.flatnonzero(lex >= model.lexical_floor)
    if doubt.size == 0:
        return out
    vectors = None
    if use_embeddings:
        unique = sorted({cands[k][4] for k in doubt})
        got = _embed(unique, model.embedding_model)
        if got is not None:
            row = {s: r for r, s in enumerate(unique)}
            vectors = got[[row[cands[k][4]] for k in doubt]]
    if vectors is not None:
        sem = model.semantic(vectors)
        score = model.combined(lex[doubt], sem)
        keep, strong = score >= model.threshold, model.strong
    else:
        sem = None
        score = lex[doubt]
        keep, strong = score >= model.lexical_only, model.lexical_strong
    asked = ["\n".join(questions[i] or ()) if questions is not None and i < len(questions) else ""
             for i in range(len(texts))]
    kept = [int(j) for j in np.flatnonzero(keep)]
    for j in kept:
        k = int(doubt[j])
        i, t, s, e, text = cands[k]
        echo = bool(asked[i]) and echoes_question(text, asked[i])
        out[i].append(SemanticHit(t, s, e, text, float(score[j]), float(lex[k]),
                                  None if sem is None else float(sem[j]),
                                  strong=float(score[j]) >= strong and says_something(text), echo=echo))
    if vectors is not None and model.off_topic is not None:
        _second_look(out, texts, vectors[kept], asked, model.off_topic, model.embedding_model)
    return out


_Look = tuple[int, int, int, str, str]  # answer, hit, the hit's row in the vectors, context, question


def _second_look(out: list[list[SemanticHit]], texts: Sequence[Sequence[str]], vectors: np.ndarray,
                 asked: Sequence[str], limit: float, embedding_model: str | None) -> None:
    """Step 4, in place: each hit of ``out`` below ``strong`` that says something and does not echo its question
    (``asked``, per answer, "" when unknown) is compared with the text around it (``context_around``) and with its
    question; one further from both than ``limit`` (the model's ``off_topic``) becomes strong and ``off_topic``.
    ``vectors`` are the hits' embeddings, in ``out``'s order. The contexts are embedded in one batch, then the
    questions of the sentences still off topic."""
    looks: list[_Look] = []
    row = -1
    for i, hits in enumerate(out):
        for h, hit in enumerate(hits):
            row += 1
            if hit.strong or hit.echo or not says_something(hit.text):
                continue
            # the turn's other hits are cut out (the hit itself always is)
            context = context_around(texts[i][hit.turn], hit.start, hit.end,
                                     [(o.start, o.end) for o in hits if o.turn == hit.turn])
            if context:
                looks.append((i, h, row, context, asked[i]))
    # the contexts first; a question only for a sentence its context leaves off topic (most are on it)
    far = _far(looks, [x[3] for x in looks], vectors, embedding_model, limit)
    to_ask = [x for x in far if x[4]]
    far = [x for x in far if not x[4]]
    far += _far(to_ask, [x[4] for x in to_ask], vectors, embedding_model, limit)
    for i, h, _, _, _ in far:
        out[i][h] = replace(out[i][h], strong=True, off_topic=True)


def _far(looks: list[_Look], others: list[str], vectors: np.ndarray, embedding_model: str | None,
         limit: float) -> list[_Look]:
    """The ``looks`` whose sentence's cosine with its text in ``others`` (its context, or its question) is below
    ``limit``; the texts are embedded in one batch. None when there is nothing to compare or no embedding model."""
    unique = sorted(set(others))
    got = _embed(unique, embedding_model) if unique else None
    if got is None:
        return []
    index = {x: r for r, x in enumerate(unique)}
    return [x for x, o in zip(looks, others, strict=True) if float(vectors[x[2]] @ got[index[o]]) < limit]
