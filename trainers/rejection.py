"""Rejection-sampling fine-tuning (Xwin-LM's third step; Ni et al., 2024): keep the judge's best sample, train on it.

For every prompt the policy samples ``k`` answers (transformers ``generate``, temperature sampling, as online DPO
does); a lioneval judge or reward model scores each one (lioneval.trainers.online_dpo.rank_samples: ``rating`` grades
each alone, ``pairwise`` compares each with the prompt's first sample). A prompt keeps its best-scored answer (ties:
the earliest sample) when that score is at least ``min_score`` and beats the runner-up by at least ``min_margin``;
the kept (prompt, answer) conversations are fine-tuned on exactly as the SFT stage trains (packed rows, loss on the
assistant tokens only).

Before training, two files are written beside the checkpoints, for the recipe's next stages:
``<output_dir>/<stage>-samples.jsonl`` (per prompt: the samples, their scores, which one was kept and why not when
none was) and ``<output_dir>/<stage>-pairs.jsonl`` (best vs worst sample per prompt, ties skipped: a DPO preference
set, ``data: "@<stage>/pairs"``). The judgments grade training samples, not a checkpoint's benchmark answers: they
are kept in a run store of the stage's own, ``<output_dir>/<stage>-judgments.db``, each as soon as it is made, so a
rerun (after a crash, or to train again) samples the same answers with the same seed and asks the judge nothing it
asked before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lioneval.errors import DataError
from lioneval.judges.judge import make_judge
from lioneval.store import RunStore
from lioneval.trainers.config import JudgedSampling, StageConfig, _help
from lioneval.trainers.models import resolve_judge
from lioneval.trainers.online_dpo import (
    best_worst_pairs,
    check_ranking_judge,
    judge_benchmark,
    rank_samples,
    read_prompts,
    sample_answers,
)
from lioneval.trainers.sft import SFTStage
from lioneval.trainers.stage import StageResult

log = logging.getLogger("lioneval.train")

__all__ = ["RejectionSamplingConfig", "RejectionSamplingStage", "rejection_sampling", "select_best"]


@dataclass
class RejectionSamplingConfig(JudgedSampling, StageConfig):
    """Settings of the rejection-sampling stage (also the keys of a `rejection-sampling` stage in a recipe)."""

    min_score: float | None = _help(None, "Keep a prompt's best answer only when its score reaches this (None: any "
                                          "score).")
    min_margin: float = _help(0.0, "Keep a prompt's best answer only when it beats the runner-up by at least this.",
                              minimum=0)
    max_length: int = _help(512, "Tokens per packed training row.", minimum=1)
    packing: bool = _help(True, "Pack the kept conversations into rows (as the SFT stage).")
    assistant_only_loss: bool = _help(True, "Train only on the answer's tokens.")
    learning_rate: float = _help(2e-5, "Peak learning rate.", minimum=0)

    KIND = "rejection-sampling"
    REQUIRED = ("prompts", "judge")
    INPUT_FILES = ("prompts",)

    def check(self, where: str) -> None:
        super().check(where)
        check_ranking_judge(self, where)


def select_best(prompts: list[list[dict[str, str]]], samples: list[list[str]], scores: list[list[float | None]],
                *, min_score: float | None = None, min_margin: float = 0.0) -> list[dict[str, Any]]:
    """Per prompt: its samples and scores, the index of the kept answer (``best``, None when none is kept) and,
    when none is, why."""
    rows = []
    for chat, outs, sc in zip(prompts, samples, scores, strict=True):
        scored = sorted(((s, j) for j, s in enumerate(sc) if s is not None and outs[j]), key=lambda t: (-t[0], t[1]))
        row: dict[str, Any] = {"prompt": chat, "samples": outs, "scores": sc, "best": None, "skipped": None}
        if not scored:
            row["skipped"] = "no sample was scored"
        elif min_score is not None and scored[0][0] < min_score:
            row["skipped"] = f"best score {scored[0][0]:.4g} is below min_score {min_score:.4g}"
        elif len(scored) > 1 and scored[0][0] - scored[1][0] < min_margin:
            row["skipped"] = f"best beats the runner-up by {scored[0][0] - scored[1][0]:.4g} < min_margin"
        else:
            row["best"] = scored[0][1]
        rows.append(row)
    return rows


class RejectionSamplingStage(SFTStage):
    """Rejection sampling on the SFT stage: the conversations to learn are the judge's best samples."""

    config_cls = RejectionSamplingConfig
    needs = "transformers"
    what = "rejection-sampling fine-tuning"

    def prepare(self) -> None:
        cfg = self.cfg
        self.prompts = read_prompts(cfg.prompts)
        self.benchmark = judge_benchmark(cfg.ranking, cfg.judge_benchmark)
        overrides: dict[str, Any] = {"prefill": True} if cfg.judge_prefill else {}
        self.judge = make_judge(resolve_judge(cfg.judge, cfg.output_dir), None, **overrides)

    def setup(self, model: Any, tokenizer: Any) -> None:
        cfg = self.cfg
        samples = sample_answers(model, tokenizer, self.prompts, cfg.k, temperature=cfg.temperature,
                                 top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                 batch_size=cfg.generation_batch_size)
        with RunStore(cfg.judgments_store) as store:
            scores = rank_samples(self.judge, self.prompts, samples, cfg.ranking, round_tag="rs",
                                  benchmark=self.benchmark, store=store)
        self.scored = select_best(self.prompts, samples, scores, min_score=cfg.min_score, min_margin=cfg.min_margin)
        self.pairs = best_worst_pairs(self.prompts, samples, scores)
        self.conversations = [r["prompt"] + [{"role": "assistant", "content": r["samples"][r["best"]]}]
                              for r in self.scored if r["best"] is not None]
        self.eval_conversations: list[list[dict[str, str]]] = []  # the SFT stage's held-out set: none here
        log.info("rejection-sampling: %d of %d prompts keep their best answer", len(self.conversations),
                 len(self.scored))
        if not self.conversations:
            raise DataError("rejection sampling kept no answer (no sample scored, or none passed min_score / "
                            "min_margin)", fix="raise k, lower min_score or min_margin, or check the judge")
        super().setup(model, tokenizer)

    @property
    def files(self) -> dict[str, Path]:
        out = Path(self.cfg.output_dir)
        return {"samples": out / f"{self.cfg.stage}-samples.jsonl", "pairs": out / f"{self.cfg.stage}-pairs.jsonl",
                "judgments": self.cfg.judgments_store}

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        files = self.files
        files["samples"].parent.mkdir(parents=True, exist_ok=True)
        files["samples"].write_text("".join(json.dumps(r) + "\n" for r in self.scored), encoding="utf-8")
        files["pairs"].write_text("".join(json.dumps(p) + "\n" for p in self.pairs), encoding="utf-8")
        return super().trainer(round, model, tokenizer, callbacks)

    def outputs(self, checkpoints: list[str]) -> dict[str, str]:
        return {k: str(v) for k, v in self.files.items() if k != "pairs" or self.pairs}


def rejection_sampling(cfg: RejectionSamplingConfig, *, store: str | None = None) -> StageResult:
    """Rejection-sampling fine-tuning from ``cfg.model``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    return RejectionSamplingStage(cfg, store=store).run()
