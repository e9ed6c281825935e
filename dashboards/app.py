"""The lioneval dashboard: lays out the DataFrames of :mod:`lioneval.dashboards.data` with Streamlit.

Run it with ``lioneval --store PATH dashboard`` (or ``streamlit run app.py -- --store PATH``; the ``LIONEVAL_STORE``
variable works too). It opens the store read-only and re-reads it whenever the store file changed, so it can watch
a training job that is still writing. Every control is mirrored in the URL, so a view can be shared by its link.
"""

from __future__ import annotations

import argparse
import functools
import html
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lioneval.dashboards import data
from lioneval.errors import LionEvalError
from lioneval.store import DEFAULT_STORE, RunStore


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


def store_path() -> Path:
    """``--store`` after ``--`` on the streamlit command line wins over ``LIONEVAL_STORE``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.store or os.environ.get("LIONEVAL_STORE") or DEFAULT_STORE)


# --------------------------------------------------------------------------------------------------------------------
# Cached reads. Every cached function takes the store fingerprint, which changes when a job writes, so a rerun after
# a write reads the new records and a rerun without one costs nothing. DataFrame attrs do not survive the cache's
# copy, so the functions that need them return them beside the frame.


@st.cache_data(show_spinner=False, max_entries=8)
def _counts(path: str, stamp: tuple) -> pd.DataFrame:
    return data.store_counts(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _inventory(path: str, stamp: tuple) -> pd.DataFrame:
    return data.judge_inventory(path)


@st.cache_resource(show_spinner=False, max_entries=4)
def _frame(path: str, stamp: tuple, bench: str) -> pd.DataFrame:
    """Shared, not copied (a resource cache): pickling 100k rows per rerun would cost more than the page. Read-only."""
    return data.judgment_frame(path, bench)


@st.cache_data(show_spinner=False, max_entries=16)
def _judge_stats(path: str, stamp: tuple, bench: str, judges: tuple[str, ...]) -> tuple:
    """Agreement, scores, health and the count of items all chosen judges parsed (cached: reruns are free)."""
    frame = _frame(path, stamp, bench)
    frame = frame[frame["judge"].isin(judges)]
    kind = data.frame_kind(frame) if not frame.empty else (data.bench_info(bench).kind or "rating")
    health = data.judge_health(frame)
    if len(judges) < 2:
        return None, None, health, 0, kind
    wide = data.matched_values(frame, list(judges))
    n_all = int(wide[list(judges)].notna().all(axis=1).sum())
    return data.judge_agreement(frame, list(judges), wide), data.model_scores(frame, list(judges)), health, n_all, kind


@st.cache_data(show_spinner=False, max_entries=16)
def _disagreements(path: str, stamp: tuple, bench: str, judges: tuple[str, ...], gap: float) -> tuple:
    frame = _frame(path, stamp, bench)
    frame = frame[frame["judge"].isin(judges)]
    df = data.disagreements(path, frame, list(judges), rating_gap=gap)
    return df, df.attrs.get("total", len(df))


@st.cache_data(show_spinner=False, max_entries=8)
def _probe(path: str, stamp: tuple) -> pd.DataFrame:
    return data.null_model_probe(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _audits(path: str, stamp: tuple) -> pd.DataFrame:
    return data.judge_audits(path)


@st.cache_data(show_spinner=False, max_entries=16)
def _board(path: str, stamp: tuple, bench: str, judge: str | None, rounds: int, seed: int,
           options: tuple[str, ...] = ()) -> tuple:
    """``options``: the benchmark's summary toggles that are on (a sorted tuple, so the cache key is stable)."""
    with RunStore(path, readonly=True) as store:
        df = data.leaderboard_frame(store, bench, judge=judge, rounds=rounds, seed=seed,
                                    options=dict.fromkeys(options, True))
    return df, df.attrs.get("headline")


@st.cache_data(show_spinner=False, max_entries=8)
def _reports(path: str, stamp: tuple) -> pd.DataFrame:
    return data.report_frame(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _training(path: str, stamp: tuple) -> tuple:
    df = data.training_frame(path)
    return df, df.attrs.get("unplaced", 0)


@st.cache_data(show_spinner=False, max_entries=8)
def _cheat_runs(path: str, stamp: tuple) -> pd.DataFrame:
    return data.cheat_runs(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _answer_checks(path: str, stamp: tuple) -> pd.DataFrame:
    return data.answer_checks(path)


# --------------------------------------------------------------------------------------------------------------------
# Layout helpers


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


# --------------------------------------------------------------------------------------------------------------------
# Pages


def page_judges(path: str, stamp: tuple) -> None:
    st.header("Judge comparison")
    inv = _inventory(path, stamp)
    if inv.empty:
        st.info("No judgments in this store yet.\n\n" + FILL_HELP)
        return
    benches = sorted(inv["benchmark"].unique())
    bench = pick("Benchmark", benches, "bench")
    judges_here = inv.loc[inv["benchmark"] == bench].sort_values("judgments", ascending=False)
    options = list(judges_here["judge"])
    chosen = st.sidebar.multiselect(
        "Judges (two or more)", options, default=options[:4], key="judges", bind="query-params"
    )
    gap = st.sidebar.number_input(
        "Rating gap that counts as disagreement", 1.0, 9.0, data.RATING_GAP, 1.0, key="gap", bind="query-params"
    )
    table(judges_here, f"judges-{bench}", caption=f"Judges with {bench} judgments")
    if len(options) < 2:
        st.info(
            f"Only one judge has judged {bench}. Judge the same answers with another one to compare them, e.g. "
            f"`lioneval rejudge RUN --judge SPEC` or `lioneval judge --bench {bench} --model M --judge SPEC`."
        )
    agreement, scores, health, n_all, kind = _judge_stats(path, stamp, bench, tuple(chosen))

    probe = _probe(path, stamp)
    gameable = probe[probe["gameable"] & probe["judge"].isin(options)]
    for j in gameable["judge"]:
        st.warning(f"The null-model probe marked judge `{j}` as gameable: a constant answer scores above the bar.")

    if len(chosen) >= 2:
        c1, c2, c3 = st.columns(3)
        c1.metric("Items judged by all chosen judges", f"{n_all}")
        c2.metric("Mean pairwise agreement", fmt(agreement["agreement"].mean()))
        c3.metric("Mean kappa", fmt(agreement["kappa"].mean()))
        st.subheader("Model scores by judge")
        unit = "win share vs baseline (%)" if kind == "pairwise" else "mean rating"
        fig = go.Figure()
        order = scores.groupby("model")["score"].mean().sort_values().index.tolist()
        for judge, g in scores.groupby("judge", sort=False):
            g = g.set_index("model").reindex(order)
            fig.add_trace(go.Scatter(x=g.index, y=g["score"], mode="lines+markers", name=short(judge)))
        fig.update_layout(yaxis_title=unit, xaxis_title="model (sorted by mean score)", height=380,
                          margin={"t": 30, "b": 10}, legend={"orientation": "h"})
        st.plotly_chart(fig, key="judge-scores")
        st.subheader("Agreement between judges")
        table(agreement, f"agreement-{bench}", caption=(
            "Per pair of judges on the items both parsed. Pairwise: win/tie/loss agreement and Cohen's kappa. "
            "Ratings: exact and within-one-point agreement of rounded ratings, quadratic-weighted kappa. "
            "Spearman/Kendall: rank correlation of the models' mean scores on the shared items."
        ))
        pivot = scores.pivot(index="model", columns="judge", values="score").reset_index()
        pivot.columns.name = None
        table(pivot, f"model-scores-{bench}", caption=f"Model scores per judge ({unit})")
    elif chosen:
        st.info("Pick a second judge in the sidebar to compare.")

    st.subheader("Position bias and parse failures")
    table(health, f"judge-health-{bench}", caption=(
        "games_agree: share of two-order judgments whose games give the same verdict (order-blind judge: 1). "
        "first_position_win_share: share of decisive games won by the answer shown first (unbiased: 0.5)."
    ))

    st.subheader("Null-model probe")
    shown = probe[probe["judge"].isin(options)]
    if shown.empty:
        st.caption(f"No probe stored for these judges: `lioneval audit judge --judge SPEC --bench {bench}` runs it.")
    else:
        table(shown, f"null-model-probe-{bench}")
    audits = _audits(path, stamp)
    audits = audits[audits["judge"].isin(options) & ~audits["name"].isin(data.PROBE_NAMES)]
    if not audits.empty:
        with st.expander("Other stored judge audits"):
            table(audits.drop(columns=["meta"]), f"judge-audits-{bench}")

    if len(chosen) >= 2:
        _disagreement_browser(path, stamp, bench, chosen, float(gap))


def _disagreement_browser(path: str, stamp: tuple, bench: str, chosen: list[str], gap: float) -> None:
    st.subheader("Where the judges disagree")
    dis, total = _disagreements(path, stamp, bench, tuple(chosen), gap)
    if dis.empty:
        st.success("The chosen judges agree on every item they both judged.")
        return
    brief = [*data.ITEM_KEYS, "spread", *(c for c in dis.columns if c.startswith("value:"))]
    st.caption(f"{total} items in disagreement; the {len(dis)} widest are listed (the CSV has the texts).")
    table(dis[brief], f"disagreements-{bench}", column_config={"turn": st.column_config.NumberColumn(format="%d")})
    st.download_button("Download disagreements with texts.csv", functools.partial(data.to_csv_bytes, dis),
                       file_name=f"disagreements-{bench}-texts.csv", mime="text/csv", key="csv-dis-texts")
    labels = [f"{r.question_id} / {r.model}" + (f" / turn {r.turn}" if r.turn > 0 else "") for r in dis.itertuples()]
    idx = st.selectbox("Item", range(len(dis)), format_func=lambda i: labels[i], key="item", bind="query-params")
    row = dis.iloc[int(idx or 0)]
    st.markdown("**Question**")
    st.text(row["question"])
    cols = st.columns(2 if row["baseline"] else 1)
    cols[0].markdown(f"**Answer of `{row['model']}`**")
    cols[0].text(row["answer"])
    if row["baseline"]:
        cols[1].markdown(f"**Answer of the baseline `{row['baseline']}`**")
        cols[1].text(row["baseline_answer"])
    jcols = st.columns(len(chosen))
    for col, j in zip(jcols, chosen, strict=True):
        col.markdown(f"**{short(j)}**: {fmt(row[f'value:{j}'], 2)}")
        col.text(row[f"rationale:{j}"])


def page_leaderboard(path: str, stamp: tuple) -> None:
    st.header("Leaderboards")
    inv = _inventory(path, stamp)
    reports = _reports(path, stamp)
    if inv.empty and reports.empty:
        st.info("No judgments or reports yet.\n\n" + FILL_HELP)
        return
    if not inv.empty:
        benches = sorted(inv["benchmark"].unique())
        bench = pick("Benchmark", benches, "bench")
        judges = ["(all)", *sorted(inv.loc[inv["benchmark"] == bench, "judge"])]
        judge = pick("Judge", judges, "judge")
        rounds = st.sidebar.number_input("Bootstrap rounds", 10, 5000, 200, 10, key="rounds", bind="query-params")
        seed = st.sidebar.number_input("Seed", 0, 2**31 - 1, 0, key="seed", bind="query-params")
        info = data.bench_info(bench)
        # one checkbox per summary option the benchmark offers (e.g. style control), none for the others
        on = tuple(sorted(name for name, label in info.toggles.items()
                          if st.sidebar.checkbox(label, key=f"opt_{name}", bind="query-params")))
        try:
            board, headline = _board(path, stamp, bench, None if judge == "(all)" else judge, int(rounds), int(seed),
                                     on)
        except LionEvalError as e:
            st.error(str(e))
            return
        if board.empty:
            st.info(f"No scores for {bench} yet.")
        for jid, g in board.groupby("judge", sort=False):
            st.subheader(f"{bench}: judge {jid}")
            metric = headline or next(c for c in g.columns if f"{c}_lower" in g.columns)
            # best at the top of the chart (the last row) and first in the table
            g = g.sort_values(metric, ascending=info.higher_is_better)
            fig = go.Figure(go.Scatter(
                x=g[metric], y=g["model"], mode="markers", name=metric,
                error_x={"type": "data", "symmetric": False, "array": g[f"{metric}_upper"] - g[metric],
                         "arrayminus": g[metric] - g[f"{metric}_lower"]},
            ))
            fig.update_layout(xaxis_title=f"{metric} (95% CI)", height=120 + 24 * len(g), margin={"t": 20, "b": 10})
            st.plotly_chart(fig, key=f"board-{jid}")
            table(g.iloc[::-1], f"leaderboard-{bench}-{short(jid)}")
    if not reports.empty:
        with st.expander("Stored reports (as the runs computed them)"):
            table(reports, "reports")


def page_training(path: str, stamp: tuple) -> None:
    st.header("Training curves")
    df, unplaced = _training(path, stamp)
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
    sub = sub[sub["metric"] == metric].sort_values(["stage", "step"])
    fig = go.Figure()
    for stage, g in sub.groupby("stage", sort=False):
        band = g.dropna(subset=["lower", "upper"])
        if not band.empty:
            fig.add_trace(go.Scatter(
                x=list(band["step"]) + list(band["step"][::-1]), y=list(band["upper"]) + list(band["lower"][::-1]),
                fill="toself", opacity=0.2, line={"width": 0}, name=f"{stage} 95% CI", hoverinfo="skip",
            ))
        fig.add_trace(go.Scatter(x=g["step"], y=g["value"], mode="lines+markers", name=stage,
                                 customdata=g["model"], hovertemplate="%{customdata}: %{y:.2f}<extra></extra>"))
        stop = g["early_stop_step"].dropna()
        if not stop.empty:
            fig.add_vline(x=int(stop.iloc[0]), line_dash="dash", annotation_text=f"{stage} stopped")
    promoted = sub[sub["promoted"]]
    if not promoted.empty:
        fig.add_trace(go.Scatter(x=promoted["step"], y=promoted["value"], mode="markers", name="promoted",
                                 marker={"symbol": "star", "size": 16, "color": "gold", "line": {"width": 1}}))
    flagged = sub[sub["flagged"]]
    if not flagged.empty:
        fig.add_trace(go.Scatter(x=flagged["step"], y=flagged["value"], mode="markers", name="cheat flag",
                                 marker={"symbol": "x", "size": 12, "color": "red"}))
    fig.update_layout(xaxis_title="step", yaxis_title=metric, height=420, margin={"t": 30})
    st.plotly_chart(fig, key="training")
    if unplaced:
        st.caption(f"{unplaced} runs with reports but no step are not on the curve.")
    table(sub, f"training-{bench}-{metric}")


def page_length(path: str, stamp: tuple) -> None:
    st.header("Length")
    inv = _inventory(path, stamp)
    if inv.empty:
        st.info("No judgments yet.\n\n" + FILL_HELP)
        return
    bench = pick("Benchmark", sorted(inv["benchmark"].unique()), "bench")
    judge = pick("Judge", sorted(inv.loc[inv["benchmark"] == bench, "judge"]), "judge")
    info = data.bench_info(bench)
    # every summary toggle on (style control...): the controlled twin of the raw score may need one
    toggles = tuple(sorted(info.toggles))
    note = ""
    try:
        board, _ = _board(path, stamp, bench, judge, 200, 0, toggles)
    except LionEvalError as e:
        if not toggles:
            st.error(str(e))
            return
        # e.g. style control needs style counts for every answer: show the raw scores and say why the other is missing
        try:
            board, _ = _board(path, stamp, bench, judge, 200, 0, ())
        except LionEvalError as e2:
            st.error(str(e2))
            return
        off = ", ".join(info.toggles[t].lower() for t in toggles)
        note = f" No controlled score ({info.length_metrics[1] or off}): {e.message}."
    lf = data.length_frame(board, bench)
    raw_name, ctl_name = lf.attrs.get("raw"), lf.attrs.get("controlled")
    if lf.empty:
        st.info(f"No scores for {bench} with this judge yet.")
        return
    x = "avg_tokens" if lf["avg_tokens"].notna().any() else "avg_chars"
    fig = go.Figure(go.Scatter(x=lf[x], y=lf["raw"], mode="markers", name=raw_name, text=lf["model"]))
    if ctl_name:
        fig.add_trace(go.Scatter(x=lf[x], y=lf["controlled"], mode="markers", name=ctl_name, text=lf["model"],
                                 marker={"symbol": "diamond"}))
    fig.update_layout(xaxis_title=f"average answer length ({x.split('_')[1]})", yaxis_title="score", height=420)
    st.plotly_chart(fig, key="length")
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
    table(runs, "cheat-runs")
    st.subheader("Per answer")
    if answers.empty:
        st.caption("No answer was flagged.")
        return
    table(answers.drop(columns=["text"]), "cheat-answers")
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
    "Training": page_training,
    "Length": page_length,
    "Cheat flags": page_cheats,
}


def main() -> None:
    st.set_page_config(page_title="lioneval", layout="wide")
    path = store_path()
    st.sidebar.title("lioneval")
    view = st.sidebar.radio("View", list(PAGES), key="view", bind="query-params")
    st.sidebar.caption(f"store: `{path}`")
    st.sidebar.button("Reload", help="Re-read the store (it is re-read on every interaction anyway)")
    if not path.exists():
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
    if int(counts["records"].sum()) == 0:
        st.title("lioneval")
        st.info("The store is empty.\n\n" + FILL_HELP)
        return
    PAGES[view or "Judges"](str(path), stamp)


main()
