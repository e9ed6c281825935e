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


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL cluster for the whole session (tests/pg_server.py): ``pg_server.new_database()`` is the
    URL of an empty database. Skips, saying why, where PostgreSQL or its driver is not installed."""
    import importlib.util
    import sys

    if "pg_server" not in sys.modules:  # tests/ is not a package and not on sys.path: loaded by path
        spec = importlib.util.spec_from_file_location("pg_server", Path(__file__).with_name("pg_server.py"))
        assert spec is not None and spec.loader is not None
        sys.modules["pg_server"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["pg_server"])
    module = sys.modules["pg_server"]
    reason = module.unavailable()
    if reason:
        pytest.skip(reason)
    server = module.PgServer().start()
    yield server
    server.stop()


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch):
    """The third-party toy benchmark of tests/plugins, registered through the registry API as "toy"."""
    from lioneval.registry import BENCHMARKS

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    BENCHMARKS.register("toy", "toy_bench:ToyBench", "toy benchmark")
    yield "toy"
    BENCHMARKS.unregister("toy")
