"""Online DPO as in LIONs (Yu et al., 2024, "LIONs: An Empirically Optimized Approach to Align Language Models").

Each round: the current policy samples ``k`` answers per prompt (transformers ``generate``, temperature sampling);
a lioneval judge ranks them; the best and the worst answer of a prompt become a preference pair (prompts whose
best and worst score tie, or that have fewer than two scored answers, are skipped); DPO trains on the round's
pairs, with the reference log-probabilities of the policy as it was at the start of the round precomputed once.
The next round samples from the updated policy.

Ranking (``ranking``):

* ``rating``: the judge grades each answer alone (a rating benchmark's single-answer protocol, first turn; MT-Bench
  by default); a reward model (``reward-model:PATH``) gives its reward. Any judge spec works (``make_judge``).
* ``pairwise``: the judge compares each answer with the prompt's first sample in both orders (a pairwise
  benchmark's protocol; Arena-Hard by default); an answer's score is its win share against that anchor, the
  anchor's is 0.5.

``judge_benchmark`` names the benchmark whose judging protocol (prompt template, verdict format) is used; its kind
must match ``ranking``. Unset, it is the first registered benchmark of that kind (lioneval.registry declares
MT-Bench, then Arena-Hard-Auto, then AlpacaEval).

Stop-on-cheat: the policy trains against the judge where nobody reads its answers, so each round's chosen answers go
through lioneval's answer-level cheat detectors (``lioneval.checks.chosen``). Their flagged share is logged on the
training curves (``cheat/flagged_chosen_share``); when it reaches ``cheat_stop_share`` and rises over the previous
round, the stage stops before training on them.

The ranking judgments grade training samples, not a checkpoint's benchmark answers, so they stay out of the run store
the leaderboards read: each is kept as it comes in a store of the stage's own, ``<output_dir>/<stage>-judgments.db``
(keyed by the sample's text), so a restarted stage that samples the same answers pays for no judge call twice.
Checkpoints are ``<output_dir>/<stage>-step<N>`` with N counted across rounds (each round's trainer keeps its own
``<output_dir>/<stage>/round-<r>/checkpoint-<n>``).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lioneval.checks.chosen import ChosenMonitor
from lioneval.errors import ConfigError, DataError, LionEvalError
from lioneval.judges.judge import judge_answers, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.trainers.config import RANKINGS, JudgedSampling, _help
from lioneval.trainers.dpo import PreferenceConfig, dpo_trainer, read_preferences
from lioneval.trainers.evalset import split_eval
from lioneval.trainers.models import resolve_judge
from lioneval.trainers.stage import Stage, StageResult
from lioneval.types import Answer, Question

log = logging.getLogger("lioneval.train")

__all__ = ["OnlineDPOConfig", "OnlineDPOStage", "best_worst_pairs", "judge_benchmark",
           "check_ranking_judge", "online_dpo", "rank_samples", "read_prompts", "sample_answers"]


@dataclass
class OnlineDPOConfig(JudgedSampling, PreferenceConfig):
    """Settings of the online DPO stage (also the keys of an `online-dpo` stage in a recipe)."""

    rounds: int = _help(2, "Sample-judge-train rounds.", minimum=1)
    prompts_per_round: int | None = _help(None, "Prompts used per round, taken in turn from the file (None: all).",
                                          minimum=1)
    steps_per_round: int = _help(-1, "Optimizer steps per round (-1: num_train_epochs over the round's pairs).",
                                 minimum=1, special=(-1,))
    cheat_stop_share: float = _help(0.2, "Stop-on-cheat: lioneval's answer-level cheat detectors run on each round's "
                                         "chosen answers; when the share flagged reaches this and rises over the "
                                         "previous round, the stage stops before training on them (1.1: never).",
                                    minimum=0)

    KIND = "online-dpo"
    REQUIRED = ("prompts", "judge")
    INPUT_FILES = ("prompts",)

    def check(self, where: str) -> None:
        super().check(where)
        check_ranking_judge(self, where)


def check_ranking_judge(cfg: Any, where: str) -> None:
    """The checks every stage that ranks samples with a judge makes of its ``ranking``, ``judge_benchmark`` and
    ``judge`` settings."""
    judge_benchmark(cfg.ranking, cfg.judge_benchmark, where=f"{where}.judge_benchmark")
    if cfg.judge:
        try:
            parse_spec(cfg.judge)
        except LionEvalError as e:
            raise ConfigError(f"{where}.judge: {e.message}", fix=e.fix) from None


def judge_benchmark(ranking: str, name: str | None = None, *, where: str = "judge_benchmark") -> str:
    """The benchmark whose judging protocol ranks samples: ``name``, or the first registered benchmark whose kind
    is ``ranking``; a named one must be of that kind."""
    if ranking not in RANKINGS:
        raise ConfigError(f"unknown ranking {ranking!r}", fix=f"use {' or '.join(RANKINGS)}")
    if name is None:
        name = next((n for n in BENCHMARKS.entries if _kind(n) == ranking), None)
        if name is None:
            raise ConfigError(f"no registered benchmark judges {ranking}", fix="set judge_benchmark")
        return name
    try:
        kind = BENCHMARKS.get(name).kind
    except LionEvalError as e:
        raise ConfigError(f"{where}: {e.message}", fix=e.fix) from None
    if kind != ranking:
        raise ConfigError(f"{where} {name!r} judges {kind}, but ranking is {ranking}",
                          fix=f"set ranking: {kind}, or a {ranking} benchmark as judge_benchmark")
    return name


def _kind(name: str) -> str | None:
    try:
        return BENCHMARKS.get(name).kind
    except LionEvalError:  # a plug-in whose optional packages are missing judges nothing here
        return None


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
                 round_tag: str = "r0", *, benchmark: str | None = None,
                 store: RunStore | None = None) -> list[list[float | None]]:
    """A score per sample (higher is better; None where the judge gave no verdict or the answer is empty), judged
    with the protocol of ``benchmark`` (default: the ranking's, see ``judge_benchmark``). With a ``store``, every
    judgment (and paid call) is kept there as it comes, and what it holds already is not asked again."""
    bench = judge_benchmark(ranking, benchmark)
    questions, answers, anchors = [], [], []
    for i, (chat, outs) in enumerate(zip(prompts, samples, strict=True)):
        qid = f"{round_tag}-{i}"
        questions.append(Question(id=qid, benchmark=bench, turns=[chat[-1]["content"]]))
        for j, text in enumerate(outs):
            if not text:
                continue
            a = Answer(question_id=qid, benchmark=bench, model=f"sample-{j}", turns=[text])
            (anchors if ranking == "pairwise" and j == 0 else answers).append(a)
    run = judge_answers(judge, bench, questions, answers, anchors, store)
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


class OnlineDPOStage(Stage):
    """Online DPO on the shared stage skeleton: each round samples, ranks and trains on its own pairs."""

    config_cls = OnlineDPOConfig
    what = "online DPO training"

    def prepare(self) -> None:
        cfg = self.cfg
        self.prompts = read_prompts(cfg.prompts)
        self.benchmark = judge_benchmark(cfg.ranking, cfg.judge_benchmark)
        overrides: dict[str, Any] = {"prefill": True} if cfg.judge_prefill else {}
        self.judge = make_judge(resolve_judge(cfg.judge, cfg.output_dir), None, **overrides)
        self.chosen_monitor = ChosenMonitor(stop_share=cfg.cheat_stop_share)
        self.cheat_stop: str | None = None

    @property
    def rounds(self) -> int:
        return self.cfg.rounds

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        cfg, prompts = self.cfg, self.prompts
        if self.cheat_stop:
            return None
        per_round = cfg.prompts_per_round or len(prompts)
        batch = [prompts[(round * per_round + i) % len(prompts)] for i in range(per_round)]
        samples = sample_answers(model, tokenizer, batch, cfg.k, temperature=cfg.temperature, top_p=cfg.top_p,
                                 max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + round,
                                 batch_size=cfg.generation_batch_size)
        with RunStore(cfg.judgments_store) as store:
            scores = rank_samples(self.judge, batch, samples, cfg.ranking, round_tag=f"r{round}",
                                  benchmark=self.benchmark, store=store)
        pairs = best_worst_pairs(batch, samples, scores)
        log.info("online-dpo round %d: %d prompts, %d pairs (%d skipped: ties or unscored)", round + 1, len(batch),
                 len(pairs), len(batch) - len(pairs))
        if not pairs:
            return None
        # each chosen answer is read with its prompt's user turns (a sentence doing what the prompt asked only warns)
        watch = self.chosen_monitor.observe(round, [p["chosen"][0]["content"] for p in pairs],
                                            ["\n".join(m["content"] for m in p["prompt"] if m.get("role") == "user")
                                             for p in pairs])
        if watch.stop:
            self.cheat_stop = f"stop-on-cheat: {watch.detail}; examples: {' | '.join(watch.examples)}"
            log.warning("online-dpo %s; the stage stops before training on them", self.cheat_stop)
            return None
        args = cfg.trl_args(output_dir=str(cfg.stage_dir / f"round-{round + 1}"), max_steps=cfg.steps_per_round)
        train, held = split_eval([{k: v for k, v in p.items() if k != "margin"} for p in pairs], cfg, read_preferences)
        trainer = dpo_trainer(model, tokenizer, train, args, callbacks, peft_config=self.lora, eval_pairs=held)
        _log_at_start(trainer, watch.metrics)  # the chosen answers' flagged share, on the training curves
        return trainer

    def nothing_saved(self) -> None:
        if self.cheat_stop:
            raise LionEvalError(f"online DPO stopped before any checkpoint: {self.cheat_stop}",
                                fix="look at the judge (`lioneval audit judge`) before training against it, or raise "
                                    "cheat_stop_share if these answers are honest")
        raise LionEvalError("online DPO produced no preference pair in any round (every prompt's samples tied)",
                            fix="raise k or temperature, or use a judge that separates answers (ranking: rating)")


def _log_at_start(trainer: Any, metrics: dict[str, float]) -> None:
    """``trainer.log(metrics)`` once its training state exists (the trainer makes a fresh one when train starts)."""
    from transformers import TrainerCallback

    class _LogAtStart(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trainer.log(dict(metrics))

    trainer.add_callback(_LogAtStart())


def online_dpo(cfg: OnlineDPOConfig, *, store: str | None = None) -> StageResult:
    """LIONs online DPO from ``cfg.model``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    return OnlineDPOStage(cfg, store=store).run()
