"""Answer generation with the settings each benchmark asks for (``Benchmark.generation``).

Every turn of a question is asked after the model's own answers to the turns before it (MT-Bench has two). Every
answer records its finish reasons, so a truncated answer shows in the report.

Nothing generated is lost: each completed turn is stored the moment the backend returns it (keyed by the model, the
exact chat and the sampling settings), and each answer the moment its last turn is done (keyed by question, model
and settings). A killed run resumes from there: it asks the backend only for turns that were never completed.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from lioneval import benchmarks
from lioneval.backends.base import Backend, Chat, Completion, Sampling
from lioneval.benchmarks import Benchmark
from lioneval.errors import LionEvalError
from lioneval.store import RunStore
from lioneval.types import Answer, Question, content_hash

# (done, total, **extra): extra carries "tokens" (completion tokens generated so far in this call)
Progress = Callable[..., None]
# called with each answer as soon as it is complete (stored first, when there is a store)
OnAnswer = Callable[[Answer], None]

TURN_CACHE = "generation"  # the game_results "judge" column of stored turns: what made them


def settings_for(bench: Benchmark, question: Question, backend: Backend, max_new_tokens: int | None,
                 seed: int) -> dict[str, Any]:
    """The generation settings of one answer (they are part of its key): the benchmark's, then the overrides."""
    gen = dict(bench.generation(question))
    if max_new_tokens:
        gen["max_new_tokens"] = max_new_tokens
    return {"backend": backend.name, **gen, "seed": seed}


def turn_key(backend: Backend, model: str, chat: Chat, sampling: Sampling) -> str:
    """The key of one generated turn: the same model asked the same chat with the same settings."""
    return "turn:" + content_hash({"backend": backend.name, "model": model, "chat": chat,
                                   "sampling": sampling.as_dict()}, 24)


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
    on_answer: OnAnswer | None = None,
) -> list[Answer]:
    """Answers of ``model`` to ``questions``; those already stored are reused, not generated again.

    ``progress(done, total, tokens=n)`` follows each answer; ``on_answer(answer)`` receives each new answer as soon as
    it is stored (the pipeline starts judging it while the rest are generated)."""
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
    tally = _Tally(len(planned) - len(todo), len(planned), progress)
    tally.report()
    # one backend call per sampling setting (a call has one); all of a setting's questions in it, so that the
    # backend schedules them as it likes (continuous batching, requests in flight) and reports each as it ends
    groups: dict[tuple[float, int], list[tuple[Question, dict]]] = defaultdict(list)
    for q, gen in todo:
        groups[(gen["temperature"], gen["max_new_tokens"])].append((q, gen))
    new: list[Answer] = []
    for (temperature, max_new), items in sorted(groups.items()):
        sampling = Sampling(temperature=temperature, max_tokens=max_new, seed=seed)
        new += _multi_turn(backend, bench, items, model, sampling, store, tally, on_answer)
    by_key = {**stored, **{a.key: a for a in new}}
    return [by_key[p[2].key] for p in planned if p[2].key in by_key]


class _Tally:
    """Answers done so far and tokens generated, reported through the progress callback (from any thread)."""

    def __init__(self, done: int, total: int, progress: Progress | None):
        self.done, self.total, self.tokens = done, total, 0
        self.progress = progress
        self.lock = threading.Lock()

    def add(self, answers: int = 0, tokens: int = 0) -> None:
        with self.lock:
            self.done += answers
            self.tokens += tokens
        if answers:
            self.report()

    def report(self) -> None:
        if self.progress:
            self.progress(self.done, self.total, tokens=self.tokens)


def _completion_record(c: Completion) -> dict[str, Any]:
    return {"text": c.text, "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens}


def _ask(backend: Backend, asks: list[tuple[int, Chat, str, bool]], sampling: Sampling,
         done: Callable[[int, Completion, str, bool], None]) -> None:
    """One backend call for ``asks`` (item, chat, turn key, last turn?), each result handed to ``done`` once: as the
    backend reports it (``on_result``), or from the returned list for backends that report only there."""
    seen: set[int] = set()
    lock = threading.Lock()

    def once(pos: int, c: Completion) -> None:
        with lock:
            if pos in seen:
                return
            seen.add(pos)
        i, _, key, last = asks[pos]
        done(i, c, key, last)

    outs = backend.generate([list(chat) for _, chat, _, _ in asks], sampling, on_result=once)
    for pos, c in enumerate(outs):
        once(pos, c)


def _multi_turn(
    backend: Backend, bench: Benchmark, items: list[tuple[Question, dict]], model: str, sampling: Sampling,
    store: RunStore | None, tally: _Tally, on_answer: OnAnswer | None,
) -> list[Answer]:
    """Turn by turn: turn k sees the model's own answers to turns 1..k-1. Each turn is stored as it completes, each
    answer as its last turn does; stored turns are reused, never asked again."""
    chats: list[Chat] = [[] for _ in items]
    texts: list[list[str]] = [[] for _ in items]
    reasons: list[list[str]] = [[] for _ in items]
    tokens: list[list[int]] = [[] for _ in items]
    errors: list[str | None] = [None] * len(items)
    answers: list[Answer] = []
    lock = threading.Lock()

    def finish_answer(i: int) -> None:
        q, gen = items[i]
        answer = Answer(question_id=q.id, benchmark=bench.name, model=model, turns=texts[i], token_counts=tokens[i],
                        finish_reasons=reasons[i], generation=gen, meta=bench.answer_meta(texts[i], tokens[i]))
        if store is not None:
            store.put_answers([answer])
        with lock:
            answers.append(answer)
        tally.add(answers=1)
        if on_answer is not None:
            on_answer(answer)

    def take(i: int, c: Completion, last: bool) -> None:
        chats[i].append({"role": "assistant", "content": c.text or ""})
        texts[i].append(c.text or "")
        reasons[i].append(c.finish_reason or "unknown")
        tokens[i].append(c.completion_tokens)
        if last:
            finish_answer(i)

    n_turns = max(len(q.turns) for q, _ in items)
    for turn in range(n_turns):
        active = [i for i, (q, _) in enumerate(items) if turn < len(q.turns) and errors[i] is None]
        if not active:
            break
        for i in active:
            chats[i].append({"role": "user", "content": items[i][0].turns[turn]})
        keys = {i: turn_key(backend, model, chats[i], sampling) for i in active}
        cached = store.games(keys.values()) if store is not None else {}
        ask = []
        for i in active:
            rec = cached.get(keys[i])
            if rec is not None:
                take(i, Completion(text=rec.get("text") or "", finish_reason=rec.get("finish_reason"),
                                   completion_tokens=int(rec.get("completion_tokens") or 0)),
                     last=turn == len(items[i][0].turns) - 1)
            else:
                ask.append(i)
        if not ask:
            continue

        def done(i: int, c: Completion, key: str, last: bool) -> None:
            if not c.ok:
                errors[i] = c.error or "no text"
                return
            if store is not None:
                store.put_game(key, TURN_CACHE, _completion_record(c))
            tally.add(tokens=c.completion_tokens)
            take(i, c, last=last)

        _ask(backend, [(i, chats[i], keys[i], turn == len(items[i][0].turns) - 1) for i in ask], sampling, done)
    failed = [e for e in errors if e]
    if failed and not answers:
        raise LionEvalError(f"generation failed for all {len(items)} questions: {failed[0]}",
                            fix="check the policy backend (model path or server); rerun keeps what was stored")
    order = {q.id: k for k, (q, _) in enumerate(items)}
    return sorted(answers, key=lambda a: order[a.question_id])
