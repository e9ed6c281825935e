"""Preference pairs built from models of different strength, ordered as a curriculum (Xu et al., 2024, "Automatic
Pair Construction for Contrastive Post-training").

Each of ``models`` (checkpoints or model references, ``@<stage>`` in a recipe) answers every prompt once. Their
strengths are given (``strengths``, higher is stronger; by default the order of ``models``, strongest first) or
measured (``strength_metric``: the metric of each model's latest complete report in the run store, e.g. after
``lioneval run --ckpt PATH``). For every prompt and every two models of different strength the stronger one's
answer is chosen and the weaker one's rejected; the pair's quality gap is their strength difference. With a
``judge``, a pair is kept only when the judge agrees (it scores the chosen answer strictly higher; ``rating``
grades each alone, ``pairwise`` compares each with the strongest model's answer). Its judgments are kept in the
stage's own run store, ``<output_dir>/<stage>-judgments.db``, as they are made: answers are sampled with the seed, so
a rerun asks the judge nothing it asked before.

``order`` arranges the pairs as a curriculum: ``easy-to-hard`` (largest gap first, the paper's), ``hard-to-easy``,
``shuffled`` (seeded) or ``none`` (prompt by prompt). The set is written to ``<output_dir>/<stage>-pairs.jsonl``
(prompt, chosen, rejected, gap, models) for the ``dpo`` stage, which trains on it in that order with
``shuffle: false`` (``data: "@<stage>"`` in a recipe). The stage trains nothing and leaves the recipe's policy as
it was.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lioneval.checkpoint import identify
from lioneval.errors import ConfigError, DataError
from lioneval.judges.judge import make_judge
from lioneval.registry import BENCHMARKS, require
from lioneval.store import DEFAULT_STORE, RunStore
from lioneval.trainers.config import RANKINGS, StageConfig, _help, metric_bench
from lioneval.trainers.models import load_policy, resolve_judge, resolve_model
from lioneval.trainers.online_dpo import (
    check_ranking_judge,
    judge_benchmark,
    rank_samples,
    read_prompts,
    sample_answers,
)
from lioneval.trainers.stage import Stage, StageResult

log = logging.getLogger("lioneval.train")

__all__ = ["ORDERS", "PairsConfig", "PairsStage", "build_pairs", "curriculum", "measured_strengths", "pairs"]

ORDERS = ("easy-to-hard", "hard-to-easy", "shuffled", "none")


@dataclass
class PairsConfig(StageConfig):
    """Settings of the pairs stage (also the keys of a `pairs` stage in a recipe)."""

    prompts: str = _help("", "Prompts every model answers: JSONL with `prompt` (a string or chat messages) per line, "
                             "or a text file with one prompt per line.")
    models: list[str] = _help([], "Two or more checkpoints or model references (@<stage>, @<stage>/first in a "
                                  "recipe), strongest first unless `strengths` or `strength_metric` says otherwise.")
    strengths: list[float] | None = _help(None, "One strength per model (higher: stronger); the quality gap of a "
                                                "pair is the difference. Default: by the order of `models`.")
    strength_metric: str | None = _help(None, "BENCH/METRIC whose value in each model's latest complete report in "
                                              "the run store is its strength (evaluate them first).")
    judge: str | None = _help(None, "Judge spec that must confirm each pair (score the chosen answer higher); "
                                    "None: the strengths alone decide.")
    ranking: str = _help("rating", "How the judge scores: rating (each answer alone) or pairwise (against the "
                                   "strongest model's answer).", choices=RANKINGS)
    judge_benchmark: str | None = _help(None, "Benchmark whose judging protocol the judge uses (default: the first "
                                              "of the ranking's kind).")
    order: str = _help("easy-to-hard", "Curriculum: easy-to-hard (largest gap first), hard-to-easy, shuffled, none.",
                       choices=ORDERS)
    temperature: float = _help(0.0, "Sampling temperature of the answers (0: greedy).", minimum=0)
    max_new_tokens: int = _help(128, "Longest answer.", minimum=1)
    generation_batch_size: int = _help(8, "Chats per generate() call.", minimum=1)

    KIND = "pairs"
    REQUIRED = ("prompts", "models")
    INPUT_FILES = ("prompts",)

    def check(self, where: str) -> None:
        super().check(where)
        self.eval = None  # a data set answers no benchmark
        if self.models and len(self.models) < 2:
            raise ConfigError(f"{where}.models names {len(self.models)} model; pairs need two or more",
                              fix="list at least two checkpoints of different strength")
        if self.strengths is not None and len(self.strengths) != len(self.models):
            raise ConfigError(f"{where}.strengths has {len(self.strengths)} values for {len(self.models)} models",
                              fix="give one strength per model")
        if self.strengths is not None and self.strength_metric:
            raise ConfigError(f"{where} sets both strengths and strength_metric",
                              fix="give the strengths, or let strength_metric measure them, not both")
        if self.strength_metric:
            metric_bench(self.strength_metric, f"{where}.strength_metric")
        check_ranking_judge(self, where)


def measured_strengths(store: RunStore, models: list[str], metric: str) -> list[float]:
    """Each model's ``metric`` in its latest complete report (negated where lower is better)."""
    bench, _, name = metric.partition("/")
    sign = 1.0 if BENCHMARKS.get(bench).higher_is_better else -1.0
    out = []
    for path in models:
        model_id = identify(path).model_id
        found = [r for r in store.reports(model=model_id)
                 if r.complete and r.benchmark.split("@")[0] == bench and name in r.metrics]
        if not found:
            raise DataError(f"no complete {bench} report of {path} (model id {model_id}) holds {name}",
                            fix=f"evaluate it first: lioneval run --ckpt {path} --bench {bench}")
        out.append(sign * found[-1].metrics[name].value)
    return out


def build_pairs(prompts: list[list[dict[str, str]]], answers: list[list[str]], strengths: list[float],
                scores: list[list[float | None]] | None = None) -> list[dict[str, Any]]:
    """Pairs per prompt from ``answers[prompt][model]``: stronger model's answer chosen, gap = strength difference;
    with judge ``scores`` (same shape) only pairs the judge agrees with. Empty or identical answers make no pair."""
    out = []
    order = sorted(range(len(strengths)), key=lambda m: (-strengths[m], m))
    for p, (chat, outs) in enumerate(zip(prompts, answers, strict=True)):
        for a_i, a in enumerate(order):
            for b in order[a_i + 1 :]:
                gap = strengths[a] - strengths[b]
                if gap <= 0 or not outs[a] or not outs[b] or outs[a] == outs[b]:
                    continue
                row: dict[str, Any] = {"prompt": chat, "chosen": [{"role": "assistant", "content": outs[a]}],
                                       "rejected": [{"role": "assistant", "content": outs[b]}], "gap": gap,
                                       "models": [a, b], "prompt_index": p}
                if scores is not None:
                    sa, sb = scores[p][a], scores[p][b]
                    if sa is None or sb is None or sa <= sb:
                        continue
                    row["judge_margin"] = sa - sb
                out.append(row)
    return out


def curriculum(pairs: list[dict[str, Any]], order: str, seed: int = 0) -> list[dict[str, Any]]:
    """The pairs in curriculum ``order`` (ties keep their order: stable sorts)."""
    if order == "easy-to-hard":
        return sorted(pairs, key=lambda p: -p["gap"])
    if order == "hard-to-easy":
        return sorted(pairs, key=lambda p: p["gap"])
    if order == "shuffled":
        return [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
    if order == "none":
        return list(pairs)
    raise ConfigError(f"unknown curriculum order {order!r}", fix=f"use one of {', '.join(ORDERS)}")


class PairsStage(Stage):
    """Builds the preference set; nothing is trained (the shared skeleton's training flow is not used)."""

    config_cls = PairsConfig
    needs = "transformers"
    what = "building preference pairs"

    @property
    def path(self) -> Path:
        return Path(self.cfg.output_dir) / f"{self.cfg.stage}-pairs.jsonl"

    def run(self) -> StageResult:
        require(self.needs, "train", what=self.what)
        cfg = self.cfg
        cfg.check_inputs()
        prompts = read_prompts(cfg.prompts)
        models = [resolve_model(m, cfg.output_dir) for m in cfg.models]
        if cfg.strength_metric:
            with RunStore(self.store or DEFAULT_STORE) as st:
                strengths = measured_strengths(st, models, cfg.strength_metric)
        else:
            strengths = list(cfg.strengths) if cfg.strengths is not None else \
                [float(len(models) - 1 - i) for i in range(len(models))]
        judge = None
        if cfg.judge:  # made before any model is loaded: a bad judge fails first
            judge = make_judge(resolve_judge(cfg.judge, cfg.output_dir), None)
        per_model = []
        for i, ref in enumerate(models):
            model, tok = load_policy(ref)
            per_model.append([s[0] for s in sample_answers(
                model, tok, prompts, 1, temperature=cfg.temperature, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                seed=cfg.seed + i, batch_size=cfg.generation_batch_size)])
            del model
            gc.collect()
        answers = [[per_model[m][p] for m in range(len(models))] for p in range(len(prompts))]
        scores = None
        if judge is not None:
            strongest = max(range(len(models)), key=lambda m: (strengths[m], -m))
            # pairwise judging compares each answer with the first one: put the strongest model's first
            perm = [strongest] + [m for m in range(len(models)) if m != strongest]
            with RunStore(cfg.judgments_store) as store:
                ranked = rank_samples(judge, prompts, [[row[m] for m in perm] for row in answers], cfg.ranking,
                                      round_tag="pairs", benchmark=judge_benchmark(cfg.ranking, cfg.judge_benchmark),
                                      store=store)
            scores = [[r[perm.index(m)] for m in range(len(models))] for r in ranked]
        built = curriculum(build_pairs(prompts, answers, strengths, scores), cfg.order, cfg.seed)
        if not built:
            raise DataError("the models' answers made no preference pair (identical or empty answers, equal "
                            "strengths, or a judge that agreed with none)",
                            fix="use models of different strength, more prompts, or another judge")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps({**p, "models": [cfg.models[m] for m in p["models"]]}) + "\n"
                                     for p in built), encoding="utf-8")
        log.info("pairs: %d pairs from %d prompts and %d models, %s", len(built), len(prompts), len(models),
                 cfg.order)
        outputs = {"pairs": str(self.path)}
        if judge is not None:
            outputs["judgments"] = str(cfg.judgments_store)
        return StageResult(stage=cfg.stage, checkpoints=[], steps=0, outputs=outputs, policy=False)


def pairs(cfg: PairsConfig, *, store: str | None = None) -> StageResult:
    """Build ``cfg``'s preference set; written to ``<output_dir>/<stage>-pairs.jsonl``."""
    return PairsStage(cfg, store=store).run()
