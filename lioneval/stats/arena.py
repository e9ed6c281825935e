"""Bradley-Terry scores against a baseline, with bootstrap intervals and optional style control.

The model is the one behind the Arena-Hard-Auto v0.1 leaderboard: a logistic regression without intercept on
battle rows, base 10, scale 400, ratings anchored so the baseline is exactly 1000, ties counting half a win for each
side, and the score shown as the win rate (%) against the baseline. Style control adds z-scored length and markdown
differences as extra columns, fitted jointly with an L2 penalty.

Arena-Hard-Auto v2.0 (``scheme="v2.0"``) keeps the battles and the win rate but changes the style features and
the fit: length is ``(a - b) / (a + b)`` of the token counts, each markdown count becomes a density (count per
token) before ``(a - b) / (a + b + 1)``, the features are z-scored with the sample standard deviation, and the
logistic fit has no penalty (the logit scale of the model columns is only a reparametrisation of the ratings here:
the win rate against the baseline is the same function of the fitted strengths).

Everything is vectorized over bootstrap rounds: the resampled index sets are drawn at once and turned into per-row
counts, so a round is a weighting of the same rows rather than a new table. With only baseline battles (the usual
case) the unpenalised fit has a closed form and no round needs a solver; otherwise all rounds share batched Newton
steps, warm-started from the full-data fit (dense products when the design is small, sparse ones otherwise).

Intervals. ``unit="battle"`` is the official scheme (battle rows drawn independently, percentile interval of the
ratings) and reproduces the official numbers; it treats the copies of a strong verdict and the two games of a question
as independent, which makes it too narrow. ``unit="question"`` draws questions (every game and copy of a drawn question
moves with it); with the closed form the interval is the studentized bootstrap of the win share (a ratio of sums over
questions, see lioneval.stats.bootstrap), otherwise the percentile interval of the refits. Both units follow the
stated rules of lioneval.stats.bootstrap: no interval below MIN_UNITS questions, and no zero-width interval presented
as exact (a model that won, lost or tied every game gets the rule-of-three interval on the 0-100 scale). The baseline's
50 is exact by definition (``meta["anchor"]``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from lioneval.errors import DataError
from lioneval.stats.bootstrap import MIN_UNITS, ratio_intervals, rule_of_three
from lioneval.types import Estimate

__all__ = [
    "MARKDOWN_FEATURES",
    "STYLE_FEATURES",
    "STYLE_SCHEMES",
    "ArenaResult",
    "Battles",
    "arena_scores",
    "resample_indices",
    "win_rate",
]

STYLE_FEATURES = ("token_len", "header_count", "list_count", "bold_count")
MARKDOWN_FEATURES = STYLE_FEATURES[1:]
# How the style features are built and fitted: the v0.1 recipe (show_result.py --style-control, L2-penalised) or
# the v2.0 one (show_result.py -f length markdown, unpenalised, markdown as densities).
STYLE_SCHEMES = ("v0.1", "v2.0")
SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0
_LN_BASE = np.log(BASE)
# Largest design (groups x coefficients^2) kept dense in the Newton steps: 4M doubles, 32 MB.
_DENSE_LIMIT = 4_000_000
# Work arrays of the Newton steps up to this many doubles (4 MB) are kept per thread and reused from call to call:
# fresh memory of that size costs a page fault per 4 kB on first touch, more than the arithmetic done on it.
_KEEP_DOUBLES = 500_000
_work = threading.local()


def _scratch(name: str, shape: tuple[int, int]) -> np.ndarray:
    """An uninitialised (rows, cols) float array, from this thread's reusable buffer ``name`` when small enough."""
    size = shape[0] * shape[1]
    if size > _KEEP_DOUBLES:
        return np.empty(shape)
    bufs = _work.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.size < size:
        buf = bufs[name] = np.empty(_KEEP_DOUBLES)
    return buf[:size].reshape(shape)


@dataclass(frozen=True, eq=False)
class Battles:
    """A compact battle table: one row per game, standing for ``weight`` identical battles.

    ``outcome`` is side A's win share (1, 0.5 or 0). For judgments against a baseline, side A is the baseline in
    both games, as in the official battle table; this matters for style control, whose feature centring is not
    symmetric under swapping sides. ``style_a``/``style_b`` hold the raw answer counts per STYLE_FEATURES column
    (NaN where unknown), or are None when no answer metadata was given.
    """

    models: tuple[str, ...]
    questions: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    weight: np.ndarray
    question: np.ndarray
    game: np.ndarray
    style_a: np.ndarray | None = None
    style_b: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.a)
        for name in ("b", "outcome", "weight", "question", "game"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Battles.{name} has {len(getattr(self, name))} rows, expected {n}")
        if (self.style_a is None) != (self.style_b is None):
            raise ValueError("give both style_a and style_b, or neither")

    def __len__(self) -> int:
        return len(self.a)

    @property
    def n_battles(self) -> int:
        """Battle rows after expanding weights: the rows the official bootstrap resamples."""
        return int(self.weight.sum())

    def expanded_rows(self) -> np.ndarray:
        """Compact row of each expanded battle, in official table order (a strong verdict's copies adjacent)."""
        return np.repeat(np.arange(len(self)), self.weight)


@dataclass(eq=False)
class ArenaResult:
    """Scores (win rate % against the baseline) per model, with the fit behind them."""

    baseline: str
    scores: dict[str, Estimate]
    ratings: dict[str, float]  # Elo-scale ratings, baseline = 1000
    battles: dict[str, int]  # expanded battles per model
    style_coefs: dict[str, float] = field(default_factory=dict)  # full-data fit, per z-scored feature
    style_coefs_boot: dict[str, float] = field(default_factory=dict)  # mean over bootstrap rounds
    samples: np.ndarray | None = None  # (rounds, models) bootstrap win rates in %, columns in `models` order
    models: tuple[str, ...] = ()


def win_rate(rating: np.ndarray | float, baseline_rating: float = INIT_RATING) -> np.ndarray:
    """Expected win share against the baseline for an Elo-scale rating."""
    return 1.0 / (1.0 + BASE ** ((baseline_rating - np.asarray(rating, dtype=float)) / SCALE))


def _rating(p: np.ndarray) -> np.ndarray:
    """Elo-scale rating for a win share against the baseline (the inverse of win_rate)."""
    with np.errstate(divide="ignore"):
        return INIT_RATING + SCALE * np.log10(p / (1.0 - p))


def resample_indices(battles: Battles, rounds: int, seed: int | None, unit: str = "battle") -> np.ndarray:
    """Bootstrap index sets, all rounds at once: (rounds, units) draws with replacement.

    ``unit="battle"`` draws expanded battle rows (the official scheme: a strong verdict's copies are drawn
    independently); ``unit="question"`` draws questions, keeping every game of a drawn question together.
    """
    n = battles.n_battles if unit == "battle" else len(battles.questions)
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def _round_counts(battles: Battles, idx: np.ndarray, unit: str) -> np.ndarray:
    """How many battles each compact row stands for in each round: (rows, rounds), the layout the fits use."""
    rounds = idx.shape[0]
    if unit == "battle":
        size, drawn = len(battles), battles.expanded_rows()[idx]
    else:
        size, drawn = len(battles.questions), idx
    flat = (drawn * rounds + np.arange(rounds)[:, None]).ravel()
    counts = np.bincount(flat, minlength=size * rounds).reshape(size, rounds).astype(float)
    if unit == "question":
        counts = counts[battles.question] * battles.weight[:, None]
    return counts


def _style_sides(battles: Battles, cols: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The raw style counts of side A and side B for the columns ``cols`` of STYLE_FEATURES, every one known."""
    if battles.style_a is None or battles.style_b is None:
        raise DataError(
            "style control needs length and markdown counts for every answer, but no answer metadata was given",
            fix="pass the answers (with meta['style'], e.g. loaded from model_answer/*.jsonl files that carry "
            "conv_metadata or metadata) together with the judgments, or score without style control",
        )
    sa, sb = battles.style_a[:, cols], battles.style_b[:, cols]
    missing = np.isnan(sa).any(axis=1) | np.isnan(sb).any(axis=1)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"style control needs length and markdown counts for every answer; {int(missing.sum())} of "
            f"{len(battles)} battles lack them (first: question {battles.questions[battles.question[i]]!r}, "
            f"{battles.models[battles.a[i]]!r} vs {battles.models[battles.b[i]]!r})",
            fix="add conv_metadata (v0.1 layout) or metadata (current layout) with token_len, header_count, "
            "list_count and bold_count to those answers, or score without style control",
        )
    return sa, sb


def _check_features(features: Sequence[str]) -> None:
    unknown = [f for f in features if f not in STYLE_FEATURES]
    if unknown:
        raise DataError(f"unknown style feature(s) {unknown}", fix=f"choose from {list(STYLE_FEATURES)}")


def _style_matrix(battles: Battles, features: Sequence[str]) -> np.ndarray:
    """Per row (a-b)/(a+b+1) for each feature, z-scored over the expanded battle rows, as the official fit does."""
    _check_features(features)
    sa, sb = _style_sides(battles, [STYLE_FEATURES.index(f) for f in features])
    diff = (sa - sb) / (sa + sb + 1.0)
    w = battles.weight / battles.weight.sum()
    mean = w @ diff
    std = np.sqrt(w @ (diff - mean) ** 2)
    # A constant feature carries no information; leave it at zero instead of dividing by zero.
    return (diff - mean) / np.where(std > 0, std, 1.0)


def _style_matrix_v2(battles: Battles, features: Sequence[str]) -> np.ndarray:
    """The v2.0 features, side A minus side B: length (a-b)/(a+b); each markdown count as a density (count per
    token) and then (a-b)/(a+b+1); z-scored over the expanded battle rows with the sample standard deviation.

    Side A minus side B (the baseline minus the model) gives the coefficients the official fit reports, whose
    features are the model minus the baseline: the logit is for side A, so both signs flip. An empty answer (no
    tokens) has density 0, and two empty answers a length feature of 0, where the official code divides by zero.
    """
    _check_features(features)
    sa, sb = _style_sides(battles, range(len(STYLE_FEATURES)))
    la, lb = sa[:, :1], sb[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        length = np.where(la + lb > 0, (la - lb) / (la + lb), 0.0)
        da = np.where(la > 0, sa[:, 1:] / la, 0.0)
        db = np.where(lb > 0, sb[:, 1:] / lb, 0.0)
    diff = np.hstack([length, (da - db) / (da + db + 1.0)])[:, [STYLE_FEATURES.index(f) for f in features]]
    w = battles.weight.astype(float)
    total = w.sum()
    mean = (w / total) @ diff
    var = w @ (diff - mean) ** 2 / max(total - 1.0, 1.0)
    std = np.sqrt(var)
    return (diff - mean) / np.where(std > 0, std, 1.0)


def _scatter(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``values`` (rows, rounds) into ``size`` bins by ``index`` (rows,), per round: (size, rounds)."""
    rounds = values.shape[1]
    flat = (index[:, None] * rounds + np.arange(rounds)).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=size * rounds).reshape(size, rounds)


class _Prepared:
    """What the Newton steps need of a battle table, built once for the full-data fit and the rounds alike."""

    def __init__(self, battles: Battles, feats: np.ndarray):
        a, b = battles.a, battles.b
        self.n = len(battles)
        self.m = m = len(battles.models)
        k = feats.shape[1]
        self.d = d = m + k
        # The log-loss is linear in the outcome, so rows with the same design row (the same pair, and with style
        # control the same question) merge into one group carrying their summed counts and summed wins.
        key = (a * m + b) * (len(battles.questions) if k else 1) + (battles.question if k else 0)
        _, first, group = np.unique(key, return_index=True, return_inverse=True)
        self.group = group.ravel()
        self.first = first  # a row of each group
        self.g = g = len(first)
        self.outcome = battles.outcome
        # With style control a group lies within one question: a question draw then scales whole groups.
        self.group_question = battles.question[first] if k else None
        # Every design row has the same shape (two model entries, then the features). A small design is kept dense
        # (BLAS products: the fast path for a few models with style control); a large one sparse, with the per-row
        # outer products that make up the Hessian built directly as a sparse matrix.
        self.dense = g * d * d <= _DENSE_LIMIT
        self.blocks: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        rows = np.arange(g)
        if self.dense:
            design = np.zeros((g, d))
            design[rows, a[first]] = _LN_BASE
            design[rows, b[first]] = -_LN_BASE
            design[:, m:] = feats[first]
            self.design: Any = design
            self.design_t: Any = np.ascontiguousarray(design.T)
            # The Hessian is symmetric: only its upper triangle is summed, then mirrored.
            self.iu, self.ju = np.triu_indices(d)
            self.model_abs: Any = np.abs(self.design_t[:m])
            # A group touches its pair's two models and the features only. With many models the Hessian is summed
            # block by block, one block per pair (the groups are sorted by pair, so each is a slice), over just
            # those columns: (2 + k)(3 + k)/2 products a group instead of d(d+1)/2.
            pair = a[first] * m + b[first]
            local = 2 + k
            if k and d * (d + 1) > 3 * local * (local + 1):
                starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
                li, lj = np.triu_indices(local)
                for lo, hi in zip(starts, [*starts[1:], g], strict=True):
                    c = np.r_[a[first[lo]], b[first[lo]], m + np.arange(k)]
                    v = design[lo:hi][:, c]
                    up, low = c[li] * d + c[lj], c[lj] * d + c[li]
                    off = li != lj
                    self.blocks.append((int(lo), int(hi), np.ascontiguousarray((v[:, li] * v[:, lj]).T), up,
                                        np.stack([low[off], np.flatnonzero(off)])))
                self.outer = None
            else:
                self.outer = np.ascontiguousarray((design[:, self.iu] * design[:, self.ju]).T)
        else:
            cols = np.column_stack([a[first], b[first], np.broadcast_to(m + np.arange(k), (g, k))])
            vals = np.column_stack([np.full(g, _LN_BASE), np.full(g, -_LN_BASE), feats[first]])
            width = cols.shape[1]
            self.design = sparse.csr_matrix((vals.ravel(), (np.repeat(rows, width), cols.ravel())), shape=(g, d))
            self.design_t = self.design.T.tocsr()
            self.outer = sparse.csr_matrix(
                (
                    (vals[:, :, None] * vals[:, None, :]).ravel(),
                    ((cols[:, :, None] * d + cols[:, None, :]).ravel(), np.repeat(rows, width * width)),
                ),
                shape=(d * d, g),
            )
            self.model_abs = abs(self.design_t[:m])
        self._merge: tuple[Any, Any] | None = None

    def merges(self) -> tuple[Any, Any]:
        """Sparse (groups, rows) sums: of the counts, and of the counts weighted by side A's win share."""
        if self._merge is None:
            n, g, grp = self.n, self.g, self.group
            self._merge = (sparse.csr_matrix((np.ones(n), (grp, np.arange(n))), shape=(g, n)),
                           sparse.csr_matrix((self.outcome, (grp, np.arange(n))), shape=(g, n)))
        return self._merge

    def weights(self, counts: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per group and round: the battles ``w``, and side A's win share among them ``r``, (groups, 1) when it is the
        same in every round (each group within one unit) and (groups, rounds) otherwise."""
        if isinstance(counts, tuple):
            row_unit, row_mult, draws = counts
            if self.group_question is not None:
                # Every group lies in one unit: a gather, not a product, and a win share fixed across rounds.
                total = np.bincount(self.group, weights=row_mult, minlength=self.g)
                won = np.bincount(self.group, weights=row_mult * self.outcome, minlength=self.g)
                w = _scratch("w", (self.g, draws.shape[1]))
                np.take(draws, row_unit[self.first], axis=0, out=w)
                w *= total[:, None]
                return w, (won / total)[:, None]
            counts = row_mult[:, None] * draws[row_unit]
        assert isinstance(counts, np.ndarray)
        if counts.shape[1] == 1:  # the full-data fit: one weighting, group sums without building the merge matrices
            w = np.bincount(self.group, weights=counts[:, 0], minlength=self.g)[:, None]
            won = np.bincount(self.group, weights=counts[:, 0] * self.outcome, minlength=self.g)[:, None]
            return w, np.divide(won, w, out=np.zeros_like(w), where=w > 0)
        merge, wins = self.merges()
        w = merge @ counts
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(w > 0, (wins @ counts) / w, 0.0)
        return w, r


def _prepare(battles: Battles, feats: np.ndarray) -> _Prepared:
    return _Prepared(battles, feats)


def _fit_bt(
    battles: Battles,
    feats: np.ndarray,
    counts: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    pin: int,
    C: float | None,
    theta0: np.ndarray | None = None,
    damped: bool = False,
    max_iter: int = 100,
    tol: float = 1e-8,
    prepared: _Prepared | None = None,
) -> np.ndarray:
    """Newton's method on all weightings (rounds) at once; returns (rounds, models + features) coefficients.

    ``counts``: how many battles each row stands for in each round, (rows, rounds); or factored as
    ``(row_unit, row_mult, K)``: row i stands for ``row_mult[i] * K[row_unit[i], r]`` battles in round r, with ``K``
    the (units, rounds) draws of each unit (a question draw moves all the question's rows; no table is built).

    Coefficients follow the official parametrisation: logit = ln(10) * (theta_a - theta_b) + feats @ beta, so
    rating = 1000 + 400 * theta. Penalised (C given): sklearn's objective 0.5*||w||^2 + C * sum of log-losses over
    the official table, which lists every battle twice (a tie as one win and one loss); the penalty covers all
    coefficients, model strengths included, as sklearn applies it (this reproduces the official style-controlled
    numbers). Unpenalised (C None): the baseline is pinned at 0, which changes nothing but identifiability.
    Models absent from a round come back as NaN.

    Plain Newton steps first: from the full-data fit a bootstrap round converges in three or four. Rounds that do
    not settle are redone with step halving on the objective, which is monotone from any start.
    """
    prep = prepared if prepared is not None else _prepare(battles, feats)
    rounds = counts[2].shape[1] if isinstance(counts, tuple) else counts.shape[1]
    m, d, g = prep.m, prep.d, prep.g
    design, design_t, outer, dense = prep.design, prep.design_t, prep.outer, prep.dense
    # The doubled table gives each battle 2 * log-loss; dividing the objective by 2C leaves this ridge.
    ridge = 1.0 / (2.0 * C) if C is not None else 0.0
    theta = np.zeros((rounds, d)) if theta0 is None else np.array(np.broadcast_to(theta0, (rounds, d)))
    # All rounds start from the same point when theta0 is one vector: the first step shares its probabilities.
    shared = theta0 is None or np.ndim(theta0) == 1
    w, r = prep.weights(counts)
    model_abs = prep.model_abs

    present = (model_abs @ w > 0).T  # (rounds, models)
    # Unpenalised, an absent model and the anchor are held fixed (their row and column of the Newton system become
    # the identity); penalised, the ridge alone sends an absent model to 0, as sklearn does with an all-zero column.
    frozen = np.zeros((rounds, d), dtype=bool)
    if C is None:
        frozen[:, :m] = ~present
        frozen[:, pin] = True
        theta[frozen] = 0.0
    frozen_pairs = frozen[:, :, None] | frozen[:, None, :]
    # A whisker of curvature keeps the system solvable when every probability saturates (separated data); it
    # scales the step only, so the fixed point, where the gradient vanishes, is unchanged.
    shift = (ridge + 1e-10) * np.eye(d)

    def objective(th: np.ndarray, w: np.ndarray, r: np.ndarray) -> np.ndarray:
        z = design @ th.T
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        return (w * (softplus - r * z)).sum(axis=0) + 0.5 * ridge * (th * th).sum(axis=1)

    # Newton converges quadratically: the next step is about kappa * s^2 after a step s, with kappa read off the last
    # two steps. A round is done once that predicted remaining error is below tol / 10 (or its step is below
    # ``done`` outright); done rounds leave the working set.
    done = np.sqrt(tol) / 100 if not damped else tol
    prev = np.full(rounds, np.nan)
    finished = np.zeros(rounds, dtype=bool)
    theta_all = theta
    active = np.arange(rounds)
    theta = theta_all.copy()
    w_act, r_act = w, r
    fr_act, frp_act = frozen, frozen_pairs
    obj = objective(theta, w_act, r_act) if damped else None
    moved = np.full(rounds, np.inf)
    # Work arrays for the (groups, rounds) products, reused across steps: fresh temporaries of this size cost more
    # in allocation than in arithmetic.
    z = _scratch("z", (g, rounds))
    p = _scratch("p", (g, rounds))
    # exp overflows to inf for very negative z and p is then exactly 0, as it should be; kappa is NaN (0/0, inf)
    # before the second step or after a zero one.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(max_iter if damped else 30):
            na = len(active)
            if z.shape[1] != na:
                z, p = _scratch("z", (g, na)), _scratch("p", (g, na))
            zb, pb = z, p
            if shared and len(theta) and (theta == theta[:1]).all():
                # Every round at the same point (the first step from a common start): one column of probabilities.
                shared = False
                zc = design @ theta[0]
                pc = 1.0 / (1.0 + np.exp(-zc))
                np.multiply(w_act, pc[:, None] - r_act, out=zb)  # z holds the residual w * (p - r)
                grad = (design_t @ zb).T + ridge * theta
                np.multiply(w_act, (pc * (1.0 - pc))[:, None], out=pb)  # p holds the curvature w * p * (1 - p)
            else:
                shared = False
                if dense:
                    np.matmul(design, theta.T, out=zb)
                else:
                    zb[...] = design @ theta.T
                # p = expit(z) in place; exp overflows to inf for very negative z and p is then exactly 0, as it should.
                np.negative(zb, out=pb)
                np.exp(pb, out=pb)
                pb += 1.0
                np.reciprocal(pb, out=pb)
                np.subtract(pb, r_act, out=zb)
                zb *= w_act  # z now holds the residual w * (p - r)
                grad = (design_t @ zb).T + ridge * theta
                np.multiply(pb, pb, out=zb)  # z is free again: p^2
                pb -= zb
                pb *= w_act  # p now holds the curvature w * p * (1 - p)
            if dense and prep.blocks:
                flat = np.zeros((na, d * d))
                for lo, hi, block, up, (low, off) in prep.blocks:
                    part = (block @ pb[lo:hi]).T  # (rounds, local upper triangle)
                    flat[:, up] += part
                    flat[:, low] += part[:, off]
                hess = flat.reshape(na, d, d) + shift
            elif dense:
                upper = (outer @ pb).T  # (rounds, d(d+1)/2)
                hess = np.empty((na, d, d))
                hess[:, prep.iu, prep.ju] = upper
                hess[:, prep.ju, prep.iu] = upper
                hess += shift
            else:
                hess = (outer @ pb).T.reshape(na, d, d) + shift
            if fr_act.any():
                grad[fr_act] = 0.0
                hess[frp_act] = 0.0
                fr_r, fr_c = np.nonzero(fr_act)
                hess[fr_r, fr_c, fr_c] = 1.0
            step = np.linalg.solve(hess, grad[..., None])[..., 0]
            if damped:
                assert obj is not None  # computed before the loop when damped
                t = np.ones(na)
                for _ in range(60):
                    cand_obj = objective(theta - t[:, None] * step, w_act, r_act)
                    worse = cand_obj > obj + 1e-12 * np.abs(obj)
                    if not worse.any():
                        break
                    t = np.where(worse, t / 2, t)
                step *= t[:, None]
                obj = cand_obj
            theta -= step
            now = np.abs(step).max(axis=1)
            before = prev[active]
            predicted = now / before**2 * now**2  # kappa * s^2, NaN before the second step
            settled = now < done  # NaN counts as unsettled
            if not damped:
                settled |= (now < 1e-3) & (predicted < tol / 10)
            moved[active], prev[active], finished[active] = now, now, settled
            if settled.all():
                theta_all[active] = theta
                break
            if settled.sum() * 4 >= na:
                # Enough rounds are done to make shrinking the working set pay.
                theta_all[active[settled]] = theta[settled]
                keep = ~settled
                active, theta = active[keep], theta[keep]
                w_act = w_act[:, keep]
                r_act = r_act if r_act.shape[1] == 1 else r_act[:, keep]
                fr_act, frp_act = fr_act[keep], frp_act[keep]
                if obj is not None:
                    obj = obj[keep]
        else:
            theta_all[active] = theta
    theta = theta_all
    unsettled = ~finished
    if unsettled.any() and not damped:
        start = theta0 if theta0 is None or np.ndim(theta0) == 1 else theta0[unsettled]
        sub = (counts[0], counts[1], counts[2][:, unsettled]) if isinstance(counts, tuple) else counts[:, unsettled]
        theta[unsettled] = _fit_bt(
            battles, feats, sub, pin=pin, C=C, theta0=start, damped=True, max_iter=max_iter, tol=tol, prepared=prep
        )
    theta[:, :m][~present] = np.nan
    return theta


def _closed_form(battles: Battles, counts: np.ndarray, pin: int) -> np.ndarray:
    """Win share against the baseline, (rounds, models): the BT MLE when every battle involves the baseline."""
    opponent = np.where(battles.a == pin, battles.b, battles.a)
    share = np.where(battles.a == pin, 1.0 - battles.outcome, battles.outcome)
    m = len(battles.models)
    wins = _scatter(opponent, counts * share[:, None], m)
    total = _scatter(opponent, counts, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (wins / total).T
    p[:, pin] = 0.5
    return p


def _question_draws(indices: np.ndarray, n_questions: int) -> np.ndarray:
    """(questions, rounds) multiplicity of each question in each round of question draws (rounds, questions)."""
    rounds = indices.shape[0]
    flat = (indices * rounds + np.arange(rounds)[:, None]).ravel()
    return np.bincount(flat, minlength=n_questions * rounds).reshape(n_questions, rounds).astype(float)


def _per_question(battles: Battles, pin: int) -> tuple[np.ndarray, np.ndarray]:
    """(questions, models) strong-weighted win shares against the baseline and weights: the closed form's sums."""
    opponent = np.where(battles.a == pin, battles.b, battles.a)
    share = np.where(battles.a == pin, 1.0 - battles.outcome, battles.outcome)
    nq, m = len(battles.questions), len(battles.models)
    cell = battles.question * m + opponent
    wins = np.bincount(cell, weights=battles.weight * share, minlength=nq * m).reshape(nq, m)
    total = np.bincount(cell, weights=battles.weight.astype(float), minlength=nq * m).reshape(nq, m)
    return wins, total


def arena_scores(
    battles: Battles,
    baseline: str,
    *,
    rounds: int = 100,
    seed: int | None = 0,
    unit: str = "battle",
    style_control: bool | Sequence[str] = False,
    C: float = 1.0,
    indices: np.ndarray | None = None,
    interval: str | None = None,
    min_units: int = MIN_UNITS,
    scheme: str = "v0.1",
    level: float = 0.95,
) -> ArenaResult:
    """Bradley-Terry win rates against ``baseline`` with bootstrap intervals.

    ``style_control``: True for all STYLE_FEATURES, or a subset of their names (``("token_len",)`` is the
    official length-only control). ``C`` is the inverse L2 strength of the style-controlled fit. ``indices``
    replaces the seeded draw with given index sets (rounds, units), e.g. to share them with another implementation.
    ``interval``: "percentile" (the official method, the default with ``unit="battle"``) or "bootstrap-t" (the
    default with ``unit="question"``; it needs the closed form, so a style-controlled or non-baseline fit falls back
    to the percentile interval and says so in ``meta["ci"]``). ``min_units``: fewest questions a model needs for an
    interval (below it none is claimed and the estimate is not ``reliable``). ``scheme``: the style features and
    fit of Arena-Hard "v0.1" (L2-penalised, ``C``) or "v2.0" (unpenalised, markdown densities; ``C`` unused).
    ``level``: the interval's coverage (the official v0.1 script shows 95%, the v2.0 one 90%).
    """
    if scheme not in STYLE_SCHEMES:
        raise DataError(f"unknown style-control scheme {scheme!r}", fix=f"use one of {list(STYLE_SCHEMES)}")
    if not 0.0 < level < 1.0:
        raise DataError(f"interval level {level!r} is not between 0 and 1", fix="use e.g. level=0.95")
    if unit not in ("battle", "question"):
        raise DataError(f"unknown resampling unit {unit!r}", fix="use unit='battle' (official) or unit='question'")
    interval = interval or ("bootstrap-t" if unit == "question" else "percentile")
    if interval not in ("bootstrap-t", "percentile"):
        raise DataError(f"unknown interval method {interval!r}", fix="use interval='percentile' or 'bootstrap-t'")
    if baseline not in battles.models:
        raise DataError(
            f"the baseline {baseline!r} has no battles", fix="pass the baseline the judgments were made against"
        )
    if len(battles) == 0:
        raise DataError("no battles to score: every game failed or was dropped", fix="check the judgments")
    pin = battles.models.index(baseline)
    m = len(battles.models)
    features = tuple(STYLE_FEATURES if style_control is True else (style_control or ()))
    style_matrix = _style_matrix_v2 if scheme == "v2.0" else _style_matrix
    feats = style_matrix(battles, features) if features else np.zeros((len(battles), 0))

    if indices is not None:
        seed = None  # the draws came from the caller, not from this seed
    else:
        indices = resample_indices(battles, rounds, seed, unit)
    rounds = indices.shape[0]
    full = battles.weight[:, None].astype(float)
    boot: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]
    if unit == "question":
        draws = _question_draws(indices, len(battles.questions))
        boot = (battles.question, battles.weight.astype(float), draws)
    else:
        boot = _round_counts(battles, indices, unit)

    star = bool(np.all((battles.a == pin) ^ (battles.b == pin)))
    closed = star and not features
    coefs: dict[str, float] = {}
    coefs_boot: dict[str, float] = {}
    ratio = None
    if closed:
        point = _closed_form(battles, full, pin)[0]
        ratings = _rating(point)
        if unit == "question":
            # The win share is a ratio of sums over questions: the rounds are one matrix product, and the
            # studentized interval comes from the same sums.
            wins, total = _per_question(battles, pin)
            ratio = ratio_intervals(
                wins, total, draws.T if rounds else None, method=interval, bounds=(0.0, 1.0), min_units=min_units,
                level=level,
            )
            shares = ratio.boot if ratio.boot is not None else np.empty((0, m))
            shares[:, pin] = 0.5
            if interval == "percentile":
                ratio = None  # the rounds only: the interval comes from their ratings, as the official one does
        else:
            assert isinstance(boot, np.ndarray)  # the tuple form is the question unit's, handled above
            shares = _closed_form(battles, boot, pin) if rounds else np.empty((0, m))
        # Clipped so that a round a model wins (or loses) outright still has a finite rating to interpolate.
        samples = _rating(np.clip(shares, 1e-12, 1 - 1e-12))
    else:
        _check_connected(battles, pin)
        c = C if features and scheme == "v0.1" else None
        prep = _prepare(battles, feats)
        theta = _fit_bt(battles, feats, full, pin=pin, C=c, prepared=prep)
        ratings = SCALE * (theta[0, :m] - theta[0, pin]) + INIT_RATING
        point = win_rate(ratings)
        samples = np.empty((0, m))
        if rounds:
            theta_boot = _fit_bt(battles, feats, boot, pin=pin, C=c, theta0=theta[0], prepared=prep)
            samples = SCALE * (theta_boot[:, :m] - theta_boot[:, pin : pin + 1]) + INIT_RATING
            coefs_boot = dict(zip(features, np.nanmean(theta_boot[:, m:], axis=0).tolist(), strict=True))
        coefs = dict(zip(features, theta[0, m:].tolist(), strict=True))

    n_battles = (_scatter(battles.a, full, m) + _scatter(battles.b, full, m))[:, 0].astype(int)
    questions_per_model = _units_per_model(battles, m)
    units = questions_per_model if unit == "question" else n_battles
    # Percentiles are taken on ratings and then mapped to win rates, as the official code does: the order
    # statistics are the same either way, only the interpolation between two of them differs (by ~1e-4 points).
    lo = hi = boot_se = None
    if rounds:
        finite = not np.isnan(samples).any()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a model absent from every round: NaN, said below
            tail = round(50.0 * (1.0 - level), 10)  # 2.5 exactly for 95%: the official percentiles
            tails = [tail, 100.0 - tail]
            pct = np.percentile(samples, tails, axis=0) if finite else np.nanpercentile(samples, tails, axis=0)
            lo, hi = 100 * win_rate(pct)
            if rounds > 1:
                wr = 100 * win_rate(samples)
                boot_se = wr.std(axis=0, ddof=1) if finite else np.nanstd(wr, axis=0, ddof=1)
    method = "bradley-terry-style-control" if features else "bradley-terry"
    ci_method = "bootstrap-t" if ratio is not None and interval == "bootstrap-t" else "bootstrap-percentile"
    scores = {}
    for i, name in enumerate(battles.models):
        # A model that lost (or won) every battle has an infinite rating; records only hold finite numbers.
        rating = float(ratings[i]) if np.isfinite(ratings[i]) else None
        meta: dict[str, Any] = {"rating": rating, "baseline": baseline, "ci": ci_method}
        if features:
            meta["style_features"] = list(features)
            if scheme != "v0.1":
                meta["style_scheme"] = scheme
        if features and unit == "question" and interval == "bootstrap-t":
            meta["ci_note"] = "the style-controlled fit has no closed form: percentile interval over questions"
        ci_low: float | None = None
        ci_high: float | None = None
        se: float | None = None
        reliable = True
        if i == pin:
            # The anchor: 50 by construction, exactly, in every round.
            meta["anchor"] = True
            if rounds:
                ci_low = ci_high = 50.0
        elif ratio is not None:
            lo_i, hi_i, se_i = ratio.ci_low[i], ratio.ci_high[i], ratio.se[i]
            ci_low = None if lo_i is None else 100 * lo_i
            ci_high = None if hi_i is None else 100 * hi_i
            se = None if se_i is None else 100 * se_i
            reliable = ratio.reliable[i]
            if rounds and ratio.method[i] == "rule-of-three":
                meta["ci"] = "rule-of-three"
            if ratio.notes[i]:
                meta["note"] = ratio.notes[i]
        else:
            se = None if boot_se is None or not np.isfinite(boot_se[i]) else float(boot_se[i])
            if lo is not None and hi is not None:
                ci_low, ci_high = float(lo[i]), float(hi[i])
                if not ci_high > ci_low:
                    # Every round gave the same number (a model that won, lost or tied every game): the rule of
                    # three over its questions instead of a zero-width interval.
                    r_lo, r_hi = rule_of_three(float(point[i]), int(questions_per_model[i]), (0.0, 1.0))
                    ci_low, ci_high = 100 * r_lo, 100 * r_hi
                    se = 100 * max(point[i] - r_lo, r_hi - point[i]) / 1.959963984540054
                    meta["ci"] = "rule-of-three"
                    meta["note"] = "the resamples did not vary; the interval follows the rule of three"
            if questions_per_model[i] < min_units:
                ci_low = ci_high = None
                reliable = False
                meta["note"] = (f"{int(questions_per_model[i])} questions, fewer than the minimum of {min_units} "
                                "for an interval: none claimed")
        scores[name] = Estimate(
            value=float(100 * point[i]),
            ci_low=ci_low,
            ci_high=ci_high,
            se=se,
            n=int(units[i]),
            method=method,
            rounds=rounds,
            seed=seed,
            unit=unit,
            reliable=reliable,
            level=level,
            meta=meta,
        )
    return ArenaResult(
        baseline=baseline,
        scores=scores,
        ratings=dict(zip(battles.models, ratings.tolist(), strict=True)),
        battles=dict(zip(battles.models, n_battles.tolist(), strict=True)),
        style_coefs=coefs,
        style_coefs_boot=coefs_boot,
        samples=100 * win_rate(samples),
        models=battles.models,
    )


def _units_per_model(battles: Battles, m: int) -> np.ndarray:
    """Distinct questions each model has battles on."""
    seen = np.zeros((m, len(battles.questions)), dtype=bool)
    seen[battles.a, battles.question] = True
    seen[battles.b, battles.question] = True
    return seen.sum(axis=1)


def _check_connected(battles: Battles, pin: int) -> None:
    """Every model must reach the baseline through battles, or its rating is not defined."""
    m = len(battles.models)
    reach = np.zeros(m, dtype=bool)
    reach[pin] = True
    while True:
        grown = reach.copy()
        grown[battles.b[reach[battles.a]]] = True
        grown[battles.a[reach[battles.b]]] = True
        if (grown == reach).all():
            break
        reach = grown
    if not reach.all():
        cut = [battles.models[i] for i in np.flatnonzero(~reach)]
        raise DataError(
            f"models {cut} have no chain of battles to the baseline, so their scores are not defined",
            fix="add judgments that connect them to the baseline, or score them separately",
        )
