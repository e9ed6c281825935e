"""Training stages (SFT, DPO, online DPO, reward model, rejection sampling, pairs) and the evaluation callback.

Needs the ``train`` extra: ``pip install 'lioneval[train]'``. Names below are imported on first use, so importing
this package loads no torch. The stage functions share their module's name: ``from lioneval.trainers.sft import
sft``.

* ``sft.SFTConfig`` / ``sft.sft``, ``dpo.DPOConfig`` / ``dpo.dpo``, ``online_dpo.OnlineDPOConfig`` /
  ``online_dpo.online_dpo``: one config and one function per stage, checkpoints ``<output_dir>/<stage>-step<N>``.
* ``reward_model.RewardModelConfig`` / ``reward_model.reward_model``, ``rejection.RejectionSamplingConfig`` /
  ``rejection.rejection_sampling``, ``pairs.PairsConfig`` / ``pairs.pairs``: the Xwin-LM reward model and rejection
  sampling, and preference pairs from models of different strength ordered as a curriculum.
* ``drift``: KL from the stage's start, answer lengths and near-copies of each evaluated checkpoint
  (``config.DriftConfig``, the eval block's ``drift:``).
* ``stage.Stage``: the flow the stages share (inputs, policy, evaluation callback, trainer per round, result).
* ``config.EvalConfig`` / ``config.StageConfig``: the typed configuration tree, checked when it is built.
* ``callback.LionEvalCallback``: evaluation, logging and CI-aware early stopping in any transformers/TRL trainer.
* ``promotion.promote`` / ``PromotionPolicy``: which checkpoint of a stage goes on (``lioneval promote``).
* ``recipe.train``: a YAML recipe's stages in order (``lioneval train --config``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SFTConfig": "sft",
    "DPOConfig": "dpo",
    "OnlineDPOConfig": "online_dpo",
    "RewardModelConfig": "reward_model",
    "RejectionSamplingConfig": "rejection",
    "PairsConfig": "pairs",
    "DriftConfig": "config",
    "EvalConfig": "config",
    "LionEvalCallback": "callback",
    "PromotionDecision": "promotion",
    "PromotionPolicy": "promotion",
    "promote": "promotion",
    "Recipe": "recipe",
    "Stage": "stage",
    "StageConfig": "config",
    "StageResult": "stage",
    "load_recipe": "recipe",
    "train": "recipe",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lioneval.trainers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lioneval.trainers.{module}"), name)
    globals()[name] = value
    return value
