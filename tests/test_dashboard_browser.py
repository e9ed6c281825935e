"""The dashboard in a real browser: `lioneval dashboard` serves it, Debian's chromium (driven by Playwright) opens it.

No browser is downloaded: Playwright drives the distribution's /usr/bin/chromium. Skipped with the reason when
Playwright, the chromium binary or the dashboard extra is missing.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
START_TIMEOUT_S = 90
UI_TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(
        importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None,
        reason="the dashboard extra is not installed (pip install 'lioneval[dashboard]')",
    ),
]


def _demo_store_builder():
    """The store builder of the AppTest module (tests have no package, so load it by path)."""
    path = Path(__file__).with_name("test_dashboard_app.py")
    spec = importlib.util.spec_from_file_location("dashboard_app_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_demo_store


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


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "store.db"
    _demo_store_builder()(db, tmp_path)
    port = _free_port()
    log = tmp_path / "dashboard.log"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log, "w") as fh:
        # its own process group: the CLI starts streamlit as a child, and both must go at the end
        proc = subprocess.Popen(
            [sys.executable, "-m", "lioneval.cli", "--store", str(db), "dashboard", "--headless", "--port", str(port)],
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


def test_judge_comparison_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)  # the first page load imports the app's modules: seconds
    shot = tmp_path / "judge-comparison.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=UI_TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            # a shared link opens the view it names ...
            page.goto(f"{server}/?view=Leaderboards", wait_until="domcontentloaded")
            expect(page.get_by_role("heading", name="Leaderboards")).to_be_visible()
            # ... and the sidebar switches to the judge comparison
            page.locator('[data-testid="stSidebar"]').get_by_text("Judges", exact=True).click()
            expect(page.get_by_role("heading", name="Judge comparison")).to_be_visible()
            main = page.get_by_role("main")
            chart = main.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
            expect(chart).to_be_visible()
            expect(main.locator('[data-testid="stPlotlyChart"] .scatterlayer .trace').first).to_be_attached()
            tables = main.locator('[data-testid="stDataFrame"]')
            expect(tables.first).to_be_visible()
            assert tables.count() >= 3, "the judge page lost its tables"
            expect(page.get_by_text("Agreement between judges")).to_be_visible()
            assert "view=Leaderboards" not in page.url  # the URL follows the view, so the link can be shared
            # Streamlit scrolls inside its main block, so a tall window (not full_page) gets more of the page in
            page.set_viewport_size({"width": 1400, "height": 2400})
            page.wait_for_timeout(1000)  # let the grids paint before the picture
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.exists() and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
