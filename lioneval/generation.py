"""Answer generation with the settings each benchmark's reference scripts use.

MT-Bench: two turns, the second asked after the model's own first answer, with FastChat's per-category
temperatures (writing and roleplay 0.7; stem and humanities 0.1; everything else greedy). Arena-Hard-Auto and
AlpacaEval: greedy, one turn. Every answer records its finish reasons, so a truncated answer shows in the report.
Answers are stored as they complete and keyed by (question, model, settings): a rerun generates only what is missing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from lioneval.backends.base import Backend, Sampling
from lioneval.benchmarks.mt_bench import TEMPERATURES
from lioneval.store import RunStore
from lioneval.types import Answer, Question

MAX_NEW_TOKENS = {"mt-bench": 1024, "arena-hard": 4096, "alpaca-eval": 2048}
CHUNK = 64

Progress = Callable[[int, int], None]


def settings_for(bench: str, category: str | None, backend: Backend, max_new_tokens: int, seed: int) -> dict[str, Any]:
    temperature = TEMPERATURES.get(category or "", 0.0) if bench == "mt-bench" else 0.0
    return {"backend": backend.name, "temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed}


def generate_answers(
    backend: Backend,
    bench: str,
    questions: Sequence[Question],
    model: str,
    *,
    max_new_tokens: int | None = None,
    seed: int = 0,
    store: RunStore | None = None,
    progress: Progress | None = None,
) -> list[Answer]:
    """Answers of ``model`` to ``questions``; those already stored are reused, not generated again."""
    max_new = max_new_tokens or MAX_NEW_TOKENS.get(bench, 1024)
    planned = []
    for q in questions:
        gen = settings_for(bench, q.category, backend, max_new, seed)
        planned.append((q, gen, Answer(question_id=q.id, benchmark=bench, model=model, turns=[""], generation=gen)))
    stored: dict[str, Answer] = {}
    if store is not None:
        have = store.existing("answers", [p[2].key for p in planned])
        if have:
            stored = {a.key: a for a in store.answers(benchmark=bench, model=model) if a.key in have}
    todo = [(q, gen) for q, gen, probe in planned if probe.key not in stored]
    done = len(planned) - len(todo)
    if progress:
        progress(done, len(planned))
    # one batch per temperature: a backend call has one sampling setting
    groups: dict[float, list[tuple[Question, dict]]] = defaultdict(list)
    for q, gen in todo:
        groups[gen["temperature"]].append((q, gen))
    new: list[Answer] = []
    for temperature, items in sorted(groups.items()):
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
    backend: Backend, bench: str, items: list[tuple[Question, dict]], model: str, sampling: Sampling
) -> list[Answer]:
    """Turn by turn for the whole batch: turn k sees the model's own answers to turns 1..k-1."""
    chats = [[] for _ in items]
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
            chats[i].append({"role": "assistant", "content": c.text})
            texts[i].append(c.text or "")
            reasons[i].append(c.finish_reason or "unknown")
            tokens[i].append(c.completion_tokens)
    answers = []
    for i, (q, gen) in enumerate(items):
        if errors[i] is not None or len(texts[i]) != len(q.turns):
            continue  # not stored: generated again on the next run
        meta = {}
        if bench == "arena-hard":  # style control needs each answer's markdown counts and length
            from lioneval.benchmarks.arena_hard import style_of

            meta["style"] = style_of(texts[i][0], tokens[i][0])
        answers.append(
            Answer(
                question_id=q.id, benchmark=bench, model=model, turns=texts[i], token_counts=tokens[i],
                finish_reasons=reasons[i], generation=gen, meta=meta,
            )
        )
    failed = [e for e in errors if e]
    if failed and not answers:
        from lioneval.errors import LionEvalError

        raise LionEvalError(f"generation failed for all {len(items)} questions: {failed[0]}",
                            fix="check the policy backend (model path or server); rerun keeps what was stored")
    return answers
