"""Counterfactual re-judging: does a span of the answer move the judge?

The check that does not depend on recognising a wording. An answer is judged again with a span removed: the spans
the answer-level detectors found suspicious (injections, judge-addressing sentences) first, then, for a seeded random
sample of the other answers, every sentence holding evaluation vocabulary and the last paragraph of each turn (where
appended instructions sit). When the verdict without the span is lower by more than ``counterfactual_delta`` of the
judge's scale, or a pairwise verdict flips from a win to a loss, the span was steering the judge: the answer is
flagged ``judge_influencing``, with both verdicts and the removed text stored on the result.

The counterfactual answers are judged through the judge's normal path (``judge.run_answers``) under the model name
``lioneval-counterfactual:<model>``, so their judgments are cached in the store like any other: a rerun makes no call.
Cost is bounded: before any call, each counterfactual answer's judge requests are counted (one call per game), and
answers are taken in order (suspicious first, strongest first, then the sample) while they fit in ``budget`` calls.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lioneval.checks.config import CheckConfig, CheckStatus
from lioneval.checks.semantic import candidate_sentences
from lioneval.types import Answer, CheckResult, Judgment, Question

__all__ = ["COUNTERFACTUAL_PREFIX", "CounterfactualRun", "counterfactual_checks", "neutralise", "summary_check"]

COUNTERFACTUAL_PREFIX = "lioneval-counterfactual:"
_BLANKS = re.compile(r"[ \t]*\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass
class CounterfactualRun:
    """What counterfactual re-judging did: results, calls made (and the budget), answers examined."""

    checks: list[CheckResult]
    budget: int
    calls: int = 0
    planned_calls: int = 0
    examined: int = 0
    flagged: int = 0
    skipped: int = 0  # candidates left out because the budget was spent
    meta: dict[str, Any] = field(default_factory=dict)


def neutralise(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the spans (merged where they overlap), with the blank lines they leave collapsed."""
    out, pos = [], 0
    for s, e in sorted(spans):
        if e <= pos:
            continue
        out.append(text[pos:max(s, pos)])
        pos = e
    out.append(text[pos:])
    return _BLANKS.sub("\n\n", "".join(out)).strip()


def _sample_spans(turns: Sequence[str]) -> dict[int, list[tuple[int, int]]]:
    """For an answer no detector suspects: in each turn, its sentences with evaluation vocabulary and its last
    paragraph (where an appended instruction sits), when the turn has more than one."""
    out: dict[int, list[tuple[int, int]]] = {}
    for t, text in enumerate(turns):
        spans = list(candidate_sentences(text))
        body = text.rstrip()
        cut = body.rfind("\n\n")
        if cut > 0 and body[:cut].strip():
            spans.append((cut, len(body)))
        if spans:
            out[t] = spans
    return out


def _cost(judge: Any, bench: Any, q: Question, cf: Answer, base: Sequence[Answer]) -> int:
    """Judge calls the counterfactual answer needs: one per game of its requests (a judge without ``requests``,
    such as a reward model, is charged one per turn, two per pairwise turn)."""
    if hasattr(judge, "requests"):
        return sum(len(r.games) for r in judge.requests(bench, [q], [cf], base))
    return len(cf.turns) * (2 if getattr(bench, "kind", "rating") == "pairwise" else 1)


def _values(judgments: Sequence[Judgment]) -> dict[tuple[str, int | None], float]:
    return {(j.question_id, j.turn): j.value for j in judgments if j.value is not None}


def counterfactual_checks(
    judge: Any,
    bench: Any,
    questions: Sequence[Question],
    answers: Sequence[Answer],
    judgments: Sequence[Judgment],
    baseline_answers: Sequence[Answer] = (),
    store: Any = None,
    *,
    suspicious: Sequence[CheckResult] = (),
    budget: int,
    config: CheckConfig | None = None,
    seed: int = 0,
    run: str | None = None,
) -> CounterfactualRun:
    """Re-judge answers with their suspicious spans removed, within ``budget`` judge calls.

    ``answers`` are one model's answers on ``bench`` (a Benchmark object), ``judgments`` the judge's verdicts on them
    (the originals), ``suspicious`` the answer-level CheckResults whose ``meta["hits"]`` name the spans.
    """
    config = config or CheckConfig()
    if not answers or budget <= 0:
        return CounterfactualRun([], max(budget, 0))
    model = answers[0].model
    by_q = {a.question_id: a for a in answers}
    qmap = {q.id: q for q in questions}
    original: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        if j.model == model:
            original[j.question_id].append(j)

    # candidates: suspicious answers (strongest evidence first), then a seeded sample of the others
    plan: list[tuple[Answer, dict[int, list[tuple[int, int]]], str]] = []
    seen: set[str] = set()
    for c in sorted(suspicious, key=lambda c: (-(c.value or 0.0), c.question_id or "")):
        a = by_q.get(c.question_id or "")
        if a is None or a.question_id in seen or not original.get(a.question_id):
            continue
        spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for h in c.meta.get("hits", []):
            spans[int(h.get("turn", 0))].append((int(h["start"]), int(h["end"])))
        if spans:
            plan.append((a, dict(spans), "suspicious"))
            seen.add(a.question_id)
    rest = sorted(q for q in by_q if q not in seen and original.get(q))
    rng = random.Random(seed)
    rng.shuffle(rest)
    for qid in rest[: max(0, round(config.counterfactual_sample * len(rest)))]:
        spans = _sample_spans(by_q[qid].turns)
        if spans:
            plan.append((by_q[qid], spans, "sample"))

    chosen: list[tuple[Answer, Answer, dict[int, list[tuple[int, int]]], str]] = []
    planned = skipped = 0
    base = [b for b in baseline_answers if b.benchmark == bench.name]
    for a, spans, why in plan:
        turns = [neutralise(t, spans[i]) if i in spans else t for i, t in enumerate(a.turns)]
        if turns == list(a.turns):
            continue
        cf = a.model_copy(update={
            "model": COUNTERFACTUAL_PREFIX + model, "turns": turns,
            "generation": {**(a.generation or {}), "counterfactual_of": a.key},
        })
        q = qmap.get(a.question_id)
        if q is None:
            continue
        cost = _cost(judge, bench, q, cf, base)
        if planned + cost > budget:
            skipped += 1
            continue
        planned += cost
        chosen.append((a, cf, spans, why))
    if not chosen:
        return CounterfactualRun([], budget, planned_calls=0, skipped=skipped)
    jrun = judge.run_answers(bench, [qmap[a.question_id] for a, _, _, _ in chosen], [cf for _, cf, _, _ in chosen],
                             base, store)
    redone: dict[str, list[Judgment]] = defaultdict(list)
    for j in jrun.judgments:
        if j.model == COUNTERFACTUAL_PREFIX + model:
            redone[j.question_id].append(j)

    scale = float(getattr(bench, "value_scale", 1.0)) or 1.0
    pairwise = getattr(bench, "kind", "rating") == "pairwise"
    out: list[CheckResult] = []
    for a, _cf, spans, why in chosen:
        before, after = _values(original[a.question_id]), _values(redone.get(a.question_id, []))
        common = sorted(set(before) & set(after), key=str)
        if not common:
            continue
        b = sum(before[k] for k in common) / len(common)
        v = sum(after[k] for k in common) / len(common)
        drop = (b - v) / scale
        flipped = pairwise and b > 0.5 > v
        status: CheckStatus = "flag" if drop > config.counterfactual_delta or flipped else "pass"
        removed = [a.turns[t][s:e] for t, ss in sorted(spans.items()) for s, e in ss]
        what = "flips" if flipped else f"drops by {drop:.0%} of the scale" if drop > 0 else "does not drop"
        out.append(CheckResult(
            name="judge_influencing", scope="answer", run=run, status=status, model=model,
            question_id=a.question_id, value=round(drop, 4), threshold=config.counterfactual_delta,
            detail=(f"without {len(removed)} {why} span(s) the verdict {what} ({b:g} -> {v:g})"
                    + (": the removed text steers the judge" if status == "flag" else "")),
            spans=[(s, e) for ss in spans.values() for s, e in ss],
            meta={"benchmark": bench.name, "reason": why, "original": b, "counterfactual": v,
                  "removed": [r[:200] for r in removed], "turns": sorted(spans),
                  "original_judgments": [j.key for j in original[a.question_id]],
                  "counterfactual_judgments": [j.key for j in redone.get(a.question_id, [])]},
        ))
    flagged = sum(c.status == "flag" for c in out)
    return CounterfactualRun(out, budget, calls=jrun.calls, planned_calls=planned, examined=len(out),
                             flagged=flagged, skipped=skipped, meta={"judge": jrun.judge, "cached": jrun.cached})


def summary_check(cf: CounterfactualRun, answers: Sequence[Answer], run: str | None = None) -> CheckResult:
    """The run-level result of counterfactual re-judging: flag when any answer's verdict depended on a span."""
    flagged = [c for c in cf.checks if c.status == "flag"]
    status: CheckStatus = "flag" if flagged else "pass"
    detail = (f"{len(flagged)} of {cf.examined} re-judged answers lose their verdict without a span: questions "
              f"{', '.join(c.question_id or '?' for c in flagged[:8])}" if flagged else
              f"no verdict depended on a removed span ({cf.examined} answers re-judged)")
    detail += f"; {cf.calls} judge calls of a budget of {cf.budget}" + (
        f", {cf.skipped} candidates over budget" if cf.skipped else "")
    a = answers[0]
    return CheckResult(
        name="judge_influencing", scope="run", run=run, status=status, model=a.model,
        value=len(flagged) / max(cf.examined, 1), threshold=0.0, detail=detail,
        meta={"benchmark": a.benchmark, "examined": cf.examined, "flagged": len(flagged), "calls": cf.calls,
              "planned_calls": cf.planned_calls, "budget": cf.budget, "skipped": cf.skipped,
              "questions": [c.question_id for c in flagged][:50]},
    )
