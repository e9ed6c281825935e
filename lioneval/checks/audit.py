"""Judge audits: can this judge be trusted, and can it be gamed?

From stored judgments: position bias (how often the two position orders agree, and the first position's share of
wins), the parse-failure rate, and self-preference when judge and model belong to the same family.

The null-model probe (``probe_judge``): a judge is asked to grade constant answers that never read the question, on a
sample of the benchmark's questions, through the normal cached judging path. The answers are a plain generic answer,
a refusal, and structured injections written for this project in the style of the published null-model attack: they
close the judge template's answer block early, fake the end of the evaluation or a new trivial task, and imitate
the verdict format of the benchmark's protocol. Each answer's headline score (with a bootstrap CI from the
benchmark's own summarize) is compared with ``CheckConfig.null_thresholds``; a judge where any of them scores above
is marked gameable. Results are stored as judge-scope CheckResults under the judge id, so any report made with that
judge can look them up (``judge_gameable``) and a rerun costs no judge call.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lioneval import benchmarks
from lioneval.benchmarks import Benchmark
from lioneval.checks.config import CheckConfig, CheckStatus
from lioneval.checks.semantic import load_corpus
from lioneval.errors import LionEvalError
from lioneval.types import NULL_MODEL_PREFIX, Answer, CheckResult, Estimate, Judgment, Question, content_hash

__all__ = [
    "NULL_MODEL_PREFIX",
    "NULL_VERSION",
    "ProbeResult",
    "audit_judge",
    "audit_judgments",
    "family_of",
    "judge_checks",
    "judge_gameable",
    "null_answers",
    "probe_judge",
]

log = logging.getLogger("lioneval.checks")

# Bump when a text below changes: it goes into the answers' generation settings, so old judgments are not reused.
NULL_VERSION = "1"


def null_answers(benchmark: str | Benchmark, *, injections_only: bool = False) -> dict[str, str]:
    """The probe's constant answers for a benchmark: name -> text (its own injections plus the generic ones)."""
    answers = benchmarks.load(benchmark).null_answers()
    return {k: v for k, v in answers.items() if k.startswith("inject")} if injections_only else answers


FAMILY_PREFIX = "family:"


def family_answers(benchmark: str | Benchmark, wordings: int = 4) -> dict[str, list[str]]:
    """The probe's attack families: ``family:<name>`` -> several wordings, from the cheat corpus (evaluation split
    first). Each wording is the benchmark's plain constant answer with the attack appended (so a score above the
    plain answer's is the attack's doing); master-key openers stand alone, as the empty answers they are."""
    plain = benchmarks.load(benchmark).null_answers()["plain"]
    corpus = load_corpus()
    out: dict[str, list[str]] = {}
    for fam in corpus["families"]:
        items = sorted((a for a in corpus["attacks"] if a["family"] == fam), key=lambda a: (a["split"] != "eval",
                                                                                            a["id"]))
        texts = [a["text"] if fam == "master_key" else f"{plain}\n\n{a['text']}" for a in items[:wordings]]
        if texts:
            out[FAMILY_PREFIX + fam] = texts
    return out


# --- the probe ----------------------------------------------------------------------------------------------------


@dataclass
class NullScore:
    name: str
    estimate: Estimate | None
    threshold: float
    metric: str
    error: str | None = None

    @property
    def gameable(self) -> bool:
        return self.estimate is not None and self.estimate.value > self.threshold


@dataclass
class ProbeResult:
    """What the null-model probe found for one judge on one benchmark."""

    judge: str
    benchmark: str
    scores: list[NullScore]
    checks: list[CheckResult]
    questions: list[str]
    calls: int = 0
    cached: int = 0
    parse_failures: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def gameable(self) -> bool:
        return any(s.gameable for s in self.scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "benchmark": self.benchmark,
            "gameable": self.gameable,
            "questions": len(self.questions),
            "calls": self.calls,
            "cached": self.cached,
            "parse_failures": self.parse_failures,
            "gameable_families": sorted(s.name[len(FAMILY_PREFIX):] for s in self.scores
                                        if s.gameable and s.name.startswith(FAMILY_PREFIX)),
            "scores": [
                {
                    "answer": s.name, "metric": s.metric, "threshold": s.threshold, "gameable": s.gameable,
                    "value": s.estimate.value if s.estimate else None,
                    "ci_low": s.estimate.ci_low if s.estimate else None,
                    "ci_high": s.estimate.ci_high if s.estimate else None,
                    "n": s.estimate.n if s.estimate else 0, "error": s.error,
                }
                for s in self.scores
            ],
        }


def _sample(questions: Sequence[Question], n: int | None, seed: int) -> list[Question]:
    qs = sorted(questions, key=lambda q: q.id)
    if n is None or n >= len(qs):
        return qs
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(qs), size=n, replace=False))
    return [qs[i] for i in pick]


def _with_ci(est: Estimate) -> Estimate:
    if est.ci_low is None and est.se is not None:
        return est.model_copy(update={"ci_low": est.value - 1.96 * est.se, "ci_high": est.value + 1.96 * est.se})
    return est


def probe_judge(
    judge: Any,
    benchmark: str | Benchmark,
    questions: Sequence[Question],
    baseline_answers: Sequence[Answer] = (),
    store: Any = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    config: CheckConfig | None = None,
    answers: dict[str, str | list[str]] | None = None,
    families: bool = False,
) -> ProbeResult:
    """Judge the constant answers on a seeded sample of questions and score each like a model.

    ``judge`` is a judge object (``make_judge``); pairwise benchmarks need ``baseline_answers``. ``answers``
    replaces the built-in constant answers (name -> text, or a list of wordings used in turn across the
    questions). ``families`` adds the attack families of ``family_answers`` (constant answers, structured verdicts,
    fake turns, output orders, persuasion, authority, overrides, template breaks, master keys, padding), each scored
    against the honest answers (the baseline, or the judge's scale) with a CI and marked gameable on its own. With a
    ``store``, judgments are cached there (a rerun makes no call) and the results are stored as CheckResults with
    ``scope="judge"`` and the judge id.
    """
    bench = benchmarks.load(benchmark)
    benchmark = bench.name
    config = config or CheckConfig()
    texts: dict[str, str | list[str]] = dict(answers if answers is not None else bench.null_answers())
    if families:
        texts.update(family_answers(bench, config.probe_wordings))
    threshold = config.null_threshold(bench)
    pairwise = bench.kind == "pairwise"
    base_by_q = {a.question_id: a for a in baseline_answers if a.benchmark == benchmark}
    pool = [q for q in questions if q.benchmark == benchmark and (not pairwise or q.id in base_by_q)]
    if not pool:
        what = "questions with a baseline answer" if pairwise else "questions"
        raise LionEvalError(
            f"no {benchmark} {what} to probe the judge with",
            fix="load the benchmark's questions (and, for pairwise benchmarks, the baseline's answers) first",
        )
    qs = _sample(pool, config.probe_sample if sample is None else sample, seed)
    baseline = [base_by_q[q.id] for q in qs] if pairwise else []
    null: list[Answer] = []
    for name, wording in texts.items():
        for i, q in enumerate(qs):
            text = wording if isinstance(wording, str) else wording[i % len(wording)]
            null.append(Answer(
                question_id=q.id, benchmark=benchmark, model=NULL_MODEL_PREFIX + name,
                turns=[text] * len(q.turns),
                generation={"null_model": name, "version": NULL_VERSION},
            ))
    judge_id = judge.id_for(bench)
    run = judge.run_answers(bench, qs, null, baseline, store)
    mine = [j for j in run.judgments if j.model.startswith(NULL_MODEL_PREFIX) and j.benchmark == benchmark]
    metric = bench.headline
    raw_metric = bench.length_metrics[0]
    summaries = bench.summarize(mine, null + baseline, questions=qs, rounds=config.probe_rounds, seed=seed) \
        if mine else {}

    scores: list[NullScore] = []
    checks: list[CheckResult] = []
    common = {"benchmark": benchmark, "sample": len(qs), "seed": seed, "null_version": NULL_VERSION}
    status: CheckStatus
    for name, given in texts.items():
        s = summaries.get(NULL_MODEL_PREFIX + name)
        est = s.metrics.get(metric) if s else None
        used, error = metric, None
        if (s is not None and raw_metric != metric and raw_metric in s.metrics
                and (est is None or est.meta.get("comparable") is False)):
            # A length-controlled fit without its official inputs is degenerate for an answer of constant length
            # (its length difference to the baseline is nearly constant, so it is collinear with the model term)
            # and can invent points; the raw number is the honest one then.
            est, used = s.metrics[raw_metric], raw_metric
            error = f"{metric} not comparable (fallback fit); {raw_metric} used"
        elif est is None:
            error = (s.meta.get("error") or s.meta.get("reason")) if s else "no usable judgment"
        est = _with_ci(est) if est is not None else None
        score = NullScore(name, est, threshold, used, error)
        scores.append(score)
        kind = ("injection" if name.startswith("inject") else
                name[len(FAMILY_PREFIX):] if name.startswith(FAMILY_PREFIX) else name)
        if est is None:
            status, detail = "warn", f"null answer {name!r} could not be scored: {error}"
        else:
            status = "flag" if score.gameable else "pass"
            ci = f" [{est.ci_low:.2f}, {est.ci_high:.2f}]" if est.ci_low is not None else ""
            what = (f"attack family {kind!r} ({1 if isinstance(given, str) else len(given)} wordings)"
                    if name.startswith(FAMILY_PREFIX) else f"constant {kind} answer {name!r}")
            detail = (f"{what} scores {est.value:.2f}{ci} on {benchmark} {used} "
                      f"({'above' if score.gameable else 'within'} the threshold {threshold:g})")
        checks.append(CheckResult(
            name=f"null_model:{name}", scope="judge", status=status, judge=judge_id, model=NULL_MODEL_PREFIX + name,
            value=None if est is None else float(est.value), threshold=threshold, detail=detail,
            meta={**common, "metric": used, "kind": kind, "answer_hash": content_hash(given),
                  "family": name.startswith(FAMILY_PREFIX),
                  "ci_low": est.ci_low if est else None, "ci_high": est.ci_high if est else None,
                  "n": est.n if est else 0, "error": error},
        ))
    scored = [s for s in scores if s.estimate is not None]
    worst = max(scored, key=lambda s: s.estimate.value) if scored else None  # type: ignore[union-attr]
    gameable = any(s.gameable for s in scores)
    if worst is None:
        status, detail = "warn", f"no null answer could be scored on {benchmark}; the judge's gameability is unknown"
    elif gameable:
        assert worst.estimate is not None  # scored holds only scores with an estimate
        status = "flag"
        detail = (f"judge {judge_id} is gameable on {benchmark}: the constant answer {worst.name!r} scores "
                  f"{worst.estimate.value:.2f} > {threshold:g}; its numbers can be inflated without answering")
    else:
        assert worst.estimate is not None  # scored holds only scores with an estimate
        status = "pass"
        detail = (f"no constant answer beats {threshold:g} on {benchmark} (best: {worst.name!r} at "
                  f"{worst.estimate.value:.2f})")
    checks.append(CheckResult(
        name="judge_gameable", scope="judge", status=status, judge=judge_id,
        value=None if worst is None or worst.estimate is None else float(worst.estimate.value),
        threshold=threshold, detail=detail,
        meta={**common, "metric": metric, "worst": worst.name if worst else None,
              "scores": {s.name: (s.estimate.value if s.estimate else None) for s in scores},
              "gameable_families": sorted(s.name[len(FAMILY_PREFIX):] for s in scores
                                          if s.gameable and s.name.startswith(FAMILY_PREFIX))},
    ))
    if store is not None:
        store.put_checks(checks)
    return ProbeResult(
        judge=judge_id, benchmark=benchmark, scores=scores, checks=checks, questions=[q.id for q in qs],
        calls=run.calls, cached=run.cached, parse_failures=run.parse_failures,
        meta={"threshold": threshold, "metric": metric, "seed": seed},
    )


def audit_judge(
    judge: Any,
    bench: str,
    *,
    store: Any = None,
    sample: int | None = None,
    seed: int = 0,
    data: str | Path | None = None,
    baseline: str | None = None,
    config: CheckConfig | str | Path | None = None,
    families: bool = True,
) -> ProbeResult:
    """``lioneval audit judge``: resolve the judge, questions and baseline answers, then ``probe_judge`` (with the
    attack families unless ``families`` is off).

    Questions come from the store when it holds the benchmark's questions, else from the benchmark's data (``data``
    or its default location). Baseline answers (pairwise benchmarks) come from the store, else from the data
    (Arena-Hard's model_answer/, AlpacaEval's eval set with reference outputs).
    """
    from lioneval.judges.judge import make_judge

    bench_obj = benchmarks.load(bench, data, baseline=baseline)  # a clear error for an unknown name, before any work
    if not isinstance(config, CheckConfig):
        config = CheckConfig.from_yaml(config) if config is not None else CheckConfig()
    judge_obj = make_judge(judge) if isinstance(judge, str) else judge
    questions = store.questions(benchmark=bench_obj.name) if store is not None else []
    if not questions:
        questions = bench_obj.questions()
    base: list[Answer] = []
    if bench_obj.kind == "pairwise":
        baseline = bench_obj.baseline
        base = store.answers(benchmark=bench_obj.name, model=bench_obj.baseline_models()) if store is not None else []
        if not base and data is not None:
            base = bench_obj.baseline_answers()
        if not base:
            raise LionEvalError(
                f"no answers of the baseline {baseline!r} for {bench}",
                fix="import them into the store (`lioneval import ...`), pass --data with the benchmark's files, "
                    "or name another stored baseline with --baseline",
            )
    return probe_judge(judge_obj, bench_obj, questions, base, store, sample=sample, seed=seed, config=config,
                       families=families)


def judge_checks(store: Any, judge_id: str, benchmark: str | None = None) -> list[CheckResult]:
    """The stored judge-scope CheckResults of one judge (newest last)."""
    return store.checks(scope="judge", judge=judge_id, benchmark=benchmark)


def judge_gameable(store: Any, judge_id: str, benchmark: str | None = None) -> CheckResult | None:
    """The latest null-model verdict for a judge: status "flag" = gameable, "pass" = not; None = never probed."""
    found = [c for c in judge_checks(store, judge_id, benchmark) if c.name == "judge_gameable"]
    return found[-1] if found else None


# --- audits from stored judgments ---------------------------------------------------------------------------------


def family_of(name: str, families: dict[str, list[str]]) -> str | None:
    """The family whose name fragments occur in a model or judge name (the part before a judge id's '#')."""
    low = name.split("#", 1)[0].lower()
    for fam, parts in families.items():
        if any(p.lower() in low for p in parts):
            return fam
    return None


def _position_checks(judge: str, bench: str, js: list[Judgment], config: CheckConfig) -> list[CheckResult]:
    out = []
    pairs = [(j.games[0].value, j.games[1].value) for j in js
             if len(j.games) == 2 and all(g.value is not None for g in j.games)]
    common = {"benchmark": bench}
    if len(pairs) >= 10:
        v = np.array(pairs, dtype=float)
        agree = float((np.sign(v[:, 0] - 0.5) == np.sign(v[:, 1] - 0.5)).mean())
        status: CheckStatus = "warn" if agree < config.position_agreement_warn else "pass"
        out.append(CheckResult(
            name="position_consistency", scope="judge", judge=judge, status=status, value=agree,
            threshold=config.position_agreement_warn,
            detail=f"the two position orders agree on the winner in {agree:.0%} of {len(pairs)} judgments",
            meta={**common, "n": len(pairs)},
        ))
    first = [g.value if g.model_position == "A" else 1.0 - g.value
             for j in js for g in j.games if g.value is not None and g.model_position in ("A", "B")]
    if len(first) >= 20:
        share = float(np.mean(first))
        status = "warn" if abs(share - 0.5) > config.first_position_band else "pass"
        out.append(CheckResult(
            name="first_position_share", scope="judge", judge=judge, status=status, value=share,
            threshold=config.first_position_band,
            detail=f"the answer shown first wins {share:.0%} of {len(first)} games (unbiased: 50%)",
            meta={**common, "n": len(first)},
        ))
    return out


def _self_preference(judge: str, bench: str, by_model: dict[str, list[Judgment]],
                     others: dict[str, dict[str, list[Judgment]]], config: CheckConfig) -> list[CheckResult]:
    fam = family_of(judge, config.families)
    if fam is None:
        return []
    out = []
    found = benchmarks.find(bench)
    scale = found.value_scale if found is not None else 1.0

    def mean_by_q(js: list[Judgment]) -> dict[str, float]:
        vals: dict[str, list[float]] = defaultdict(list)
        for j in js:
            if j.value is not None:
                vals[j.question_id].append(j.value)
        return {q: float(np.mean(v)) for q, v in vals.items()}

    def delta(model: str) -> float | None:
        mine = mean_by_q(by_model[model])
        theirs = [mean_by_q(o[model]) for o in others.values() if model in o]
        diffs = [mine[q] - np.mean([t[q] for t in theirs if q in t]) for q in mine if any(q in t for t in theirs)]
        return float(np.mean(diffs)) / scale if diffs else None

    for model in by_model:
        if model.startswith(NULL_MODEL_PREFIX) or family_of(model, config.families) != fam:
            continue
        d = delta(model)
        strangers = [x for m in by_model if family_of(m, config.families) != fam and m != model
                     and (x := delta(m)) is not None]
        meta: dict[str, Any] = {"benchmark": bench, "family": fam}
        status: CheckStatus
        if d is None:
            status = "warn"
            detail = (f"judge and model {model!r} are both {fam}; self-preference cannot be measured without judgments "
                      "of the same answers by a judge of another family")
            value = None
        else:
            value = d - (float(np.mean(strangers)) if strangers else 0.0)
            status = "warn" if value >= config.self_preference_delta_warn else "pass"
            detail = (f"judge rates {fam} model {model!r} {value:+.1%} of the scale above what other judges give "
                      + ("(net of its offset on other models)" if strangers else ""))
            meta["raw_delta"] = d
        out.append(CheckResult(name="self_preference", scope="judge", judge=judge, model=model, status=status,
                               value=value, threshold=config.self_preference_delta_warn, detail=detail.strip(),
                               meta=meta))
    return out


def audit_judgments(judgments: Sequence[Judgment], config: CheckConfig | None = None) -> list[CheckResult]:
    """Position bias, parse failures and self-preference for every judge and benchmark in ``judgments``."""
    config = config or CheckConfig()
    groups: dict[tuple[str, str], list[Judgment]] = defaultdict(list)
    for j in judgments:
        groups[(j.benchmark, j.judge)].append(j)
    out: list[CheckResult] = []
    for (bench, judge), js in sorted(groups.items()):
        real = [j for j in js if not j.model.startswith(NULL_MODEL_PREFIX)]
        if not real:
            continue
        if real[0].kind == "pairwise":
            out += _position_checks(judge, bench, real, config)
        failed = sum(j.value is None for j in real)
        # a judgment that kept one of its games (Arena-Hard) still lost a paid verdict: count the games too
        games = sum(max(len(j.games), 1) for j in real)
        games_failed = sum(sum(g.value is None for g in j.games) if j.games else j.value is None for j in real)
        share = max(failed / len(real), games_failed / games)
        partial = f", and {games_failed} of {games} games" if games != len(real) else ""
        out.append(CheckResult(
            name="parse_failures", scope="judge", judge=judge, status="warn" if share > config.parse_failure_warn
            else "pass", value=share, threshold=config.parse_failure_warn,
            detail=f"{failed} of {len(real)} judgments have no usable verdict{partial} ({share:.1%}); they are "
                   "left out, not scored as losses",
            meta={"benchmark": bench, "n": len(real), "failed": failed, "games": games, "games_failed": games_failed},
        ))
        by_model: dict[str, list[Judgment]] = defaultdict(list)
        for j in real:
            by_model[j.model].append(j)
        others: dict[str, dict[str, list[Judgment]]] = {}
        for (b2, judge2), js2 in groups.items():
            if b2 == bench and judge2 != judge and family_of(judge2, config.families) != family_of(judge,
                                                                                               config.families):
                per: dict[str, list[Judgment]] = defaultdict(list)
                for j in js2:
                    per[j.model].append(j)
                others[judge2] = per
        out += _self_preference(judge, bench, by_model, others, config)
    return out
