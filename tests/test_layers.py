"""The layering of DESIGN.md holds (import-linter's contract in pyproject.toml), and outside lioneval/benchmarks/
no code names a benchmark: it asks the benchmark object."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> where it installs (pyproject's package-dir)
LAYOUT = {"lioneval": "lioneval", "judges": "lioneval/judges", "trainers": "lioneval/trainers",
          "dashboards": "lioneval/dashboards"}
BENCHMARK_NAMES = {"mt-bench", "arena-hard", "alpaca-eval"}


def _installed_layout(tmp: Path) -> Path:
    for src, dest in LAYOUT.items():
        shutil.copytree(ROOT / src, tmp / dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


def test_imports_follow_the_layers(tmp_path):
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (dev extra)")
    tree = _installed_layout(tmp_path / "src")
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(tree)}
    res = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants equal to a benchmark name, docstrings aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in BENCHMARK_NAMES
            and id(n) not in docstrings]


def test_no_code_outside_the_benchmark_modules_names_a_benchmark():
    found = []
    for src in LAYOUT:
        for path in sorted((ROOT / src).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ("lioneval", "benchmarks"):
                continue
            for line, value in _literals(path):
                # the registry is where each benchmark's one entry is declared
                if rel == Path("lioneval/registry.py") and "BENCHMARKS.register(" in \
                        path.read_text().splitlines()[line - 1]:
                    continue
                found.append(f"{rel}:{line}: {value!r}")
    assert not found, "benchmark names outside lioneval/benchmarks/:\n" + "\n".join(found)
