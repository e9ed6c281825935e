"""References to an earlier stage's outputs in a recipe: ``@<stage>`` and ``@<stage>/<output>``.

A stage's string settings (``model``, ``data``, ``prompts``, judge specs such as ``reward-model:@rm``, the entries of
list settings such as the ``pairs`` stage's ``models``) may name what an earlier stage of the same recipe produced:

* every stage that trains a policy: ``model`` (the checkpoint the recipe goes on from: the promoted one, else the
  last), ``first`` and ``last`` (its first and last checkpoint), ``step<N>`` (its checkpoint of step N);
* ``reward-model``: ``model`` (its last checkpoint);
* ``rejection-sampling``: also ``samples`` (the scored samples) and ``pairs`` (best-vs-worst pairs from them);
* ``pairs``: ``pairs`` (the preference set in curriculum order).

Without ``/<output>`` a ``data`` setting takes ``pairs`` and every other setting ``model``. References are checked
when the recipe loads (the stage must come earlier and produce that output) and replaced just before the stage
runs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from lioneval.errors import ConfigError

__all__ = ["OUTPUT_KEYS", "check_refs", "refs_in", "resolve_refs", "stage_outputs"]

POLICY_OUTPUTS = ("model", "first", "last")
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    "reward-model": ("model",),
    "rejection-sampling": (*POLICY_OUTPUTS, "samples", "pairs"),
    "pairs": ("pairs",),
}
# a whole value, or what follows a spec's kind (reward-model:@rm); never the @ of openai-compatible:MODEL@URL
_REF = re.compile(r"(?:^|(?<=:))@([A-Za-z0-9._-]+)(?:/([A-Za-z_0-9]+))?$")
_STEP = re.compile(r"step\d+")


def _default_key(field: str) -> str:
    return "pairs" if field == "data" else "model"


def refs_in(cfg: Any) -> list[tuple[str, str, str]]:
    """(field, stage, output) for every reference in the config's string and list-of-string settings."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                for m in _REF.finditer(text):
                    out.append((f.name, m.group(1), m.group(2) or _default_key(f.name)))
    return out


def check_refs(stages: list[Any]) -> None:
    """Refuse a reference to a stage that does not come earlier or does not produce that output."""
    earlier: dict[str, str] = {}  # stage name -> kind
    for i, cfg in enumerate(stages):
        for field, name, key in refs_in(cfg):
            where = f"stages[{i}] ({cfg.KIND}).{field}"
            if name not in earlier:
                raise ConfigError(f"{where} refers to @{name}, which is not an earlier stage of the recipe",
                                  fix=f"name one of the stages before it: {', '.join(earlier) or '(none)'}")
            keys = OUTPUT_KEYS.get(earlier[name], POLICY_OUTPUTS)
            if key not in keys and not ("first" in keys and _STEP.fullmatch(key)):
                raise ConfigError(f"{where} asks for @{name}/{key}, but a {earlier[name]} stage produces "
                                  f"{', '.join(keys)}", fix=f"write @{name}/{keys[0]}")
        earlier[cfg.stage] = cfg.KIND


def resolve_refs(cfg: Any, produced: dict[str, dict[str, str]]) -> Any:
    """The config with its references replaced by the paths the earlier stages produced."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)

        def sub(text: str, field: str = f.name) -> str:
            def one(m: re.Match) -> str:
                name, key = m.group(1), m.group(2) or _default_key(field)
                got = produced.get(name, {}).get(key)
                if got is None:
                    raise ConfigError(f"@{name}/{key} in {cfg.stage}.{field} was not produced (the stage saved "
                                      "nothing of that kind)", fix=f"look at the {name} stage's log")
                return got

            return _REF.sub(one, text)

        if isinstance(value, str) and "@" in value:
            changes[f.name] = sub(value)
        elif isinstance(value, list) and any(isinstance(v, str) and "@" in v for v in value):
            changes[f.name] = [sub(v) if isinstance(v, str) else v for v in value]
    return dataclasses.replace(cfg, **changes) if changes else cfg


def stage_outputs(result: Any, goes_on: str | None) -> dict[str, str]:
    """What a finished stage offers to later ones: its own outputs, and for a policy stage the checkpoint the recipe
    goes on from and its first and last ones."""
    out: dict[str, str] = {}
    if result.policy and result.checkpoints:
        out.update(first=result.checkpoints[0], last=result.checkpoints[-1])
        for c in result.checkpoints:  # <stage>-step<N>
            out[c.rpartition("-")[2]] = c
        if goes_on:
            out["model"] = goes_on
    out.update(result.outputs)
    return out
