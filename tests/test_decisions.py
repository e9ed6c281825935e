"""Paired, error-controlled decisions (lioneval.decisions) and the promotion, early stopping and compare built on them:
known answers, the audit's cases, and seeded simulations of moderate size (family-wise error, coverage, power, the
winner's-curse correction)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lioneval import decisions as D
from lioneval.compare import compare_runs
from lioneval.pipeline import RunConfig, run
from lioneval.store import RunStore
from lioneval.testing.scripted import ScriptedBackend
from lioneval.trainers.promotion import PromotionPolicy, promote
from lioneval.types import Answer, Decision, Estimate, Judgment, Report, RunSpec

JUDGE = "openai:gpt-4o#abc"


def _units(values) -> dict[str, tuple[float, float]]:
    return {f"q{i:03d}": (float(v), 1.0) for i, v in enumerate(values)}


def _panel(inc: np.ndarray, cands: np.ndarray) -> D.Panel:
    """A batch panel straight from arrays: inc (..., n), cands (..., m, n), one judgment per question."""
    n = inc.shape[-1]
    return D.Panel(tuple(f"q{i}" for i in range(n)), np.stack([inc, np.ones_like(inc)], -1),
                   np.stack([cands, np.ones_like(cands)], -1), np.ones(cands.shape, bool))


def _ratings(rng, q: np.ndarray, effect: float, noise: float = 1.2) -> np.ndarray:
    """MT-Bench-like 1-10 ratings for two turns: question difficulty, checkpoint noise, a true effect."""
    return np.clip(np.rint(q[:, None] + effect + rng.normal(0, noise, (len(q), 2))), 1, 10)


# -- the paired interval ---------------------------------------------------------------------------------------
def test_paired_t_known_answers_and_direction():
    a = _units([5 + i % 4 for i in range(40)])
    b = _units([4 + i % 4 for i in range(40)])  # A is B plus one on every question: no noise in the difference
    d = D.compare(a, b)
    assert isinstance(d, Decision) and d.kind == "compare" and d.method == D.METHOD
    assert (d.diff, d.ci_low, d.ci_high, d.n, d.verdict) == (1.0, 1.0, 1.0, 40, "better")
    assert d.meta["candidate_score"] == pytest.approx(6.5) and d.meta["incumbent_score"] == pytest.approx(5.5)
    assert D.compare(b, a).verdict == "worse"
    assert D.compare(a, b, higher_is_better=False).verdict == "worse"  # e.g. a loss: higher is worse
    # with one judgment per question the interval is the textbook paired t interval
    rng = np.random.default_rng(0)
    x, y = rng.normal(6, 2, 30), rng.normal(6, 2, 30)
    d = D.compare(_units(x), _units(y))
    lo, hi = stats.t.interval(0.95, 29, loc=np.mean(x - y), scale=stats.sem(x - y))
    assert (d.ci_low, d.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert d.p_value == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert d.verdict == "inconclusive"
    # questions only one side answered drop out; below MIN_QUESTIONS nothing is claimed
    assert D.compare(_units(x[:20]), _units(y)).n == 20
    few = D.compare(_units([9] * 5 + [8] * 3), _units([1] * 5 + [2] * 3))
    assert few.n == 8 and few.verdict == "inconclusive" and "no claim" in few.meta["note"]


def test_ratio_units_are_linearized_per_question():
    # a ratio of sums (Arena-Hard's weighted win rate): the point estimate is the ratio, the SE the delta method's
    rng = np.random.default_rng(1)
    den = rng.integers(1, 4, 60).astype(float)
    na, nb = den * rng.uniform(0, 1, 60), den * rng.uniform(0, 1, 60)
    a = {f"q{i}": (na[i], den[i]) for i in range(60)}
    b = {f"q{i}": (nb[i], den[i]) for i in range(60)}
    d = D.compare(a, b, scale=100.0)
    assert d.diff == pytest.approx(100 * (na.sum() / den.sum() - nb.sum() / den.sum()))
    z = 100 * ((na - nb) - d.diff / 100 * den) / den.mean()
    assert d.meta["se"] == pytest.approx(z.std(ddof=1) / math.sqrt(60))


def test_paired_t_interval_covers_near_nominal_at_ten_questions():
    rng = np.random.default_rng(2)
    reps, n = 4000, 10
    q = rng.normal(6, 2.5, (reps, n))
    inc = np.clip(np.rint(q + rng.normal(0, 1.2, (reps, n))), 1, 10)
    cand = np.clip(np.rint(q + rng.normal(0, 1.2, (reps, n))), 1, 10)[:, None, :]
    st = D.contrast([_panel(inc, cand)])
    lo, hi = st.diff - stats.t.ppf(0.975, 9) * st.se, st.diff + stats.t.ppf(0.975, 9) * st.se
    cover = ((lo <= 0) & (0 <= hi)).mean()  # the same distribution on both sides: the true difference is 0
    assert 0.93 <= cover <= 0.97


def test_holm_and_bonferroni_adjustments():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert D.adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert D.adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert D.adjust(p, "none") is not None and (D.adjust(p, "none") == p).all()


# -- selection across candidates -------------------------------------------------------------------------------
def test_select_promotes_a_clearly_better_candidate_and_not_equal_ones():
    rng = np.random.default_rng(3)
    q = rng.normal(6, 2.5, 80)
    inc = _ratings(rng, q, 0).mean(1)
    equal = np.stack([_ratings(rng, q, 0).mean(1) for _ in range(4)])
    better = np.vstack([equal, _ratings(rng, q, 1.0).mean(1)])
    sel = D.select(D.contrast([_panel(inc, better)]), alpha=0.05)
    assert int(sel.pick) == 4 and sel.passed.tolist() == [False] * 4 + [True]
    assert int(D.select(D.contrast([_panel(inc, equal)])).pick) == -1


def test_a_worse_but_overlapping_later_checkpoint_is_not_promoted():
    # the audit's case: 80 questions, the later checkpoint 0.3 points worse; the two 95% intervals overlap, and the
    # CI-overlap rule promoted the later (shorter) one every time
    rng = np.random.default_rng(4)
    promoted_new = promoted_old = 0
    for _ in range(200):
        q = rng.normal(6, 2.5, 80)
        inc, later = _ratings(rng, q, 0).mean(1), _ratings(rng, q, -0.3).mean(1)
        hw = [1.96 * x.std(ddof=1) / math.sqrt(80) for x in (inc, later)]
        promoted_old += later.mean() + hw[1] >= inc.mean() - hw[0]  # overlapping: a tie the shorter one won
        for preferred in (False, True):  # later (must be better) or shorter too (must be non-inferior by 0.1)
            sel = D.select(D.contrast([_panel(inc, later[None])]), [preferred], alpha=0.05, margin=0.1)
            promoted_new += int(sel.pick) == 0
    assert promoted_old >= 190 and promoted_new <= 2


def test_family_wise_error_under_the_null_is_controlled():
    rng = np.random.default_rng(5)
    reps, k, n = 1500, 10, 40
    q = rng.normal(6, 2.5, (reps, 1, n))
    scores = np.clip(np.rint(q + rng.normal(0, 1.2, (reps, k + 1, n))), 1, 10)
    st = D.contrast([_panel(scores[:, 0], scores[:, 1:])])
    holm = D.select(st, alpha=0.05)
    none = D.select(st, alpha=0.05, correction="none")
    fwer, naive = (holm.pick >= 0).mean(), (none.pick >= 0).mean()
    assert fwer <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    assert naive > 0.2  # without the correction, ten one-sided tests promote noise often


def test_corrected_score_is_closer_to_the_truth_than_the_naive_max():
    # ten candidates all truly 0.6 better than the incumbent: the winner is the luckiest of ten, and its naive
    # difference overstates the truth; the cross-fitted one far less (no estimator is unbiased for every
    # configuration: Putter & Rubinstein, 1968)
    rng = np.random.default_rng(6)
    reps, k, n, effect = 300, 10, 80, 0.6
    q = rng.normal(6, 2.5, (reps, 1, n))
    noise = rng.normal(0, 1.2, (reps, k + 1, n))
    noise[:, 1:] += effect
    scores = q + noise  # unclipped: the true difference is exactly `effect`
    p = _panel(scores[:, 0], scores[:, 1:])
    st = D.contrast([p])
    sel = D.select(st, alpha=0.05)
    chosen = sel.pick >= 0
    assert chosen.mean() > 0.95
    naive = np.take_along_axis(st.diff, np.maximum(sel.pick, 0)[:, None], -1)[:, 0]
    corrected, support = D.crossfit([p], sel.pick, splits=10, seed=0)
    bias_naive, bias_corrected = (naive - effect)[chosen].mean(), (corrected - effect)[chosen].mean()
    assert bias_naive > 0.15
    assert abs(bias_corrected) < 0.6 * bias_naive
    assert (support > 0).mean() > 0.9
    # one clearly better candidate among five: the correction leaves next to no bias
    noise = rng.normal(0, 1.2, (reps, 6, n))
    noise[:, 5] += 1.0
    p = _panel((q + noise)[:, 0], (q + noise)[:, 1:])
    st = D.contrast([p])
    sel = D.select(st, alpha=0.05)
    corrected, _ = D.crossfit([p], sel.pick, seed=1)
    won = sel.pick == 4
    assert won.mean() > 0.95 and abs((corrected - 1.0)[won].mean()) < 0.03


def test_mde_is_the_difference_detected_with_eighty_percent_power():
    assert D.mde(80, 1.7) == pytest.approx((stats.t.ppf(0.95, 79) + stats.t.ppf(0.8, 79)) * 1.7 / math.sqrt(80))
    assert math.isnan(D.mde(1, 1.0))
    rng = np.random.default_rng(7)
    reps, n, sd = 3000, 40, 1.5
    delta = D.mde(n, sd)
    diffs = rng.normal(delta, sd, (reps, n))
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(n))
    power = (t > stats.t.ppf(0.95, n - 1)).mean()
    assert 0.77 <= power <= 0.83


def test_decide_one_sided_rules():
    rng = np.random.default_rng(8)
    q = rng.normal(6, 2.5, 80)
    inc = _units(_ratings(rng, q, 0).mean(1))
    same = _units(_ratings(rng, q, 0.02).mean(1))
    worse = _units(_ratings(rng, q, -1.0).mean(1))
    assert D.decide(same, inc, rule="non-inferiority", margin=0.8).verdict == "non-inferior"
    assert D.decide(same, inc, rule="superiority").verdict == "inconclusive"
    assert D.decide(worse, inc, rule="inferiority", margin=0.2).verdict == "worse"
    assert D.decide(worse, inc, rule="superiority").verdict == "worse"


# -- promotion on stored judgments ----------------------------------------------------------------------------
def _stored(st: RunStore, stage: str, step: int, ratings: np.ndarray, *, length: int = 300,
            extra: dict[str, float] | None = None) -> str:
    """A run with its own per-question MT-Bench judgments (two turns), answers and report, as the pipeline writes."""
    model = f"{stage}-step{step}@{step:08d}"
    spec = RunSpec(model=model, checkpoint=f"/ckpts/{stage}-step{step}", stage=stage, step=step,
                   benchmarks=["mt-bench"], judge="openai:gpt-4o")
    key = st.put_run(spec)
    js = [Judgment(question_id=f"q{i:03d}", benchmark="mt-bench", judge=JUDGE, model=model, kind="rating", turn=t + 1,
                   value=float(ratings[i, t]), inputs=f"{model}/{i}/{t}")
          for i in range(len(ratings)) for t in range(ratings.shape[1])]
    st.put_judgments(js)
    st.link(key, "judgments", [j.key for j in js])
    st.put_answers([Answer(question_id=f"q{i:03d}", benchmark="mt-bench", model=model, turns=["x" * length])
                    for i in range(len(ratings))])
    per_q = ratings.mean(1)
    half = 1.96 * per_q.std(ddof=1) / math.sqrt(len(per_q))
    metrics = {"overall": Estimate(value=float(ratings.mean()), ci_low=float(ratings.mean() - half),
                                   ci_high=float(ratings.mean() + half), n=len(per_q), method="bootstrap-percentile")}
    for name, value in (extra or {}).items():
        metrics[name] = Estimate(value=value, ci_low=value - 1, ci_high=value + 1, n=len(per_q), method="x")
    st.put_report(Report(run=key, benchmark="mt-bench", benchmark_version="v1", model=model, judge=JUDGE,
                         metrics=metrics, meta={"stage": stage, "step": step}))
    return key


def test_promotion_on_paired_judgments(tmp_path):
    rng = np.random.default_rng(9)
    q = rng.normal(6, 2.5, 80)
    with RunStore(tmp_path / "p.db") as st:
        _stored(st, "dpo", 100, _ratings(rng, q, 0))  # the incumbent
        _stored(st, "dpo", 200, _ratings(rng, q, 0.1))
        best = _stored(st, "dpo", 300, _ratings(rng, q, 1.2))  # clearly better
        _stored(st, "dpo", 400, _ratings(rng, q, -0.3), length=250)  # worse, shorter, intervals overlap
        d = promote(st, "dpo", PromotionPolicy(), mark=False)
        assert d.promoted[0].run == best and d.incumbent.step == 100
        assert "significantly better than the incumbent dpo-step100" in d.reasons[0]
        assert "paired-t on per-question differences of mt-bench/overall" in " ".join(d.reasons)
        (rec,) = st.promotions("dpo")
        assert rec.meta["method"].startswith("paired-t") and rec.meta["correction"] == "holm over 3 candidate(s)"
        assert rec.meta["alpha"] == 0.05 and rec.meta["margin"] == 1.0
        # the corrected score is the winner's-curse-corrected weighted score (MT-Bench weighs 10)
        assert rec.meta["corrected_score"] is not None and abs(rec.meta["corrected_score"] - rec.score) < 5
        tests = {t["candidate"]: t for t in rec.meta["tests"]}
        assert tests[best]["verdict"] == "better" and tests[best]["n"] == 80
        assert tests[best]["corrected_score"] == rec.meta["corrected_score"]
        rules = [t.meta["rule"] for t in d.decisions]
        assert rules == ["superiority", "superiority", "non-inferiority"]  # step 400 is shorter: non-inferiority
        assert [t.verdict for t in d.decisions][2] in ("worse", "inconclusive")

        # the checkpoint the stage started from, when it is one of the evaluated ones, is the incumbent
        step200 = next(c.run for c in d.candidates if c.step == 200)
        again = promote(st, "dpo", PromotionPolicy(), start=step200, record=False, mark=False)
        assert again.incumbent.step == 200 and len(again.decisions) == 3 and again.promoted[0].run == best
        assert "the checkpoint the stage started from" in " ".join(again.reasons)

        # equal candidates: the incumbent is kept, and the reason says what could have been detected
        _stored(st, "kto", 10, _ratings(rng, q, 0))
        for step in (20, 30, 40):
            _stored(st, "kto", step, _ratings(rng, q, 0))
        kept = promote(st, "kto", PromotionPolicy(), mark=False)
        assert kept.promoted[0].step == 10 and "(the incumbent; kept)" in kept.reasons[0]
        assert "smallest difference detectable" in kept.reasons[0]
        # kept: its corrected score is its own score on held-out halves where it is kept again (close to the score)
        assert abs(kept.promoted[0].corrected_score - kept.promoted[0].score) < 2


def test_promotion_tests_only_metrics_with_per_question_units(tmp_path):
    rng = np.random.default_rng(10)
    q = rng.normal(6, 2.5, 60)
    with RunStore(tmp_path / "p.db") as st:
        _stored(st, "dpo", 1, _ratings(rng, q, 0), extra={"turn_1": 6.0})
        better = _stored(st, "dpo", 2, _ratings(rng, q, 1.5), extra={"turn_1": 6.5})
        policy = PromotionPolicy(weights={"mt-bench/overall": 10.0, "mt-bench/turn_1": 10.0})
        d = promote(st, "dpo", policy, record=False, mark=False)
        assert d.promoted[0].run == better
        assert "tested on mt-bench/overall only: mt-bench/turn_1 has no per-question units" in " ".join(d.reasons)


def test_policy_fields_are_checked():
    from lioneval.errors import ConfigError

    with pytest.raises(ConfigError, match="alpha must be between 0 and 1"):
        PromotionPolicy(alpha=1.5)
    with pytest.raises(ConfigError, match="correction must be one of"):
        PromotionPolicy(correction="holmes")
    assert PromotionPolicy(correction="bonferroni", margin=0.5).margin == 0.5


# -- compare_runs -----------------------------------------------------------------------------------------------
def test_compare_rows_carry_the_decision(toy, tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        keys = [run(RunConfig(bench=("toy",), judge="scripted:fair-judge", limit=10, max_new_tokens=m), st,
                    backend=ScriptedBackend("echo"), spec=RunSpec(model="dpo-step10", stage="dpo", step=10)).run
                for m in (64, 3)]
        (row,) = compare_runs(st, *keys)
    assert {"a", "b", "diff", "ci_low", "ci_high", "n", "rounds", "seed", "unit"} <= set(row)
    assert row["method"] == D.METHOD and row["verdict"] in ("better", "worse", "inconclusive")
    assert row["ci_low"] <= row["diff"] <= row["ci_high"] and row["n"] == 10


# -- early stopping -------------------------------------------------------------------------------------------
def test_early_stopping_strikes_only_on_a_significant_paired_drop(tmp_path, caplog):
    pytest.importorskip("transformers", reason="needs the train extra")
    from transformers import TrainerControl, TrainerState

    from lioneval.trainers.callback import LionEvalCallback

    rng = np.random.default_rng(11)
    q = rng.normal(6, 2.5, 80)
    db = tmp_path / "s.db"
    effects = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: -1.5, 6: -1.6}  # a flat plateau, then a real drop
    with RunStore(db) as st:
        keys = {s: _stored(st, "sft", s, _ratings(rng, q, e)) for s, e in effects.items()}
        reports = {s: st.reports(run=k) for s, k in keys.items()}

    class Stored:
        store = str(db)

        def __call__(self, checkpoint, step):
            return reports[step]

    # only drops count (a plateau would stop at step 3: tests/test_early_stopping.py)
    cb = LionEvalCallback({"patience": 2, "store": str(db), "stop_on_plateau": False}, evaluator=Stored())
    state, control = TrainerState(), TrainerControl()
    with caplog.at_level("INFO", logger="lioneval.train"):
        for s in effects:
            cb._record(s, f"/ckpts/sft-step{s}", reports[s], None, state, control)
            if control.should_training_stop:
                break
    assert [e.in_contention for e in cb.evaluations] == [True, True, True, True, False, False]
    assert cb.stopped_at == 6 and "significantly worse than the best checkpoint" in cb.stop_reason
    plateau = cb.evaluations[1].decision
    assert plateau["method"] == D.METHOD and plateau["n"] == 80 and plateau["verdict"] == "inconclusive"
    assert cb.evaluations[4].decision["verdict"] == "worse"
    assert "the smallest difference detectable is" in caplog.text
    assert all(e.mde is not None and 0 < e.mde < 1 for e in cb.evaluations[1:])
    with RunStore(db, readonly=True) as st:
        (stop,) = st.early_stops()
        assert stop.meta["decision"]["method"] == D.METHOD and stop.meta["decision"]["verdict"] == "worse"
