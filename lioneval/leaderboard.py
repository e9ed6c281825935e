"""Leaderboards from stored judgments: one row per (judge, model) with every headline Estimate."""

from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Any

import numpy as np

from lioneval import benchmarks
from lioneval.checks.audit import NULL_MODEL_PREFIX
from lioneval.errors import DataError, LionEvalError
from lioneval.stats.bootstrap import MAX_FAILED_SHARE
from lioneval.store import RunStore
from lioneval.types import Answer

UNITS = ("question", "battle")


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
    unit: str | None = None,
    answers: list[Answer] | None = None,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """{judge: {model: Summary}} computed from the store's judgments and answers for one benchmark (``answers``: the
    benchmark's stored answers when the caller has read them already).

    ``data`` is the benchmark's data (AlpacaEval: the eval set, for the instruction order); ``settings`` are the
    benchmark's own constructor settings (AlpacaEval: ``lc_data`` and ``weights``, its official LC inputs);
    ``options`` go to its summarize (Arena-Hard: ``style_control``). ``unit`` is the resampling unit of the
    intervals: for a benchmark that offers a choice (Arena-Hard) None means "battle", the official battle-row
    bootstrap, so that imported official judgments give the published intervals; "question" keeps both games of a
    question (and every copy of a strong verdict) together, as lioneval's own reports do. Benchmarks without the
    choice always resample by question.
    """
    benchmark = benchmarks.load(bench, data, **(settings or {}))
    if unit is not None and unit not in UNITS:
        raise DataError(f"unknown resampling unit {unit!r}", fix=f"use one of {', '.join(UNITS)}")
    params = inspect.signature(benchmark.summarize).parameters
    if "unit" in params and params["unit"].kind is not inspect.Parameter.VAR_KEYWORD:
        options["unit"] = unit or "battle"
    elif unit == "battle":
        raise DataError(f"{bench} has no battle rows to resample: its intervals always resample questions",
                        fix="leave --unit out (or use --unit question) for this benchmark")
    # The null-model probe stores its constant answers' judgments beside real ones; they are not contenders.
    judgments = [j for j in store.judgments(benchmark=benchmark.name, judge=judge, model=models)
                 if not j.model.startswith(NULL_MODEL_PREFIX)]
    if answers is None:
        answers = store.answers(benchmark=benchmark.name)
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
    unit: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Rows sorted by the headline metric, best first; each metric as value/lower/upper (and se when known).

    Each row also says how much was lost: ``failed`` and ``dropped`` judgments (from the summary's counts), and
    ``reliable``: False when the headline estimate is marked unreliable (too few questions for an interval, or too
    many failures), or when more than MAX_FAILED_SHARE of the model's judgments failed; ``unreliable`` gives the
    reasons. ``unit``: see summarize_store.
    """
    # read once: the summaries and the length columns both need them (records carry the name without @VERSION)
    answers = store.answers(benchmark=benchmarks.split_version(bench)[0])
    summaries = summarize_store(store, bench, judge=judge, rounds=rounds, seed=seed, unit=unit, answers=answers,
                                **options)
    lengths = _lengths(answers)
    found = benchmarks.find(bench)
    try:  # a version may have its own headline (Arena-Hard v2.0: style control)
        key: str | None = benchmarks.load(bench).headline
    except LionEvalError:
        key = found.headline if found is not None else None
    rows = []
    for judge_id, per_model in summaries.items():
        for model, summary in per_model.items():
            row: dict[str, Any] = {"judge": judge_id, "model": model}
            for name, est in summary.metrics.items():
                row[name] = {
                    "value": est.value, "lower": est.ci_low, "upper": est.ci_high, "se": est.se, "n": est.n,
                    "method": est.method, "rounds": est.rounds, "seed": est.seed, "unit": est.unit,
                    "reliable": est.reliable,
                    **({"comparable": est.meta["comparable"]} if "comparable" in est.meta else {}),
                    **({"note": est.meta["note"]} if "note" in est.meta else {}),
                }
            row["counts"] = summary.counts
            row.update(_losses(summary, key))
            row.update(lengths.get(model, {"avg_chars": None, "avg_tokens": None}))
            rows.append(row)
    sign = -1 if found is None or found.higher_is_better else 1

    def headline_value(r: dict[str, Any]) -> Any:
        # Rows have only str keys: for an unknown benchmark (key None) every row takes the default, as r.get(None) did.
        cell = r.get(key, {}) if key is not None else {}
        return (cell or {}).get("value", sign * float("inf"))

    rows.sort(key=lambda r: (r["judge"], sign * headline_value(r), r["model"]))
    return rows


def _losses(summary: Any, headline: str | None) -> dict[str, Any]:
    """Failed and dropped judgments of a summary, and whether its headline can be trusted (with the reasons)."""
    counts = summary.counts
    failed, dropped = int(counts.get("failed", 0)), int(counts.get("dropped", 0))
    total = int(counts.get("judgments", counts.get("rows", 0)) or 0)
    reasons: list[str] = []
    est = summary.metrics.get(headline) if headline else None
    if est is None:
        reasons.append(str(summary.meta.get("error") or summary.meta.get("reason") or f"no {headline} estimate"))
    elif not est.reliable:
        note = est.meta.get("note")
        reasons += [str(r) for r in est.meta.get("unreliable", [])] + ([str(note)] if note else [])
        reasons = reasons or ["the estimate is marked unreliable"]
    # Benchmarks that do not mark their estimates themselves are held to the same failure limit here.
    if not summary.meta.get("unreliable") and total and failed / total > MAX_FAILED_SHARE:
        reasons.append(f"{failed} of {total} judgments failed ({failed / total:.0%}, above the "
                       f"{MAX_FAILED_SHARE:.0%} limit)")
    return {"failed": failed, "dropped": dropped, "reliable": not reasons, "unreliable": reasons}
