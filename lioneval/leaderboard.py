"""Leaderboards from stored judgments: one row per (judge, model) with every headline Estimate."""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lioneval import benchmarks
from lioneval.errors import DataError, LionEvalError
from lioneval.stats.bootstrap import MAX_FAILED_SHARE
from lioneval.stats.workers import Pool, worker_count
from lioneval.store import RunStore
from lioneval.types import NULL_MODEL_PREFIX, Answer

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
    sizes: list[AnswerSize] | Callable[[], list[AnswerSize]] | None = None,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """{judge: {model: Summary}} computed from the store's judgments and answers for one benchmark (``answers``: the
    benchmark's stored answers when the caller has read them already; ``sizes``: their :func:`answer_sizes`, or a
    function returning them).

    A benchmark that scores from a few fields of each judgment and its answers' lengths (``summarize_stored``) has
    the database read just those fields (``RunStore.record_fields``): no record is validated, and no text is fetched.

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
    kw: dict[str, Any] = {"seed": seed, **options}
    if rounds is not None:
        kw["rounds"] = rounds
    if hasattr(benchmark, "summarize_stored") and answers is None:
        if sizes is not None:
            given = sizes
            return _summarize_stored(store, benchmark, judge, models, given if callable(given) else lambda: given, kw)
        with _stored_reads(store, benchmark.name) as read_sizes:
            return _summarize_stored(store, benchmark, judge, models, read_sizes, kw)
    # The null-model probe stores its constant answers' judgments beside real ones; they are not contenders.
    judgments = [j for j in store.judgments(benchmark=benchmark.name, judge=judge, model=models)
                 if not j.model.startswith(NULL_MODEL_PREFIX)]
    if answers is None:
        answers = store.answers(benchmark=benchmark.name)
    by_judge = defaultdict(list)
    for j in judgments:
        by_judge[j.judge].append(j)
    return {name: benchmark.summarize(js, answers, **kw) for name, js in sorted(by_judge.items())}


# (question id, model, characters of the first turn, characters of all turns, tokens or None) of one answer
AnswerSize = tuple[str, str, int, int, "float | None"]


_SIZE_FIELDS: list[tuple[str, tuple[str | int, ...]]] = [
    ("chars", ("turns", 0)), ("chars", ("turns", 1)), ("length", ("turns",)), ("text", ("token_counts",)),
    ("number", ("meta", "style", "token_len")),
]


def answer_sizes(store: RunStore, benchmark: str) -> list[AnswerSize]:
    """The sizes of a benchmark's stored answers, in stored order, read by the database (no text is fetched).
    Tokens: the answer's token counts summed, else its style features' ``token_len``, else None."""
    out: list[AnswerSize] = []
    longer = False
    for qid, model, first, second, n_turns, counts, style_tokens in store.record_fields(
            "answers", ("question_id", "model"), _SIZE_FIELDS, benchmark=benchmark):
        if not (isinstance(n_turns, int) and n_turns >= 1 and isinstance(first, int)):
            raise DataError(f"a stored {benchmark} answer record is damaged (question {qid!r}, model {model!r}: no "
                            "turns)", fix="`lioneval export FILE` leaves damaged records out: export, then `lioneval "
                                          "import jsonl FILE` into a new store")
        longer |= n_turns > 2
        tokens = None
        if counts is not None:
            parsed = json.loads(counts) if isinstance(counts, str) else counts
            tokens = sum(parsed) if isinstance(parsed, list) and parsed else None
        if tokens is None and style_tokens is not None:
            tokens = style_tokens
        out.append((qid, model, first, first + (second or 0), tokens))
    if longer:  # more than two turns: their characters summed from the records
        totals = [sum(len(t) for t in d["turns"]) for d in store.record_dicts("answers", benchmark=benchmark)]
        out = [(q, m, first, total, tokens) for (q, m, first, _, tokens), total in zip(out, totals, strict=True)]
    return out


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while a leaderboard reads and scores stored records: it builds some hundred
    thousand tuples that live until the end and hold no cycles, and the collector's passes over them (4% of the CPU
    time of the AlpacaEval leaderboard of 57 models) free nothing. It runs again afterwards, unless it was off."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@contextlib.contextmanager
def _stored_reads(store: RunStore, bench: str) -> Iterator[Callable[[], list[AnswerSize]]]:
    """For a leaderboard read from stored fields: the cycle collector paused (:func:`_collector_paused`) and a
    function returning the benchmark's :func:`answer_sizes`, read meanwhile where a second thread is usable
    (:func:`_sizes_reader`)."""
    with _collector_paused(), Pool(worker_count(tasks=2)) as pool:
        yield _sizes_reader(pool, store, bench)


def _sizes_reader(pool: Pool, store: RunStore, bench: str) -> Callable[[], list[AnswerSize]]:
    """A function returning :func:`answer_sizes`, read meanwhile on a connection of its own where ``pool`` has a
    thread: the database parses the answers' JSON there while this thread's connection parses the judgments'
    (SQLite leaves Python's lock while it steps)."""
    if pool.workers < 2:
        return functools.cache(lambda: answer_sizes(store, bench))

    def read() -> list[AnswerSize]:
        with RunStore(store.path, readonly=True) as own:
            return answer_sizes(own, bench)

    return pool.submit(read).result


def _summarize_stored(store: RunStore, benchmark: Any, judge: str | None, models: list[str] | None,
                      sizes: Callable[[], list[AnswerSize]], kw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    chars: dict[tuple[str, str], float] | None = None
    names = [judge] if judge is not None else store.distinct("judgments", "judge", benchmark=benchmark.name)
    out = {}
    for name in sorted(names):
        rows = store.record_fields("judgments", benchmark.stored_columns, benchmark.stored_fields,
                                   benchmark=benchmark.name, judge=name, model=models)
        # The null-model probe stores its constant answers' judgments beside real ones; they are not contenders.
        at = benchmark.stored_columns.index("model")
        rows = [r for r in rows if not r[at].startswith(NULL_MODEL_PREFIX)]
        if not rows:
            continue
        if chars is None:
            chars = {}
            for qid, model, first, _, _ in sizes():  # of several answers to one question by one model the longest
                if first > chars.get((qid, model), -1.0):
                    chars[qid, model] = float(first)
        out[name] = benchmark.summarize_stored(rows, chars, **kw)
    return out


def _lengths(sizes: list[AnswerSize]) -> dict[str, dict[str, float | None]]:
    chars, tokens = defaultdict(list), defaultdict(list)
    for _, model, _, total, n_tokens in sizes:
        chars[model].append(total)
        if n_tokens is not None:
            tokens[model].append(n_tokens)
    return {
        m: {"avg_chars": float(np.mean(chars[m])), "avg_tokens": float(np.mean(tokens[m])) if tokens[m] else None}
        for m in chars
    }


def _sizes(answers: list[Answer]) -> list[AnswerSize]:
    out: list[AnswerSize] = []
    for a in answers:
        style = a.meta.get("style")
        tokens = (sum(a.token_counts) if a.token_counts
                  else style["token_len"] if isinstance(style, dict) and "token_len" in style else None)
        out.append((a.question_id, a.model, len(a.turns[0]) if a.turns else 0, sum(len(t) for t in a.turns), tokens))
    return out


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
    name = benchmarks.split_version(bench)[0]  # records carry the name without @VERSION
    found = benchmarks.find(bench)
    # Read once: the summaries and the length columns both need them (only their sizes, where the benchmark scores
    # from those).
    if hasattr(found, "summarize_stored"):
        with _stored_reads(store, name) as read_sizes:
            summaries = summarize_store(store, bench, judge=judge, rounds=rounds, seed=seed, unit=unit,
                                        sizes=read_sizes, **options)
            sizes = read_sizes()
    else:
        answers = store.answers(benchmark=name)
        summaries = summarize_store(store, bench, judge=judge, rounds=rounds, seed=seed, unit=unit, answers=answers,
                                    **options)
        sizes = _sizes(answers)
    lengths = _lengths(sizes)
    try:  # a version may have its own headline (Arena-Hard v2.0: style control)
        key: str | None = benchmarks.load(bench).headline
    except LionEvalError:
        key = found.headline if found is not None else None
    partial = _partial(store, benchmarks.split_version(bench)[0])
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
            if (judge_id, model) in partial:  # an adaptive run that stopped once decided: not a full result
                row["partial"] = partial[(judge_id, model)]
                row["reliable"] = False
                row["unreliable"] = [*row["unreliable"], row["partial"]]
            row.update(lengths.get(model, {"avg_chars": None, "avg_tokens": None}))
            rows.append(row)
    sign = -1 if found is None or found.higher_is_better else 1

    def headline_value(r: dict[str, Any]) -> Any:
        # Rows have only str keys: for an unknown benchmark (key None) every row takes the default, as r.get(None) did.
        cell = r.get(key, {}) if key is not None else {}
        return (cell or {}).get("value", sign * float("inf"))

    rows.sort(key=lambda r: (r["judge"], sign * headline_value(r), r["model"]))
    return rows


def _partial(store: RunStore, bench: str) -> dict[tuple[str, str], str]:
    """(judge, model) -> why its judgments are not a full run: every stored report of it is an adaptive run that
    stopped before judging every question (``lioneval.adaptive``)."""
    full, partial = set(), {}
    for r in store.reports(benchmark=bench):
        rec = r.meta.get("adaptive")
        if isinstance(rec, dict) and rec.get("partial"):
            partial[(r.judge, r.model)] = (f"adaptive run: judged {rec.get('questions_used')} of "
                                           f"{rec.get('questions_total')} questions, stopped once decided")
        else:
            full.add((r.judge, r.model))
    return {k: v for k, v in partial.items() if k not in full}


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
