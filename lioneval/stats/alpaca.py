"""AlpacaEval 2.0 statistics: win rates from preferences and the length-controlled GLM (``length_controlled_v1``).

Preferences use the official encoding: a float in [1, 2] where 2 means the model (``output_2``) wins, 1 the baseline,
1.5 a draw (0 is an older spelling of a draw) and NaN a missing annotation.

The length-controlled (LC) win rate (Dubois, Galambosi, Liang & Hashimoto 2024, "Length-Controlled AlpacaEval")
fits, per model, a logistic regression without intercept of the model's win share on three features:
``tanh(delta_len / sd(delta_len))`` with ``delta_len`` = baseline length - model length in characters (sd over the
model's rows, not centred), the instruction difficulty, and an indicator that the row is the model's rather than a
gamed baseline's. The rows of the baseline prompted to be verbose and concise, judged against itself (``df_gamed``),
are appended with indicator 0 and weight ``lambda / n_gamed_models`` each (0.1 for lambda = 0.2), which pulls the fit
toward the baseline. Soft labels enter as two weighted rows (label 1 with weight w*p, label 0 with weight w*(1-p)).
The L1 strength C is chosen among ``logspace(-4, 4, 10)`` by 5-fold grouped cross-validation (each row with its
duplicate is a group) on the weighted log-loss, and the model is refitted on all rows. The LC win rate is 100 times
the mean predicted win probability with the length term set to zero.

The official code fits with scikit-learn's liblinear (tol 1e-4), which stops well short of the optimum, so the
numbers depend on its exact steps. This module takes the same steps, vectorised over every fold, strength and model
at once, and so reproduces the official values to rounding (about 1e-12) while running several times faster.

The official standard error of the LC win rate is the spread of the per-row predictions over sqrt(n): it leaves out
the uncertainty of the fitted weights (it is exactly 0 for the GLM without difficulties, whose predictions are all
equal) and runs 2.0-2.35 times smaller than a question bootstrap on the validation models. It is kept as ``se`` and
``meta["official_se"]`` for parity; the interval is a seeded question bootstrap that refits the GLM in every replicate
(``rounds > 0``; see "question bootstrap" below), and is claimed only from :data:`LC_MIN_QUESTIONS` questions with
enough wins and losses (:func:`claims_interval`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

from lioneval.stats.bootstrap import quantiles, shared_counts
from lioneval.stats.workers import Pool, worker_count
from lioneval.types import Estimate

__all__ = [
    "CS",
    "FEATURES",
    "LC_MIN_OUTCOMES",
    "LC_MIN_QUESTIONS",
    "GamedRows",
    "LCResult",
    "LCRows",
    "claims_interval",
    "clean_preference",
    "group_folds",
    "lc_from_weights",
    "length_controlled_win_rate",
    "length_controlled_win_rates",
    "win_rates",
]

# The strengths LogisticRegressionCV tries by default (Cs=10); the official fit relies on that default.
CS = np.logspace(-4, 4, 10)
# Column names of the official design matrix (patsy spelling), also the columns of the published weights files.
FEATURES = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")
# Floor on predicted probabilities in the CV log-loss, as in the official scorer.
_EPS_PROBA = 1e-15


def clean_preference(preference: ArrayLike) -> np.ndarray:
    """Float preferences with 0 read as a draw (1.5) and anything outside [1, 2] (or None) as missing (NaN)."""
    p = np.asarray(preference, dtype=float).copy()
    p[p == 0] = 1.5
    p[~((p >= 1) & (p <= 2))] = np.nan
    return p


def _sem(x: np.ndarray) -> float | None:
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None


def win_rates(
    preference: ArrayLike, *, rounds: int = 0, seed: int = 0
) -> tuple[dict[str, Estimate], dict[str, int]]:
    """Win rate and discrete win rate (both in %) with the official counts.

    Missing preferences are left out (never counted as losses). The standard error is that of the mean (ddof=1), as
    the official ``pandas.Series.sem``; the official code gives none for the discrete win rate, this one is the same
    formula on the 0 / 0.5 / 1 scores. A win is a preference above 1.5, a loss below, a draw exactly 1.5 (or 0).
    With ``rounds > 0`` a seeded percentile bootstrap over questions adds a 95% interval.
    """
    p = clean_preference(preference)
    v = p[~np.isnan(p)] - 1
    n = int(v.size)
    counts = {
        "n_wins": int((v > 0.5).sum()),
        "n_wins_base": int((v < 0.5).sum()),
        "n_draws": int((v == 0.5).sum()),
        "n_total": n,
    }
    if n == 0:
        return {}, counts
    discrete = np.where(v > 0.5, 1.0, np.where(v < 0.5, 0.0, 0.5))
    cis: dict[str, tuple[float, float]] = {}
    if rounds > 0:
        # The multiplicity of each question in each round (the same draws as indexing with
        # default_rng(seed).integers(0, n, (rounds, n))), so that every round's mean is one product.
        boot = 100 * _row_sums(shared_counts(n, rounds, seed), np.stack([v, discrete])) / n
        for j, name in enumerate(("win_rate", "discrete_win_rate")):
            bounds = quantiles(boot[:, j], [0.025, 0.975])
            cis[name] = (bounds[0], bounds[1])
    metrics = {}
    for name, x, method in (("win_rate", v, "mean"), ("discrete_win_rate", discrete, "mean-discrete")):
        se = _sem(x)
        lo, hi = cis.get(name, (None, None))
        metrics[name] = Estimate(
            value=float(100 * x.mean()),
            se=None if se is None else 100 * se,
            ci_low=lo,
            ci_high=hi,
            n=n,
            method=method,
            rounds=rounds or None,
            seed=seed if rounds else None,
            unit="question" if rounds else None,
        )
    return metrics, counts


# --------------------------------------------------------------------------------------------------------------------
# Length-controlled win rate: inputs and results


@dataclass(frozen=True)
class GamedRows:
    """The gamed-baseline rows of ``df_gamed.csv``: the baseline prompted verbose and concise, judged against itself.

    ``std_delta_len`` is already standardised (the GLM applies tanh to it); ``preference`` is the gamed side's win
    share in [0, 1]; ``index`` the eval-set index of each row.
    """

    std_delta_len: np.ndarray
    difficulty: np.ndarray
    preference: np.ndarray
    index: np.ndarray
    n_models: int = 2

    def difficulty_by_index(self) -> np.ndarray:
        """Difficulty per eval index (first row of each index, as the official lookup), NaN where absent."""
        idx = np.asarray(self.index, dtype=int)
        _, first = np.unique(idx, return_index=True)
        table = np.full(idx.max() + 1 if idx.size else 0, np.nan)
        table[idx[first]] = np.asarray(self.difficulty, dtype=float)[first]
        return table


@dataclass(frozen=True)
class LCRows:
    """One model's annotated rows, in the order of its annotations file.

    ``preference`` in the official [1, 2] encoding (NaN = missing); lengths in characters (NaN = unknown: the row is
    predicted but not fitted); ``difficulty`` per row, or None for the GLM without that feature.
    """

    preference: ArrayLike
    len_baseline: ArrayLike
    len_model: ArrayLike
    difficulty: ArrayLike | None = None


@dataclass(frozen=True)
class LCResult:
    estimate: Estimate
    coef: dict[str, float]  # fitted weights, keyed like the official weights files
    C: float  # the inverse L1 strength chosen by cross-validation
    predicted: np.ndarray  # per row: win probability with the length term set to zero
    cv_loss: np.ndarray  # summed fold log-loss per candidate C
    meta: dict = field(default_factory=dict)
    boot: np.ndarray | None = None  # LC win rate (in %) of each bootstrap replicate, when intervals were asked for


def group_folds(n: int, n_splits: int) -> np.ndarray:
    """Fold of each row when every row is its own group, as scikit-learn's GroupKFold assigns equal-sized groups.

    GroupKFold hands the groups, largest first (a stable sort, reversed), to the lightest fold; with equal sizes that
    is a round robin starting from the last row.
    """
    return (n - 1 - np.arange(n)) % n_splits


def _glm_name(has_difficulty: bool, has_gamed: bool) -> str:
    if has_gamed:
        return "length_controlled_v1"
    return "length_controlled_noreg" if has_difficulty else "length_controlled_minimal"


# --------------------------------------------------------------------------------------------------------------------
# liblinear's L1-regularised logistic regression (newGLMNET; Yuan, Ho & Lin 2012), batched.
#
# Reproducing the official numbers means taking liblinear's steps: its shrinking rules, its coordinate order (drawn
# from the same Mersenne Twister seeds scikit-learn hands it), its loose inner tolerances and its line search. Each
# soft-labelled row is summed once instead of as two weighted copies, and sums over rows use the 3x3 Hessian instead of
# liblinear's running row products; both change only rounding.

_NU = 1e-12  # diagonal shift of the Newton Hessian
_SIGMA = 0.01  # sufficient-decrease constant of the line search
_MAX_LINESEARCH = 20  # halvings before liblinear gives a step up
_MAX_INNER = 1000  # coordinate-descent passes per Newton step
_INT_MAX = 2**31 - 1
_BLOCK = 16  # rows per partial product in the line search
_PB = 64  # problems per pass over the row arrays: the temporaries of a pass stay in cache
# bounded_rand_int(b) redraws while the low 32 bits of draw * b fall below 2^32 mod b (b <= number of features).
_REJECT_BELOW = [0] + [(1 << 32) % b for b in range(1, 9)]


class _Draws:
    """std::mt19937 streams, one per seed: as Python ints for the scalar coordinate descent, and as one array for the
    batched one (:meth:`table`)."""

    def __init__(self, seeds: Sequence[int]):
        # RandomState's legacy integer seeding is the reference mt19937 initialisation, and a full-range uint32
        # draw is the raw generator output; successive calls continue the stream.
        self._rs = [np.random.RandomState(s) for s in seeds]
        self.raw: list[list[int]] = [[] for _ in seeds]
        self._table: np.ndarray | None = None

    def grow(self, sid: int) -> None:
        self.raw[sid].extend(self._rs[sid].randint(0, 2**32, size=4096, dtype=np.uint32).tolist())
        self._table = None

    def table(self, length: int) -> np.ndarray:
        """The streams as one (seeds, at least ``length``) uint64 array, for the batched coordinate descent."""
        if self._table is None or self._table.shape[1] < length:
            for sid, r in enumerate(self.raw):
                while len(r) < length:
                    self.grow(sid)
            n = min(len(r) for r in self.raw)
            self._table = np.array([r[:n] for r in self.raw], dtype=np.uint64)
        return self._table


def _liblinear_seeds(random_state: int, n: int) -> list[int]:
    """Seeds scikit-learn hands liblinear for the i-th strength of a path started from ``random_state``."""
    rs = np.random.RandomState(random_state)
    return [int(rs.randint(_INT_MAX)) for _ in range(n)]


def _violation(g: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimality violation of |w|_1 + loss per coordinate, and the gradient shifted by the subgradients +1 / -1."""
    gp, gn = g + 1, g - 1
    at_zero = np.where(gp < 0, -gp, np.where(gn > 0, gn, 0.0))
    return np.where(w > 0, np.abs(gp), np.where(w < 0, np.abs(gn), at_zero)), gp, gn


def _swap(index: np.ndarray, rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    ia, ib = index[rows, a].copy(), index[rows, b].copy()
    index[rows, a], index[rows, b] = ib, ia


def _coordinate_descent(i, k, idx, w, wpd, u, grad, hx, hdiag, active, n_rows, stop, draws, sid, ptr,
                        state=None):
    """liblinear's inner loop for problem i: passes of coordinate descent on the quadratic model, in an order
    shuffled each pass by scikit-learn's bounded_rand_int (Lemire's method), with shrinking, until the summed
    violation falls to ``stop``. Updates idx, wpd and u (the step) in place; returns (passes, ptr, moved).
    ``state`` (active set size, last pass's largest violation, passes, moved) continues a loop that
    :func:`_coordinate_descent_batch` started.

    This is the loop for a few problems, on plain Python floats: the arrays are flat lists over the problems, idx,
    w, wpd, grad, hdiag with k entries per problem, u with 3, hx with k rows of 3 (zero-padded for two features).
    """
    o, o3, oh = i * k, i * 3, i * k * 3
    raw = draws.raw[sid]
    q_active, q_gmax_old, n_pass, moved = (active, math.inf, 0, False) if state is None else state
    while n_pass < _MAX_INNER:
        for j in range(q_active):
            bound = q_active - j
            while True:
                if ptr >= len(raw):
                    draws.grow(sid)
                prod = raw[ptr] * bound
                ptr += 1
                if prod & 0xFFFFFFFF >= _REJECT_BELOW[bound]:
                    break
            r = o + j + (prod >> 32)
            idx[r], idx[o + j] = idx[o + j], idx[r]
        q_gmax = q_gnorm1 = 0.0
        thr = q_gmax_old / n_rows
        s = 0
        while s < q_active:
            j = idx[o + s]
            c, h = o + j, oh + 3 * j
            wj = wpd[c]
            g = grad[c] + (wj - w[c]) * _NU + hx[h] * u[o3] + hx[h + 1] * u[o3 + 1] + hx[h + 2] * u[o3 + 2]
            gp, gn = g + 1, g - 1
            if wj == 0:
                if gp < 0:
                    viol = -gp
                elif gn > 0:
                    viol = gn
                elif gp > thr and gn < -thr:  # well inside the subgradient: leave the active set
                    q_active -= 1
                    idx[o + s], idx[o + q_active] = idx[o + q_active], idx[o + s]
                    continue
                else:
                    viol = 0.0
            else:
                viol = abs(gp) if wj > 0 else abs(gn)
            hj = hdiag[c]
            z = -gp / hj if gp < hj * wj else (-gn / hj if gn > hj * wj else -wj)
            s += 1
            if abs(z) < 1e-12:
                continue
            z = -10.0 if z < -10.0 else (10.0 if z > 10.0 else z)
            moved = True
            if viol > q_gmax:
                q_gmax = viol
            q_gnorm1 += viol
            wpd[c] += z
            u[o3 + j] += z
        n_pass += 1
        if q_gnorm1 <= stop:
            if q_active == active:
                break
            q_active, q_gmax_old = active, math.inf  # converged on the shrunk set: check the full set once more
            continue
        q_gmax_old = q_gmax
    return n_pass, ptr, moved


# Chunk fits running at once on threads: each holds about 40 MB of working arrays (16 models of 805 rows), so more
# would raise the peak memory of a leaderboard above that of fitting one model at a time with scikit-learn.
_FITS_AT_ONCE = 2
_BATCH_MIN = 24  # below this many problems still iterating, a pass on Python floats is cheaper than a numpy one
_LOW32 = np.uint64(0xFFFFFFFF)
_REJECT = np.array(_REJECT_BELOW, dtype=np.uint64)


def _coordinate_descent_batch(index, w, wpd, grad, hx, hdiag, active, n_rows, stop, seed, ptr, draws):
    """:func:`_coordinate_descent` for every problem at once, pass by pass: each pass shuffles (the same draws) and
    sweeps the active coordinates of all problems still iterating with numpy, in the same floating-point operations
    in the same order, so the results are those of the scalar loop to the bit. The last few problems (the hard
    ones, up to 1000 passes) finish on the scalar loop, where a pass costs less than numpy's per-call overhead.

    Updates index, wpd and ptr in place; returns (passes, moved, u) per problem, u (m, k) the step taken.
    """
    m, k = w.shape
    n_pass = np.zeros(m, dtype=np.int64)
    moved = np.zeros(m, dtype=bool)
    u_out = np.zeros((m, 3))
    # Working state of the problems still iterating (``ids``), compacted as problems finish.
    ids = np.arange(m)
    idx, wp, u = index.copy(), wpd.copy(), np.zeros((m, 3))
    H = np.zeros((m, k, 3))
    H[:, :, :k] = hx
    w0, g0, hd, act, rows_n, stp = w, grad, hdiag, active, n_rows, stop
    sd, pt = seed.copy(), ptr.copy()
    qa, gmax_old = active.copy(), np.full(m, math.inf)
    npass, mv = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=bool)

    def store(sel: np.ndarray) -> None:
        at = ids[sel]
        index[at], wpd[at], u_out[at], ptr[at] = idx[sel], wp[sel], u[sel], pt[sel]
        n_pass[at], moved[at] = npass[sel], mv[sel]

    while ids.size >= _BATCH_MIN:
        r = ids.size
        # The order of this pass: liblinear swaps position j with a draw from [j, active).
        for j in range(k):
            sel = np.flatnonzero(qa > j)
            if not sel.size:
                break
            bound = (qa[sel] - j).astype(np.uint64)
            p = pt[sel]
            prod = draws.table(int(p.max()) + 1)[sd[sel], p] * bound
            pt[sel] += 1
            rej = np.flatnonzero((prod & _LOW32) < _REJECT[bound])
            while rej.size:  # Lemire's rejection: draw again
                again = sel[rej]
                prod[rej] = draws.table(int(pt[again].max()) + 1)[sd[again], pt[again]] * bound[rej]
                pt[again] += 1
                rej = rej[(prod[rej] & _LOW32) < _REJECT[bound[rej]]]
            pick = j + (prod >> np.uint64(32)).astype(np.int64)
            a = idx[sel, j]
            idx[sel, j] = idx[sel, pick]
            idx[sel, pick] = a
        # The sweep: each step moves every live problem one position on or shrinks its active set by one.
        s = np.zeros(r, dtype=np.int64)
        thr = gmax_old / rows_n
        q_gmax, q_gnorm1 = np.zeros(r), np.zeros(r)
        for _ in range(k):
            live = np.flatnonzero(s < qa)
            if not live.size:
                break
            sl = s[live]
            j = idx[live, sl]
            wj = wp[live, j]
            hrow, ul = H[live, j], u[live]
            g = (g0[live, j] + (wj - w0[live, j]) * _NU + hrow[:, 0] * ul[:, 0] + hrow[:, 1] * ul[:, 1]
                 + hrow[:, 2] * ul[:, 2])
            gp, gn = g + 1, g - 1
            zero = wj == 0
            t = thr[live]
            shrink = zero & ~(gp < 0) & ~(gn > 0) & (gp > t) & (gn < -t)
            if shrink.any():  # well inside the subgradient: leave the active set
                sh = live[shrink]
                qa[sh] -= 1
                a, last = idx[sh, s[sh]], qa[sh]
                idx[sh, s[sh]] = idx[sh, last]
                idx[sh, last] = a
                keep = ~shrink
                live, j, wj, gp, gn, zero = live[keep], j[keep], wj[keep], gp[keep], gn[keep], zero[keep]
            viol = np.where(zero, np.where(gp < 0, -gp, np.where(gn > 0, gn, 0.0)),
                            np.where(wj > 0, np.abs(gp), np.abs(gn)))
            hj = hd[live, j]
            hw = hj * wj
            z = np.where(gp < hw, -gp / hj, np.where(gn > hw, -gn / hj, -wj))
            s[live] += 1
            step = ~(np.abs(z) < 1e-12)
            live, j, viol, z = live[step], j[step], viol[step], z[step]
            z = np.where(z < -10.0, -10.0, np.where(z > 10.0, 10.0, z))
            mv[live] = True
            q_gmax[live] = np.where(viol > q_gmax[live], viol, q_gmax[live])
            q_gnorm1[live] += viol
            wp[live, j] += z
            u[live, j] += z
        npass += 1
        conv = q_gnorm1 <= stp
        full = qa == act
        done = (conv & full) | (npass >= _MAX_INNER)
        recheck = conv & ~done  # converged on the shrunk set: check the full set once more
        qa = np.where(recheck, act, qa)
        gmax_old = np.where(recheck, math.inf, np.where(conv, gmax_old, q_gmax))
        if done.any():
            store(done)
            keep = np.flatnonzero(~done)
            ids, idx, wp, u, H, w0, g0, hd, act, rows_n, stp, sd, pt, qa, gmax_old, npass, mv = (
                x[keep] for x in cast(_Arrays, (ids, idx, wp, u, H, w0, g0, hd, act, rows_n, stp, sd, pt, qa,
                                                 gmax_old, npass, mv)))

    if ids.size:
        r = ids.size
        idx_l, w_l, wpd_l = idx.ravel().tolist(), w0.ravel().tolist(), wp.ravel().tolist()
        grad_l, hdiag_l, u_l, hx_l = g0.ravel().tolist(), hd.ravel().tolist(), u.ravel().tolist(), H.ravel().tolist()
        for i in range(r):
            npass[i], pt[i], mv[i] = _coordinate_descent(
                i, k, idx_l, w_l, wpd_l, u_l, grad_l, hx_l, hdiag_l, int(act[i]), int(rows_n[i]), float(stp[i]),
                draws, int(sd[i]), int(pt[i]),
                state=(int(qa[i]), float(gmax_old[i]), int(npass[i]), bool(mv[i])),
            )
        idx, wp, u = np.array(idx_l).reshape(r, k), np.array(wpd_l).reshape(r, k), np.array(u_l).reshape(r, 3)
        store(np.arange(r))
    return n_pass, moved, u_out[:, :k]


def _by_group(A: np.ndarray, X: np.ndarray, gid: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A[i] @ X[gid[i]] for every row i of A, with the rows of A sorted by group."""
    out = np.empty((A.shape[0], X.shape[-1])) if out is None else out
    bounds = [0, *(np.flatnonzero(gid[1:] != gid[:-1]) + 1).tolist(), gid.size]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        np.matmul(A[a:b], X[gid[a]], out=out[a:b])
    return out


def _block_weights(s: np.ndarray, segments: Sequence[tuple[int, int]] | None) -> np.ndarray | None:
    """Weight of each block of rows used by :func:`_weighted_log_sum`, or None if a block mixes weights.

    Within a segment of L rows, block j holds rows j, j + L/16, j + 2 L/16, ... so that products run over
    contiguous memory.
    """
    if segments is None:
        return None
    parts = []
    for a, b in segments:
        if (b - a) % _BLOCK:
            return None
        blocks = s[:, a:b].reshape(s.shape[0], _BLOCK, (b - a) // _BLOCK)
        top = blocks.max(1)
        if not ((blocks == top[:, None]) | (blocks == 0)).all():
            return None
        parts.append(top)
    return np.concatenate(parts, axis=1)


def _weighted_log_sum(ratio, s, sb, segments, gid) -> np.ndarray:
    """sum_n s[gid, n] * log(ratio[:, n]) per problem.

    Logarithms dominate the line search; where a block of rows shares one weight, the log of the block's product
    replaces the sum of its logs (rounding of the same order, 16 times fewer logs). Problems whose product
    overflows or underflows take the plain sum.
    """
    if sb is None:
        return _by_group(np.log(ratio), s[..., None], gid)[:, 0]
    m = ratio.shape[0]
    prods = [ratio[:, a:b].reshape(m, _BLOCK, (b - a) // _BLOCK).prod(axis=1) for a, b in segments]
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        out = _by_group(np.log(np.concatenate(prods, axis=1)), sb[..., None], gid)[:, 0]
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = _by_group(np.log(ratio[bad]), s[..., None], gid[bad])[:, 0]
    return out


def _rows_of(e: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """e[rows]: a view when the rows are consecutive (the usual case: problems keep their order), else a copy."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1:
        return e[rows[0] : rows[-1] + 1]
    return np.take(e, rows, axis=0, out=out[: rows.size], mode="clip")


def _curvature(e, erow, Xs, XXs, gid, scratch) -> tuple[np.ndarray, np.ndarray]:
    """Per problem, sum_n s x / (1 + e) and sum_n s (x x')_upper e / (1 + e)^2 over its group's rows, where
    e = exp(x.w) is row ``erow`` of ``e``."""
    m = gid.size
    g, h = np.empty((m, Xs.shape[-1])), np.empty((m, XXs.shape[-1]))
    for a in range(0, m, _PB):
        b = min(a + _PB, m)
        eb = _rows_of(e, erow[a:b], scratch[0])
        tt = np.add(eb, 1, out=scratch[1, : b - a])
        np.divide(1, tt, out=tt)
        _by_group(tt, Xs, gid[a:b], out=g[a:b])
        tt *= tt
        tt *= eb
        _by_group(tt, XXs, gid[a:b], out=h[a:b])
    return g, h


def _try_step(u, base, C, e, erow, Xt, s, sb, segments, gid, scratch) -> np.ndarray:
    """liblinear's sufficient-decrease test of the step u for each problem; where it passes, e takes exp(x.(w+u)).

    ``base`` holds the terms of the test that do not depend on the rows; the rows add C sum_n s log of liblinear's
    ratio (1 + e_new) / (exp(x.u) + e_new). Returns whether each problem accepts its step.
    """
    m = gid.size
    ok = np.empty(m, dtype=bool)
    for a in range(0, m, _PB):
        b, n = min(a + _PB, m), min(_PB, m - a)
        eb = _rows_of(e, erow[a:b], scratch[0])
        ex = np.exp(_by_group(u[a:b], Xt, gid[a:b], out=scratch[1, :n]), out=scratch[1, :n])
        e_new = np.multiply(ex, eb, out=scratch[0, :n])
        ope = np.add(e_new, 1, out=scratch[2, :n])
        ex += e_new
        lsum = _weighted_log_sum(np.divide(ope, ex, out=ex), s, sb, segments, gid[a:b])
        okb = ok[a:b]
        np.less_equal(base[a:b] + C[a:b] * lsum, 0, out=okb)
        if okb.all() and eb.base is e:  # the usual case: consecutive rows, all steps taken
            eb[...] = e_new
        else:
            e[erow[a:b][okb]] = e_new[okb]
    return ok


_Arrays = tuple[np.ndarray, ...]


def _fit_l1_logistic(
    X: np.ndarray,
    p: np.ndarray,
    s: np.ndarray,
    gid: np.ndarray,
    C: np.ndarray,
    seed: np.ndarray,
    draws: _Draws,
    *,
    segments: Sequence[tuple[int, int]] | None = None,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> np.ndarray:
    """Minimise |w|_1 + C sum_n s_n (softplus(x_n.w) - p_n x_n.w) for many problems, with liblinear's steps.

    X (G, N, k) holds the rows of each group (padding rows are zero with weight s = 0), p (G, N) the soft labels.
    Problem i fits group ``gid[i]`` (sorted) with inverse penalty ``C[i]`` and random stream ``seed[i]`` of ``draws``.
    ``segments`` are column ranges (multiples of 16 rows) of constant weight apart from padding. Returns W (M, k).
    Problems leave the working arrays as they finish.
    """
    M, k = gid.size, X.shape[-1]
    N = s.shape[1]
    Xt = np.ascontiguousarray(X.transpose(0, 2, 1))
    iu = np.triu_indices(k)
    Xs = s[..., None] * X
    XXs = s[..., None] * (X[..., :, None] * X[..., None, :])[..., iu[0], iu[1]]
    sb = _block_weights(s, segments)
    # The weights of problem i are C[i] times its group's: sums over rows use the group's weighted rows, then scale.
    # liblinear drops zero-weight copies of rows and scales tol by min(#positive, #negative) / #rows of the rest.
    ps, ns = p * s, (1 - p) * s
    n_pos = (ps > 0).sum(-1)[gid]
    n_neg = (ns > 0).sum(-1)[gid]
    n_rows = np.maximum(n_pos + n_neg, 1)
    eps = tol * np.maximum(np.minimum(n_pos, n_neg), 1) / n_rows
    xjneg = (ns[..., None] * X).sum(1)[gid] * C[:, None]

    W = np.zeros((M, k))
    ids = np.arange(M)  # positions in W of the problems still running
    w, wpd, w_norm = np.zeros((M, k)), np.zeros((M, k)), np.zeros(M)
    # exp(x.w) of every row of every problem, allocated at the first step (before it, all ones) and never moved:
    # problem i owns row erow[i]. Passes over it go block by block through a small scratch that stays in cache.
    e = erow = scratch = None
    index = np.tile(np.arange(k), (M, 1))
    ptr = np.zeros(M, dtype=np.int64)
    gmax_old = np.full(M, np.inf)
    gnorm1_init = np.zeros(M)
    inner_eps = np.ones(M)
    no_change = np.zeros(M, dtype=np.int64)
    n_newton = np.zeros(M, dtype=np.int64)

    while True:
        m = ids.size
        rows = np.arange(m)
        if e is None:  # w = 0: every row has probability 1/2
            grad = xjneg - C[:, None] * 0.5 * Xs.sum(1)[gid]
            hu = C[:, None] * 0.25 * XXs.sum(1)[gid]
        else:
            g_sum, h_sum = _curvature(e, erow, Xs, XXs, gid, scratch)
            grad = xjneg - C[:, None] * g_sum
            hu = C[:, None] * h_sum
        hx = np.empty((m, k, k))
        hx[:, iu[0], iu[1]] = hu
        hx[:, iu[1], iu[0]] = hu
        hdiag = _NU + np.einsum("mii->mi", hx)

        # Outer pass: violations; coordinates at zero well inside the subgradient leave the active set.
        viol, gp, gn = _violation(grad, w)
        active = np.full(m, k)
        pos = np.zeros(m, dtype=np.int64)
        gmax_new, gnorm1 = np.zeros(m), np.zeros(m)
        thr = gmax_old / n_rows
        for _ in range(2 * k):
            go = pos < active
            if not go.any():
                break
            j = index[rows, np.minimum(pos, k - 1)]
            vj, gpj, gnj = viol[rows, j], gp[rows, j], gn[rows, j]
            shrink = go & (w[rows, j] == 0) & (vj == 0) & (gpj > thr) & (gnj < -thr)
            active -= shrink
            _swap(index, rows[shrink], pos[shrink], active[shrink])
            upd = go & ~shrink
            gmax_new = np.where(upd, np.maximum(gmax_new, vj), gmax_new)
            gnorm1 = np.where(upd, gnorm1 + vj, gnorm1)
            pos += upd
        gnorm1_init = np.where(n_newton == 0, gnorm1, gnorm1_init)
        done = (gnorm1 <= eps * gnorm1_init) | (no_change >= 10) | (n_newton >= max_iter)
        if done.any():
            W[ids[done]] = w[done]
            keep = np.flatnonzero(~done)
            if not keep.size:
                return W
            if erow is not None:
                erow = erow[keep]
            # The casts only give the arrays one common type for the generator (they do nothing at run time).
            ids, gid, C, w, wpd, w_norm, xjneg, index, ptr, seed, n_rows, eps = (
                a[keep]
                for a in cast(_Arrays, (ids, gid, C, w, wpd, w_norm, xjneg, index, ptr, seed, n_rows, eps))
            )
            gmax_old, gnorm1_init, inner_eps, no_change, n_newton, grad, hx, hdiag, active, gmax_new = (
                a[keep]
                for a in cast(
                    _Arrays, (gmax_old, gnorm1_init, inner_eps, no_change, n_newton, grad, hx, hdiag, active, gmax_new)
                )
            )
            m = keep.size
            rows = np.arange(m)
        if e is None:
            e, erow, scratch = np.ones((m, N)), np.arange(m), np.empty((3, min(_PB, m), N))
        assert erow is not None  # set together with e at the first step, and only ever subset after
        no_change += 1

        # Inner loop: coordinate descent on the quadratic model in random order, solved loosely, per problem.
        n_inner, moved, u = _coordinate_descent_batch(index, w, wpd, grad, hx, hdiag, active, n_rows,
                                                      inner_eps * gnorm1_init, seed, ptr, draws)
        no_change[moved] = 0

        # Line search: halve the step until the objective decreases enough.
        w_norm_new = np.abs(wpd).sum(-1)
        delta = (grad * (wpd - w)).sum(-1) + w_norm_new - w_norm
        negsum = (u * xjneg).sum(-1)
        search = rows
        for _ in range(_MAX_LINESEARCH):
            base = w_norm_new[search] - w_norm[search] + negsum[search] - _SIGMA * delta[search]
            sub = slice(None) if search.size == m else search
            ok = _try_step(u[sub], base, C[sub], e, erow[sub], Xt, s, sb, segments, gid[sub], scratch)
            acc = search[ok]
            w[acc] = wpd[acc]
            w_norm[acc] = w_norm_new[acc]
            search = search[~ok]
            if not search.size:
                break
            wpd[search] = (w[search] + wpd[search]) * 0.5
            w_norm_new[search] = np.abs(wpd[search]).sum(-1)
            delta[search] *= 0.5
            negsum[search] *= 0.5
            u[search] *= 0.5  # liblinear halves X u; halving is exact, so X (u / 2) is the same number
        if search.size:  # the step was given up: recompute exp(x.w) from w, as liblinear does
            e[erow[search]] = np.exp(_by_group(w[search], Xt, gid[search]))
        inner_eps = np.where(n_inner == 1, inner_eps * 0.25, inner_eps)
        n_newton += 1
        gmax_old = gmax_new


# --------------------------------------------------------------------------------------------------------------------
# Length-controlled win rate: the fit


def _design(rows: LCRows, with_difficulty: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels in [0, 1] and usable-row mask of one model, and its prediction features (length term 0)."""
    pref = clean_preference(rows.preference)
    delta = np.asarray(rows.len_baseline, dtype=float) - np.asarray(rows.len_model, dtype=float)
    n = pref.size
    if delta.size != n:
        raise ValueError(f"{n} preferences but {delta.size} lengths")
    finite = np.isfinite(delta)
    sd = delta[finite].std(ddof=1) if finite.sum() > 1 else 0.0
    # Equal lengths everywhere leave no length signal: the term is zero rather than NaN.
    x_len = np.tanh(delta / sd) if sd > 0 else np.where(finite, 0.0, np.nan)
    cols = [x_len]
    if with_difficulty:
        diff = np.asarray(rows.difficulty, dtype=float)
        if diff.size != n:
            raise ValueError(f"{n} preferences but {diff.size} difficulties")
        cols.append(diff)
    cols.append(np.ones(n))
    X = np.column_stack(cols)
    usable = ~np.isnan(pref) & np.isfinite(X).all(1)
    X_test = X.copy()
    X_test[:, 0] = 0.0
    return X, pref - 1, usable, X_test


def _pack(X, p, s, groups: list[tuple[int, list[np.ndarray]]]):
    """Rows of each group, segment by segment (gamed rows, model rows), each segment zero-padded to a common length
    that is a multiple of the block size, so that every block of rows has a single weight."""
    lens = [-(-max(segs[i].size for _, segs in groups) // _BLOCK) * _BLOCK for i in range(len(groups[0][1]))]
    offs = np.r_[0, np.cumsum(lens)]
    Xo = np.zeros((len(groups), offs[-1], X.shape[-1]))
    po = np.zeros((len(groups), offs[-1]))
    so = np.zeros((len(groups), offs[-1]))
    for g, (b, segs) in enumerate(groups):
        for o, idx in zip(offs[:-1], segs, strict=True):
            Xo[g, o : o + idx.size], po[g, o : o + idx.size], so[g, o : o + idx.size] = X[b, idx], p[b, idx], s[b, idx]
    return Xo, po, so, [(int(a), int(b)) for a, b in zip(offs[:-1], offs[1:], strict=True)]


def length_controlled_win_rates(
    rows: Iterable[LCRows],
    gamed: GamedRows | None = None,
    *,
    lam: float = 0.2,
    n_splits: int = 5,
    Cs: ArrayLike = CS,
    tol: float = 1e-4,
    random_state: int = 123,
    chunk: int = 16,
    rounds: int = 0,
    seed: int = 0,
    level: float = 0.95,
    min_questions: int | None = None,
    min_outcomes: float | None = None,
    threads: int | None = None,
) -> list[LCResult]:
    """Length-controlled win rate (in %) of many models against one baseline, fitted together.

    With ``gamed`` this is the official ``length_controlled_v1`` GLM. Without it the fit has no pull toward the
    baseline (the official ``length_controlled_noreg``), and without difficulties also no difficulty feature
    (``length_controlled_minimal``). ``tol`` and ``random_state`` are the liblinear settings of the official fit.
    Every row, including those with a missing preference, is predicted and averaged, as in the official code; only
    usable rows are fitted. ``chunk`` models are solved at once (memory grows with it; more than 16 gains no speed).

    The official standard error (``se``, and ``meta["official_se"]``) is that of the mean of the per-row
    predictions: it ignores the uncertainty of the fitted weights, so it is not a sampling error (it is exactly 0 for
    the GLM without difficulties). With ``rounds > 0`` a question bootstrap adds a ``level`` percentile interval:
    each replicate resamples the model's rows with replacement (the gamed-baseline rows stay, as the fixed pull they
    are) and refits the GLM at the strength C chosen by the official cross-validation on the full data (held fixed:
    the CV is not rerun per replicate); see :func:`_lc_bootstrap`. Below ``min_questions`` (default
    :data:`LC_MIN_QUESTIONS`) fitted rows, or with fewer than ``min_outcomes`` (default :data:`LC_MIN_OUTCOMES`)
    expected wins or losses, no interval is claimed, ``se`` is None (the official value stays in the meta) and the
    estimate is marked unreliable, with the reason in ``meta["note"]``. The point estimate never depends on
    ``rounds``. Rows are used in the order given: sort them by a stable
    key first (the CV folds follow the row order, as in the official code).

    ``rows`` may be handed over one by one (an iterator): each chunk then starts fitting as soon as its models are
    all there, while the caller prepares the next ones.

    ``threads``: how many chunks and bootstraps run at once (default: the usable CPUs, at most a few, or
    ``LIONEVAL_THREADS``; see :func:`lioneval.stats.workers.worker_count`). The results are the same to the bit
    whatever it is: each chunk and each model's bootstrap computes exactly what it computes alone.
    """
    Cs = np.asarray(Cs, dtype=float)
    rule = {"min_questions": LC_MIN_QUESTIONS if min_questions is None else min_questions,
            "min_outcomes": LC_MIN_OUTCOMES if min_outcomes is None else min_outcomes}
    if isinstance(rows, Sequence):
        with_difficulty = all(r.difficulty is not None for r in rows)
        items: Iterator[LCRows] = iter(rows)
        tasks: int | None = -(-len(rows) // chunk) + (len(rows) if rounds > 0 else 0)
    else:  # handed over one by one: all with difficulties, or none
        rest = iter(rows)
        first = next(rest, None)
        if first is None:
            return []
        with_difficulty = first.difficulty is not None
        items, tasks = itertools.chain([first], rest), None
    if gamed is not None and not with_difficulty:
        raise ValueError("the gamed-baseline rows come with difficulties: give the difficulty of every model row")
    glm = _glm_name(with_difficulty, gamed is not None)
    if gamed is not None:
        pg = np.asarray(gamed.preference, dtype=float)
        Xg = np.column_stack(
            [np.tanh(np.asarray(gamed.std_delta_len, float)), np.asarray(gamed.difficulty, float), np.zeros(pg.size)]
        )
        keep = ~np.isnan(pg)
        Xg, pg = Xg[keep], pg[keep]
        sg = np.full(pg.size, lam / gamed.n_models)
    else:
        k = 3 if with_difficulty else 2
        Xg, pg, sg = np.zeros((0, k)), np.zeros(0), np.zeros(0)
    # Chunks of models and the models' bootstraps are independent tasks: on several threads (see
    # lioneval.stats.workers) each computes exactly what the serial loop does, and results are assembled by index.
    # A chunk starts fitting once its rows are all handed over (the caller prepares the next meanwhile), at most
    # _FITS_AT_ONCE at once; its bootstraps are queued as soon as its fit is done.
    workers = worker_count(threads, tasks)
    blas = _one_blas_thread() if workers > 1 or rounds > 0 else contextlib.nullcontext()
    if blas is None:  # BLAS cannot be held to one thread: threads of ours would each start its threads
        blas, workers = contextlib.nullcontext(), 1
    parts: list[list] = []
    fitted: list[list[LCResult]] = []
    boots: list[Future[LCResult]] = []
    with blas, Pool(workers) as pool:
        running: collections.deque[tuple[int, Future[list[LCResult]]]] = collections.deque()

        def collect() -> int:
            i, fit = running.popleft()
            fitted.append(fit.result())
            return i

        def bootstrap(i: int) -> None:
            if rounds > 0:
                # models with as many rows share one set of draws (and so stay paired): see shared_counts
                boots.extend(pool.submit(_with_interval, res, design, Xg, pg, sg, rounds, seed, level, rule)
                             for res, design in zip(fitted[i], parts[i], strict=True))

        def start() -> None:
            done = [collect() for _ in range(len(running) - _FITS_AT_ONCE + 1)]
            fit = pool.submit(_fit_chunk, parts[-1], Xg, pg, sg, Cs, n_splits, tol, random_state, glm)
            running.append((len(parts) - 1, fit))
            for i in done:  # queued after the fit: the longer tasks first
                bootstrap(i)

        for r in items:
            if tasks is None and (r.difficulty is None) == with_difficulty:
                raise ValueError("rows handed over one by one need the difficulty of every model's rows, or of none")
            if not parts or len(parts[-1]) == chunk:
                if parts:
                    start()
                parts.append([])
            parts[-1].append(_design(r, with_difficulty))
        if parts:
            start()
        while running:
            bootstrap(collect())
        results = [b.result() for b in boots] if rounds > 0 else [res for part in fitted for res in part]
    return results


def _fit_chunk(designs, Xg, pg, sg, Cs, n_splits, tol, random_state, glm) -> list[LCResult]:
    B, nC, k, ng = len(designs), Cs.size, Xg.shape[1], pg.size
    sizes = [ng + int(d[2].sum()) for d in designs]
    if min(sizes) < n_splits:
        raise ValueError(f"{min(sizes)} usable rows cannot be split into {n_splits} folds")
    N = max(sizes)
    X, p, s = np.zeros((B, N, k)), np.zeros((B, N)), np.zeros((B, N))
    fold = np.full((B, N), -1)
    for b, (Xm, ym, usable, _) in enumerate(designs):
        n = sizes[b]
        # The official row order: gamed rows first, then the model's usable rows; each row is its own CV group.
        X[b, :n] = np.vstack([Xg, Xm[usable]])
        p[b, :n] = np.concatenate([pg, ym[usable]])
        s[b, :n] = np.concatenate([sg, np.ones(n - ng)])
        fold[b, :n] = group_folds(n, n_splits)

    def segments(b: int, keep: np.ndarray) -> list[np.ndarray]:
        idx = np.flatnonzero(keep)
        return [idx[idx < ng], idx[idx >= ng]]

    # scikit-learn seeds liblinear from a fresh RandomState(random_state) for each fold's path and for the refit.
    draws = _Draws(_liblinear_seeds(random_state, nC))
    pairs = [(b, f) for b in range(B) for f in range(n_splits)]
    G = len(pairs)
    Xf, pf, sf, seg = _pack(X, p, s, [(b, segments(b, (fold[b] != f) & (fold[b] >= 0))) for b, f in pairs])
    gid, C, seed = np.repeat(np.arange(G), nC), np.tile(Cs, G), np.tile(np.arange(nC), G)
    W = _fit_l1_logistic(Xf, pf, sf, gid, C, seed, draws, segments=seg, tol=tol).reshape(G, nC, k)

    # The official CV score of a fold: the mean over its rows of weight * log-loss (both copies of a row alike).
    Xe, pe, se, _ = _pack(X, p, s, [(b, segments(b, fold[b] == f)) for b, f in pairs])
    n_test = np.array([(fold[b] == f).sum() for b, f in pairs])
    q = np.clip(_sigmoid(Xe @ W.transpose(0, 2, 1)), _EPS_PROBA, 1 - _EPS_PROBA)  # (G, rows, C)
    ce = -(pe[..., None] * np.log(q) + (1 - pe[..., None]) * np.log(1 - q))
    cv_loss = (np.einsum("gn,gnc->gc", se, ce) / n_test[:, None]).reshape(B, n_splits, nC).sum(1)
    best = cv_loss.argmin(axis=1)  # the first of equal scores, as argmax over the negated losses

    Xa, pa, sa, seg = _pack(X, p, s, [(b, segments(b, fold[b] >= 0)) for b in range(B)])
    Wf = _fit_l1_logistic(Xa, pa, sa, np.arange(B), Cs[best], np.zeros(B, dtype=int), draws, segments=seg, tol=tol)

    names = FEATURES if k == 3 else (FEATURES[0], FEATURES[2])
    out = []
    for b, (_, _, usable, X_test) in enumerate(designs):
        pred = _sigmoid(X_test @ Wf[b])
        se_b = _sem(pred)
        coef = {name: float(c) for name, c in zip(names, Wf[b], strict=True)}
        meta = {"glm": glm, "C": float(Cs[best[b]]), "coef": coef, "n_fit": int(usable.sum()), "n_gamed": ng,
                "official_se": None if se_b is None else 100 * se_b}
        est = Estimate(
            value=float(100 * pred.mean()),
            se=None if se_b is None else 100 * se_b,
            n=int(pred.size),
            method="glm-lc",
            meta=meta,
        )
        out.append(LCResult(est, coef, float(Cs[best[b]]), pred, cv_loss[b], {"glm": glm}))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Length-controlled win rate: question bootstrap
#
# A replicate draws the model's rows (instructions) with replacement and refits the GLM: the same features (the
# length term keeps the full-data sd of delta_len), the same gamed-baseline rows, the strength C the official CV chose
# on the full data. The refit is the minimiser of the L1-penalised weighted log-loss (to about 1e-5 points of LC win
# rate, see _STEP_TOL), found by proximal Newton steps taken for every replicate at once. liblinear's early stop
# (which the point estimate keeps, for parity) moves the LC win rate by 0.0008 points (median; at most 0.016) on the
# validation models, far below any interval's width.
#
# Cost: the replicates start at the full-data fit, where every row has the same probability in every replicate, so
# the gradient, the Hessian and the third derivative there are one product of the (replicates x rows) multiplicity
# matrix with per-row terms, and the first step is a third-order one (its error O(|d|^3), not Newton's O(|d|^2)).
# Later steps evaluate each replicate's rows in blocks that stay in cache; on the validation models one such pass
# leaves about 94% of the replicates with a step below the tolerance, and a second pass finishes the rest (1.06
# passes over the rows per replicate; 1.49 at a tolerance of 1e-4).

# When an LC interval is claimed (see claims_interval): at least LC_MIN_QUESTIONS fitted questions, and at least
# LC_MIN_OUTCOMES expected of the rarer outcome, n * min(LC, 100 - LC) / 100 (an LC near 0 or 100 leaves too few
# wins or losses for the resamples to show the tails: at 30-100 questions and LC 3-5%, intervals covered 0.56-0.85).
# `benchmarks/speed_alpaca.py --coverage` draws random n-question subsets (n = 30-300) of 12 validation models and
# checks the interval against the model's LC on all its questions: over the 10 models whose LC does not rest on
# gaming the judge, the intervals this rule claims covered it in 96% of 4,100 subsets (no cell of at least 20% claims
# below 0.887). For the two length-gaming models (NullModel, gpt4_gamed) the LC of a subset is itself biased by 1-2
# standard deviations (the gamed rows' fixed weight pulls harder on fewer questions), which no resampling interval
# can see: coverage 0.57-0.86 there.
LC_MIN_QUESTIONS = 50
LC_MIN_OUTCOMES = 10
# A replicate is done when no coordinate of its Newton step exceeds this; the step is still taken, and Newton's
# quadratic convergence (each step about 0.6 x the square of the last on the validation models) leaves an error
# near 1e-6 in the weights: on the 56 validation models, every replicate's LC win rate was within 1.2e-5 points of
# the one solved to a step below 1e-4 (the percentile bounds within 3e-6), far below the Monte Carlo error of 1000
# rounds.
_STEP_TOL = 1e-3
_MAX_NEWTON = 60
_ARMIJO = 1e-4
_PASS_BLOCK = 128  # replicates per block in a pass over the rows
_CD_SWEEPS = 500


def claims_interval(n_questions: int, lc: float, *, min_questions: int | None = None,
                    min_outcomes: float | None = None) -> bool:
    """Whether an LC interval is claimed for ``n_questions`` fitted questions and LC win rate ``lc`` (in %)."""
    min_questions = LC_MIN_QUESTIONS if min_questions is None else min_questions
    min_outcomes = LC_MIN_OUTCOMES if min_outcomes is None else min_outcomes
    return (n_questions >= min_questions and math.isfinite(lc)
            and n_questions * min(lc, 100 - lc) / 100 >= min_outcomes)


def _one_blas_thread() -> contextlib.AbstractContextManager | None:
    """BLAS on one thread while the bootstrap runs, where threadpoolctl is installed (None where it is not): its
    products are small (a block of replicates by the rows), threads gain nothing on them and, on a busy machine, make
    them several times slower. The models run on threads of their own instead (lioneval.stats.workers)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up only
        return None
    return threadpool_limits(1, user_api="blas")


def _upper(X: np.ndarray) -> np.ndarray:
    """Products x_i x_j (i <= j) of each row: the entries of x x' the Hessian needs."""
    iu = np.triu_indices(X.shape[1])
    return X[:, iu[0]] * X[:, iu[1]]


def _full(Hu: np.ndarray, k: int) -> np.ndarray:
    iu = np.triu_indices(k)
    H = np.empty((Hu.shape[0], k, k))
    H[:, iu[0], iu[1]] = Hu
    H[:, iu[1], iu[0]] = Hu
    return H


def _cd_subproblem(g: np.ndarray, H: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """argmin_v g.(v - w) + (v - w)'H(v - w)/2 + lam |v|_1 per row, by cyclic coordinate descent (k <= 3)."""
    v = w.copy()
    for _ in range(_CD_SWEEPS):
        before = v.copy()
        for j in range(w.shape[1]):
            gj = g[:, j] + np.einsum("mi,mi->m", H[:, j, :], v - w)
            hj = H[:, j, j]
            u = v[:, j] - gj / hj
            v[:, j] = np.sign(u) * np.maximum(np.abs(u) - lam / hj, 0.0)
        if np.abs(v - before).max(initial=0.0) <= 1e-15 * (1.0 + np.abs(v).max(initial=0.0)):
            break
    return v


def _newton_direction(g: np.ndarray, H: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """Proximal Newton direction of every replicate: d minimising g.d + d'Hd/2 + lam |w + d|_1."""
    k = w.shape[1]
    Hr = H + _NU * np.eye(k)
    with np.errstate(all="ignore"):
        # Usually no coordinate sits at zero: guess the signs from the unpenalised step and keep the solution if
        # its signs agree (then it satisfies the optimality conditions exactly); the rest take coordinate descent.
        s = np.sign(w - np.linalg.solve(Hr, g[..., None])[..., 0])
        v = w - np.linalg.solve(Hr, (g + lam * s)[..., None])[..., 0]
    bad = ~((np.sign(v) == s) & (s != 0)).all(axis=1)
    if bad.any():
        with np.errstate(all="ignore"):
            v[bad] = _cd_subproblem(g[bad], Hr[bad], w[bad], lam)
    return v - w


def _lc_pass(w, Wm, model, gamed, base_g, objective: bool = False):
    """Gradient and Hessian (upper entries) of sum_n W_n (softplus(x_n.w) - p_n x_n.w) at each row of w, and with
    ``objective`` the sum itself without its linear part. The model's rows carry one weight per replicate (the rows
    of ``Wm``), the gamed rows one weight shared by all (folded into their feature rows). ``model`` = (x, x x
    products), ``gamed`` = (x, s x, s x x products, s, features, products), one row per feature or product that is
    not 0 on every gamed row (the last two give their indexes); ``base_g`` = sum W (1 - p) x.

    Sums over rows are matrix-vector products, one per feature: unlike thin matrix products they run at the same
    speed whatever the BLAS threading does on a busy machine.
    """
    m = w.shape[0]
    XT, XXT = model
    GT, sGT, sGGT, s, gc, guc = gamed
    F, g, Hu = np.zeros(m), base_g.copy(), np.zeros((m, XXT.shape[0]))
    rows = min(m, _PASS_BLOCK)
    # Scratch reused block after block: fresh arrays of this size each cost page faults.
    bufs = {n: (np.empty((rows, n)), np.empty((rows, n)), np.empty((rows, n))) for n in {XT.shape[1], GT.shape[1]}}
    for a in range(0, m, _PASS_BLOCK):
        b = min(a + _PASS_BLOCK, m)
        wb = w[a:b]
        for T, TT, W in ((XT, XXT, Wm[a:b]), (sGT, sGGT, None)):
            if not T.shape[1]:
                continue
            z, wq, tmp = (buf[: b - a] for buf in bufs[T.shape[1]])
            with np.errstate(over="ignore", invalid="ignore"):
                np.exp(np.matmul(wb, XT, out=z) if W is not None else np.matmul(wb[:, gc], GT, out=z), out=z)
                if objective:
                    np.log1p(z, out=tmp)
                    F[a:b] += np.einsum("mn,mn->m", W, tmp) if W is not None else tmp @ s
                q = np.divide(1.0, np.add(z, 1.0, out=z), out=z)  # 1 - sigma(x.w)
                if W is not None:
                    q = np.multiply(W, q, out=wq)  # from here on the row weights are in q
                wqq = np.subtract(q, np.multiply(q, z, out=tmp), out=tmp)  # W sigma (1 - sigma)
                if W is not None:
                    g[a:b] -= q @ T.T
                    Hu[a:b] += wqq @ TT.T
                else:  # only the features the gamed rows have (their model indicator is 0: its terms add 0)
                    g[a:b, gc] -= q @ T.T
                    Hu[a:b, guc] += wqq @ TT.T
    return (F, g, Hu) if objective else (g, Hu)


def _cubic(X: np.ndarray) -> np.ndarray:
    """Products x_i x_j x_l (i <= j <= l) of each row: the entries of the third derivative's tensor."""
    return np.stack([X[:, i] * X[:, j] * X[:, m] for i, j, m in _triples(X.shape[1])], axis=1)


def _triples(k: int) -> list[tuple[int, int, int]]:
    return [(i, j, m) for i in range(k) for j in range(i, k) for m in range(j, k)]


def _full3(T: np.ndarray, k: int) -> np.ndarray:
    """(R, k, k, k) symmetric tensors from their entries i <= j <= l."""
    out = np.empty((T.shape[0], k, k, k))
    for c, (i, j, m) in enumerate(_triples(k)):
        for a, b, e in {(i, j, m), (i, m, j), (j, i, m), (j, m, i), (m, i, j), (m, j, i)}:
            out[:, a, b, e] = T[:, c]
    return out


def _first_step(g: np.ndarray, H: np.ndarray, T: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """The first step of every replicate from the full-data fit, to third order: d solving
    g + H d + T[d, d] / 2 + lam * subgradient |w + d| = 0, by proximal Newton directions on the gradient corrected
    by the third-order term (each round gains an order of |d|). Its error is O(|d|^3) where Newton's is O(|d|^2), so
    one pass over the rows usually leaves a step below the tolerance."""
    d = _newton_direction(g, H, w, lam)
    for _ in range(2):
        d = _newton_direction(g + 0.5 * np.einsum("rijl,rj,rl->ri", T, d, d), H, w, lam)
    return d


def _merit(g: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """Largest entry of the minimum-norm subgradient of the penalised objective (0 exactly at the optimum)."""
    r = np.where(w != 0, g + lam * np.sign(w), np.sign(g) * np.maximum(np.abs(g) - lam, 0.0))
    return np.abs(r).max(axis=1)


def _row_sums(W: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """W @ cols.T, one matrix-vector product per row of ``cols`` and block of rows of W (see :func:`_lc_pass`: on a
    busy machine a threaded product over all of W can take 30 times longer than these)."""
    out = np.zeros((W.shape[0], cols.shape[0]))
    if cols.shape[1]:
        for a in range(0, W.shape[0], _PASS_BLOCK):
            for j, c in enumerate(cols):
                out[a : a + _PASS_BLOCK, j] = W[a : a + _PASS_BLOCK] @ c
    return out


def _row_products(W: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """W @ cols.T as one product per block of rows of W: for the bootstrap, whose BLAS runs on one thread (see
    _one_blas_thread), where one pass over W for many columns beats a matrix-vector product per column."""
    out = np.empty((W.shape[0], cols.shape[0]))
    colsT = np.ascontiguousarray(cols.T)
    for a in range(0, W.shape[0], _PASS_BLOCK):
        np.matmul(W[a : a + _PASS_BLOCK], colsT, out=out[a : a + _PASS_BLOCK])
    return out


def _sigmoid(z: ArrayLike) -> np.ndarray:
    """1 / (1 + exp(-z)), as scipy.special.expit computes it (importing scipy took half a second of a CLI's start)."""
    with np.errstate(over="ignore"):
        e = np.exp(-np.asarray(z, dtype=float))
    return np.divide(1.0, np.add(e, 1.0, out=e), out=e)


def _lc_bootstrap(design, w_hat: np.ndarray, C: float, Xg, pg, sg, counts: np.ndarray) -> tuple[np.ndarray, dict]:
    """LC win rate (in %) of each replicate, given the multiplicities ``counts`` (rounds, rows) of the model's rows.

    Full Newton steps are taken while they shrink the optimality violation (:func:`_merit`); a step that does not is
    cut back by an Armijo line search on the objective, for that replicate alone.
    """
    X_m, y_m, usable, X_test = design
    n, k = X_m.shape
    R = counts.shape[0]
    Xm = np.where(usable[:, None], X_m, 0.0)
    pm = np.where(usable, y_m, 0.0)
    Wm = np.multiply(counts, usable, dtype=float)
    model = (np.ascontiguousarray(Xm.T), np.ascontiguousarray(_upper(Xm).T))
    Gu = _upper(Xg)
    # Features that are 0 on every gamed row (the model indicator) add exactly 0 to the gamed rows' terms: each pass
    # leaves them out (fewer products over the gamed rows; the numbers are the same to the bit on the validation set).
    gc, guc = np.flatnonzero((Xg != 0).any(axis=0)), np.flatnonzero((Gu != 0).any(axis=0))
    gamed = (np.ascontiguousarray(Xg[:, gc].T), np.ascontiguousarray((sg[:, None] * Xg[:, gc]).T),
             np.ascontiguousarray((sg[:, None] * Gu[:, guc]).T), sg, gc, guc)
    lam = 1.0 / C
    # At the full-data fit every row has the same probability in every replicate: the first evaluation is products,
    # and so is the third derivative there, which makes the first step a third-order one (see _first_step). All
    # the per-row terms go through one product with the multiplicities.
    sm, sgm = _sigmoid(Xm @ w_hat), _sigmoid(Xg @ w_hat)
    dm, dgm = sm * (1 - sm), sgm * (1 - sgm)
    terms = [pm * model[0], model[0], (sm - pm) * model[0], dm * model[1], (dm * (1 - 2 * sm)) * _cubic(Xm).T]
    sums = np.split(_row_products(Wm, np.vstack(terms)), np.cumsum([t.shape[0] for t in terms])[:-1], axis=1)
    pwx = sums[0] + (sg * pg) @ Xg
    base_g = sums[1] + sg @ Xg - pwx
    g = sums[2] + (sg * (sgm - pg)) @ Xg
    H = _full(sums[3] + (sg * dgm) @ Gu, k)
    third = sums[4] + (sg * dgm * (1 - 2 * sgm)) @ _cubic(Xg)

    def objective(rows: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        F, g_, Hu = _lc_pass(at, Wm[rows], model, gamed, base_g[rows], objective=True)
        return F + lam * np.abs(at).sum(axis=1) - (pwx[rows] * at).sum(axis=1), g_, Hu

    w = np.tile(w_hat, (R, 1))
    first: np.ndarray | None = _first_step(g, H, _full3(third, k), w, lam)

    done = np.zeros(R, dtype=bool)
    stalled = np.zeros(R, dtype=bool)
    passes = searched = 0
    for _ in range(_MAX_NEWTON):
        act = np.flatnonzero(~done)
        if not act.size:
            break
        d = _newton_direction(g[act], H[act], w[act], lam) if first is None else first
        first = None
        small = ~(np.abs(d).max(axis=1) > _STEP_TOL)  # NaN directions end the replicate too
        fin = act[small]
        w[fin] += np.nan_to_num(d[small])
        done[fin] = True
        act, d = act[~small], d[~small]
        if not act.size:
            break
        trial = w[act] + d
        gn, Hn = _lc_pass(trial, Wm[act], model, gamed, base_g[act])
        passes += 1
        ok = _merit(gn, trial, lam) < _merit(g[act], w[act], lam)
        acc = act[ok]
        w[acc], g[acc], H[acc] = trial[ok], gn[ok], _full(Hn[ok], k)
        if ok.all():
            continue
        # The rest: backtrack along the Newton direction until the objective falls by a share of the decrease the
        # quadratic model predicts (Armijo).
        rows, d = act[~ok], d[~ok]
        searched += rows.size
        F0 = objective(rows, w[rows])[0]
        delta = (g[rows] * d).sum(axis=1) + lam * (np.abs(w[rows] + d).sum(axis=1) - np.abs(w[rows]).sum(axis=1))
        step = np.full(rows.size, 0.5)
        todo = np.arange(rows.size)
        for _ in range(30):
            r = rows[todo]
            trial = w[r] + step[todo, None] * d[todo]
            Fn, gn, Hn = objective(r, trial)
            passes += 1
            # A rounding allowance: near the optimum the decrease falls below the rounding of the objective.
            good = Fn - F0[todo] <= _ARMIJO * step[todo] * delta[todo] + 1e-12 * np.abs(F0[todo])
            acc = r[good]
            w[acc], g[acc], H[acc] = trial[good], gn[good], _full(Hn[good], k)
            todo = todo[~good]
            if not todo.size:
                break
            step[todo] *= 0.5
        if todo.size:  # no decrease along the Newton direction: the replicate stays where it is
            stalled[rows[todo]] = True
            done[rows[todo]] = True
    lc = np.empty(R)
    for a in range(0, R, _PASS_BLOCK):  # the mean prediction over each replicate's rows, length term 0
        b = min(a + _PASS_BLOCK, R)
        lc[a:b] = np.einsum("rn,rn->r", counts[a:b], _sigmoid(w[a:b] @ X_test.T), dtype=float)
    lc *= 100 / n
    return lc, {"passes": passes, "line_searches": searched, "unconverged": int((~done).sum() + stalled.sum())}


def _with_interval(res: LCResult, design, Xg, pg, sg, rounds, seed, level, rule) -> LCResult:
    """``res`` with the bootstrap percentile interval of its LC win rate (or the reason none is claimed)."""
    est = res.estimate
    n_fit = int(est.meta["n_fit"])
    meta = {**est.meta, "C_selection": "official 5-fold grouped CV on the full data, held fixed in every replicate"}
    if not claims_interval(n_fit, est.value, **rule):
        why = (f"{n_fit} fitted questions, fewer than the minimum of {rule['min_questions']}"
               if n_fit < rule["min_questions"] else
               f"about {n_fit * min(est.value, 100 - est.value) / 100:.1f} expected "
               f"{'wins' if est.value < 50 else 'losses'} among {n_fit} questions, fewer than {rule['min_outcomes']}")
        meta["note"] = (f"{why}: no bootstrap interval of the LC win rate claimed (the official standard error, the "
                        "spread of the per-row predictions, is not a sampling error and is left in official_se)")
        return replace(res, estimate=est.model_copy(update={"se": None, "reliable": False, "meta": meta}))
    counts = shared_counts(design[0].shape[0], rounds, seed)
    w_hat = np.array(list(res.coef.values()))
    boot, info = _lc_bootstrap(design, w_hat, res.C, Xg, pg, sg, counts)
    alpha = (1 - level) / 2
    lo, hi = quantiles(boot, [alpha, 1 - alpha])
    meta["bootstrap"] = {"solver": f"proximal Newton to a step below {_STEP_TOL:g}, warm-started at the full-data fit "
                                   "with a third-order first step",
                         "length_scale": "full-data sd of delta_len", "resampled": "model rows (gamed rows fixed)",
                         "sd": float(np.std(boot, ddof=1)), **info}
    update: dict = {"method": "bootstrap-percentile(glm-lc)", "rounds": rounds, "seed": seed, "unit": "question",
                    "level": level, "meta": meta}
    if not (np.isfinite([lo, hi]).all() and hi > lo):
        meta["note"] = "the bootstrap replicates did not vary: no interval claimed"
        update["reliable"] = False
    else:
        update["ci_low"], update["ci_high"] = lo, hi
    return replace(res, estimate=est.model_copy(update=update), boot=boot)


def length_controlled_win_rate(
    preference: ArrayLike,
    len_baseline: ArrayLike,
    len_model: ArrayLike,
    difficulty: ArrayLike | None = None,
    *,
    gamed: GamedRows | None = None,
    **kwargs,
) -> LCResult:
    """One model's length-controlled win rate; see :func:`length_controlled_win_rates` for the options."""
    rows = LCRows(preference, len_baseline, len_model, difficulty)
    return length_controlled_win_rates([rows], gamed, **kwargs)[0]


def lc_from_weights(
    coef: Mapping[str, float], difficulty: ArrayLike, baseline_coef: Mapping[str, float] | None = None
) -> Estimate:
    """LC win rate (in %) predicted from given GLM weights (e.g. the published ones) without refitting.

    The model's weights minus the baseline's (zero for the baseline itself) predict each row with the length term set
    to zero. The official ``predict_winrate`` averages over all instructions; the difficulties of the model's
    annotated rows give the same for a complete run, and the leaderboard's value for an incomplete one.
    """
    base = baseline_coef or {}
    w_diff = coef.get(FEATURES[1], 0.0) - base.get(FEATURES[1], 0.0)
    w_model = coef[FEATURES[2]] - base.get(FEATURES[2], 0.0)
    pred = _sigmoid(w_model + w_diff * np.asarray(difficulty, dtype=float))
    se = _sem(pred)
    return Estimate(
        value=float(100 * pred.mean()),
        se=None if se is None else 100 * se,
        n=int(pred.size),
        method="glm-lc-weights",
        meta={"coef": {key: float(coef[key]) for key in coef}},
    )
