"""The project config: where a team writes its lioneval settings once, instead of repeating flags.

It is ``lioneval.toml``, or the ``[tool.lioneval]`` table of ``pyproject.toml``, in the working folder or the
nearest folder above it (``--config PATH`` names one explicitly)::

    store = "runs/lioneval.db"
    bench = ["mt-bench", "arena-hard@v2.0", "alpaca-eval"]
    judge = "openai-compatible:Qwen2.5-72B-Instruct@http://judge:8000/v1"   # every benchmark's judge ...
    judge_max_tokens = 4096
    judge_timeout = 300
    judge_concurrency = 16
    max_failed_share = 0.05

    [judges]                        # ... or one per benchmark
    alpaca-eval = "openai:gpt-4-1106-preview"

    [data]                          # data folders (relative paths are relative to this file)
    arena-hard = "data/arena-hard-v0.1"

    [revisions]                     # pin the hub revision of a benchmark's official data
    alpaca-eval = "main"

    [baselines]
    arena-hard = "gpt-4-0314"

    [benchmarks.alpaca-eval]        # a benchmark's own settings
    annotator = "weighted_alpaca_eval_gpt4_turbo"

Command-line flags override the file; the file overrides lioneval's defaults. Secrets never go here: API keys are
read from environment variables only (a key-like setting is refused). ``lioneval config show`` prints the effective
settings and where each one came from.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lioneval.errors import ConfigError
from lioneval.store_sql import is_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ProjectConfig", "Setting", "effective_settings", "find_config", "load_project"]

CONFIG_FILE = "lioneval.toml"

# top-level scalar settings: name -> (type(s), example)
_SCALARS: dict[str, tuple[tuple[type, ...], str]] = {
    "store": ((str,), 'store = "runs/lioneval.db"'),
    "judge": ((str,), 'judge = "openai:gpt-4o"'),
    "seed": ((int,), "seed = 0"),
    "rounds": ((int,), "rounds = 1000"),
    "limit": ((int,), "limit = 50"),
    "batch_size": ((int,), "batch_size = 32"),
    "max_new_tokens": ((int,), "max_new_tokens = 1024"),
    "checks": ((str,), 'checks = "checks.yaml"'),
    "judge_max_tokens": ((int,), "judge_max_tokens = 4096"),
    "judge_timeout": ((int, float), "judge_timeout = 300"),
    "judge_concurrency": ((int,), "judge_concurrency = 16"),
    "max_failed_share": ((int, float), "max_failed_share = 0.05"),
    "max_unanswered_share": ((int, float), "max_unanswered_share = 0.0"),
}
# tables keyed by benchmark name: name -> example
_TABLES = {
    "judges": '[judges]\nmt-bench = "openai:gpt-4"',
    "data": '[data]\narena-hard = "data/arena-hard-v0.1"',
    "revisions": '[revisions]\nalpaca-eval = "main"',
    "baselines": '[baselines]\narena-hard = "gpt-4-0314"',
    "benchmarks": '[benchmarks.alpaca-eval]\nannotator = "..."',
}
_PATHS = ("store", "checks")  # resolved against the config file's folder
_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "credentials"})


@dataclass(frozen=True)
class Setting:
    """One effective setting and where it came from ("default", "lioneval.toml", "command line", ...)."""

    name: str
    value: Any
    source: str


@dataclass
class ProjectConfig:
    """The validated settings of one config file (empty when there is none)."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        if self.path is None:
            return "default"
        return f"{self.path.name} ({self.path})" if self.path.name == CONFIG_FILE else \
            f"[tool.lioneval] of {self.path}"

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def table(self, key: str) -> dict[str, Any]:
        return dict(self.values.get(key) or {})

    def bench(self) -> tuple[str, ...] | None:
        found = self.values.get("bench")
        return tuple(found) if found else None


def find_config(start: str | Path | None = None) -> Path | None:
    """The nearest ``lioneval.toml``, or ``pyproject.toml`` with a ``[tool.lioneval]`` table, from ``start`` (the
    working folder) up to the file system's root."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        own = folder / CONFIG_FILE
        if own.is_file():
            return own
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "tool" in _read(pyproject) and "lioneval" in _read(pyproject)["tool"]:
            return pyproject
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read the project config {path}: {e.strerror}", fix="check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the project config {path} is not UTF-8 text", fix="save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the project config {path} is not valid TOML: {e}", fix="fix the line it names") from None


def load_project(path: str | Path | None = None, *, start: str | Path | None = None) -> ProjectConfig:
    """The project config at ``path`` (an explicit ``--config``), else the nearest one found from ``start``; an
    empty config when there is none. Every value is checked here, so a typo fails before any work."""
    if path is not None:
        found: Path | None = Path(path)
        if not found.is_file():  # type: ignore[union-attr]
            raise ConfigError(f"project config {path} does not exist", fix="pass the path of a lioneval.toml")
    else:
        found = find_config(start)
    if found is None:
        return ProjectConfig()
    raw = _read(found)
    if found.name == "pyproject.toml":
        raw = raw.get("tool", {}).get("lioneval")
        if raw is None:
            raise ConfigError(f"{found} has no [tool.lioneval] table", fix="add one, or use a lioneval.toml")
    cfg = ProjectConfig(found.resolve(), {})
    cfg.values = _checked(raw, cfg)
    return cfg


def _checked(raw: Mapping[str, Any], cfg: ProjectConfig) -> dict[str, Any]:
    where = cfg.source
    known = sorted([*_SCALARS, *_TABLES, "bench"])
    out: dict[str, Any] = {}
    for key, value in raw.items():
        _refuse_secret(key, where)
        if key == "bench":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"bench in {where} must be a list of benchmark names, not {value!r}",
                                  fix='e.g. bench = ["mt-bench", "arena-hard@v2.0"]')
            for n in names:
                _known_benchmark(n, f"bench in {where}")
            out[key] = names
        elif key in _SCALARS:
            types, example = _SCALARS[key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ConfigError(f"{key} in {where} must be {' or '.join(t.__name__ for t in types)}, "
                                  f"not {value!r}", fix=f"e.g. {example}")
            if key == "store" and is_url(value):  # a database server's store: a URL, not a path
                if urlsplit(str(value)).password is not None:
                    raise ConfigError(f"store in {where} holds a password",
                                      fix="leave it out of the URL and give it through ~/.pgpass or PGPASSWORD")
            elif key in _PATHS:
                value = str(_relative(str(value), cfg))
            out[key] = value
        elif key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{key} in {where} must be a table", fix=f"e.g.\n{_TABLES[key]}")
            table: dict[str, Any] = {}
            for bench, item in value.items():
                _refuse_secret(str(bench), where)
                _known_benchmark(str(bench), f"[{key}] in {where}")
                if key == "benchmarks":
                    if not isinstance(item, dict):
                        raise ConfigError(f"[benchmarks.{bench}] in {where} must be a table of settings",
                                          fix=f"e.g.\n{_TABLES[key]}")
                    for option in item:
                        _refuse_secret(str(option), where)
                    table[bench] = dict(item)
                    continue
                if not isinstance(item, str) or not item:
                    raise ConfigError(f"{key}.{bench} in {where} must be a text value, not {item!r}",
                                      fix=f"e.g.\n{_TABLES[key]}")
                table[bench] = str(_relative(item, cfg)) if key == "data" else item
            out[key] = table
        else:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r} in {where}{hint}", fix=f"use: {', '.join(known)}")
    return out


def _known_benchmark(name: str, where: str) -> None:
    """A misspelt benchmark in the config answers "did you mean", naming where it was written."""
    from lioneval.errors import UnknownNameError
    from lioneval.registry import BENCHMARKS

    try:
        BENCHMARKS.entry(name.partition("@")[0])
    except UnknownNameError as e:
        raise ConfigError(f"{e.message} ({where})", fix=e.fix) from None


def _relative(value: str, cfg: ProjectConfig) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() or cfg.path is None else cfg.path.parent / p


def _refuse_secret(key: str, where: str) -> None:
    words = set(key.lower().replace("-", "_").replace(".", "_").split("_"))
    if words & _SECRET_WORDS:
        raise ConfigError(f"{where} sets {key!r}, which looks like a secret; secrets are never read from files",
                          fix="remove it and export it as an environment variable (e.g. OPENAI_API_KEY)")


_DEFAULTS: dict[str, Any] = {"seed": 0, "rounds": None, "limit": None, "batch_size": 32, "max_new_tokens": None,
                             "checks": None, "judge_max_tokens": None, "judge_timeout": None,
                             "judge_concurrency": None, "max_failed_share": 0.05, "max_unanswered_share": 0.0}


def effective_settings(project: ProjectConfig, *, store: tuple[str, str | None] | None = None) -> list[Setting]:
    """What `lioneval run` would use here without flags, and where each value comes from: for every benchmark its
    judge and its data (a configured path, or the official source it resolves from), then the run settings.
    ``store``: (path, source) when it was given outside the config (flag or environment)."""
    import os

    from lioneval import benchmarks
    from lioneval.registry import BENCHMARKS

    src = project.source
    rows: list[Setting] = []
    if store is not None and store[1] is not None:
        rows.append(Setting("store", store[0], store[1]))
    elif project.get("store"):
        rows.append(Setting("store", project.get("store"), src))
    else:
        rows.append(Setting("store", store[0] if store else "lioneval.db", "default"))
    names = list(project.bench() or BENCHMARKS.defaults())
    rows.append(Setting("bench", names, src if project.bench() else "default"))
    judges, data = project.table("judges"), project.table("data")
    revisions, baselines = project.table("revisions"), project.table("baselines")
    options = project.table("benchmarks")

    def pick(table: dict[str, Any], name: str) -> Any:
        return table.get(name, table.get(name.partition("@")[0]))

    for name in names:
        bench = benchmarks.load(name)
        judge = pick(judges, name)
        if judge:
            rows.append(Setting(f"judges.{name}", judge, f"[judges] of {src}"))
        elif project.get("judge"):
            rows.append(Setting(f"judges.{name}", project.get("judge"), src))
        elif bench.official_judge:
            official = bench.official_judge
            needs = "OPENAI_API_KEY" if official.startswith("openai:") else None
            state = "" if needs is None else (f"; {needs} is set" if os.environ.get(needs) else
                                               f"; needs {needs}, which is not set")
            rows.append(Setting(f"judges.{name}", official, f"official judge of {name}{state}"))
        else:
            rows.append(Setting(f"judges.{name}", None, "none: pass --judge"))
        path = pick(data, name)
        source = bench.data_source()
        revision = pick(revisions, name)
        if path:
            rows.append(Setting(f"data.{name}", path, f"[data] of {src}"))
        elif source is not None:
            where = f"{source.repo_type} {source.repo_id}@{revision or source.revision}"
            order = "installed package, else " if source.packages else ""
            rows.append(Setting(f"data.{name}", where, f"official data: {order}hub cache, else download"
                                + (f"; revision from {src}" if revision else "")))
        else:
            rows.append(Setting(f"data.{name}", None, "none: pass --data"))
        base = pick(baselines, name)
        if bench.kind == "pairwise":
            rows.append(Setting(f"baselines.{name}", base or bench.baseline, f"[baselines] of {src}" if base
                                else "benchmark default"))
        for key, value in (pick(options, name) or {}).items():
            rows.append(Setting(f"benchmarks.{name}.{key}", value, f"[benchmarks.{name}] of {src}"))
    for key, default in _DEFAULTS.items():
        if project.get(key) is not None:
            rows.append(Setting(key, project.get(key), src))
        else:
            rows.append(Setting(key, default, "default"))
    return rows
