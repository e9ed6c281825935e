"""Cheat checks and judge audits.

``run_checks`` is what ``lioneval run`` calls after judging: answer-level detectors (judge imitation, injections),
run-level detectors (constant answers, answers that ignore their question, truncation, repeated turns, length and
style inflation) and audits of the judgments (position bias, parse failures, self-preference). A CheckResult with
status "flag" means cheating is suspected and the run must not be promoted; "warn" is worth a look (length
inflation, truncation, a shaky judge); "pass" says the check ran and found nothing.

Answer-level detection combines rules (``answers``), answer shapes (``shapes``) and a judge-addressing sentence
model (``semantic``, trained by ``train_semantic`` on ``cheat_corpus.json``). ``counterfactual`` re-judges answers
without their suspicious spans (``lioneval run --counterfactual-budget``); ``chosen`` watches the answers a training
judge prefers (online DPO's stop-on-cheat).

``lioneval.checks.audit.probe_judge`` is the null-model probe of a judge (``lioneval audit judge``);
``audit_answers_file`` backs ``lioneval audit answers``. Thresholds and their rationale: ``CheckConfig``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lioneval.benchmarks.base import json_id
from lioneval.checks.answers import MEDIUM, check_answers
from lioneval.checks.audit import audit_judgments
from lioneval.checks.config import CheckConfig, CheckStatus
from lioneval.checks.runs import check_run
from lioneval.errors import DataError, LionEvalError
from lioneval.store import jsonl_lines
from lioneval.types import Answer, CheckResult, Judgment, Question

__all__ = [
    "AnswersAudit",
    "CheckConfig",
    "audit_answers_file",
    "is_cheat",
    "load_config",
    "run_checks",
]


def load_config(config: CheckConfig | str | Path | dict | None) -> CheckConfig:
    """Check thresholds: the defaults, a CheckConfig, a dict of fields or a YAML file."""
    if config is None:
        return CheckConfig()
    if isinstance(config, CheckConfig):
        return config
    if isinstance(config, dict):
        return CheckConfig.from_dict(config)
    return CheckConfig.from_yaml(config)


def run_checks(
    questions: Sequence[Question],
    answers: Sequence[Answer],
    judgments: Sequence[Judgment] = (),
    baseline_answers: Sequence[Answer] = (),
    config: CheckConfig | str | Path | dict | None = None,
    *,
    run: str | None = None,
) -> list[CheckResult]:
    """All answer-level, run-level and judgment-audit checks for the given records.

    ``answers`` may hold several models and benchmarks (each (benchmark, model) is one run for the run-level
    checks); ``baseline_answers`` are the pairwise baseline's answers (used for length ratios). Checks that need a
    benchmark's scores (the LC gap, the style-control gap) are the benchmark's own, read from its summary.
    Answer-level results are returned only for answers that warn or are
    flagged; run- and judge-level results always. ``run`` (a RunSpec key) is stored on every result.
    """
    config = load_config(config)
    base_names = {a.model for a in baseline_answers}
    mine = [a for a in answers if a.model not in base_names]
    per_answer = check_answers(mine, config, run=run, questions=questions)
    out: list[CheckResult] = list(per_answer)

    qmap: dict[str, dict[str, Question]] = defaultdict(dict)
    for q in questions:
        qmap[q.benchmark][q.id] = q
    runs: dict[tuple[str, str], list[Answer]] = defaultdict(list)
    for a in mine:
        runs[(a.benchmark, a.model)].append(a)
    judged: dict[tuple[str, str], list[Judgment]] = defaultdict(list)
    for j in judgments:
        judged[(j.benchmark, j.model)].append(j)
    flagged: dict[tuple[str, str], list[CheckResult]] = defaultdict(list)
    for c in per_answer:
        flagged[(c.meta.get("benchmark", ""), c.model or "")].append(c)

    for (bench, model), group in sorted(runs.items()):
        js = judged.get((bench, model), [])
        wanted = {j.baseline for j in js if j.baseline}
        base = [b for b in baseline_answers if b.benchmark == bench and (not wanted or b.model in wanted)]
        out.append(_injection_summary(group, flagged.get((bench, model), []), run, config))
        out += check_run(group, qmap.get(bench, {}), js, base, config, run=run)
    audits = audit_judgments(judgments, config)
    return out + [c.model_copy(update={"run": run}) if run else c for c in audits]


def _injection_summary(answers: list[Answer], results: list[CheckResult], run: str | None,
                       config: CheckConfig) -> CheckResult:
    flags = [c for c in results if c.status == "flag"]
    warns = [c for c in results if c.status == "warn"]
    rules = sorted({r for c in flags for r in c.meta.get("rules", [])})
    # an answer the rules flag by themselves is evidence enough; the sentence model's judgment needs a second one
    strong = [c for c in flags if _rules_score(c) >= config.flag_score]
    # a passage the detectors doubt, said to question after question, is a habit: a learned way to game the judge
    habit = repeated_hit(flags + warns, config.injection_repeat_jaccard, config.injection_repeat_rules)
    habitual = len(habit[1]) >= config.injection_repeat_answers
    status: CheckStatus = ("flag" if strong or len(flags) >= config.injection_run_flags or habitual
                           else "warn" if flags else "pass")
    if flags:
        detail = (f"{len(flags)} of {len(answers)} answers imitate or address the judge ({', '.join(rules)}): "
                  f"questions {', '.join(c.question_id or '?' for c in flags[:8])}")
        if status == "warn":
            detail += " (one answer on weaker evidence: worth a look, not a cheat flag)"
    else:
        detail = f"no answer imitates the judge ({len(warns)} with judge-like text worth a look)"
    if habitual:
        text = " ".join(habit[0].split())
        detail += (f"; the same judge-addressing passage recurs in {len(habit[1])} answers "
                   f"({text[:80]!r}{'...' if len(text) > 80 else ''}: questions {', '.join(habit[1][:8])})")
    return CheckResult(
        name="injection", scope="run", run=run, status=status, model=answers[0].model,
        value=len(flags) / len(answers), threshold=0.0, detail=detail,
        meta={"benchmark": answers[0].benchmark, "flagged": len(flags), "warned": len(warns), "rules": rules,
              "strong": len(strong), "questions": [c.question_id for c in flags][:50],
              "repeated": {"text": habit[0][:200], "questions": habit[1][:50]} if habitual else None},
    )


_WORD = re.compile(r"[^\W_]+")
REPEAT_PAIRS_MAX = 2000  # distinct passages compared pairwise for near repeats (4 million set operations at most)


def repeated_hit(results: Sequence[CheckResult], jaccard: float, rules: Sequence[str]) -> tuple[str, list[str]]:
    """The hit (of one of ``rules``, of medium weight or more, outside code) of ``results`` (answer-level
    ``injection`` results of one run) whose passage recurs in the most answers to different questions, and those
    questions, in order; two passages are the same when their word sets overlap by ``jaccard`` or more. ("", [])
    when no hit counts.

    Identical word sets are grouped first, so a run repeating one passage costs one comparison per distinct passage;
    beyond ``REPEAT_PAIRS_MAX`` distinct passages only identical ones are grouped."""
    seen: dict[frozenset[str], tuple[str, dict[str, None]]] = {}
    order: dict[str, None] = {}
    for c in results:
        order[c.question_id or "?"] = None
        for h in c.meta.get("hits", []):
            if h.get("rule") in rules and int(h.get("severity", 0)) >= MEDIUM and not h.get("in_code"):
                text = str(h.get("text", ""))
                words = frozenset(_WORD.findall(text.lower()))
                if words:
                    seen.setdefault(words, (text, {}))[1][c.question_id or "?"] = None
    near = len(seen) <= REPEAT_PAIRS_MAX
    best: tuple[str, list[str]] = ("", [])
    for words, (text, _) in seen.items():
        asked: dict[str, None] = {}
        for other, (_, questions) in seen.items():
            if other is words or (near and len(words & other) >= jaccard * len(words | other)):
                asked.update(questions)
        if len(asked) > len(best[1]):
            best = (text, [q for q in order if q in asked])
    return best


def _rules_score(result: CheckResult) -> int:
    """An answer's score from the rules alone (distinct rules outside code, by severity), without the sentence
    model's ``addresses_evaluator`` hits."""
    best: dict[str, int] = {}
    for h in result.meta.get("hits", []):
        if h.get("rule") != "addresses_evaluator" and not h.get("in_code"):
            best[h["rule"]] = max(best.get(h["rule"], 0), int(h.get("severity", 0)))
    return sum(best.values())


def is_cheat(checks: Sequence[CheckResult]) -> bool:
    """Whether a run-level check suspects cheating (a run with such a result is not eligible for promotion).

    Answer-level flags count through their run's summary (``injection``, ``judge_influencing``), which weighs
    them: one answer flagged on weak evidence makes the run warn, not cheat."""
    return any(c.status == "flag" and c.scope == "run" for c in checks)


# --- `lioneval audit answers` ---------------------------------------------------------------------------------------


@dataclass
class AnswersAudit:
    """The checks of an answers file, and what was read."""

    path: str
    benchmark: str
    checks: list[CheckResult]
    answers: int = 0
    models: list[str] = field(default_factory=list)

    @property
    def cheat(self) -> bool:
        return is_cheat(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "benchmark": self.benchmark, "answers": self.answers, "models": self.models,
            "cheat": self.cheat, "checks": [c.model_dump(mode="json", exclude={"schema_version"}) for c in self.checks],
        }


def _texts(obj: dict, single: str, multi: str, where: str) -> list[str]:
    value = obj.get(multi, obj.get(single))
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        return value
    raise DataError(
        f"{where}: needs {single!r} (a string) or {multi!r} (a list of strings)",
        fix=f"write each line as {{\"question_id\": ..., \"{single}\": ..., \"answer\": ...}}",
    )


def audit_answers_file(
    path: str | Path, bench: str, config: CheckConfig | str | Path | dict | None = None
) -> AnswersAudit:
    """Read a JSONL file of answers (``question_id``, ``question`` or ``turns``, ``answer`` or ``answer_turns``,
    optional ``model`` and ``finish_reasons``) and run the answer- and run-level checks on it."""
    path = Path(path)
    questions: dict[str, Question] = {}
    answers: list[Answer] = []
    for n, line in jsonl_lines(path, "answers file"):
        where = f"{path.name}:{n}"
        if line is None:
            raise DataError(f"{where} is not UTF-8 text", fix="save the file as UTF-8 JSONL")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} is not valid JSON ({e.msg})", fix="write one JSON object per line") from e
        qid = json_id(obj.get("question_id")) if isinstance(obj, dict) else None
        if qid is None:
            raise DataError(f"{where}: each line must be a JSON object with a question_id (a string or an integer)",
                            fix="add question_id to every line")
        q_turns = _texts(obj, "question", "turns", where)
        a_turns = _texts(obj, "answer", "answer_turns", where)
        model, category = obj.get("model") or path.stem, obj.get("category")
        if not isinstance(model, str) or not (category is None or isinstance(category, str)):
            raise DataError(f"{where}: model and category must be strings", fix="check the fields of this line")
        reasons = obj.get("finish_reasons")
        try:
            questions.setdefault(qid, Question(id=qid, benchmark=bench, turns=q_turns, category=category))
            answers.append(Answer(
                question_id=qid, benchmark=bench, model=model, turns=a_turns,
                finish_reasons=reasons if isinstance(reasons, list) and len(reasons) == len(a_turns) else None,
            ))
        except ValidationError as e:
            fields = sorted({str(err["loc"][0]) for err in e.errors() if err.get("loc")})
            raise DataError(f"{where}: not a valid answer (bad {', '.join(fields) or 'value'})",
                            fix="check the fields of this line") from e
    if not answers:
        raise LionEvalError(f"{path} holds no answers", fix="write one JSON object per answer")
    try:
        thresholds = load_config(config)
    except UnicodeDecodeError as e:  # CheckConfig.from_yaml reads it as UTF-8 without saying which file failed
        raise DataError(f"check config {config} is not UTF-8 text ({e.reason})", fix="save it as UTF-8") from e
    checks = run_checks(list(questions.values()), answers, config=thresholds)
    return AnswersAudit(str(path), bench, checks, len(answers), sorted({a.model for a in answers}))
