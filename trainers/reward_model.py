"""The reward-model stage: a sequence-classification reward model trained on preference pairs (Xwin-LM's second step).

Data: the DPO stage's preference JSONL (prompt, chosen, rejected per line; lioneval.trainers.dpo.read_preferences).
A share of the pairs (``heldout``, drawn with ``seed``) is kept out of training. The model is the starting
checkpoint with a one-output score head (a causal-LM checkpoint such as the SFT policy gets a new head, a LoRA
checkpoint is merged into its base first; a reward model is trained further), trained with TRL's
``RewardTrainer`` (Bradley-Terry loss ``-log sigmoid(r(x, y_w) - r(x, y_l))`` on whole rendered conversations).

Every saved checkpoint is scored on the held-out pairs exactly as the ``reward-model:`` judge scores answers
(lioneval.judges.reward.RewardModelJudge): the pairwise accuracy (share of pairs whose chosen answer gets the higher
reward; ties count half) is logged as ``reward_model/heldout_accuracy`` and listed in the stage result. The
checkpoint is at once usable as a judge (``reward-model:PATH``, or ``reward-model:@<stage>`` later in a recipe)
and as the online-DPO or rejection-sampling ranker. The stage trains no policy: a recipe's next stage starts from
the policy before it, and the benchmark evaluation (``eval``) does not apply to it.

Like the other stages it has an eval set for ``Trainer.evaluate`` (``eval_data``, or ``eval_split`` of the training
pairs: lioneval.trainers.evalset), on which TRL logs ``eval_loss`` and ``eval_accuracy`` and which the best-model
settings (``metric_for_best_model: eval_accuracy``) read; and with ``peft_config`` it trains a LoRA adapter on the
frozen model plus the new score head (peft's sequence-classification task), so a checkpoint is the adapter and the
head: megabytes, loaded as a judge with its base merged in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lioneval.backends.adapters import is_adapter
from lioneval.errors import ConfigError, DataError
from lioneval.judges.reward import RewardModelJudge
from lioneval.trainers.config import StageConfig, _help
from lioneval.trainers.dpo import read_preferences
from lioneval.trainers.evalset import split_eval
from lioneval.trainers.models import load_policy, resolve_model
from lioneval.trainers.stage import Stage, StageResult

log = logging.getLogger("lioneval.train")

__all__ = ["RewardModelConfig", "RewardModelStage", "pairwise_accuracy", "reward_model", "split_pairs"]


@dataclass
class RewardModelConfig(StageConfig):
    """Settings of the reward-model stage (also the keys of a `reward-model` stage in a recipe)."""

    data: str = _help("", "JSONL preference set: prompt, chosen, rejected per line (messages or strings).")
    heldout: float = _help(0.2, "Share of the pairs kept out of training to measure pairwise accuracy (0: none).",
                           minimum=0)
    max_length: int = _help(512, "Longest rendered conversation in tokens; longer pairs are left out of training.",
                            minimum=1)
    learning_rate: float = _help(1e-5, "Peak learning rate.", minimum=0)

    KIND = "reward-model"
    REQUIRED = ("data",)
    INPUT_FILES = ("data",)

    def check(self, where: str) -> None:
        super().check(where)
        if self.heldout >= 1:
            raise ConfigError(f"{where}.heldout must be below 1, not {self.heldout!r}", fix="e.g. heldout: 0.2")
        # A reward model answers no benchmark: its evaluation is the held-out accuracy, not the policy's suite.
        self.eval = None


def split_pairs(pairs: list[dict[str, Any]], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs): a seeded random ``share`` held out (at least one pair when share > 0)."""
    if share <= 0 or len(pairs) < 2:
        return list(pairs), []
    order = np.random.default_rng(seed).permutation(len(pairs))
    n = min(len(pairs) - 1, max(1, round(share * len(pairs))))
    held = sorted(order[:n].tolist())
    keep = sorted(order[n:].tolist())
    return [pairs[i] for i in keep], [pairs[i] for i in held]


def pairwise_accuracy(judge: RewardModelJudge, pairs: list[dict[str, Any]]) -> float | None:
    """Share of pairs whose chosen conversation gets the higher reward (ties count half); None without pairs."""
    if not pairs:
        return None
    convos = [p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs]
    r = judge.score(convos)
    n = len(pairs)
    wins = [1.0 if r[i] > r[n + i] else 0.5 if r[i] == r[n + i] else 0.0 for i in range(n)]
    return float(np.mean(wins))


def _heldout_callback(stage: RewardModelStage) -> Any:
    from transformers import TrainerCallback

    class HeldOutAccuracy(TrainerCallback):
        """Scores each saved checkpoint on the held-out pairs and logs the accuracy."""

        def on_save(self, args, state, control, model=None, processing_class=None, **kwargs):
            if not stage.heldout or model is None:
                return
            was_training = model.training
            model.eval()
            judge = RewardModelJudge("reward-model:training", model=model, tokenizer=processing_class)
            acc = pairwise_accuracy(judge, stage.heldout)
            if was_training:
                model.train()
            step = state.global_step + stage.step_offset
            stage.accuracy.append({"step": step, "heldout_accuracy": acc, "n": len(stage.heldout)})
            state.log_history.append({"reward_model/heldout_accuracy": acc, "step": state.global_step})
            log.info("reward-model: step %d held-out pairwise accuracy %.3f on %d pairs", step, acc,
                     len(stage.heldout))

    return HeldOutAccuracy()


class RewardModelStage(Stage):
    """Reward-model training on the shared stage skeleton (a classifier, not a policy, is loaded and trained)."""

    config_cls = RewardModelConfig
    what = "reward-model training"

    def prepare(self) -> None:
        pairs = read_preferences(self.cfg.data)
        train, self.heldout = split_pairs(pairs, self.cfg.heldout, self.cfg.seed)
        if not train:
            raise DataError(f"{self.cfg.data} leaves no pair to train on", fix="add pairs or lower heldout")
        self.train_pairs, self.eval_pairs = split_eval(train, self.cfg, read_preferences)
        self.accuracy: list[dict[str, Any]] = []
        self.step_offset = 0

    def load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        path = resolve_model(self.cfg.model, self.cfg.output_dir)
        if is_adapter(path) or path.endswith(".gguf"):
            # a LoRA (or quantised) policy checkpoint: its merged weights, saved once as a plain checkpoint
            policy, tok = load_policy(path)
            plain = Path(self.cfg.output_dir) / "models" / f"{self.cfg.stage}-start"
            policy.save_pretrained(plain)
            tok.save_pretrained(plain)
            del policy
            path = str(plain)
        tok = AutoTokenizer.from_pretrained(path)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        with suppress_seqcls_warning():  # a causal-LM checkpoint gets a new score head: expected
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        model.config.pad_token_id = tok.pad_token_id
        model.name_or_path = str(Path(path).resolve())  # the base a LoRA checkpoint of this stage names
        return model, tok

    @property
    def lora(self) -> Any:
        """peft's LoraConfig for a sequence classifier: the adapter, and the score head trained and saved whole."""
        return self.cfg.peft_config.lora(task_type="SEQ_CLS") if self.cfg.peft_config is not None else None

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        args = self.cfg.training_arguments(RewardConfig, max_length=self.cfg.max_length)
        return RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(self.train_pairs),
                             eval_dataset=Dataset.from_list(self.eval_pairs) if self.eval_pairs else None,
                             processing_class=tokenizer, peft_config=self.lora,
                             callbacks=[*callbacks, _heldout_callback(self)])

    def outputs(self, checkpoints: list[str]) -> dict[str, str]:
        return {"model": checkpoints[-1]} if checkpoints else {}

    def run(self) -> StageResult:
        result = super().run()
        result.policy = False
        result.evaluations = list(self.accuracy)
        return result


def reward_model(cfg: RewardModelConfig, *, store: str | None = None) -> StageResult:
    """Train a reward model from ``cfg.model`` on ``cfg.data``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    return RewardModelStage(cfg, store=store).run()
