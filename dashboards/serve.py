"""Start the Streamlit server for the dashboard with the libraries its pages need already loaded.

Streamlit runs the app script only when a browser connects, so the first visitor would wait for pandas, pyarrow
(Streamlit's table format), plotly and lioneval's benchmark and statistics modules to load: seconds on a small
machine. Loaded here, before the server starts answering, they cost the server's start instead, and every session
(the first included) finds them in memory. ``lioneval dashboard`` runs ``python -m lioneval.dashboards.serve run
app.py ...``, which takes the arguments of ``streamlit run``.
"""

from __future__ import annotations

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


def preload_benchmarks() -> None:
    """Load every registered benchmark's module (their statistics with them); one that fails to load is left for
    its page to report."""
    for name in data.benchmark_names():
        try:
            BENCHMARKS.get(name)
        except (LionEvalError, ImportError, AttributeError):
            continue


if __name__ == "__main__":
    preload_benchmarks()
    sys.exit(cli.main(prog_name="streamlit"))
