"""Seeded, vectorized bootstrap intervals for ratios of sums over resampling units (questions, by default).

Every mean-type headline is a ratio of sums over units: MT-Bench's mean rating is the sum of a question's ratings over
its number of ratings, Arena-Hard's win rate (with only baseline battles) the strong-weighted wins over the weighted
games. A bootstrap round is a vector of multiplicities, one per unit, so all rounds are one matrix product.

Interval method (``method="bootstrap-t"``, the default): the studentized bootstrap. Each round's deviation from the
point estimate is divided by that round's own cluster-robust standard error, and the quantiles of these t values
replace the normal ones. It corrects the skew of bounded, discrete scores that makes the percentile interval too
narrow in small samples: simulated coverage of a 95% interval for an MT-Bench mean, percentile 0.77 / 0.85 / 0.91 at
3 / 5 / 10 questions, studentized 0.96 at 10 (benchmarks/interval_coverage.py, which also covers Arena-Hard- and
AlpacaEval-like win rates: 0.94-0.99 at 10 questions, 0.94-0.98 at 30 and 80). ``method="percentile"`` keeps the
plain percentile interval (the official scripts' method, for parity).

Stated rules, applied to every interval made here:

- Minimum sample: below ``MIN_UNITS`` units no interval is claimed (``ci_low``/``ci_high`` None, ``reliable`` False,
  the reason in ``meta["note"]``). The studentized interval reaches its nominal coverage from 10 questions on
  (simulated); with fewer the resampling distribution has too few distinct values to say anything about the tails.
  The standard error is still given there (``se``), for what it is worth.
- No exact zero-width intervals: when every unit has the same value the resamples cannot vary, but the population
  can. The interval then follows the rule of three: having seen no unit deviate in ``g`` units, the share of deviating
  units is below 3/g with 95% confidence, and a deviating unit can lie anywhere on the scale, so the mean lies in
  ``[v - (3/g)(v - low), v + (3/g)(high - v)]`` for the scale ``(low, high)``. Without a known scale no interval is
  claimed (``reliable`` False).
- Rounds without spread: a round that drew only alike units has no standard error of its own. Its t is then
  huge rather than undefined (the variance gets a floor of 1e-12 of the scale's largest variance): such rounds stretch
  the interval towards the end of the scale, which is what small samples that look alike call for (simulated: a
  floor of a third of the largest variance over g^2 instead cut coverage at 10 questions from 0.94 to 0.82).
- Failures: ``MAX_FAILED_SHARE`` of the judgments behind an estimate may fail before it is marked unreliable.

Results do not depend on the order of the records: units are sorted by their key, and values are summed in a sorted
order, before anything is drawn or added.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lioneval.types import Estimate

__all__ = [
    "DEFAULT_ROUNDS",
    "MAX_FAILED_SHARE",
    "MIN_UNITS",
    "RatioIntervals",
    "failure_note",
    "grouped_mean",
    "mark_unreliable",
    "quantiles",
    "ratio_intervals",
    "resample_counts",
    "shared_counts",
]

DEFAULT_ROUNDS = 1000
# Below this many resampling units (questions) no interval is claimed: the simulation in
# benchmarks/interval_coverage.py shows the studentized interval at nominal coverage (within 3 points) from 10 on.
MIN_UNITS = 10
# More failed judgments than this share marks an estimate unreliable. Sound judges fail far less often (GPT-4 on the
# published MT-Bench gradings: under 1%; the published Arena-Hard verdicts: none), and the judgment audit already
# warns at 5%. Failures are not missing at random (weak judges fail on long or unusual answers), and at 10% a modest
# selection effect, failed items scoring 2 points below the rest on MT-Bench's 1-10 scale, moves the mean by 0.2:
# about the half-width of an 80-question interval, so the interval no longer describes the number.
MAX_FAILED_SHARE = 0.10
METHODS = ("bootstrap-t", "percentile")
_RULE_OF_THREE = 3.0


def quantiles(x: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.quantile(x, qs)`` (its default, linear interpolation) to the bit, NaN if x holds one. np.quantile imports
    numpy.ma on its first call, a large share of a leaderboard command's start-up; the same arithmetic is a sort."""
    a = np.sort(np.asarray(x, dtype=float), axis=None)
    n = a.size
    if not n:
        raise ValueError("no values to take quantiles of")
    out = []
    for q in qs:
        v = (n - 1) * float(q)
        if v >= n - 1:
            lo = hi = -1
        elif v < 0:
            lo = hi = 0
        else:
            lo = math.floor(v)
            hi = lo + 1
        t = v - lo
        a_lo, a_hi = float(a[lo]), float(a[hi])
        d = a_hi - a_lo
        # numpy's _lerp: the upper end's form from t = 0.5 on (monotone and exact at both ends)
        out.append(math.nan if math.isnan(a[-1]) else (a_hi - d * (1 - t) if t >= 0.5 else a_lo + d * t))
    return out


def resample_counts(n_units: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n_units) multiplicities of each unit in each bootstrap sample; all rounds drawn at once."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_units, size=(rounds, n_units))
    offsets = (np.arange(rounds) * n_units)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=rounds * n_units).reshape(rounds, n_units)


@functools.lru_cache(maxsize=4)
def shared_counts(n_units: int, rounds: int, seed: int) -> np.ndarray:
    """:func:`resample_counts`, drawn once per process for each (n_units, rounds, seed) and shared read-only, in the
    smallest integer type that holds them: a leaderboard of many models on the same questions reuses one draw."""
    counts = resample_counts(n_units, rounds, seed).astype(np.uint16 if n_units < 2**16 else np.int64)
    counts.flags.writeable = False
    return counts


@dataclass
class RatioIntervals:
    """Intervals for several ratios of sums at once (one column each): bounds None where none is claimed."""

    value: np.ndarray  # (columns,)
    ci_low: list[float | None]
    ci_high: list[float | None]
    se: list[float | None]
    units: np.ndarray  # units with a positive size, per column
    method: list[str]
    reliable: list[bool]
    notes: list[str | None]
    boot: np.ndarray | None = None  # (rounds, columns) resampled ratios
    extra: dict[str, Any] = field(default_factory=dict)


def _as_columns(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[:, None] if a.ndim == 1 else a


def rule_of_three(value: float, units: int, bounds: tuple[float, float]) -> tuple[float, float]:
    """The interval for ``units`` units that all equal ``value`` on the scale ``bounds`` (see the module notes)."""
    share = min(1.0, _RULE_OF_THREE / units)
    return value - share * (value - bounds[0]), value + share * (bounds[1] - value)


def ratio_intervals(
    sums: np.ndarray,
    sizes: np.ndarray,
    counts: np.ndarray | None,
    *,
    level: float = 0.95,
    method: str = "bootstrap-t",
    bounds: tuple[float, float] | None = None,
    min_units: int = MIN_UNITS,
) -> RatioIntervals:
    """Intervals for ratios sum(S)/sum(n) over units, from bootstrap multiplicities ``counts`` (rounds, units).

    ``sums`` and ``sizes`` are (units,) or (units, columns); a unit with size 0 does not belong to that column.
    ``counts`` None (no rounds) gives the points, standard errors and notes only. ``bounds`` is the scale of a
    unit's value (MT-Bench: 1-10; a win share: 0-1): it clips the interval and sets the zero-variance rule.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; use one of {METHODS}")
    S, n = _as_columns(sums), _as_columns(sizes)
    cols = S.shape[1]
    member = n > 0
    g = member.sum(axis=0)
    total = n.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = S.sum(axis=0) / total
    resid = np.where(member, S - value * n, 0.0)
    # Cluster-robust (linearised) variance of the ratio, with the g/(g-1) small-sample factor.
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(g > 1, g / np.maximum(g - 1, 1) * (resid**2).sum(axis=0) / total**2, np.nan)
    scale = np.maximum(np.abs(S).max(axis=0, initial=0.0), 1.0)
    equal = np.abs(resid).max(axis=0, initial=0.0) <= 1e-12 * scale * np.maximum(n.max(axis=0, initial=1.0), 1.0)
    if bounds is not None:
        ref = np.full(cols, (bounds[1] - bounds[0]) ** 2 / 4)
    else:
        ref = var * g
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = 1e-12 * ref

    boot = None
    t_lo = t_hi = p_lo = p_hi = np.full(cols, np.nan)
    if counts is not None and len(counts):
        K = np.asarray(counts, dtype=float)
        kn = K @ n
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (K @ S) / kn
        alpha = (1 - level) / 2
        # A column without units is all NaN; numpy warns about it, and the loop below says it has no interval.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if method == "percentile":
                p_lo, p_hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
            else:
                # sum_g k_g (S_g - theta* n_g)^2, expanded so that every round is a matrix product.
                ss = K @ (S * S) - 2 * boot * (K @ (S * n)) + boot**2 * (K @ (n * n))
                with np.errstate(invalid="ignore", divide="ignore"):
                    var_b = g / np.maximum(g - 1, 1) * np.maximum(ss, 0.0) / kn**2
                    t = (boot - value) / np.sqrt(var_b + floor)
                t = np.where(boot == value, 0.0, t)
                t_lo, t_hi = np.nanquantile(t, [alpha, 1 - alpha], axis=0)

    lows: list[float | None] = []
    highs: list[float | None] = []
    ses: list[float | None] = []
    methods: list[str] = []
    reliable: list[bool] = []
    notes: list[str | None] = []
    for c in range(cols):
        units, v = int(g[c]), float(value[c])
        lo: float | None = None
        hi: float | None = None
        se = float(np.sqrt(var[c])) if units > 1 and np.isfinite(var[c]) else None
        note: str | None = None
        ok = True
        used = "bootstrap-t" if method == "bootstrap-t" else "bootstrap-percentile"
        if units == 0:
            note, ok = "no units", False
        elif equal[c]:
            if bounds is None:
                se, ok = None, False
                note = f"all {units} units have the same value and the scale is unknown: no interval claimed"
            else:
                r_lo, r_hi = rule_of_three(v, units, bounds)
                se = max(v - r_lo, r_hi - v) / 1.959963984540054
                used = "rule-of-three"
                note = (f"all {units} units have the same value; the interval follows the rule of three "
                        f"(at most {min(1.0, _RULE_OF_THREE / units):.0%} of units may differ, anywhere on the scale)")
                if units >= min_units:
                    lo, hi = r_lo, r_hi
        elif counts is not None and len(counts):
            if method == "percentile":
                lo, hi = float(p_lo[c]), float(p_hi[c])
            else:
                half = float(np.sqrt(var[c]))
                lo, hi = v - float(t_hi[c]) * half, v - float(t_lo[c]) * half
            if bounds is not None:
                lo, hi = min(max(lo, bounds[0]), bounds[1]), min(max(hi, bounds[0]), bounds[1])
            if not hi > lo:  # every round gave the same number although the units differ
                if bounds is not None:
                    lo, hi = rule_of_three(v, units, bounds)
                    used = "rule-of-three"
                    note = "the resamples did not vary; the interval follows the rule of three"
                else:
                    lo = hi = None
                    ok, note = False, "the resamples did not vary and the scale is unknown: no interval claimed"
        if units < min_units and units > 0:
            lo = hi = None
            ok = False
            note = (f"{units} units, fewer than the minimum of {min_units} for an interval: none claimed"
                    + (f"; {note}" if note else ""))
        lows.append(lo)
        highs.append(hi)
        ses.append(se)
        methods.append(used)
        reliable.append(ok)
        notes.append(note)
    return RatioIntervals(value=value, ci_low=lows, ci_high=highs, se=ses, units=g, method=methods,
                          reliable=reliable, notes=notes, boot=boot)


def grouped_mean(
    values: np.ndarray,
    groups: np.ndarray,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = 0.95,
    unit: str = "question",
    method: str = "bootstrap-t",
    bounds: tuple[float, float] | None = None,
    min_units: int = MIN_UNITS,
) -> Estimate:
    """Mean of ``values`` with a bootstrap CI that resamples whole groups (e.g. both turns of a question).

    A group drawn k times contributes all its values k times, so the resampled statistic is
    sum_g k_g * S_g / sum_g k_g * n_g with S_g, n_g the group's sum and size: one matrix product for all rounds.
    ``method``: "bootstrap-t" (studentized, the default) or "percentile". ``bounds``: the scale of one value (e.g.
    (1, 10)), used to clip the interval and for the rule for groups that all agree (see the module notes).
    Groups are ordered by their key and values summed in sorted order, so the record order never matters.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no values to average")
    keys, g = np.unique(np.asarray(groups), return_inverse=True)
    g = g.ravel()
    order = np.lexsort((values, g))
    values, g = values[order], g[order]
    sums = np.bincount(g, weights=values, minlength=len(keys))
    sizes = np.bincount(g, minlength=len(keys)).astype(float)
    counts = resample_counts(len(sums), rounds, seed) if rounds > 0 else None
    res = ratio_intervals(sums, sizes, counts, level=level, method=method, bounds=bounds, min_units=min_units)
    lo, hi, note = res.ci_low[0], res.ci_high[0], res.notes[0]
    meta: dict[str, Any] = {"groups": int(len(sums))}
    if note:
        meta["note"] = note
    if bounds is not None:
        meta["bounds"] = list(bounds)
    if rounds <= 0:
        return Estimate(value=float(res.value[0]), se=res.se[0], n=int(values.size), method="mean", unit=unit,
                        seed=seed, reliable=res.reliable[0], meta=meta)
    return Estimate(
        value=float(res.value[0]),
        ci_low=lo,
        ci_high=hi,
        se=res.se[0],
        n=int(values.size),
        method=res.method[0],
        rounds=rounds,
        seed=seed,
        unit=unit,
        level=level,
        reliable=res.reliable[0],
        meta=meta,
    )


def failure_note(failed: int, total: int, threshold: float = MAX_FAILED_SHARE) -> str | None:
    """Why an estimate is unreliable when more than ``threshold`` of its ``total`` judgments failed, else None."""
    if total <= 0 or failed / total <= threshold:
        return None
    return (f"{failed} of {total} judgments failed ({failed / total:.0%}, above the {threshold:.0%} limit): "
            "the failures are left out, and what remains may not represent the model")


def mark_unreliable(est: Estimate, reason: str) -> Estimate:
    """A copy of ``est`` with ``reliable`` False and the reason added to ``meta["unreliable"]``."""
    reasons = [*est.meta.get("unreliable", []), reason]
    return est.model_copy(update={"reliable": False, "meta": {**est.meta, "unreliable": reasons}})
