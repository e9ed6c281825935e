"""The dashboard in a real browser: `lioneval dashboard` serves it, Debian's chromium (driven by Playwright) opens it.

One server per store state a user passes through (empty, import-only, mid-first-stage of training and a run still
writing, promoted, a huge store), every page visited in it. A page fails on exception text, an error box, an empty
chart, or "agree on every item" beside a nonzero count of disagreements. Screenshots of every page go to
``$LIONEVAL_TEST_ARTIFACTS`` (a folder per test) or, without it, to the test's tmp folder.

No browser is downloaded: Playwright drives the distribution's /usr/bin/chromium. Skipped with the reason when
Playwright, the chromium binary or the dashboard extra is missing. With ``LIONEVAL_VALIDATION`` naming the folder of
published validation data, the AlpacaEval leaderboard downloaded from the browser is compared with
`lioneval leaderboard --bench alpaca-eval` on the same official LC inputs, for every model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lioneval.store import RunStore
from lioneval.types import CheckResult, Estimate, Report, RunSpec

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
START_TIMEOUT_S = 90
UI_TIMEOUT_MS = 90_000
PAGES = ("Judges", "Leaderboards", "Questions", "Training", "Length", "Cheat flags")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(
        importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None,
        reason="the dashboard extra is not installed (pip install 'lioneval[dashboard]')",
    ),
]


def _load(path: Path, name: str):
    """A module of tests/ or benchmarks/ (they are no packages), loaded by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _demo_store_builder():
    return _load(Path(__file__).with_name("test_dashboard_app.py"), "dashboard_app_tests").build_demo_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    # straight to loopback even when the environment sets an HTTP proxy
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with opener.open(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the dashboard did not answer within {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(db: Path, log: Path, *extra: str) -> Iterator[str]:
    """`lioneval --store DB dashboard` on a free port; its URL."""
    port = _free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log, "w") as fh:
        # its own process group: the CLI starts streamlit as a child, and both must go at the end
        proc = subprocess.Popen(
            [sys.executable, "-m", "lioneval.cli", "--store", str(db), "dashboard", "--headless", "--port", str(port),
             *extra],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        _wait_healthy(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture
def artifacts(request, tmp_path) -> Path:
    root = os.environ.get("LIONEVAL_TEST_ARTIFACTS")
    out = Path(root) / request.node.name if root else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)  # the first page load imports the app's modules: seconds
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=UI_TIMEOUT_MS)
        try:
            yield b
        finally:
            b.close()


def _new_page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def _settle(page) -> None:
    """Wait until the script run is over (Streamlit's running indicator gone) and the charts painted."""
    page.wait_for_load_state("domcontentloaded")
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "document.querySelector('[data-testid=\"stMain\"], section.main, [data-testid=\"stAppViewContainer\"]')",
        timeout=UI_TIMEOUT_MS,
    )
    page.wait_for_timeout(800)


def _metric(page, label: str) -> str | None:
    box = page.get_by_test_id("stMetric").filter(has_text=label)
    return box.get_by_test_id("stMetricValue").inner_text().strip() if box.count() else None


def visit(page, url: str, view: str, shots: Path, state: str, **params: str) -> None:
    """Open a view and fail on what a user must never see; a screenshot either way."""
    from playwright.sync_api import expect

    query = "&".join(f"{k}={v}" for k, v in {"view": view, **params}.items())
    page.goto(f"{url}/?{query}", wait_until="domcontentloaded")
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
    _settle(page)
    # Streamlit scrolls inside its main block, so a tall window (not full_page) gets more of the page in
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / f"{state}-{view.replace(' ', '-').lower()}.png"))
    page.set_viewport_size({"width": 1280, "height": 1000})
    where = f"{state} / {view}"
    exceptions = page.get_by_test_id("stException")
    assert exceptions.count() == 0, f"{where}: {exceptions.first.inner_text()}"
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and "KeyError" not in body, f"{where}: exception text on the page"
    errors = page.get_by_test_id("stAlertContentError")
    assert errors.count() == 0, f"{where}: error box {errors.first.inner_text()}"
    charts = page.get_by_test_id("stPlotlyChart")
    for i in range(charts.count()):
        marks = charts.nth(i).locator(".scatterlayer .trace .point, .barlayer .trace .point, .scatterlayer .js-line")
        assert marks.count() > 0, f"{where}: chart {i} is empty"
    disagreements = _metric(page, "Disagreements")
    if page.get_by_text("agree on every item").count():
        assert disagreements == "0", f"{where}: 'agree on every item' beside {disagreements} disagreements"


def _first_stage_store(db: Path, steps=(100, 200)) -> None:
    """What a training run has written during its first stage: reports and checks, no promotion yet."""
    with RunStore(db) as st:
        for step in steps:
            spec = RunSpec(model=f"sft-step{step}", checkpoint=f"out/sft-step{step}", stage="sft", step=step)
            st.put_run(spec)
            st.put_report(Report(run=spec.key, benchmark="mt-bench", benchmark_version="1", model=spec.model,
                                 judge="j1", metrics={"overall": Estimate(value=4.0 + step / 100, ci_low=3.5,
                                                                          ci_high=6.5, n=80, method="bootstrap")}))
            st.put_checks([CheckResult(name="early_stopping", scope="run", status="pass", run=spec.key,
                                       model=spec.model, judge="j1", detail=f"step {step} improves",
                                       meta={"step": step, "stage": "sft"})])


def _points(page) -> int:
    chart = page.get_by_test_id("stPlotlyChart").first
    return chart.locator(".scatterlayer .trace .point").count()


def test_every_page_on_every_store_state(tmp_path, browser, artifacts):
    from playwright.sync_api import expect

    fixtures = Path(__file__).parent / "fixtures"
    empty = tmp_path / "empty.db"
    RunStore(empty).close()
    imported = tmp_path / "imported.db"
    with RunStore(imported) as st:
        from lioneval.imports import import_official

        import_official(st, "arena-hard", fixtures / "arena_hard")
        import_official(st, "mt-bench", fixtures / "mt_bench")
    first = tmp_path / "first.db"
    _first_stage_store(first)
    demo = tmp_path / "demo" / "store.db"
    demo.parent.mkdir()
    _demo_store_builder()(demo, demo.parent)

    page = _new_page(browser)
    for state, db in (("empty", empty), ("import-only", imported), ("promoted", demo)):
        with serve(db, tmp_path / f"{state}.log") as url:
            for view in PAGES:
                visit(page, url, view, artifacts, state)
            if state == "promoted":
                # a shared link opens the view it names, and the sidebar switches views and rewrites the URL
                visit(page, url, "Leaderboards", artifacts, state, bench="arena-hard")
                expect(page.get_by_role("heading", name="Leaderboards")).to_be_visible()
                page.get_by_test_id("stSidebar").get_by_text("Judges", exact=True).click()
                expect(page.get_by_role("heading", name="Judge comparison")).to_be_visible()
                _settle(page)
                assert "view=Leaderboards" not in page.url
                assert int(_metric(page, "Disagreements") or 0) > 0
                visit(page, url, "Training", artifacts, state, bench="mt-bench")
                assert _points(page) > 0

    # mid-first-stage, and a run still writing: with auto-refresh on, the page follows the store by itself
    with serve(first, tmp_path / "first.log") as url:
        for view in PAGES:
            visit(page, url, view, artifacts, "first-stage")
        visit(page, url, "Training", artifacts, "first-stage", follow="true", every="2")
        before = _points(page)
        _first_stage_store(first, steps=(300,))
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .scatterlayer .trace .point').length"
            f" > {before}", timeout=UI_TIMEOUT_MS)
        _settle(page)
        page.screenshot(path=str(artifacts / "writing-training.png"))
        assert page.get_by_test_id("stException").count() == 0
    shots = sorted(artifacts.glob("*.png"))
    assert len(shots) >= 4 * len(PAGES) and all(s.stat().st_size > 5_000 for s in shots)
    print(f"screenshots: {artifacts}")


def test_every_page_on_a_huge_store(tmp_path, browser, artifacts):
    # A whole training run's store: 50 checkpoints over three stages, three benchmarks, three judges that disagree,
    # reports, an early stop, a promotion, cheat flags and a gameable judge (60 questions per benchmark here, ~27k
    # judgments; benchmarks/dashboard_load.py renders every page at 500 questions, ~225k judgments).
    bench_dir = Path(__file__).parent.parent / "benchmarks"
    db = tmp_path / "huge.db"
    _load(bench_dir / "dashboard_load.py", "dashboard_load").build(db, questions=60)
    page = _new_page(browser)
    with serve(db, tmp_path / "huge.log") as url:
        for view in PAGES:
            visit(page, url, view, artifacts, "huge")
        visit(page, url, "Leaderboards", artifacts, "huge-arena", bench="arena-hard")
        assert page.get_by_text("is gameable (the null-model probe)").count() == 1  # judge-gamma, called out
        visit(page, url, "Training", artifacts, "huge-mt", bench="mt-bench")
        assert _points(page) >= 50


@pytest.mark.skipif(not os.environ.get("LIONEVAL_VALIDATION"),
                    reason="set LIONEVAL_VALIDATION to the folder of published validation data to run")
def test_alpaca_eval_leaderboard_in_the_browser_equals_the_cli(tmp_path, browser, artifacts):
    import pandas as pd

    from lioneval.imports import import_official

    vdir = Path(os.environ["LIONEVAL_VALIDATION"]) / "alpaca_eval"
    bench_dir = Path(__file__).parent.parent / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        files = _load(bench_dir / "speed_alpaca.py", "speed_alpaca").write_official(vdir, tmp_path / "files")
    finally:
        sys.path.remove(str(bench_dir))
    db = tmp_path / "alpaca.db"
    with RunStore(db) as st:
        for model, path in files.items():
            if model not in ("eval_set", "lc"):
                import_official(st, "alpaca-eval", path, model=model)
    inputs = ["--data", str(files["eval_set"]), "--lc-data", str(files["lc"])]
    cli = subprocess.run([sys.executable, "-m", "lioneval.cli", "--store", str(db), "leaderboard", "--bench",
                          "alpaca-eval", "--json", *inputs], capture_output=True, text=True, check=True)
    want = {r["model"]: r for r in json.loads(cli.stdout)}
    page = _new_page(browser)
    with serve(db, tmp_path / "alpaca.log", "--data", f"alpaca-eval={files['eval_set']}", "--lc-data",
               str(files["lc"])) as url:
        visit(page, url, "Leaderboards", artifacts, "alpaca", bench="alpaca-eval", rank_flagged="true")
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download leaderboard-alpaca-eval.csv").click()
        shown = pd.read_csv(dl.value.path()).set_index("model")
    assert set(shown.index) == set(want) and len(want) == 57
    for model, r in want.items():
        for metric in ("length_controlled_winrate", "win_rate"):
            est = r[metric]
            assert shown.loc[model, metric] == pytest.approx(est["value"], abs=1e-9), (model, metric)
            if est["lower"] is None:
                assert pd.isna(shown.loc[model, f"{metric}_lower"])
            else:
                assert shown.loc[model, f"{metric}_lower"] == pytest.approx(est["lower"], abs=1e-9)
                assert shown.loc[model, f"{metric}_upper"] == pytest.approx(est["upper"], abs=1e-9)
