"""One skeleton for every training stage (SFT, offline DPO, online DPO).

:meth:`Stage.run` is the flow they share, in an order that keeps earlier work safe: check the config's inputs, read
the data (:meth:`Stage.prepare`), load the policy and its tokenizer, prepare what needs the tokenizer
(:meth:`Stage.setup`), build the evaluation callback, and only then remove the stage's checkpoints of an earlier
run. Then, per round, a trainer (:meth:`Stage.trainer`) with the checkpoint linker and the LionEvalCallback
attached trains; the callback stays the same across rounds so early stopping sees the whole stage. The result
lists the stage's ``<stage>-step<N>`` checkpoints and why it ended.

A stage supplies only what differs: its config class, what it reads, its trainer, and (online DPO) several rounds.
This module stays light: torch, transformers and TRL are imported when a stage runs.
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.errors import ConfigError, LionEvalError
from lioneval.registry import require
from lioneval.trainers.config import StageConfig, config_from_dict
from lioneval.trainers.models import load_policy, merged, resolve_model

__all__ = ["Stage", "StageResult"]


@dataclass
class StageResult:
    """What a stage produced: its checkpoints (``<stage>-step<N>`` paths, in order) and why it ended."""

    stage: str
    checkpoints: list[str]
    steps: int
    stopped_early: bool = False
    stop_reason: str | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    # what later stages of a recipe may name as @<stage>/<key>: model, samples, pairs ...
    outputs: dict[str, str] = field(default_factory=dict)
    policy: bool = True  # False: the stage trains no policy (a reward model, a data set); the next stage ignores it

    @property
    def last(self) -> str:
        if not self.checkpoints:
            raise LionEvalError(f"stage {self.stage} saved no checkpoint", fix="give it max_steps > 0 and data")
        return self.checkpoints[-1]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _final_checkpoint(trainer: Any, saved: list[str]) -> str | None:
    """The checkpoint holding the weights a trainer ended with: the best one when it loaded that at the end."""
    best = getattr(trainer.state, "best_model_checkpoint", None)
    if best and getattr(trainer.args, "load_best_model_at_end", False):
        return best
    return saved[-1] if saved else None


class Stage:
    """The shared flow of a training stage; subclasses set ``config_cls`` and implement :meth:`trainer`."""

    config_cls: type[StageConfig] = StageConfig
    needs = "trl"  # module the stage cannot run without (from the `train` extra)
    what = "training"  # for the missing-extra message

    def __init__(self, cfg: StageConfig | dict[str, Any], *, store: str | None = None):
        self.cfg = cfg if isinstance(cfg, self.config_cls) else config_from_dict(self.config_cls, dict(cfg))
        self.store = store

    # -- what a stage supplies ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read and check the stage's inputs; runs before any model is loaded or file is written."""

    def setup(self, model: Any, tokenizer: Any) -> None:
        """Prepare what needs the model or tokenizer (tokenized data); still before any file is written."""

    @property
    def rounds(self) -> int:
        return 1

    @property
    def lora(self) -> Any:
        """peft's LoraConfig when the stage trains an adapter (``peft_config``), else None."""
        return self.cfg.peft_config.lora() if self.cfg.peft_config is not None else None

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        """The transformers/TRL trainer of one round with ``callbacks``; None when the round has nothing to train."""
        raise NotImplementedError

    def nothing_saved(self) -> None:
        """Called when the stage ended without a checkpoint (a stage may refuse that)."""

    def load(self) -> tuple[Any, Any]:
        """The model the stage trains and its tokenizer (a policy; a reward-model stage loads a classifier)."""
        cfg = self.cfg
        return load_policy(resolve_model(cfg.model, cfg.output_dir), attn_implementation=cfg.attn_implementation)

    def outputs(self, checkpoints: list[str]) -> dict[str, str]:
        """Files of this run that later stages may use (besides the checkpoints)."""
        return {}

    # -- the flow -----------------------------------------------------------------------------------------------
    def run(self) -> StageResult:
        require(self.needs, "train", what=self.what)
        from lioneval.trainers.callback import StageHooks  # transformers: only once the extra is known to be there

        cfg = self.cfg
        if cfg.peft_config is not None:
            require("peft", "train", what="LoRA training (peft_config)")
        cfg.check_inputs()
        self.prepare()
        model, tok = self.load()
        self.setup(model, tok)
        evaluation = StageHooks.evaluation_for(cfg, self.store)
        cfg.fresh_stage_dir()
        saved: list[str] = []
        steps = 0
        try:
            for r in range(self.rounds):
                hooks = StageHooks(cfg, store=self.store, step_offset=steps, evaluation=evaluation)
                trainer = self.trainer(r, model, tok, hooks.callbacks)
                if trainer is None:
                    continue
                if cfg.peft_config is not None and not hasattr(trainer.model, "peft_config"):
                    raise ConfigError(f"the {cfg.stage} stage ({cfg.KIND}) does not train a LoRA adapter, but its "
                                      f"config sets peft_config", fix="remove peft_config from this stage")
                hooks.attach(trainer)
                trainer.train()
                steps += trainer.state.global_step
                saved += [c for c in hooks.linker.saved if c not in saved]
                # the next round starts from the weights this one trained; an adapter is merged into them, and the
                # checkpoint holding them becomes the base the next round's adapter names
                model = merged(trainer.model, _final_checkpoint(trainer, saved))
                del trainer  # and its optimizer state: the next round builds its own
                gc.collect()
                if hooks.stopped:
                    break
        finally:
            if evaluation is not None:
                evaluation.close()
        if not saved:
            self.nothing_saved()
        checkpoints = [c for c in saved if Path(c).exists()]
        return StageResult(
            stage=cfg.stage, checkpoints=checkpoints, steps=steps, outputs=self.outputs(checkpoints),
            stopped_early=evaluation is not None and evaluation.stop_reason is not None,
            stop_reason=evaluation.stop_reason if evaluation is not None else None,
            evaluations=[e.to_json() for e in evaluation.evaluations] if evaluation is not None else [],
        )
