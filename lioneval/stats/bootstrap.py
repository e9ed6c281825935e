"""Seeded, vectorized bootstrap for means over resampling units (questions, by default)."""

from __future__ import annotations

import numpy as np

from lioneval.types import Estimate

DEFAULT_ROUNDS = 1000


def resample_counts(n_units: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n_units) multiplicities of each unit in each bootstrap sample; all rounds drawn at once."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_units, size=(rounds, n_units))
    offsets = (np.arange(rounds) * n_units)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=rounds * n_units).reshape(rounds, n_units)


def grouped_mean(
    values: np.ndarray,
    groups: np.ndarray,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = 0.95,
    unit: str = "question",
) -> Estimate:
    """Mean of ``values`` with a percentile bootstrap CI that resamples whole groups (e.g. both turns of a question).

    A group drawn k times contributes all its values k times, so the resampled statistic is
    sum_g k_g * S_g / sum_g k_g * n_g with S_g, n_g the group's sum and size: one matrix product for all rounds.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no values to average")
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    sums = np.bincount(g, weights=values)
    sizes = np.bincount(g).astype(float)
    point = float(values.mean())
    if rounds <= 0 or len(sums) < 2:
        return Estimate(value=point, n=int(values.size), method="mean", unit=unit, seed=seed)
    k = resample_counts(len(sums), rounds, seed)
    boot = (k @ sums) / (k @ sizes)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Estimate(
        value=point,
        ci_low=float(lo),
        ci_high=float(hi),
        se=float(boot.std(ddof=1)),
        n=int(values.size),
        method="bootstrap-percentile",
        rounds=rounds,
        seed=seed,
        unit=unit,
        level=level,
        meta={"groups": int(len(sums))},
    )
