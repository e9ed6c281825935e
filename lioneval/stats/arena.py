"""Bradley-Terry scores against a baseline, with bootstrap intervals and optional style control.

The model is the one behind the Arena-Hard-Auto v0.1 leaderboard: a logistic regression without intercept on
battle rows, base 10, scale 400, ratings anchored so the baseline is exactly 1000, ties counting half a win for each
side, and the score shown as the win rate (%) against the baseline. Style control adds z-scored length and markdown
differences as extra columns, fitted jointly with an L2 penalty.

Everything is vectorized over bootstrap rounds: the resampled index sets are drawn at once and turned into per-row
counts, so a round is a weighting of the same rows rather than a new table. With only baseline battles (the usual
case) the unpenalised fit has a closed form and no round needs a solver; otherwise all rounds share batched Newton
steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit

from lioneval.errors import DataError
from lioneval.types import Estimate

__all__ = [
    "STYLE_FEATURES",
    "ArenaResult",
    "Battles",
    "arena_scores",
    "resample_indices",
    "win_rate",
]

STYLE_FEATURES = ("token_len", "header_count", "list_count", "bold_count")
SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0
_LN_BASE = np.log(BASE)


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


def _style_matrix(battles: Battles, features: Sequence[str]) -> np.ndarray:
    """Per row (a-b)/(a+b+1) for each feature, z-scored over the expanded battle rows, as the official fit does."""
    unknown = [f for f in features if f not in STYLE_FEATURES]
    if unknown:
        raise DataError(f"unknown style feature(s) {unknown}", fix=f"choose from {list(STYLE_FEATURES)}")
    if battles.style_a is None or battles.style_b is None:
        raise DataError(
            "style control needs length and markdown counts for every answer, but no answer metadata was given",
            fix="pass the answers (with meta['style'], e.g. loaded from model_answer/*.jsonl files that carry "
            "conv_metadata) together with the judgments, or score without style control",
        )
    cols = [STYLE_FEATURES.index(f) for f in features]
    sa, sb = battles.style_a[:, cols], battles.style_b[:, cols]
    missing = np.isnan(sa).any(axis=1) | np.isnan(sb).any(axis=1)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"style control needs length and markdown counts for every answer; {int(missing.sum())} of "
            f"{len(battles)} battles lack them (first: question {battles.questions[battles.question[i]]!r}, "
            f"{battles.models[battles.a[i]]!r} vs {battles.models[battles.b[i]]!r})",
            fix="add conv_metadata (token_len, header_count, list_count, bold_count) to those answers, "
            "or score without style control",
        )
    diff = (sa - sb) / (sa + sb + 1.0)
    w = battles.weight / battles.weight.sum()
    mean = w @ diff
    std = np.sqrt(w @ (diff - mean) ** 2)
    # A constant feature carries no information; leave it at zero instead of dividing by zero.
    return (diff - mean) / np.where(std > 0, std, 1.0)


def _scatter(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``values`` (rows, rounds) into ``size`` bins by ``index`` (rows,), per round: (size, rounds)."""
    rounds = values.shape[1]
    flat = (index[:, None] * rounds + np.arange(rounds)).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=size * rounds).reshape(size, rounds)


def _fit_bt(
    battles: Battles,
    feats: np.ndarray,
    counts: np.ndarray,
    *,
    pin: int,
    C: float | None,
    theta0: np.ndarray | None = None,
    damped: bool = False,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> np.ndarray:
    """Newton's method on all weightings (rounds) at once; returns (rounds, models + features) coefficients.

    Coefficients follow the official parametrisation: logit = ln(10) * (theta_a - theta_b) + feats @ beta, so
    rating = 1000 + 400 * theta. Penalised (C given): sklearn's objective 0.5*||w||^2 + C * sum of log-losses over
    the official table, which lists every battle twice (a tie as one win and one loss); the penalty covers all
    coefficients, model strengths included, as sklearn applies it (this reproduces the official style-controlled
    numbers). Unpenalised (C None): the baseline is pinned at 0, which changes nothing but identifiability.
    Models absent from a round come back as NaN.

    Plain Newton steps first: from the full-data fit a bootstrap round converges in three or four. Rounds that do
    not settle are redone with step halving on the objective, which is monotone from any start.
    """
    a, b = battles.a, battles.b
    n, rounds = counts.shape
    m, k = len(battles.models), feats.shape[1]
    d = m + k
    # The doubled table gives each battle 2 * log-loss; dividing the objective by 2C leaves this ridge.
    ridge = 1.0 / (2.0 * C) if C is not None else 0.0
    theta = np.zeros((rounds, d)) if theta0 is None else np.array(np.broadcast_to(theta0, (rounds, d)))

    # The log-loss is linear in the outcome, so rows with the same design row (the same pair, and with style
    # control the same question) merge into one carrying their summed counts and summed wins.
    key = (a * m + b) * (len(battles.questions) if k else 1) + (battles.question if k else 0)
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    g = len(first)
    merge = sparse.csr_matrix((np.ones(n), (group.ravel(), np.arange(n))), shape=(g, n))
    w = merge @ counts  # (groups, rounds)
    wy = merge @ (counts * battles.outcome[:, None])

    # Every design row has the same shape (two model entries, then the features), so the design matrix and the
    # per-row outer products that make up the Hessian are built directly as sparse matrices.
    cols = np.column_stack([a[first], b[first], np.broadcast_to(m + np.arange(k), (g, k))])
    vals = np.column_stack([np.full(g, _LN_BASE), np.full(g, -_LN_BASE), feats[first]])
    width = cols.shape[1]
    design = sparse.csr_matrix((vals.ravel(), (np.repeat(np.arange(g), width), cols.ravel())), shape=(g, d))
    design_t = design.T.tocsr()
    outer = sparse.csr_matrix(
        (
            (vals[:, :, None] * vals[:, None, :]).ravel(),
            ((cols[:, :, None] * d + cols[:, None, :]).ravel(), np.repeat(np.arange(g), width * width)),
        ),
        shape=(d * d, g),
    )

    present = (abs(design_t[:m]) @ w > 0).T  # (rounds, models)
    # Unpenalised, an absent model and the anchor are held fixed (their row and column of the Newton system become
    # the identity); penalised, the ridge alone sends an absent model to 0, as sklearn does with an all-zero column.
    frozen = np.zeros((rounds, d), dtype=bool)
    if C is None:
        frozen[:, :m] = ~present
        frozen[:, pin] = True
        theta[frozen] = 0.0
    fr_rounds, fr_cols = np.nonzero(frozen)
    # A whisker of curvature keeps the system solvable when every probability saturates (separated data); it
    # scales the step only, so the fixed point, where the gradient vanishes, is unchanged.
    shift = (ridge + 1e-10) * np.eye(d)

    def objective(th: np.ndarray) -> np.ndarray:
        z = design @ th.T
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        return (w * softplus - wy * z).sum(axis=0) + 0.5 * ridge * (th * th).sum(axis=1)

    obj = objective(theta) if damped else None
    moved = np.full(rounds, np.inf)
    for _ in range(max_iter if damped else 30):
        p = expit(design @ theta.T)
        grad = (design_t @ (w * p - wy)).T + ridge * theta
        hess = (outer @ (w * p * (1.0 - p))).T.reshape(rounds, d, d) + shift
        if len(fr_rounds):
            grad[frozen] = 0.0
            hess[frozen[:, :, None] | frozen[:, None, :]] = 0.0
            hess[fr_rounds, fr_cols, fr_cols] = 1.0
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        if damped:
            assert obj is not None  # computed before the loop when damped
            t = np.ones(rounds)
            for _ in range(60):
                cand_obj = objective(theta - t[:, None] * step)
                worse = cand_obj > obj + 1e-12 * np.abs(obj)
                if not worse.any():
                    break
                t = np.where(worse, t / 2, t)
            step *= t[:, None]
            obj = cand_obj
        theta -= step
        moved = np.abs(step).max(axis=1)
        # Newton converges quadratically: after a step this small the remaining error is far below it.
        if not (moved >= tol).any():
            break
    unsettled = ~(moved < tol)  # NaN counts as unsettled
    if unsettled.any() and not damped:
        start = theta0 if theta0 is None or np.ndim(theta0) == 1 else theta0[unsettled]
        theta[unsettled] = _fit_bt(
            battles, feats, counts[:, unsettled], pin=pin, C=C, theta0=start, damped=True, max_iter=max_iter, tol=tol
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
) -> ArenaResult:
    """Bradley-Terry win rates against ``baseline`` with bootstrap percentile intervals.

    ``style_control``: True for all STYLE_FEATURES, or a subset of their names (``("token_len",)`` is the
    official length-only control). ``C`` is the inverse L2 strength of the style-controlled fit. ``indices``
    replaces the seeded draw with given index sets (rounds, units), e.g. to share them with another implementation.
    """
    if unit not in ("battle", "question"):
        raise DataError(f"unknown resampling unit {unit!r}", fix="use unit='battle' (official) or unit='question'")
    if baseline not in battles.models:
        raise DataError(
            f"the baseline {baseline!r} has no battles", fix="pass the baseline the judgments were made against"
        )
    if len(battles) == 0:
        raise DataError("no battles to score: every game failed or was dropped", fix="check the judgments")
    pin = battles.models.index(baseline)
    m = len(battles.models)
    features = tuple(STYLE_FEATURES if style_control is True else (style_control or ()))
    feats = _style_matrix(battles, features) if features else np.zeros((len(battles), 0))

    if indices is not None:
        seed = None  # the draws came from the caller, not from this seed
    else:
        indices = resample_indices(battles, rounds, seed, unit)
    rounds = indices.shape[0]
    full = battles.weight[:, None].astype(float)
    boot = _round_counts(battles, indices, unit)

    star = bool(np.all((battles.a == pin) ^ (battles.b == pin)))
    coefs: dict[str, float] = {}
    coefs_boot: dict[str, float] = {}
    if star and not features:
        point = _closed_form(battles, full, pin)[0]
        ratings = _rating(point)
        # Clipped so that a round a model wins (or loses) outright still has a finite rating to interpolate.
        samples = _rating(np.clip(_closed_form(battles, boot, pin), 1e-12, 1 - 1e-12))
    else:
        _check_connected(battles, pin)
        c = C if features else None
        theta = _fit_bt(battles, feats, full, pin=pin, C=c)
        ratings = SCALE * (theta[0, :m] - theta[0, pin]) + INIT_RATING
        point = win_rate(ratings)
        samples = np.empty((0, m))
        if rounds:
            theta_boot = _fit_bt(battles, feats, boot, pin=pin, C=c, theta0=theta[0])
            samples = SCALE * (theta_boot[:, :m] - theta_boot[:, pin : pin + 1]) + INIT_RATING
            coefs_boot = dict(zip(features, np.nanmean(theta_boot[:, m:], axis=0).tolist(), strict=True))
        coefs = dict(zip(features, theta[0, m:].tolist(), strict=True))

    n_battles = (_scatter(battles.a, full, m) + _scatter(battles.b, full, m))[:, 0].astype(int)
    units = _units_per_model(battles, m) if unit == "question" else n_battles
    # Percentiles are taken on ratings and then mapped to win rates, as the official code does: the order
    # statistics are the same either way, only the interpolation between two of them differs (by ~1e-4 points).
    lo, hi = 100 * win_rate(np.nanpercentile(samples, [2.5, 97.5], axis=0)) if rounds else (None, None)
    method = "bradley-terry-style-control" if features else "bradley-terry"
    scores = {}
    for i, name in enumerate(battles.models):
        # lo and hi are both set (rounds) or both None.
        ci: dict[str, Any] = {} if lo is None or hi is None else {"ci_low": float(lo[i]), "ci_high": float(hi[i])}
        # A model that lost (or won) every battle has an infinite rating; records only hold finite numbers.
        rating = float(ratings[i]) if np.isfinite(ratings[i]) else None
        meta: dict[str, Any] = {"rating": rating, "baseline": baseline, "ci": "bootstrap-percentile"}
        if features:
            meta["style_features"] = list(features)
        scores[name] = Estimate(
            value=float(100 * point[i]),
            n=int(units[i]),
            method=method,
            rounds=rounds,
            seed=seed,
            unit=unit,
            meta=meta,
            **ci,
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
    nq = len(battles.questions)
    pairs = np.unique(np.concatenate([battles.a * nq + battles.question, battles.b * nq + battles.question]))
    return np.bincount(pairs // nq, minlength=m)


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
