"""Promotion: which checkpoint of a stage goes on, decided from the stored reports by a written-down policy.

``promote(store, stage, policy)`` and ``lioneval promote --stage S`` apply :class:`PromotionPolicy`:

1. Candidates are the stage's evaluated checkpoints (runs of that stage with reports). Given ``checkpoints`` or an
   ``out`` folder, only those, and only while their files still hold the weights that were evaluated.
2. One judge: scores of different judges are not comparable, so only reports of ``policy.judge`` count (default:
   the judge that scored the most candidates).
3. Excluded: checkpoints that cheat checks flagged (``is_cheat`` on the reports and stored checks); length
   inflation: mean answer length above ``max_length_growth`` times that of the stage's earliest candidate, or a
   pairwise ``length_ratio`` check (answers against the baseline's) above ``max_length_ratio``; checkpoints missing
   a weighted metric that other candidates have; drift beyond ``max_kl`` or ``max_drift_length_growth`` (the
   eval block's drift analysis, lioneval.trainers.drift); checkpoints that early stopping found significantly worse than
   another eligible candidate. LionEvalCallback stores the paired Decision it made for each evaluation (against the
   best checkpoint so far) as a check named ``early_stopping`` on the evaluation's run (``meta["decision"]``);
   promotion reads those very Decisions, so the two can never disagree about a drop: a checkpoint that stopped
   training as significantly worse than another is not promoted as "tied, shorter".
4. Score: the weighted sum of the metrics in ``weights`` (default puts MT-Bench's 1-10 on the 0-100 scale of the
   others), over the metrics every remaining candidate has. Its confidence interval assumes independent errors:
   half-width sqrt(sum((w * half-width_i)^2)), a half-width being half the CI (1.96 SE without one). It is shown
   in the candidates table; the decision itself is made on paired differences (5).
5. Decide (``lioneval.decisions``): the incumbent is the checkpoint the stage started from (``start``) when it was
   evaluated by the same judge and is eligible, else the stage's earliest eligible candidate. Every other
   candidate is compared with it on paired per-question differences of the weighted metrics (weighted sum of
   each benchmark's paired difference; metrics without per-question units, such as a length-controlled win rate
   fitted by a model, are left out of the test and the reasons say so; without any stored judgments, an unpaired
   test on the reports' estimates is the fallback). One-sided tests at ``alpha``, adjusted across the candidates
   by ``correction`` (Holm by default), so the chance of promoting any checkpoint that is not better than the
   incumbent is at most ``alpha``. The tie-break is a non-inferiority margin: a candidate that ``tie_break``
   prefers to the incumbent (``shorter``: lower mean answer length; ``earlier``: lower step; in the given order)
   needs only to be significantly not worse by ``margin``; any other must be significantly better. The passing
   candidate with the largest paired difference is promoted; none passing keeps the incumbent. ``count`` > 1
   adds the other passing candidates (largest difference first), then the incumbent.
6. The promoted checkpoint's score is also given corrected for the winner's curse (conditional cross-fitting on
   seeded half-splits of the questions, ``lioneval.decisions.crossfit``), with the method, margin, alpha and
   correction in the record's ``meta`` and the reasons.

The decision is recorded in the store as :class:`lioneval.types.Promotion` records, one per promoted checkpoint
(rank 1..count: stage, run, model, checkpoint, step, judge, score and interval, the reasons, the candidates table
and the policy; read back with ``RunStore.promotions(stage)``), and marked on disk: ``<out>/<stage>-promoted``
links to the checkpoint and ``<out>/<stage>-promoted.json`` holds the decision. A stage with no eligible checkpoint
is refused (nothing promoted, nothing recorded); the decision's reasons say why. Stage names become file names, so
one that is not a plain name (``../x``) is refused before anything is read or written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lioneval import decisions
from lioneval.checkpoint import weights_hash
from lioneval.checks import is_cheat
from lioneval.errors import ConfigError, LionEvalError
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.trainers.config import Checked, _help, check_stage_name, config_from_dict, metric_bench
from lioneval.trainers.drift import drift_exclusion
from lioneval.types import Decision, Estimate, Promotion, Report, RunSpec

__all__ = ["EARLY_STOP_CHECK", "FAILED_CHECK", "Candidate", "PromotionDecision", "PromotionPolicy",
           "early_stop_decisions", "promote"]

# The names of the records LionEvalCallback stores per evaluation, as checks on the evaluation's run (scope "run",
# never status "flag"): its paired early-stopping Decision (meta["decision"]), and a failed evaluation (meta["error"]).
EARLY_STOP_CHECK = "early_stopping"
FAILED_CHECK = "evaluation_failed"

# The default policy's weights (a field default; a recipe's `promotion.weights` replaces it): each built-in
# benchmark's headline, scaled to 0-100 (MT-Bench's 1-10 rating weighs 10, the percentages 1).
DEFAULT_WEIGHTS = {f"{name}/{cls.headline}": 100.0 / cls.headline_scale
                   for name in BENCHMARKS.defaults() if (cls := BENCHMARKS.get(name))}
TIE_BREAKS = ("shorter", "earlier")


@dataclass
class PromotionPolicy(Checked):
    """How promote() chooses (the `promotion:` block of a recipe; a YAML file for `lioneval promote --policy`)."""

    weights: dict[str, float] = _help(DEFAULT_WEIGHTS, "BENCH/METRIC -> weight of the combined score.")
    tie_break: list[str] = _help(list(TIE_BREAKS), "Order of preferences between a candidate and the incumbent: "
                                                   "shorter, earlier. A preferred candidate needs only to be "
                                                   "non-inferior (see margin); any other must be better.")
    max_length_growth: float | None = _help(1.5, "Exclude checkpoints whose mean answer length exceeds the "
                                                 "stage's earliest candidate's by this factor (None: no bound).",
                                            minimum=0)
    max_length_ratio: float | None = _help(2.0, "Exclude checkpoints whose answers are this many times the "
                                                "pairwise baseline's length (None: no bound).", minimum=0)
    max_kl: float | None = _help(None, "Exclude checkpoints whose estimated KL divergence from the stage's "
                                       "reference model (the eval block's drift analysis) exceeds this, in nats per "
                                       "answer (None: no bound; checkpoints without a drift analysis pass).",
                                 minimum=0)
    max_drift_length_growth: float | None = _help(None, "Exclude checkpoints whose mean answer length (drift "
                                                        "analysis) grew by more than this share over the reference "
                                                        "model's, e.g. 0.3 for 30% (None: no bound).", minimum=0)
    exclude_flagged: bool = _help(True, "Exclude checkpoints that cheat checks flagged.")
    judge: str | None = _help(None, "Only reports of this judge (id or spec label); default: the judge that "
                                    "scored the most candidates.")
    count: int = _help(1, "How many checkpoints to promote.", minimum=1)
    alpha: float = _help(0.05, "Family-wise error rate: the chance of promoting any checkpoint that is not "
                               "better than the incumbent (not non-inferior, for one the tie-break prefers), "
                               "however many candidates there are. One-sided, between 0 and 1.", minimum=0)
    margin: float = _help(1.0, "Non-inferiority margin, in units of the weighted score (the default weights put "
                               "every metric on 0-100: 1.0 is 0.1 MT-Bench point or 1 win-rate point). A candidate "
                               "the tie-break prefers to the incumbent is promoted when significantly not worse "
                               "by this much.", minimum=0)
    correction: str = _help("holm", "Multiplicity correction across the candidates tested against the incumbent: "
                                    "holm (step-down), bonferroni, or none (no family-wise control).",
                            choices=decisions.CORRECTIONS)
    seed: int = _help(0, "Seed of the question half-splits behind the winner's-curse-corrected score.")

    def check(self, where: str) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{where}.alpha must be between 0 and 1, not {self.alpha!r}", fix="e.g. alpha: 0.05")
        bad = [t for t in self.tie_break if t not in TIE_BREAKS]
        if bad:
            raise ConfigError(f"{where}.tie_break: unknown {bad}", fix=f"use {', '.join(TIE_BREAKS)}")
        if not self.weights:
            raise ConfigError(f"{where}: the promotion policy weights no metric",
                              fix="e.g. weights: {mt-bench/overall: 1}")
        for metric in self.weights:
            metric_bench(metric, f"{where}.weights:")

    @classmethod
    def from_yaml(cls, path: str | Path) -> PromotionPolicy:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            why = " ".join(str(e).split())
            raise LionEvalError(f"cannot read promotion policy {path}: {why}",
                                fix="pass a UTF-8 YAML file of PromotionPolicy fields") from e
        if isinstance(data, dict) and ("promotion" in data or "stages" in data):  # a recipe: its promotion block
            return config_from_dict(cls, data.get("promotion") or {}, f"{path}: promotion")
        return config_from_dict(cls, data, str(path))

    @classmethod
    def from_recipe(cls, path: str | Path, out: str | Path | None = None) -> tuple[PromotionPolicy, str]:
        """A recipe's promotion policy and the folder its checkpoints are in (``out`` when given)."""
        import yaml

        policy = cls.from_yaml(path)
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig")) or {}
        folder = out if out is not None else (data.get("output_dir") if isinstance(data, dict) else None) or "out"
        return policy, str(folder)


@dataclass
class Candidate:
    run: str
    model: str
    checkpoint: str | None
    step: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    length: float | None = None  # mean answer characters
    excluded: str | None = None
    incumbent: bool = False  # the checkpoint every other is compared with
    diff: float | None = None  # paired difference with the incumbent (tested metrics, weighted)
    diff_low: float | None = None  # one-sided bound at alpha (two-sided 1 - 2 alpha interval)
    diff_high: float | None = None
    p_value: float | None = None  # one-sided, adjusted across the candidates
    verdict: str | None = None
    corrected_score: float | None = None

    def label(self) -> str:
        return Path(self.checkpoint).name if self.checkpoint else self.model


@dataclass
class PromotionDecision:
    stage: str
    promoted: list[Candidate]
    candidates: list[Candidate]
    reasons: list[str]
    policy: PromotionPolicy
    marker: str | None = None
    incumbent: Candidate | None = None
    decisions: list[Decision] = field(default_factory=list)  # each candidate against the incumbent
    meta: dict[str, Any] = field(default_factory=dict)  # method, margin, alpha, correction, corrected score

    @property
    def checkpoint(self) -> str:
        if not self.promoted or not self.promoted[0].checkpoint:
            raise LionEvalError(f"nothing of stage {self.stage} was promoted", fix="; ".join(self.reasons))
        return self.promoted[0].checkpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "promoted": [dataclasses.asdict(c) for c in self.promoted],
            "reasons": self.reasons,
            "marker": self.marker,
            "candidates": [dataclasses.asdict(c) for c in self.candidates],
            "policy": dataclasses.asdict(self.policy),
            "incumbent": self.incumbent.run if self.incumbent else None,
            "decisions": [d.model_dump(mode="json") for d in self.decisions],
            "meta": self.meta,
        }


def _half_width(e: Estimate) -> float:
    if e.ci_low is not None and e.ci_high is not None:
        return (e.ci_high - e.ci_low) / 2
    if e.se is not None and math.isfinite(e.se):
        return 1.96 * e.se
    return 0.0


def _same_place(path: str, places: set[str]) -> bool:
    return str(Path(path).absolute()) in places or str(Path(path).resolve()) in places


def _stale(spec: RunSpec) -> str | None:
    if not spec.checkpoint or not Path(spec.checkpoint).exists():
        return "checkpoint no longer on disk"
    if spec.weights_hash and weights_hash(spec.checkpoint) != spec.weights_hash:
        return "checkpoint files changed since it was evaluated"
    return None


def _mean_length(store: RunStore, model: str, benches: list[str]) -> float | None:
    answers = [a for a in store.answers(model=model) if a.benchmark in benches]
    if not answers:
        return None
    return sum(sum(len(t) for t in a.turns) for a in answers) / len(answers)


def promote(store: RunStore, stage: str, policy: PromotionPolicy | None = None, *, out: str | Path | None = None,
            checkpoints: list[str] | None = None, record: bool = True, mark: bool = True,
            start: str | None = None) -> PromotionDecision:
    """Pick the checkpoint(s) of ``stage`` to promote from stored reports (see the module docstring).

    ``start``: the checkpoint the stage started from (a path, model id or run key); when it was evaluated, by the
    same judge and eligible, it is the incumbent every candidate must beat, else the stage's earliest candidate is."""
    check_stage_name(stage)  # it names the marker files written into `out`
    policy = policy or PromotionPolicy()
    specs = [s for s in store.runs() if s.stage == stage]
    if checkpoints is not None:
        places = {str(Path(c).absolute()) for c in checkpoints} | {str(Path(c).resolve()) for c in checkpoints}
        specs = [s for s in specs if s.checkpoint and _same_place(s.checkpoint, places)]
    elif out is not None:
        where = Path(out).resolve()
        specs = [s for s in specs if s.checkpoint and Path(s.checkpoint).absolute().parent.resolve() == where]
    reports: dict[str, list[Report]] = {}
    for s in specs:
        got = store.reports(run=s.key)
        if got:
            reports[s.key] = got
    specs = [s for s in specs if s.key in reports]
    reasons: list[str] = []
    if not specs:
        where = f" under {out}" if out is not None else ""
        return PromotionDecision(stage, [], [], [f"no evaluated checkpoint of stage {stage!r}{where} in the store"],
                                 policy)
    judge = policy.judge or _most_common_judge(specs)
    cands: list[Candidate] = []
    estimates: dict[str, dict[str, Estimate]] = {}
    judged: dict[str, list[Report]] = {}
    check_files = checkpoints is not None or out is not None

    def candidate(s: RunSpec) -> Candidate:
        c = Candidate(run=s.key, model=s.model, checkpoint=s.checkpoint, step=s.step)
        mine = [r for r in reports[s.key] if not judge or judge in (r.judge, s.judge, r.judge.split("#")[0])]
        if not mine:
            c.excluded = f"not judged by {judge}"
        elif check_files and (why := _stale(s)):
            c.excluded = why
        else:
            judged[s.key] = mine
            estimates[s.key] = _fill(store, c, mine, policy)
            if c.excluded is None and not any(m in c.metrics for m in policy.weights):
                c.excluded = f"has none of the weighted metrics ({', '.join(policy.weights)})"
        return c

    for s in specs:
        cands.append(candidate(s))
    cands.sort(key=lambda c: (c.step if c.step is not None else -1, c.model))
    _exclude_length_growth(cands, policy)
    base = _start_run(store, start) if start else None
    if base is not None and base.key not in reports:
        reports[base.key] = store.reports(run=base.key)
    start_cand = next((c for c in cands if base is not None and c.run == base.key), None)
    if start_cand is None and base is not None and reports.get(base.key):
        start_cand = candidate(base)  # evaluated before the stage (e.g. as the previous stage's checkpoint)
        cands.insert(0, start_cand)
    _exclude_declined(store, cands)
    live = [c for c in cands if c.excluded is None]
    used = [m for m in policy.weights if live and all(m in c.metrics for c in live)]
    partial = [m for m in policy.weights if m not in used and any(m in c.metrics for c in live)]
    if partial:
        reasons.append(f"left out of the score: {', '.join(partial)} (not evaluated for every candidate)")
    if live and not used:
        reasons.append("the candidates share no weighted metric")
        live = []
    for c in live:
        _score(c, used, policy, estimates[c.run])
    for c in cands:
        if c.excluded:
            reasons.append(f"excluded {c.label()}: {c.excluded}")
    incumbent = None
    if live:
        incumbent, note = _incumbent(live, start, start_cand)
        if note:
            reasons.append(note)
    promoted: list[Candidate] = []
    tests: list[Decision] = []
    meta: dict[str, Any] = {}
    if incumbent is not None:
        promoted, why, tests, meta = _decide(store, incumbent, live, used, judged, estimates, policy)
        reasons[:0] = why
    if not promoted:
        reasons.insert(0, f"no checkpoint of stage {stage!r} is eligible for promotion")
    decision = PromotionDecision(stage, promoted, cands, reasons, policy, incumbent=incumbent, decisions=tests,
                                 meta=meta)
    if promoted and record:
        _record(store, decision, judge)
    if promoted and mark:
        decision.marker = _mark(decision, out)
    return decision


def _most_common_judge(specs: list[RunSpec]) -> str:
    counts: dict[str, int] = {}
    for s in specs:
        if s.judge:
            counts[s.judge] = counts.get(s.judge, 0) + 1
    return max(sorted(counts), key=lambda j: counts[j]) if counts else ""


def _fill(store: RunStore, c: Candidate, reports: list[Report], policy: PromotionPolicy) -> dict[str, Estimate]:
    unfinished = [r for r in reports if not r.complete]
    if unfinished:
        c.excluded = "incomplete evaluation (" + "; ".join(
            f"{r.benchmark}: {', '.join(r.incomplete)}" for r in unfinished) + "); finish it by rerunning it"
        return {}
    # stores written before Promotion records kept decisions as checks named "promotion": not cheat checks
    checks = [x for r in reports for x in r.checks] + [x for x in store.checks(run=c.run) if x.name != "promotion"]
    flagged = sorted({x.name for x in checks if x.status == "flag" and x.scope in ("answer", "run")})
    if policy.exclude_flagged and (is_cheat(checks) or any(r.meta.get("cheat_flagged") for r in reports)):
        c.excluded = f"cheat checks flagged it ({', '.join(flagged) or 'cheat_flagged'})"
        return {}
    if policy.max_length_ratio is not None:
        for x in checks:
            if x.name == "length_ratio" and x.value is not None and x.value > policy.max_length_ratio:
                c.excluded = (f"answers {x.value:.2f}x the baseline's length ({x.meta.get('benchmark', '?')}; "
                              f"bound {policy.max_length_ratio}x)")
                return {}
    drifted = drift_exclusion(reports, policy.max_kl, policy.max_drift_length_growth)
    if drifted:
        c.excluded = drifted
        return {}
    est = {f"{r.benchmark}/{m}": e for r in reports for m, e in r.metrics.items()}
    c.metrics = {k: e.value for k, e in est.items()}
    c.length = _mean_length(store, c.model, [r.benchmark for r in reports])
    return est


def _exclude_length_growth(cands: list[Candidate], policy: PromotionPolicy) -> None:
    if policy.max_length_growth is None:
        return
    ref = next((c for c in cands if c.excluded is None and c.length), None)
    if ref is None:
        return
    for c in cands:
        if c.excluded is None and c.length is not None and c.length > policy.max_length_growth * ref.length:
            c.excluded = (f"answers average {c.length:.0f} characters, {c.length / ref.length:.2f}x those of "
                          f"{ref.label()} (bound {policy.max_length_growth}x)")


def early_stop_decisions(store: RunStore, runs: Iterable[str]) -> dict[str, Decision]:
    """The early-stopping Decision LionEvalCallback stored for each of these runs (against the best checkpoint
    before it), by run; runs without one are left out."""
    out: dict[str, Decision] = {}
    for run in runs:
        for check in store.checks(run=run, scope="run"):
            raw = check.meta.get("decision") if check.name == EARLY_STOP_CHECK else None
            if not isinstance(raw, dict):
                continue
            try:
                out[run] = Decision.model_validate(raw)
            except ValidationError:
                continue  # written by another version: it decides nothing here
    return out


def _exclude_declined(store: RunStore, cands: list[Candidate]) -> None:
    """Exclude candidates that early stopping found significantly worse than another eligible candidate."""
    live = {c.run: c for c in cands if c.excluded is None}
    for run, d in early_stop_decisions(store, live).items():
        better = live.get(d.incumbent or "")
        if d.verdict != "worse" or better is None or better.run == run:
            continue
        c = live[run]
        bound = f" [{_signed(d.ci_low)}, {_signed(d.ci_high)}]" if d.ci_low is not None else ""
        c.excluded = (f"early stopping found it significantly worse than {better.label()} ({d.metric or 'score'} "
                      f"{_signed(d.diff)}{bound}, one-sided p={_p(d.p_value)} <= {d.alpha:.3g}, {d.method})")


def _score(c: Candidate, used: list[str], policy: PromotionPolicy, est: dict[str, Estimate]) -> None:
    c.score = sum(policy.weights[m] * c.metrics[m] for m in used)
    hw = math.sqrt(sum((policy.weights[m] * _half_width(est[m])) ** 2 for m in used if m in est))
    c.ci_low, c.ci_high = c.score - hw, c.score + hw


def _start_run(store: RunStore, start: str) -> RunSpec | None:
    """The evaluated run of the checkpoint the stage started from (a run key, model id or checkpoint path)."""
    runs = store.runs()
    places = {str(Path(start).absolute()), str(Path(start).resolve())}
    found = [r for r in runs if start in (r.key, r.model) or (r.checkpoint and _same_place(r.checkpoint, places))]
    if not found and Path(start).exists():
        try:
            h = weights_hash(start)
        except LionEvalError:
            h = None
        found = [r for r in runs if h and r.weights_hash == h]
    found = [r for r in found if store.reports(run=r.key)]
    return found[-1] if found else None


def _incumbent(live: list[Candidate], start: str | None, start_cand: Candidate | None) -> tuple[Candidate, str]:
    if start_cand is not None and any(c is start_cand for c in live):
        start_cand.incumbent = True
        return start_cand, f"incumbent: {start_cand.label()}, the checkpoint the stage started from"
    inc = live[0]  # the earliest eligible candidate (candidates are sorted by step)
    inc.incumbent = True
    if start is None:
        why = "no start checkpoint given"
    elif start_cand is None:
        why = f"the start checkpoint {start} was not evaluated"
    else:
        why = f"the start checkpoint {start_cand.label()} is not eligible ({start_cand.excluded or 'not scored'})"
    return inc, f"incumbent: {inc.label()}, the stage's earliest eligible checkpoint ({why})"


def _prefers(c: Candidate, inc: Candidate, policy: PromotionPolicy) -> bool:
    """Whether the tie-break prefers ``c`` to the incumbent: the first criterion that tells them apart decides."""
    for t in policy.tie_break:
        a, b = (c.length, inc.length) if t == "shorter" else (c.step, inc.step)
        if a is not None and b is not None and a != b:
            return a < b
    return False


def _paired_panels(store: RunStore, inc: Candidate, others: list[Candidate], used: list[str],
                   judged: dict[str, list[Report]], policy: PromotionPolicy) -> tuple[list[decisions.Panel], list[str]]:
    """One panel per weighted metric that has per-question units for the incumbent and every candidate."""
    panels, paired = [], []
    for m in used:
        bench, _, metric = m.partition("/")
        units = []
        for c in [inc, *others]:
            rep = next((r for r in judged.get(c.run, []) if r.benchmark == bench and metric in r.metrics), None)
            got = decisions.report_units(store, rep, metric) if rep is not None else None
            if got is None:
                break
            units.append(got)
        if len(units) == len(others) + 1:
            scale = units[0][1]
            panels.append(decisions.panel(units[0][0], [u for u, _ in units[1:]], scale=scale,
                                          weight=policy.weights[m], name=m))
            paired.append(m)
    return panels, paired


def _decide(store: RunStore, inc: Candidate, live: list[Candidate], used: list[str],
            judged: dict[str, list[Report]], estimates: dict[str, dict[str, Estimate]],
            policy: PromotionPolicy) -> tuple[list[Candidate], list[str], list[Decision], dict[str, Any]]:
    """Every candidate against the incumbent, family-wise controlled; the promoted, the reasons, the tests."""
    others = [c for c in live if c is not inc]
    if not others:
        inc.corrected_score = inc.score
        return [inc], [f"promoted {inc.label()}: score {_g(inc.score)}; the only eligible checkpoint"], [], {
            "incumbent": inc.run, "method": None, "corrected_score": inc.score}
    panels, paired = _paired_panels(store, inc, others, used, judged, policy)
    reasons: list[str] = []
    if panels:
        st = decisions.contrast(panels)
        method = f"{decisions.METHOD} on per-question differences of {', '.join(paired)}"
        left = [m for m in used if m not in paired]
        if left:
            reasons.append(f"tested on {', '.join(paired)} only: {', '.join(left)} "
                           "has no per-question units (it stays in the score)")
    else:
        st = decisions.unpaired(
            [[(estimates[c.run][m].value, decisions.estimate_se(estimates[c.run][m])) for m in used] for c in others],
            [(estimates[inc.run][m].value, decisions.estimate_se(estimates[inc.run][m])) for m in used],
            [policy.weights[m] for m in used], [min(estimates[c.run][m].n for m in used) for c in others])
        method = f"{decisions.UNPAIRED} on the reported {', '.join(used)} (no per-question judgments stored)"
        reasons.append("no per-question judgments are stored for these runs: an unpaired test on the reports' "
                       "estimates decides, and no winner's-curse correction is possible")
    preferred = [_prefers(c, inc, policy) for c in others]
    sel = decisions.select(st, preferred, alpha=policy.alpha, margin=policy.margin, correction=policy.correction)
    corr = f"{policy.correction} over {len(others)} candidate(s)"
    tests: list[Decision] = []
    for j, c in enumerate(others):
        lo, hi = decisions.interval(st, j, policy.alpha)
        c.diff, c.diff_low, c.diff_high, c.p_value = float(st.diff[j]), lo, hi, float(sel.p_adjusted[j])
        if sel.passed[j]:
            c.verdict = "non-inferior" if preferred[j] and not (lo is not None and lo > 0) else "better"
        else:
            c.verdict = "worse" if hi is not None and hi < -policy.margin and st.n[j] >= decisions.MIN_QUESTIONS \
                else "inconclusive"
        tests.append(decisions.decision(
            st, j, kind="promotion", verdict=c.verdict, alpha=policy.alpha, margin=policy.margin, correction=corr,
            p_value=c.p_value, benchmark="+".join(dict.fromkeys(m.partition("/")[0] for m in (paired or used))),
            metric="+".join(paired or used), candidate=c.run, incumbent=inc.run,
            meta={"rule": "non-inferiority" if preferred[j] else "superiority", "raw_p": float(sel.p[j]),
                  "preferred_by_tie_break": preferred[j], "weights": {m: policy.weights[m] for m in paired or used}}))
    pick = int(sel.pick)
    order = sorted((j for j in range(len(others)) if sel.passed[j]), key=lambda j: (-float(st.diff[j]), j))
    promoted = [others[j] for j in order] + [inc]
    promoted = promoted[:policy.count]
    # the winner's curse: the chosen one's score, corrected by conditional cross-fitting on half-splits
    top = promoted[0]
    if panels:
        corrected, support = decisions.crossfit(panels, pick, preferred, alpha=policy.alpha, margin=policy.margin,
                                                correction=policy.correction, seed=policy.seed)
        naive = float(st.diff[pick]) if pick >= 0 else 0.0
        top.corrected_score = float(top.score - naive + float(corrected))
        support_n = int(support)
        if pick >= 0:
            tests[pick] = tests[pick].model_copy(update={"corrected_score": top.corrected_score})
    else:
        support_n = 0
    rule = (f"{method}; one-sided tests at alpha {policy.alpha:g}, {corr}; a candidate the tie-break "
            f"({' then '.join(policy.tie_break) or 'none'}) prefers to the incumbent needs non-inferiority within "
            f"margin {policy.margin:g}, any other superiority")
    if top is inc:
        tested = "; ".join(f"{c.label()} {_signed(c.diff)} [{_signed(c.diff_low)}, {_signed(c.diff_high)}] "
                           f"p={_p(c.p_value)}" for c in others)
        mdes = [t.meta.get("mde") for t in tests if t.meta.get("mde") is not None]
        smallest = f"; smallest difference detectable (80% power): {min(mdes):.3g}" if mdes else ""
        why = (f"promoted {inc.label()} (the incumbent; kept): score {_g(inc.score)}; no candidate is significantly "
               f"better ({tested}){smallest}")
    else:
        how = "significantly better than" if top.verdict == "better" else \
            f"preferred by the tie-break and non-inferior (margin {policy.margin:g}) to"
        why = (f"promoted {top.label()}: score {_g(top.score)}, {how} the incumbent {inc.label()} "
               f"({_g(inc.score)}): paired difference {_signed(top.diff)}, one-sided bound "
               f"{_signed(top.diff_low)}, adjusted p={_p(top.p_value)}")
        if top.corrected_score is not None:
            why += (f"; winner's-curse-corrected score {_g(top.corrected_score)} (cross-fit: {support_n} of "
                    f"{2 * decisions.SPLITS} held-out halves reproduce the pick)")
    reasons.insert(0, why)
    reasons.insert(1, f"decision: {rule}")
    for c in promoted[1:]:
        reasons.insert(promoted.index(c), f"promoted {c.label()} (rank {promoted.index(c) + 1}): score "
                                          f"{_g(c.score)}, {c.verdict or 'the incumbent'}")
    meta = {"incumbent": inc.run, "method": method, "alpha": policy.alpha, "margin": policy.margin,
            "correction": corr, "tie_break": list(policy.tie_break), "tested_metrics": paired or used,
            "corrected_score": top.corrected_score,
            "corrected_method": f"conditional cross-fit over {decisions.SPLITS} seeded half-splits" if panels else None,
            "crossfit_support": support_n, "seed": policy.seed}
    return promoted, reasons, tests, meta


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


def _signed(x: float | None) -> str:
    return "?" if x is None else f"{x:+.3g}"


def _p(x: float | None) -> str:
    return "?" if x is None else (f"{x:.2g}" if x >= 1e-4 else "<1e-4")


def _record(store: RunStore, d: PromotionDecision, judge: str) -> None:
    table = [{k: v for k, v in dataclasses.asdict(c).items() if k != "metrics"} for c in d.candidates]
    policy = dataclasses.asdict(d.policy)
    decision = uuid.uuid4().hex
    store.put_promotions([
        Promotion(stage=d.stage, run=c.run, model=c.model, checkpoint=c.checkpoint, step=c.step, rank=rank,
                  judge=judge or None, score=c.score, ci_low=c.ci_low, ci_high=c.ci_high, reasons=d.reasons,
                  candidates=table, policy=policy,
                  # a decision is an event: the same choice made again is a new record, and so the latest one
                  meta={"why": d.reasons[rank - 1], "metrics": c.metrics, "decision": decision, **d.meta,
                        "test": next((t.model_dump(mode="json") for t in d.decisions if t.candidate == c.run), None),
                        "tests": [t.model_dump(mode="json") for t in d.decisions]})
        for rank, c in enumerate(d.promoted, 1)
    ])


def _mark(d: PromotionDecision, out: str | Path | None) -> str | None:
    c = d.promoted[0]
    if not c.checkpoint:
        return None
    ckpt = Path(c.checkpoint)
    folder = Path(out) if out is not None else ckpt.absolute().parent
    if not folder.is_dir():
        return None
    link = folder / f"{d.stage}-promoted"
    if link.is_symlink():
        link.unlink()
    if ckpt.exists() and not link.exists():
        os.symlink(os.path.relpath(ckpt.absolute(), folder.absolute()), link, target_is_directory=True)
    note = folder / f"{d.stage}-promoted.json"
    d.marker = str(link if link.is_symlink() else note)  # before the note is written: the note names it too
    note.write_text(json.dumps(d.to_json(), indent=1, default=str))
    return d.marker
