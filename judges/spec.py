"""Judge specs: how a user names a judge, as a string or a YAML file.

    openai:gpt-4o-2024-08-06
    openai-compatible:Qwen2.5-72B-Instruct@http://10.0.0.5:8000/v1,http://10.0.0.6:8000/v1
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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lioneval.checkpoint import weights_hash
from lioneval.errors import LionEvalError
from lioneval.registry import JUDGES
from lioneval.types import content_hash

LOCAL_KINDS = ("vllm", "hf", "reward-model")


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


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
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
        members = tuple(parse_spec(m) for m in _split_top(rest[1:-1], ";"))
        if len(members) < 2:
            raise _bad(text, "an ensemble needs at least two judges")
        return _with(JudgeSpec(kind="ensemble", members=members, aggregate=aggregate), overrides)
    if kind == "openai-compatible":
        model, at, urls = rest.rpartition("@")
        if not at or not model or not urls:
            raise _bad(text, "use openai-compatible:MODEL@BASE_URL[,BASE_URL...]")
        return _with(JudgeSpec(kind=kind, model=model, base_urls=tuple(_split_top(urls, ","))), overrides)
    if not rest:
        raise _bad(text, f"{kind}: needs a model name or path after the colon")
    return _with(JudgeSpec(kind=kind, model=rest), overrides)


def _bad(text: str, why: str) -> LionEvalError:
    return LionEvalError(f"cannot read judge spec {text!r}: {why}", fix="see `lioneval list judges` for the forms")


def _with(spec: JudgeSpec, overrides: dict[str, Any]) -> JudgeSpec:
    clean = {k: v for k, v in overrides.items() if v is not None}
    if not clean:
        return spec
    return _from_dict({**asdict(spec), "members": spec.members, **clean}, {})


def _from_dict(d: dict[str, Any], overrides: dict[str, Any]) -> JudgeSpec:
    d = {**d, **{k: v for k, v in overrides.items() if v is not None}}
    if "spec" in d:  # a YAML file may start from a spec string and add settings
        base = parse_spec(d.pop("spec"))
        d = {**asdict(base), "members": base.members, **d}
    known = {f.name for f in fields(JudgeSpec)}
    unknown = set(d) - known
    if unknown:
        raise LionEvalError(f"unknown judge setting(s) {sorted(unknown)}", fix=f"use fields among {sorted(known)}")
    if not isinstance(d.get("kind"), str):
        raise LionEvalError(f"judge kind {d.get('kind')!r} is not a judge kind", fix="set `kind:` in the config")
    JUDGES.entry(d["kind"])
    members = tuple(m if isinstance(m, JudgeSpec) else parse_spec(m) for m in d.get("members", ()))
    urls = d.get("base_urls", ())
    d.update(members=members, base_urls=tuple([urls] if isinstance(urls, str) else urls))
    return JudgeSpec(**d)


def _from_yaml(path: Path, overrides: dict[str, Any]) -> JudgeSpec:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise LionEvalError(f"cannot read judge config {path}: {e.strerror}", fix="check the path") from e
    except yaml.YAMLError as e:
        raise LionEvalError(f"judge config {path} is not valid YAML: {e}", fix="fix the YAML syntax") from e
    if not isinstance(data, dict):
        raise LionEvalError(f"judge config {path} must be a mapping of settings", fix="see lioneval.judges.spec")
    data.setdefault("name", path.stem)
    return _from_dict(data, overrides)
