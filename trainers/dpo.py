"""Offline DPO on a preference set, with the reference log-probabilities computed once before training.

Data: JSONL with ``prompt``, ``chosen`` and ``rejected`` per line, conversational (``prompt`` a list of messages
ending with the user's, ``chosen``/``rejected`` lists holding the assistant reply) or plain strings (taken as one
user turn and one assistant reply). Training runs on TRL's ``DPOTrainer`` with ``precompute_ref_log_probs``: the
policy scores every pair before its first update, those numbers are kept with the data, and no reference model is
created, so only one model sits in memory. The loss (DPO's ``-log sigmoid(beta * margin)`` by default) and its
settings are TRL's: ``beta``, ``loss_type``, ``label_smoothing``.

``loss_type: ln-dpo`` is LN-DPO (Ahrabian et al., 2024, "The Hitchhiker's Guide to Human Alignment with *PO"): DPO
with each implicit reward divided by its response's length in tokens,

    L = -log sigmoid( beta / |y_w| * log(pi(y_w|x) / pi_ref(y_w|x)) - beta / |y_l| * log(pi(y_l|x) / pi_ref(y_l|x)) )

(y_w the chosen, y_l the rejected answer, |y| its completion tokens, the log-ratios summed over those tokens). It
runs on TRL's ``sigmoid_norm`` loss, which computes exactly this; :func:`ln_dpo_loss` is the formula on numbers.

``shuffle: false`` trains on the pairs in file order (a curriculum written by the ``pairs`` stage).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lioneval.errors import DataError
from lioneval.trainers.config import StageConfig, _help
from lioneval.trainers.evalset import split_eval
from lioneval.trainers.stage import Stage, StageResult

log = logging.getLogger("lioneval.train")

__all__ = ["LOSS_NAMES", "DPOConfig", "DPOStage", "PreferenceConfig", "dpo", "dpo_trainer", "ln_dpo_loss",
           "read_preferences"]

# lioneval's loss names -> TRL's (any other name is passed to TRL as it is)
LOSS_NAMES = {"ln-dpo": "sigmoid_norm", "dpo": "sigmoid"}


def ln_dpo_loss(chosen_logratio: float, rejected_logratio: float, chosen_tokens: int, rejected_tokens: int,
                beta: float) -> float:
    """LN-DPO's loss of one pair from its summed log-ratios log(pi/pi_ref) and the answers' token counts."""
    import math

    z = beta * (chosen_logratio / max(chosen_tokens, 1) - rejected_logratio / max(rejected_tokens, 1))
    return math.log1p(math.exp(-z)) if z > -30 else -z  # -log sigmoid(z), stable


@dataclass
class PreferenceConfig(StageConfig):
    """The DPO loss settings shared by offline and online DPO."""

    beta: float = _help(0.1, "Strength of the pull towards the reference policy (higher: stay closer).", minimum=0)
    loss_type: str = _help("sigmoid", "DPO loss by name: sigmoid (DPO), ln-dpo (length-normalised DPO, Ahrabian et "
                                      "al. 2024), ipo, hinge, robust, ... any TRL DPO loss (comma-separated for a "
                                      "weighted sum, see TRL's DPOConfig).")
    label_smoothing: float = _help(0.0, "Assumed share of flipped preference labels (conservative/robust DPO).",
                                   minimum=0)
    max_length: int = _help(512, "Tokens of prompt plus answer kept per example.", minimum=1)
    learning_rate: float = _help(5e-7, "Peak learning rate (DPO wants small ones).", minimum=0)

    def trl_args(self, **extra: Any) -> Any:
        from trl import DPOConfig as TRLDPOConfig

        return self.training_arguments(
            TRLDPOConfig,
            beta=self.beta,
            loss_type=[LOSS_NAMES.get(t.strip(), t.strip()) for t in self.loss_type.split(",") if t.strip()],
            label_smoothing=self.label_smoothing,
            max_length=self.max_length,
            precompute_ref_log_probs=True,
            **extra,
        )


@dataclass
class DPOConfig(PreferenceConfig):
    """Settings of the offline DPO stage (also the keys of a `dpo` stage in a recipe)."""

    data: str = _help("", "JSONL preference set: prompt, chosen, rejected per line (messages or strings); "
                          "@STAGE: the pairs an earlier stage wrote (pairs, rejection-sampling).")
    shuffle: bool = _help(True, "Shuffle the pairs; false: train on them in file order (a curriculum).")

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


def dpo_trainer(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], args: Any, callbacks: list[Any], *,
                peft_config: Any = None, eval_pairs: list[dict[str, Any]] | None = None) -> Any:
    """TRL's DPOTrainer over ``pairs`` with precomputed reference log-probabilities and no reference model (with
    ``peft_config``, a LoRA adapter trains and the reference is the model with the adapter disabled)."""
    from datasets import Dataset
    from trl import DPOTrainer

    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
                         eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None, callbacks=callbacks,
                         peft_config=peft_config)
    if trainer.ref_model is not None:  # the promise of this stage: one model in memory
        raise RuntimeError("DPOTrainer kept a reference model although reference log-probs were precomputed")
    return trainer


class DPOStage(Stage):
    """Offline DPO on the shared stage skeleton: the preference set is read before anything is loaded."""

    config_cls = DPOConfig
    what = "DPO training"

    def prepare(self) -> None:
        self.pairs, self.eval_pairs = split_eval(read_preferences(self.cfg.data), self.cfg, read_preferences)

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        order = {} if self.cfg.shuffle else {"train_sampling_strategy": "sequential"}
        return dpo_trainer(model, tokenizer, self.pairs, self.cfg.trl_args(**order), callbacks, peft_config=self.lora,
                           eval_pairs=self.eval_pairs)


def dpo(cfg: DPOConfig, *, store: str | None = None) -> StageResult:
    """Offline DPO from ``cfg.model`` on ``cfg.data``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    return DPOStage(cfg, store=store).run()
