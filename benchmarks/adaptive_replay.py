"""Adaptive evaluation (``lioneval.stats.sequential``) replayed on real judgments, and simulated with known truth.

Replay: every pair of the 57 AlpacaEval 2.0 models (1,596 pairs; judge weighted_alpaca_eval_gpt4_turbo, each model's
per-instruction preference against the shared baseline) and of the MT-Bench models with published GPT-4 single
gradings (per question: the mean of its turns' ratings) in the validation data. For each pair, the questions both
models have are judged in ``--orders`` seeded random orders, ``--batch`` at a time, and judging stops as soon as the
anytime-valid test (betting confidence sequence, without replacement from the benchmark's questions, two-sided at
``alpha``: ``alpha / 2`` for each direction) says which model is better on per-question paired differences. A
sequential decision *contradicts* the full data when its direction differs from the sign of the full-data mean
difference (the strictest reading: a full-data tie contradicts both directions); the fixed-n paired t-test's
two-sided verdict on the full data is given beside it. Judge calls: a pair judged on K of N questions costs K / N of
the full comparison's calls (both models' answers to the same questions).

Simulation (known truth, continuous monitoring: a look after every batch): MT-Bench-like ratings of two equally good
models (mean of two turns of clip(round(q + e), 1, 10), question difficulty shared), i.i.d. questions, up to ``n``
questions; and a finite set of AlpacaEval-like paired win shares whose mean difference is exactly 0, drawn without
replacement. Type-I error of the sequential test (either direction) against the naive rule "stop as soon as the
fixed-n 95% paired t interval excludes 0" at the same looks; and the family-wise error of ``race`` (Holm over 5
equal candidates).

Run: ``python benchmarks/adaptive_replay.py --data ../shared/validation`` (about a minute on 2 cores). Prints tables;
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import stats

from lioneval.stats import sequential as S


# -- real judgments -----------------------------------------------------------------------------------------------
def alpaca_values(folder: Path) -> tuple[list[str], np.ndarray]:
    """(models, values (models, 805)): each model's win share against the baseline per instruction, NaN missing."""
    rows: dict[str, dict[int, float]] = defaultdict(dict)
    with open(folder / "alpaca_eval" / "annotations.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            p = r.get("preference")
            if p is None:
                continue
            # preference in [1, 2]: 2 = the model wins; 0 (an older encoding) is a draw
            rows[r["model"]][int(r["eval_idx"])] = 0.5 if p == 0 else float(p) - 1.0
    models = sorted(rows)
    n = 1 + max(i for m in rows.values() for i in m)
    vals = np.full((len(models), n), np.nan)
    for k, m in enumerate(models):
        for i, v in rows[m].items():
            vals[k, i] = v
    return models, vals


def mt_bench_values(folder: Path) -> tuple[list[str], np.ndarray]:
    """(models, values (models, 80)): mean GPT-4 rating over a question's turns (failed ratings left out)."""
    seen: dict[tuple[str, str, int, int], float] = {}
    with open(folder / "mt_bench" / "gpt4_single_judgments.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            key = (r["source"], r["model"], int(r["question_id"]), int(r["turn"]))
            if key in seen or r["score"] is None or not 1 <= float(r["score"]) <= 10:
                continue  # a model judged twice keeps its first judgment; -1 is a failed verdict
            seen[key] = float(r["score"])
    per: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (source, model, q, _), v in seen.items():
        per[f"{source}:{model}"][q].append(v)
    models = sorted(per)
    qids = sorted({q for m in per.values() for q in m})
    vals = np.full((len(models), len(qids)), np.nan)
    for k, m in enumerate(models):
        for j, q in enumerate(qids):
            if per[m].get(q):
                vals[k, j] = float(np.mean(per[m][q]))
    return models, vals


def replay(values: np.ndarray, low: float, high: float, *, orders: int, batch: int, alpha: float, seed: int,
           finite: bool = False, chunk: int = 64) -> dict[str, np.ndarray]:
    """Every pair of rows of ``values`` (models x questions on [low, high]) replayed in ``orders`` random orders;
    ``finite``: the test without replacement from the pair's questions, else the i.i.d. one (lioneval's default)."""
    pairs = list(combinations(range(values.shape[0]), 2))
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    span = high - low
    for start in range(0, len(pairs), chunk):
        block = pairs[start:start + chunk]
        diffs, ns = [], []
        n_max = values.shape[1]
        for a, b in block:
            d = values[a] - values[b]
            d = d[~np.isnan(d)]
            diffs.append(d)
            ns.append(d.size)
        x = np.full((len(block), orders, n_max), np.nan)
        for i, d in enumerate(diffs):
            for o in range(orders):
                x[i, o, :d.size] = (d[rng.permutation(d.size)] + span) / (2 * span)
        n = np.asarray(ns)
        res = S.sequential_test(x, 0.5, 0.5, alpha=alpha / 2, population=n[:, None] if finite else None,
                                looks=S.looks_every(n_max, batch), bet="agrapa")
        # a look at a count past a shorter pair's end reads that pair's last value: clamp the stop to its length
        up = np.minimum(res.above, n[:, None])
        down = np.minimum(res.below, n[:, None])
        first_up = (up > 0) & ((down == 0) | (up <= down))
        first_down = (down > 0) & ~first_up
        verdict = np.where(first_up, 1, np.where(first_down, -1, 0))
        stop = np.where(verdict == 1, up, np.where(verdict == -1, down, n[:, None]))
        full = np.array([d.mean() for d in diffs])
        t_full = np.array([_paired_t_verdict(d, alpha) for d in diffs])
        out["verdict"].append(verdict)
        out["stop"].append(stop)
        out["n"].append(np.broadcast_to(n[:, None], verdict.shape))
        out["full_sign"].append(np.broadcast_to(np.sign(full)[:, None], verdict.shape))
        out["full_t"].append(np.broadcast_to(t_full[:, None], verdict.shape))
    return {k: np.concatenate(v) for k, v in out.items()}


def _paired_t_verdict(d: np.ndarray, alpha: float) -> int:
    """The fixed-n two-sided paired t verdict on all of d: +1 better, -1 worse, 0 inconclusive."""
    se = d.std(ddof=1) / math.sqrt(d.size)
    if se == 0:
        return int(np.sign(d.mean()))
    t = d.mean() / se
    return int(np.sign(t)) if abs(t) > stats.t.ppf(1 - alpha / 2, d.size - 1) else 0


def figures(r: dict[str, np.ndarray]) -> dict[str, float]:
    decided = r["verdict"] != 0
    contra = decided & (r["verdict"] != r["full_sign"])
    contra_t = decided & (r["full_t"] != 0) & (r["verdict"] != r["full_t"])
    frac = r["stop"] / r["n"]
    agree_t = decided & (r["full_t"] != 0)
    return {
        "replays": int(decided.size),
        "decided_rate": float(decided.mean()),
        "undecided_rate": float(1 - decided.mean()),
        "contradiction_rate": float(contra.sum() / max(decided.sum(), 1)),
        "contradiction_vs_paired_t_rate": float(contra_t.sum() / max(decided.sum(), 1)),
        "median_call_fraction": float(np.median(frac[decided])) if decided.any() else 1.0,
        "mean_call_fraction_all": float(frac.mean()),
        "full_t_decided_rate": float((r["full_t"] != 0).mean()),
        "sequential_decides_full_t_decided": float(agree_t.sum() / max((r["full_t"] != 0).sum(), 1)),
    }


# -- simulation -----------------------------------------------------------------------------------------------------
def naive_stops(d: np.ndarray, looks: np.ndarray, alpha: float) -> np.ndarray:
    """Whether the fixed-n two-sided paired t interval excludes 0 at any look ((reps, n) differences)."""
    s1 = np.cumsum(d, -1)
    s2 = np.cumsum(d * d, -1)
    k = looks.astype(float)
    mean = s1[..., looks - 1] / k
    var = (s2[..., looks - 1] - k * mean ** 2) / np.maximum(k - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / np.sqrt(var / k)
    crit = stats.t.ppf(1 - alpha / 2, np.maximum(k - 1, 1))
    hit = (np.abs(t) > crit) & (k >= 2) & np.isfinite(t)
    return hit.any(-1)


def simulate(reps: int, n: int, batch: int, alpha: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    looks = S.looks_every(n, batch)
    # MT-Bench-like: two equally good models, i.i.d. questions, two turns each
    q = rng.normal(6.3, 3.5, (reps, n, 1))
    a = np.clip(np.rint(q + rng.normal(0, 2.2, (reps, n, 2))), 1, 10).mean(-1)
    b = np.clip(np.rint(q + rng.normal(0, 2.2, (reps, n, 2))), 1, 10).mean(-1)
    d = a - b
    res = S.sequential_test((d + 10) / 20, 0.5, 0.5, alpha=alpha / 2, looks=looks)
    iid_seq = float(((res.above > 0) | (res.below > 0)).mean())
    iid_naive = float(naive_stops(d, looks, alpha).mean())
    # AlpacaEval-like finite set: win shares with a mean difference of exactly 0, drawn without replacement
    size = 805
    base = rng.beta(0.6, 0.6, size)
    other = np.clip(base + rng.normal(0, 0.35, size), 0, 1)
    half = (other - base)[: size // 2]
    pop = np.concatenate([half, -half, [0.0]])  # a mean difference of exactly 0
    order = np.argsort(rng.random((reps, size)), -1)
    dw = pop[order]
    looks_w = S.looks_every(size, batch)
    res_w = S.sequential_test((dw + 1) / 2, 0.5, 0.5, alpha=alpha / 2, population=size, looks=looks_w)
    wor_seq = float(((res_w.above > 0) | (res_w.below > 0)).mean())
    wor_naive = float(naive_stops(dw, looks_w[looks_w < size], alpha).mean())
    # five equal candidates against one incumbent: family-wise error of race (Holm)
    c = np.clip(np.rint(q[:, None] + rng.normal(0, 2.2, (reps, 5, n, 2))), 1, 10).mean(-1)
    dc = c - a[:, None]
    r = S.race((dc + 10) / 20, 0.5, 0.5, alpha=alpha, batch=batch)
    fwer = float((r.verdict != 0).any(-1).mean())
    return {"iid_sequential": iid_seq, "iid_naive": iid_naive, "wor_sequential": wor_seq, "wor_naive": wor_naive,
            "race_fwer": fwer, "reps": reps, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the validation folder (with alpaca_eval/ and mt_bench/)")
    ap.add_argument("--orders", type=int, default=20, help="seeded random question orders per pair")
    ap.add_argument("--batch", type=int, default=10, help="questions judged between two looks")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2000, help="simulated runs per scenario")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder = Path(args.data)
    t0 = time.perf_counter()
    results: dict[str, dict[str, dict]] = {"iid": {}, "finite": {}}
    fractions: dict[str, list[np.ndarray]] = {"iid": [], "finite": []}
    # each benchmark's value scale as lioneval.adaptive uses it (Benchmark.value_scale: [0, 1] for win shares,
    # [0, 10] for MT-Bench ratings)
    data = {"alpaca-eval": (alpaca_values(folder), (0.0, 1.0)), "mt-bench": (mt_bench_values(folder), (0.0, 10.0))}
    for mode in results:
        for name, ((models, vals), scale) in data.items():
            t = time.perf_counter()
            r = replay(vals, *scale, orders=args.orders, batch=args.batch, alpha=args.alpha, seed=args.seed,
                       finite=mode == "finite")
            f = figures(r)
            fractions[mode].append((r["stop"] / r["n"])[r["verdict"] != 0])
            f.update(models=len(models), pairs=len(models) * (len(models) - 1) // 2,
                     seconds=round(time.perf_counter() - t, 1))
            results[mode][name] = f
    sim = simulate(args.reps, 800, args.batch, args.alpha, args.seed + 1)

    print(f"Replay on real judgments: {args.orders} seeded orders per pair, a look every {args.batch} questions, "
          f"alpha {args.alpha} (two-sided)")
    print(f"{'benchmark':<12}{'test':<8}{'models':>7}{'pairs':>7}{'decided':>9}{'contradict':>11}{'vs t-test':>10}"
          f"{'median calls':>13}{'mean calls':>11}{'full t decided':>15}{'s':>6}")
    for mode, per in results.items():
        for name, f in per.items():
            print(f"{name:<12}{mode:<8}{f['models']:>7}{f['pairs']:>7}{f['decided_rate']:>9.1%}"
                  f"{f['contradiction_rate']:>11.2%}{f['contradiction_vs_paired_t_rate']:>10.2%}"
                  f"{f['median_call_fraction']:>13.1%}{f['mean_call_fraction_all']:>11.1%}"
                  f"{f['full_t_decided_rate']:>15.1%}{f['seconds']:>6}")
    print("(test iid: lioneval's default, questions as a sample; finite: without replacement from the pair's "
          "questions, a prediction of the full run)")
    print()
    print(f"Simulation, two equally good models, a look every {args.batch} questions ({sim['reps']} runs each): "
          "share of runs that declared a difference")
    print(f"{'scenario':<44}{'sequential':>11}{'naive fixed-n CI':>18}")
    print(f"{'i.i.d. MT-Bench-like, up to 800 questions':<44}{sim['iid_sequential']:>11.3f}{sim['iid_naive']:>18.3f}")
    print(f"{'finite set of 805, without replacement':<44}{sim['wor_sequential']:>11.3f}{sim['wor_naive']:>18.3f}")
    print(f"{'5 equal candidates, Holm (family-wise)':<44}{sim['race_fwer']:>11.3f}{'':>18}")
    summary: dict = {}
    for mode in ("finite", "iid"):  # the headline figures are the default test's (iid)
        rows = list(results[mode].values())
        decided = sum(f["decided_rate"] * f["replays"] for f in rows)
        summary[mode] = {
            "contradiction_rate": sum(f["contradiction_rate"] * f["decided_rate"] * f["replays"] for f in rows)
            / max(decided, 1),
            "undecided_rate": 1 - decided / sum(f["replays"] for f in rows),
            "median_call_fraction": float(np.median(np.concatenate(fractions[mode]))),
            "benchmarks": results[mode]}
    summary = {
        **{k: v for k, v in summary["iid"].items() if k != "benchmarks"},
        "alpha": args.alpha,
        "test": "iid",
        "orders": args.orders,
        "batch": args.batch,
        "benchmarks": results["iid"],
        "finite": summary["finite"],
        "simulation": sim,
        "type1_sequential": max(sim["iid_sequential"], sim["wor_sequential"]),
        "type1_naive": min(sim["iid_naive"], sim["wor_naive"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
