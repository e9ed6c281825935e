"""Anytime-valid tests and confidence sequences (lioneval.stats.sequential): the error stays at alpha however often
one looks, a clear difference is settled early, sampling without replacement collapses onto the set's mean, and a
race of several candidates holds the family-wise error and spends its budget on the undecided ones."""

from __future__ import annotations

import numpy as np
import pytest

from lioneval.stats import sequential as S

ALPHA = 0.05


def _naive_stops(d: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """"Stop when the fixed-n 95% normal interval excludes 0" at any look."""
    s1, s2 = np.cumsum(d, -1)[..., looks - 1], np.cumsum(d * d, -1)[..., looks - 1]
    mean = s1 / looks
    sd = np.sqrt(np.maximum(s2 / looks - mean ** 2, 1e-12) * looks / (looks - 1))
    return (np.abs(mean) / (sd / np.sqrt(looks)) > 1.96).any(-1)


def test_error_stays_at_alpha_under_continuous_monitoring_where_peeking_inflates_it():
    rng = np.random.default_rng(1)
    q = rng.normal(6.3, 3.5, (1500, 400, 1))
    a = np.clip(np.rint(q + rng.normal(0, 2.2, (1500, 400, 2))), 1, 10).mean(-1)
    b = np.clip(np.rint(q + rng.normal(0, 2.2, (1500, 400, 2))), 1, 10).mean(-1)
    d = a - b  # two equally good models: every declared difference is an error
    looks = S.looks_every(400, 10)
    res = S.sequential_test((d + 9) / 18, 0.5, 0.5, alpha=ALPHA / 2, looks=looks)
    sequential = ((res.above > 0) | (res.below > 0)).mean()
    naive = _naive_stops(d, looks).mean()
    assert sequential <= ALPHA
    assert naive > 3 * ALPHA  # the same looks at a fixed-n interval declare far more differences


def test_a_clear_difference_is_settled_early_and_in_its_direction():
    rng = np.random.default_rng(2)
    x = np.clip(rng.normal(0.62, 0.15, (200, 800)), 0, 1)
    res = S.sequential_test(x, 0.5, 0.5, alpha=ALPHA, looks=S.looks_every(800, 10))
    assert (res.above > 0).all() and (res.below == 0).all()
    assert np.median(res.above) <= 100


def test_without_replacement_the_interval_closes_on_the_set_mean_and_holds_it():
    rng = np.random.default_rng(3)
    pop = rng.beta(2, 3, 300)
    x = pop[rng.permutation(300)]
    lo, hi = S.confidence_sequence(x, alpha=ALPHA, population=300)
    assert (lo <= pop.mean() + 1e-3).all() and (hi >= pop.mean() - 1e-3).all()
    assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) <= 0)  # intersected over time
    assert hi[-1] - lo[-1] < 0.01 < hi[49] - lo[49]
    iid_lo, iid_hi = S.confidence_sequence(x, alpha=ALPHA)
    assert iid_hi[-1] - iid_lo[-1] > 5 * (hi[-1] - lo[-1])
    # a null that the drawn values already rule out is rejected for certain
    assert np.isinf(S.log_capital(np.ones(10), 0.05, population=12)[-1])


def test_rows_of_unequal_length_and_one_population_each():
    x = np.full((2, 50), np.nan)
    x[0, :50] = 0.8
    x[1, :20] = 0.8
    res = S.sequential_test(x, 0.5, 0.5, alpha=ALPHA, population=np.array([[50], [20]])[:, 0])
    assert res.above[0] > 0 and res.above[1] > 0 and res.below.sum() == 0
    with pytest.raises(ValueError, match="more observations"):
        S.log_capital(x, 0.5, population=10)


def test_race_holds_the_family_wise_error_and_spends_the_budget_on_the_undecided():
    rng = np.random.default_rng(4)
    equal = rng.beta(4, 4, (400, 4, 300))
    r = S.race(equal, 0.5, 0.5, alpha=ALPHA, batch=10)
    assert (r.verdict != 0).any(-1).mean() <= ALPHA
    x = np.concatenate([np.clip(rng.normal(0.75, 0.1, (1, 1, 300)), 0, 1), rng.beta(4, 4, (1, 3, 300))], 1)
    r = S.race(x, 0.5, 0.5, alpha=ALPHA, batch=10, budget=400)
    assert r.verdict[0, 0] == 1 and r.stop[0, 0] <= 30  # the clear one is settled and drops out
    assert r.stop[0].sum() <= 400 and (r.stop[0, 1:] > r.stop[0, 0]).all()  # the rest got the budget


def test_values_off_the_scale_are_refused():
    assert S.to_unit([1, 10], 1, 10).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="outside the scale"):
        S.to_unit([11], 1, 10)
    with pytest.raises(ValueError, match="unknown bet"):
        S.log_capital(np.ones(3) / 2, 0.5, bet="kelly")
