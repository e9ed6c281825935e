"""Training stages (SFT, offline DPO, online DPO) and the evaluation callback. Installed as ``lioneval.trainers``.

Needs the ``train`` extra: ``pip install 'lioneval[train]'``. Names below are imported on first use, so importing
this package loads no torch. The stage functions share their module's name: ``from lioneval.trainers.sft import
sft``.

* ``sft.SFTConfig`` / ``sft.sft``, ``dpo.DPOConfig`` / ``dpo.dpo``, ``online_dpo.OnlineDPOConfig`` /
  ``online_dpo.online_dpo``: one config and one function per stage, checkpoints ``<output_dir>/<stage>-step<N>``.
* ``stage.Stage``: the flow the three stages share (inputs, policy, evaluation callback, trainer per round, result).
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
