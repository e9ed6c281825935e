"""How fast the dashboard's judge-comparison page renders on a store the size of a real training run.

Builds (once; reused while its layout matches) a synthetic store with 50 checkpoints x 3 benchmarks x 3 judges x 500
judged items (~225k judgments, MT-Bench as 250 questions x 2 turns), with answers, run specs, reports and checks, by
the ordinary ``RunStore.put_*`` calls. Then times, cold (fresh caches) and warm (Streamlit's cache hit on rerun):
the data functions of the page, and an AppTest render of the page itself. Target: under 3 s with empty caches.
Then every other view on the same store, with empty caches and warm (each must render without an error).
The modules the app imports (streamlit, pandas, plotly) are loaded first and timed apart: a running server loads
them once, and their cost does not grow with the store.

    python benchmarks/dashboard_load.py [--store PATH] [--rebuild] [--repeat N] [--alpaca-data DIR]

With ``--alpaca-data`` (the folder of the published AlpacaEval validation data) it also times the AlpacaEval
leaderboard of 57 models with the official LC inputs: AppTest and, where Playwright and /usr/bin/chromium exist, a
real browser, cold (fresh caches, fresh server) and warm (a page reload: a new session on warm caches; the frontend
loads again; the median of five reloads or more, the slowest beside it). Targets: cold under 5 s, warm under 1 s.
The figures include the machine's load (printed beside them): compare runs on an idle machine. Beside each browser
figure, the CPU seconds the dashboard server spent on it (its process group, from /proc): the part of the wait that
is the dashboard's own work, whatever else runs.

Prints a table and, as the last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.types import (
    Answer,
    CheckResult,
    EarlyStop,
    Estimate,
    Game,
    Judgment,
    Promotion,
    Question,
    Report,
    RunSpec,
    content_hash,
)

CHECKPOINTS = 50
QUESTIONS = 500
JUDGES = ("judge-alpha", "judge-beta", "judge-gamma")
BENCHES = {"mt-bench": "rating", "arena-hard": "pairwise", "alpaca-eval": "pairwise"}
BASELINES = {"arena-hard": "gpt-4-0314", "alpaca-eval": "gpt4_1106_preview"}
TARGET_S = 3.0
LAYOUT = f"v3:{CHECKPOINTS}x{len(BENCHES)}x{len(JUDGES)}x{QUESTIONS}"
FILLER = (
    "The answer addresses the request, but the second paragraph repeats the first and the example leaves out the "
    "edge case the user asked about. The structure is clear and the tone suits the task. "
)


def _checkpoints() -> list[tuple[str, str, int]]:
    stages = [("sft", 17), ("dpo", 17), ("online-dpo", CHECKPOINTS - 34)]
    return [(f"{stage}-step{(i + 1) * 100}", stage, (i + 1) * 100) for stage, n in stages for i in range(n)]


def _judge_id(judge: str, bench: str) -> str:
    return f"{judge}#{content_hash([judge, bench], 10)}"


def _label(share: float) -> str:
    return "A>>B" if share >= 0.99 else "A>B" if share > 0.5 else "A=B" if share == 0.5 else "B>A"


def build(path: Path, questions: int = QUESTIONS) -> dict[str, float]:
    """Write the synthetic store (``questions`` per benchmark, MT-Bench half as many with two turns each); returns
    seconds per phase."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ckpts = _checkpoints()
    quality = {m: 0.4 + 0.012 * i + rng.normal(0, 0.02) for i, (m, _, _) in enumerate(ckpts)}
    # each judge reads quality through its own bias and noise, so they disagree in realistic ways
    bias = {"judge-alpha": 0.0, "judge-beta": 0.06, "judge-gamma": -0.04}
    noise = {"judge-alpha": 0.18, "judge-beta": 0.25, "judge-gamma": 0.3}
    with RunStore(path) as store:
        for bench in BENCHES:
            n_q = questions // 2 if bench == "mt-bench" else questions
            turns = 2 if bench == "mt-bench" else 1
            qs = [Question(id=f"{bench[:2]}{i:04d}", benchmark=bench, turns=[f"Question {i} turn {t + 1}: explain "
                           f"topic {i % 37} with an example." for t in range(turns)], category=f"cat{i % 8}")
                  for i in range(n_q)]
            store.put_questions(qs)
            models = [m for m, _, _ in ckpts] + ([BASELINES[bench]] if bench in BASELINES else [])
            answers = []
            for m in models:
                for q in qs:
                    n_tok = int(rng.integers(80, 600))
                    answers.append(Answer(question_id=q.id, benchmark=bench, model=m, turns=[
                        f"{m} answers {q.id}: " + "detail " * (n_tok // 8) for _ in range(turns)],
                        token_counts=[n_tok] * turns))
            store.put_answers(answers)
            print(f"  {bench}: {len(qs)} questions, {len(answers)} answers ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
            for judge in JUDGES:
                jid = _judge_id(judge, bench)
                for m, _, _ in ckpts:
                    batch = []
                    for qi, q in enumerate(qs):
                        for t in range(1, turns + 1):
                            p = quality[m] + bias[judge] + rng.normal(0, noise[judge])
                            if BENCHES[bench] == "rating":
                                rating = int(np.clip(round(1 + 9 * p), 1, 10))
                                failed = rng.random() < 0.01
                                raw = FILLER + ("I will not score this." if failed else f"Rating: [[{rating}]]")
                                game = Game(model_position="single", label=None if failed else str(rating),
                                            value=None if failed else float(rating), raw=raw,
                                            error="no [[rating]] found" if failed else None)
                                games = [game]
                            else:
                                games = []
                                positions = ("B", "A") if bench == "arena-hard" else (("A",) if qi % 2 else ("B",))
                                for pos in positions:
                                    share = float(np.clip(round(2 * (p + rng.normal(0, 0.1))) / 2, 0, 1))
                                    if rng.random() < 0.01:
                                        games.append(Game(model_position=pos, raw=FILLER + "no verdict",
                                                          error="no verdict label"))
                                        continue
                                    a_share = share if pos == "A" else 1 - share
                                    games.append(Game(model_position=pos, label=_label(a_share), value=share,
                                                      raw=FILLER + f"Final verdict: [[{_label(a_share)}]]"))
                            vals = [g.value for g in games if g.value is not None]
                            batch.append(Judgment(
                                question_id=q.id, benchmark=bench, judge=jid, model=m, kind=BENCHES[bench],
                                turn=t if bench == "mt-bench" else None, baseline=BASELINES.get(bench),
                                value=float(np.mean(vals)) if vals else None, games=games,
                                inputs=content_hash([jid, q.id, m, t]),
                                error=None if vals else "no game gave a verdict",
                            ))
                    store.put_judgments(batch)
                print(f"  {bench} / {judge}: judged ({time.perf_counter() - t0:.0f}s)", flush=True)
        t_records = time.perf_counter() - t0
        _runs_reports_checks(store, ckpts, quality, questions)
    return {"build_s": time.perf_counter() - t0, "records_s": t_records}


def _runs_reports_checks(store: RunStore, ckpts, quality, questions: int) -> None:
    metric = {bench: BENCHMARKS.get(bench).headline for bench in BENCHES}  # each report's headline
    checks = []
    for m, stage, step in ckpts:
        spec = RunSpec(model=m, checkpoint=f"out/{m}", stage=stage, step=step, benchmarks=list(BENCHES))
        run = store.put_run(spec)
        if stage == "dpo" and step == 1700:
            store.put_early_stop(EarlyStop(stage=stage, run=run, model=m, checkpoint=spec.checkpoint, step=step,
                                           reason="no gain over the best checkpoint"))
        for bench in BENCHES:
            for judge in JUDGES:
                v = quality[m] * (10 if bench == "mt-bench" else 100)
                half = 0.15 if bench == "mt-bench" else 2.5
                est = Estimate(value=v, ci_low=v - half, ci_high=v + half, n=questions, method="bootstrap-percentile",
                               rounds=100, seed=0, unit="question")
                store.put_report(Report(run=run, benchmark=bench, benchmark_version="synthetic", model=m,
                                        judge=_judge_id(judge, bench), metrics={metric[bench]: est}))
        if m == "online-dpo-step800":
            store.put_promotions([Promotion(stage=stage, run=run, model=m, checkpoint=spec.checkpoint, step=step,
                                            reasons=["best mean headline"])])
        if step % 900 == 0:
            text = f"{m} answers mt0003: " + "detail "
            hit = {"rule": "rating", "turn": 0, "start": len(text) - 7, "end": len(text)}
            checks.append(CheckResult(name="injection", scope="answer", run=run, status="flag", model=m,
                                      question_id="mt0003", detail="answer ends with a rating in double brackets",
                                      spans=[(hit["start"], hit["end"])],
                                      meta={"benchmark": "mt-bench", "hits": [hit]}))
    for bench in BENCHES:
        for judge in JUDGES:
            gameable = judge == "judge-gamma"
            checks.append(CheckResult(name="judge_gameable", scope="judge", judge=_judge_id(judge, bench),
                                      status="flag" if gameable else "pass", value=9.5 if gameable else 1.2,
                                      threshold=5.0, meta={"benchmark": bench}))
    store.put_checks(checks)


def _data_pass(path: Path, bench: str) -> dict[str, float]:
    from lioneval.dashboards import data

    out = {}
    t = time.perf_counter()
    inv = data.judge_inventory(path)
    out["inventory_s"] = time.perf_counter() - t
    judges = sorted(inv.loc[inv["benchmark"] == bench, "judge"])
    t = time.perf_counter()
    frame = data.judgment_frame(path, bench)
    out["judgment_frame_s"] = time.perf_counter() - t
    t = time.perf_counter()
    data.judge_agreement(frame, judges)
    data.model_scores(frame, judges)
    data.judge_health(frame)
    data.judge_overlap(frame)
    out["stats_s"] = time.perf_counter() - t
    t = time.perf_counter()
    data.disagreements(path, frame, judges)
    data.null_model_probe(path, judges)
    out["disagreements_s"] = time.perf_counter() - t
    out["rows"] = len(frame)
    return out


def _imports() -> float:
    """Import what the app imports; a running Streamlit server pays this once per process, not per page view."""
    t = time.perf_counter()
    import plotly.graph_objects  # noqa: F401
    import streamlit  # noqa: F401
    from streamlit.testing.v1 import AppTest  # noqa: F401

    from lioneval.dashboards import data  # noqa: F401

    return time.perf_counter() - t


def _render(path: Path, bench: str, runs: int) -> list[float]:
    """Seconds per AppTest run of the judge page: the first with empty caches, the others reruns with them warm."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lioneval.dashboards import data

    os.environ["LIONEVAL_STORE"] = str(path)
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(data.__file__).with_name("app.py")), default_timeout=120)
    at.query_params["view"] = "Judges"
    at.query_params["bench"] = bench
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(f"the page raised: {at.exception[0].message}")
    if not at.dataframe or not at.get("plotly_chart"):
        raise RuntimeError("the judge page rendered without its table or chart")
    return times


VIEWS = ("Judges", "Leaderboards", "Questions", "Training", "Length", "Cheat flags")


def _render_views(path: Path, bench: str) -> dict[str, tuple[float, float]]:
    """Every view of the dashboard on the store, by AppTest: (seconds with empty caches, seconds of a warm rerun) per
    view. Raises when a view shows an exception or an error box: every page must work on a store this size."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lioneval.dashboards import data

    os.environ["LIONEVAL_STORE"] = str(path)
    out = {}
    for view in VIEWS:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(Path(data.__file__).with_name("app.py")), default_timeout=600)
        at.query_params.update(view=view, bench=bench)
        times = []
        for _ in range(2):
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            shown = [e.message for e in at.exception] + [e.value for e in at.error]
            if shown:
                raise RuntimeError(f"the {view} page raised or showed an error: {shown[0]}")
        out[view] = (times[0], times[1])
    return out


ALPACA_COLD_TARGET_S = 5.0
WARM_TARGET_S = 1.0
WARM_RELOADS = 5  # warm figures: the median of this many reloads, their maximum beside it
BROWSER_TIMEOUT_MS = 300_000


def _alpaca_store(vdir: Path, root: Path) -> tuple[Path, list[str]]:
    """The published AlpacaEval annotations of 57 models imported into a fresh store; the dashboard's arguments
    that give it the official LC inputs."""
    sys.path.insert(0, str(Path(__file__).parent))
    from speed_alpaca import write_official

    from lioneval.imports import import_official

    files = write_official(vdir, root / "files")
    db = root / "alpaca.db"
    with RunStore(db) as st:
        for model, path in files.items():
            if model not in ("eval_set", "lc"):
                import_official(st, "alpaca-eval", path, model=model)
    return db, ["--data", f"alpaca-eval={files['eval_set']}", "--lc-data", str(files["lc"])]


def _render_board(db: Path, args: list[str], runs: int) -> list[float]:
    """AppTest runs of the AlpacaEval leaderboard page: the first with empty caches, then warm reruns."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lioneval.dashboards import data

    os.environ["LIONEVAL_STORE"] = str(db)
    st.cache_data.clear()
    st.cache_resource.clear()
    argv = sys.argv
    sys.argv = ["app.py", *args]
    try:
        at = AppTest.from_file(str(Path(data.__file__).with_name("app.py")), default_timeout=300)
        at.query_params.update(view="Leaderboards", bench="alpaca-eval")
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"the page raised: {at.exception[0].message}")
    finally:
        sys.argv = argv
    return times


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) the live processes of a process group have used so far (Linux /proc; 0 where it
    cannot be read): the dashboard server's own work, apart from the browser's and the other load of the machine."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ..., utime (12th), stime (13th)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _browser_board(db: Path, args: list[str], runs: int) -> tuple[list[float], list[float]] | None:
    """Seconds from opening the AlpacaEval leaderboard in headless chromium to the finished page: a fresh server
    (cold), then reloads (warm); and the CPU seconds the dashboard server spent on each. None without Playwright or
    /usr/bin/chromium.

    Finished: the chart's points and the leaderboard's table (its drawn grid and its download button) are on the
    page, and Streamlit's running indicator is gone; checked every 50 ms from the navigation on (a new document
    each time, so nothing of the page before counts)."""
    import importlib.util
    import signal
    import socket
    import subprocess
    import urllib.request

    if importlib.util.find_spec("playwright") is None or not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lioneval.cli", "--store", str(db), "dashboard", "--headless",
                             "--port", str(port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    done = """() => {
        const main = document.querySelector('[data-testid="stMain"]');
        return main !== null && !document.querySelector('[data-testid="stStatusWidget"]')
            && main.querySelectorAll('[data-testid="stPlotlyChart"] .point').length > 0
            && main.querySelector('[data-testid="stDataFrame"] canvas') !== null
            && [...main.querySelectorAll('[data-testid="stDownloadButton"]')].some(
                b => b.innerText.includes('leaderboard-'));
    }"""
    try:
        for _ in range(240):
            try:
                with opener.open(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        times, cpu = [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            for i in range(runs):
                t, c = time.perf_counter(), _group_cpu(proc.pid)
                page.goto(f"http://127.0.0.1:{port}/?view=Leaderboards&bench=alpaca-eval&run={i}")
                try:
                    page.wait_for_function(done, timeout=BROWSER_TIMEOUT_MS, polling=50)
                except Exception as e:
                    shot = Path(tempfile.gettempdir()) / "dashboard_load_timeout.png"
                    page.screenshot(path=str(shot))
                    raise RuntimeError(f"the leaderboard did not finish in chromium; the page as it was: {shot}") from e
                times.append(time.perf_counter() - t)
                cpu.append(_group_cpu(proc.pid) - c)
            browser.close()
        return times, cpu
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _alpaca_times(vdir: Path, repeat: int) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        db, app_args = _alpaca_store(vdir, Path(tmp))
        # the browser first: Playwright's sync API and an AppTest run do not share a process well
        browser = _browser_board(db, app_args, 1 + max(WARM_RELOADS, repeat - 1))
        board = _render_board(db, app_args, max(2, repeat))
    out: dict[str, Any] = {"alpaca_board_cold_s": round(board[0], 3), "alpaca_board_warm_s": round(min(board[1:]), 3)}
    rows = [("AlpacaEval board (57 models), AppTest cold", f"{board[0]:.3f} s"),
            ("AlpacaEval board, AppTest warm", f"{min(board[1:]):.3f} s")]
    if browser:
        seen, cpu = browser
        warm, warm_cpu = float(np.median(seen[1:])), float(np.median(cpu[1:]))
        out.update(alpaca_browser_cold_s=round(seen[0], 3), alpaca_browser_warm_s=round(warm, 3),
                   alpaca_browser_warm_max_s=round(max(seen[1:]), 3), alpaca_server_cpu_cold_s=round(cpu[0], 2),
                   alpaca_server_cpu_warm_s=round(warm_cpu, 2))
        rows += [("AlpacaEval board, chromium cold (fresh server)", f"{seen[0]:.3f} s"),
                 ("  dashboard server CPU during it", f"{cpu[0]:.2f} s"),
                 (f"AlpacaEval board, chromium warm (page reload, median of {len(seen) - 1})", f"{warm:.3f} s"),
                 ("  slowest reload", f"{max(seen[1:]):.3f} s"),
                 ("  dashboard server CPU during it (median)", f"{warm_cpu:.2f} s")]
    rows += [("targets (AlpacaEval cold / warm)", f"< {ALPACA_COLD_TARGET_S:.0f} / {WARM_TARGET_S:.0f} s"),
             ("machine load (1 min average)", f"{os.getloadavg()[0]:.1f}")]
    cold = out.get("alpaca_browser_cold_s", out["alpaca_board_cold_s"])
    warm = out.get("alpaca_browser_warm_s", out["alpaca_board_warm_s"])
    out["alpaca_ok"] = cold < ALPACA_COLD_TARGET_S and warm < WARM_TARGET_S
    out["load_avg_1m"] = round(os.getloadavg()[0], 1)
    return rows, out


def _alpaca_main(vdir: Path, repeat: int) -> int:
    _imports()
    rows, out = _alpaca_times(vdir, repeat)
    width = max(len(r[0]) for r in rows)
    for name, val in rows:
        print(f"{name:<{width}}  {val:>12}")
    print(json.dumps({"benchmark": "dashboard_load", "bench": "alpaca-eval", **out, "ok": out["alpaca_ok"]}))
    return 0 if out["alpaca_ok"] else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=os.path.join(tempfile.gettempdir(), "lioneval_dashboard_load.db"))
    ap.add_argument("--rebuild", action="store_true", help="build the store again even if one exists")
    ap.add_argument("--bench", default="arena-hard", help="benchmark whose judge page is timed")
    ap.add_argument("--repeat", type=int, default=3, help="AppTest runs (first cold, then warm reruns)")
    ap.add_argument("--alpaca-data", help="folder of the published AlpacaEval validation data: also time the "
                    "leaderboard of its 57 models with the official LC inputs, cold and warm, in AppTest and chromium")
    ap.add_argument("--alpaca-only", action="store_true", help="time only the AlpacaEval leaderboard")
    args = ap.parse_args()
    if args.alpaca_only:
        if not args.alpaca_data:
            ap.error("--alpaca-only needs --alpaca-data DIR")
        return _alpaca_main(Path(args.alpaca_data), args.repeat)
    path = Path(args.store)
    stamp = Path(f"{path}.layout")
    built: dict[str, float] = {}
    if args.rebuild or not path.exists() or not stamp.exists() or stamp.read_text() != LAYOUT:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        print(f"building {path} ({LAYOUT}) ...", flush=True)
        built = build(path)
        stamp.write_text(LAYOUT)
    with RunStore(path, readonly=True) as st:
        counts = st.counts()
    size_mb = path.stat().st_size / 2**20
    import_s = _imports()
    data_times = _data_pass(path, args.bench)
    render = _render(path, args.bench, max(1, args.repeat))
    cold, warm = render[0], (min(render[1:]) if len(render) > 1 else float("nan"))
    views = _render_views(path, args.bench)
    rows = [
        ("judgments in store", f"{counts['judgments']}"),
        ("store size", f"{size_mb:.0f} MiB"),
        (f"{args.bench} judgments on the page", f"{data_times['rows']}"),
        ("judge_inventory", f"{data_times['inventory_s']:.3f} s"),
        ("judgment_frame", f"{data_times['judgment_frame_s']:.3f} s"),
        ("agreement + scores + health", f"{data_times['stats_s']:.3f} s"),
        ("disagreements + probe", f"{data_times['disagreements_s']:.3f} s"),
        ("module imports (once per server)", f"{import_s:.3f} s"),
        ("AppTest render, empty caches", f"{cold:.3f} s"),
        ("AppTest rerun, warm cache", f"{warm:.3f} s"),
        ("target (render, empty caches)", f"< {TARGET_S:.1f} s"),
        *((f"{view} page, AppTest empty caches / warm", f"{c:.2f} / {w:.2f} s") for view, (c, w) in views.items()),
    ]
    if built:
        rows.insert(0, ("store build", f"{built['build_s']:.0f} s"))
    alpaca: dict[str, Any] = {}
    if args.alpaca_data:
        alpaca_rows, alpaca = _alpaca_times(Path(args.alpaca_data), args.repeat)
        rows += alpaca_rows
    width = max(len(r[0]) for r in rows)
    print()
    for name, val in rows:
        print(f"{name:<{width}}  {val:>12}")
    result = {
        "benchmark": "dashboard_load", "bench": args.bench, "judgments": counts["judgments"],
        "page_judgments": data_times["rows"], "data_s": round(sum(v for k, v in data_times.items() if k != "rows"), 3),
        "imports_s": round(import_s, 3), "render_cold_s": round(cold, 3),
        "render_warm_s": None if warm != warm else round(warm, 3),
        "pages_cold_s": {v: round(c, 3) for v, (c, _) in views.items()},
        "pages_warm_s": {v: round(w, 3) for v, (_, w) in views.items()},
        "target_s": TARGET_S, "ok": cold < TARGET_S and alpaca.get("alpaca_ok", True),
        **{k: round(v, 1) for k, v in built.items()}, **alpaca,
    }
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
