"""Shared fixtures. Tests run against the installed package (``--import-mode=importlib``, no tests/__init__.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lioneval.store import RunStore

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def store(tmp_path: Path):
    st = RunStore(tmp_path / "store.db")
    yield st
    st.close()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
