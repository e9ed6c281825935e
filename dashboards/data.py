"""Store -> pandas DataFrames for the dashboard. Pure functions: no Streamlit, testable on their own.

Every view reads the store through this module. The judge-comparison queries are the hot path (a training job with
50 checkpoints x 3 benchmarks x 3 judges x 500 questions leaves ~225k judgments), so they do not validate records
through pydantic: they pull the few fields they need with SQLite's JSON functions over a read-only connection and
fetch full records (question, answers, judge rationales) only for the rows a page shows. All SQL of this module is
in ``_SQL``; the other views reuse :mod:`lioneval.leaderboard` and the ``RunStore`` readers.

Conventions of the judge comparison, also shown in the app:

- Items: judgments of different judges are matched on (question, model, turn, baseline); the judge-specific
  ``inputs`` hash differs between judges because their prompt templates differ.
- Pairwise verdicts are compared as categories win / tie / loss (the model's win share above, at or below 1/2):
  agreement is the share of items with the same category and kappa is Cohen's unweighted kappa on them.
- Ratings (MT-Bench 1-10) are rounded to whole points: agreement is exact agreement, ``agreement_within_1`` allows
  one point, and kappa is Cohen's kappa with quadratic weights, which ranks a 7-vs-8 split as milder than 2-vs-9.
- Model scores for the rank correlation are the mean judged value on the items both judges judged (ratings: mean
  rating; pairwise: mean win share in %), so the two judges are compared on the same questions. The leaderboard
  page shows the benchmark's own estimators (Bradley-Terry, LC GLM) with their intervals.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lioneval.errors import StoreError
from lioneval.store import RunStore

__all__ = [
    "HEADLINE",
    "ITEM_KEYS",
    "PROBE_NAMES",
    "RATING_GAP",
    "answer_checks",
    "cheat_runs",
    "cohen_kappa",
    "disagreements",
    "fingerprint",
    "frame_kind",
    "highlight_spans",
    "judge_agreement",
    "judge_audits",
    "judge_health",
    "judge_inventory",
    "judge_overlap",
    "judgment_frame",
    "leaderboard_frame",
    "length_frame",
    "matched_values",
    "model_scores",
    "null_model_probe",
    "quadratic_kappa",
    "rank_correlation",
    "report_frame",
    "store_counts",
    "to_csv_bytes",
    "training_frame",
]

Source = RunStore | str | os.PathLike

# The metric a view plots by default, per benchmark (the benchmark's leaderboard headline).
HEADLINE = {"mt-bench": "overall", "arena-hard": "score", "alpaca-eval": "length_controlled_winrate"}
# The length-uncontrolled / length-controlled pair the length view compares, per benchmark.
_LENGTH_PAIRS = {
    "alpaca-eval": ("win_rate", "length_controlled_winrate"),
    "arena-hard": ("score", "score_style_controlled"),
    "mt-bench": ("overall", None),
}
ITEM_KEYS = ["question_id", "model", "turn", "baseline"]
# Names a null-model probe result goes by (scope "judge"): the checks module's and the one the issue text uses.
PROBE_NAMES = ("judge_gameable", "null-model-probe")
# Two ratings this many points apart (or more) count as a disagreement in the browser.
RATING_GAP = 2.0
_TIE_EPS = 1e-9

# --------------------------------------------------------------------------------------------------------------------
# SQL: the only place this module talks to the database. RunStore could grow these as methods (see the module doc).

# Game columns as numbers (position "A" -> 1, "B" -> 0, a single rating -> NULL): strings per row are what makes
# a big fetch slow.
_GAMES = "".join(
    f", json_extract(record, '$.games[{i}].value')"
    f", CASE json_extract(record, '$.games[{i}].model_position') WHEN 'A' THEN 1 WHEN 'B' THEN 0 END"
    for i in range(2)
)
_SQL = {
    "tables": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "counts": "SELECT COUNT(*) FROM {table}",
    # benchmark and judge only: the judgments_model index covers them, so no record is read
    "inventory": """SELECT benchmark, judge, COUNT(*) AS judgments
                    FROM judgments GROUP BY benchmark, judge ORDER BY benchmark, judge""",
    "judge_kind": "SELECT kind FROM judgments WHERE benchmark = ? AND judge = ? LIMIT 1",
    "judgments": f"""SELECT rowid, question_id, model, judge, turn, failed,
                            json_extract(record, '$.baseline'), json_extract(record, '$.value'),
                            json_array_length(record, '$.games'){_GAMES}
                     FROM judgments WHERE benchmark = ?""",
    "judgment_records": "SELECT rowid, record FROM judgments WHERE 1 = 1",
    "questions": "SELECT id, record FROM questions WHERE benchmark = ?",
    "answers": "SELECT question_id, model, record FROM answers WHERE benchmark = ?",
    "answers_any": "SELECT benchmark, question_id, model, record FROM answers WHERE 1 = 1",
    "checks": """SELECT key, run, scope, name, status, model, question_id, judge, created_at, record
                 FROM checks WHERE 1 = 1""",
    "runs": "SELECT key, model, stage, step, created_at, record FROM runs",
    "reports": "SELECT key, run, benchmark, model, judge, created_at, record FROM reports ORDER BY created_at",
}


def _path(source: Source) -> Path:
    return source.path if isinstance(source, RunStore) else Path(source)


@contextmanager
def _connect(source: Source) -> Iterator[sqlite3.Connection]:
    """A fresh read-only connection: it sees every commit a running job made so far and never blocks the writer."""
    path = _path(source)
    if not path.exists():
        raise StoreError(
            f"no store at {path}",
            fix="fill one with `lioneval import ...` or `lioneval run --ckpt ...`, or pass --store with its path",
        )
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        # reading through a memory map skips a copy per page: a third off the time of the big judgment fetch
        conn.execute("PRAGMA mmap_size=1073741824")
        yield conn
    finally:
        conn.close()


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute(_SQL["tables"])}


def _in(column: str, values: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """An ``AND column IN (...)`` clause (empty when no filter is asked for)."""
    if values is None:
        return "", []
    values = list(values)
    if not values:
        return " AND 0", []
    return f" AND {column} IN ({','.join('?' * len(values))})", values


def _query(conn: sqlite3.Connection, name: str, params: Sequence[Any] = (), where: str = "",
           table: str | None = None) -> pd.DataFrame:
    sql = _SQL[name].format(table=table) if table else _SQL[name]
    if where:
        sql = sql + where if "ORDER BY" not in sql else sql.replace(" ORDER BY", where + " ORDER BY", 1)
    cur = conn.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return pd.DataFrame.from_records(cur.fetchall(), columns=cols)


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[list[Any]]:
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i : i + size]


# --------------------------------------------------------------------------------------------------------------------
# Store overview


def fingerprint(source: Source) -> tuple:
    """Changes whenever the store is written (database and WAL file stamps): a cache key that sees a running job."""
    path = _path(source)
    out: list[Any] = [str(path.resolve())]
    for p in (path, Path(f"{path}-wal")):
        try:
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [None, None]
    return tuple(out)


def store_counts(source: Source) -> pd.DataFrame:
    """Records per table (zero for tables an older or fresh store lacks)."""
    names = ("runs", "questions", "answers", "judgments", "reports", "checks")
    with _connect(source) as conn:
        have = _tables(conn)
        rows = [(t, conn.execute(_SQL["counts"].format(table=t)).fetchone()[0] if t in have else 0) for t in names]
    return pd.DataFrame(rows, columns=["table", "records"])


def judge_inventory(source: Source) -> pd.DataFrame:
    """One row per (benchmark, judge): its kind and how many judgments it has (cheap: no record is read)."""
    cols = ["benchmark", "judge", "kind", "judgments"]
    with _connect(source) as conn:
        if "judgments" not in _tables(conn):
            return pd.DataFrame(columns=cols)
        df = _query(conn, "inventory")
        df["kind"] = [conn.execute(_SQL["judge_kind"], (b, j)).fetchone()[0] for b, j in zip(df["benchmark"],
                                                                                          df["judge"], strict=True)]
    return df[cols]


# --------------------------------------------------------------------------------------------------------------------
# Judge comparison

_FRAME_COLS = [
    "benchmark", "question_id", "model", "judge", "kind", "turn", "failed", "baseline", "value", "n_games",
    "g1_value", "g1_pos", "g2_value", "g2_pos", "rowid", "item",
]  # fmt: skip


def judgment_frame(
    source: Source, benchmark: str, judges: Sequence[str] | None = None, models: Sequence[str] | None = None
) -> pd.DataFrame:
    """The light columns of a benchmark's judgments (no texts), one row per judgment.

    ``turn`` is -1 and ``baseline`` "" where the judgment has none, so the item keys (``ITEM_KEYS``) join cleanly.
    ``g1_pos`` / ``g2_pos`` say where the judged model stood in each game ("A", "B", or "" for single ratings);
    ``rowid`` finds the full record again; ``item`` numbers the distinct items, so joins run on integers.
    """
    with _connect(source) as conn:
        if "judgments" not in _tables(conn):
            return pd.DataFrame(columns=_FRAME_COLS)
        w1, p1 = _in("judge", judges)
        w2, p2 = _in("model", models)
        rows = conn.execute(_SQL["judgments"] + w1 + w2, [benchmark, *p1, *p2]).fetchall()
        kinds = {j: conn.execute(_SQL["judge_kind"], (benchmark, j)).fetchone()[0] for j in {r[3] for r in rows}}
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


def _load_records(conn: sqlite3.Connection, name: str, where_col: str, values: Sequence[Any], *,
                  extra: str = "", params: Sequence[Any] = ()) -> list[tuple]:
    """Rows of ``_SQL[name]`` whose ``where_col`` is one of ``values`` (in chunks, under SQLite's variable limit)."""
    out: list[tuple] = []
    for chunk in _chunks(sorted(set(values))):
        w, p = _in(where_col, chunk)
        out += conn.execute(_SQL[name] + extra + w, [*params, *p]).fetchall()
    return out


def _rationale(rec: dict[str, Any]) -> str:
    """What the judge wrote: the judgment's raw text, or each game's, labelled by where the judged model stood."""
    if rec.get("raw"):
        return rec["raw"]
    games = rec.get("games") or []
    if len(games) == 1:
        return games[0].get("raw") or rec.get("error") or ""
    parts = []
    for i, g in enumerate(games, 1):
        head = f"[game {i}: model as {g.get('model_position', '?')}, verdict {g.get('label') or 'none'}]"
        parts.append(f"{head}\n{g.get('raw') or g.get('error') or ''}")
    return "\n\n".join(parts) or rec.get("error") or ""


def disagreements(
    source: Source,
    frame: pd.DataFrame,
    judges: Sequence[str],
    *,
    limit: int = 200,
    rating_gap: float = RATING_GAP,
    wide: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Items the chosen judges disagree on, widest spread first, with the texts a reader needs to decide.

    Pairwise: the judges' win/tie/loss differ. Ratings: the highest and lowest rating are ``rating_gap`` or more
    apart. Columns: the item keys, ``value:<judge>`` and ``rationale:<judge>`` per judge, ``spread``, the question
    (``question``), the judged answer (``answer``) and the baseline's answer (``baseline_answer``; for ratings the
    judged turn). Texts are fetched for the returned rows only; ``attrs["total"]`` holds the count before ``limit``.
    """
    judges = list(dict.fromkeys(judges))
    value_cols = [f"value:{j}" for j in judges]
    cols = [*ITEM_KEYS, "spread", *value_cols, "question", "answer", "baseline_answer",
            *(f"rationale:{j}" for j in judges)]
    empty = pd.DataFrame(columns=cols)
    empty.attrs["total"] = 0
    if len(judges) < 2 or frame.empty:
        return empty
    kind = frame_kind(frame)
    wide = (matched_values(frame, judges) if wide is None else wide).dropna(subset=judges)
    vals = wide[judges].to_numpy(float)
    if not len(vals):
        return empty
    if kind == "pairwise":
        cats = _categories(vals, kind)
        mask = (cats != cats[:, :1]).any(axis=1)
    else:
        mask = (vals.max(axis=1) - vals.min(axis=1)) >= rating_gap
    hit = wide[mask].copy()
    hit["spread"] = (vals[mask].max(axis=1) - vals[mask].min(axis=1)) * _scale(kind)
    total = len(hit)
    hit = hit.sort_values(["spread", "question_id", "model"], ascending=[False, True, True]).head(limit)
    hit = hit.rename(columns={j: f"value:{j}" for j in judges})
    if kind == "pairwise":
        hit[value_cols] = hit[value_cols] * 100.0
    bench = str(frame["benchmark"].iloc[0])
    found = frame.loc[frame["judge"].isin(judges), [*ITEM_KEYS, "judge", "rowid"]].merge(hit[ITEM_KEYS], on=ITEM_KEYS)
    _attach_texts(source, bench, hit, judges, found)
    hit = hit[cols].reset_index(drop=True)
    hit.attrs["total"] = total
    return hit


def _attach_texts(source: Source, bench: str, hit: pd.DataFrame, judges: list[str], found: pd.DataFrame) -> None:
    qids, models = set(hit["question_id"]), set(hit["model"]) | (set(hit["baseline"]) - {""})
    with _connect(source) as conn:
        have = _tables(conn)
        questions = {}
        if "questions" in have:
            for qid, rec in _load_records(conn, "questions", "id", qids, params=[bench]):
                questions[qid] = json.loads(rec)
        answers: dict[tuple[str, str], dict] = {}
        if "answers" in have:
            w, p = _in("model", sorted(models))
            # rowid order: the latest stored answer of a (question, model) wins, as a rerun would use it
            for qid, model, rec in _load_records(conn, "answers", "question_id", qids, extra=w, params=[bench, *p]):
                answers[(qid, model)] = json.loads(rec)
        rationales: dict[tuple, str] = {}
        if "judgments" in have:
            # by rowid: the judgments table has no question index, and scanning it for a page of texts is slow
            for _, rec in _load_records(conn, "judgment_records", "rowid", [int(r) for r in found["rowid"]]):
                r = json.loads(rec)
                key = (r["question_id"], r["model"], r.get("turn") or -1, r.get("baseline") or "", r["judge"])
                rationales[key] = _rationale(r)

    def turn_text(turns: list[str] | None, turn: int) -> str:
        if not turns:
            return ""
        if turn >= 1 and turn <= len(turns):
            return turns[turn - 1]
        return "\n\n".join(turns)

    q_text, a_text, b_text = [], [], []
    for qid, model, turn, baseline in hit[ITEM_KEYS].itertuples(index=False):
        q = questions.get(qid, {})
        q_text.append(turn_text(q.get("turns"), turn) if q else "(question not in the store)")
        a = answers.get((qid, model))
        a_text.append(turn_text(a["turns"], turn) if a else "(answer not in the store)")
        b = answers.get((qid, baseline)) if baseline else None
        b_text.append(turn_text(b["turns"], turn) if b else "")
    hit["question"], hit["answer"], hit["baseline_answer"] = q_text, a_text, b_text
    for j in judges:
        hit[f"rationale:{j}"] = [
            rationales.get((qid, model, turn, baseline, j), "")
            for qid, model, turn, baseline in hit[ITEM_KEYS].itertuples(index=False)
        ]


def _check_frame(source: Source, where: str = "", params: Sequence[Any] = ()) -> pd.DataFrame:
    cols = ["key", "run", "scope", "name", "status", "model", "question_id", "judge", "created_at", "value",
            "threshold", "detail", "spans", "meta"]
    with _connect(source) as conn:
        if "checks" not in _tables(conn):
            return pd.DataFrame(columns=cols)
        df = _query(conn, "checks", params, where=where + " ORDER BY created_at")
    recs = [json.loads(r) for r in df.pop("record")]
    df["value"] = [r.get("value") for r in recs]
    df["threshold"] = [r.get("threshold") for r in recs]
    df["detail"] = [r.get("detail") or "" for r in recs]
    df["spans"] = [[tuple(s) for s in r.get("spans") or []] for r in recs]
    df["meta"] = [r.get("meta") or {} for r in recs]
    return df[cols]


def judge_audits(source: Source) -> pd.DataFrame:
    """Every stored judge-scope check (null-model probe, position bias, self-preference...), latest first."""
    df = _check_frame(source, " AND scope = ?", ["judge"])
    return df.drop(columns=["key", "spans"]).iloc[::-1].reset_index(drop=True)


def null_model_probe(source: Source, judges: Sequence[str] | None = None) -> pd.DataFrame:
    """The latest null-model probe per judge and benchmark (``PROBE_NAMES``): gameable = flagged.

    The probe's per-answer results (``null_model:<answer>``) stay in :func:`judge_audits`.
    """
    cols = ["judge", "benchmark", "status", "gameable", "value", "threshold", "detail"]
    w, p = _in("name", PROBE_NAMES)
    df = _check_frame(source, " AND scope = 'judge'" + w, p)
    if judges is not None:
        df = df[df["judge"].isin(judges)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(benchmark=[m.get("benchmark") or "" for m in df["meta"]])
    df = df.drop_duplicates(["judge", "benchmark"], keep="last")
    df["gameable"] = (df["status"] == "flag").to_numpy() | np.array([bool(m.get("gameable")) for m in df["meta"]])
    return df[cols].sort_values(["gameable", "judge"], ascending=[False, True], ignore_index=True)


# --------------------------------------------------------------------------------------------------------------------
# Leaderboards and the length view


def leaderboard_frame(
    source: RunStore,
    bench: str,
    *,
    judge: str | None = None,
    rounds: int | None = None,
    seed: int = 0,
    style_control: bool = False,
) -> pd.DataFrame:
    """:func:`lioneval.leaderboard.leaderboard` as a flat table: per metric ``<m>``, ``<m>_lower``, ``<m>_upper``.

    Also ``judge``, ``model``, ``n`` (of the headline), ``avg_tokens``, ``avg_chars`` and the count columns.
    ``attrs["headline"]`` names the metric the rows are sorted by.
    """
    from lioneval.leaderboard import leaderboard

    options = {"style_control": True} if style_control and bench == "arena-hard" else {}
    rows = leaderboard(source, bench, judge=judge, rounds=rounds, seed=seed, **options)
    headline = HEADLINE.get(bench)
    flat = []
    for r in rows:
        out: dict[str, Any] = {"judge": r["judge"], "model": r["model"]}
        for name, est in r.items():
            if isinstance(est, dict) and "value" in est:
                out[name] = est["value"]
                out[f"{name}_lower"] = est.get("lower")
                out[f"{name}_upper"] = est.get("upper")
        head = r.get(headline) if isinstance(r.get(headline), dict) else None
        out["n"] = head.get("n") if head else None
        out["avg_tokens"], out["avg_chars"] = r.get("avg_tokens"), r.get("avg_chars")
        for k, v in (r.get("counts") or {}).items():
            out[f"count_{k}"] = v
        flat.append(out)
    df = pd.DataFrame(flat)
    df.attrs["headline"] = headline if headline in df.columns else None
    return df


def length_frame(board: pd.DataFrame, bench: str) -> pd.DataFrame:
    """Score against answer length per model, with the length-controlled (or style-controlled) score beside it.

    Columns: judge, model, avg_tokens, avg_chars, raw (the uncontrolled score), controlled (AlpacaEval's LC win rate,
    Arena-Hard's style-controlled score; NaN where none), gap = raw - controlled. ``attrs`` names the two metrics.
    """
    raw_name, ctl_name = _LENGTH_PAIRS.get(bench, (HEADLINE.get(bench), None))
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


def _records(source: Source, name: str) -> pd.DataFrame:
    with _connect(source) as conn:
        if name not in _tables(conn):
            return pd.DataFrame()
        return _query(conn, name)


def report_frame(source: Source) -> pd.DataFrame:
    """Every stored report in long form: one row per (report, metric) with value, lower, upper and n."""
    cols = ["run", "model", "benchmark", "judge", "metric", "value", "lower", "upper", "n", "created_at"]
    df = _records(source, "reports")
    rows = []
    for rec_text, created in zip(df.get("record", []), df.get("created_at", []), strict=True):
        rec = json.loads(rec_text)
        for metric, est in (rec.get("metrics") or {}).items():
            rows.append((rec["run"], rec["model"], rec["benchmark"], rec["judge"], metric, est.get("value"),
                         est.get("ci_low"), est.get("ci_high"), est.get("n"), created))
    out = pd.DataFrame(rows, columns=cols)
    # a recomputed report replaces the older one for the same run, benchmark, judge and metric
    return out.drop_duplicates(["run", "benchmark", "judge", "metric"], keep="last").reset_index(drop=True)


def _promoted_runs(checks: pd.DataFrame, runs: dict[str, dict]) -> set[str]:
    promoted = {k for k, r in runs.items() if (r.get("settings") or {}).get("promoted") is True}
    if not checks.empty:
        promo = checks[checks["name"] == "promotion"]
        # A stage promoted again replaces its earlier decision: keep, per stage, the rows of the latest decision
        # (rows are in created_at order; one decision's rows share their list of reasons).
        latest: dict[object, object] = {}
        for meta in promo["meta"]:
            if isinstance(meta, dict):
                latest[meta.get("stage")] = meta.get("reasons")
        keep = [not isinstance(m, dict) or latest.get(m.get("stage")) == m.get("reasons") for m in promo["meta"]]
        promo = promo[keep]
        for run, model, meta in zip(promo["run"], promo["model"], promo["meta"], strict=True):
            if isinstance(meta, dict) and meta.get("promoted") is True:
                if run:
                    promoted.add(run)
                elif model:
                    promoted |= {k for k, r in runs.items() if r.get("model") == model}
    return promoted


def training_frame(source: Source) -> pd.DataFrame:
    """Report metrics against training step, one row per (checkpoint run, benchmark, judge, metric).

    Columns: stage, step, model, run, benchmark, judge, metric, value, lower, upper, n, early_stop_step (the step
    the stage stopped at, from ``RunSpec.settings["early_stop_step"]``), stopped_here, promoted (a "promotion"
    check with ``meta["promoted"]`` true, or ``settings["promoted"]``), flagged (a cheat check flagged the run).
    Reports of runs without a step are left out; ``attrs["unplaced"]`` counts them.
    """
    cols = ["stage", "step", "model", "run", "benchmark", "judge", "metric", "value", "lower", "upper", "n",
            "early_stop_step", "stopped_here", "promoted", "flagged"]
    reports = report_frame(source)
    if reports.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["unplaced"] = 0
        return out
    runs_df = _records(source, "runs")
    runs = {k: json.loads(r) for k, r in zip(runs_df.get("key", []), runs_df.get("record", []), strict=True)}
    placed = reports[reports["run"].map(lambda k: runs.get(k, {}).get("step") is not None)].copy()
    unplaced = int(reports["run"].nunique() - placed["run"].nunique())
    if placed.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["unplaced"] = unplaced
        return out
    checks = _check_frame(source)
    placed["stage"] = placed["run"].map(lambda k: runs[k].get("stage") or "(no stage)")
    placed["step"] = placed["run"].map(lambda k: int(runs[k]["step"]))
    stops: dict[str, int] = {}
    for r in runs.values():
        stop = (r.get("settings") or {}).get("early_stop_step")
        if isinstance(stop, (int, float)) and not isinstance(stop, bool):
            stage = r.get("stage") or "(no stage)"
            stops[stage] = min(int(stop), stops.get(stage, int(stop)))
    placed["early_stop_step"] = placed["stage"].map(stops).astype("Int64")
    placed["stopped_here"] = placed["step"] == placed["early_stop_step"].fillna(-1)
    placed["promoted"] = placed["run"].isin(_promoted_runs(checks, runs))
    flagged_runs = set(checks.loc[checks["status"] == "flag", "run"].dropna()) if not checks.empty else set()
    flagged_models = (
        set(checks.loc[(checks["status"] == "flag") & (checks["scope"] != "judge"), "model"].dropna())
        if not checks.empty else set()
    )
    placed["flagged"] = placed["run"].isin(flagged_runs) | placed["model"].isin(flagged_models)
    out = placed[cols].sort_values(["stage", "step", "benchmark", "judge", "metric"], ignore_index=True)
    out.attrs["unplaced"] = unplaced
    return out


# --------------------------------------------------------------------------------------------------------------------
# Cheat flags


def cheat_runs(source: Source) -> pd.DataFrame:
    """Per run (or model, for checks without a run): how many checks passed, warned and flagged, and which flagged."""
    cols = ["run", "model", "flag", "warn", "pass", "flagged_answers", "flagged_checks", "details"]
    df = _check_frame(source, " AND scope IN ('run', 'answer')")
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
            "; ".join(dict.fromkeys(d for d in flags.loc[flags["scope"] == "run", "detail"] if d)),
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
    w1, p1 = _in("status", list(statuses))
    w2, p2 = ("", []) if model is None else (" AND model = ?", [model])
    df = _check_frame(source, " AND scope = 'answer'" + w1 + w2, [*p1, *p2])
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["benchmark"] = [m.get("benchmark") for m in df["meta"]]
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
    with _connect(source) as conn:
        if "answers" not in _tables(conn):
            return out
        for chunk in _chunks(sorted(set(pairs["question_id"]))):
            w1, p1 = _in("question_id", chunk)
            w2, p2 = _in("model", sorted(set(pairs["model"])))
            for bench, qid, model, rec in conn.execute(_SQL["answers_any"] + w1 + w2, [*p1, *p2]):
                turns = json.loads(rec)["turns"]
                out[(bench, qid, model)] = turns
                out[(None, qid, model)] = turns
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
