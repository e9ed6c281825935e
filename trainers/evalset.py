"""The eval set of a training stage, for ``Trainer.evaluate`` and the best-model settings that run on it.

transformers evaluates only with an ``eval_dataset``: ``eval_strategy``, ``metric_for_best_model`` and
``load_best_model_at_end`` (and LionEvalCallback's ``on_evaluate``, which adds the lioneval scores to the metrics
they read) end in a ``ValueError`` without one. A stage gets its eval set from ``eval_data`` (a file in the stage's
own data format), or holds out a seeded share of its training examples (``eval_split``, by default 10% and at least
one example, whenever the stage evaluates). A stage evaluates when its ``eval`` block has ``on_evaluate: true``,
when ``eval_split`` or ``eval_data`` is set, or when ``training_args`` ask for evaluation or a best model; it then
evaluates at every save (``eval_strategy: steps``, ``eval_steps: save_steps``, the pairing transformers requires for
``load_best_model_at_end``) unless ``training_args`` say otherwise.

This module stays light: no torch at import.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from lioneval.errors import ConfigError, DataError

log = logging.getLogger("lioneval.train")

__all__ = ["DEFAULT_SPLIT", "check_best_model", "evaluates", "evaluation_arguments", "split_eval"]

T = TypeVar("T")
DEFAULT_SPLIT = 0.1
_ASKS = ("load_best_model_at_end", "metric_for_best_model")


def _asked(cfg: Any) -> bool:
    extra = cfg.training_args
    strategy = str(extra.get("eval_strategy", "no"))
    return strategy not in ("no", "IntervalStrategy.NO") or any(extra.get(k) for k in _ASKS)


def evaluates(cfg: Any) -> bool:
    """Whether the stage runs ``Trainer.evaluate`` (so its trainer needs an eval set)."""
    on_evaluate = cfg.eval is not None and cfg.eval.on_evaluate
    return bool(on_evaluate or cfg.eval_data or cfg.eval_split is not None or _asked(cfg))


def evaluation_arguments(cfg: Any) -> dict[str, Any]:
    """Training arguments that make an evaluating stage evaluate at every save (``training_args`` override them)."""
    if not evaluates(cfg):
        return {}
    kw: dict[str, Any] = {"eval_strategy": "steps", "eval_steps": cfg.save_steps,
                          "per_device_eval_batch_size": cfg.per_device_train_batch_size}
    best = str(cfg.training_args.get("metric_for_best_model") or "")
    if "lioneval" in best and cfg.eval is not None and "greater_is_better" not in cfg.training_args:
        kw["greater_is_better"] = bool(cfg.eval.greater_is_better)
    return kw


def check_best_model(cfg: Any, where: str) -> None:
    """Refuse a lioneval ``metric_for_best_model`` that no evaluation would produce."""
    best = str(cfg.training_args.get("metric_for_best_model") or "")
    if "lioneval" in best and (cfg.eval is None or not cfg.eval.on_evaluate):
        raise ConfigError(f"{where}.training_args.metric_for_best_model {best!r} is a lioneval score, but the stage "
                          f"does not add lioneval scores to its evaluations",
                          fix="set on_evaluate: true in the stage's eval block")
    split = cfg.eval_split
    if split is not None and not (0 < split < 1 or (split >= 1 and float(split).is_integer())):
        raise ConfigError(f"{where}.eval_split must be a share between 0 and 1 or a whole number of examples, not "
                          f"{split!r}", fix="e.g. eval_split: 0.1 (or eval_split: 8)")
    if cfg.eval_data and split is not None:
        raise ConfigError(f"{where} sets both eval_data and eval_split", fix="keep one of them")


def split_eval(examples: Sequence[T], cfg: Any, read: Callable[[str], list[T]]) -> tuple[list[T], list[T] | None]:
    """The training examples and the eval set: ``read(cfg.eval_data)``, or a held-out share of ``examples`` drawn
    with ``cfg.seed`` (None when the stage does not evaluate)."""
    examples = list(examples)
    if cfg.eval_data:
        return examples, read(cfg.eval_data)
    if not evaluates(cfg):
        return examples, None
    split = DEFAULT_SPLIT if cfg.eval_split is None else cfg.eval_split
    n = int(split) if split >= 1 else max(1, round(split * len(examples)))
    if n >= len(examples):
        raise DataError(f"the {cfg.stage} stage has {len(examples)} example(s): too few to hold out {n} for its eval "
                        f"set and still train", fix="give it eval_data, a smaller eval_split, or more data")
    held = set(random.Random(cfg.seed).sample(range(len(examples)), n))
    log.info("%s: %d of %d examples held out as the eval set (eval_split %g, seed %d)", cfg.stage, n, len(examples),
             split, cfg.seed)
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]
