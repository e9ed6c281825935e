"""Reward models as judges: a sequence-classification model scores each (question, answer) conversation.

Pointwise benchmarks get the raw reward as the rating (not on MT-Bench's 1-10 scale: compare such numbers only with
each other). Pairwise benchmarks get the Bradley-Terry preference sigmoid(r_model - r_baseline) as the model's win
share, which is what a reward model trained on preference pairs estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lioneval import benchmarks
from lioneval.backends.adapters import is_adapter, load_with_adapter
from lioneval.errors import LionEvalError
from lioneval.judges.judge import BenchRef, JudgeRequest, JudgeRun
from lioneval.judges.spec import JudgeSpec, parse_spec
from lioneval.registry import require
from lioneval.store import RunStore
from lioneval.types import Answer, Game, Judgment, Question, content_hash

REWARD_PROTOCOL = "reward-v1"


def _classifier(path: Path) -> tuple[Any, Any]:
    """A sequence-classification model and its tokenizer. A LoRA checkpoint of the reward-model stage (an adapter and
    its score head) loads as the base it names, as a one-output classifier, with both merged in."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if is_adapter(path):
        model, tok = load_with_adapter(path, _classifier)
        if model.config.pad_token_id is None:  # a causal-LM base: scoring padded batches needs the pad id
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            model.config.pad_token_id = tok.pad_token_id
        return model, tok
    if not (path / "config.json").is_file():
        raise LionEvalError(f"no reward model at {path}", fix="pass a sequence-classification checkpoint directory")
    archs = AutoConfig.from_pretrained(path).architectures or []
    # a causal LM under an adapter: its score head is the adapter's, one output
    extra = {} if any(a.endswith("ForSequenceClassification") for a in archs) else {"num_labels": 1}
    return AutoModelForSequenceClassification.from_pretrained(path, **extra), AutoTokenizer.from_pretrained(path)


class RewardModelJudge:
    def __init__(self, spec: JudgeSpec | str, *, model: Any = None, tokenizer: Any = None, batch_size: int = 8):
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.batch_size = batch_size
        self._model, self._tokenizer = model, tokenizer

    @classmethod
    def from_spec(cls, spec: JudgeSpec, backend: Any = None) -> RewardModelJudge:
        return cls(spec)

    def id_for(self, benchmark: BenchRef) -> str:
        return f"{self.spec.label}#{content_hash({'spec': self.spec.identity(), 'protocol': REWARD_PROTOCOL}, 10)}"

    def _load(self) -> None:
        if self._model is not None:
            return
        require("torch", "train", what="reward-model judges")
        require("transformers", "train", what="reward-model judges")
        model, self._tokenizer = _classifier(Path(self.spec.model))
        self._model = model.eval()

    def score(self, conversations: Sequence[list[dict[str, str]]]) -> list[float]:
        """One scalar reward per conversation (the last logit of a 1-label head, or the logit of label 1)."""
        import torch

        self._load()
        tok = self._tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if getattr(tok, "chat_template", None):
            texts = [tok.apply_chat_template(c, tokenize=False) for c in conversations]
        else:  # a plain reward model: the conversation as text
            texts = ["\n\n".join(f"{m['role']}: {m['content']}" for m in c) for c in conversations]
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = tok(texts[i : i + self.batch_size], return_tensors="pt", padding=True, truncation=True)
            with torch.no_grad():
                logits = self._model(**enc).logits.float()
            out += (logits[:, 0] if logits.shape[-1] == 1 else logits[:, -1]).tolist()
        return out

    def run_answers(
        self,
        benchmark: BenchRef,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        baseline_answers: Sequence[Answer] = (),
        store: RunStore | None = None,
        *,
        retry_failed: bool = False,  # a reward is a number, never an unparsed verdict: nothing to retry
        progress: Any = None,
    ) -> JudgeRun:
        """The Judge protocol: a judgment for every answer (and baseline answer, when pairwise), cached ones
        included."""
        bench = benchmarks.load(benchmark)
        judge_id = self.id_for(bench)
        benchmark = bench.name
        run = JudgeRun(judge=judge_id)
        qs = {q.id: q for q in questions}
        base = {a.question_id: a for a in baseline_answers}
        pairwise = bench.kind == "pairwise"
        todo: list[tuple[JudgeRequest, Answer, Answer | None]] = []
        for a in answers:
            q = qs.get(a.question_id)
            b = base.get(a.question_id)
            if q is None or (pairwise and b is None):
                continue
            req = JudgeRequest(benchmark, q.id, a.model, "pairwise" if pairwise else "rating", [],
                               baseline=b.model if b else None)
            todo.append((req, a, b))
        run.requested = len(todo)

        def convo(q: Question, ans: Answer) -> list[dict[str, str]]:
            msgs = []
            for u, r in zip(q.turns, ans.turns, strict=False):
                msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": r}]
            return msgs

        def inputs(a: Answer, b: Answer | None) -> str:
            return content_hash([convo(qs[a.question_id], a), convo(qs[a.question_id], b) if b else None])

        keys = {
            Judgment(question_id=r.question_id, benchmark=benchmark, judge=judge_id, model=r.model, kind=r.kind,
                     baseline=r.baseline, inputs=inputs(a, b), error="pending").key: (r, a, b)
            for r, a, b in todo
        }
        done = store.existing("judgments", keys) if store else set()
        pending = [v for k, v in keys.items() if k not in done]
        run.cached = len(todo) - len(pending)
        cached = store.get("judgments", [k for k in keys if k in done]) if store is not None and done else []
        convos = [convo(qs[a.question_id], a) for _, a, _ in pending]
        convos += [convo(qs[b.question_id], b) for _, _, b in pending if b is not None]
        scores = self.score(convos) if convos else []
        n = len(pending)
        judgments = []
        for i, (r, a, b) in enumerate(pending):
            rm = scores[i]
            if pairwise:
                rb = scores[n + i]
                value = 1.0 / (1.0 + math.exp(-(rm - rb)))
                game = Game(model_position="single", label=f"{rm:.4f} vs {rb:.4f}", value=value)
            else:
                value = rm
                game = Game(model_position="single", label=f"{rm:.4f}", value=value)
            judgments.append(Judgment(
                question_id=r.question_id, benchmark=benchmark, judge=judge_id, model=r.model, kind=r.kind,
                baseline=r.baseline, value=value, games=[game], inputs=inputs(a, b),
                meta={"reward": rm, **({"reward_baseline": scores[n + i]} if pairwise else {})},
            ))
        if store is not None and judgments:
            store.put_judgments(judgments)
        run.judgments = [*cached, *judgments]  # type: ignore[list-item]
        run.judged = len(judgments)
        run.calls = len(convos)
        return run
