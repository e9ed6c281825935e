"""Decisions: paired, error-controlled comparisons of checkpoints with an incumbent (DESIGN.md: ``Decision``).

Promotion, early stopping and ``lioneval compare`` all decide here, from per-question paired units
(``Benchmark.paired_units``: each run's headline as a ratio of sums over questions), so they agree.

Methods, and why:

* **Paired studentized t on per-question differences.** The unit is the question: both checkpoints answered it, and
  question difficulty is most of the variance, so the paired difference is far less noisy than two separate
  intervals suggest. A ratio of sums (MT-Bench mean rating, Arena-Hard's strong-weighted win rate) is linearized per
  question (delta method: ``(num_i - R * den_i) / mean(den)``; with one judgment per question this is the plain
  per-question difference), and the difference gets a Student-t interval with ``n - 1`` degrees of freedom (several
  benchmarks: their weighted sum, Welch-Satterthwaite degrees of freedom). No resampling, so nothing to seed, and
  coverage is near nominal from ``MIN_QUESTIONS`` = 10 shared questions up (``benchmarks/decision_sim.py`` checks it
  on MT-Bench-like ratings); the percentile bootstrap it replaces under-covers at small n (about 90% at n = 10).
  Below ``MIN_QUESTIONS`` no claim is made (p = 1, verdict "inconclusive").
* **One-sided tests with a non-inferiority margin.** A candidate that the tie-break does not prefer to the incumbent
  (longer answers, a later step) must be significantly better (H0: diff <= 0); one it prefers (shorter, earlier)
  only has to be significantly *not worse* than the incumbent by more than ``margin`` (H0: diff <= -margin). So
  noise never promotes a later or longer checkpoint, and a worse one is never promoted because intervals overlap.
* **Holm's step-down correction across the candidates** (the default ``correction``): each candidate's one-sided
  paired test against the incumbent, Holm-adjusted, so the chance of promoting any checkpoint that is not better
  (not non-inferior) is at most ``alpha`` however many checkpoints a run saved (family-wise error). The promoted
  one is the candidate with the largest paired difference among those that pass; none passing keeps the incumbent.
* **Winner's-curse correction by conditional cross-fitting** (``crossfit``). The best of many checkpoints looks
  better than it is. For ``splits`` seeded random halvings of the questions (both ways round), the choice is
  remade on one half, each candidate held to the same absolute bar it had to clear on the full data (``bars``),
  and where that picks the same checkpoint, its difference with the incumbent is measured on the other,
  untouched half; the corrected difference is the mean of those held-out differences (0, the incumbent's level,
  when no half reproduces the pick). When the incumbent is kept, the same is done with its own held-out score
  (it is kept when nothing beat it, so its score is a little lucky too). ``corrected_score`` = the incumbent's
  score + the corrected difference. In simulation (``benchmarks/decision_sim.py``) the reported score's bias
  stays within about 0.02 MT-Bench points, where the plain best of 21 equal checkpoints overstates by 0.27.
* **MDE** (``mde``): with n questions and the observed paired SD, the smallest true difference the one-sided test
  detects with the given power: ``(t[1 - alpha, n-1] + t[power, n-1]) * sd / sqrt(n)``.

Everything is vectorized over candidates (and any leading batch axes, which the simulation script uses), and
results never depend on record order: questions are sorted by id first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as _st

from lioneval import benchmarks
from lioneval.errors import LionEvalError
from lioneval.store import RunStore
from lioneval.types import Decision, Estimate, Judgment, Report

__all__ = [
    "CORRECTIONS",
    "METHOD",
    "MIN_QUESTIONS",
    "Panel",
    "Selection",
    "Stats",
    "adjust",
    "bars",
    "compare",
    "contrast",
    "crossfit",
    "decide",
    "decision",
    "decline",
    "estimate_se",
    "interval",
    "mde",
    "mde_se",
    "p_greater",
    "panel",
    "report_units",
    "select",
    "strike_level",
    "unpaired",
]

Units = Mapping[str, tuple[float, float]]
Kind = Literal["compare", "promotion", "early_stop"]
Verdict = Literal["better", "worse", "non-inferior", "inconclusive"]

MIN_QUESTIONS = 10  # below this many shared questions no interval is claimed
METHOD = "paired-t"  # delta-method per-question differences, Student t with n - 1 degrees of freedom
UNPAIRED = "unpaired-z"  # fallback from two reports' Estimates when per-question judgments are not stored
CORRECTIONS = ("holm", "bonferroni", "none")
SPLITS = 20  # half-splits of the winner's-curse correction (each used both ways round)
RULES = ("superiority", "non-inferiority", "inferiority")


# -- per-question panels --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One benchmark's per-question units of an incumbent and ``m`` candidates on the incumbent's questions.

    ``incumbent`` is (..., n, 2) (numerator, denominator), ``candidates`` (..., m, n, 2) and ``present`` (..., m, n)
    marks the questions each candidate shares with the incumbent. ``weight`` multiplies this benchmark's
    difference in a combined contrast; ``scale`` turns the ratio into the metric's units.
    """

    questions: tuple[str, ...]
    incumbent: np.ndarray
    candidates: np.ndarray
    present: np.ndarray
    scale: float = 1.0
    weight: float = 1.0
    name: str = ""


def panel(incumbent: Units, candidates: Sequence[Units], *, scale: float = 1.0, weight: float = 1.0,
          name: str = "") -> Panel:
    """Align candidates' units on the incumbent's questions (sorted by id; questions only one side has drop out)."""
    qs = tuple(sorted(incumbent))
    inc = np.array([incumbent[q] for q in qs], dtype=float).reshape(len(qs), 2)
    cand = np.zeros((len(candidates), len(qs), 2))
    present = np.zeros((len(candidates), len(qs)), dtype=bool)
    for j, units in enumerate(candidates):
        for i, q in enumerate(qs):
            u = units.get(q)
            if u is not None and u[1] > 0:
                cand[j, i] = u
                present[j, i] = True
    present &= inc[:, 1] > 0
    return Panel(qs, inc, cand, present, float(scale), float(weight), name)


@dataclass(frozen=True)
class Stats:
    """Candidate-minus-incumbent differences (..., m) with their standard errors, degrees of freedom and n."""

    diff: np.ndarray
    se: np.ndarray
    df: np.ndarray
    n: np.ndarray
    candidate: np.ndarray  # the candidates' scores on the shared questions
    incumbent: np.ndarray  # the incumbent's score on each candidate's shared questions
    method: str = METHOD

    def negated(self) -> Stats:
        """The same differences read in the other direction (for metrics where lower is better)."""
        return Stats(-self.diff, self.se, self.df, self.n, -self.candidate, -self.incumbent, self.method)

    def sd(self) -> np.ndarray:
        return self.se * np.sqrt(np.maximum(self.n, 1))


def _part(p: Panel, mask: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """diff, variance of the diff, n, candidate level, incumbent level for one panel (under a question mask)."""
    w = p.present if mask is None else p.present & mask[..., None, :]
    wf = w.astype(float)
    n = wf.sum(-1)
    nc, dc = p.candidates[..., 0], p.candidates[..., 1]
    ni, di = p.incumbent[..., None, :, 0], p.incumbent[..., None, :, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        sc_d, si_d = (wf * dc).sum(-1), (wf * di).sum(-1)
        rc, ri = (wf * nc).sum(-1) / sc_d, (wf * ni).sum(-1) / si_d
        uc = (nc - rc[..., None] * dc) / (sc_d / n)[..., None]
        ui = (ni - ri[..., None] * di) / (si_d / n)[..., None]
        z = p.scale * (uc - ui)
        z = np.where(w, z, 0.0)
        zbar = z.sum(-1) / n  # 0 up to rounding: the linearization is centred
        var = (wf * (z - zbar[..., None]) ** 2).sum(-1) / (n - 1) / n
    return p.scale * (rc - ri), var, n, p.scale * rc, p.scale * ri


def contrast(panels: Sequence[Panel], masks: Sequence[np.ndarray | None] | None = None) -> Stats:
    """The weighted sum over panels (benchmarks) of each candidate's paired difference with the incumbent.

    Benchmarks have disjoint questions, so their variances add; the degrees of freedom are Welch-Satterthwaite's
    (``n - 1`` for a single benchmark). ``masks`` (one per panel, (..., n_b) booleans) restrict the questions.
    """
    if not panels:
        raise LionEvalError("no benchmark to compare on", fix="pass at least one panel of paired units")
    masks = masks if masks is not None else [None] * len(panels)
    diff: Any = 0.0
    var: Any = 0.0
    cand: Any = 0.0
    inc: Any = 0.0
    n: Any = 0.0
    dfden: Any = 0.0
    for p, m in zip(panels, masks, strict=True):
        d, v, k, c, i = _part(p, m)
        diff, cand, inc = diff + p.weight * d, cand + p.weight * c, inc + p.weight * i
        wv = p.weight ** 2 * v
        var = var + wv
        with np.errstate(invalid="ignore", divide="ignore"):
            dfden = dfden + np.where(k > 1, wv ** 2 / (k - 1), np.inf)
        n = n + k
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(dfden > 0, np.asarray(var) ** 2 / dfden, np.asarray(n) - len(panels))
    return Stats(np.asarray(diff, float), np.sqrt(np.asarray(var, float)), np.asarray(df, float),
                 np.asarray(n), np.asarray(cand, float), np.asarray(inc, float))


Pair = tuple[float, float | None]  # (value, standard error) of one metric


def unpaired(candidates: Sequence[Sequence[Pair]], incumbent: Sequence[Pair], weights: Sequence[float],
             n: Sequence[int]) -> Stats:
    """Fallback without per-question units: weighted differences of reported values, their SEs added as if the
    two evaluations were independent (conservative when checkpoints share questions), normal reference.

    ``candidates[j][k]`` and ``incumbent[k]`` are (value, se) of metric ``k``; ``n[j]`` the candidate's questions."""
    w = np.asarray(weights, float)
    vi = np.array([v for v, _ in incumbent], float)
    si = np.array([np.nan if s is None else s for _, s in incumbent], float)
    vc = np.array([[v for v, _ in c] for c in candidates], float).reshape(len(candidates), len(w))
    sc = np.array([[np.nan if s is None else s for _, s in c] for c in candidates], float).reshape(vc.shape)
    diff = (w * (vc - vi)).sum(-1)
    se = np.sqrt((w ** 2 * (sc ** 2 + si ** 2)).sum(-1))
    return Stats(diff, se, np.full(diff.shape, np.inf), np.asarray(n), (w * vc).sum(-1),
                 np.full(diff.shape, (w * vi).sum()), UNPAIRED)


def estimate_se(e: Estimate) -> float | None:
    """An Estimate's standard error: its own, else from its interval (normal), else None."""
    if e.se is not None and math.isfinite(e.se):
        return float(e.se)
    if e.ci_low is not None and e.ci_high is not None:
        return float((e.ci_high - e.ci_low) / (2 * _st.norm.ppf((1 + e.level) / 2)))
    return None


# -- tests, multiplicity, selection -----------------------------------------------------------------------------------
def p_greater(st: Stats, offset: np.ndarray | float) -> np.ndarray:
    """One-sided p of H0: diff <= offset; 1 (no claim) below MIN_QUESTIONS or without a finite SE."""
    excess = st.diff - offset
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(st.se > 0, excess / np.where(st.se > 0, st.se, 1.0),
                     np.where(excess > 0, np.inf, np.where(excess < 0, -np.inf, 0.0)))
        p = _st.t.sf(t, np.where(np.isfinite(st.df) & (st.df > 0), st.df, np.inf))
    ok = (st.n >= MIN_QUESTIONS) & np.isfinite(st.diff) & ~np.isnan(st.se)
    return np.where(ok & ~np.isnan(p), p, 1.0)


def adjust(p: np.ndarray, correction: str = "holm") -> np.ndarray:
    """Family-wise adjusted p-values over the last axis: Holm's step-down, Bonferroni, or none."""
    if correction not in CORRECTIONS:
        raise LionEvalError(f"unknown correction {correction!r}", fix=f"use one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p, float)
    m = p.shape[-1] if p.ndim else 1
    if correction == "none" or m == 0:
        return p
    if correction == "bonferroni":
        return np.minimum(1.0, m * p)
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, -1)
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ps), axis=-1)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, -1)
    return out


@dataclass(frozen=True)
class Selection:
    """Candidates tested against the incumbent together: raw and adjusted one-sided p, who passed, the pick."""

    stats: Stats
    offset: np.ndarray  # H0: diff <= offset (0: superiority; -margin: non-inferiority)
    p: np.ndarray
    p_adjusted: np.ndarray
    passed: np.ndarray
    pick: np.ndarray  # index of the promoted candidate; -1 keeps the incumbent


def select(st: Stats, preferred: np.ndarray | Sequence[bool] | None = None, *, alpha: float = 0.05,
           margin: float = 0.0, correction: str = "holm") -> Selection:
    """Test every candidate against the incumbent (higher diff = better) and pick the best that passes.

    ``preferred[j]``: the tie-break prefers candidate j to the incumbent (shorter answers, earlier step), so it only
    needs non-inferiority (H0: diff <= -margin); the others need superiority (H0: diff <= 0). The tests are
    adjusted together (``correction``) and the passing candidate with the largest difference wins (ties: the
    lower index); none passing keeps the incumbent (-1)."""
    pref = np.zeros(st.diff.shape[-1], bool) if preferred is None else np.asarray(preferred, bool)
    offset = np.where(pref, -float(margin), 0.0)
    p = p_greater(st, offset)
    adj = adjust(p, correction)
    passed = adj <= alpha
    score = np.where(passed, st.diff, -np.inf)
    pick = np.where(passed.any(-1), np.argmax(score, axis=-1), -1)
    return Selection(st, np.broadcast_to(offset, st.diff.shape), p, adj, passed, pick)


def strike_level(alpha: float, patience: int | None, horizon: int) -> float:
    """The level of each early-stopping strike test that holds the plateau false-stop rate at ``alpha``.

    On a plateau (no checkpoint better than another), a strike test at level ``a`` (``decline``) strikes with
    probability at most ``a``, so over the ``horizon - 1`` comparisons of ``horizon`` evaluations the expected number
    of strikes is at most ``(horizon - 1) * a``, and a stop, which needs ``patience`` strikes, happens with
    probability at most that over ``patience`` (Markov's inequality). Hence ``a = alpha * patience / (horizon - 1)``,
    never above ``alpha``: the chance that a flat run stops within the horizon is at most ``alpha``, whatever the
    patience, and a longer patience buys a less strict test per evaluation."""
    p = max(1, patience or 1)
    return float(alpha * min(1.0, p / max(1, horizon - 1)))


def decline(st: Stats, earlier: int | np.ndarray, *, alpha: float = 0.05,
            margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Early stopping's strike test: is the new checkpoint (candidate) significantly worse than the best so far
    (incumbent) by more than ``margin``? ``st`` reads higher as better. The best was chosen among ``earlier``
    evaluations, so the one-sided p is Bonferroni-adjusted by that number (testing the new checkpoint against every
    earlier one at ``alpha / earlier`` covers the comparison with whichever is best): on a plateau, an evaluation
    strikes with probability at most ``alpha`` (pass ``strike_level(...)`` to bound the whole run's false stops).
    Returns (strike, adjusted p)."""
    p = np.minimum(1.0, np.maximum(np.asarray(earlier), 1) * p_greater(st.negated(), float(margin)))
    return p <= alpha, p


def _take(a: np.ndarray, pick: np.ndarray) -> np.ndarray:
    return np.take_along_axis(a, np.maximum(pick, 0)[..., None], -1)[..., 0]


def bars(st: Stats, preferred: np.ndarray | Sequence[bool] | None = None, *, alpha: float = 0.05,
         margin: float = 0.0, correction: str = "holm") -> np.ndarray:
    """The difference each candidate had to clear on the full data, in the metric's units: its null value (0, or
    -margin for a preferred one) plus the critical t at its multiplicity-adjusted level times its standard error
    (Holm: the level of its rank among the candidates' p-values). Infinite below ``MIN_QUESTIONS``."""
    m = st.diff.shape[-1]
    pref = np.zeros(m, bool) if preferred is None else np.asarray(preferred, bool)
    offset = np.where(pref, -float(margin), 0.0)
    if correction == "holm":
        rank = np.argsort(np.argsort(p_greater(st, offset), axis=-1, kind="stable"), axis=-1, kind="stable")
        level = alpha / (m - rank)
    else:
        level = np.full(st.diff.shape, alpha / m if correction == "bonferroni" else alpha)
    df = np.where(np.isfinite(st.df) & (st.df > 0), st.df, np.inf)
    bar = offset + _st.t.ppf(1 - level, df) * st.se
    return np.where((st.n >= MIN_QUESTIONS) & np.isfinite(bar), bar, np.inf)


def crossfit(panels: Sequence[Panel], pick: np.ndarray | int, preferred: Sequence[bool] | None = None, *,
             alpha: float = 0.05, margin: float = 0.0, correction: str = "holm", sign: float = 1.0,
             splits: int = SPLITS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Winner's-curse-corrected difference of the picked candidate with the incumbent (in the good direction;
    ``sign`` -1 reads lower as better), and how many of the ``2 * splits`` held-out halves it rests on.

    For each seeded halving (both ways round), the choice is remade on one half with the bars the full data set
    (``bars``: the same absolute difference each candidate had to clear, so a half is not held to a stricter
    standard than the full data): the candidates clearing their bar compete, the largest difference wins, none
    keeps the incumbent. Where that reproduces the full-data pick, the pick's difference with the incumbent is
    measured on the other, untouched half (for a kept incumbent: how its own score moves there, as it is kept when
    nothing beat it). The corrected difference is the mean over those halves; 0 when none reproduces the pick."""
    rng = np.random.default_rng(seed)
    pick = np.asarray(pick)
    total = np.zeros(pick.shape)
    count = np.zeros(pick.shape)
    full = contrast(panels)
    if sign < 0:
        full = full.negated()
    bar = bars(full, preferred, alpha=alpha, margin=margin, correction=correction)
    inc_full = full.incumbent[..., 0]
    for _ in range(splits):
        halves = []
        for p in panels:
            n = len(p.questions)
            a = np.zeros(n, bool)
            a[rng.permutation(n)[: n // 2]] = True
            halves.append(a)
        for fit, held in ((halves, [~h for h in halves]), ([~h for h in halves], halves)):
            st_fit, st_held = contrast(panels, fit), contrast(panels, held)
            if sign < 0:
                st_fit, st_held = st_fit.negated(), st_held.negated()
            clear = st_fit.diff >= bar
            again = np.where(clear.any(-1), np.argmax(np.where(clear, st_fit.diff, -np.inf), axis=-1), -1)
            same = again == pick
            value = np.where(pick >= 0, _take(st_held.diff, pick), st_held.incumbent[..., 0] - inc_full)
            total += np.where(same & np.isfinite(value), value, 0.0)
            count += same & np.isfinite(value)
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return corrected, count


# -- power ------------------------------------------------------------------------------------------------------------
def mde(n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8, sided: int = 1) -> float:
    """The smallest true paired difference a test at ``alpha`` (one- or two-sided) detects with ``power``, from n
    questions with per-question paired SD ``sd``; NaN below 2 questions."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return mde_se(sd / math.sqrt(n), n - 1, alpha=alpha, power=power, sided=sided)


def mde_se(se: float, df: float, *, alpha: float = 0.05, power: float = 0.8, sided: int = 1) -> float:
    """``mde`` from a standard error and degrees of freedom (a combined or unpaired contrast)."""
    if not (math.isfinite(se) and df > 0):
        return math.nan
    return float((_st.t.ppf(1 - alpha / sided, df) + _st.t.ppf(power, df)) * se)


# -- records ----------------------------------------------------------------------------------------------------------
def interval(st: Stats, j: int, alpha: float) -> tuple[float | None, float | None]:
    """Candidate j's difference bounds at ``alpha`` on each side (a two-sided ``1 - 2 alpha`` interval)."""
    se, df = float(st.se[j]), float(st.df[j])
    if not (math.isfinite(se) and int(st.n[j]) >= 2):
        return None, None
    q = float(_st.t.ppf(1 - alpha, df if math.isfinite(df) and df > 0 else np.inf))
    return float(st.diff[j] - q * se), float(st.diff[j] + q * se)


def decision(st: Stats, j: int, *, kind: Kind, verdict: Verdict, alpha: float, margin: float = 0.0,
             correction: str | None = None, p_value: float | None = None, two_sided: bool = False,
             higher_is_better: bool = True, benchmark: str | None = None, metric: str | None = None,
             candidate: str | None = None, incumbent: str | None = None, corrected_score: float | None = None,
             meta: dict[str, Any] | None = None) -> Decision:
    """The Decision record of candidate ``j`` of ``st`` (st in the metric's own direction)."""
    lo, hi = interval(st, j, alpha / 2 if two_sided else alpha)
    n = int(st.n[j])
    se, df = float(st.se[j]), float(st.df[j])
    info: dict[str, Any] = {
        "candidate_score": _f(st.candidate[j]), "incumbent_score": _f(st.incumbent[j]), "se": _f(se),
        "df": _f(df) if math.isfinite(df) else None, "level": 1 - alpha if two_sided else 1 - 2 * alpha,
        "mde": _f(mde_se(se, df if math.isfinite(df) else 1e9, alpha=alpha, sided=2 if two_sided else 1)),
        "min_questions": MIN_QUESTIONS}
    if n < MIN_QUESTIONS:
        info["note"] = f"{n} shared questions: below {MIN_QUESTIONS}, no claim is made"
    return Decision(kind=kind, benchmark=benchmark, metric=metric, candidate=candidate, incumbent=incumbent,
                    diff=float(st.diff[j]), ci_low=lo, ci_high=hi, n=n, margin=margin, alpha=alpha, method=st.method,
                    correction=correction, verdict=verdict, p_value=p_value, higher_is_better=higher_is_better,
                    corrected_score=corrected_score, meta={**info, **(meta or {})})


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _verdict(lo: float | None, hi: float | None, margin: float, n: int) -> Verdict:
    """Two-sided reading of an interval in the good direction (lo, hi of good-minus-incumbent)."""
    if lo is None or hi is None or n < MIN_QUESTIONS:
        return "inconclusive"
    if lo > 0:
        return "better"
    if hi < -margin:
        return "worse"
    if margin > 0 and lo > -margin:
        return "non-inferior"
    return "inconclusive"


def compare(candidate: Units, incumbent: Units, *, scale: float = 1.0, higher_is_better: bool = True,
            alpha: float = 0.05, margin: float = 0.0, benchmark: str | None = None, metric: str | None = None,
            candidate_run: str | None = None, incumbent_run: str | None = None) -> Decision:
    """Candidate minus incumbent on their shared questions: a two-sided paired-t interval at ``1 - alpha`` and its
    verdict (better / worse beyond ``margin`` / non-inferior within it / inconclusive)."""
    st = contrast([panel(incumbent, [candidate], scale=scale)])
    n = int(st.n[0])
    if n < 2:
        raise LionEvalError(f"the runs share {n} judged questions; a paired comparison needs at least 2",
                            fix="compare runs on the same benchmark data, judged by the same judge")
    good = st if higher_is_better else st.negated()
    lo, hi = interval(good, 0, alpha / 2)
    verdict = _verdict(lo, hi, margin, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = float(min(1.0, 2 * p_greater(Stats(np.abs(st.diff), st.se, st.df, st.n, st.candidate, st.incumbent),
                                          0.0)[0]))
    return decision(st, 0, kind="compare", verdict=verdict, alpha=alpha, margin=margin, p_value=p, two_sided=True,
                    higher_is_better=higher_is_better, benchmark=benchmark, metric=metric, candidate=candidate_run,
                    incumbent=incumbent_run)


def decide(candidate: Units, incumbent: Units, *, rule: str = "superiority", scale: float = 1.0,
           higher_is_better: bool = True, alpha: float = 0.05, margin: float = 0.0, kind: Kind = "compare",
           benchmark: str | None = None, metric: str | None = None, candidate_run: str | None = None,
           incumbent_run: str | None = None) -> Decision:
    """One one-sided paired test of a candidate against the incumbent at ``alpha``:

    * ``superiority``: is the candidate significantly better? ("better", else "inconclusive" or "worse")
    * ``non-inferiority``: is it significantly not worse by ``margin`` or more? ("non-inferior" / "better")
    * ``inferiority``: is it significantly worse by more than ``margin``? ("worse", else "inconclusive"/"better")

    Several candidates against one incumbent: use ``select`` (it corrects for their number)."""
    if rule not in RULES:
        raise LionEvalError(f"unknown rule {rule!r}", fix=f"use one of {', '.join(RULES)}")
    st = contrast([panel(incumbent, [candidate], scale=scale)])
    if int(st.n[0]) < 2:
        raise LionEvalError(f"the runs share {int(st.n[0])} judged questions; a paired decision needs at least 2",
                            fix="compare runs on the same benchmark data, judged by the same judge")
    good = st if higher_is_better else st.negated()
    lo, hi = interval(good, 0, alpha)
    verdict: Verdict
    if rule == "inferiority":
        p = float(p_greater(good.negated(), float(margin))[0])
        verdict = "worse" if p <= alpha else ("better" if lo is not None and lo > 0 and st.n[0] >= MIN_QUESTIONS
                                              else "inconclusive")
    else:
        p = float(p_greater(good, -float(margin) if rule == "non-inferiority" else 0.0)[0])
        if p <= alpha:
            verdict = "better" if rule == "superiority" or (lo is not None and lo > 0) else "non-inferior"
        else:
            verdict = "worse" if hi is not None and hi < -margin and st.n[0] >= MIN_QUESTIONS else "inconclusive"
    return decision(st, 0, kind=kind, verdict=verdict, alpha=alpha, margin=margin, p_value=p,
                    higher_is_better=higher_is_better, benchmark=benchmark, metric=metric, candidate=candidate_run,
                    incumbent=incumbent_run, meta={"rule": rule})


# -- reading units from the store -------------------------------------------------------------------------------------
def report_units(store: RunStore, report: Report,
                 metric: str | None = None) -> tuple[dict[str, tuple[float, float]], float] | None:
    """The per-question paired units behind a report (its run's own judgments by its judge) and their scale, or
    None when ``metric`` is not the benchmark's paired metric, the benchmark is not installed, or no judgment of
    the run is stored (e.g. a report imported without its judgments)."""
    try:
        bench = benchmarks.of(report.benchmark, report.benchmark_version)
    except LionEvalError:
        return None
    if metric is not None and metric != bench.paired_metric:
        return None
    js: list[Judgment] = store.linked(report.run, "judgments", benchmark=report.benchmark,  # type: ignore[assignment]
                                      judge=report.judge)
    units = bench.paired_units([j for j in js if j.model == report.model])
    return (units, float(bench.paired_scale)) if units else None
