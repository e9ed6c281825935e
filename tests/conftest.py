"""Shared fixtures. Tests run against the installed package (``--import-mode=importlib``, no tests/__init__.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lioneval.store import RunStore

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _outside_the_source_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test (and the subprocesses it starts) from a scratch folder: from the repository root, `python -c`
    would import the source folder `lioneval/` instead of the installed package, which is what users get (and
    what maps judges/, trainers/ and dashboards/ into it)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store(tmp_path: Path):
    st = RunStore(tmp_path / "store.db")
    yield st
    st.close()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch):
    """The third-party toy benchmark of tests/plugins, registered through the registry API as "toy"."""
    from lioneval.registry import BENCHMARKS

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    BENCHMARKS.register("toy", "toy_bench:ToyBench", "toy benchmark")
    yield "toy"
    BENCHMARKS.unregister("toy")
