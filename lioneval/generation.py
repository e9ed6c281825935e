"""Answer generation with the settings each benchmark asks for (``Benchmark.generation``).

Every turn of a question is asked after the model's own answers to the turns before it (MT-Bench has two). Every
answer records its finish reasons, so a truncated answer shows in the report. Answers are stored as they complete
and keyed by (question, model, settings): a rerun generates only what is missing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from lioneval import benchmarks
from lioneval.backends.base import Backend, Sampling
from lioneval.benchmarks import Benchmark
from lioneval.errors import LionEvalError
from lioneval.store import RunStore
from lioneval.types import Answer, Question

CHUNK = 64

Progress = Callable[[int, int], None]


def settings_for(bench: Benchmark, question: Question, backend: Backend, max_new_tokens: int | None,
                 seed: int) -> dict[str, Any]:
    """The generation settings of one answer (they are part of its key): the benchmark's, then the overrides."""
    gen = dict(bench.generation(question))
    if max_new_tokens:
        gen["max_new_tokens"] = max_new_tokens
    return {"backend": backend.name, **gen, "seed": seed}


def generate_answers(
    backend: Backend,
    bench: str | Benchmark,
    questions: Sequence[Question],
    model: str,
    *,
    max_new_tokens: int | None = None,
    seed: int = 0,
    store: RunStore | None = None,
    progress: Progress | None = None,
) -> list[Answer]:
    """Answers of ``model`` to ``questions``; those already stored are reused, not generated again."""
    bench = benchmarks.load(bench)
    planned = []
    for q in questions:
        gen = settings_for(bench, q, backend, max_new_tokens, seed)
        planned.append((q, gen, Answer(question_id=q.id, benchmark=bench.name, model=model, turns=[""],
                                       generation=gen)))
    stored: dict[str, Answer] = {}
    if store is not None:
        stored = {a.key: a for a in store.get("answers", [p[2].key for p in planned])}  # type: ignore[misc]
    todo = [(q, gen) for q, gen, probe in planned if probe.key not in stored]
    done = len(planned) - len(todo)
    if progress:
        progress(done, len(planned))
    # one batch per sampling setting: a backend call has one
    groups: dict[tuple[float, int], list[tuple[Question, dict]]] = defaultdict(list)
    for q, gen in todo:
        groups[(gen["temperature"], gen["max_new_tokens"])].append((q, gen))
    new: list[Answer] = []
    for (temperature, max_new), items in sorted(groups.items()):
        sampling = Sampling(temperature=temperature, max_tokens=max_new, seed=seed)
        # in chunks, stored as each completes: a crash loses at most one chunk of generation
        for start in range(0, len(items), CHUNK):
            answers = _multi_turn(backend, bench, items[start : start + CHUNK], model, sampling)
            if store is not None:
                store.put_answers(answers)
            new += answers
            done += len(answers)
            if progress:
                progress(done, len(planned))
    by_key = {**stored, **{a.key: a for a in new}}
    return [by_key[p[2].key] for p in planned if p[2].key in by_key]


def _multi_turn(
    backend: Backend, bench: Benchmark, items: list[tuple[Question, dict]], model: str, sampling: Sampling
) -> list[Answer]:
    """Turn by turn for the whole batch: turn k sees the model's own answers to turns 1..k-1."""
    chats: list[list[dict[str, str]]] = [[] for _ in items]
    texts: list[list[str]] = [[] for _ in items]
    reasons: list[list[str]] = [[] for _ in items]
    tokens: list[list[int]] = [[] for _ in items]
    errors: list[str | None] = [None] * len(items)
    n_turns = max(len(q.turns) for q, _ in items)
    for turn in range(n_turns):
        active = [i for i, (q, _) in enumerate(items) if turn < len(q.turns) and errors[i] is None]
        if not active:
            break
        for i in active:
            chats[i].append({"role": "user", "content": items[i][0].turns[turn]})
        outs = backend.generate([list(chats[i]) for i in active], sampling)
        for i, c in zip(active, outs, strict=True):
            if not c.ok:
                errors[i] = c.error or "no text"
                continue
            chats[i].append({"role": "assistant", "content": c.text or ""})
            texts[i].append(c.text or "")
            reasons[i].append(c.finish_reason or "unknown")
            tokens[i].append(c.completion_tokens)
    answers = []
    for i, (q, gen) in enumerate(items):
        if errors[i] is not None or len(texts[i]) != len(q.turns):
            continue  # not stored: generated again on the next run
        answers.append(
            Answer(
                question_id=q.id, benchmark=bench.name, model=model, turns=texts[i], token_counts=tokens[i],
                finish_reasons=reasons[i], generation=gen, meta=bench.answer_meta(texts[i], tokens[i]),
            )
        )
    failed = [e for e in errors if e]
    if failed and not answers:
        raise LionEvalError(f"generation failed for all {len(items)} questions: {failed[0]}",
                            fix="check the policy backend (model path or server); rerun keeps what was stored")
    return answers
