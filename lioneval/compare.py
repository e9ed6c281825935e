"""Compare two runs: score differences with a paired bootstrap over the questions both runs answered.

Pairing matters: two checkpoints answer the same questions, and question difficulty is most of the variance, so the
CI of a difference is much narrower than two independent CIs suggest. Each benchmark's headline is a ratio of sums
over questions, which keeps the paired resample one matrix product:
  MT-Bench: mean rating (sum of ratings / number of rated turns);
  Arena-Hard: win rate against the baseline, strong verdicts weighted 3 (the Bradley-Terry win rate when every
  battle is against the baseline);
  AlpacaEval: raw win rate (mean preference). The length-controlled rate is a model fit, not a ratio: its
  difference is reported from the two stored reports, without a paired CI.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from lioneval.errors import LionEvalError
from lioneval.stats.bootstrap import resample_counts
from lioneval.store import RunStore
from lioneval.types import Judgment

METRIC = {"mt-bench": "overall", "arena-hard": "score", "alpaca-eval": "win_rate"}
SCALE = {"mt-bench": 1.0, "arena-hard": 100.0, "alpaca-eval": 100.0}


def per_question(judgments: list[Judgment], bench: str, strong_weight: int = 3) -> dict[str, tuple[float, float]]:
    """question id -> (numerator, denominator) of the benchmark's headline ratio."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for j in judgments:
        if bench == "arena-hard":
            for g in j.games:
                if g.value is None:
                    continue
                w = strong_weight if g.label and (">>" in g.label or "<<" in g.label) else 1
                acc[j.question_id][0] += w * g.value
                acc[j.question_id][1] += w
        elif j.value is not None:
            acc[j.question_id][0] += j.value
            acc[j.question_id][1] += 1
    return {q: (n, d) for q, (n, d) in acc.items() if d > 0}


def paired_difference(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]], *, rounds: int,
                      seed: int, scale: float = 1.0, level: float = 0.95) -> dict[str, Any]:
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise LionEvalError(
            f"the runs share {len(common)} judged questions; a paired comparison needs at least 2",
            fix="compare runs on the same benchmark data, judged by the same judge",
        )
    na, da = np.array([a[q] for q in common]).T
    nb, db = np.array([b[q] for q in common]).T
    k = resample_counts(len(common), rounds, seed)
    boot = scale * ((k @ na) / (k @ da) - (k @ nb) / (k @ db))
    va, vb = scale * na.sum() / da.sum(), scale * nb.sum() / db.sum()
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"a": float(va), "b": float(vb), "diff": float(va - vb), "ci_low": float(lo), "ci_high": float(hi),
            "n": len(common), "rounds": rounds, "seed": seed, "unit": "question"}


def compare_runs(store: RunStore, run_a: str, run_b: str, *, rounds: int = 1000, seed: int = 0) -> list[dict]:
    """One row per benchmark (and judge) both runs were judged on."""
    spec_a, spec_b = store.run(run_a), store.run(run_b)
    rows = []
    for bench in [b for b in spec_a.benchmarks if b in spec_b.benchmarks]:
        ja = store.judgments(benchmark=bench, model=spec_a.model)
        jb = store.judgments(benchmark=bench, model=spec_b.model)
        for judge in sorted({j.judge for j in ja} & {j.judge for j in jb}):
            diff = paired_difference(
                per_question([j for j in ja if j.judge == judge], bench),
                per_question([j for j in jb if j.judge == judge], bench),
                rounds=rounds, seed=seed, scale=SCALE.get(bench, 1.0),
            )
            rows.append({"benchmark": bench, "metric": METRIC.get(bench, "score"), "judge": judge,
                         "model_a": spec_a.model, "model_b": spec_b.model, **diff})
            if bench == "alpaca-eval":
                lc = _report_metric(store, spec_a.key, bench, judge), _report_metric(store, spec_b.key, bench, judge)
                if None not in lc:
                    rows[-1]["lc_diff"] = lc[0] - lc[1]  # type: ignore[operator]
    if not rows:
        raise LionEvalError(f"runs {run_a} and {run_b} share no benchmark judged by the same judge",
                            fix="judge both with one judge: `lioneval rejudge RUN --judge SPEC`")
    return rows


def _report_metric(store: RunStore, run: str, bench: str, judge: str) -> float | None:
    for r in store.reports(run=run, benchmark=bench):
        if r.judge == judge and "length_controlled_winrate" in r.metrics:
            return r.metrics["length_controlled_winrate"].value
    return None
