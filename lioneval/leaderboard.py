"""Leaderboards from stored judgments: one row per (judge, model) with every headline Estimate."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from lioneval import benchmarks
from lioneval.checks.audit import NULL_MODEL_PREFIX
from lioneval.store import RunStore
from lioneval.types import Answer


def summarize_store(
    store: RunStore,
    bench: str,
    *,
    judge: str | None = None,
    models: list[str] | None = None,
    rounds: int | None = None,
    seed: int = 0,
    data: str | None = None,
    settings: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """{judge: {model: Summary}} computed from the store's judgments and answers for one benchmark.

    ``data`` is the benchmark's data (AlpacaEval: the eval set, for the instruction order); ``settings`` are the
    benchmark's own constructor settings (AlpacaEval: ``lc_data`` and ``weights``, its official LC inputs);
    ``options`` go to its summarize (Arena-Hard: ``style_control``).
    """
    benchmark = benchmarks.load(bench, data, **(settings or {}))
    # The null-model probe stores its constant answers' judgments beside real ones; they are not contenders.
    judgments = [j for j in store.judgments(benchmark=bench, judge=judge, model=models)
                 if not j.model.startswith(NULL_MODEL_PREFIX)]
    answers = store.answers(benchmark=bench)
    by_judge = defaultdict(list)
    for j in judgments:
        by_judge[j.judge].append(j)
    kw: dict[str, Any] = {"seed": seed, **options}
    if rounds is not None:
        kw["rounds"] = rounds
    return {name: benchmark.summarize(js, answers, **kw) for name, js in sorted(by_judge.items())}


def _lengths(answers: list[Answer]) -> dict[str, dict[str, float | None]]:
    chars, tokens = defaultdict(list), defaultdict(list)
    for a in answers:
        chars[a.model].append(sum(len(t) for t in a.turns))
        if a.token_counts:
            tokens[a.model].append(sum(a.token_counts))
        elif isinstance(a.meta.get("style"), dict) and "token_len" in a.meta["style"]:
            tokens[a.model].append(a.meta["style"]["token_len"])
    return {
        m: {"avg_chars": float(np.mean(chars[m])), "avg_tokens": float(np.mean(tokens[m])) if tokens[m] else None}
        for m in chars
    }


def leaderboard(
    store: RunStore,
    bench: str,
    *,
    judge: str | None = None,
    rounds: int | None = None,
    seed: int = 0,
    **options: Any,
) -> list[dict[str, Any]]:
    """Rows sorted by the headline metric, best first; each metric as value/lower/upper (and se when known)."""
    summaries = summarize_store(store, bench, judge=judge, rounds=rounds, seed=seed, **options)
    lengths = _lengths(store.answers(benchmark=bench))
    rows = []
    for judge_id, per_model in summaries.items():
        for model, summary in per_model.items():
            row: dict[str, Any] = {"judge": judge_id, "model": model}
            for name, est in summary.metrics.items():
                row[name] = {
                    "value": est.value, "lower": est.ci_low, "upper": est.ci_high, "se": est.se, "n": est.n,
                    "method": est.method, "rounds": est.rounds, "seed": est.seed, "unit": est.unit,
                    **({"comparable": est.meta["comparable"]} if "comparable" in est.meta else {}),
                }
            row["counts"] = summary.counts
            row.update(lengths.get(model, {"avg_chars": None, "avg_tokens": None}))
            rows.append(row)
    found = benchmarks.find(bench)
    key = found.headline if found is not None else None
    sign = -1 if found is None or found.higher_is_better else 1

    def headline_value(r: dict[str, Any]) -> Any:
        # Rows have only str keys: for an unknown benchmark (key None) every row takes the default, as r.get(None) did.
        cell = r.get(key, {}) if key is not None else {}
        return (cell or {}).get("value", sign * float("inf"))

    rows.sort(key=lambda r: (r["judge"], sign * headline_value(r)))
    return rows
