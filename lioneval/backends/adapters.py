"""PEFT adapter checkpoints (LoRA) as whole models: the base loaded, every adapter of the chain merged into it.

A stage trained with LoRA saves only its adapter; the adapter's ``base_model_name_or_path`` names the checkpoint it
applies to, which may itself be an adapter (a DPO stage starting from an SFT adapter checkpoint). Loading walks that
chain down to a full checkpoint, then merges the adapters in order, so the result is the same plain model the
trainer had in memory (``lioneval.checkpoint.weights_hash`` covers the chain too). Light at import: peft, torch and
transformers are imported when an adapter is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lioneval.checkpoint import adapter_base
from lioneval.errors import LionEvalError
from lioneval.registry import require

__all__ = ["is_adapter", "load_with_adapter"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def is_adapter(path: str | Path) -> bool:
    return adapter_base(path) is not None


def load_with_adapter(path: str | Path, load_base: Callable[[Path], tuple[Any, Any]]) -> tuple[Any, Any]:
    """Model and tokenizer of an adapter checkpoint: ``load_base`` loads the base (itself an adapter or not), and
    the adapter is merged into it. The model's ``name_or_path`` is the adapter's folder, so an adapter trained on
    top of it names this checkpoint as its base."""
    path = Path(path)
    base = adapter_base(path)
    if base is None:
        raise LionEvalError(f"{path} is not an adapter checkpoint (no adapter_config.json)",
                            fix="pass a folder written by a PEFT model's save_pretrained")
    require("peft", "train", what="loading LoRA adapter checkpoints")
    from peft import PeftModel
    from transformers import AutoTokenizer

    model, tok = load_base(base)
    model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    model.name_or_path = str(path.resolve())
    if any((path / f).is_file() for f in _TOKENIZER_FILES):
        tok = AutoTokenizer.from_pretrained(path)
    return model, tok
