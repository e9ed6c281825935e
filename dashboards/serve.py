"""Start the Streamlit server for the dashboard with the libraries its pages need already loaded.

Streamlit runs the app script only when a browser connects, so the first visitor would wait for pandas, pyarrow
(Streamlit's table format), plotly and lioneval's benchmark and statistics modules to load: seconds on a small
machine. Loaded here, before the server starts answering, they cost the server's start instead, and every session
(the first included) finds them in memory. ``lioneval dashboard`` runs ``python -m lioneval.dashboards.serve run
app.py ...``, which takes the arguments of ``streamlit run``.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys

import numpy  # noqa: F401
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import plotly.io  # noqa: F401
import plotly.subplots  # noqa: F401
import pyarrow  # noqa: F401
from streamlit.web import cli

from lioneval import leaderboard  # noqa: F401
from lioneval.dashboards import data
from lioneval.errors import LionEvalError
from lioneval.registry import BENCHMARKS

# Streamlit settings for a served dashboard; the user's own (the same variables, flags of `streamlit run`) win.
# Magic off: the app writes nothing by magic, and with it on every new browser session rewrites the script's syntax
# tree before running it. No file watcher: the app's sources do not change under a running dashboard (watching is
# for developing it: `streamlit run app.py` keeps the default).
SETTINGS = {"STREAMLIT_RUNNER_MAGIC_ENABLED": "false", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}


def preload_benchmarks() -> None:
    """Load every registered benchmark's module (their statistics with them); one that fails to load is left for
    its page to report."""
    for name in data.benchmark_names():
        try:
            BENCHMARKS.get(name)
        except (LionEvalError, ImportError, AttributeError):
            continue


def main() -> int:
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)
    preload_benchmarks()
    # Streamlit reads the call stack once, before the first page's first element (it checks for a REPL); the first
    # such read maps every loaded module to its file: done here, it is not on the first page's time.
    inspect.stack()
    # What is loaded now lives as long as the server: frozen, the garbage collector stops walking it. Streamlit
    # collects after every page run, and a page that allocates much triggers more collections during its run: each
    # walked the libraries' objects (of a warm AlpacaEval leaderboard's 0.3 s of server CPU, 0.08 s).
    gc.collect()
    gc.freeze()
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
