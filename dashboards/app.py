"""The lioneval dashboard: lays out the DataFrames of :mod:`lioneval.dashboards.data` with Streamlit.

Run it with ``lioneval --store PATH dashboard`` (or ``streamlit run app.py -- --store PATH``; the ``LIONEVAL_STORE``
variable works too). It opens the store read-only and re-reads it whenever the store file changed, so it can watch
a training job that is still writing. Every control is mirrored in the URL, so a view can be shared by its link.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import html
import os
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from lioneval.dashboards import data
from lioneval.errors import LionEvalError
from lioneval.human_labels import is_human
from lioneval.store import DEFAULT_STORE, RunStore, is_url


def _fill_help() -> str:
    benches = ", ".join(f"`{b}`" for b in data.benchmark_names()) or "a benchmark name"
    return f"""\
Fill the store with any of:

- `lioneval import BENCH DATA_DIR` (BENCH: {benches}): official answer and judgment files;
- `lioneval judge --bench BENCH --model M --judge SPEC`: judge stored answers (run it with a second judge to
  compare judges);
- `lioneval run --ckpt out/dpo-step2000`: generate, judge, check and report a checkpoint (reports feed the
  training view);
- the `LionEvalCallback` in a training run, which writes a report per saved checkpoint.
"""


FILL_HELP = _fill_help()


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store")
    parser.add_argument("--data", action="append", default=[])
    parser.add_argument("--lc-data")
    parser.add_argument("--glm-weights")
    parser.add_argument("--price", action="append", default=[])
    parser.add_argument("--prices")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def judge_prices() -> tuple[tuple[str, tuple[float, float]], ...]:
    """Judge prices (USD per million input / output tokens) from ``--price MODEL=IN/OUT`` (repeatable) and
    ``--prices FILE.yaml`` after ``--`` on the streamlit command line, or the variable ``LIONEVAL_PRICES`` (a YAML
    file); a sorted tuple, so it can key a cache. Raises LionEvalError on a malformed price."""
    args = _args()
    found = data.parse_prices(args.price, args.prices or os.environ.get("LIONEVAL_PRICES") or None)
    return tuple(sorted(found.items()))


def store_path() -> Path | str:
    """``--store`` after ``--`` on the streamlit command line wins over ``LIONEVAL_STORE`` (a file, or a database
    server's URL, kept as a string)."""
    where = _args().store or os.environ.get("LIONEVAL_STORE") or DEFAULT_STORE
    return where if is_url(where) else Path(where)


def bench_inputs(bench: str) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """(data, settings) of ``bench`` as ``lioneval leaderboard`` takes them: ``--data BENCH=PATH`` (repeatable),
    ``--lc-data`` and ``--glm-weights`` after ``--`` on the streamlit command line, or the variables
    ``LIONEVAL_LC_DATA`` and ``LIONEVAL_GLM_WEIGHTS``. Settings a benchmark does not take are left out (asked of
    its constructor); without them a benchmark finds its inputs as the CLI does (AlpacaEval: the hub cache)."""
    args = _args()
    data_path = next((v.split("=", 1)[1] for v in args.data if v.split("=", 1)[0] == bench and "=" in v), None)
    settings = data.bench_settings(
        bench, lc_data=args.lc_data or os.environ.get("LIONEVAL_LC_DATA") or None,
        weights=args.glm_weights or os.environ.get("LIONEVAL_GLM_WEIGHTS") or None,
    )
    return data_path, tuple(sorted((k, str(v)) for k, v in settings.items()))


# --------------------------------------------------------------------------------------------------------------------
# Cached reads. The light ones take the store file's fingerprint (it changes on every write). The costly ones take
# a stamp of the store's content for their benchmark (records, highest row, latest write per table): a running job
# that writes progress or another benchmark's records leaves it, so they are computed once per content. DataFrame
# attrs do not survive the cache's copy, so the functions that need them return them beside the frame.


def _cached_read(read: Any, max_entries: int = 8) -> Any:
    """``read(path, *args)`` cached under (path, stamp, *args): the stamp is the key that changes with the store,
    ``read`` never sees it. Each reader gets a cache of its own (Streamlit keys a cache by the function's name)."""

    def cached(path: str, stamp: Any, *args: Any) -> Any:
        return read(path, *args)

    cached.__qualname__ = cached.__name__ = f"read_{read.__name__}"
    return st.cache_data(show_spinner=False, max_entries=max_entries)(cached)


_counts = _cached_read(data.store_counts)
_inventory = _cached_read(data.judge_inventory)
_probe = _cached_read(data.null_model_probe)
_audits = _cached_read(data.judge_audits)
_reports = _cached_read(data.report_frame)
_cheat_runs = _cached_read(data.cheat_runs)
_answer_checks = _cached_read(data.answer_checks)
_marks = _cached_read(data.model_marks, 16)
_detail = _cached_read(data.item_detail, 64)


@st.cache_data(show_spinner=False, max_entries=32)
def _bench_stamp(path: str, stamp: tuple, bench: str) -> tuple:
    """The content stamp of a benchmark's records, read again only when the store file changed (``stamp``)."""
    return data.store_stamp(path, bench, tables=("questions", "answers", "judgments", "checks"))


@st.cache_data(show_spinner=False, max_entries=8)
def _checks_stamp(path: str, stamp: tuple) -> tuple:
    return data.store_stamp(path, tables=("checks",))


@st.cache_resource(show_spinner=False, max_entries=4)
def _frame(path: str, stamp: tuple, bench: str) -> pd.DataFrame:
    """Shared, not copied (a resource cache): pickling 100k rows per rerun would cost more than the page. Read-only."""
    return data.judgment_frame(path, bench)


@st.cache_data(show_spinner=False, max_entries=16)
def _overlap(path: str, stamp: tuple, bench: str) -> pd.DataFrame:
    return data.judge_overlap(_frame(path, stamp, bench))


def _chosen(path: str, stamp: tuple, bench: str, judges: tuple[str, ...]) -> pd.DataFrame:
    """The benchmark's judgment frame, the chosen judges' rows only."""
    frame = _frame(path, stamp, bench)
    return frame[frame["judge"].isin(judges)]


@st.cache_data(show_spinner=False, max_entries=16)
def _judge_stats(path: str, stamp: tuple, bench: str, judges: tuple[str, ...]) -> tuple:
    """Agreement, scores, health and the count of items all chosen judges parsed (cached: reruns are free)."""
    frame = _chosen(path, stamp, bench, judges)
    kind = data.frame_kind(frame) if not frame.empty else (data.bench_info(bench).kind or "rating")
    health = data.judge_health(frame)
    if len(judges) < 2:
        return None, None, health, 0, kind
    wide = data.matched_values(frame, list(judges))
    n_all = int(wide[list(judges)].notna().all(axis=1).sum())
    return data.judge_agreement(frame, list(judges), wide), data.model_scores(frame, list(judges)), health, n_all, kind


@st.cache_data(show_spinner=False, max_entries=16)
def _disagreements(path: str, stamp: tuple, bench: str, judges: tuple[str, ...], gap: float) -> tuple:
    frame = _chosen(path, stamp, bench, judges)
    df = data.disagreements(path, frame, list(judges), rating_gap=gap, limit=None, texts=False)
    return df, df.attrs.get("total", len(df)), df.attrs.get("compared", 0)


@st.cache_data(show_spinner=False, max_entries=16)
def _usage(path: str, stamp: tuple, bench: str, prices: tuple[tuple[str, tuple[float, float]], ...]) -> pd.DataFrame:
    return data.judge_usage(path, bench, dict(prices))


@st.cache_data(show_spinner=False, max_entries=16)
def _human(path: str, stamp: tuple, bench: str) -> pd.DataFrame:
    return data.human_agreement(_frame(path, stamp, bench))


@st.cache_data(show_spinner=False, max_entries=32)
def _board_or_error(path: str, stamp: tuple, bench: str, judge: str | None, rounds: int | None, seed: int,
                    options: tuple[str, ...], inputs: tuple) -> tuple:
    """(board, headline, None), or (None, None, (message, fix)) of the LionEvalError that refused it: a refusal is
    cached too (a toggle the records cannot serve, e.g. style control without style counts, is refused after
    seconds of reading; the Length page asks for it on every rerun)."""
    data_path, settings = inputs
    try:
        with RunStore(path, readonly=True) as store:
            df = data.leaderboard_frame(store, bench, judge=judge, rounds=rounds, seed=seed,
                                        options=dict.fromkeys(options, True), data=data_path, settings=dict(settings))
    except LionEvalError as e:
        return None, None, (e.message, e.fix)
    return df, df.attrs.get("headline"), None


def _board(path: str, stamp: tuple, bench: str, judge: str | None, rounds: int | None, seed: int,
           options: tuple[str, ...] = (), inputs: tuple = (None, ())) -> tuple:
    """(board, headline); raises the LionEvalError that refused it. ``options``: the benchmark's summary toggles
    that are on (a sorted tuple, so the cache key is stable); ``inputs``: (data, settings) from
    :func:`bench_inputs`."""
    df, headline, refused = _board_or_error(path, stamp, bench, judge, rounds, seed, options, inputs)
    if refused is not None:
        raise LionEvalError(refused[0], fix=refused[1])
    return df, headline


@st.cache_data(show_spinner=False, max_entries=8)
def _training(path: str, stamp: tuple) -> tuple:
    df = data.training_frame(path)
    return df, df.attrs.get("unplaced", 0), data.drift_frame(path)


# --------------------------------------------------------------------------------------------------------------------
# Layout helpers


# legends above the plot area: below it they cover the axis title
LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}


def table(df: pd.DataFrame, name: str, *, caption: str | None = None, **kw: Any) -> None:
    """A table with its CSV download beside it."""
    if caption:
        st.caption(caption)
    st.dataframe(df, hide_index=True, **kw)
    # a callable is run only when the button is clicked: no CSV is built for tables nobody downloads
    st.download_button(f"Download {name}.csv", functools.partial(data.to_csv_bytes, df), file_name=f"{name}.csv",
                       mime="text/csv", key=f"csv-{name}")


def pick(label: str, options: list[Any], key: str, *, where=st.sidebar, **kw: Any) -> Any:
    """A selectbox bound to the URL query parameter ``key`` (a shared link restores it).

    Bound widgets put the displayed option text in the URL, so options are shown as they are (no format_func).
    """
    return where.selectbox(label, options, key=key, bind="query-params", **kw)


def short(judge: str) -> str:
    return judge.split("#", 1)[0] + ("#" + judge.split("#", 1)[1][:6] if "#" in judge else "")


def fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else f"{v:.{digits}f}"


def link(**params: Any) -> str:
    """A link to a view of this dashboard (relative: it keeps the server and port)."""
    return "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


def interval_label(methods: pd.Series) -> str:
    """How the drawn intervals were made, from the Estimates' ``method`` (only rows that have an interval)."""
    found = sorted({str(m) for m in methods.dropna() if str(m)})
    return f"95% interval: {', '.join(found)}" if found else "no interval"


# A chart whose figures take longer than this to compute gets a placeholder chart while they are computed.
PENDING_AFTER_S = 0.25


@contextlib.contextmanager
def pending_chart(slot: Any, text: str, after: float = PENDING_AFTER_S) -> Iterator[None]:
    """While the block runs, from ``after`` seconds on, ``slot`` (an ``st.empty()``) holds an empty chart that says
    ``text``; the caller then puts the real chart there or empties it. A block done sooner (a cached result) draws
    nothing.

    Why: the browser loads its chart library (megabytes of script) only when a page first draws a chart. Drawn while
    the server computes a cold leaderboard, it loads in the meantime instead of after the numbers are there.
    The placeholder is drawn by a timer thread that runs in the page's script context, as ``st.spinner`` draws its
    own: so it is not recorded as output of a cached function being computed meanwhile."""
    lock = threading.Lock()
    open_ = [True]

    def draw() -> None:
        with lock:
            if open_[0]:
                fig = go.Figure()
                fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
                fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=200,
                                  margin={"t": 10, "b": 10})
                slot.plotly_chart(fig)

    timer = threading.Timer(after, draw)
    add_script_run_ctx(timer)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            open_[0] = False


def _page_thread() -> concurrent.futures.ThreadPoolExecutor:
    """A thread for work a page does meanwhile, in the page's script context (so Streamlit's caches serve it as
    they serve the page)."""
    ctx = get_script_run_ctx()
    return concurrent.futures.ThreadPoolExecutor(1, initializer=add_script_run_ctx, initargs=(None, ctx))


def markdown_block(text: str) -> None:
    """Model and judge text as markdown (code, lists, tables render); raw HTML stays text."""
    st.markdown(text or "_(empty)_")


def lead_columns(df: pd.DataFrame, lead: list[str]) -> pd.DataFrame:
    """``df`` with the ``lead`` columns it has first, the others after them in their order."""
    lead = list(dict.fromkeys(c for c in lead if c in df.columns))
    return df[lead + [c for c in df.columns if c not in lead]]


def linked_table(df: pd.DataFrame, name: str, links: list[str], label: str, text: str, **config: Any) -> None:
    """:func:`table` with an ``open`` column of links to other views (``links``: one per row)."""
    table(df.assign(open=links), name, column_config={**config, "open": st.column_config.LinkColumn(
        label, display_text=text)})


def filtered(df: pd.DataFrame, category: str, model: str, search: str) -> pd.DataFrame:
    """Rows of one category and model ("(all)": any) whose question id contains ``search`` (any case)."""
    if category != "(all)":
        df = df[df["category"] == category]
    if model != "(all)":
        df = df[df["model"] == model]
    if search:
        df = df[df["question_id"].astype(str).str.contains(search, case=False, regex=False)]
    return df


def judged_bench(path: str, stamp: tuple, title: str, empty: str = "No judgments yet.") -> tuple | None:
    """A page's header and its benchmark picker over the benchmarks with judgments: (inventory, benchmark), or None
    after saying how to fill the store when it holds no judgment."""
    st.header(title)
    inv = _inventory(path, stamp)
    if inv.empty:
        st.info(f"{empty}\n\n" + FILL_HELP)
        return None
    return inv, pick("Benchmark", sorted(inv["benchmark"].unique()), "bench")


# --------------------------------------------------------------------------------------------------------------------
# Pages


def page_judges(path: str, stamp: tuple) -> None:
    picked = judged_bench(path, stamp, "Judge comparison", "No judgments in this store yet.")
    if picked is None:
        return
    inv, bench = picked
    bstamp = _bench_stamp(path, stamp, bench)
    judges_here = inv.loc[inv["benchmark"] == bench].sort_values("judgments", ascending=False)
    options = list(judges_here["judge"])
    labels = data.judge_labels(options)
    # by default the two judges that share the most items: a pair that shares none says nothing
    overlap = _overlap(path, bstamp, bench)
    default = [overlap.iloc[0]["judge_a"], overlap.iloc[0]["judge_b"]] if len(overlap) else options[:2]
    chosen = st.sidebar.multiselect(
        "Judges (two or more)", options, default=default, key="judges", bind="query-params"
    )
    gap = st.sidebar.number_input(
        "Rating gap that counts as disagreement", 1.0, 9.0, data.RATING_GAP, 1.0, key="gap", bind="query-params"
    )
    shown_inv = judges_here.assign(label=judges_here["judge"].map(labels))[
        ["label", "kind", "judgments", "benchmark", "judge"]]
    table(shown_inv, f"judges-{bench}", caption=f"Judges with {bench} judgments (the null-model probe's answers "
          "are left out of every number on this page)")
    if len(options) < 2:
        st.info(
            f"Only one judge has judged {bench}. Judge the same answers with another one to compare them, e.g. "
            f"`lioneval rejudge RUN --judge SPEC` or `lioneval judge --bench {bench} --model M --judge SPEC`."
        )
    agreement, scores, health, n_all, kind = _judge_stats(path, bstamp, bench, tuple(chosen))

    probe = _probe(path, stamp)
    gameable = probe[probe["gameable"] & probe["judge"].isin(options)]
    for j, detail in zip(gameable["judge"], gameable["detail"], strict=True):
        st.warning(f"The null-model probe marked judge `{labels.get(j, j)}` as gameable: a constant answer scores "
                   f"above the bar. {detail or ''}")

    dis = total = compared = None
    if len(chosen) >= 2:
        dis, total, compared = _disagreements(path, bstamp, bench, tuple(chosen), float(gap))
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Items compared", f"{compared}", help="items that two or more of the chosen judges parsed")
        c2.metric("Judged by all", f"{n_all}", help="items that every chosen judge parsed")
        c3.metric("Disagreements", f"{total}", help="compared items on which two of the judges disagree")
        c4.metric("Mean kappa", fmt(agreement["kappa"].mean()), help="mean over the pairs of judges")
        empty_pairs = agreement[agreement["items"] == 0]
        for a, b in zip(empty_pairs["judge_a"], empty_pairs["judge_b"], strict=True):
            st.warning(f"`{labels[a]}` and `{labels[b]}` judged no item in common: their agreement is unknown.")
        st.subheader("Model scores by judge")
        unit = "win share vs baseline (%)" if kind == "pairwise" else "mean rating"
        fig = go.Figure()
        order = scores.groupby("model")["score"].mean().sort_values().index.tolist()
        for judge, g in scores.groupby("judge", sort=False):
            g = g.set_index("model").reindex(order)
            # markers only: the models are not a sequence, a line between them would suggest one
            fig.add_trace(go.Scatter(x=g.index, y=g["score"], mode="markers", name=labels.get(judge, judge),
                                     marker={"size": 10}))
        fig.update_layout(yaxis_title=unit, xaxis_title="model (sorted by mean score)", height=380,
                          margin={"t": 40, "b": 10}, legend=LEGEND)
        st.plotly_chart(fig, key="judge-scores")
        st.subheader("Agreement between judges")
        shown = agreement.assign(label_a=agreement["judge_a"].map(labels), label_b=agreement["judge_b"].map(labels))
        shown = shown[["label_a", "label_b", "items", "agreement", "kappa", "spearman", "kendall",
                       "agreement_within_1", "kappa_method", "models", "judge_a", "judge_b"]]
        table(shown, f"agreement-{bench}", caption=(
            "Per pair of judges on the items both parsed. Pairwise: win/tie/loss agreement and Cohen's kappa. "
            "Ratings: exact and within-one-point agreement of rounded ratings, quadratic-weighted kappa. "
            "Spearman/Kendall: rank correlation of the models' mean scores on the shared items."
        ))
        pivot = scores.pivot(index="model", columns="judge", values="score").rename(columns=labels).reset_index()
        pivot.columns.name = None
        table(pivot, f"model-scores-{bench}", caption=f"Model scores per judge ({unit})")
    elif chosen:
        st.info("Pick a second judge in the sidebar to compare.")

    st.subheader("Judge report card: position bias and parse failures")
    card = health.assign(label=health["judge"].map(labels))
    card = lead_columns(card, ["label", "parse_failure_rate", "games_agree", "first_position_win_share", "judgments",
                               "failed"])
    table(card, f"judge-health-{bench}", caption=(
        "games_agree: share of two-order judgments whose games give the same verdict (order-blind judge: 1). "
        "first_position_win_share: share of decisive games won by the answer shown first (unbiased: 0.5)."
    ))
    _usage_card(path, bstamp, bench, chosen or options, labels)
    _human_card(path, bstamp, bench, options, labels)
    for label, rate in zip(card["label"], card["parse_failure_rate"], strict=True):
        if rate == rate and rate > 0.5:
            st.warning(f"`{label}` failed to give a verdict on {rate:.0%} of its judgments: its numbers rest on the "
                       "rest.")

    st.subheader("Null-model probe")
    shown_probe = probe[probe["judge"].isin(options)]
    if shown_probe.empty:
        st.caption(f"No probe stored for these judges: `lioneval audit judge --judge SPEC --bench {bench}` runs it.")
    else:
        table(shown_probe, f"null-model-probe-{bench}")
    audits = _audits(path, stamp)
    audits = audits[audits["judge"].isin(options) & ~audits["name"].isin(data.PROBE_NAMES)]
    if not audits.empty:
        with st.expander("Other stored judge audits"):
            table(audits.drop(columns=["meta"]), f"judge-audits-{bench}")

    if dis is not None:
        _disagreement_browser(path, bstamp, bench, chosen, labels, dis, int(total or 0), int(compared or 0))


def _usage_card(path: str, stamp: tuple, bench: str, judges: list[str], labels: dict[str, str]) -> None:
    """Tokens, calls, latency and (with prices given) dollars per 1,000 judgments of each judge."""
    try:
        prices = judge_prices()
    except LionEvalError as e:
        st.error(str(e))
        prices = ()
    usage = _usage(path, stamp, bench, prices)
    usage = usage[usage["judge"].isin(judges)].assign(label=lambda u: u["judge"].map(labels))
    if not usage["with_usage"].sum():
        return
    table(usage[["label", "judgments", "with_usage", "prompt_tokens_per_1k", "completion_tokens_per_1k",
                 "calls_per_1k", "usd_per_1k", "price", "with_latency", "latency_p50_s", "latency_p90_s",
                 "judge_hours_per_1k", "judge"]], f"judge-usage-{bench}", caption=(
        "Cost per 1,000 judgments: tokens and calls (retries included), from the usage each judgment recorded "
        "(imported judgments record none). usd_per_1k: from the prices given to the dashboard (`--price MODEL=IN/OUT`"
        ", USD per million input/output tokens; `price` shows the entry used), blank without one. Latency: wall "
        "seconds of a judgment's answered calls (its games summed), p50 and p90 over the judgments that recorded it "
        "(`with_latency`); judge_hours_per_1k: their mean x 1,000, in hours, before any parallelism."))


def _human_card(path: str, stamp: tuple, bench: str, options: list[str], labels: dict[str, str]) -> None:
    """Each judge's agreement with the human votes stored for the benchmark (`lioneval import fastchat-human`)."""
    if not any(is_human(j) for j in options):
        return
    st.subheader("Agreement with human labels")
    human = _human(path, stamp, bench)
    if human.empty:
        st.info("The human votes share no (question, model pair, turn) with another judge's judgments: judge the "
                "answers the annotators compared to see how the judges agree with them.")
        return
    table(human.assign(label=human["judge"].map(labels))[["label", *human.columns]], f"human-agreement-{bench}",
          caption=(
              "Each human vote on a (question, model pair, turn) against the judge's preference on that pair and turn"
              ", as the MT-Bench paper counts agreement. A rating judge's preference is implied by its two ratings "
              "(the higher wins; equal ratings tie). agreement_with_ties: same win/tie/loss over all votes; "
              "agreement_without_ties: over the votes where neither side called a tie (the paper's setup without "
              "ties). judge_ties / human_ties: the share of votes each side called a tie. The human judge's own row "
              "is the bar: its annotators against each other, every two votes on one item (votes: those pairs)."))


def _disagreement_browser(path: str, stamp: tuple, bench: str, chosen: list[str], labels: dict[str, str],
                          dis: pd.DataFrame, total: int, compared: int) -> None:
    st.subheader("Where the judges disagree")
    if compared == 0:
        st.warning("No item was parsed by two of the chosen judges, so their agreement cannot be told. Pick judges "
                   "that judged the same answers.")
        return
    if dis.empty:
        st.success(f"The chosen judges agree on every one of the {compared} items two or more of them parsed.")
        return
    c1, c2, c3 = st.columns(3)
    cats = sorted(c for c in dis["category"].unique() if c)
    cat = c1.selectbox("Category", ["(all)", *cats], key="dis_cat") if cats else "(all)"
    model = c2.selectbox("Model", ["(all)", *sorted(dis["model"].unique())], key="dis_model")
    search = c3.text_input("Question id contains", key="dis_q")
    view = filtered(dis, cat, model, search)
    st.caption(f"{total} of {compared} compared items in disagreement; {len(view)} match the filters "
               "(widest spread first). Pick one below to read it.")
    value_cols = [c for c in view.columns if c.startswith("value:")]
    brief = view[[*data.ITEM_KEYS, "category", "spread", *value_cols]].rename(
        columns={f"value:{j}": labels.get(j, j) for j in chosen})
    linked_table(brief, f"disagreements-{bench}", [link(view="Questions", bench=bench, question=q, model=m)
                                                   for q, m in zip(view["question_id"], view["model"], strict=True)],
                 "side by side", "open", turn=st.column_config.NumberColumn(format="%d"))
    if view.empty:
        return
    rows = view.reset_index(drop=True)
    item_labels = [f"{r.question_id} / {r.model}" + (f" / turn {r.turn}" if r.turn > 0 else "")
                   for r in rows.itertuples()]
    idx = st.selectbox("Item", range(len(rows)), format_func=lambda i: item_labels[i], key="item")
    row = rows.iloc[int(idx or 0)]
    models = [row["model"], *([row["baseline"]] if row["baseline"] else [])]
    detail = _detail(path, stamp, bench, str(row["question_id"]), tuple(models))
    show_item(detail, models, int(row["turn"]), chosen, labels)


def show_item(detail: dict, models: list[str], turn: int, judges: list[str] | None,
              labels: dict[str, str]) -> None:
    """One question with every turn up to ``turn`` (all when 0 or -1), its reference answers, the answers of
    ``models`` side by side and each judge's verdict and rationale."""
    question, reference = detail["question"], detail["reference"]
    last = len(question) if turn < 1 else min(turn, len(question))
    if detail["category"]:
        st.caption(f"category: {detail['category']}")
    verdicts = detail["verdicts"]
    if judges is not None and not verdicts.empty:
        verdicts = verdicts[verdicts["judge"].isin(judges)]
    for t in range(1, max(last, 1) + 1):
        st.markdown(f"**Question, turn {t}**" if len(question) > 1 else "**Question**")
        markdown_block(question[t - 1] if t <= len(question) else "(question not in the store)")
        if reference and t <= len(reference) and reference[t - 1]:
            with st.expander(f"Reference answer, turn {t}", expanded=True):
                markdown_block(reference[t - 1])
        cols = st.columns(len(models))
        for col, m in zip(cols, models, strict=True):
            turns = detail["answers"].get(m) or detail["baselines"].get(m)
            with col:
                st.markdown(f"**Answer of `{m}`**")
                markdown_block(turns[t - 1] if turns and t <= len(turns) else "(answer not in the store)")
    if verdicts.empty:
        st.caption("No stored verdict on this question for these models.")
        return
    st.markdown("**Verdicts**")
    for r in verdicts.itertuples():
        value = "failed: " + r.error if r.failed else fmt(r.value, 2)
        where = f" turn {r.turn}" if r.turn else ""
        vs = f" vs `{r.baseline}`" if r.baseline else ""
        with st.expander(f"{labels.get(r.judge, r.judge)} on {r.model}{where}{vs}: {value}", expanded=True):
            markdown_block(r.rationale)


def page_questions(path: str, stamp: tuple) -> None:
    picked = judged_bench(path, stamp, "Questions")
    if picked is None:
        return
    _, bench = picked
    bstamp = _bench_stamp(path, stamp, bench)
    frame = _frame(path, bstamp, bench)
    labels = data.judge_labels(sorted(frame["judge"].unique()))
    scale = 100.0 if data.frame_kind(frame) == "pairwise" else 1.0
    items = _items(path, bstamp, stamp, bench)

    with st.sidebar:
        cat_options = ["(all)", *sorted(c for c in items["category"].unique() if c)]
        cat = st.selectbox("Category", cat_options, key="category", bind="query-params")
        model = st.selectbox("Model", ["(all)", *sorted(items["model"].unique())], key="model",
                             bind="query-params")
        only = st.multiselect("Only items", ["judges disagree", "flagged", "failed"], key="only")
        search = st.text_input("Question id contains", key="q")
    view = filtered(items, cat, model, search)
    if "judges disagree" in only:
        view = view[(view["judges"] >= 2) & (view["spread"] >= (50.0 if scale == 100.0 else data.RATING_GAP))]
    if "flagged" in only:
        view = view[view["flagged"]]
    if "failed" in only:
        view = view[view["failed"] > 0]
    st.caption(f"{len(view)} of {len(items)} (question, model) items match. The spread is the widest gap between "
               "two verdicts on the item (any judge, any turn).")
    table(view.drop(columns=["low", "high"]), f"questions-{bench}")
    qids = sorted(view["question_id"].unique())
    if not qids:
        return
    wanted = st.query_params.get("question")
    qid = st.selectbox("Question", qids, index=qids.index(wanted) if wanted in qids else 0, key="question_pick")
    answered = sorted(frame.loc[frame["question_id"] == qid, "model"].unique())
    a_default = model if model in answered else answered[0]
    c1, c2 = st.columns(2)
    a = c1.selectbox("Left", answered, index=answered.index(a_default), key="left")
    others = [m for m in answered if m != a] or answered
    b = c2.selectbox("Right", ["(its baseline)", *others], key="right")
    models = [a] if b == "(its baseline)" else [a, b]
    detail = _detail(path, bstamp, bench, str(qid), tuple(models))
    if b == "(its baseline)":
        models = [a, *sorted(detail["baselines"])[:1]]
    show_item(detail, models, 0, None, labels)


@st.cache_data(show_spinner=False, max_entries=8)
def _items(path: str, bstamp: tuple, stamp: tuple, bench: str) -> pd.DataFrame:
    """One row per (question, model) of the benchmark: how many judges, failures, the verdicts' spread, the
    question's category and whether a cheat check flagged the answer."""
    frame = _frame(path, bstamp, bench)
    items = frame.groupby(["question_id", "model"], sort=True).agg(
        judges=("judge", "nunique"), failed=("failed", "sum"), low=("value", "min"), high=("value", "max"),
    ).reset_index()
    with RunStore(path, readonly=True) as store:
        cats = {q.id: q.category or "" for q in store.questions(benchmark=bench)}
    items["category"] = [cats.get(q, "") for q in items["question_id"]]
    items["spread"] = (items["high"] - items["low"]) * (100.0 if data.frame_kind(frame) == "pairwise" else 1.0)
    flagged = _answer_checks(path, stamp)
    flag_keys = set(zip(flagged["question_id"], flagged["model"], strict=True)) if not flagged.empty else set()
    items["flagged"] = [(q, m) in flag_keys for q, m in zip(items["question_id"], items["model"], strict=True)]
    return items


def page_leaderboard(path: str, stamp: tuple) -> None:
    st.header("Leaderboards")
    inv = _inventory(path, stamp)
    reports = _reports(path, stamp)
    if inv.empty and reports.empty:
        st.info("No judgments or reports yet.\n\n" + FILL_HELP)
        return
    if not inv.empty:
        _board_section(path, stamp, inv)
    if not reports.empty:
        with st.expander("Stored reports (as the runs computed them)"):
            table(reports, "reports")


def _board_section(path: str, stamp: tuple, inv: pd.DataFrame) -> None:
    benches = sorted(inv["benchmark"].unique())
    bench = pick("Benchmark", benches, "bench")
    judges = ["(all)", *sorted(inv.loc[inv["benchmark"] == bench, "judge"])]
    judge = pick("Judge", judges, "judge")
    rounds = st.sidebar.number_input("Bootstrap rounds (empty: the benchmark's)", 10, 5000, None, 10, key="rounds",
                                     bind="query-params")
    seed = st.sidebar.number_input("Seed", 0, 2**31 - 1, 0, key="seed", bind="query-params")
    show_marked = st.sidebar.toggle("Rank flagged models too", key="rank_flagged", bind="query-params")
    info = data.bench_info(bench)
    # one checkbox per summary option the benchmark offers (e.g. style control), none for the others
    on = tuple(sorted(name for name, label in info.toggles.items()
                      if st.sidebar.checkbox(label, key=f"opt_{name}", bind="query-params")))
    bstamp = _bench_stamp(path, stamp, bench)
    inputs = bench_inputs(bench)
    # the notes that qualify the chart go above it, but are known only once the board is
    head, slot = st.container(), st.empty()
    # which models to mark is read (answers and checks) on a thread of its own while the board is computed: the
    # database reads them meanwhile (0.25 s of a cold AlpacaEval board of 57 models)
    with _page_thread() as pool:
        marks = pool.submit(_marks, path, (bstamp, _checks_stamp(path, stamp)), bench)
        try:
            with pending_chart(slot, f"Computing the {bench} leaderboard..."):
                board, headline = _board(path, bstamp, bench, None if judge == "(all)" else judge,
                                         None if rounds is None else int(rounds), int(seed), on, inputs)
        except LionEvalError as e:
            slot.empty()
            head.error(str(e))
            return
        marked = marks.result()
        reasons = dict(zip(marked["model"], marked["reasons"], strict=True))
    if not board.empty:
        board = board.assign(mark=[reasons.get(m, "") for m in board["model"]])
    probe = _probe(path, stamp)
    gameable = list(probe.loc[probe["gameable"], "judge"].unique())
    with head:
        noted = _board_notes(bench, board, headline, inputs, on, show_marked, gameable)
    if noted is None:
        slot.empty()
        return
    ranked, metrics, metric, labels = noted
    hib = info.higher_is_better
    # one chart for every judge, on one axis: scores of different judges side by side on the same scale
    fig = go.Figure()
    order = ranked.groupby("model")[metric].mean().sort_values(ascending=hib).index.tolist()
    for jid, g in ranked.groupby("judge", sort=False):
        g = g.set_index("model").reindex(order).dropna(subset=[metric])
        has = g[f"{metric}_lower"].notna() & g[f"{metric}_upper"].notna()
        err = None
        if has.any():
            err = {"type": "data", "symmetric": False,
                   "array": (g[f"{metric}_upper"] - g[metric]).where(has).astype(float).tolist(),
                   "arrayminus": (g[metric] - g[f"{metric}_lower"]).where(has).astype(float).tolist()}
        fig.add_trace(go.Scatter(x=g[metric], y=g.index, mode="markers", name=labels.get(jid, jid), error_x=err,
                                 customdata=g[[f"{metric}_method"]].fillna("").to_numpy(),
                                 hovertemplate="%{y}: %{x:.2f} (%{customdata[0]})<extra></extra>"))
    methods = ranked.loc[ranked[f"{metric}_lower"].notna(), f"{metric}_method"]
    if ranked.empty:
        slot.empty()
    else:
        fig.update_layout(xaxis_title=f"{metric} ({interval_label(methods)})", height=160 + 22 * len(order),
                          margin={"t": 40, "b": 10}, legend=LEGEND)
        slot.plotly_chart(fig, key="board")
    sign = -1 if hib else 1
    out = board.assign(rank=np.nan)
    for _, g in ranked.groupby("judge", sort=False):
        out.loc[g.index, "rank"] = (sign * g[metric]).rank(method="min")
    out = out.assign(_key=out["rank"].fillna(np.inf)).sort_values(["judge", "_key", "model"]).drop(columns="_key")
    out = out.assign(judge_label=out["judge"].map(labels))
    out = lead_columns(out, ["judge_label", "rank", "model", metric, f"{metric}_lower", f"{metric}_upper",
                             f"{metric}_method", "n", "mark", "reliable", "unreliable", "comparable", "note", "failed",
                             "dropped"])
    linked_table(out, f"leaderboard-{bench}", [link(view="Questions", bench=bench, model=m) for m in out["model"]],
                 "answers", "browse")
    _breakdown(ranked, metrics, labels)


def _board_notes(bench: str, board: pd.DataFrame, headline: str | None, inputs: tuple, on: tuple[str, ...],
                 show_marked: bool, gameable: list[str]) -> tuple | None:
    """What qualifies a leaderboard's numbers, above its chart: its inputs, the metric picker, and warnings about
    scores that are not comparable or not reliable, ``gameable`` judges (the null-model probe's) and flagged models
    (``board["mark"]``). Returns (the rows to rank, the metrics, the chosen metric, judge labels); None when there
    is no score."""
    info = data.bench_info(bench)
    given = ([("data", inputs[0])] if inputs[0] else []) + list(inputs[1])
    if given:
        st.caption("Benchmark inputs: " + ", ".join(f"{k} = `{v}`" for k, v in given))
    if board.empty:
        st.info(f"No scores for {bench} yet.")
        return None
    metrics = [c for c in board.columns if f"{c}_lower" in board.columns]
    controlled = info.length_metrics[1]
    default = controlled if on and controlled in metrics else headline if headline in metrics else metrics[0]
    # a toggle that adds a controlled score switches the plot to it: the choice is kept per set of toggles
    metric = st.selectbox("Metric", metrics, index=metrics.index(default), key="_".join(["metric", *on]),
                          bind="query-params")
    not_comparable = board.loc[~board["comparable"].astype(bool), "note"]
    if len(not_comparable):
        notes = "; ".join(dict.fromkeys(n for n in not_comparable if n)) or "see the notes column"
        st.warning(f"{len(not_comparable)} scores are not comparable with the official leaderboard: {notes}.")
    labels = data.judge_labels(list(board["judge"].unique()))
    for j in [j for j in gameable if j in set(board["judge"])]:
        st.warning(f"Judge `{labels.get(j, j)}` is gameable (the null-model probe): rank with care.")
    unreliable = board[~board["reliable"].astype(bool)]
    if len(unreliable):
        first = unreliable["unreliable"].iloc[0].split("; ")[0]
        st.warning(f"{len(unreliable)} of {len(board)} scores are unreliable (`reliable` False; the `unreliable` "
                   f"column says why), e.g. {unreliable['model'].iloc[0]}: {first}.")
    marked = board["mark"] != ""
    if marked.any() and not show_marked:
        st.info(f"{int(marked.sum())} flagged models are not ranked (listed at the bottom of the table with the "
                "reason); tick 'Rank flagged models too' to rank them.")
    ranked = board if show_marked else board[~marked]
    if ranked.empty:
        st.info("Every model here is flagged; tick 'Rank flagged models too' to rank them anyway.")
    return ranked, metrics, metric, labels


def _breakdown(board: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> None:
    """Metrics named ``group/part`` (MT-Bench's ``category/<name>``) as bars with their intervals."""
    groups = sorted({m.split("/", 1)[0] for m in metrics if "/" in m})
    if not groups:
        return
    st.subheader("Breakdown")
    group = st.selectbox("Group", groups, key="group") if len(groups) > 1 else groups[0]
    parts = [m for m in metrics if m.startswith(f"{group}/")]
    models = list(dict.fromkeys(board["model"]))
    chosen = st.multiselect("Models", models, default=models[:4], key="breakdown_models")
    fig = go.Figure()
    for (jid, model), g in board[board["model"].isin(chosen)].groupby(["judge", "model"], sort=False):
        r = g.iloc[0]
        lows = [r[f"{p}_lower"] for p in parts]
        highs = [r[f"{p}_upper"] for p in parts]
        vals = [r[p] for p in parts]
        has = all(v is not None and v == v for v in lows + highs)
        err = {"type": "data", "symmetric": False, "array": [h - v for h, v in zip(highs, vals, strict=True)],
               "arrayminus": [v - lo for v, lo in zip(vals, lows, strict=True)]} if has else None
        name = model if board["judge"].nunique() == 1 else f"{model} ({labels.get(jid, jid)})"
        fig.add_trace(go.Bar(x=[p.split("/", 1)[1] for p in parts], y=vals, name=name, error_y=err))
    methods = board[[f"{p}_method" for p in parts]].stack() if parts else pd.Series(dtype=object)
    fig.update_layout(barmode="group", yaxis_title=f"{group} score ({interval_label(methods)})", height=400,
                      margin={"t": 40, "b": 10}, legend=LEGEND)
    st.plotly_chart(fig, key="breakdown")


def page_training(path: str, stamp: tuple) -> None:
    st.header("Training curves")
    df, unplaced, drift = _training(path, stamp)
    if df.empty:
        msg = "No reports of training checkpoints yet (a checkpoint run needs a stage and a step)."
        if unplaced:
            msg += f" {unplaced} runs have reports but no step."
        st.info(msg + "\n\nEvaluate checkpoints with `lioneval run --ckpt out/sft-step500` (the stage and step come "
                "from the path or trainer_state.json), or train with `LionEvalCallback`.")
        return
    bench = pick("Benchmark", sorted(df["benchmark"].unique()), "bench")
    sub = df[df["benchmark"] == bench]
    judge = pick("Judge", sorted(sub["judge"].unique()), "judge")
    sub = sub[sub["judge"] == judge]
    metrics = sorted(sub["metric"].unique())
    default = data.bench_info(bench).headline
    metric = pick("Metric", metrics, "metric", index=metrics.index(default) if default in metrics else 0)
    sub = sub[sub["metric"] == metric].sort_values("global_step")
    sub = sub.merge(drift, on="run", how="left") if not drift.empty else sub
    rows = 1 + int("kl" in sub and sub["kl"].notna().any()) + int("length_mean" in sub and
                                                                   sub["length_mean"].notna().any())
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.6] + [0.4 / (rows - 1)] * (rows - 1) if rows > 1 else [1.0])
    for stage, g in sub.groupby("stage", sort=False):
        band = g.dropna(subset=["lower", "upper"])
        if not band.empty:
            fig.add_trace(go.Scatter(
                x=list(band["global_step"]) + list(band["global_step"][::-1]),
                y=list(band["upper"]) + list(band["lower"][::-1]), fill="toself", opacity=0.2, line={"width": 0},
                name=f"{stage} interval", hoverinfo="skip",
            ), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=g["global_step"], y=g["value"], mode="lines+markers", name=stage,
            customdata=np.stack([g["model"], g["step"]], axis=1),
            hovertemplate="%{customdata[0]} (stage step %{customdata[1]}): %{y:.2f}<extra></extra>",
        ), row=1, col=1)
        stop = g[g["stopped_here"]]
        if not stop.empty:
            fig.add_vline(x=int(stop["global_step"].iloc[0]), line_dash="dash", annotation_text=f"{stage} stopped")
    starts = sub.groupby("stage")["global_step"].min().sort_values()
    for stage, x in list(starts.items())[1:]:
        fig.add_vline(x=int(x), line_dash="dot", line_color="gray", annotation_text=f"{stage} starts",
                      annotation_position="bottom right")
    promoted = sub[sub["promoted"]]
    if not promoted.empty:
        fig.add_trace(go.Scatter(
            x=promoted["global_step"], y=promoted["value"], mode="markers", name="promoted",
            customdata=promoted[["model", "promotion_reasons"]].to_numpy(),
            hovertemplate="promoted %{customdata[0]}: %{customdata[1]}<extra></extra>",
            marker={"symbol": "star", "size": 16, "color": "gold", "line": {"width": 1}}), row=1, col=1)
    flagged = sub[sub["flagged"]]
    if not flagged.empty:
        fig.add_trace(go.Scatter(x=flagged["global_step"], y=flagged["value"], mode="markers", name="cheat flag",
                                 customdata=flagged[["model", "flags"]].to_numpy(),
                                 hovertemplate="%{customdata[0]} flagged: %{customdata[1]}<extra></extra>",
                                 marker={"symbol": "x", "size": 12, "color": "red"}), row=1, col=1)
    row = 2
    for col, label in (("length_mean", "answer length (tokens)"), ("kl", "KL to the stage start")):
        if col in sub and sub[col].notna().any():
            fig.add_trace(go.Scatter(x=sub["global_step"], y=sub[col], mode="lines+markers", name=label),
                          row=row, col=1)
            fig.update_yaxes(title_text=label, row=row, col=1)
            row += 1
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_xaxes(title_text="global step (stages one after another)", row=rows, col=1)
    fig.update_layout(height=420 + 160 * (rows - 1), margin={"t": 30})
    st.plotly_chart(fig, key="training")
    if unplaced:
        st.caption(f"{unplaced} runs with reports but no step are not on the curve.")
    for stage, reason, step in sub.loc[sub["stopped_here"], ["stage", "stop_reason", "step"]].itertuples(index=False):
        st.caption(f"{stage} stopped at step {step}: {reason or 'no reason stored'}")
    for model, why in sub.loc[sub["promoted"], ["model", "promotion_reasons"]].itertuples(index=False):
        st.caption(f"promoted {model}: {why}")
    out = lead_columns(sub, ["stage", "step", "global_step", "model", "value", "lower", "upper", "promoted",
                             "stopped_here", "flagged", "flags", "promotion_reasons", "stop_reason"])
    linked_table(out, f"training-{bench}-{metric}", [link(view="Questions", bench=bench, model=m)
                                                     for m in out["model"]], "answers", "browse")


def page_length(path: str, stamp: tuple) -> None:
    picked = judged_bench(path, stamp, "Length")
    if picked is None:
        return
    inv, bench = picked
    judge = pick("Judge", sorted(inv.loc[inv["benchmark"] == bench, "judge"]), "judge")
    info = data.bench_info(bench)
    bstamp = _bench_stamp(path, stamp, bench)
    inputs = bench_inputs(bench)
    # every summary toggle on (style control...): the controlled twin of the raw score may need one
    toggles = tuple(sorted(info.toggles))
    note = ""
    slot = st.empty()
    with pending_chart(slot, f"Computing the {bench} scores..."):
        try:
            board, _ = _board(path, bstamp, bench, judge, None, 0, toggles, inputs)
        except LionEvalError as e:
            refused: LionEvalError | None = e
            if toggles:
                # e.g. style control needs style counts for every answer: the raw scores, and why the other is missing
                try:
                    board, _ = _board(path, bstamp, bench, judge, None, 0, (), inputs)
                    refused = None
                except LionEvalError as e2:
                    refused = e2
            if refused is not None:
                slot.empty()
                st.error(str(refused))
                return
            off = ", ".join(info.toggles[t].lower() for t in toggles)
            note = f" No controlled score ({info.length_metrics[1] or off}): {e.message}."
    lf = data.length_frame(board, bench)
    raw_name, ctl_name = lf.attrs.get("raw"), lf.attrs.get("controlled")
    if lf.empty:
        slot.empty()
        st.info(f"No scores for {bench} with this judge yet.")
        return
    x = "avg_tokens" if lf["avg_tokens"].notna().any() else "avg_chars"
    fig = go.Figure(go.Scatter(x=lf[x], y=lf["raw"], mode="markers", name=raw_name, text=lf["model"]))
    if ctl_name:
        fig.add_trace(go.Scatter(x=lf[x], y=lf["controlled"], mode="markers", name=ctl_name, text=lf["model"],
                                 marker={"symbol": "diamond"}))
    fig.update_layout(xaxis_title=f"average answer length ({x.split('_')[1]})", yaxis_title="score", height=420)
    slot.plotly_chart(fig, key="length")
    rho, _ = data.rank_correlation(lf[x].to_numpy(), lf["raw"].to_numpy())
    note = f"Spearman correlation of length and {raw_name}: {fmt(rho, 2)}." + note
    if not info.length_metrics[1]:
        note += " No length-controlled score for this benchmark."
    st.caption(note)
    table(lf, f"length-{bench}-{short(judge)}")


def page_cheats(path: str, stamp: tuple) -> None:
    st.header("Cheat flags")
    runs = _cheat_runs(path, stamp)
    answers = _answer_checks(path, stamp)
    if runs.empty and answers.empty:
        st.info("No cheat checks stored yet. `lioneval run` stores them for every run; "
                "`lioneval audit answers FILE --bench B` checks a file of answers.")
        return
    st.subheader("Per run")
    table(runs, "cheat-runs", caption="details: what each flag and warning found, as stored.")
    st.subheader("Per answer")
    if answers.empty:
        st.caption("No answer was flagged.")
        return
    linked_table(answers.drop(columns=["text"]), "cheat-answers", [
        link(view="Questions", bench=b, question=q, model=m)
        for b, q, m in zip(answers["benchmark"], answers["question_id"], answers["model"], strict=True)],
        "side by side", "open")
    labels = [f"{r.status}: {r.name} / {r.model} / {r.question_id}" for r in answers.itertuples()]
    idx = st.selectbox("Answer", range(len(answers)), format_func=lambda i: labels[i], key="flag",
                       bind="query-params")
    row = answers.iloc[int(idx or 0)]
    st.markdown(f"**{row['name']}** ({row['status']}): {html.escape(row['detail'] or '')}")
    pieces = data.highlight_spans(row["text"], row["spans"])
    body = "".join(
        f"<mark>{html.escape(seg)}</mark>" if hit else html.escape(seg) for seg, hit in pieces
    )
    st.markdown(f"<div style='white-space: pre-wrap; font-family: monospace'>{body}</div>", unsafe_allow_html=True)


# The labels are also the values of the URL's ``view`` parameter (?view=Leaderboards).
PAGES = {
    "Judges": page_judges,
    "Leaderboards": page_leaderboard,
    "Questions": page_questions,
    "Training": page_training,
    "Length": page_length,
    "Cheat flags": page_cheats,
}


def _watch(path: Path | str, stamp: tuple) -> None:
    """Rerun the app when the store changed since this page was drawn (cheap: two file stats)."""
    if data.fingerprint(path) != stamp:
        st.rerun(scope="app")


def main() -> None:
    st.set_page_config(page_title="lioneval", layout="wide")
    path = store_path()
    st.sidebar.title("lioneval")
    view = st.sidebar.radio("View", list(PAGES), key="view", bind="query-params")
    st.sidebar.caption(f"store: `{path}`")
    st.sidebar.button("Reload", help="Re-read the store (it is re-read on every interaction anyway)")
    follow = st.sidebar.toggle("Auto-refresh while a run writes", key="follow", bind="query-params")
    every = st.sidebar.number_input("Check every (s)", 2, 600, 10, key="every", disabled=not follow,
                                    bind="query-params")
    if isinstance(path, Path) and not path.exists():
        st.title("lioneval")
        st.info(f"No store at `{path}` yet.\n\n" + FILL_HELP + "\nThen start the dashboard with "
                "`lioneval --store PATH dashboard`.")
        return
    try:
        stamp = data.fingerprint(path)
        counts = _counts(str(path), stamp)
    except Exception as e:  # a store of another program or a newer schema: say so instead of a traceback
        st.error(f"Cannot read `{path}`: {e}")
        return
    with st.sidebar.expander("Store contents"):
        st.dataframe(counts, hide_index=True)
    if follow:
        # only this small fragment reruns on the timer; the page is recomputed when the store changed, and then
        # only what depends on the changed records (the caches are keyed by content)
        st.fragment(run_every=float(every))(_watch)(path, stamp)
        st.sidebar.caption(f"Following the store: checked every {every:g} s.")
    if int(counts["records"].sum()) == 0:
        st.title("lioneval")
        st.info("The store is empty.\n\n" + FILL_HELP)
        return
    PAGES[view or "Judges"](str(path), stamp)


main()
