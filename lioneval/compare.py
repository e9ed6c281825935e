"""Compare two runs: score differences paired over the questions both runs answered (``lioneval.decisions``).

Pairing matters: two checkpoints answer the same questions, and question difficulty is most of the variance, so the
CI of a difference is much narrower than two independent CIs suggest. Each run contributes its own linked
judgments (its own answers, settings and judge), so two runs of one checkpoint under different settings are two
different things to compare. Each benchmark states its headline as a ratio of sums over questions
(``Benchmark.paired_units``), which keeps the paired resample one matrix product (MT-Bench: mean rating;
Arena-Hard: strong-weighted win rate against the baseline; AlpacaEval: raw win rate). A metric that is a model fit
(AlpacaEval's length-controlled rate) is reported from the two stored reports, without a paired CI.

Each row is a ``Decision`` of A against B (``lioneval.decisions.compare``): a paired studentized-t interval at
``level`` on the per-question differences, and a verdict (better / worse / inconclusive, in the direction the
benchmark says is better) that promotion and early stopping would read the same way. ``paired_difference`` keeps
the paired percentile bootstrap for parity with older outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lioneval import benchmarks
from lioneval.decisions import compare
from lioneval.errors import LionEvalError
from lioneval.stats.bootstrap import resample_counts
from lioneval.store import RunStore
from lioneval.types import Judgment


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


def compare_runs(store: RunStore, run_a: str, run_b: str, *, rounds: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[dict]:
    """One row per benchmark and judge that judged both runs, each side from its own run's judgments.

    ``rounds`` and ``seed`` are kept for callers of the bootstrap version; the paired-t interval draws nothing,
    so a row carries ``rounds`` None and the seed it was asked for."""
    spec_a, spec_b = store.run(run_a), store.run(run_b)
    rows, skipped = [], []
    for spec_name in [b for b in spec_a.benchmarks if b in spec_b.benchmarks]:
        bench = benchmarks.load(spec_name)  # NAME@VERSION as the runs named it; records carry the name alone
        name = bench.name
        ja: list[Judgment] = store.linked(spec_a.key, "judgments", benchmark=name)  # type: ignore[assignment]
        jb: list[Judgment] = store.linked(spec_b.key, "judgments", benchmark=name)  # type: ignore[assignment]
        ja = [j for j in ja if j.model == spec_a.model]
        jb = [j for j in jb if j.model == spec_b.model]
        for judge in sorted({j.judge for j in ja} & {j.judge for j in jb}):
            ua = bench.paired_units([j for j in ja if j.judge == judge])
            ub = bench.paired_units([j for j in jb if j.judge == judge])
            if len(set(ua) & set(ub)) < 2:
                skipped.append(f"{name} by {judge}: {len(set(ua) & set(ub))} questions judged in both")
                continue
            d = compare(ua, ub, scale=bench.paired_scale, higher_is_better=bench.higher_is_better,
                        alpha=1 - level, benchmark=name, metric=bench.paired_metric, candidate_run=spec_a.key,
                        incumbent_run=spec_b.key)
            rows.append({"benchmark": name, "metric": bench.paired_metric, "judge": judge,
                         "model_a": spec_a.model, "model_b": spec_b.model,
                         "a": d.meta["candidate_score"], "b": d.meta["incumbent_score"], "diff": d.diff,
                         "ci_low": d.ci_low, "ci_high": d.ci_high, "n": d.n, "rounds": None, "seed": seed,
                         "unit": "question", "verdict": d.verdict, "method": d.method, "p_value": d.p_value,
                         "level": level, "mde": d.meta["mde"]})
            if bench.headline != bench.paired_metric:
                ha = _report_metric(store, spec_a.key, name, judge, bench.headline)
                hb = _report_metric(store, spec_b.key, name, judge, bench.headline)
                if ha is not None and hb is not None:
                    rows[-1]["headline"] = bench.headline
                    rows[-1]["headline_diff"] = ha - hb
    if not rows:
        why = "; ".join(skipped) if skipped else "no benchmark judged by the same judge"
        raise LionEvalError(f"runs {run_a} and {run_b} cannot be compared ({why})",
                            fix="judge both with one judge: `lioneval rejudge RUN --judge SPEC`")
    return rows


def _report_metric(store: RunStore, run: str, bench: str, judge: str, metric: str) -> float | None:
    for r in store.reports(run=run, benchmark=bench):
        if r.judge == judge and metric in r.metrics:
            return r.metrics[metric].value
    return None
