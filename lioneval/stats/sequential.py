"""Anytime-valid tests and confidence sequences for bounded means, for judging only until a question is settled.

Method: betting ("capital") processes for the mean of values in [0, 1], after Waudby-Smith and Ramdas, "Estimating
means of bounded random variables by betting", JRSS-B 85(1), 2023 (arXiv:2010.09686). To test H0: mean <= m, a
bettor starts with capital 1 and at step t stakes a fraction ``lambda_t`` chosen from the values before t (never from
x_t itself): ``K_t = prod_i (1 + lambda_i (x_i - m_i))``. Under H0 that is a nonnegative supermartingale, so by
Ville's inequality ``P(sup_t K_t >= 1/alpha) <= alpha``: rejecting as soon as the capital reaches ``1/alpha`` keeps
the error at ``alpha`` however often one looks and whenever one stops (continuous monitoring, optional stopping).
The set of means not rejected at time t is a confidence sequence: it holds the true mean at every t at once with
probability at least ``1 - alpha`` (one side at ``alpha`` each; the two together at ``2 alpha``).

Choices made here, and why:

* **Sampling without replacement** (``population=N``): a benchmark's questions are a finite set and the question a
  run asks is what the whole set would say ("would the full run call this checkpoint better?"). Questions are drawn
  in a random order, so the mean of the next draw given the past is ``m_t = (N m - S_{t-1}) / (N - t + 1)`` under
  H0: the paper's section 6 centring, which makes the test sharper as the unseen rest shrinks and exact at t = N.
  Without ``population`` the values are taken as i.i.d. draws (a question set as a sample of questions).
* **Bets** (``bet``): "agrapa" (the paper's approximate growth-rate adaptive plug-in,
  ``lambda = (mu_hat - m_t) / (sigma_hat^2 + (mu_hat - m_t)^2)``) by default: it stakes in proportion to the
  evidence seen so far, so a clear difference is settled in a few dozen questions, and it stakes nothing while the
  estimate sits on the null side. "prpl" (the predictable plug-in, ``sqrt(2 log(1/alpha) / (sigma_hat^2 t
  log(1 + t)))``) is kept for comparison. Stakes are capped at ``cap / m_t`` (cap 0.75), so one value of 0 never
  loses more than three quarters of the capital. ``mu_hat`` and ``sigma_hat^2`` are the paper's regularised running
  mean and variance (a prior pseudo-observation 1/2 with variance 1/4).
* **Looks**: ``looks`` lists the numbers of observations after which the capital is read (batch ends); reading it
  more rarely only makes stopping later, never the error larger.
* **Several candidates** (``race``): each candidate's test gets an anytime p-value (``1 / running max of its
  capital``); Holm's step-down over those p-values at every look controls the family-wise error at ``alpha``
  (each look's rejections are a subset of Holm's on the final running minima, which are valid p-values), and a
  candidate that is settled stops drawing judge calls, so the budget goes to those still undecided.

Everything is vectorised over leading axes (pairs x orders in the replay, ``benchmarks/adaptive_replay.py``): one
pass of cumulative sums per call. Missing observations (NaN) may only trail a row (rows of unequal length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BETS",
    "CAP",
    "Race",
    "Stops",
    "confidence_sequence",
    "first_look",
    "holm",
    "holm_levels",
    "log_capital",
    "looks_every",
    "race",
    "sequential_test",
    "to_unit",
]

BETS = ("agrapa", "prpl")
CAP = 0.75  # most of the capital a single observation can lose


def to_unit(x: np.ndarray | Sequence[float], low: float, high: float) -> np.ndarray:
    """Values on the scale [low, high] rescaled to [0, 1] (NaN stays NaN; values outside are an error)."""
    if not high > low:
        raise ValueError(f"the scale [{low}, {high}] is empty")
    x = np.asarray(x, dtype=float)
    u = (x - low) / (high - low)
    if np.any(u[~np.isnan(u)] < -1e-9) or np.any(u[~np.isnan(u)] > 1 + 1e-9):
        raise ValueError(f"values outside the scale [{low}, {high}]")
    return np.clip(u, 0.0, 1.0)


def looks_every(n: int, batch: int) -> np.ndarray:
    """Look after every ``batch`` observations and after the last one (1-based counts)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    out = np.arange(batch, n + 1, batch)
    return out if out.size and out[-1] == n else np.append(out, n).astype(int)


def log_capital(x: np.ndarray, m: np.ndarray | float, *, alpha: float = 0.05,
                population: int | np.ndarray | None = None,
                bet: str = "agrapa", cap: float = CAP) -> np.ndarray:
    """Running log capital (..., n) of the bet against H0: mean <= ``m`` (large values reject it).

    ``x`` is (..., n) in [0, 1], observed in that order (trailing NaN: not observed); ``m`` broadcasts against
    ``x[..., 0]``. With ``population`` N (or one N per row), H0 is about the mean of the N values the observations
    are drawn from without replacement. ``+inf`` once H0 has become impossible (the unseen rest would have to
    average below 0)."""
    if bet not in BETS:
        raise ValueError(f"unknown bet {bet!r}; use one of {', '.join(BETS)}")
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    valid = ~np.isnan(x)
    xv = np.where(valid, x, 0.0)
    m = np.asarray(m, dtype=float)[..., None]
    t = np.arange(1, n + 1, dtype=float)
    # the regularised running mean and variance after i observations (i = 0..n-1), used for the bet at step i + 1
    s = np.cumsum(xv, -1)
    mu_after = (0.5 + s) / (t + 1)
    mu_prev = np.concatenate([np.full(x.shape[:-1] + (1,), 0.5), mu_after[..., :-1]], -1)
    dev = np.where(valid, (xv - mu_after) ** 2, 0.0)
    var_prev = np.concatenate([np.full(x.shape[:-1] + (1,), 0.25), ((0.25 + np.cumsum(dev, -1)) / (t + 1))[..., :-1]],
                              -1)
    s_prev = s - xv
    if population is None:
        mt = np.broadcast_to(m, x.shape)
    else:
        big_n = np.asarray(population, dtype=float)[..., None]
        if np.any(big_n < valid.sum(-1, keepdims=True)):
            raise ValueError("more observations than the population they are drawn from")
        with np.errstate(divide="ignore", invalid="ignore"):
            mt = np.where(valid, (big_n * m - s_prev) / np.maximum(big_n - t + 1, 1), 0.5)
    impossible = mt < -1e-12
    mt_pos = np.maximum(mt, 1e-12)
    if bet == "agrapa":
        gap = mu_prev - mt
        lam = gap / (var_prev + gap ** 2)
    else:
        lam = np.sqrt(2 * math.log(1 / alpha) / (var_prev * t * np.log1p(t)))
        lam = np.broadcast_to(lam, mt.shape)
    lam = np.clip(lam, 0.0, cap / mt_pos)
    step = np.where(valid, np.log1p(lam * (xv - mt)), 0.0)
    out = np.cumsum(step, -1)
    hit = np.logical_or.accumulate(impossible & valid, axis=-1)
    return np.where(hit, np.inf, out)


def first_look(logk: np.ndarray, alpha: float, looks: np.ndarray | None = None) -> np.ndarray:
    """The number of observations at the first look where the capital reached ``1/alpha`` (..., ), 0 if never."""
    n = logk.shape[-1]
    looks = np.arange(1, n + 1) if looks is None else np.asarray(looks, int)
    crossed = logk[..., looks - 1] >= math.log(1 / alpha)
    first = np.argmax(crossed, -1)
    return np.where(crossed.any(-1), looks[first], 0)


@dataclass(frozen=True)
class Stops:
    """Stopping times (in observations; 0: never) of the two one-sided tests of ``sequential_test``."""

    above: np.ndarray  # H0: mean <= m_above rejected (the mean is above it)
    below: np.ndarray  # H0: mean >= m_below rejected (the mean is below it)


def sequential_test(x: np.ndarray, m_above: np.ndarray | float, m_below: np.ndarray | float, *, alpha: float,
                    population: int | np.ndarray | None = None, looks: np.ndarray | None = None, bet: str = "agrapa",
                    cap: float = CAP) -> Stops:
    """When (if ever) the mean is shown above ``m_above``, and when below ``m_below``, each at level ``alpha``."""
    up = log_capital(x, m_above, alpha=alpha, population=population, bet=bet, cap=cap)
    down = log_capital(1.0 - np.asarray(x, float), 1.0 - np.asarray(m_below, float), alpha=alpha,
                       population=population, bet=bet, cap=cap)
    return Stops(first_look(up, alpha, looks), first_look(down, alpha, looks))


def confidence_sequence(x: np.ndarray, *, alpha: float = 0.05, population: int | None = None,
                        bet: str = "agrapa", grid: int = 1001, cap: float = CAP) -> tuple[np.ndarray, np.ndarray]:
    """Running lower and upper bounds (n,) of the mean of one sequence ``x`` (n,) in [0, 1]: each bound holds at
    every t at once with probability ``1 - alpha`` (the interval, ``1 - 2 alpha``). Computed on a grid of means
    (the bounds are conservative to a grid step) and intersected over time."""
    x = np.asarray(x, float)
    ms = np.linspace(0.0, 1.0, grid)
    up = log_capital(np.broadcast_to(x, (grid, x.size)), ms, alpha=alpha, population=population, bet=bet, cap=cap)
    down = log_capital(np.broadcast_to(1.0 - x, (grid, x.size)), 1.0 - ms, alpha=alpha, population=population,
                       bet=bet, cap=cap)
    level = math.log(1 / alpha)
    rejected_up = np.logical_or.accumulate(up >= level, axis=-1)  # (grid, n): mean <= m rejected by time t
    rejected_down = np.logical_or.accumulate(down >= level, axis=-1)
    # lower bound: the smallest m from which on nothing is rejected from above (everything below it is)
    lo_idx = np.argmin(rejected_up, axis=0)  # first grid point not rejected
    lo = np.where(rejected_up.all(0), 1.0, ms[np.maximum(lo_idx - 1, 0)] * (lo_idx > 0))
    hi_idx = grid - 1 - np.argmin(rejected_down[::-1], axis=0)
    hi = np.where(rejected_down.all(0), 0.0, ms[np.minimum(hi_idx + 1, grid - 1)] * (hi_idx < grid - 1)
                  + (hi_idx == grid - 1))
    lo = np.maximum.accumulate(lo)
    hi = np.minimum.accumulate(hi)
    return lo, np.maximum(hi, lo)


def holm_levels(p: np.ndarray, alpha: float) -> np.ndarray:
    """Each p-value's Holm threshold (over the last axis): ``alpha / (m - rank)`` for its rank among the m."""
    p = np.asarray(p, float)
    m = p.shape[-1]
    rank = np.argsort(np.argsort(p, axis=-1, kind="stable"), axis=-1, kind="stable")
    return alpha / (m - rank)


def holm(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections over the last axis: the smallest p-values, in order, while each is at most
    ``alpha / (m - rank)``."""
    p = np.asarray(p, float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    passing = np.logical_and.accumulate(np.take_along_axis(p, order, -1) <= alpha / (m - np.arange(m)), axis=-1)
    out = np.zeros(p.shape, bool)
    np.put_along_axis(out, order, passing, -1)
    return out


@dataclass(frozen=True)
class Race:
    """Several candidates tested at once: for each, when it was settled (observations; 0: never) and how."""

    stop: np.ndarray  # (..., k) observations used by each candidate
    verdict: np.ndarray  # (..., k) +1: shown above its null, -1: shown below it, 0: undecided
    p_above: np.ndarray  # (..., k) anytime p-values of the "above" tests at the end
    p_below: np.ndarray


def race(x: np.ndarray, m_above: np.ndarray | float, m_below: np.ndarray | float, *, alpha: float = 0.05,
         population: int | np.ndarray | None = None, batch: int = 10, budget: int | None = None, bet: str = "agrapa",
         cap: float = CAP) -> Race:
    """Test ``k`` candidates (x: (..., k, n) in [0, 1], in the order they would be judged) at family-wise level
    ``alpha`` with Holm's step-down over their anytime p-values (the 2k one-sided tests of "above ``m_above``" and
    "below ``m_below``" form the family). At each look every undecided candidate gets ``batch`` more observations;
    settled candidates get none, so ``budget`` (observations over all candidates) goes to the undecided ones."""
    x = np.asarray(x, float)
    k = x.shape[-2]
    up = log_capital(x, m_above, alpha=alpha, population=population, bet=bet, cap=cap)
    down = log_capital(1.0 - x, 1.0 - np.asarray(m_below, float), alpha=alpha, population=population, bet=bet,
                       cap=cap)
    # anytime p-values after t observations: 1 / running max of the capital
    p_up = np.minimum(1.0, np.exp(-np.maximum.accumulate(up, -1)))
    p_down = np.minimum(1.0, np.exp(-np.maximum.accumulate(down, -1)))
    lead = x.shape[:-2]
    used = np.zeros(lead + (k,), int)
    verdict = np.zeros(lead + (k,), int)
    length = (~np.isnan(x)).sum(-1)
    spent = np.zeros(lead, int)
    while True:
        active = (verdict == 0) & (used < length)
        grant = np.where(active, np.minimum(batch, length - used), 0)
        if budget is not None:  # a look that would overspend is not taken
            grant = np.where((spent + grant.sum(-1) <= budget)[..., None], grant, 0)
        if not grant.any():
            break
        used = used + grant
        spent = spent + grant.sum(-1)
        idx = np.maximum(used - 1, 0)[..., None]
        pu = np.where(used > 0, np.take_along_axis(p_up, idx, -1)[..., 0], 1.0)
        pd = np.where(used > 0, np.take_along_axis(p_down, idx, -1)[..., 0], 1.0)
        rejected = holm(np.concatenate([pu, pd], -1), alpha)  # the family: 2k tests
        above, below = rejected[..., :k], rejected[..., k:]
        verdict = np.where(verdict != 0, verdict, np.where(above, 1, np.where(below, -1, 0)))
    last = np.maximum(used - 1, 0)[..., None]
    return Race(used, verdict,
                np.take_along_axis(p_up, last, -1)[..., 0], np.take_along_axis(p_down, last, -1)[..., 0])
