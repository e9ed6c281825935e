"""Offline DPO on a preference set, with the reference log-probabilities computed once before training.

Data: JSONL with ``prompt``, ``chosen`` and ``rejected`` per line, conversational (``prompt`` a list of messages
ending with the user's, ``chosen``/``rejected`` lists holding the assistant reply) or plain strings (taken as one
user turn and one assistant reply). Training runs on TRL's ``DPOTrainer`` with ``precompute_ref_log_probs``: the
policy scores every pair before its first update, those numbers are kept with the data, and no reference model is
created, so only one model sits in memory. The loss (DPO's ``-log sigmoid(beta * margin)`` by default) and its
settings are TRL's: ``beta``, ``loss_type``, ``label_smoothing``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lioneval.errors import DataError
from lioneval.trainers.config import StageConfig, _help
from lioneval.trainers.stage import Stage, StageResult

log = logging.getLogger("lioneval.train")

__all__ = ["DPOConfig", "DPOStage", "PreferenceConfig", "dpo", "dpo_trainer", "read_preferences"]


@dataclass
class PreferenceConfig(StageConfig):
    """The DPO loss settings shared by offline and online DPO."""

    beta: float = _help(0.1, "Strength of the pull towards the reference policy (higher: stay closer).", minimum=0)
    loss_type: str = _help("sigmoid", "TRL DPO loss: sigmoid (DPO), ipo, hinge, robust, ... (comma-separated "
                                      "for a weighted sum, see TRL's DPOConfig).")
    label_smoothing: float = _help(0.0, "Assumed share of flipped preference labels (conservative/robust DPO).",
                                   minimum=0)
    max_length: int = _help(512, "Tokens of prompt plus answer kept per example.", minimum=1)
    learning_rate: float = _help(5e-7, "Peak learning rate (DPO wants small ones).", minimum=0)

    def trl_args(self, **extra: Any) -> Any:
        from trl import DPOConfig as TRLDPOConfig

        return self.training_arguments(
            TRLDPOConfig,
            beta=self.beta,
            loss_type=[t.strip() for t in self.loss_type.split(",") if t.strip()],
            label_smoothing=self.label_smoothing,
            max_length=self.max_length,
            precompute_ref_log_probs=True,
            **extra,
        )


@dataclass
class DPOConfig(PreferenceConfig):
    """Settings of the offline DPO stage (also the keys of a `dpo` stage in a recipe)."""

    data: str = _help("", "JSONL preference set: prompt, chosen, rejected per line (messages or strings).")

    KIND = "dpo"
    REQUIRED = ("data",)
    INPUT_FILES = ("data",)


def _as_messages(value: Any, role: str, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return value
    raise DataError(f"{where} must be a string or a list of {{role, content}} messages",
                    fix="write prompt/chosen/rejected as strings or chat messages")


def read_preferences(path: str | Path) -> list[dict[str, list[dict[str, str]]]]:
    """Preference pairs in TRL's conversational form."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no preference data at {path}", fix="set `data:` to a JSONL file of prompt/chosen/rejected")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pair = {k: _as_messages(row[k], "user" if k == "prompt" else "assistant", f"{path}:{n} {k}")
                    for k in ("prompt", "chosen", "rejected")}
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n} is not a prompt/chosen/rejected object ({e})",
                            fix="write one JSON object with prompt, chosen and rejected per line") from e
        if pair["chosen"] == pair["rejected"]:
            continue  # no preference to learn
        out.append(pair)
    if not out:
        raise DataError(f"{path} holds no usable preference pair", fix="add pairs whose chosen and rejected differ")
    return out


def dpo_trainer(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], args: Any, callbacks: list[Any]) -> Any:
    """TRL's DPOTrainer over ``pairs`` with precomputed reference log-probabilities and no reference model."""
    from datasets import Dataset
    from trl import DPOTrainer

    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
                         callbacks=callbacks)
    if trainer.ref_model is not None:  # the promise of this stage: one model in memory
        raise RuntimeError("DPOTrainer kept a reference model although reference log-probs were precomputed")
    return trainer


class DPOStage(Stage):
    """Offline DPO on the shared stage skeleton: the preference set is read before anything is loaded."""

    config_cls = DPOConfig
    what = "DPO training"

    def prepare(self) -> None:
        self.pairs = read_preferences(self.cfg.data)

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        return dpo_trainer(model, tokenizer, self.pairs, self.cfg.trl_args(), callbacks)


def dpo(cfg: DPOConfig, *, store: str | None = None) -> StageResult:
    """Offline DPO from ``cfg.model`` on ``cfg.data``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    return DPOStage(cfg, store=store).run()
