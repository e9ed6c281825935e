"""Online DPO as in LIONs (Yu et al., 2024, "LIONs: An Empirically Optimized Approach to Align Language Models").

Each round: the current policy samples ``k`` answers per prompt (transformers ``generate``, temperature sampling);
a lioneval judge ranks them; the best and the worst answer of a prompt become a preference pair (prompts whose
best and worst score tie, or that have fewer than two scored answers, are skipped); DPO trains on the round's
pairs, with the reference log-probabilities of the policy as it was at the start of the round precomputed once.
The next round samples from the updated policy.

Ranking (``ranking``):

* ``rating``: the judge grades each answer alone (MT-Bench single-answer protocol, first turn); a reward model
  (``reward-model:PATH``) gives its reward. Any judge spec works (``make_judge``).
* ``pairwise``: the judge compares each answer with the prompt's first sample in both orders (Arena-Hard protocol);
  an answer's score is its win share against that anchor, the anchor's is 0.5.

The judgments are not written to the run store: they grade training samples, not a checkpoint's benchmark answers.
Checkpoints are ``<output_dir>/<stage>-step<N>`` with N counted across rounds (each round's trainer keeps its own
``<output_dir>/<stage>/round-<r>/checkpoint-<n>``).
"""

from __future__ import annotations

import copy
import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lioneval.errors import DataError, LionEvalError
from lioneval.trainers.dpo import PreferenceConfig
from lioneval.trainers.recipe import StageResult, _help

log = logging.getLogger("lioneval.train")

__all__ = ["OnlineDPOConfig", "best_worst_pairs", "online_dpo", "rank_samples", "read_prompts", "sample_answers"]


@dataclass
class OnlineDPOConfig(PreferenceConfig):
    """Settings of the online DPO stage (also the keys of an `online-dpo` stage in a recipe)."""

    prompts: str = _help("", "Prompts to sample from: JSONL with `prompt` (a string or chat messages) per line, or a "
                             "text file with one prompt per line.")
    judge: str = _help("", "Judge spec that ranks the samples (see `lioneval list judges`), e.g. "
                           "openai-compatible:M@URL or reward-model:PATH.")
    ranking: str = _help("rating", "rating: score each answer alone; pairwise: compare each with the first sample.")
    judge_prefill: bool = _help(False, "Start the judge's reply with the verdict format (small local judges).")
    rounds: int = _help(2, "Sample-judge-train rounds.")
    k: int = _help(4, "Answers sampled per prompt.")
    prompts_per_round: int | None = _help(None, "Prompts used per round, taken in turn from the file (None: all).")
    temperature: float = _help(0.8, "Sampling temperature.")
    top_p: float = _help(1.0, "Nucleus sampling threshold.")
    max_new_tokens: int = _help(128, "Longest sampled answer.")
    generation_batch_size: int = _help(8, "Chats per generate() call.")
    steps_per_round: int = _help(-1, "Optimizer steps per round (-1: num_train_epochs over the round's pairs).")

    KIND = "online-dpo"


def read_prompts(path: str | Path) -> list[list[dict[str, str]]]:
    """Prompts as chats (lists of messages ending with a user message)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no prompts at {path}", fix="set `prompts:` to a JSONL or text file of prompts")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                p = json.loads(line)["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{n} has no `prompt` ({e})", fix="write {\"prompt\": ...} per line") from e
        else:
            p = line.strip()
        chat = [{"role": "user", "content": p}] if isinstance(p, str) else p
        if not chat or chat[-1].get("role") != "user":
            raise DataError(f"{path}:{n}: a prompt must end with a user message", fix="drop the trailing reply")
        out.append(chat)
    if not out:
        raise DataError(f"{path} holds no prompt", fix="add prompts, one per line")
    return out


def sample_answers(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], k: int, *, temperature: float,
                   top_p: float, max_new_tokens: int, seed: int, batch_size: int = 8) -> list[list[str]]:
    """``k`` sampled answers per prompt from the policy as it is now."""
    from lioneval.backends.base import Sampling
    from lioneval.backends.transformers_backend import TransformersBackend

    # A copy of the tokenizer: generation pads on the left, training keeps the tokenizer's own side.
    backend = TransformersBackend("policy", model=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size)
    chats = [p for p in prompts for _ in range(k)]
    done = backend.generate(chats, Sampling(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                            seed=seed))
    texts = [(c.text or "").strip() if c.ok else "" for c in done]
    model.train()
    return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]


def rank_samples(judge: Any, prompts: list[list[dict[str, str]]], samples: list[list[str]], ranking: str,
                 round_tag: str = "r0") -> list[list[float | None]]:
    """A score per sample (higher is better; None where the judge gave no verdict or the answer is empty)."""
    from lioneval.judges.judge import judge_answers
    from lioneval.types import Answer, Question

    questions, answers, anchors = [], [], []
    for i, (chat, outs) in enumerate(zip(prompts, samples, strict=True)):
        qid = f"{round_tag}-{i}"
        questions.append(Question(id=qid, benchmark="mt-bench" if ranking == "rating" else "arena-hard",
                                  turns=[chat[-1]["content"]]))
        for j, text in enumerate(outs):
            if not text:
                continue
            a = Answer(question_id=qid, benchmark=questions[-1].benchmark, model=f"sample-{j}", turns=[text])
            (anchors if ranking == "pairwise" and j == 0 else answers).append(a)
    if ranking == "rating":
        run = judge_answers(judge, "mt-bench", questions, answers)
    elif ranking == "pairwise":
        run = judge_answers(judge, "arena-hard", questions, answers, anchors)
    else:
        raise LionEvalError(f"unknown ranking {ranking!r}", fix="use rating or pairwise")
    got = {(j.question_id, j.model): j.value for j in run.judgments}
    scores: list[list[float | None]] = []
    for i, outs in enumerate(samples):
        qid = f"{round_tag}-{i}"
        row = []
        for j, text in enumerate(outs):
            if ranking == "pairwise" and j == 0:
                row.append(0.5 if text else None)
            else:
                row.append(got.get((qid, f"sample-{j}")) if text else None)
        scores.append(row)
    return scores


def best_worst_pairs(prompts: list[list[dict[str, str]]], samples: list[list[str]],
                     scores: list[list[float | None]]) -> list[dict[str, Any]]:
    """One DPO pair per prompt: its best-scored answer as chosen, its worst as rejected; ties are skipped."""
    pairs = []
    for chat, outs, sc in zip(prompts, samples, scores, strict=True):
        scored = [(s, j) for j, s in enumerate(sc) if s is not None]
        if len(scored) < 2:
            continue
        best = max(scored, key=lambda t: (t[0], -t[1]))
        worst = min(scored, key=lambda t: (t[0], t[1]))
        if best[0] <= worst[0] or outs[best[1]] == outs[worst[1]]:
            continue
        pairs.append({"prompt": chat, "chosen": [{"role": "assistant", "content": outs[best[1]]}],
                      "rejected": [{"role": "assistant", "content": outs[worst[1]]}],
                      "margin": best[0] - worst[0]})
    return pairs


def online_dpo(cfg: OnlineDPOConfig, *, store: str | None = None) -> StageResult:
    """LIONs online DPO from ``cfg.model``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    from lioneval.judges.judge import make_judge
    from lioneval.registry import require

    require("trl", "train", what="online DPO training")
    from lioneval.trainers.callback import LionEvalCallback, StageHooks
    from lioneval.trainers.dpo import dpo_trainer
    from lioneval.trainers.recipe import load_policy, resolve_judge, resolve_model

    if not cfg.judge:
        raise LionEvalError("the online DPO stage has no judge",
                            fix="set `judge:` to a judge spec or reward-model:PATH")
    if cfg.rounds < 1 or cfg.k < 2:
        raise LionEvalError("online DPO needs rounds >= 1 and k >= 2", fix="set rounds and k (e.g. 2 and 4)")
    prompts = read_prompts(cfg.prompts) if cfg.prompts else []
    if not prompts:
        raise DataError("the online DPO stage has no prompts", fix="set `prompts:` to a prompts file")
    overrides: dict[str, Any] = {"prefill": True} if cfg.judge_prefill else {}
    judge = make_judge(resolve_judge(cfg.judge, cfg.output_dir), None, **overrides)
    model, tok = load_policy(resolve_model(cfg.model, cfg.output_dir), attn_implementation=cfg.attn_implementation)
    cfg.fresh_stage_dir()
    per_round = cfg.prompts_per_round or len(prompts)
    evaluation: LionEvalCallback | None = None
    checkpoints: list[str] = []
    offset = 0
    try:
        for r in range(cfg.rounds):
            batch = [prompts[(r * per_round + i) % len(prompts)] for i in range(per_round)]
            samples = sample_answers(model, tok, batch, cfg.k, temperature=cfg.temperature, top_p=cfg.top_p,
                                     max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + r,
                                     batch_size=cfg.generation_batch_size)
            scores = rank_samples(judge, batch, samples, cfg.ranking, round_tag=f"r{r}")
            pairs = best_worst_pairs(batch, samples, scores)
            log.info("online-dpo round %d: %d prompts, %d pairs (%d skipped: ties or unscored)", r + 1, len(batch),
                     len(pairs), len(batch) - len(pairs))
            if not pairs:
                continue
            hooks = StageHooks(cfg, store=store, step_offset=offset, evaluation=evaluation)
            evaluation = hooks.eval
            args = cfg.trl_args(output_dir=str(cfg.stage_dir / f"round-{r + 1}"), max_steps=cfg.steps_per_round)
            trainer = dpo_trainer(model, tok, [{k: v for k, v in p.items() if k != "margin"} for p in pairs], args,
                                  hooks.callbacks)
            hooks.attach(trainer)
            trainer.train()
            offset += trainer.state.global_step
            checkpoints += [c for c in hooks.linker.checkpoints if c not in checkpoints]
            model = trainer.model
            del trainer  # its optimizer state; the next round builds its own
            gc.collect()
            if hooks.stopped:
                break
    finally:
        if evaluation is not None:
            evaluation.close()
    if not checkpoints:
        raise LionEvalError("online DPO produced no preference pair in any round (every prompt's samples tied)",
                            fix="raise k or temperature, or use a judge that separates answers (ranking: rating)")
    return StageResult(
        stage=cfg.stage, checkpoints=[c for c in checkpoints if Path(c).exists()], steps=offset,
        stopped_early=evaluation is not None and evaluation.stop_reason is not None,
        stop_reason=evaluation.stop_reason if evaluation is not None else None,
        evaluations=[e.to_json() for e in evaluation.evaluations] if evaluation is not None else [],
    )
