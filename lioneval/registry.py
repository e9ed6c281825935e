"""Name -> implementation registries with lazy imports.

Entries are ``"module:attr"`` strings, imported only when chosen, so ``import lioneval`` stays light and an
optional dependency is needed only by the user who picks the entry that uses it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from lioneval.errors import MissingExtraError, UnknownNameError

__all__ = ["Entry", "Registry", "BENCHMARKS", "BACKENDS", "JUDGES", "REGISTRIES", "require"]


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:attribute"
    summary: str = ""
    needs: tuple[str, ...] = ()  # importable module names the entry requires
    extra: str | None = None  # pip extra that provides them
    default: bool = False  # benchmarks: part of a run when none are named


@dataclass
class Registry:
    """Names -> lazy entries. Third-party packages add entries through the Python entry-point group
    ``lioneval.<kind>s`` (``[project.entry-points."lioneval.benchmarks"] toy = "pkg.mod:ToyBench"``), read once on
    first lookup; an entry registered in code wins over an entry point of the same name."""

    kind: str  # "benchmark", "judge", "backend"
    _entries: dict[str, Entry] = field(default_factory=dict)
    _plugins_loaded: bool = False

    @property
    def group(self) -> str:
        return f"lioneval.{self.kind}s"

    @property
    def entries(self) -> dict[str, Entry]:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for ep in _entry_points(self.group):
                self._entries.setdefault(ep.name, Entry(ep.value, f"plug-in from {ep.dist.name if ep.dist else '?'}"))
        return self._entries

    def unregister(self, name: str) -> None:
        self.entries.pop(name, None)

    def register(self, name: str, target: str, summary: str = "", *, needs=(), extra: str | None = None,
                 default: bool = False) -> None:
        if ":" not in target:
            raise ValueError(f"registry target must be 'module:attr', got {target!r}")
        self._entries[name] = Entry(target, summary, tuple(needs), extra, default)

    def defaults(self) -> tuple[str, ...]:
        """The entries used when the user names none (the three built-in benchmarks), in registration order."""
        return tuple(n for n, e in self.entries.items() if e.default)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.entries, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None
            known = ", ".join(self.names()) or "none registered"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}" + (f"; {hint}" if hint else ""),
                fix=f"use one of: {known} (see `lioneval list {self.kind}s`)",
            ) from None

    def get(self, name: str) -> Any:
        """Import and return the object registered under ``name``."""
        e = self.entry(name)
        for mod in e.needs:
            require(mod, e.extra, what=f"{self.kind} {name!r}")
        module_name, attr = e.target.split(":", 1)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # A dependency imported by the module itself, not declared in `needs`.
            if err.name and not module_name.startswith(err.name):
                raise _missing(err.name, e.extra, f"{self.kind} {name!r}") from err
            raise
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def available(self, name: str) -> tuple[bool, str]:
        """Whether an entry's dependencies are importable, without importing them."""
        e = self.entry(name)
        missing = [m for m in e.needs if importlib.util.find_spec(m) is None]
        if missing:
            how = f"pip install 'lioneval[{e.extra}]'" if e.extra else f"pip install {' '.join(missing)}"
            return False, f"needs {', '.join(missing)}: {how}"
        return True, "ready"


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=group))
    except Exception:  # a broken third-party distribution must not break lioneval's own entries
        return []


def _missing(module: str, extra: str | None, what: str) -> MissingExtraError:
    how = f"pip install 'lioneval[{extra}]'" if extra else f"pip install {module}"
    return MissingExtraError(f"{what} needs the optional package {module!r}, which is not installed", fix=how)


def require(module: str, extra: str | None, what: str = "this feature") -> None:
    """Raise a MissingExtraError naming the extra when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise _missing(module, extra, what)


BENCHMARKS = Registry("benchmark")
JUDGES = Registry("judge")
BACKENDS = Registry("backend")
REGISTRIES = {"benchmarks": BENCHMARKS, "judges": JUDGES, "backends": BACKENDS}

_B = "lioneval.benchmarks."
BENCHMARKS.register("mt-bench", _B + "mt_bench:MTBench", "MT-Bench single-answer grading, 80 two-turn questions",
                    default=True)
BENCHMARKS.register("arena-hard", _B + "arena_hard:ArenaHard", "Arena-Hard-Auto v0.1, pairwise vs a baseline",
                    default=True)
BENCHMARKS.register("alpaca-eval", _B + "alpaca_eval:AlpacaEval", "AlpacaEval 2.0 with length-controlled win rate",
                    default=True)

_J = "lioneval.judges."
JUDGES.register("openai", _J + "judge:Judge", "openai:MODEL - OpenAI API (OPENAI_API_KEY)")
JUDGES.register("openai-compatible", _J + "judge:Judge", "openai-compatible:MODEL@URL[,URL] - vLLM/sglang/llama.cpp")
JUDGES.register("vllm", _J + "judge:Judge", "vllm:PATH - in-process vLLM (GPU)", needs=("vllm",), extra="vllm")
JUDGES.register("hf", _J + "judge:Judge", "hf:PATH - local transformers causal LM",
                needs=("torch", "transformers"), extra="train")
JUDGES.register("reward-model", _J + "reward:RewardModelJudge", "reward-model:PATH - sequence-classification RM",
                needs=("torch", "transformers"), extra="train")
JUDGES.register("scripted", _J + "judge:Judge", "scripted:NAME - in-process scripted judge (tests, no model)")
JUDGES.register("ensemble", _J + "ensemble:EnsembleJudge", "ensemble:[SPEC; SPEC] or ensemble:majority:[...]")

_K = "lioneval.backends."
BACKENDS.register("openai-compatible", _K + "fanout:FanoutBackend",
                  "any OpenAI-compatible server, or several (fan-out with failover and prefix affinity)")
BACKENDS.register("openai", _K + "openai_compat:OpenAIBackend", "the OpenAI API")
BACKENDS.register("hf", _K + "transformers_backend:TransformersBackend", "local transformers model, CPU or GPU",
                  needs=("torch", "transformers"), extra="train")
BACKENDS.register("vllm", _K + "vllm_backend:VLLMBackend", "in-process vLLM engine (GPU)", needs=("vllm",),
                  extra="vllm")
BACKENDS.register("scripted", "lioneval.testing.scripted:ScriptedBackend", "in-process scripted answers (tests)")
