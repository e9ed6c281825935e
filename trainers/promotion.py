"""Promotion: which checkpoint of a stage goes on, decided from the stored reports by a written-down policy.

``promote(store, stage, policy)`` and ``lioneval promote --stage S`` apply :class:`PromotionPolicy`:

1. Candidates are the stage's evaluated checkpoints (runs of that stage with reports). Given ``checkpoints`` or an
   ``out`` folder, only those, and only while their files still hold the weights that were evaluated.
2. One judge: scores of different judges are not comparable, so only reports of ``policy.judge`` count (default:
   the judge that scored the most candidates).
3. Excluded: checkpoints that cheat checks flagged (``is_cheat`` on the reports and stored checks); length
   inflation: mean answer length above ``max_length_growth`` times that of the stage's earliest candidate, or a
   pairwise ``length_ratio`` check (answers against the baseline's) above ``max_length_ratio``; checkpoints missing
   a weighted metric that other candidates have.
4. Score: the weighted sum of the metrics in ``weights`` (default puts MT-Bench's 1-10 on the 0-100 scale of the
   others), over the metrics every remaining candidate has. Its confidence interval assumes independent errors:
   half-width sqrt(sum((w * half-width_i)^2)), a half-width being half the CI (1.96 SE without one).
5. Pick: the highest score wins unless other candidates' intervals overlap its interval; then those are tied with
   it, and ``tie_break`` picks among them: ``shorter`` (lower mean answer length), ``earlier`` (lower step), in
   the given order, the score last. So noise never promotes a longer-winded or later checkpoint over an
   equivalent one. ``count`` > 1 repeats the pick on the rest.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.checkpoint import weights_hash
from lioneval.checks import is_cheat
from lioneval.errors import ConfigError, LionEvalError
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.trainers.config import Checked, _help, check_stage_name, config_from_dict
from lioneval.types import Estimate, Promotion, Report, RunSpec

__all__ = ["Candidate", "PromotionDecision", "PromotionPolicy", "promote"]

# The default policy's weights (a field default; a recipe's `promotion.weights` replaces it): each built-in
# benchmark's headline, scaled to 0-100 (MT-Bench's 1-10 rating weighs 10, the percentages 1).
DEFAULT_WEIGHTS = {f"{name}/{cls.headline}": 100.0 / cls.headline_scale
                   for name in BENCHMARKS.defaults() if (cls := BENCHMARKS.get(name))}
TIE_BREAKS = ("shorter", "earlier")


@dataclass
class PromotionPolicy(Checked):
    """How promote() chooses (the `promotion:` block of a recipe; a YAML file for `lioneval promote --policy`)."""

    weights: dict[str, float] = _help(DEFAULT_WEIGHTS, "BENCH/METRIC -> weight of the combined score.")
    tie_break: list[str] = _help(list(TIE_BREAKS), "Order of preferences among checkpoints whose score "
                                                   "intervals overlap the best one's: shorter, earlier.")
    max_length_growth: float | None = _help(1.5, "Exclude checkpoints whose mean answer length exceeds the "
                                                 "stage's earliest candidate's by this factor (None: no bound).",
                                            minimum=0)
    max_length_ratio: float | None = _help(2.0, "Exclude checkpoints whose answers are this many times the "
                                                "pairwise baseline's length (None: no bound).", minimum=0)
    exclude_flagged: bool = _help(True, "Exclude checkpoints that cheat checks flagged.")
    judge: str | None = _help(None, "Only reports of this judge (id or spec label); default: the judge that "
                                    "scored the most candidates.")
    count: int = _help(1, "How many checkpoints to promote.", minimum=1)

    def check(self, where: str) -> None:
        bad = [t for t in self.tie_break if t not in TIE_BREAKS]
        if bad:
            raise ConfigError(f"{where}.tie_break: unknown {bad}", fix=f"use {', '.join(TIE_BREAKS)}")
        if not self.weights:
            raise ConfigError(f"{where}: the promotion policy weights no metric",
                              fix="e.g. weights: {mt-bench/overall: 1}")
        for metric in self.weights:
            bench, sep, name = metric.partition("/")
            if not sep or not bench or not name:
                raise ConfigError(f"{where}.weights: {metric!r} is not BENCH/METRIC", fix="e.g. mt-bench/overall")
            try:
                BENCHMARKS.entry(bench)
            except LionEvalError as e:
                raise ConfigError(f"{where}.weights: {metric!r} names an {e.message}", fix=e.fix) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> PromotionPolicy:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise LionEvalError(f"cannot read promotion policy {path}: {e}", fix="pass a YAML file") from e
        if isinstance(data, dict) and "promotion" in data:
            return config_from_dict(cls, data["promotion"], f"{path}: promotion")
        return config_from_dict(cls, data, str(path))


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
            checkpoints: list[str] | None = None, record: bool = True, mark: bool = True) -> PromotionDecision:
    """Pick the checkpoint(s) of ``stage`` to promote from stored reports (see the module docstring)."""
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
    for s in specs:
        c = Candidate(run=s.key, model=s.model, checkpoint=s.checkpoint, step=s.step)
        mine = [r for r in reports[s.key] if not judge or judge in (r.judge, s.judge, r.judge.split("#")[0])]
        if not mine:
            c.excluded = f"not judged by {judge}"
        elif (checkpoints is not None or out is not None) and (why := _stale(s)):
            c.excluded = why
        else:
            estimates[s.key] = _fill(store, c, mine, policy)
            if c.excluded is None and not any(m in c.metrics for m in policy.weights):
                c.excluded = f"has none of the weighted metrics ({', '.join(policy.weights)})"
        cands.append(c)
    cands.sort(key=lambda c: (c.step if c.step is not None else -1, c.model))
    _exclude_length_growth(cands, policy)
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
    promoted: list[Candidate] = []
    while live and len(promoted) < policy.count:
        pick, why = _pick(live, policy)
        promoted.append(pick)
        reasons.insert(len(promoted) - 1, why)
        live = [c for c in live if c is not pick]
    if not promoted:
        reasons.insert(0, f"no checkpoint of stage {stage!r} is eligible for promotion")
    decision = PromotionDecision(stage, promoted, cands, reasons, policy)
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


def _score(c: Candidate, used: list[str], policy: PromotionPolicy, est: dict[str, Estimate]) -> None:
    c.score = sum(policy.weights[m] * c.metrics[m] for m in used)
    hw = math.sqrt(sum((policy.weights[m] * _half_width(est[m])) ** 2 for m in used if m in est))
    c.ci_low, c.ci_high = c.score - hw, c.score + hw


def _pick(live: list[Candidate], policy: PromotionPolicy) -> tuple[Candidate, str]:
    top = max(live, key=lambda c: (c.score, -(c.step or 0)))
    tied = [c for c in live if c is top or (c.ci_high is not None and c.ci_high >= top.ci_low)]

    def key(c: Candidate) -> tuple:
        parts: list[float] = []
        for t in policy.tie_break:
            if t == "shorter":
                parts.append(c.length if c.length is not None else math.inf)
            elif t == "earlier":
                parts.append(c.step if c.step is not None else math.inf)
        return (*parts, -c.score)

    pick = min(tied, key=key) if len(tied) > 1 else top
    line = f"promoted {pick.label()}: score {pick.score:.3g} [{pick.ci_low:.3g}, {pick.ci_high:.3g}]"
    if pick is top and len(tied) == 1:
        line += "; the highest, and no other checkpoint's interval reaches its own"
    elif pick is top:
        line += f"; the highest, and preferred ({' then '.join(policy.tie_break)}) among the tied " + \
                ", ".join(c.label() for c in tied if c is not pick)
    else:
        line += (f"; tied with the highest, {top.label()} ({top.score:.3g} [{top.ci_low:.3g}, {top.ci_high:.3g}]), "
                 f"whose interval overlaps, and preferred as {' then '.join(policy.tie_break)}"
                 f" (mean length {_num(pick.length)} vs {_num(top.length)} characters, step {pick.step} vs "
                 f"{top.step})")
    return pick, line


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:.0f}"


def _record(store: RunStore, d: PromotionDecision, judge: str) -> None:
    table = [{k: v for k, v in dataclasses.asdict(c).items() if k != "metrics"} for c in d.candidates]
    policy = dataclasses.asdict(d.policy)
    decision = uuid.uuid4().hex
    store.put_promotions([
        Promotion(stage=d.stage, run=c.run, model=c.model, checkpoint=c.checkpoint, step=c.step, rank=rank,
                  judge=judge or None, score=c.score, ci_low=c.ci_low, ci_high=c.ci_high, reasons=d.reasons,
                  candidates=table, policy=policy,
                  # a decision is an event: the same choice made again is a new record, and so the latest one
                  meta={"why": d.reasons[rank - 1], "metrics": c.metrics, "decision": decision})
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
    note.write_text(json.dumps(d.to_json(), indent=1, default=str))
    return str(link if link.is_symlink() else note)
