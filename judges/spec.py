"""Judge specs: how a user names a judge, as a string or a YAML file.

    openai:gpt-4o-2024-08-06
    openai-compatible:Qwen2.5-72B-Instruct@http://10.0.0.5:8000/v1,http://10.0.0.6:8000/v1
    openai-compatible:m@http://user:password@10.0.0.5:8000/v1   (credentials: sent, never shown or stored)
    vllm:/models/Qwen2.5-72B-Instruct          (in-process, GPU, `vllm` extra)
    hf:/models/Qwen2.5-1.5B-Instruct           (local transformers causal LM, `train` extra)
    reward-model:/models/Skywork-Reward-8B     (sequence-classification reward model)
    ensemble:[openai:gpt-4o; openai-compatible:m@http://h:8000/v1]      (mean; `ensemble:majority:[...]` votes)
    path/to/judge.yaml                         (any of the above with settings: sampling, prices, templates)

A YAML file holds the same fields as JudgeSpec, e.g.::

    kind: openai-compatible
    model: Qwen2.5-72B-Instruct
    base_urls: [http://10.0.0.5:8000/v1]
    max_tokens: 2048
    prices: {input_per_mtok: 0.5, output_per_mtok: 1.5}

A base URL may carry ``user:password@`` (characters like ``@ , ; [ ] /`` in them percent-encoded). The model name ends
at the first ``@`` followed by ``http://`` or ``https://``. Credentials stay in ``base_urls``, which the backend needs,
and out of the label, the identity, the repr and every message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lioneval.backends.base import redact_url
from lioneval.checkpoint import weights_hash
from lioneval.errors import ConfigError, LionEvalError
from lioneval.registry import JUDGES
from lioneval.types import content_hash

LOCAL_KINDS = ("vllm", "hf", "reward-model")
AGGREGATES = ("mean", "majority")
PRICE_KEYS = ("input_per_mtok", "output_per_mtok")
_URLS_START = re.compile(r"@(?=https?://)", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeSpec:
    kind: str
    model: str = ""
    base_urls: tuple[str, ...] = ()
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 2048
    max_in_flight: int = 32
    timeout: float = 120.0
    max_retries: int = 6
    follow_up: bool = True  # Arena-Hard: ask once more for a verdict when the judge gave none
    # Start the judge's reply with the verdict format ("Rating: [[") so that small local judges, which rarely
    # follow the format on their own, give a parseable verdict. It skips the judge's explanation: use it only for
    # judges that cannot do better.
    prefill: bool = False
    prices: dict[str, float] = field(default_factory=dict)  # {"input_per_mtok": x, "output_per_mtok": y} in USD
    templates: dict[str, str] = field(default_factory=dict)  # "<benchmark>" or "<benchmark>/<mode>" -> path
    members: tuple[JudgeSpec, ...] = ()
    aggregate: str = "mean"  # ensemble: "mean" | "majority"
    name: str = ""  # display name; defaults to the spec string

    def identity(self) -> dict[str, Any]:
        """What makes two judges the same judge: everything but display name, prices and transport details.

        A local model is identified by its weights, not its path, so the same judge has the same id on every
        machine and a retrained model at the same path does not.
        """
        d = asdict(self)
        for k in ("name", "prices", "base_urls", "api_key_env", "max_in_flight", "timeout", "max_retries"):
            d.pop(k)
        d["members"] = [m.identity() for m in self.members]
        if self.kind in LOCAL_KINDS and Path(self.model).exists():
            d["model"] = f"{Path(self.model).name}@{weights_hash(self.model)}"
        return d

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.kind == "ensemble":
            return f"ensemble-{self.aggregate}[{';'.join(m.label for m in self.members)}]"
        if self.kind in LOCAL_KINDS:
            return f"{self.kind}:{Path(self.model).name}"
        return f"{self.kind}:{self.model}"

    @property
    def id(self) -> str:
        return f"{self.label}#{content_hash(self.identity(), 8)}"

    def __repr__(self) -> str:  # the dataclass repr would show the credentials of the base URLs
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return redact_url(f"JudgeSpec({shown})")


def _split_top(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_spec(spec: str | JudgeSpec | dict, **overrides: Any) -> JudgeSpec:
    """A JudgeSpec from a spec string, a YAML path, or a dict of fields."""
    if isinstance(spec, JudgeSpec):
        return _with(spec, overrides)
    if isinstance(spec, dict):
        return _from_dict(spec, overrides)
    text = spec.strip()
    if text.endswith((".yaml", ".yml")):
        return _from_yaml(Path(text), overrides)
    kind, sep, rest = text.partition(":")
    if not sep:
        raise _bad(text, "a spec is KIND:MODEL")
    JUDGES.entry(kind)  # an unknown kind answers "did you mean" with the registered kinds, plug-ins included
    if kind == "ensemble":
        aggregate = "mean"
        if not rest.startswith("["):
            aggregate, _, rest = rest.partition(":")
        if not (rest.startswith("[") and rest.endswith("]")):
            raise _bad(text, "an ensemble is ensemble:[SPEC; SPEC] or ensemble:majority:[SPEC; SPEC]")
        if aggregate not in AGGREGATES:
            raise _bad(text, f"the ensemble aggregate {aggregate!r} is none of {', '.join(AGGREGATES)}")
        members = tuple(parse_spec(m) for m in _split_top(rest[1:-1], ";"))
        if len(members) < 2:
            raise _bad(text, "an ensemble needs at least two judges")
        return _with(JudgeSpec(kind="ensemble", members=members, aggregate=aggregate), overrides)
    if kind == "openai-compatible":
        # The first '@' before a URL ends the model: a URL may hold user:password@ of its own.
        at = _URLS_START.search(rest)
        model, urls = (rest[: at.start()], rest[at.end() :]) if at else ("", "")
        if not model or not urls:
            raise _bad(text, "use openai-compatible:MODEL@BASE_URL[,BASE_URL...] with http:// or https:// URLs")
        return _with(JudgeSpec(kind=kind, model=model, base_urls=tuple(_split_top(urls, ","))), overrides)
    if not rest:
        raise _bad(text, f"{kind}: needs a model name or path after the colon")
    return _with(JudgeSpec(kind=kind, model=rest), overrides)


def _bad(text: str, why: str) -> LionEvalError:
    return LionEvalError(
        f"cannot read judge spec {redact_url(repr(text))}: {why}", fix="see `lioneval list judges` for the forms"
    )


def _with(spec: JudgeSpec, overrides: dict[str, Any]) -> JudgeSpec:
    clean = {k: v for k, v in overrides.items() if v is not None}
    if not clean:
        return spec
    return _from_dict({**asdict(spec), "members": spec.members, **clean}, {})


def _from_dict(d: Mapping[str, Any], overrides: dict[str, Any], where: str = "") -> JudgeSpec:
    """A JudgeSpec from settings (a YAML file, a dict, overrides), each checked: a wrong value is a ConfigError that
    names the setting, the value and the fix, never a TypeError from deep inside a run."""
    d = {**d, **{k: v for k, v in overrides.items() if v is not None}}
    if "spec" in d:  # a YAML file may start from a spec string and add settings
        base = d.pop("spec")
        if not isinstance(base, str):
            raise _wrong("spec", base, "a spec string", "spec: openai-compatible:MODEL@http://host:8000/v1", where)
        parsed = parse_spec(base)
        d = {**asdict(parsed), "members": parsed.members, **d}
    known = {f.name for f in fields(JudgeSpec)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(
            f"unknown judge setting(s) {sorted(unknown)}{where}", fix=f"use fields among {sorted(known)}"
        )
    if not isinstance(d.get("kind"), str):
        raise ConfigError(
            f"judge kind {redact_url(repr(d.get('kind')))}{where} is not a judge kind",
            fix="set `kind:` in the config (see `lioneval list judges`)",
        )
    JUDGES.entry(d["kind"])
    return JudgeSpec(**_checked(d, where))


def _wrong(name: str, value: Any, what: str, example: str, where: str) -> ConfigError:
    return ConfigError(
        f"judge setting {name}{where} is {redact_url(repr(value))}, which is not {what}", fix=f"write e.g. {example}"
    )


def _number(name: str, value: Any, where: str, *, low: float, strict: bool, example: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"{'>' if strict else '>='} {low:g}"
        raise _wrong(name, value, f"a number {bound}", example, where)
    return float(value)


def _integer(name: str, value: Any, where: str, *, low: int, example: str) -> int:
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < low:
        raise _wrong(name, value, f"a whole number >= {low}", example, where)
    return int(value)


def _checked(d: dict[str, Any], where: str) -> dict[str, Any]:
    """The settings with every value of the type JudgeSpec declares (numbers normalized)."""
    out = dict(d)
    for name in ("model", "api_key_env", "name"):
        if name in out and not isinstance(out[name], str):
            raise _wrong(name, out[name], "a string", f'{name}: "..." (quoted)', where)
    for name in ("follow_up", "prefill"):
        if name in out and not isinstance(out[name], bool):
            raise _wrong(name, out[name], "true or false", f"{name}: true", where)
    if "temperature" in out:
        out["temperature"] = _number("temperature", out["temperature"], where, low=0.0, strict=False,
                                     example="temperature: 0.0")  # fmt: skip
    if "timeout" in out:
        out["timeout"] = _number("timeout", out["timeout"], where, low=0.0, strict=True, example="timeout: 120")
    for name, low, example in (("max_tokens", 1, "max_tokens: 2048"), ("max_in_flight", 1, "max_in_flight: 32"),
                               ("max_retries", 0, "max_retries: 6")):  # fmt: skip
        if name in out:
            out[name] = _integer(name, out[name], where, low=low, example=example)
    if "aggregate" in out and out["aggregate"] not in AGGREGATES:
        raise _wrong("aggregate", out["aggregate"], f"one of {', '.join(AGGREGATES)}", "aggregate: mean", where)
    urls = out.get("base_urls", ())
    urls = [urls] if isinstance(urls, str) else urls
    if not isinstance(urls, (list, tuple)) or not all(
        isinstance(u, str) and u.strip().lower().startswith(("http://", "https://")) for u in urls
    ):
        raise _wrong("base_urls", out.get("base_urls"), "an http(s) URL or a list of them",
                     "base_urls: [http://10.0.0.5:8000/v1]", where)  # fmt: skip
    out["base_urls"] = tuple(u.strip() for u in urls)
    prices = out.get("prices", {})
    if not isinstance(prices, Mapping) or not all(k in PRICE_KEYS for k in prices):
        raise _wrong("prices", prices, f"a mapping with keys among {', '.join(PRICE_KEYS)}",
                     "prices: {input_per_mtok: 0.5, output_per_mtok: 1.5} (USD per million tokens)", where)  # fmt: skip
    out["prices"] = {
        k: _number(f"prices.{k}", v, where, low=0.0, strict=False, example=f"prices: {{{k}: 0.5}}")
        for k, v in prices.items()
    }
    templates = out.get("templates", {})
    if not isinstance(templates, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (str, Path)) for k, v in templates.items()
    ):
        raise _wrong("templates", templates, "a mapping of benchmark (or benchmark/mode) to a template file",
                     "templates: {arena-hard: path/to/judge_config.yaml}", where)  # fmt: skip
    out["templates"] = {k: str(v) for k, v in templates.items()}
    members = out.get("members", ())
    if not isinstance(members, (list, tuple)) or not all(isinstance(m, (str, Mapping, JudgeSpec)) for m in members):
        raise _wrong("members", members, "a list of judge specs", "members: [openai:gpt-4o, hf:/models/judge]", where)
    out["members"] = tuple(m if isinstance(m, JudgeSpec) else parse_spec(m if isinstance(m, str) else dict(m))
                           for m in members)  # fmt: skip
    return out


def _from_yaml(path: Path, overrides: dict[str, Any]) -> JudgeSpec:
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read judge config {path}: {e.strerror or e}", fix="check the path and its permissions"
        ) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"cannot read judge config {path}: it is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})",
            fix="save the file as UTF-8",
        ) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # the error quotes the offending line, which may hold a URL with credentials
        why = redact_url(str(e))
        raise ConfigError(f"judge config {path} is not valid YAML: {why}", fix="fix the YAML syntax") from e
    if not isinstance(data, dict):
        raise ConfigError(f"judge config {path} must be a mapping of settings", fix="see lioneval.judges.spec")
    data.setdefault("name", path.stem)
    return _from_dict(data, overrides, where=f" in {path}")
