"""Adaptive evaluation: judge a benchmark's questions in a seeded order, a batch at a time, and stop as soon as the
question asked is settled at the stated error rate (``lioneval run --until-decided``, ``lioneval compare
--until-decided``, ``LionEvalCallback`` with ``sequential: true``).

The questions a run can ask (:class:`Goal`):

* ``better``: is this checkpoint better than the incumbent run? Yes when the paired per-question difference is
  shown above 0; no when it is shown below ``margin`` (it is not better by more than the margin).
* ``not-worse``: is it not worse than the incumbent by ``margin`` or more? Yes when the difference is shown above
  ``-margin``; no when it is shown below it.
* ``width``: is the run's own score known to within ``width``? Yes when its confidence sequence is narrower.

Each claim is an anytime-valid test at level ``alpha`` (``lioneval.stats.sequential``: betting confidence sequences
for bounded means, Waudby-Smith & Ramdas 2023), so looking after every batch and stopping at the first answer keeps
the error at ``alpha`` (one benchmark; several benchmarks of one run share it, Bonferroni). The differences are the
benchmark's paired units (``Benchmark.paired_units``: one value per question, on the scale ``[0, value_scale]``),
so the target is the mean per-question difference, which is the headline's difference wherever every question
weighs the same (MT-Bench, AlpacaEval's win rate). Questions are taken as a sample (the i.i.d. test): a "yes"
means the same as the paired tests of ``lioneval.decisions``, not merely that the full question set would agree.

What is stored: the judgments are ordinary judgments, so a later full run with the same settings (same run id)
reuses them and judges only the rest. A report that stopped early says so in ``meta["adaptive"]`` ("decided after
212 of 805 questions", the rule, alpha, margin, the Decision) and is stored as *incomplete*, with the reason and the
way to finish it: leaderboards, promotion and the ordinary decisions never take it for a full run. Generation
follows the judging order batch by batch, so a stopped run also skips generating the rest.

Several candidates against one incumbent (:func:`race_until_decided`): Holm's step-down over every candidate's
anytime p-values holds the family-wise error at ``alpha``, and a settled candidate draws no more judge calls, so
the budget goes to the ones still undecided.

Measured on the published judgments (``benchmarks/adaptive_replay.py``: every pair of 57 AlpacaEval and 32 MT-Bench
models, 20 orders each): 70% of pairs decided, with a median of 20% of the judge calls (AlpacaEval alone 12%; MT-Bench,
80 questions, 50%), contradicting the full data in under 0.01% of decisions; simulated type-I error 0.015 under
continuous monitoring where peeking at a fixed-n interval gives 0.37.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lioneval import decisions
from lioneval.backends.base import Backend, redact_url
from lioneval.benchmarks import Benchmark
from lioneval.checks import load_config
from lioneval.errors import ConfigError, IncompleteError, JudgeUnavailableError, LionEvalError
from lioneval.executors import distribute
from lioneval.generation import generate_answers
from lioneval.pipeline import (
    Limits,
    Prepared,
    Progress,
    RunConfig,
    RunResult,
    _lease,
    finish_hint,
    policy_backend,
    prepare,
    report,
    run,
    run_judges,
    run_spec,
)
from lioneval.stats import sequential as seq
from lioneval.store import RunStore
from lioneval.types import Answer, Decision, Judgment, Question, Report, RunSpec, content_hash

__all__ = [
    "GOALS",
    "METHOD",
    "AdaptiveResult",
    "Goal",
    "Outcome",
    "SequentialEvaluator",
    "assess",
    "compare_until_decided",
    "goal_from_flags",
    "info",
    "order_questions",
    "race_until_decided",
    "run_until_decided",
    "settled",
    "usable",
]

GOALS = ("better", "not-worse", "width")
METHOD = "betting-cs"  # Waudby-Smith & Ramdas (2023), aGRAPA bets, i.i.d. questions
DEFAULT_BATCH = 10
MIN_LOOK = 10  # no decision on fewer questions than this (as the fixed-n decisions' MIN_QUESTIONS)


@dataclass(frozen=True)
class Goal:
    """The question an adaptive run answers, and how it may spend judge calls."""

    kind: str = "better"  # better | not-worse | width
    incumbent: str | None = None  # run id of the incumbent (better, not-worse)
    margin: float = 0.0  # in the headline's units (MT-Bench points, win-rate percentage points)
    width: float | None = None  # the widest acceptable interval (width), in the headline's units
    alpha: float = 0.05
    batch: int = DEFAULT_BATCH  # questions judged between two looks
    budget: int | None = None  # judge calls over the whole run
    decision_kind: Literal["compare", "promotion", "early_stop"] = "compare"

    def validate(self) -> Goal:
        if self.kind not in GOALS:
            raise ConfigError(f"unknown adaptive question {self.kind!r}", fix=f"use one of {', '.join(GOALS)}")
        if self.kind != "width" and not self.incumbent:
            raise ConfigError(f"the question {self.kind!r} needs an incumbent run",
                              fix="name it (--better-than RUN or --not-worse-than RUN; `lioneval runs` lists runs)")
        if self.kind == "width" and (self.width is None or not self.width > 0):
            raise ConfigError(f"the width question needs a positive width, not {self.width!r}",
                              fix="pass --width W in the headline's units, e.g. --width 0.5 for MT-Bench")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be between 0 and 1, not {self.alpha!r}", fix="e.g. --alpha 0.05")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0 and math.isfinite(self.margin)):
            raise ConfigError(f"the margin must be a number >= 0, not {self.margin!r}", fix="e.g. --margin 0.1")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"the batch must be a positive number of questions, not {self.batch!r}",
                              fix=f"e.g. {DEFAULT_BATCH}")
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise ConfigError(f"the budget must be a positive number of judge calls, not {self.budget!r}",
                              fix="e.g. --budget 400")
        return self

    def describe(self) -> str:
        if self.kind == "width":
            return f"is the score's interval narrower than {self.width:g}?"
        if self.kind == "better":
            return f"better than run {self.incumbent}?" + (f" (margin {self.margin:g})" if self.margin else "")
        return f"not worse than run {self.incumbent} by {self.margin:g} or more?"


@dataclass
class Outcome:
    """Where one benchmark's sequential test stands after ``n`` of ``total`` questions."""

    decided: bool
    answer: str | None  # "yes" | "no" | None (undecided)
    verdict: str  # the Decision vocabulary: better | worse | non-inferior | inconclusive
    n: int
    total: int
    estimate: float  # the mean difference (paired questions) or the mean score (width), in the headline's units
    ci_low: float | None
    ci_high: float | None
    p_value: float | None = None  # anytime p-value of the claim that decided (1 / the largest capital)

    def line(self, goal: Goal) -> str:
        what = "decided" if self.decided else "undecided"
        ci = f" [{self.ci_low:+.3g}, {self.ci_high:+.3g}]" if self.ci_low is not None else ""
        if goal.kind == "width":
            return f"{what} after {self.n} of {self.total} questions: score {self.estimate:.3g}{ci}"
        return (f"{what} after {self.n} of {self.total} questions: {self.verdict}, difference {self.estimate:+.3g}"
                f"{ci} ({goal.describe()} {self.answer or 'not settled'})")


def order_questions(questions: Sequence[Question], bench: str, seed: int) -> list[Question]:
    """The seeded judging order of a benchmark's questions: the same for every checkpoint of one seed, so paired
    runs stopped at different points share a prefix."""
    ordered = sorted(questions, key=lambda q: q.id)
    rng = np.random.default_rng([int(seed), int(content_hash(["adaptive-order", bench], 8), 16)])
    return [ordered[i] for i in rng.permutation(len(ordered))]


def _looks(n: int, batch: int) -> np.ndarray:
    looks = seq.looks_every(n, batch)
    return looks[looks >= min(MIN_LOOK, n)]


def assess(goal: Goal, values: Sequence[float], incumbent: Sequence[float] | None, *, span: float, scale: float,
           total: int, looks: Sequence[int] | None = None, higher_is_better: bool = True,
           alpha: float | None = None) -> Outcome:
    """The sequential test of ``goal`` on per-question values in judging order (each in ``[0, span]``, the paired
    units before ``scale``); ``incumbent``: the incumbent's values on the same questions (paired questions).
    ``looks``: the numbers of questions after which the test was read (default: every ``goal.batch``)."""
    alpha = goal.alpha if alpha is None else alpha
    v = np.asarray(values, float)
    n = v.size
    if n == 0:
        return Outcome(False, None, "inconclusive", 0, total, math.nan, None, None)
    at = np.asarray(looks, int) if looks is not None else _looks(n, goal.batch)
    at = at[(at >= min(MIN_LOOK, total, n)) & (at <= n)]
    if goal.kind == "width":
        u = seq.to_unit(v, 0.0, span)
        lo, hi = seq.confidence_sequence(u, alpha=alpha / 2)
        width = (hi - lo) * span * scale
        hit = [k for k in at if width[k - 1] < goal.width]
        k = hit[0] if hit else n
        return Outcome(bool(hit), "yes" if hit else None, "inconclusive", int(k), total,
                       float(v[:k].mean() * scale), float(lo[k - 1] * span * scale),
                       float(hi[k - 1] * span * scale))
    margin = float(goal.margin)
    good, u, up, down = _capitals(goal, v, incumbent, span=span, scale=scale, higher_is_better=higher_is_better,
                                  alpha=alpha)
    t_yes = int(seq.first_look(up, alpha, at)) if at.size else 0
    t_no = int(seq.first_look(down, alpha, at)) if at.size else 0
    if t_yes and (not t_no or t_yes <= t_no):
        k, answer, p = t_yes, "yes", float(math.exp(-np.max(up[:t_yes])))
    elif t_no:
        k, answer, p = t_no, "no", float(math.exp(-np.max(down[:t_no])))
    else:
        k, answer, p = n, None, float(math.exp(-max(np.max(up), np.max(down))))
    lo_u, hi_u = seq.confidence_sequence(u[:k], alpha=alpha)
    lo = (lo_u[-1] * 2 * span - span) * scale
    hi = (hi_u[-1] * 2 * span - span) * scale
    if answer == "yes":
        verdict = "better" if goal.kind == "better" or lo > 0 else "non-inferior"
    elif answer == "no":
        verdict = "worse" if goal.kind == "not-worse" or hi < -margin else "inconclusive"
    else:
        verdict = "inconclusive"
    est = float(good[:k].mean() * scale)
    if not higher_is_better:  # back to the metric's own direction (candidate minus incumbent)
        est, lo, hi = -est, -hi, -lo
    return Outcome(answer is not None, answer, verdict, int(k), total, est, float(lo), float(hi), min(p, 1.0))


def _capitals(goal: Goal, v: np.ndarray, incumbent: Sequence[float] | None, *, span: float, scale: float,
              higher_is_better: bool, alpha: float) -> tuple[np.ndarray, ...]:
    """Paired differences in the good direction, on the unit scale, and the running log capital against the
    "yes" null (up) and the "no" null (down) of a paired goal."""
    sign = 1.0 if higher_is_better else -1.0
    good = sign * (v - np.asarray(incumbent, float))
    u = (good + span) / (2 * span)

    def m(x: float) -> float:  # a difference in the headline's units, on the unit scale
        return (x / scale + span) / (2 * span)

    if goal.kind == "better":
        yes_at, no_at = m(0.0), m(float(goal.margin))
    else:
        yes_at = no_at = m(-float(goal.margin))
    return (good, u, seq.log_capital(u, yes_at, alpha=alpha),
            seq.log_capital(1.0 - u, 1.0 - no_at, alpha=alpha))


def _decision(goal: Goal, out: Outcome, bench: Benchmark, candidate: str | None, alpha: float,
              meta: dict[str, Any] | None = None) -> Decision:
    return Decision(kind=goal.decision_kind, benchmark=bench.name, metric=bench.paired_metric, candidate=candidate,
                    incumbent=goal.incumbent, diff=out.estimate, ci_low=out.ci_low, ci_high=out.ci_high, n=out.n,
                    margin=goal.margin, alpha=alpha, method=METHOD, correction=None, verdict=out.verdict,  # type: ignore[arg-type]
                    p_value=out.p_value, higher_is_better=bench.higher_is_better,
                    meta={"rule": goal.kind, "question": goal.describe(), "answer": out.answer,
                          "decided_after": out.n, "of": out.total, "sequential": True, **(meta or {})})


# -- reading stored runs ------------------------------------------------------------------------------------------
def _values(units: dict[str, tuple[float, float]]) -> dict[str, float]:
    return {q: n / d for q, (n, d) in units.items() if d > 0}


def _incumbent_values(store: RunStore, incumbent: str, bench: Benchmark, judge: str) -> dict[str, float]:
    spec = store.run(incumbent)
    found = [r for r in store.reports(run=spec.key, benchmark=bench.name) if r.judge == judge]
    if not found:
        raise LionEvalError(f"the incumbent run {incumbent} has no {bench.name} report by judge {judge}",
                            fix="compare with a run of the same benchmark judged by the same judge (`lioneval "
                                f"rejudge {incumbent} --judge SPEC` judges it)")
    got = decisions.report_units(store, found[0])
    if got is None:
        raise LionEvalError(f"the incumbent run {incumbent} has no stored {bench.name} judgments to pair with",
                            fix="use an incumbent evaluated by `lioneval run` (its judgments are stored)")
    return _values(got[0])


def _span(bench: Benchmark) -> float:
    return float(bench.value_scale)


# -- the run --------------------------------------------------------------------------------------------------------
@dataclass
class AdaptiveResult:
    """The run and each benchmark's sequential outcome."""

    result: RunResult
    goal: Goal
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    calls: int = 0  # judge calls made by this run
    stopped: dict[str, str] = field(default_factory=dict)  # benchmark -> why judging stopped

    @property
    def run(self) -> str:
        return self.result.run

    @property
    def reports(self) -> list[Report]:
        return self.result.reports

    @property
    def judge_lines(self) -> list[str]:
        return self.result.judge_lines

    @property
    def decided(self) -> bool:
        return bool(self.outcomes) and all(settled(r) is not None for r in self.reports)

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "decided": self.decided, "judge_calls": self.calls,
                "goal": dataclasses.asdict(self.goal),
                "outcomes": {b: dataclasses.asdict(o) for b, o in self.outcomes.items()}}

    def raise_if_undecided(self) -> None:
        """Exit 3 for the CLI when a benchmark's question is still open (budget spent, judge down, failures)."""
        if self.decided:
            return
        why = "; ".join(f"{b}: {self.stopped.get(b, '')} ({o.line(self.goal)})" for b, o in self.outcomes.items()
                        if not (o.decided and settled(_report_of(self.reports, b)) is not None))
        other = [r for r in self.reports if not r.complete and usable(r) is None]
        if other:  # unanswered or unreadable verdicts: finished as any run is
            fix = finish_hint(other)
        elif any(r.complete for r in self.reports if settled(r) is None):
            fix = ("every question was judged without settling it at this alpha: the full run's decision stands "
                   f"(`lioneval compare {self.run} {self.goal.incumbent or 'RUN'}`)")
        else:
            fix = "rerun with a larger --budget (the judgments made are kept and reused)"
        raise IncompleteError(f"run {self.run} is undecided ({why})", fix=fix)

    raise_if_incomplete = raise_if_undecided  # the CLI's exit rule: a settled adaptive run succeeds


def _report_of(reports: Sequence[Report], bench: str) -> Report | None:
    return next((r for r in reports if r.benchmark == bench), None)


def run_until_decided(cfg: RunConfig, store: RunStore, goal: Goal, *, progress: Progress | None = None,
                      backend: Backend | None = None, spec: RunSpec | None = None, judge: Any = None,
                      prepared: Prepared | None = None) -> AdaptiveResult:
    """Evaluate one policy as :func:`lioneval.pipeline.run` does, judging each benchmark's questions in the seeded
    order ``goal.batch`` at a time and stopping as soon as ``goal`` is answered (or the budget is spent)."""
    goal = goal.validate()
    cfg.validate()
    if prepared is None:
        prepared = prepare(cfg, judge)
    checks = load_config(cfg.checks)
    if backend is None or spec is None:
        backend, spec = policy_backend(cfg)
    backend = distribute(backend, cfg.executor)  # as a full run sends its requests
    judges = run_judges(cfg, prepared, backend, judge)
    spec = run_spec(cfg, prepared, spec, judges)
    run_key = store.put_run(spec)
    if goal.incumbent and store.run(goal.incumbent).key == run_key:
        raise LionEvalError(f"run {run_key} is its own incumbent",
                            fix="compare with another checkpoint's run (`lioneval runs` lists them)")
    alpha = goal.alpha / max(1, len(prepared.loaded))  # Bonferroni over the run's benchmarks
    out = AdaptiveResult(RunResult(run=run_key, spec=spec, reports=[]), goal)
    limits = Limits(cfg.max_failed_share, cfg.max_unanswered_share)
    with _lease(store, run_key):
        for name, inputs in prepared.loaded.items():
            bench, bench_judge = inputs.bench, judges[name]
            judge_id = bench_judge.id_for(bench)
            inc = _incumbent_values(store, goal.incumbent, bench, judge_id) if goal.incumbent else None
            order = order_questions(inputs.questions, bench.name, cfg.seed)
            if inc is not None:
                order = [q for q in order if q.id in inc]
            store.put_questions(inputs.questions)
            track = _Track(goal, store, run_key, spec.model, bench, bench_judge, order, _by_question(inputs.baseline),
                           backend, cfg, inc, len(inputs.questions), progress)
            outcome = _judge_until(track, out, alpha)
            why = track.why
            rep = report(store, run_key, bench, judge_id, checks=checks, prices=bench_judge.spec.prices,
                         judge_spec=redact_url(prepared.judges.get(name) or bench_judge.spec.label),
                         requested=track.requested, limits=limits, data=prepared.data.get(name))
            decision = _decision(goal, outcome, bench, run_key, alpha, {"stopped": why}) \
                if goal.kind != "width" else None
            rep = mark(store, rep, goal, outcome, alpha, why, decision)
            out.outcomes[name], out.stopped[name] = outcome, why
            out.result.reports.append(rep)
            out.result.judge_lines.append(f"{name}: {outcome.line(goal)}; {why}")
        done = all(r.complete for r in out.reports)
        store.finish_run(run_key, "complete" if done else "incomplete",
                         "" if done else "; ".join(f"{r.benchmark}: {', '.join(r.incomplete)}" for r in out.reports
                                                   if not r.complete)[:500])
    return out


@dataclass
class _Track:
    """One candidate's way through one benchmark's questions: what it has judged so far and where its test stands."""

    goal: Goal
    store: RunStore
    run_key: str
    model: str
    bench: Benchmark
    judge: Any
    order: list[Question]
    baseline: dict[str, list[Answer]]
    backend: Backend
    cfg: RunConfig
    inc: dict[str, float] | None
    total: int
    progress: Progress | None = None
    done: list[Question] = field(default_factory=list)
    looks: list[int] = field(default_factory=list)
    requested: int = 0
    calls: int = 0
    per_question: float | None = None  # judge calls per question, once a batch has shown it
    why: str = "every question judged"
    open: bool = True  # more questions may be judged

    def cost(self, size: int) -> float:
        """What judging ``size`` more questions is expected to cost in judge calls."""
        return size * (self.per_question or 1.0)

    def step(self, size: int) -> None:
        """Generate and judge the next ``size`` questions of the order (what is stored costs nothing)."""
        batch = self.order[len(self.done):len(self.done) + size]
        if not batch:
            self.open = False
            return
        store, bench = self.store, self.bench
        base = [a for q in batch for a in self.baseline.get(q.id, [])]
        store.put_answers(base)
        store.link(self.run_key, "questions", [q.key for q in batch])
        store.link(self.run_key, "answers", [a.key for a in base])
        answers = generate_answers(self.backend, bench, batch, self.model, max_new_tokens=self.cfg.max_new_tokens,
                                   seed=self.cfg.seed, store=store,
                                   progress=_stage(self.progress, f"generate {bench.name}"))
        store.link(self.run_key, "answers", [a.key for a in answers])
        try:
            jrun = self.judge.run_answers(bench, batch, answers, base, store, retry_failed=self.cfg.retry_failed,
                                          progress=_stage(self.progress, f"judge {bench.name}"))
        except JudgeUnavailableError as e:  # a down judge leaves the question open, not a crash
            self.why = f"the judge answered nothing ({e.message})"
            self.requested += int(getattr(e, "requested", None) or len(batch))
            self.open = False
            return
        store.link(self.run_key, "judgments", [j.key for j in jrun.judgments])
        self.requested += jrun.requested
        self.calls += jrun.calls
        if jrun.calls:
            self.per_question = max(self.per_question or 0.0, jrun.calls / len(batch))
        self.done += batch
        self.looks.append(len(self.done))
        self.open = len(self.done) < len(self.order)
        if self.progress is not None:
            self.progress(f"decide {bench.name}", len(self.done), len(self.order))

    def series(self) -> tuple[list[float], list[float] | None, list[int]]:
        """The values judged so far in order (and the incumbent's), and the looks counted in kept questions: a
        question whose verdict failed drops out of the sequence."""
        vals, inc_vals = _paired(self.store, self.run_key, self.model, self.bench, self.judge.id_for(self.bench),
                                 self.done, self.inc)
        at = sorted({sum(1 for q in self.done[:k] if q.id in vals) for k in self.looks})
        return list(vals.values()), (inc_vals if self.inc is not None else None), at

    def assess(self, alpha: float) -> Outcome:
        vals, inc_vals, at = self.series()
        return assess(self.goal, vals, inc_vals, span=_span(self.bench), scale=self.bench.paired_scale,
                      total=self.total, looks=at, higher_is_better=self.bench.higher_is_better, alpha=alpha)


def _judge_until(track: _Track, out: AdaptiveResult, alpha: float) -> Outcome:
    """Judge the track batch by batch until its goal is settled, the budget is spent or the questions run out."""
    goal = track.goal
    outcome = Outcome(False, None, "inconclusive", 0, track.total, math.nan, None, None)
    while track.open:
        size = min(goal.batch, len(track.order) - len(track.done))
        if goal.budget is not None:
            left = goal.budget - out.calls
            size = min(size, int(left // track.per_question) if track.per_question else left)
            if size < 1:
                track.why = f"judge budget spent ({out.calls} of {goal.budget} calls)"
                break
        before = track.calls
        track.step(size)
        out.calls += track.calls - before
        if track.done:
            outcome = track.assess(alpha)
        if outcome.decided:
            track.why = f"settled at alpha {alpha:g}"
            break
    return outcome


def _by_question(answers: Sequence[Answer]) -> dict[str, list[Answer]]:
    out: dict[str, list[Answer]] = {}
    for a in answers:
        out.setdefault(a.question_id, []).append(a)
    return out


def _paired(store: RunStore, run_key: str, model: str, bench: Benchmark, judge_id: str, done: Sequence[Question],
            inc: dict[str, float] | None) -> tuple[dict[str, float], list[float]]:
    """The run's per-question values in judging order (and the incumbent's on the same questions)."""
    js: list[Judgment] = store.linked(run_key, "judgments", benchmark=bench.name, judge=judge_id)  # type: ignore
    mine = _values(bench.paired_units([j for j in js if j.model == model]))
    vals = {q.id: mine[q.id] for q in done if q.id in mine and (inc is None or q.id in inc)}
    return vals, [inc[q] for q in vals] if inc is not None else []


def _stage(progress: Progress | None, stage: str) -> Callable[..., None] | None:
    if progress is None:
        return None
    return lambda done, total, **extra: progress(stage, done, total, **extra)


# -- what a report says -------------------------------------------------------------------------------------------
def mark(store: RunStore, rep: Report, goal: Goal, outcome: Outcome, alpha: float, why: str,
         decision: Decision | None) -> Report:
    """The report with its adaptive record (``meta["adaptive"]``); one that judged fewer questions than the
    benchmark has is incomplete, saying how to finish it. Stored in place of the plain one."""
    problems = list(rep.incomplete)
    # partial: the run holds fewer questions than the benchmark (a run finished earlier is whole, however few
    # questions the test needed)
    partial = rep.counts.get("questions", outcome.n) < outcome.total
    record = {
        "rule": goal.kind, "question": goal.describe(), "alpha": alpha, "margin": goal.margin, "width": goal.width,
        "incumbent": goal.incumbent, "method": METHOD, "batch": goal.batch, "budget": goal.budget,
        "decided": outcome.decided and not problems, "answer": outcome.answer, "verdict": outcome.verdict,
        "questions_used": outcome.n, "questions_total": outcome.total, "stopped": why,
        "estimate": outcome.estimate if math.isfinite(outcome.estimate) else None,
        "ci_low": outcome.ci_low, "ci_high": outcome.ci_high, "line": outcome.line(goal),
        "decision": decision.model_dump(mode="json") if decision is not None else None,
        "partial": partial,
    }
    incomplete = problems
    meta = {**rep.meta, "adaptive": record}
    if partial:
        incomplete = problems + [
            f"adaptive run {outcome.line(goal)}; {outcome.total - outcome.n} questions not judged (rerun without "
            f"--until-decided to judge them: the {outcome.n} judged are reused)"]
        meta["eligible_for_promotion"] = False
    new = rep.model_copy(update={"meta": meta, "incomplete": incomplete, "complete": not incomplete})
    store.put_report(new)
    return new


def info(rep: Report | None) -> dict[str, Any] | None:
    """A report's adaptive record, or None for an ordinary report."""
    found = rep.meta.get("adaptive") if rep is not None else None
    return found if isinstance(found, dict) else None


def usable(rep: Report | None) -> dict[str, Any] | None:
    """The adaptive record of a report that lacks nothing but the questions its adaptive run did not judge
    (settled, or left open when the budget ran out); None for an ordinary report or one with other gaps."""
    rec = info(rep)
    if rep is None or rec is None:
        return None
    return None if any(not w.startswith("adaptive run ") for w in rep.incomplete) else rec


def settled(rep: Report | None) -> dict[str, Any] | None:
    """The adaptive record of a report whose question was settled, with nothing else missing (its only gap, if
    any, is the questions it did not need); None otherwise."""
    rec = info(rep)
    if rep is None or rec is None or not rec.get("decided"):
        return None
    others = [w for w in rep.incomplete if not w.startswith("adaptive run ")]
    return None if others else rec


# -- comparing stored runs ------------------------------------------------------------------------------------------
def compare_until_decided(store: RunStore, run_a: str, run_b: str, goal: Goal, *, seed: int = 0) -> list[dict]:
    """How the sequential test of A against B (``goal``, B the incumbent) reads on the two runs' stored judgments,
    in the seeded order: where it settles, or that it does not, on the questions both runs have. No judge call."""
    goal = dataclasses.replace(goal, incumbent=run_b).validate()
    if goal.kind == "width":
        raise ConfigError("compare asks about two runs", fix="use --better-than or --not-worse-than semantics "
                                                             "(the default), or `lioneval run --width W`")
    from lioneval import benchmarks as _benchmarks

    spec_a, spec_b = store.run(run_a), store.run(run_b)
    if spec_a.key == spec_b.key:
        raise LionEvalError(f"run {run_a} is compared with itself", fix="name two different runs")
    rows = []
    for name in [b for b in spec_a.benchmarks if b in spec_b.benchmarks]:
        bench = _benchmarks.load(name)
        ja: list[Judgment] = store.linked(spec_a.key, "judgments", benchmark=bench.name)  # type: ignore
        jb: list[Judgment] = store.linked(spec_b.key, "judgments", benchmark=bench.name)  # type: ignore
        for judge in sorted({j.judge for j in ja} & {j.judge for j in jb}):
            va = _values(bench.paired_units([j for j in ja if j.judge == judge and j.model == spec_a.model]))
            vb = _values(bench.paired_units([j for j in jb if j.judge == judge and j.model == spec_b.model]))
            linked: list[Question] = store.linked(spec_a.key, "questions", benchmark=bench.name)  # type: ignore
            qs = [q for q in linked if q.id in va and q.id in vb]
            if len(qs) < 2:
                continue
            order = order_questions(qs, bench.name, seed)
            o = assess(goal, [va[q.id] for q in order], [vb[q.id] for q in order], span=_span(bench),
                       scale=bench.paired_scale, total=len(order), higher_is_better=bench.higher_is_better)
            d = _decision(goal, o, bench, spec_a.key, goal.alpha)
            rows.append({"benchmark": bench.name, "metric": bench.paired_metric, "judge": judge,
                         "model_a": spec_a.model, "model_b": spec_b.model, "diff": o.estimate, "ci_low": o.ci_low,
                         "ci_high": o.ci_high, "n": o.n, "of": o.total, "decided": o.decided, "answer": o.answer,
                         "verdict": o.verdict, "p_value": o.p_value, "method": METHOD, "alpha": goal.alpha,
                         "margin": goal.margin, "rule": goal.kind, "line": o.line(goal),
                         "decision": d.model_dump(mode="json")})
    if not rows:
        raise LionEvalError(f"runs {run_a} and {run_b} share no benchmark judged by the same judge",
                            fix="judge both with one judge: `lioneval rejudge RUN --judge SPEC`")
    return rows


# -- in the training loop -------------------------------------------------------------------------------------------
Policy = Callable[[str], tuple[Backend, RunSpec]]


@dataclass
class SequentialEvaluator:
    """Evaluates a checkpoint against ``incumbent`` (set by ``LionEvalCallback`` before each evaluation) until the
    question "better than the incumbent (futility below +margin)?" is settled; without an incumbent, in full.

    A checkpoint found better becomes the next incumbent, so its run is finished (the remaining questions judged):
    every later checkpoint is compared with all of its questions, and promotion sees a complete report. ``policy``
    builds the generation backend of a checkpoint (default: the suite's, from the checkpoint folder)."""

    suite: RunConfig
    store: str
    alpha: float = 0.05
    margin: float = 0.0
    batch: int = DEFAULT_BATCH
    budget: int | None = None
    finish: bool = True  # judge the rest of a checkpoint found better
    policy: Policy | None = None
    incumbent: str | None = None
    judge: Any = None
    last: AdaptiveResult | None = None

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        cfg = dataclasses.replace(self.suite, ckpt=checkpoint) if self.policy is None else self.suite
        backend, spec = self.policy(checkpoint) if self.policy is not None else (None, None)
        with RunStore(self.store) as st:
            if self.incumbent is None:
                return run(cfg, st, backend=backend, spec=spec, judge=self.judge).reports
            goal = Goal("better", incumbent=self.incumbent, margin=self.margin, alpha=self.alpha, batch=self.batch,
                        budget=self.budget, decision_kind="early_stop")
            res = run_until_decided(cfg, st, goal, backend=backend, spec=spec, judge=self.judge)
            self.last = res
            if not self.finish or not any((settled(r) or {}).get("verdict") == "better" for r in res.reports):
                return res.reports
            full = run(cfg, st, backend=backend, spec=spec, judge=self.judge).reports
            kept = []
            for r in full:  # the finished report keeps the sequential decision that made it the incumbent
                rec = info(_report_of(res.reports, r.benchmark))
                if rec is not None:
                    r = r.model_copy(update={"meta": {**r.meta, "adaptive": {**rec, "partial": False}}})
                    st.put_report(r)
                kept.append(r)
            return kept


def goal_from_flags(*, until_decided: bool, better_than: str | None = None, not_worse_than: str | None = None,
                    width: float | None = None, margin: float | None = None, alpha: float | None = None,
                    budget: int | None = None, batch: int | None = None) -> Goal | None:
    """The Goal of `lioneval run --until-decided ...` (None without --until-decided); one question per run."""
    given = [f for f, v in (("--better-than", better_than), ("--not-worse-than", not_worse_than),
                            ("--width", width)) if v is not None]
    extra = [f for f, v in (("--margin", margin), ("--alpha", alpha), ("--budget", budget),
                            ("--sequential-batch", batch)) if v is not None]
    if not until_decided:
        if given or extra:
            raise ConfigError(f"{', '.join(given + extra)} only apply to an adaptive run",
                              fix="add --until-decided (or leave them out for a full run)")
        return None
    if len(given) != 1:
        raise ConfigError("--until-decided needs one question: --better-than RUN, --not-worse-than RUN or --width W"
                          + (f" (got {', '.join(given)})" if given else ""),
                          fix="e.g. --until-decided --better-than RUN --margin 0.1")
    kind = {"--better-than": "better", "--not-worse-than": "not-worse", "--width": "width"}[given[0]]
    return Goal(kind, incumbent=better_than or not_worse_than, margin=0.0 if margin is None else float(margin),
                width=width, alpha=0.05 if alpha is None else float(alpha), budget=budget,
                batch=DEFAULT_BATCH if batch is None else int(batch)).validate()


# -- several candidates ---------------------------------------------------------------------------------------------
def race_until_decided(cfgs: Sequence[RunConfig], store: RunStore, goal: Goal, *,
                       policies: Sequence[tuple[Backend, RunSpec]] | None = None, judge: Any = None,
                       progress: Progress | None = None) -> list[AdaptiveResult]:
    """Several candidates (one RunConfig each, one benchmark) against one incumbent at once, with family-wise error
    ``alpha``: after every round of batches, Holm's step-down runs over the 2k anytime p-values (each candidate's
    "yes" and "no" claim; ``lioneval.stats.sequential.holm``), and a settled candidate is judged no further, so the
    judges' calls (``goal.budget``, over all candidates) go to those still undecided. ``policies``: each
    candidate's backend and identity (default: from its config)."""
    goal = goal.validate()
    if goal.kind == "width":
        raise ConfigError("a race asks a paired question", fix="use the better or not-worse question")
    tracks: list[_Track] = []
    results: list[AdaptiveResult] = []
    extras: list[dict[str, Any]] = []
    with ExitStack() as leases:
        for i, cfg in enumerate(cfgs):
            cfg.validate()
            prepared = prepare(cfg, judge)
            if len(prepared.loaded) != 1:
                raise ConfigError(f"a race compares candidates on one benchmark, not {len(prepared.loaded)}",
                                  fix="give each candidate's RunConfig one benchmark (bench: [NAME])")
            backend, spec = policies[i] if policies is not None else policy_backend(cfg)
            backend = distribute(backend, cfg.executor)
            judges = run_judges(cfg, prepared, backend, judge)
            spec = run_spec(cfg, prepared, spec, judges)
            run_key = store.put_run(spec)
            leases.enter_context(_lease(store, run_key))
            ((name, inputs),) = prepared.loaded.items()
            bench, bench_judge = inputs.bench, judges[name]
            inc = _incumbent_values(store, str(goal.incumbent), bench, bench_judge.id_for(bench))
            order = [q for q in order_questions(inputs.questions, bench.name, cfg.seed) if q.id in inc]
            store.put_questions(inputs.questions)
            tracks.append(_Track(goal, store, run_key, spec.model, bench, bench_judge, order,
                                 _by_question(inputs.baseline), backend, cfg, inc, len(inputs.questions), progress))
            results.append(AdaptiveResult(RunResult(run=run_key, spec=spec, reports=[]), goal))
            extras.append({"name": name, "prepared": prepared, "checks": load_config(cfg.checks),
                           "limits": Limits(cfg.max_failed_share, cfg.max_unanswered_share)})
        k = len(tracks)
        answer: list[str | None] = [None] * k
        level: list[float] = [goal.alpha / (2 * k)] * k
        spent = 0
        while True:
            active = [i for i in range(k) if answer[i] is None and tracks[i].open]
            if not active:
                break
            sizes = {i: min(goal.batch, len(tracks[i].order) - len(tracks[i].done)) for i in active}
            if goal.budget is not None and spent + sum(tracks[i].cost(n) for i, n in sizes.items()) > goal.budget:
                for i in active:
                    tracks[i].why = f"judge budget spent ({spent} of {goal.budget} calls over {k} candidates)"
                break
            for i, n in sizes.items():
                before = tracks[i].calls
                tracks[i].step(n)
                spent += tracks[i].calls - before
            ps = np.array([p for t in tracks for p in _pvalues(t)])
            rejected = seq.holm(ps, goal.alpha)
            thresholds = seq.holm_levels(ps, goal.alpha)
            for i in range(k):
                if answer[i] is None and (rejected[2 * i] or rejected[2 * i + 1]):
                    yes = bool(rejected[2 * i]) and (not rejected[2 * i + 1] or ps[2 * i] <= ps[2 * i + 1])
                    answer[i] = "yes" if yes else "no"
                    level[i] = float(thresholds[2 * i if yes else 2 * i + 1])
                    tracks[i].why = f"settled in a race of {k} at family-wise alpha {goal.alpha:g} (Holm)"
        for i, (track, res, extra) in enumerate(zip(tracks, results, extras, strict=True)):
            outcome = track.assess(level[i]) if track.done else Outcome(False, None, "inconclusive", 0, track.total,
                                                                        math.nan, None, None)
            if answer[i] is None:
                outcome = dataclasses.replace(outcome, decided=False, answer=None, verdict="inconclusive")
            bench = track.bench
            judge_id = track.judge.id_for(bench)
            rep = report(store, track.run_key, bench, judge_id, checks=extra["checks"],
                         prices=track.judge.spec.prices, requested=track.requested, limits=extra["limits"],
                         judge_spec=redact_url(extra["prepared"].judges.get(extra["name"]) or track.judge.spec.label),
                         data=extra["prepared"].data.get(extra["name"]))
            decision = _decision(goal, outcome, bench, track.run_key, level[i],
                                 {"stopped": track.why, "candidates": k, "correction": "holm"})
            rep = mark(store, rep, goal, outcome, level[i], track.why, decision)
            res.outcomes[extra["name"]], res.stopped[extra["name"]] = outcome, track.why
            res.calls = track.calls
            res.result.reports.append(rep)
            res.result.judge_lines.append(f"{extra['name']}: {outcome.line(goal)}; {track.why}")
            store.finish_run(track.run_key, "complete" if rep.complete else "incomplete",
                             "" if rep.complete else "; ".join(rep.incomplete)[:500])
    return results


def _pvalues(track: _Track) -> tuple[float, float]:
    """The anytime p-values of a track's "yes" and "no" claims at its looks so far (1 / the largest capital)."""
    vals, inc_vals, at = track.series()
    if not vals:
        return 1.0, 1.0
    looks = np.asarray([a for a in at if a >= min(MIN_LOOK, track.total, len(vals))], int)
    if not looks.size:
        return 1.0, 1.0
    _, _, up, down = _capitals(track.goal, np.asarray(vals, float), inc_vals, span=_span(track.bench),
                               scale=track.bench.paired_scale, higher_is_better=track.bench.higher_is_better,
                               alpha=track.goal.alpha)
    return (float(min(1.0, math.exp(-np.max(up[looks - 1])))), float(min(1.0, math.exp(-np.max(down[looks - 1])))))
