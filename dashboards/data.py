"""Store -> pandas DataFrames for the dashboard. Pure functions: no Streamlit, testable on their own.

Every view reads the store through this module, and this module reads it only through a read-only
:class:`~lioneval.store.RunStore` (no SQL here). The judge-comparison reads are the hot path (a training job with
50 checkpoints x 3 benchmarks x 3 judges x 500 questions leaves ~225k judgments), so they do not validate records
through pydantic: :meth:`RunStore.judgment_columns` returns the few fields a page needs as tuples, and full records
(question, answers, judge rationales) are fetched only for the rows a page shows. What a view needs to know about a
benchmark (headline metric, length-controlled twin, summary toggles) it asks the benchmark (:func:`bench_info`).

Conventions of the judge comparison, also shown in the app:

- Items: judgments of different judges are matched on (question, model, turn, baseline); the judge-specific
  ``inputs`` hash differs between judges because their prompt templates differ.
- Pairwise verdicts are compared as categories win / tie / loss (the model's win share above, at or below 1/2):
  agreement is the share of items with the same category and kappa is Cohen's unweighted kappa on them.
- Ratings (1-10) are rounded to whole points: agreement is exact agreement, ``agreement_within_1`` allows
  one point, and kappa is Cohen's kappa with quadratic weights, which ranks a 7-vs-8 split as milder than 2-vs-9.
- Model scores for the rank correlation are the mean judged value on the items both judges judged (ratings: mean
  rating; pairwise: mean win share in %), so the two judges are compared on the same questions. The leaderboard
  page shows the benchmark's own estimators (Bradley-Terry, LC GLM) with their intervals.
- Human labels (the votes of a ``human`` judge, :mod:`lioneval.human_labels`) are compared vote by vote, as the
  MT-Bench paper does: a rating judge's preference on a pair is implied by its two ratings (equal ratings tie), and
  agreement is stated with ties and without them (votes where neither side called a tie).
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lioneval.checks.audit import NULL_MODEL_PREFIX
from lioneval.errors import LionEvalError
from lioneval.human_labels import is_human
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore, is_url
from lioneval.types import CheckResult, Judgment, Report

__all__ = [
    "BenchInfo",
    "ITEM_KEYS",
    "PROBE_NAMES",
    "RATING_GAP",
    "answer_checks",
    "bench_info",
    "bench_settings",
    "benchmark_names",
    "cheat_runs",
    "cohen_kappa",
    "disagreements",
    "drift_frame",
    "fingerprint",
    "frame_kind",
    "highlight_spans",
    "human_agreement",
    "item_detail",
    "judge_agreement",
    "judge_audits",
    "judge_health",
    "judge_inventory",
    "judge_labels",
    "judge_usage",
    "judge_overlap",
    "judgment_frame",
    "leaderboard_frame",
    "length_frame",
    "matched_values",
    "model_marks",
    "model_scores",
    "null_model_probe",
    "parse_prices",
    "price_for",
    "quadratic_kappa",
    "rank_correlation",
    "report_frame",
    "store_counts",
    "store_stamp",
    "to_csv_bytes",
    "training_frame",
]

Source = RunStore | str | os.PathLike

ITEM_KEYS = ["question_id", "model", "turn", "baseline"]
# Names a null-model probe result goes by (scope "judge"): the checks module's and the one the issue text uses.
PROBE_NAMES = ("judge_gameable", "null-model-probe")
# Two ratings this many points apart (or more) count as a disagreement in the browser.
RATING_GAP = 2.0
_TIE_EPS = 1e-9
NO_STAGE = "(no stage)"


def _path(source: Source) -> Path:
    return source.path if isinstance(source, RunStore) else Path(source)


@contextmanager
def _open(source: Source) -> Iterator[RunStore]:
    """The store, read-only. A path gets a fresh connection per call: it sees every commit a running job made so far
    and never blocks the writer. A missing store raises StoreError saying how to fill one (never creates it)."""
    if isinstance(source, RunStore):
        yield source
        return
    with RunStore(source, readonly=True) as store:
        yield store


# --------------------------------------------------------------------------------------------------------------------
# What a view needs to know about a benchmark, asked of the benchmark (nothing here is keyed by its name)


@dataclass(frozen=True)
class BenchInfo:
    """A benchmark's view settings, read from its registered class (no construction, no data).

    ``known`` is False when no installed plug-in provides the benchmark (a store can hold records of one): then
    ``headline`` is None (views fall back to the first metric), ``kind`` None and ``toggles`` empty.
    """

    name: str
    known: bool = False
    kind: str | None = None
    headline: str | None = None
    higher_is_better: bool = True
    length_metrics: tuple[str | None, str | None] = (None, None)
    toggles: dict[str, str] = field(default_factory=dict)


def bench_info(name: str) -> BenchInfo:
    """The :class:`BenchInfo` of the benchmark registered as ``name`` (a placeholder when it is not installed)."""
    try:
        cls = BENCHMARKS.get(name)
    except (LionEvalError, ImportError, AttributeError):
        return BenchInfo(name)
    headline = getattr(cls, "headline", None)
    headline = headline if isinstance(headline, str) and headline else None
    pair = getattr(cls, "length_metrics", None)
    raw, controlled = pair if isinstance(pair, tuple) and len(pair) == 2 else (headline, None)
    toggles = getattr(cls, "toggles", None)
    kind = getattr(cls, "kind", None)
    return BenchInfo(
        name=name, known=True, kind=kind if kind in ("rating", "pairwise") else None, headline=headline,
        higher_is_better=bool(getattr(cls, "higher_is_better", True)), length_metrics=(raw or headline, controlled),
        toggles={str(k): str(v) for k, v in toggles.items()} if isinstance(toggles, dict) else {},
    )


def benchmark_names() -> list[str]:
    """The installed benchmarks' names (for help texts)."""
    return BENCHMARKS.names()


# --------------------------------------------------------------------------------------------------------------------
# Store overview


def fingerprint(source: Source) -> tuple:
    """Changes whenever the store is written (database and WAL file stamps; a database server's store: its content
    stamp): a cache key that sees a running job."""
    if is_url(str(source.path if isinstance(source, RunStore) else source)):
        return store_stamp(source)
    path = _path(source)
    out: list[Any] = [str(path.resolve())]
    for p in (path, Path(f"{path}-wal")):
        try:
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [None, None]
    return tuple(out)


def store_stamp(source: Source, benchmark: str | None = None, tables: Sequence[str] | None = None) -> tuple:
    """A stamp of the store's content (records, highest row and latest write per table; ``benchmark``: that
    benchmark's records only): a cache key that changes when records are added or replaced, and only then."""
    with _open(source) as store:
        return store.content_stamp(tables, benchmark=benchmark)


def store_counts(source: Source) -> pd.DataFrame:
    """Records per table."""
    names = ("runs", "questions", "answers", "judgments", "reports", "checks", "promotions", "early_stops")
    with _open(source) as store:
        counts = store.counts()
    return pd.DataFrame([(t, int(counts.get(t, 0))) for t in names], columns=["table", "records"])


def judge_inventory(source: Source) -> pd.DataFrame:
    """One row per (benchmark, judge): its kind and how many judgments it has (cheap: no record is read)."""
    cols = ["benchmark", "judge", "kind", "judgments"]
    with _open(source) as store:
        rows = store.judgment_inventory()
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------------------------------------------------
# Judge comparison

_FRAME_COLS = [
    "benchmark", "question_id", "model", "judge", "kind", "turn", "failed", "baseline", "value", "n_games",
    "g1_value", "g1_pos", "g2_value", "g2_pos", "rowid", "item",
]  # fmt: skip


def judgment_frame(
    source: Source, benchmark: str, judges: Sequence[str] | None = None, models: Sequence[str] | None = None,
    *, probes: bool = False,
) -> pd.DataFrame:
    """The light columns of a benchmark's judgments (no texts), one row per judgment.

    The null-model probe's constant answers (models named ``NULL_MODEL_PREFIX...``) are not models: they are left
    out of agreement, kappa and position bias unless ``probes`` is True.

    ``turn`` is -1 and ``baseline`` "" where the judgment has none, so the item keys (``ITEM_KEYS``) join cleanly.
    ``g1_pos`` / ``g2_pos`` say where the judged model stood in each game ("A", "B", or "" for single ratings);
    ``rowid`` finds the full record again; ``item`` numbers the distinct items, so joins run on integers.
    """
    with _open(source) as store:
        rows = store.judgment_columns(benchmark, judges=judges, models=models)
        kinds = store.judge_kinds(benchmark, {r[3] for r in rows})
    if not probes:
        rows = [r for r in rows if not str(r[2]).startswith(NULL_MODEL_PREFIX)]
    if not rows:
        return pd.DataFrame(columns=_FRAME_COLS)
    # one object array, then typed columns: pandas' own inference over 100k rows costs more than the query
    a = np.array(rows, dtype=object)
    n = len(a)

    def pos(col: np.ndarray) -> np.ndarray:
        flag = col.astype(float)
        return np.where(np.isnan(flag), "", np.where(flag == 1.0, "A", "B")).astype(object)

    judge = pd.Series(a[:, 3], dtype=object)
    df = pd.DataFrame({
        "benchmark": pd.Series([benchmark] * n, dtype=object),
        "question_id": pd.Series(a[:, 1], dtype=object),
        "model": pd.Series(a[:, 2], dtype=object),
        "judge": judge,
        "kind": judge.map(kinds).astype(object),
        "turn": np.nan_to_num(a[:, 4].astype(float), nan=-1).astype(np.int64),
        "failed": a[:, 5].astype(bool),
        "baseline": pd.Series(np.where(a[:, 6] == None, "", a[:, 6]), dtype=object),  # noqa: E711 (elementwise)
        "value": a[:, 7].astype(float),
        "n_games": np.nan_to_num(a[:, 8].astype(float)).astype(np.int64),
        "g1_value": a[:, 9].astype(float),
        "g1_pos": pos(a[:, 10]),
        "g2_value": a[:, 11].astype(float),
        "g2_pos": pos(a[:, 12]),
        "rowid": a[:, 0].astype(np.int64),
    })
    df["item"] = df.groupby(ITEM_KEYS, sort=False).ngroup()
    return df[_FRAME_COLS]


def judge_labels(judges: Sequence[str]) -> dict[str, str]:
    """judge id -> a short label that still tells the judges apart.

    An id reads ``provider:model@endpoint#hash``: the label is ``provider:model``, with as much of the rest as it
    takes to be unique (the endpoint, then the hash's first characters, then the whole id).
    """
    judges = list(dict.fromkeys(judges))

    def forms(j: str) -> list[str]:
        base, _, digest = j.partition("#")
        head = base.split("@", 1)[0]
        tail = f"#{digest[:6]}" if digest else ""
        return [head, head + tail, base, base + tail, j]

    all_forms = {j: forms(j) for j in judges}
    labels = {}
    for j in judges:
        labels[j] = next(
            (f for level, f in enumerate(all_forms[j]) if all(all_forms[k][level] != f for k in judges if k != j)), j
        )
    return labels


def judge_overlap(frame: pd.DataFrame) -> pd.DataFrame:
    """For each pair of judges: how many items (question, model, turn, baseline) both judged."""
    cols = ["judge_a", "judge_b", "common_items"]
    if frame.empty or frame["judge"].nunique() < 2:
        return pd.DataFrame(columns=cols)
    item = _items(frame)
    judge_codes, judges = pd.factorize(frame["judge"], sort=True)
    seen = np.zeros((item.max() + 1, len(judges)), dtype=np.int32)
    seen[item, judge_codes] = 1
    common = seen.T @ seen
    rows = [(judges[a], judges[b], int(common[a, b])) for a, b in itertools.combinations(range(len(judges)), 2)]
    return pd.DataFrame(rows, columns=cols).sort_values("common_items", ascending=False, ignore_index=True)


def _items(frame: pd.DataFrame) -> np.ndarray:
    if "item" in frame.columns:
        return frame["item"].to_numpy()
    return frame.groupby(ITEM_KEYS, sort=False).ngroup().to_numpy()


def matched_values(frame: pd.DataFrame, judges: Sequence[str]) -> pd.DataFrame:
    """Items as rows, one value column per judge (NaN where that judge failed or did not judge the item).

    Two judgments of one judge on one item (a file judged twice) are averaged, as MT-Bench's own tally does.
    """
    judges = list(judges)
    sub = frame[frame["judge"].isin(judges)]
    if sub.empty:
        return pd.DataFrame(columns=[*ITEM_KEYS, *judges])
    # pivot on integer item ids and join the keys back: grouping on four text columns is several times slower
    item = _items(sub)
    codes = pd.Categorical(sub["judge"], categories=judges).codes
    values = sub["value"].to_numpy(float)
    ids, inverse = np.unique(item, return_inverse=True)
    sums = np.zeros((len(ids), len(judges)))
    counts = np.zeros((len(ids), len(judges)))
    ok = ~np.isnan(values)
    np.add.at(sums, (inverse[ok], codes[ok]), values[ok])
    np.add.at(counts, (inverse[ok], codes[ok]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    first = pd.Series(np.arange(len(sub))).groupby(inverse).first().to_numpy()
    keys = sub[ITEM_KEYS].iloc[first].reset_index(drop=True)
    return pd.concat([keys, pd.DataFrame(means, columns=judges)], axis=1)


def _categories(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "pairwise":
        return np.where(values > 0.5 + _TIE_EPS, 1, np.where(values < 0.5 - _TIE_EPS, -1, 0))
    return np.rint(values).astype(int)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's unweighted kappa of two raters' categorical labels; NaN when chance agreement is already total."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return float("nan")
    labels, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca, cb = codes[: a.size], codes[a.size :]
    observed = float(np.mean(ca == cb))
    pa = np.bincount(ca, minlength=labels.size) / a.size
    pb = np.bincount(cb, minlength=labels.size) / b.size
    expected = float(pa @ pb)
    return float("nan") if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def quadratic_kappa(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's kappa with quadratic weights on numeric ratings.

    With weights (x - y)^2 the kappa has a closed form, 1 - mean((a-b)^2) / (var a + var b + (mean a - mean b)^2)
    (population variances): no confusion matrix, and the rating scale's unused points do not matter.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0:
        return float("nan")
    chance = a.var() + b.var() + (a.mean() - b.mean()) ** 2
    return float("nan") if chance == 0 else float(1.0 - np.mean((a - b) ** 2) / chance)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(Spearman rho, Kendall tau-b) of two score lists; NaN with fewer than three models or a constant list.

    Written out with numpy (ties get average ranks; tau-b corrects for ties in either list) because importing
    scipy.stats costs seconds on a first page load, and a few hundred models make the O(n^2) pairs cheap.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    rho = float(np.corrcoef(rx, ry)[0, 1])
    i, j = np.triu_indices(x.size, k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordant_minus_discordant = float(np.sum(sx * sy))
    tx, ty = float(np.sum(sx != 0)), float(np.sum(sy != 0))
    tau = concordant_minus_discordant / np.sqrt(tx * ty)
    return rho, float(tau)


def _scale(kind: str) -> float:
    return 100.0 if kind == "pairwise" else 1.0


def frame_kind(frame: pd.DataFrame) -> str:
    """The kind of the frame's judgments, "pairwise" or "rating" (a benchmark has only one)."""
    return str(frame["kind"].iloc[0]) if len(frame) else "rating"


def model_scores(frame: pd.DataFrame, judges: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean judged value per (judge, model) over the judge's parsed judgments: ratings as is, win shares in %."""
    cols = ["judge", "model", "score", "judged", "failed", "rank"]
    sub = frame if judges is None else frame[frame["judge"].isin(judges)]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    g = sub.groupby(["judge", "model"])
    out = pd.DataFrame({
        "score": g["value"].mean() * _scale(frame_kind(sub)),
        "judged": g["value"].count(),
        "failed": g["failed"].sum().astype(int),
    }).reset_index()
    out["rank"] = out.groupby("judge")["score"].rank(ascending=False, method="min")
    return out[cols].sort_values(["judge", "rank", "model"], ignore_index=True)


def judge_agreement(frame: pd.DataFrame, judges: Sequence[str], wide: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per pair of the chosen judges, on the items both parsed (``wide``: their :func:`matched_values`).

    Columns: items, agreement, agreement_within_1 (ratings only), kappa and kappa_method, the number of models
    and the Spearman / Kendall rank correlations of their scores (see the module doc for the conventions).
    """
    cols = ["judge_a", "judge_b", "items", "agreement", "agreement_within_1", "kappa", "kappa_method", "models",
            "spearman", "kendall"]
    judges = list(dict.fromkeys(judges))
    if len(judges) < 2 or frame.empty:
        return pd.DataFrame(columns=cols)
    kind = frame_kind(frame)
    wide = matched_values(frame, judges) if wide is None else wide
    rows = []
    for a, b in itertools.combinations(judges, 2):
        both = wide[[*ITEM_KEYS, a, b]].dropna(subset=[a, b])
        va, vb = both[a].to_numpy(float), both[b].to_numpy(float)
        ca, cb = _categories(va, kind), _categories(vb, kind)
        agreement = float(np.mean(ca == cb)) if ca.size else float("nan")
        if kind == "pairwise":
            within, kappa, method = float("nan"), cohen_kappa(ca, cb), "cohen (win/tie/loss)"
        else:
            within = float(np.mean(np.abs(ca - cb) <= 1)) if ca.size else float("nan")
            kappa, method = quadratic_kappa(ca, cb), "quadratic-weighted (rounded ratings)"
        scores = both.groupby("model")[[a, b]].mean()
        rho, tau = rank_correlation(scores[a].to_numpy(), scores[b].to_numpy())
        rows.append((a, b, int(ca.size), agreement, within, kappa, method, len(scores), rho, tau))
    return pd.DataFrame(rows, columns=cols)


def judge_health(frame: pd.DataFrame) -> pd.DataFrame:
    """Per judge: parse failures and position bias.

    ``parse_failure_rate``: judgments without a usable value. ``game_failure_rate``: single judge calls without a
    verdict. ``games_agree``: of the judgments with both position orders parsed, the share whose two games give the
    same win/tie/loss (an order-blind judge: 1). ``first_position_win_share``: of the decisive games, the share won
    by the answer shown first (an order-blind judge: 0.5 when each answer is shown first equally often).
    """
    cols = ["judge", "kind", "judgments", "models", "failed", "parse_failure_rate", "games", "games_failed",
            "game_failure_rate", "two_game_judgments", "games_agree", "decisive_games", "first_position_win_share"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for judge, g in frame.groupby("judge", sort=True):
        n = len(g)
        failed = int(g["failed"].sum())
        g1, g2 = g["g1_value"].to_numpy(float), g["g2_value"].to_numpy(float)
        has1, has2 = g["n_games"].to_numpy() >= 1, g["n_games"].to_numpy() >= 2
        games = int(has1.sum() + has2.sum())
        games_failed = int((has1 & np.isnan(g1)).sum() + (has2 & np.isnan(g2)).sum())
        both = has2 & ~np.isnan(g1) & ~np.isnan(g2)
        agree = _categories(g1[both], "pairwise") == _categories(g2[both], "pairwise")
        first_won, decisive = [], 0
        for vals, pos in ((g1, g["g1_pos"].to_numpy()), (g2, g["g2_pos"].to_numpy())):
            ok = ~np.isnan(vals) & np.isin(pos, ["A", "B"]) & (np.abs(vals - 0.5) > _TIE_EPS)
            decisive += int(ok.sum())
            first_won.append(((vals[ok] > 0.5) == (pos[ok] == "A")).sum())
        rows.append((
            judge, str(g["kind"].iloc[0]), n, int(g["model"].nunique()), failed, failed / n if n else float("nan"),
            games, games_failed,
            games_failed / games if games else float("nan"), int(both.sum()),
            float(agree.mean()) if both.any() else float("nan"), decisive,
            float(sum(first_won)) / decisive if decisive else float("nan"),
        ))
    return pd.DataFrame(rows, columns=cols)


def judge_usage(source: Source, bench: str, prices: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Per judge of a benchmark: what its judgments cost in tokens, calls, time and money, per 1,000 judgments, from
    the usage each stored judgment records (imported judgments record none: ``with_usage`` counts those that do).

    Columns: judge, judgments, with_usage, prompt_tokens_per_1k, completion_tokens_per_1k, calls_per_1k,
    with_latency, latency_p50_s and latency_p90_s (wall seconds of a judgment's answered calls, its games summed:
    recorded by the OpenAI-compatible backends since lioneval records it), judge_hours_per_1k (their sum over 1,000
    judgments), price (the ``prices`` entry that matched the judge, :func:`price_for`: USD per million input and
    output tokens) and usd_per_1k (NaN without a price).
    """
    cols = ["judge", "judgments", "with_usage", "prompt_tokens_per_1k", "completion_tokens_per_1k", "calls_per_1k",
            "with_latency", "latency_p50_s", "latency_p90_s", "judge_hours_per_1k", "price", "usd_per_1k"]
    with _open(source) as store:
        rows = store.judge_usage(bench)
        # latency is recorded with the usage: a benchmark without usage (imported judgments) skips the read
        metered = [r[0] for r in rows if r[2]]
        latency = store.record_fields("judgments", ["judge"], [("number", ("meta", "usage", "latency_s"))],
                                      benchmark=bench, judge=metered) if metered else []
    seconds: dict[str, list[float]] = {}
    for judge, s in latency:
        if s is not None:
            seconds.setdefault(judge, []).append(float(s))
    out = []
    for judge, n, with_usage, prompt, completion, calls in rows:
        per = 1000.0 / with_usage if with_usage else float("nan")
        prompt_1k, completion_1k = float(prompt or 0) * per, float(completion or 0) * per
        lat = np.asarray(seconds.get(judge, []), dtype=float)
        p50, p90 = (np.quantile(lat, [0.5, 0.9]) if lat.size else (float("nan"), float("nan")))
        hours = float(lat.mean()) * 1000.0 / 3600.0 if lat.size else float("nan")
        found = price_for(judge, prices or {})
        usd = (prompt_1k * found[1][0] + completion_1k * found[1][1]) / 1e6 if found else float("nan")
        out.append((judge, int(n), int(with_usage), prompt_1k, completion_1k, float(calls or 0) * per, int(lat.size),
                    float(p50), float(p90), hours, f"{found[0]}: {found[1][0]:g}/{found[1][1]:g}" if found else "",
                    usd))
    return pd.DataFrame(out, columns=cols)


def price_for(judge: str, prices: Mapping[str, tuple[float, float]]) -> tuple[str, tuple[float, float]] | None:
    """(name, (input, output) USD per million tokens) of the ``prices`` entry for a judge id, or None.

    An id reads ``provider:model@endpoint#hash``: the entry named by the whole id wins, then ``provider:model``, then
    the model alone (``gpt-4o`` prices every provider's ``gpt-4o`` judge).
    """
    head = judge.split("#", 1)[0].split("@", 1)[0]
    for name in (judge, judge.split("#", 1)[0], head, head.split(":", 1)[-1]):
        if name in prices:
            return name, prices[name]
    return None


def parse_prices(items: Sequence[str] = (), file: str | os.PathLike | None = None) -> dict[str, tuple[float, float]]:
    """Judge prices from ``MODEL=IN/OUT`` items (USD per million input / output tokens) and a YAML file mapping each
    model to ``IN/OUT`` or to ``{input_per_mtok: IN, output_per_mtok: OUT}`` (the keys a judge spec's ``prices``
    takes); an item wins over the file. Prices are the user's: nothing here knows what a model costs today."""
    out: dict[str, tuple[float, float]] = {}
    if file:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise LionEvalError(f"cannot read the price file {file}: {e}",
                                fix="pass a YAML file such as `gpt-4o: {input_per_mtok: 2.5, output_per_mtok: 10}`"
                                ) from e
        if not isinstance(loaded, dict):
            raise LionEvalError(f"the price file {file} is not a mapping of model to prices",
                                fix="write one line per model, e.g. `gpt-4o: 2.5/10` (USD per million tokens)")
        for model, v in loaded.items():
            if isinstance(v, dict) and set(v) <= {"input_per_mtok", "output_per_mtok"}:
                v = f"{v.get('input_per_mtok', 0)}/{v.get('output_per_mtok', 0)}"
            out[str(model)] = _price(str(model), str(v), f"the price file {file}")
    for item in items:
        model, sep, v = item.partition("=")
        if not sep or not model.strip():
            raise LionEvalError(f"price {item!r} is not MODEL=IN/OUT",
                                fix="pass e.g. --price gpt-4o=2.5/10 (USD per million input/output tokens)")
        out[model.strip()] = _price(model.strip(), v, "--price")
    return out


def _price(model: str, text: str, where: str) -> tuple[float, float]:
    parts = text.replace(" ", "").split("/")
    try:
        values = tuple(float(x) for x in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or not all(np.isfinite(x) and x >= 0 for x in values):
        raise LionEvalError(f"the price of {model} in {where} is {text!r}, not IN/OUT",
                            fix=f"write two non-negative numbers, USD per million input and output tokens: "
                                f"{model}=2.5/10")
    return values[0], values[1]


# --------------------------------------------------------------------------------------------------------------------
# Agreement with human labels


def human_agreement(frame: pd.DataFrame, judges: Sequence[str] | None = None) -> pd.DataFrame:
    """Agreement of each judge with the human votes of the frame (judges that :func:`~lioneval.human_labels.is_human`
    names), as the MT-Bench paper counts it: each human vote on (question, model pair, turn) is compared with the
    judge's preference on the same pair and turn.

    A pairwise judge's preference is its verdict on the pair (either order; two of its judgments on one pair are
    averaged). A rating judge's is implied by its two ratings of the pair at that turn: the higher rated answer wins,
    equal ratings tie. ``agreement_with_ties``: the share of votes with the same win / tie / loss, over every vote
    both sides have (``votes``); ``agreement_without_ties``: the same over the votes where neither the human nor the
    judge called a tie (``votes_without_ties``; the paper's setup without ties; either kind of human tie, "tie" or
    "tie (bothbad)", is a tie). One row per (judge, turn), turn "all" first (the turns apart when there are several);
    ``items`` counts the distinct (question, pair, turn) both judged; ``judge_ties`` and ``human_ties`` the share of
    the votes each side called a tie. ``judges``: only these (default: every judge that is not human).

    The bar to read them against: a row per human judge compares its annotators with each other, every two votes
    on one item (the paper's human-human agreement); there ``votes`` counts those pairs of votes and ``judge_ties``
    is empty.
    """
    cols = ["judge", "turn", "basis", "items", "votes", "agreement_with_ties", "votes_without_ties",
            "agreement_without_ties", "judge_ties", "human_ties"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    human_mask = frame["judge"].map(is_human).to_numpy(bool) & (frame["kind"] == "pairwise").to_numpy()
    votes = frame[human_mask & frame["value"].notna().to_numpy() & (frame["baseline"] != "").to_numpy()]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    human = _categories(votes["value"].to_numpy(float), "pairwise")
    q, a, b, t = (votes[c].to_numpy() for c in ("question_id", "model", "baseline", "turn"))
    pairs = [(qq, *sorted((x, y)), tt) for qq, x, y, tt in zip(q, a, b, t, strict=True)]
    item = pd.factorize(pd.Series(pairs, dtype=object))[0]
    others = [j for j in (judges if judges is not None else sorted(frame["judge"].unique())) if not is_human(j)]
    rows = []
    for judge in others:
        mine = frame[(frame["judge"] == judge) & frame["value"].notna()]
        if mine.empty:
            continue
        kind = str(mine["kind"].iloc[0])
        if kind == "pairwise":
            means = mine.groupby(["question_id", "model", "baseline", "turn"])["value"].mean()
            direct = means.reindex(pd.MultiIndex.from_arrays([q, a, b, t])).to_numpy(float)
            swapped = 1.0 - means.reindex(pd.MultiIndex.from_arrays([q, b, a, t])).to_numpy(float)
            pref = np.where(np.isnan(direct), swapped, direct)
            basis = "pairwise verdicts"
        else:
            means = mine.groupby(["question_id", "model", "turn"])["value"].mean()
            ra = means.reindex(pd.MultiIndex.from_arrays([q, a, t])).to_numpy(float)
            rb = means.reindex(pd.MultiIndex.from_arrays([q, b, t])).to_numpy(float)
            pref = np.where(ra > rb + _TIE_EPS, 1.0, np.where(rb > ra + _TIE_EPS, 0.0, 0.5))
            pref[np.isnan(ra) | np.isnan(rb)] = np.nan
            basis = "ratings (higher wins, equal ties)"
        ok = ~np.isnan(pref)
        if not ok.any():
            continue
        cat = np.zeros_like(human)
        cat[ok] = _categories(pref[ok], "pairwise")
        turns = [("all", ok)] + [(str(x), ok & (t == x)) for x in sorted(set(t[ok].tolist())) if len(set(t[ok])) > 1]
        for label, m in turns:
            decisive = m & (cat != 0) & (human != 0)
            rows.append((
                judge, label, basis, int(np.unique(item[m]).size), int(m.sum()), float(np.mean(cat[m] == human[m])),
                int(decisive.sum()),
                float(np.mean(cat[decisive] == human[decisive])) if decisive.any() else float("nan"),
                float(np.mean(cat[m] == 0)), float(np.mean(human[m] == 0)),
            ))
    rows += _between_annotators(votes["judge"].to_numpy(), item, human, t)
    return pd.DataFrame(rows, columns=cols)


def _between_annotators(judge: np.ndarray, item: np.ndarray, vote: np.ndarray, turn: np.ndarray) -> list[tuple]:
    """Per human judge and turn: agreement between every two votes on one item, with ties and without them, counted
    from each item's votes per verdict (pairs of equal verdicts: n(n-1)/2 per verdict)."""
    rows = []
    for name in sorted(set(judge.tolist())):
        mine = judge == name
        many = len(set(turn[mine].tolist())) > 1
        for label in ["all", *(sorted({str(x) for x in turn[mine].tolist()}) if many else [])]:
            m = mine & ((turn.astype(str) == label) if label != "all" else True)
            counts = pd.crosstab(item[m], vote[m]).reindex(columns=[-1, 0, 1], fill_value=0).to_numpy()
            k = counts.sum(axis=1)
            both = k >= 2
            if not both.any():
                continue
            c = counts[both]
            pairs = k[both] * (k[both] - 1) // 2
            same = (c * (c - 1) // 2).sum(axis=1)
            decisive = c[:, 0] + c[:, 2]
            d_pairs = decisive * (decisive - 1) // 2
            d_same = c[:, 0] * (c[:, 0] - 1) // 2 + c[:, 2] * (c[:, 2] - 1) // 2
            rows.append((
                name, label, "other annotators' votes on the item", int(both.sum()), int(pairs.sum()),
                float(same.sum() / pairs.sum()), int(d_pairs.sum()),
                float(d_same.sum() / d_pairs.sum()) if d_pairs.sum() else float("nan"), float("nan"),
                float(c[:, 1].sum() / c.sum()),
            ))
    return rows


def _rationale(j: Judgment) -> str:
    """What the judge wrote: the judgment's raw text, or each game's, labelled by where the judged model stood."""
    if j.raw:
        return j.raw
    if len(j.games) == 1:
        return j.games[0].raw or j.error or ""
    parts = []
    for i, g in enumerate(j.games, 1):
        head = f"[game {i}: model as {g.model_position}, verdict {g.label or 'none'}]"
        parts.append(f"{head}\n{g.raw or g.error or ''}")
    return "\n\n".join(parts) or j.error or ""


def disagreements(
    source: Source,
    frame: pd.DataFrame,
    judges: Sequence[str],
    *,
    limit: int | None = 200,
    rating_gap: float = RATING_GAP,
    wide: pd.DataFrame | None = None,
    texts: bool = True,
) -> pd.DataFrame:
    """Items the chosen judges disagree on, widest spread first, with the texts a reader needs to decide.

    An item counts when at least two of the chosen judges parsed it (no item needs every judge). Pairwise: their
    win/tie/loss differ. Ratings: the highest and lowest rating are ``rating_gap`` or more apart. Columns: the item
    keys, ``category`` (the question's, "" when unknown), ``judges`` (how many of the chosen judges parsed the item),
    ``value:<judge>`` per judge, ``spread``; with ``texts``, also ``rationale:<judge>`` per judge, the question
    (``question``), the judged answer (``answer``) and the baseline's answer (``baseline_answer``; for ratings the
    judged turn). Texts are fetched for the returned rows only; ``attrs["total"]`` holds the count before ``limit``
    (None: every row) and ``attrs["compared"]`` the number of items at least two judges parsed.
    """
    judges = list(dict.fromkeys(judges))
    value_cols = [f"value:{j}" for j in judges]
    cols = [*ITEM_KEYS, "category", "judges", "spread", *value_cols]
    if texts:
        cols += ["question", "answer", "baseline_answer", *(f"rationale:{j}" for j in judges)]
    empty = pd.DataFrame(columns=cols)
    empty.attrs.update(total=0, compared=0)
    if len(judges) < 2 or frame.empty:
        return empty
    kind = frame_kind(frame)
    wide = matched_values(frame, judges) if wide is None else wide
    parsed = wide[judges].notna().sum(axis=1).to_numpy()
    wide = wide[parsed >= 2].copy()
    wide["judges"] = parsed[parsed >= 2]
    empty.attrs["compared"] = len(wide)
    vals = wide[judges].to_numpy(float)
    if not len(vals):
        return empty
    with np.errstate(invalid="ignore"):
        high, low = np.nanmax(vals, axis=1), np.nanmin(vals, axis=1)
    if kind == "pairwise":
        mask = _categories(high, kind) != _categories(low, kind)
    else:
        mask = (high - low) >= rating_gap
    hit = wide[mask].copy()
    hit["spread"] = (high[mask] - low[mask]) * _scale(kind)
    total = len(hit)
    hit = hit.sort_values(["spread", "question_id", "model"], ascending=[False, True, True])
    if limit is not None:
        hit = hit.head(limit)
    hit = hit.rename(columns={j: f"value:{j}" for j in judges})
    if kind == "pairwise":
        hit[value_cols] = hit[value_cols] * 100.0
    bench = str(frame["benchmark"].iloc[0])
    with _open(source) as store:
        cats = _question_categories(store, bench)
    hit["category"] = pd.Series([cats.get(q, "") for q in hit["question_id"]], index=hit.index, dtype=object)
    if texts:
        found = frame.loc[frame["judge"].isin(judges), [*ITEM_KEYS, "judge", "rowid"]].merge(hit[ITEM_KEYS],
                                                                                             on=ITEM_KEYS)
        _attach_texts(source, bench, hit, judges, found)
    hit = hit[cols].reset_index(drop=True)
    hit.attrs.update(total=total, compared=empty.attrs["compared"])
    return hit


def _question_categories(store: RunStore, bench: str) -> dict[str, str]:
    return {q.id: q.category or "" for q in store.questions(benchmark=bench)}


def item_detail(
    source: Source, bench: str, question_id: str, models: Sequence[str], judges: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything about one question for a side-by-side view of ``models``: ``question`` (the turns),
    ``category``, ``reference`` (reference answers per turn, or []), ``answers`` {model: turns} (the latest stored
    answer), ``baselines`` {model: turns} (the answers each model was compared with), and ``verdicts``: one row per
    stored judgment of those models on the question (judge, model, turn, baseline, value, failed, error, rationale),
    of ``judges`` only when given. The null-model probe's answers are not models: asking for one is fine.
    """
    models = list(dict.fromkeys(models))
    with _open(source) as store:
        found = store.find_questions(bench, [question_id])
        q = found[-1] if found else None
        answers: dict[str, list[str]] = {}
        for a in store.find_answers([question_id], models, benchmark=bench):
            answers[a.model] = a.turns  # stored order: the latest answer wins
        judgments = [j for j in store.judgments(benchmark=bench, model=models)
                     if j.question_id == question_id and (judges is None or j.judge in judges)]
        baselines_needed = {j.baseline for j in judgments if j.baseline}
        baselines = {a.model: a.turns for a in store.find_answers([question_id], baselines_needed, benchmark=bench)}
    verdicts = pd.DataFrame(
        [(j.judge, j.model, j.turn or 0, j.baseline or "", j.value, j.failed, j.error or "", _rationale(j))
         for j in judgments],
        columns=["judge", "model", "turn", "baseline", "value", "failed", "error", "rationale"],
    )
    return {
        "question": list(q.turns) if q else [], "category": (q.category or "") if q else "",
        "reference": list(q.reference or []) if q else [], "answers": answers, "baselines": baselines,
        "verdicts": verdicts,
    }


def _attach_texts(source: Source, bench: str, hit: pd.DataFrame, judges: list[str], found: pd.DataFrame) -> None:
    qids, models = set(hit["question_id"]), set(hit["model"]) | (set(hit["baseline"]) - {""})
    with _open(source) as store:
        questions = {q.id: q.turns for q in store.find_questions(bench, qids)}
        # stored order: the latest stored answer of a (question, model) wins, as a rerun would use it
        answers = {(a.question_id, a.model): a.turns for a in store.find_answers(qids, models, benchmark=bench)}
        # by row id: the judgments table has no question index, and scanning it for a page of texts is slow
        rationales = {
            (j.question_id, j.model, j.turn or -1, j.baseline or "", j.judge): _rationale(j)
            for j in store.judgments_at(int(r) for r in found["rowid"])
        }

    def turn_text(turns: list[str] | None, turn: int) -> str:
        if not turns:
            return ""
        if turn >= 1 and turn <= len(turns):
            return turns[turn - 1]
        return "\n\n".join(turns)

    q_text, a_text, b_text = [], [], []
    for qid, model, turn, baseline in hit[ITEM_KEYS].itertuples(index=False):
        q = questions.get(qid)
        q_text.append(turn_text(q, turn) if q else "(question not in the store)")
        a = answers.get((qid, model))
        a_text.append(turn_text(a, turn) if a else "(answer not in the store)")
        b = answers.get((qid, baseline)) if baseline else None
        b_text.append(turn_text(b, turn) if b else "")
    hit["question"], hit["answer"], hit["baseline_answer"] = q_text, a_text, b_text
    for j in judges:
        hit[f"rationale:{j}"] = [
            rationales.get((qid, model, turn, baseline, j), "")
            for qid, model, turn, baseline in hit[ITEM_KEYS].itertuples(index=False)
        ]


_CHECK_COLS = ["key", "run", "scope", "name", "status", "model", "question_id", "judge", "created_at", "value",
               "threshold", "detail", "spans", "meta"]


def _check_frame(source: Source, **where: Any) -> pd.DataFrame:
    """Stored checks, oldest write first (a re-check replaces the stored result and counts from its write);
    ``where`` filters on scope, name, status, model... (a value or a list). Also carries ``benchmark``."""
    with _open(source) as store:
        rows = store.stamped("checks", **where)
    return _checks_to_frame(rows)


def _checks_to_frame(rows: list[tuple[str, float, Any]]) -> pd.DataFrame:
    cols = [*_CHECK_COLS, "benchmark"]
    out = [
        (key, c.run, c.scope, c.name, c.status, c.model, c.question_id, c.judge, created, c.value, c.threshold,
         c.detail or "", [tuple(sp) for sp in c.spans], dict(c.meta), c.benchmark or c.meta.get("benchmark"))
        for key, created, c in rows if isinstance(c, CheckResult)
    ]
    return pd.DataFrame(out, columns=cols) if out else pd.DataFrame(columns=cols)


def judge_audits(source: Source) -> pd.DataFrame:
    """Every stored judge-scope check (null-model probe, position bias, self-preference...), latest first."""
    df = _check_frame(source, scope="judge")
    return df.drop(columns=["key", "spans", "benchmark"]).iloc[::-1].reset_index(drop=True)


def null_model_probe(source: Source, judges: Sequence[str] | None = None) -> pd.DataFrame:
    """The latest null-model probe per judge and benchmark (``PROBE_NAMES``): gameable = flagged.

    The probe's per-answer results (``null_model:<answer>``) stay in :func:`judge_audits`.
    """
    cols = ["judge", "benchmark", "status", "gameable", "value", "threshold", "detail"]
    df = _check_frame(source, scope="judge", name=list(PROBE_NAMES))
    if judges is not None:
        df = df[df["judge"].isin(judges)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(benchmark=df["benchmark"].fillna("").astype(str))
    df = df.drop_duplicates(["judge", "benchmark"], keep="last")
    df["gameable"] = (df["status"] == "flag").to_numpy() | np.array([bool(m.get("gameable")) for m in df["meta"]])
    return df[cols].sort_values(["gameable", "judge"], ascending=[False, True], ignore_index=True)


# --------------------------------------------------------------------------------------------------------------------
# Leaderboards and the length view


def bench_settings(bench: str, **given: Any) -> dict[str, Any]:
    """The ``given`` constructor settings the benchmark takes (e.g. AlpacaEval's ``lc_data`` and ``weights``, its
    official LC inputs), without the None ones: the same inputs the CLI passes, asked of the benchmark's signature
    rather than keyed by its name."""
    try:
        params = inspect.signature(BENCHMARKS.get(bench)).parameters
    except (LionEvalError, ImportError, AttributeError, TypeError, ValueError):
        return {}
    return {k: v for k, v in given.items() if v is not None and k in params}


def leaderboard_frame(
    source: RunStore,
    bench: str,
    *,
    judge: str | None = None,
    rounds: int | None = None,
    seed: int = 0,
    style_control: bool = False,
    options: dict[str, bool] | None = None,
    data: str | None = None,
    settings: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """:func:`lioneval.leaderboard.leaderboard` as a flat table: per metric ``<m>``, ``<m>_lower``, ``<m>_upper``
    (None where the metric has no interval) and ``<m>_method`` (how the interval was made).

    Also ``judge``, ``model``, ``n`` (of the headline), ``avg_tokens``, ``avg_chars``, the count columns, and the
    headline's qualifiers: ``reliable`` and ``unreliable`` (why not), ``comparable`` (False: not comparable with the
    official leaderboard) and ``note``. ``options`` turns the benchmark's summary toggles (:attr:`BenchInfo.toggles`)
    on or off; toggles the benchmark does not offer are ignored (``style_control=True`` is
    ``options={"style_control": True}``). ``data`` and ``settings`` are the benchmark's data and constructor settings
    as ``lioneval leaderboard`` takes them (``--data``, ``--lc-data``, ``--glm-weights``).
    ``attrs["headline"]`` names the metric the rows are sorted by (None when the benchmark does not say).
    """
    from lioneval.leaderboard import leaderboard

    info = bench_info(bench)
    wanted = {**({"style_control": True} if style_control else {}), **(options or {})}
    chosen = {k: bool(v) for k, v in wanted.items() if k in info.toggles and v}
    given = {k: v for k, v in (("data", data), ("settings", settings)) if v}
    rows = leaderboard(source, bench, judge=judge, rounds=rounds, seed=seed, **given, **chosen)
    headline = info.headline
    flat = []
    for r in rows:
        out: dict[str, Any] = {"judge": r["judge"], "model": r["model"]}
        for name, est in r.items():
            if isinstance(est, dict) and "value" in est:
                out[name] = est["value"]
                out[f"{name}_lower"] = est.get("lower")
                out[f"{name}_upper"] = est.get("upper")
                out[f"{name}_method"] = est.get("method")
        head = r.get(headline) if headline and isinstance(r.get(headline), dict) else None
        out["n"] = head.get("n") if head else None
        out["reliable"] = bool(r.get("reliable", True))
        out["unreliable"] = "; ".join(str(x) for x in r.get("unreliable") or [])
        out["comparable"] = head.get("comparable", True) if head else True
        out["note"] = str(head.get("note") or "") if head else ""
        out["failed"], out["dropped"] = r.get("failed", 0), r.get("dropped", 0)
        out["avg_tokens"], out["avg_chars"] = r.get("avg_tokens"), r.get("avg_chars")
        for k, v in (r.get("counts") or {}).items():
            out[f"count_{k}"] = v
        flat.append(out)
    df = pd.DataFrame(flat)
    df.attrs["headline"] = headline if headline in df.columns else None
    return df


def model_marks(source: Source, bench: str, *, repeat_share: float = 0.5) -> pd.DataFrame:
    """Models a leaderboard should not rank among real ones, and why: one row per marked model.

    ``flagged``: a stored cheat check flagged the model (run or answer scope; the training decisions stored as
    checks are not cheat checks). ``repeated``: the share of its answers that are one and the same text, when at
    least ``repeat_share`` while fewer than half of the models (with five answers or more) reach that share (a
    constant answer is the null-model attack's pattern; a store of placeholder texts marks nobody). ``null_probe``:
    the null-model probe's own answers. Columns: model, flagged, repeated, null_probe, reasons.
    """
    cols = ["model", "flagged", "repeated", "null_probe", "reasons"]
    with _open(source) as store:
        checks = _checks_to_frame(store.stamped("checks", status="flag", scope=["run", "answer"]))
        # The answers' sizes first, read by the database: one text repeated means one size repeated, so only a model
        # whose most common size reaches the share can repeat a text that often, and only its texts are read. A later
        # answer to a question replaces the older.
        sizes = {(str(m), str(q)): rest for m, q, *rest in store.record_fields(
            "answers", ["model", "question_id"], [("length", ("turns",)), ("chars", ("turns", 0)),
                                                  ("chars", ("turns", 1))], benchmark=bench)}
        counted = _top_shares(sizes)
        could = [m for m, (top, total) in counted.items() if total >= 5 and top / total >= repeat_share
                 and not m.startswith(NULL_MODEL_PREFIX)]
        texts = {(str(a.get("model")), str(a.get("question_id"))): json.dumps(a.get("turns"))
                 for a in store.record_dicts("answers", benchmark=bench, model=could)} if could else {}
    reasons: dict[str, list[str]] = {}
    flagged: set[str] = set()
    if not checks.empty:
        checks = checks[checks["benchmark"].isin([bench, None]) | checks["benchmark"].isna()]
        for model, g in checks.dropna(subset=["model"]).groupby("model"):
            flagged.add(str(model))
            details = "; ".join(dict.fromkeys(f"{n}: {d}" if d else n for n, d in zip(g["name"], g["detail"],
                                                                                          strict=True)))
            reasons.setdefault(str(model), []).append(f"cheat check flagged ({details})")
    models = [m for m, (_, total) in counted.items() if total >= 5 and not m.startswith(NULL_MODEL_PREFIX)]
    shares = {m: (top, total) for m, (top, total) in _top_shares(texts).items() if top / total >= repeat_share}
    repeated: dict[str, float] = {}
    # only a model that stands out: when half of the models or more repeat themselves, it says nothing about any one
    if 2 * len(shares) < len(models):
        for model, (top, total) in sorted(shares.items()):
            repeated[model] = top / total
            reasons.setdefault(model, []).append(
                f"the same answer to {top} of {total} questions ({top / total:.0%}): the null-model pattern")
    probes = {m for m in counted if m.startswith(NULL_MODEL_PREFIX)}
    for m in probes:
        reasons.setdefault(m, []).append("a null-model probe answer, not a model")
    rows = [(m, m in flagged, repeated.get(m, float("nan")), m in probes, "; ".join(r))
            for m, r in sorted(reasons.items())]
    return pd.DataFrame(rows, columns=cols)


def _top_shares(values: dict[tuple[str, str], Any]) -> dict[str, tuple[int, int]]:
    """model -> (how many of its answers share its most common value, how many answers it has)."""
    per: dict[str, dict[Any, int]] = {}
    for (model, _), v in values.items():
        seen = per.setdefault(model, {})
        key = tuple(v) if isinstance(v, list) else v
        seen[key] = seen.get(key, 0) + 1
    return {m: (max(c.values()), sum(c.values())) for m, c in per.items()}


def _metric_columns(board: pd.DataFrame) -> list[str]:
    return [c for c in board.columns if f"{c}_lower" in board.columns]


def length_frame(board: pd.DataFrame, bench: str) -> pd.DataFrame:
    """Score against answer length per model, with the benchmark's length-controlled (or style-controlled) score
    beside it (:attr:`BenchInfo.length_metrics`).

    Columns: judge, model, avg_tokens, avg_chars, raw (the uncontrolled score), controlled (e.g. AlpacaEval's LC win
    rate, Arena-Hard's style-controlled score; NaN where none), gap = raw - controlled. ``attrs`` names the two
    metrics. A benchmark that is not installed shows its first metric as raw.
    """
    raw_name, ctl_name = bench_info(bench).length_metrics
    if raw_name not in board.columns:
        raw_name = next(iter(_metric_columns(board)), raw_name)
    cols = ["judge", "model", "avg_tokens", "avg_chars", "raw", "controlled", "gap"]
    if board.empty or raw_name not in board.columns:
        out = pd.DataFrame(columns=cols)
    else:
        out = pd.DataFrame({
            "judge": board["judge"], "model": board["model"],
            "avg_tokens": pd.to_numeric(board.get("avg_tokens"), errors="coerce"),
            "avg_chars": pd.to_numeric(board.get("avg_chars"), errors="coerce"),
            "raw": board[raw_name].astype(float),
            "controlled": board[ctl_name].astype(float) if ctl_name in board.columns else np.nan,
        })
        out["gap"] = out["raw"] - out["controlled"]
    out.attrs.update(raw=raw_name, controlled=ctl_name if ctl_name in board.columns else None)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Training curves


def report_frame(source: Source) -> pd.DataFrame:
    """Every stored report in long form: one row per (report, metric) with value, lower, upper and n."""
    cols = ["run", "model", "benchmark", "judge", "metric", "value", "lower", "upper", "n", "created_at"]
    with _open(source) as store:
        reports = store.stamped("reports")
    rows = [
        (r.run, r.model, r.benchmark, r.judge, metric, est.value, est.ci_low, est.ci_high, est.n, created)
        for _, created, r in reports for metric, est in r.metrics.items()  # type: ignore[attr-defined]
    ]
    out = pd.DataFrame(rows, columns=cols)
    # a recomputed report replaces the older one for the same run, benchmark, judge and metric
    return out.drop_duplicates(["run", "benchmark", "judge", "metric"], keep="last").reset_index(drop=True)


def drift_frame(source: Source) -> pd.DataFrame:
    """Per run: the drift analysis its reports carry (``meta["drift"]``, written by the trainers): KL to the stage's
    start with its interval, mean answer length in tokens and its growth. Runs without one are absent."""
    cols = ["run", "kl", "kl_lower", "kl_upper", "length_mean", "length_growth"]
    with _open(source) as store:
        reports = store.stamped("reports")
    rows = {}
    for _, _, r in reports:
        drift = r.meta.get("drift") if isinstance(r, Report) else None
        if not isinstance(drift, dict):
            continue
        kl, length = drift.get("kl") or {}, drift.get("length") or {}
        rows[r.run] = (r.run, kl.get("value"), kl.get("ci_low"), kl.get("ci_high"), length.get("mean"),
                       length.get("growth"))
    return pd.DataFrame(list(rows.values()), columns=cols)


def _stage(stage: str | None) -> str:
    return stage or NO_STAGE


def _latest_promotions(promotions: Sequence[Any]) -> dict[str, list[Any]]:
    """Per stage, the records of its latest promotion decision.

    Records come oldest first, in the order they were stored (never by a clock: trainers on several machines do
    not share one). One decision stores its promoted checkpoints by rank (1, 2, ...): a record whose rank does not
    follow the stage's previous record starts a new decision, which replaces the earlier one.
    """
    latest: dict[str, list[Any]] = {}
    for p in promotions:
        current = latest.get(p.stage)
        if current and p.rank > current[-1].rank:
            current.append(p)
        else:
            latest[p.stage] = [p]
    return latest


def _legacy_promoted_runs(checks: pd.DataFrame, runs: dict[str, Any]) -> set[str]:
    """Promotions as older lioneval stored them: a "promotion" check or ``RunSpec.settings["promoted"]``."""
    promoted = {k for k, r in runs.items() if r.settings.get("promoted") is True}
    if not checks.empty:
        promo = checks[checks["name"] == "promotion"]
        # A stage promoted again replaces its earlier decision: keep, per stage, the rows of the latest decision
        # (rows are in write order; one decision's rows share their list of reasons).
        latest: dict[object, object] = {}
        for meta in promo["meta"]:
            latest[meta.get("stage")] = meta.get("reasons")
        keep = np.array([latest.get(m.get("stage")) == m.get("reasons") for m in promo["meta"]], dtype=bool)
        promo = promo[keep]
        for run, model, meta in zip(promo["run"], promo["model"], promo["meta"], strict=True):
            if meta.get("promoted") is True:
                if run:
                    promoted.add(run)
                elif model:
                    promoted |= {k for k, r in runs.items() if r.model == model}
    return promoted


def _promoted_runs(promotions: Sequence[Any], checks: pd.DataFrame, runs: dict[str, Any]) -> set[str]:
    """Runs of the checkpoints promoted by each stage's latest decision. ``Promotion`` records win: the older forms
    count only for stages that have none."""
    promoted: set[str] = set()
    decided = set()
    for stage, records in _latest_promotions(promotions).items():
        decided.add(stage)
        for p in records:
            # the promoted checkpoint, whichever of its evaluations (runs) a report came from
            promoted |= {k for k, r in runs.items() if k == p.run or r.model == p.model}
    legacy = _legacy_promoted_runs(checks, runs)
    promoted |= {k for k in legacy if k in runs and _stage(runs[k].stage) not in decided}
    return promoted


def _stop_steps(stops: Sequence[Any], runs: dict[str, Any]) -> dict[str, int]:
    """stage -> the step its training stopped at: the latest ``EarlyStop`` record of the stage, else (stores of
    older versions) the earliest ``RunSpec.settings["early_stop_step"]`` of the stage."""
    out: dict[str, int] = {}
    for r in runs.values():
        stop = r.settings.get("early_stop_step")
        if isinstance(stop, (int, float)) and not isinstance(stop, bool):
            stage = _stage(r.stage)
            out[stage] = min(int(stop), out.get(stage, int(stop)))
    recorded: dict[str, int] = {}
    for e in stops:  # oldest first: a later stop of the same stage (training resumed) replaces an earlier one
        stage = e.stage or (runs[e.run].stage if e.run in runs else None)
        recorded[_stage(stage)] = int(e.step)
    return {**out, **recorded}


def training_frame(source: Source) -> pd.DataFrame:
    """Report metrics against training step, one row per (checkpoint run, benchmark, judge, metric).

    Columns: stage, step, model, run, benchmark, judge, metric, value, lower, upper, n, early_stop_step (the step
    the stage stopped at: its latest ``EarlyStop`` record), stopped_here, promoted (the checkpoint is among those
    promoted by its stage's latest ``Promotion`` decision), flagged (a cheat check flagged the run) and flags (which,
    with their stored details); global_step (steps on one axis across stages), stop_reason and promotion_reasons
    (as stored with the decisions). Stores written
    by older versions are read too: ``RunSpec.settings["early_stop_step"]``, "promotion" checks with
    ``meta["promoted"]`` true and ``settings["promoted"]``, for the stages without the newer records.
    Reports of runs without a step are left out; ``attrs["unplaced"]`` counts them.
    """
    cols = ["stage", "step", "global_step", "model", "run", "benchmark", "judge", "metric", "value", "lower",
            "upper", "n", "early_stop_step", "stopped_here", "stop_reason", "promoted", "promotion_reasons",
            "flagged", "flags"]
    reports = report_frame(source)
    if reports.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["unplaced"] = 0
        return out
    with _open(source) as store:
        runs = {key: spec for key, _, spec in store.stamped("runs")}
        placed = reports[reports["run"].map(lambda k: k in runs and runs[k].step is not None)].copy()
        unplaced = int(reports["run"].nunique() - placed["run"].nunique())
        if placed.empty:
            out = pd.DataFrame(columns=cols)
            out.attrs["unplaced"] = unplaced
            return out
        checks = _checks_to_frame(store.stamped("checks"))
        promotions = store.promotions()
        stops = store.early_stops()
    placed["stage"] = placed["run"].map(lambda k: _stage(runs[k].stage))
    placed["step"] = placed["run"].map(lambda k: int(runs[k].step))
    placed["early_stop_step"] = placed["stage"].map(_stop_steps(stops, runs)).astype("Int64")
    placed["stopped_here"] = placed["step"] == placed["early_stop_step"].fillna(-1)
    placed["promoted"] = placed["run"].isin(_promoted_runs(promotions, checks, runs))
    placed["global_step"] = _global_steps(placed)
    reasons = _promotion_reasons(promotions, runs)
    placed["promotion_reasons"] = [
        reasons.get(k, "") if p else "" for k, p in zip(placed["run"], placed["promoted"], strict=True)
    ]
    stop_reasons = {_stage(e.stage or (runs[e.run].stage if e.run in runs else None)): e.reason for e in stops}
    placed["stop_reason"] = [
        stop_reasons.get(st, "") if here else "" for st, here in zip(placed["stage"], placed["stopped_here"],
                                                                     strict=True)
    ]
    flagged_runs = set(checks.loc[checks["status"] == "flag", "run"].dropna()) if not checks.empty else set()
    flagged_models = (
        set(checks.loc[(checks["status"] == "flag") & (checks["scope"] != "judge"), "model"].dropna())
        if not checks.empty else set()
    )
    placed["flagged"] = placed["run"].isin(flagged_runs) | placed["model"].isin(flagged_models)
    why: dict[tuple[str, str], list[str]] = {}
    if not checks.empty:
        flags = checks[(checks["status"] == "flag") & (checks["scope"] != "judge")]
        for run, model, name, detail in zip(flags["run"], flags["model"], flags["name"], flags["detail"],
                                            strict=True):
            why.setdefault(("run", run) if run else ("model", model), []).append(f"{name}: {detail}" if detail
                                                                                 else name)
    placed["flags"] = [
        "; ".join(dict.fromkeys(why.get(("run", r), []) + why.get(("model", m), []))) if f else ""
        for r, m, f in zip(placed["run"], placed["model"], placed["flagged"], strict=True)
    ]
    out = placed[cols].sort_values(["global_step", "stage", "benchmark", "judge", "metric"], ignore_index=True)
    out.attrs["unplaced"] = unplaced
    return out


def _global_steps(placed: pd.DataFrame) -> pd.Series:
    """Steps on one axis across stages: stages in the order their first report was written, each shifted to start
    after the previous stage's last step, unless its own steps already do (a trainer that counts on across stages)."""
    order = placed.groupby("stage")["created_at"].min().sort_values(kind="stable").index
    offsets, end = {}, 0
    for stage in order:
        steps = placed.loc[placed["stage"] == stage, "step"]
        offsets[stage] = 0 if int(steps.min()) > end else end
        end = offsets[stage] + int(steps.max())
    return placed["step"] + placed["stage"].map(offsets)


def _promotion_reasons(promotions: Sequence[Any], runs: dict[str, Any]) -> dict[str, str]:
    """run -> why its stage's latest decision promoted it (the stored reasons)."""
    out: dict[str, str] = {}
    for records in _latest_promotions(promotions).values():
        for p in records:
            why = "; ".join(p.reasons) or "promoted (no reason stored)"
            for k, r in runs.items():
                if k == p.run or r.model == p.model:
                    out[k] = f"rank {p.rank}: {why}"
    return out


# --------------------------------------------------------------------------------------------------------------------
# Cheat flags


def cheat_runs(source: Source) -> pd.DataFrame:
    """Per run (or model, for checks without a run): how many checks passed, warned and flagged, which flagged, and
    the stored details of every flag and warning (``details``)."""
    cols = ["run", "model", "flag", "warn", "pass", "flagged_answers", "flagged_checks", "details"]
    df = _check_frame(source, scope=["run", "answer"])
    df = df[df["name"] != "promotion"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(run=df["run"].fillna(""), model=df["model"].fillna(""))
    rows = []
    for (run, model), g in df.groupby(["run", "model"], sort=True):
        flags = g[g["status"] == "flag"]
        rows.append((
            run, model, len(flags), int((g["status"] == "warn").sum()), int((g["status"] == "pass").sum()),
            int(flags.loc[flags["scope"] == "answer", "question_id"].nunique()),
            ", ".join(sorted(set(flags["name"]))),
            "; ".join(dict.fromkeys(
                f"{status} {name}: {d}"
                for status, name, d, scope in zip(g["status"], g["name"], g["detail"], g["scope"], strict=True)
                if d and status in ("flag", "warn") and scope == "run"
            )),
        ))
    return pd.DataFrame(rows, columns=cols).sort_values(["flag", "warn"], ascending=False, ignore_index=True)


def answer_checks(
    source: Source, *, model: str | None = None, statuses: Sequence[str] = ("flag", "warn")
) -> pd.DataFrame:
    """Answer-level checks with their spans and the answer text the spans point into.

    ``text`` is the answer's turns joined by a blank line and ``spans`` are offsets in it: a check that lists its
    hits in ``meta["hits"]`` (each with a 0-based ``turn`` and ``start``/``end`` in that turn, as the checks module
    writes them) is mapped turn by turn; other spans are taken to index the first turn. Columns: run, model,
    benchmark, question_id, name, status, detail, spans, text, rule.
    """
    cols = ["run", "model", "benchmark", "question_id", "name", "status", "detail", "spans", "text", "rule"]
    df = _check_frame(source, scope="answer", status=list(statuses), model=model)
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["rule"] = [m.get("rule") or ", ".join(m.get("rules") or []) for m in df["meta"]]
    texts = _answer_texts(source, df)
    placed = [
        _place_spans(texts.get((b, q, m)) or texts.get((None, q, m)) or [], meta, spans)
        for b, q, m, meta, spans in zip(df["benchmark"], df["question_id"], df["model"], df["meta"], df["spans"],
                                        strict=True)
    ]
    df["text"] = [t for t, _ in placed]
    df["spans"] = [sp for _, sp in placed]
    return df[cols].iloc[::-1].reset_index(drop=True)


def _answer_texts(source: Source, checks: pd.DataFrame) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = {}
    pairs = checks[["benchmark", "question_id", "model"]].dropna(subset=["question_id", "model"])
    if pairs.empty:
        return out
    with _open(source) as store:
        for a in store.find_answers(set(pairs["question_id"]), set(pairs["model"])):
            out[(a.benchmark, a.question_id, a.model)] = a.turns
            out[(None, a.question_id, a.model)] = a.turns
    return out


_TURN_SEP = "\n\n"


def _place_spans(turns: list[str], meta: dict, spans: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """The joined turns and the spans shifted into them."""
    text = _TURN_SEP.join(turns)
    starts = np.cumsum([0] + [len(t) + len(_TURN_SEP) for t in turns[:-1]]).tolist() if turns else [0]
    hits = meta.get("hits")
    if isinstance(hits, list) and hits and all(isinstance(h, dict) for h in hits):
        placed = []
        for h in hits:
            turn, start, end = h.get("turn") or 0, h.get("start"), h.get("end")
            if isinstance(turn, int) and 0 <= turn < len(starts) and isinstance(start, int) and isinstance(end, int):
                placed.append((starts[turn] + start, starts[turn] + end))
        return text, placed
    return text, [(int(s), int(e)) for s, e in spans]


def highlight_spans(text: str, spans: Sequence[Sequence[int]]) -> list[tuple[str, bool]]:
    """Split ``text`` into (segment, matched) pieces; overlapping or touching spans merge, out-of-range ones clip."""
    cuts = sorted((max(0, int(s)), min(len(text), int(e))) for s, e in spans if int(e) > int(s))
    merged: list[list[int]] = []
    for s, e in cuts:
        if s >= len(text):
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, pos = [], 0
    for s, e in merged:
        if s > pos:
            out.append((text[pos:s], False))
        out.append((text[s:e], True))
        pos = e
    if pos < len(text) or not out:
        out.append((text[pos:], False))
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """A table as UTF-8 CSV for download (lists and dicts written as JSON)."""
    out = df.copy()
    for c in out.columns:
        if out[c].map(lambda v: isinstance(v, (list, dict, tuple))).any():
            out[c] = out[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict, tuple)) else v)
    return out.to_csv(index=False).encode("utf-8")
