"""Promotion and early stopping by paired, error-controlled decisions (lioneval.decisions) against the old rules, in
simulation.

Data: MT-Bench-like single-grading on ``n`` = 80 questions, two turns each: rating = clip(round(q_i + mu_j + e), 1,
10) with question difficulty q_i ~ N(6.3, 3.5) shared by every checkpoint and per-answer noise e ~ N(0, 2.2). That
gives what real GPT-4 judgments of related models show (validation/mt_bench: per-question SD of a model's score about
3, SD of the per-question difference between two related models 1.5-1.9). True scores are exact (normal CDF of the
rounded, clipped rating), so "truth" is the population mean over questions. Early stopping is also run with judge
noise only (no shared question difficulty: checkpoints' per-question scores uncorrelated), the regime in which the
old rule's unpaired interval is as narrow as the differences it judges.

Rules compared:
* old promotion: each checkpoint's 95% interval (mean +- 1.96 SE); the top score wins unless intervals overlap it,
  and then the earliest checkpoint (the incumbent) wins ties ("shorter/earlier wins ties");
* new promotion (``lioneval.decisions.select``): every later checkpoint vs the incumbent (the earliest) by a
  one-sided paired t-test, Holm-adjusted across the K candidates at alpha 0.05; the passing one with the largest
  difference is promoted; its score is reported corrected by conditional cross-fitting (``decisions.crossfit``);
* old early stopping: a strike when a score is below the best one's lower CI bound; new: a strike when the best
  is significantly better on paired differences (``decisions.decline``: one-sided, Bonferroni over the earlier
  evaluations, at ``decisions.strike_level``: alpha * patience / (horizon - 1), which holds the plateau false-stop
  rate within the horizon of 10 evaluations at alpha); stop after ``patience`` strikes in a row.

Prints tables; the last line is one JSON object. Run: ``python benchmarks/decision_sim.py [--reps N]``
(default 2000 per scenario: about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from scipy import stats

from lioneval import decisions as D

N_QUESTIONS = 80
Q_MEAN, Q_SD, NOISE_SD = 6.3, 3.5, 2.2
ALPHA = 0.05


def true_score(mu: float) -> float:
    """E[clip(round(q + mu + e), 1, 10)] with q + e normal: exact."""
    sd = math.hypot(Q_SD, NOISE_SD)
    cdf = stats.norm.cdf((np.arange(1.5, 10.5, 1.0) - Q_MEAN - mu) / sd)  # P(X < k + 0.5), k = 1..9
    p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return float((np.arange(1, 11) * p).sum())


def generate(rng: np.random.Generator, reps: int, mus: np.ndarray, n: int = N_QUESTIONS, *,
             q_sd: float | None = None, noise_sd: float | None = None) -> np.ndarray:
    """Per-question scores (mean of two turns), (reps, checkpoints, n); the questions are shared."""
    q = rng.normal(Q_MEAN, Q_SD if q_sd is None else q_sd, (reps, 1, n, 1))
    x = q + mus[None, :, None, None] + rng.normal(0, NOISE_SD if noise_sd is None else noise_sd,
                                                  (reps, len(mus), n, 2))
    return np.clip(np.rint(x), 1, 10).mean(-1)


def panel(inc: np.ndarray, cands: np.ndarray) -> D.Panel:
    return D.Panel(tuple(f"q{i}" for i in range(inc.shape[-1])), np.stack([inc, np.ones_like(inc)], -1),
                   np.stack([cands, np.ones_like(cands)], -1), np.ones(cands.shape, bool))


# -- promotion ------------------------------------------------------------------------------------------------------
def old_promotion(scores: np.ndarray) -> np.ndarray:
    """The CI-overlap rule: index of the promoted checkpoint (0 = the incumbent, the earliest)."""
    n = scores.shape[-1]
    m = scores.mean(-1)
    hw = 1.96 * scores.std(-1, ddof=1) / math.sqrt(n)
    top = np.argmax(m, -1)
    top_low = np.take_along_axis(m - hw, top[:, None], -1)
    tied = (m + hw >= top_low)
    tied[np.arange(len(top)), top] = True
    return np.argmax(tied, -1)  # the earliest among the tied


def new_promotion(scores: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index promoted by the paired Holm rule (0 = incumbent kept) and the corrected reported score."""
    p = panel(scores[:, 0], scores[:, 1:])
    st = D.contrast([p])
    sel = D.select(st, alpha=ALPHA, correction="holm")
    corrected, _ = D.crossfit([p], sel.pick, alpha=ALPHA, correction="holm", seed=seed)
    reported = scores[:, 0].mean(-1) + corrected  # the incumbent's score + the held-out difference
    return sel.pick + 1, reported


def promotion_table(rng: np.random.Generator, reps: int) -> dict:
    print(f"== promotion: {N_QUESTIONS} questions, K later candidates vs the incumbent, alpha {ALPHA}, {reps} reps")
    print(f"{'scenario (MT-Bench points)':<34}{'K':>3}  {'new: promoted':>14}{'old: promoted':>14}  {'new bias':>9}"
          f"{'new as is':>10}{'best score':>11}{'old bias':>9}")
    out: dict = {}
    scenarios = [("null: all equal", k, None, 0.0) for k in (1, 5, 20)] + \
                [(f"one later better by {true_score(d) - true_score(0):.2f}", k, k, d) for k in (1, 5, 20)
                 for d in (0.3, 0.5, 0.8)] + \
                [(f"all later better by {true_score(0.8) - true_score(0):.2f}", k, "all", 0.8) for k in (5, 20)]
    for name, k, better, delta in scenarios:
        mus = np.zeros(k + 1)
        if better == "all":
            mus[1:] = delta
        elif better is not None:
            mus[better] = delta
        truth = np.array([true_score(m) for m in mus])
        scores = generate(rng, reps, mus)
        new_pick, reported = new_promotion(scores, seed=int(rng.integers(1 << 31)))
        old_pick = old_promotion(scores)
        naive_pick = np.argmax(scores.mean(-1), -1)  # plain best score, reported as is (the audit's 0.22)
        naive_bias = (np.take_along_axis(scores.mean(-1), naive_pick[:, None], -1)[:, 0] - truth[naive_pick])
        new_err = reported - truth[new_pick]
        as_is = np.take_along_axis(scores.mean(-1), new_pick[:, None], -1)[:, 0] - truth[new_pick]
        old_err = np.take_along_axis(scores.mean(-1), old_pick[:, None], -1)[:, 0] - truth[old_pick]
        if better is None or better == "all":  # promoted away from the incumbent
            new_rate, old_rate = (new_pick != 0).mean(), (old_pick != 0).mean()
        else:
            new_rate, old_rate = (new_pick == better).mean(), (old_pick == better).mean()
        row = {"new": float(new_rate), "old": float(old_rate), "new_bias": float(new_err.mean()),
               "new_bias_se": float(new_err.std(ddof=1) / math.sqrt(reps)), "new_as_is_bias": float(as_is.mean()),
               "naive_bias": float(naive_bias.mean()),
               "old_bias": float(old_err.mean()), "true_effect": float(truth.max() - truth[0])}
        key = "null" if better is None else ("all" if better == "all" else f"d{delta:g}")
        out[f"{key}_k{k}"] = row
        print(f"{name:<34}{k:>3}  {new_rate:>14.3f}{old_rate:>14.3f}  {row['new_bias']:>+9.3f}"
              f"{row['new_as_is_bias']:>+10.3f}{row['naive_bias']:>+11.3f}{row['old_bias']:>+9.3f}")
    print("promoted: a checkpoint other than the incumbent (null and all-better rows; null: the family-wise error) "
          "or the better one; bias: reported minus true score of the promoted checkpoint (new: cross-fit corrected; "
          "new as is: the new rule's pick, uncorrected; best score: the highest score, as is; old: the old rule's "
          "pick as is)\n")
    return out


# -- early stopping ---------------------------------------------------------------------------------------------------
def early_stopping(scores: np.ndarray, patience: int, rule: str) -> np.ndarray:
    """The evaluation index at which training stops (-1: never), over (reps, T, n) scores."""
    reps, t_max, n = scores.shape
    m = scores.mean(-1)
    low = m - 1.96 * scores.std(-1, ddof=1) / math.sqrt(n)
    best = np.zeros(reps, int)
    strikes = np.zeros(reps, int)
    stop = np.full(reps, -1)
    rows = np.arange(reps)
    level = D.strike_level(ALPHA, patience, t_max)
    for t in range(1, t_max):
        if rule == "old":
            strike = m[:, t] <= low[rows, best]
        else:
            st = D.contrast([panel(scores[rows, best], scores[:, t][:, None])])
            strike = D.decline(st, t, alpha=level)[0][:, 0]
        live = stop < 0
        strikes = np.where(strike, strikes + 1, 0)
        stop = np.where(live & (strikes >= patience), t, stop)
        best = np.where(m[:, t] > m[rows, best], t, best)
    return stop


def stopping_table(rng: np.random.Generator, reps: int, evaluations: int = 10) -> dict:
    print(f"== early stopping: {evaluations} evaluations on {N_QUESTIONS} questions, {reps} reps; new rule's plateau "
          f"false-stop rate held at {ALPHA} over the {evaluations}")
    print(f"{'scenario':<52}{'patience':>9}  {'new: stops':>11}{'old: stops':>11}  {'new: mean stop':>15}"
          f"{'old: mean stop':>15}")
    out: dict = {}
    drop_mu = np.where(np.arange(evaluations) >= 4, -0.5, 0.0)
    regimes = (("MT-Bench-like", "", {}), ("judge noise only", "_noise", {"q_sd": 0.0, "noise_sd": 2.8}))
    for regime, suffix, kw in regimes:
        flat = generate(rng, reps, np.zeros(evaluations), **kw)
        drop = generate(rng, reps, drop_mu, **kw)
        for name, data, key in ((f"{regime}: flat plateau (false stops)", flat, "plateau"),
                                (f"{regime}: drop of 0.5 raw from evaluation 5", drop, "drop")):
            for patience in (1, 2, 3):
                new, old = early_stopping(data, patience, "new"), early_stopping(data, patience, "old")
                row = {"new": float((new >= 0).mean()), "old": float((old >= 0).mean()),
                       "new_mean_stop": float(new[new >= 0].mean() + 1) if (new >= 0).any() else None,
                       "old_mean_stop": float(old[old >= 0].mean() + 1) if (old >= 0).any() else None}
                out[f"{key}{suffix}_p{patience}"] = row
                ms = [f"{v:>15.2f}" if v is not None else f"{'-':>15}"
                      for v in (row["new_mean_stop"], row["old_mean_stop"])]
                print(f"{name:<52}{patience:>9}  {row['new']:>11.3f}{row['old']:>11.3f}  {ms[0]}{ms[1]}")
    print(f"stops: share of runs stopped within the {evaluations} evaluations; mean stop: the evaluation (1-based) "
          f"it happened at; the drop is {true_score(0) - true_score(-0.5):.2f} MT-Bench points\n")
    return out


# -- coverage of the paired interval ---------------------------------------------------------------------------------
def coverage_table(rng: np.random.Generator, reps: int) -> dict:
    print(f"== 95% interval of a paired difference: coverage, {reps} reps")
    print(f"{'n':>4}{'effect':>8}  {'paired t':>9}{'percentile bootstrap':>22}")
    out = {}
    for n in (10, 20, 80):
        for delta in (0.0, 0.5):
            mus = np.array([0.0, delta])
            truth = true_score(delta) - true_score(0.0)
            s = generate(rng, reps, mus, n)
            st = D.contrast([panel(s[:, 0], s[:, 1:])])
            q = stats.t.ppf(0.975, n - 1)
            lo, hi = st.diff[:, 0] - q * st.se[:, 0], st.diff[:, 0] + q * st.se[:, 0]
            t_cov = float(((lo <= truth) & (truth <= hi)).mean())
            d = s[:, 1] - s[:, 0]
            idx = rng.integers(0, n, (reps, 400, n))
            boot = np.take_along_axis(d[:, None, :], idx, -1).mean(-1)
            blo, bhi = np.quantile(boot, [0.025, 0.975], axis=-1)
            b_cov = float(((blo <= truth) & (truth <= bhi)).mean())
            out[f"n{n}_d{delta:g}"] = {"t": t_cov, "bootstrap": b_cov}
            print(f"{n:>4}{delta:>8.1f}  {t_cov:>9.3f}{b_cov:>22.3f}")
    print()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="simulated runs per scenario")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    calib = generate(rng, 1, np.zeros(2))[0]
    print(f"calibration: per-question score SD {calib[0].std(ddof=1):.2f}, paired-difference SD "
          f"{(calib[1] - calib[0]).std(ddof=1):.2f} (real GPT-4 judgments of related models: about 3 and 1.5-1.9); "
          f"MDE at n={N_QUESTIONS}, alpha {ALPHA}: {D.mde(N_QUESTIONS, (calib[1] - calib[0]).std(ddof=1)):.2f}\n")
    cov = coverage_table(rng, args.reps)
    promo = promotion_table(rng, args.reps)
    stop = stopping_table(rng, args.reps)
    # one (or no) better checkpoint: the case promotion is for; "all better" is reported beside it
    biases = [(r["new_bias"], r["new_bias_se"]) for k, r in promo.items() if not k.startswith("all")]
    worst = max(biases, key=lambda b: abs(b[0]))
    summary = {
        "fwer_k1": promo["null_k1"]["new"], "fwer_k5": promo["null_k5"]["new"], "fwer_k20": promo["null_k20"]["new"],
        "fwer_old_k20": promo["null_k20"]["old"],
        "power_new": promo["d0.8_k5"]["new"], "power_old": promo["d0.8_k5"]["old"],
        "power_setting": f"K=5 later candidates, one better by {promo['d0.8_k5']['true_effect']:.2f} MT-Bench "
                         "points, n=80",
        "power_new_k1": promo["d0.8_k1"]["new"], "power_new_k20": promo["d0.8_k20"]["new"],
        "selection_bias": worst[0], "selection_bias_se": worst[1],
        "selection_bias_all_better_k20": promo["all_k20"]["new_bias"],
        "naive_bias_all_better_k20": promo["all_k20"]["naive_bias"],
        "selection_bias_null_k20": promo["null_k20"]["new_bias"],
        "naive_best_bias_null_k20": promo["null_k20"]["naive_bias"],
        "plateau_false_stop_old": max(r["old"] for k, r in stop.items() if k.startswith("plateau")),
        "plateau_false_stop_new": max(r["new"] for k, r in stop.items() if k.startswith("plateau")),
        "plateau_false_stop_old_noise_p1": stop["plateau_noise_p1"]["old"],
        "plateau_false_stop_new_noise_p1": stop["plateau_noise_p1"]["new"],
        "drop_stop_new_p2": stop["drop_p2"]["new"], "drop_stop_old_p2": stop["drop_p2"]["old"],
        "coverage_t_n10": cov["n10_d0"]["t"], "coverage_bootstrap_n10": cov["n10_d0"]["bootstrap"],
        "reps": args.reps, "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"selection bias of the new rule's reported score: largest over the null and one-better scenarios "
          f"{worst[0]:+.3f} (simulation SE {worst[1]:.3f}); all 20 later ones equally better: "
          f"{promo['all_k20']['new_bias']:+.3f} (naive best score: {promo['all_k20']['naive_bias']:+.3f}); naive best "
          f"of 21 equal checkpoints: {promo['null_k20']['naive_bias']:+.3f}")
    print(json.dumps({**summary, "promotion": promo, "early_stopping": stop, "coverage": cov}))


if __name__ == "__main__":
    main()
