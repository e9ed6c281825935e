"""Judging: turn stored answers into judge calls, and judge outputs into stored Judgments.

A Judge is a backend + the benchmark's prompt templates + the matching parser. Its id per benchmark hashes the spec
(model, sampling, settings), the template texts and the parser version, so a stored number always says exactly
which judge produced it, and swapping any of these gives a new judge whose judgments sit beside the old ones.

Every request has a content key (judge id, benchmark, question, model, and a hash of the exact messages sent). Keys
already in the store cost no call. Each paid call (one game, or an Arena-Hard follow-up) is stored under its own
content key the moment it is answered, and a judgment as soon as all its games are back: a judgment whose other
game failed, or a crash, loses at most the calls in flight, and no rerun pays for a stored call again. Transport
failures (the judge never answered) are not stored and are retried next run; parse failures are stored with the raw
output and retried only with ``retry_failed``, which then asks the unparsed games again.

A template that reads its verdict from logprobs (AlpacaEval's weighted annotators) needs a judge whose server
returns them. An answer without them is not a verdict: it is not stored, and counts as unanswered. When the first
``LOGPROB_PROBE`` calls are answered without any logprobs, the pass stops there with ``JudgeUnavailableError`` (the
template says why and what to use instead) rather than paying for every other call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from lioneval import benchmarks
from lioneval.backends.base import Backend, Chat, Completion, Sampling
from lioneval.benchmarks import Benchmark
from lioneval.benchmarks.base import JudgeTask
from lioneval.benchmarks.prompts import PromptTemplate, followup_messages
from lioneval.errors import JudgeUnavailableError, LionEvalError
from lioneval.judges import parsers
from lioneval.judges.spec import JudgeSpec, parse_spec
from lioneval.registry import BACKENDS, JUDGES
from lioneval.store import RunStore
from lioneval.types import Answer, Game, Judgment, Question, content_hash

log = logging.getLogger("lioneval.judge")

BenchRef = str | Benchmark  # a registered benchmark's name, or the object

PREFILL = {"[[rating]]": "Rating: [[", "[[A>B]]": "My final verdict is: [["}
# Calls sent first when a template needs logprobs: if none of their answers has any, the others are not sent.
LOGPROB_PROBE = 8


@dataclass
class GameRequest:
    messages: list[dict[str, str]]
    model_position: str  # "A" | "B" | "single"
    template: PromptTemplate
    prefill: str = ""  # the start of the judge's reply, sent as a final assistant message


@dataclass
class JudgeRequest:
    benchmark: str
    question_id: str
    model: str
    kind: str
    games: list[GameRequest]
    turn: int | None = None
    baseline: str | None = None
    follow_up: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    # the Benchmark object that made the request (its settings, e.g. AlpacaEval's annotator, choose the judge id)
    bench: Any = field(default=None, repr=False, compare=False)

    @property
    def inputs(self) -> str:
        return content_hash([[g.template.hash, g.model_position, g.messages, g.prefill] for g in self.games])


@dataclass
class JudgeRun:
    """What one judging pass did: stored judgments, calls made, tokens and cost."""

    judge: str
    requested: int = 0
    cached: int = 0
    judged: int = 0
    parse_failures: int = 0
    transport_failures: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # calls answered from the store (paid in an earlier run; their attempts and tokens are not this run's)
    stored_calls: int = 0
    cost_usd: float | None = None
    errors: Counter = field(default_factory=Counter)
    judgments: list[Judgment] = field(default_factory=list)

    def line(self) -> str:
        """What this pass did; ``failed`` counts every judgment asked for, cached ones included."""
        cost = f", ${self.cost_usd:.4f}" if self.cost_usd is not None else ""
        reused = f" (+{self.stored_calls} stored calls reused)" if self.stored_calls else ""
        failed = sum(j.failed for j in self.judgments)
        return (
            f"judge {self.judge}: this pass {self.judged} judged ({self.parse_failures} unparsed), {self.cached} "
            f"cached, {self.transport_failures} not answered; {failed} of {len(self.judgments)} stored verdicts "
            f"failed; {self.calls} calls{reused}, {self.prompt_tokens}+{self.completion_tokens} tokens{cost}"
        )


@dataclass
class _Pass:
    """What the calls of one judging pass share."""

    judge_id: str
    sampling: Sampling
    run: JudgeRun
    lock: threading.Lock
    finish: Callable[[JudgeRequest, list[Completion]], None]
    calls: Any  # the store that keeps paid calls (RunStore.put_game / games), or None
    retrying: set[int]  # pending requests whose stored judgment failed to parse (retry_failed)
    template: PromptTemplate | None = None  # the first request's template (what a logprob template needs)

    def save(self, key: str, c: Completion) -> None:
        """Keep an answered call the moment it is paid for (under the lock: one writer)."""
        if self.calls is not None:
            self.calls.put_game(key, self.judge_id, _call_record(c))


def _call_record(c: Completion) -> dict[str, Any]:
    meta = json.loads(json.dumps(c.meta, default=str))
    if isinstance(meta.get("base_url"), str):  # which server answered, never credentials in its URL
        u = urlsplit(meta["base_url"])
        meta["base_url"] = f"{u.scheme}://{u.hostname or ''}{f':{u.port}' if u.port else ''}{u.path}"
    return {"text": c.text, "finish_reason": c.finish_reason, "top_logprobs": c.top_logprobs,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "attempts": c.attempts,
            "meta": meta}


def _stored_completion(rec: dict[str, Any]) -> Completion:
    """A stored call as a Completion. It keeps what the call cost when it was paid (a judgment's usage says what it
    cost), but it is never counted again: no run is charged for it twice."""
    return Completion(
        text=rec.get("text"), finish_reason=rec.get("finish_reason"), top_logprobs=rec.get("top_logprobs"),
        prompt_tokens=int(rec.get("prompt_tokens") or 0), completion_tokens=int(rec.get("completion_tokens") or 0),
        attempts=int(rec.get("attempts") or 0), meta={**(rec.get("meta") or {}), "stored": True},
    )


def _has_logprobs(c: Completion) -> bool:
    """Whether a completion carries the first token's top logprobs."""
    return bool(c.top_logprobs and c.top_logprobs[0])


def _joined(first: Completion, extra: Completion) -> Completion:
    """A game's first output with its follow-up answer, parsed together as Arena-Hard does. Its cost is both calls':
    tokens, attempts and wall seconds (``latency_s`` only when both calls recorded theirs)."""
    latencies = [first.meta.get("latency_s"), extra.meta.get("latency_s")]
    timed = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in latencies)
    return Completion(
        text=(first.text or "") + "\n\n" + (extra.text or ""),
        finish_reason=extra.finish_reason,
        prompt_tokens=first.prompt_tokens + extra.prompt_tokens,
        completion_tokens=first.completion_tokens + extra.completion_tokens,
        attempts=first.attempts + extra.attempts,
        meta={"follow_up": True, **({"latency_s": round(sum(latencies), 4)} if timed else {})},
    )


class Judge:
    """A chat judge: a spec bound to a backend, with the templates each benchmark asks it to use."""

    def __init__(self, spec: JudgeSpec | str, backend: Backend | None = None):
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self._backend = backend
        self._templates: dict[tuple[str, str, str | None], PromptTemplate] = {}

    @classmethod
    def from_spec(cls, spec: JudgeSpec, backend: Backend | None = None) -> Judge:
        return cls(spec, backend)

    # -- identity ---------------------------------------------------------------------------------------------
    def template(self, benchmark: BenchRef, mode: str | None = None) -> PromptTemplate:
        bench = benchmarks.load(benchmark)
        key = (bench.name, bench.version, mode)
        if key not in self._templates:
            source = self.spec.templates.get(f"{bench.name}/{mode}") or self.spec.templates.get(bench.name) or "auto"
            self._templates[key] = bench.judge_template(mode, source)
        return self._templates[key]

    def id_for(self, benchmark: BenchRef) -> str:
        bench = benchmarks.load(benchmark)
        templates = [self.template(bench, m) for m in bench.judge_modes()]
        ident: dict[str, Any] = {"spec": self.spec.identity(), "templates": [t.hash for t in templates],
                                 "parser": parsers.PARSER_VERSION}
        # A template that names its protocol (an AlpacaEval annotator other than the leaderboard's) keeps its
        # judgments apart from any other protocol's, even one with the same prompt (the weighted and the binarized
        # annotators share theirs).
        named = [str(t.options["annotator"]) for t in templates if t.options.get("annotator")]
        if named:
            ident["annotators"] = named
        return f"{self.spec.label}#{content_hash(ident, 10)}"

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_for(self.spec)
        return self._backend

    # -- requests ---------------------------------------------------------------------------------------------
    def requests(
        self,
        benchmark: BenchRef,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        baseline_answers: Sequence[Answer] = (),
    ) -> list[JudgeRequest]:
        """Judge requests for every answer that has its question (and, for pairwise benchmarks, a baseline)."""
        bench = benchmarks.load(benchmark)
        tasks = bench.judge_tasks(questions, answers, baseline_answers, lambda mode: self.template(bench, mode))
        return [self._request(bench, t) for t in tasks]

    def _request(self, bench: Benchmark, t: JudgeTask) -> JudgeRequest:
        games = [self._game_request(g.template, g.values, g.position) for g in t.games]
        return JudgeRequest(bench.name, t.question_id, t.model, t.kind, games, turn=t.turn, baseline=t.baseline,
                            follow_up=t.follow_up, meta=dict(t.meta), bench=bench)

    def _game_request(self, tpl: PromptTemplate, values: dict[str, str], position: str) -> GameRequest:
        prefill = PREFILL.get(tpl.output_format, "") if self.spec.prefill else ""
        messages = tpl.render(values)
        if prefill:
            messages = [*messages, {"role": "assistant", "content": prefill}]
        return GameRequest(messages, position, tpl, prefill)

    def run_answers(
        self,
        benchmark: BenchRef,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        baseline_answers: Sequence[Answer] = (),
        store: RunStore | None = None,
        *,
        retry_failed: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> JudgeRun:
        """The Judge protocol: every judgment asked for, cached ones included."""
        reqs = self.requests(benchmark, questions, answers, baseline_answers)
        if not reqs:
            return JudgeRun(judge=self.id_for(benchmark))
        return self.run(reqs, store, retry_failed=retry_failed, progress=progress)

    # -- running ----------------------------------------------------------------------------------------------
    def sampling(self, template: PromptTemplate) -> Sampling:
        opts = dict(template.options.get("sampling", {}))
        is_logprob = template.output_format == "logprob"
        return Sampling(
            temperature=float(opts.get("temperature", self.spec.temperature)),
            max_tokens=int(opts["max_tokens"]) if is_logprob else max(self.spec.max_tokens, 1),
            top_logprobs=int(opts.get("top_logprobs", 5)) if is_logprob else None,
        )

    def run(
        self,
        requests: Sequence[JudgeRequest],
        store: RunStore | None = None,
        *,
        retry_failed: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> JudgeRun:
        """Judge what the store does not hold yet; store each paid call as it is answered and each judgment as it
        completes."""
        if not requests:
            return JudgeRun(judge="-")
        bench = requests[0].bench if requests[0].bench is not None else requests[0].benchmark
        judge_id = self.id_for(bench)
        run = JudgeRun(judge=judge_id, requested=len(requests))
        keyed = [(self._skeleton(judge_id, r).key, r) for r in requests]
        done = store.existing("judgments", [k for k, _ in keyed], ok_only=retry_failed) if store else set()
        pending = [(k, r) for k, r in keyed if k not in done]
        run.cached = len(requests) - len(pending)
        if store is not None and done:
            run.judgments += store.get("judgments", [k for k, _ in keyed if k in done])  # type: ignore[misc]
        if not pending:
            return run
        lock = threading.Lock()
        if progress:
            progress(0, len(pending))

        def finish(req: JudgeRequest, outputs: list[Completion]) -> None:
            j = self._judgment(judge_id, req, outputs)
            with lock:
                if store is not None:
                    store.put_judgments([j])
                run.judgments.append(j)
                run.judged += 1
                run.parse_failures += j.failed
                if progress:
                    progress(run.judged + run.transport_failures, len(pending))

        # Paid calls are kept per game only by a store that can hold them (a read-only view cannot).
        calls = store if hasattr(store, "games") and hasattr(store, "put_game") else None
        retrying: set[int] = set()
        if retry_failed and calls is not None:
            # the pending requests the store holds are its failed judgments: their unparsed games are asked again
            failed = calls.existing("judgments", [k for k, _ in pending])
            retrying = {i for i, (k, _) in enumerate(pending) if k in failed}
        template = pending[0][1].games[0].template
        sampling = self.sampling(template)
        self._dispatch(_Pass(judge_id, sampling, run, lock, finish, calls, retrying, template),
                       [r for _, r in pending])
        self._account(run)
        if run.transport_failures and not run.judged:
            top = run.errors.most_common(1)[0][0]
            generic = "check that the judge server is up and the URL, model name and API key are right"
            err = JudgeUnavailableError(
                f"the judge answered none of {len(pending)} requests: {top}",
                fix=None if "Fix:" in top else f"{generic}; rerun: nothing judged so far is lost",
            )
            err.requested = len(requests)  # type: ignore[attr-defined]
            raise err
        return run

    # -- paid calls -------------------------------------------------------------------------------------------
    @staticmethod
    def call_key(judge_id: str, game: GameRequest, sampling: Sampling, messages: Chat | None = None) -> str:
        """The content key of one judge call: the judge, the game's template, position and prefill, the exact
        messages sent (``messages``: a follow-up's chat, which carries the game's first output) and the sampling."""
        return content_hash({
            "call": "game" if messages is None else "follow-up", "judge": judge_id, "template": game.template.hash,
            "position": game.model_position, "messages": game.messages if messages is None else messages,
            "prefill": game.prefill, "sampling": sampling.as_dict(),
        })

    @staticmethod
    def _lookup(calls: Any, wanted: dict[Any, tuple[str, Callable[[Completion], bool] | None]]
                ) -> tuple[dict[Any, Completion], dict[Any, str]]:
        """The stored answers of the calls in ``wanted`` (slot -> (key, usable)), and for every other slot the key
        a fresh answer is stored under.

        A stored answer that ``usable`` rejects (an unparsed game asked again under ``retry_failed``) is passed
        over for the next key of its chain: the store never overwrites a paid answer, so the answer to the second
        asking lies under the next key, where a later retry still finds it.
        """
        found: dict[Any, Completion] = {}
        fresh: dict[Any, str] = {}
        level = {slot: key for slot, (key, _) in wanted.items()}
        while level:
            got = calls.games(list(level.values())) if calls is not None else {}
            later: dict[Any, str] = {}
            for slot, key in level.items():
                if key not in got:
                    fresh[slot] = key
                    continue
                c = _stored_completion(got[key])
                usable = wanted[slot][1]
                if usable is None or usable(c):
                    found[slot] = c
                else:
                    later[slot] = content_hash([key, "asked again"])
            level = later
        return found, fresh

    def _answers(self, p: _Pass, req: JudgeRequest, game: GameRequest, first: Completion) -> bool:
        """Whether a stored call gave its game a verdict, by itself or with its stored follow-up."""
        if self._game(game, first).value is not None:
            return True
        if not self._wants_follow_up(req, game, first):
            return False
        chat = followup_messages(game.messages, first.text or "", game.template)
        key = self.call_key(p.judge_id, game, p.sampling, chat)
        found, _ = self._lookup(p.calls, {0: (key, partial(self._verdict_with, game, first))})
        return bool(found)

    def _verdict_with(self, game: GameRequest, first: Completion, extra: Completion) -> bool:
        return self._game(game, _joined(first, extra)).value is not None

    def _dispatch(self, p: _Pass, pending: list[JudgeRequest]) -> None:
        wanted: dict[tuple[int, int], tuple[str, Callable[[Completion], bool] | None]] = {}
        for i, req in enumerate(pending):
            for g, game in enumerate(req.games):
                # a failed judgment judged again: re-parsing the same stored text would only fail again
                usable = partial(self._answers, p, req, game) if i in p.retrying else None
                wanted[(i, g)] = (self.call_key(p.judge_id, game, p.sampling), usable)
        stored, keys = self._lookup(p.calls, wanted)
        p.run.stored_calls += len(stored)
        results: dict[int, dict[int, Completion]] = {}
        for (i, g), c in stored.items():
            results.setdefault(i, {})[g] = c
        follow: list[tuple[int, JudgeRequest, list[Completion]]] = []

        def settle(i: int) -> list[Completion] | None:
            """Under the lock: a request whose games are all back, when it is ready to be judged."""
            req = pending[i]
            if len(results.get(i, {})) < len(req.games):
                return None
            outs = [results[i][k] for k in range(len(req.games))]
            if any(not o.ok for o in outs):
                p.run.transport_failures += 1
                p.run.errors.update(o.error or "no text" for o in outs if not o.ok)
                return None
            if self._needs_follow_up(req, outs):
                follow.append((i, req, outs))
                return None
            return outs

        # what the store answered in full is judged first: it costs nothing and is safe before any call
        for i in sorted({i for i, _ in stored}):
            with p.lock:
                outs = settle(i)
            if outs is not None:
                p.finish(pending[i], outs)

        flat = sorted(keys)

        def send(slots: list[tuple[int, int]]) -> list[Completion]:
            def on_result(idx: int, c: Completion) -> None:
                i, g = slots[idx]
                c = self._with_logprobs(p, c)
                with p.lock:
                    self._count(p.run, c)
                    if c.ok:
                        p.save(keys[(i, g)], c)
                    results.setdefault(i, {})[g] = c
                    outs = settle(i)
                if outs is not None:
                    p.finish(pending[i], outs)

            got = self.backend.generate([pending[i].games[g].messages for i, g in slots], p.sampling,
                                        on_result=on_result)
            return [self._with_logprobs(p, c) for c in got]

        if flat:
            needs = p.sampling.top_logprobs is not None
            first = flat[:LOGPROB_PROBE] if needs else flat
            got = send(first)
            if needs:
                self._stop_without_logprobs(p, got, len(flat))
            if len(first) < len(flat):
                send(flat[len(first):])
        if follow:
            self._follow_up(p, follow)

    def _with_logprobs(self, p: _Pass, c: Completion) -> Completion:
        """A completion as a logprob template takes it: one answered without logprobs is no verdict, so it is marked
        failed (not stored, retried on the next run), as the OpenAI-compatible backend does itself."""
        if p.sampling.top_logprobs is None or not c.ok or _has_logprobs(c):
            return c
        return dataclasses.replace(c, error=f"judge {self.spec.label} returned no logprobs though "
                                            f"top_logprobs={p.sampling.top_logprobs} was asked")

    def _stop_without_logprobs(self, p: _Pass, first: list[Completion], total: int) -> None:
        """Stop the pass when the judge answered its first calls but never with logprobs: what the template needs
        (it says why, and what to do instead; AlpacaEval names the annotator that reads text)."""
        answered = [c for c in first if (c.text or "").strip()]
        if not answered or any(_has_logprobs(c) for c in answered):
            return
        hint = (p.template.options.get("no_logprobs") if p.template is not None else None) or {}
        name = p.template.name if p.template is not None else "the judge template"
        why = hint.get("why") or f"the judge template {name} needs them"
        fix = hint.get("fix") or "serve the judge with logprobs, or use a template that reads the judge's text"
        # One message with its fix in it: a run stores it as the note of its incomplete report.
        err = JudgeUnavailableError(
            f"judge {self.spec.label} returned no logprobs in its first {len(answered)} answers and {why}: judging "
            f"stopped after {len(first)} of {total} requests. Fix: {fix}"
        )
        err.requested = p.run.requested  # type: ignore[attr-defined]
        err.rerun_helps = False  # type: ignore[attr-defined]  # the same judge would stop the same way
        raise err

    @staticmethod
    def _count(run: JudgeRun, c: Completion) -> None:
        run.calls += c.attempts
        run.prompt_tokens += c.prompt_tokens
        run.completion_tokens += c.completion_tokens

    def _wants_follow_up(self, req: JudgeRequest, game: GameRequest, out: Completion) -> bool:
        if not req.follow_up or not self.spec.follow_up:
            return False
        return parsers.needs_followup(parsers.parse_pairwise_verdict(game.prefill + (out.text or "")))

    def _needs_follow_up(self, req: JudgeRequest, outs: list[Completion]) -> bool:
        return any(self._wants_follow_up(req, g, o) for g, o in zip(req.games, outs, strict=True))

    def _follow_up(self, p: _Pass, follow: list[tuple[int, JudgeRequest, list[Completion]]]) -> None:
        """Arena-Hard v0.1: ask once more for the verdict when a game's output has none. Each follow-up is a paid
        call of its own, stored under its own messages."""
        asks = [(n, g) for n, (_, req, outs) in enumerate(follow) for g, out in enumerate(outs)
                if self._wants_follow_up(req, req.games[g], out)]
        chats: dict[tuple[int, int], Chat] = {}
        wanted: dict[tuple[int, int], tuple[str, Callable[[Completion], bool] | None]] = {}
        for n, g in asks:
            i, req, outs = follow[n]
            game, first = req.games[g], outs[g]
            chats[(n, g)] = followup_messages(game.messages, first.text or "", game.template)
            usable = partial(self._verdict_with, game, first) if i in p.retrying else None
            wanted[(n, g)] = (self.call_key(p.judge_id, game, p.sampling, chats[(n, g)]), usable)
        extras, keys = self._lookup(p.calls, wanted)
        p.run.stored_calls += len(extras)
        flat = sorted(keys)

        def on_result(idx: int, c: Completion) -> None:
            with p.lock:
                self._count(p.run, c)
                if c.ok:
                    p.save(keys[flat[idx]], c)

        if flat:
            more = self.backend.generate([chats[s] for s in flat], p.sampling, on_result=on_result)
            extras.update(zip(flat, more, strict=True))
        for n, g in asks:
            if extras[(n, g)].ok:
                follow[n][2][g] = _joined(follow[n][2][g], extras[(n, g)])
        for _, req, outs in follow:
            p.finish(req, outs)

    def _skeleton(self, judge_id: str, r: JudgeRequest) -> Judgment:
        return Judgment(
            question_id=r.question_id, benchmark=r.benchmark, judge=judge_id, model=r.model, kind=r.kind,
            turn=r.turn, baseline=r.baseline, inputs=r.inputs, error="pending",
        )

    def _judgment(self, judge_id: str, r: JudgeRequest, outs: list[Completion]) -> Judgment:
        games = [self._game(g, o) for g, o in zip(r.games, outs, strict=True)]
        values = [g.value for g in games if g.value is not None]
        errors = [g.error for g in games if g.error]
        value = sum(values) / len(values) if values else None
        usage = {
            "prompt_tokens": sum(o.prompt_tokens for o in outs),
            "completion_tokens": sum(o.completion_tokens for o in outs),
            "calls": sum(o.attempts for o in outs),
        }
        latencies = [o.meta.get("latency_s") for o in outs]
        if outs and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in latencies):
            usage["latency_s"] = round(sum(latencies), 4)  # wall seconds of its answered calls, games summed
        meta = {**r.meta, "usage": usage, "templates": sorted({g.template.id for g in r.games})}
        if len(games) == 2 and all(g.value is not None for g in games):
            meta["games_agree"] = (games[0].value - 0.5) * (games[1].value - 0.5) > 0 or games[0].value == games[
                1
            ].value
        return Judgment(
            question_id=r.question_id, benchmark=r.benchmark, judge=judge_id, model=r.model, kind=r.kind,
            turn=r.turn, baseline=r.baseline, value=value, games=games, inputs=r.inputs,
            raw=games[0].raw if len(games) == 1 else "", error=None if value is not None else "; ".join(errors),
            meta=meta,
        )

    @staticmethod
    def _game(g: GameRequest, o: Completion) -> Game:
        fmt = g.template.output_format
        text = g.prefill + (o.text or "")
        if fmt in ("logprob", "ranking"):
            if fmt == "logprob":
                ids = tuple(g.template.options.get("ids", ("m", "M")))
                res = parsers.parse_alpaca_logprobs(o.top_logprobs, ids=ids, text=text,
                                                    binarize=bool(g.template.options.get("binarize")))
            else:
                res = parsers.parse_alpaca_ranking(text, model_1=g.template.options.get("ids", ("model_1",))[0])
            # preference in [1, 2]: 2 means output_2 won; the model is output_2 unless the order was swapped
            value = None if res.value is None else (res.value - 1 if g.model_position == "B" else 2 - res.value)
        elif g.model_position == "single":
            res = parsers.parse_rating(text)
            value = res.value
        else:
            res = parsers.parse_pairwise_verdict(text, rule=str(g.template.options.get("verdict_rule", "one")))
            # res.value is position A's share of the win
            value = None if res.value is None else (res.value if g.model_position == "A" else 1 - res.value)
        if o.finish_reason == "length" and res.error:
            res = parsers.ParseResult(None, res.label, f"{res.error} (judge output cut at max_tokens)", res.code)
        return Game(model_position=g.model_position, label=res.label, value=value, raw=text, error=res.error)

    def _account(self, run: JudgeRun) -> None:
        prices = self.spec.prices
        if prices:
            run.cost_usd = (
                run.prompt_tokens * prices.get("input_per_mtok", 0.0)
                + run.completion_tokens * prices.get("output_per_mtok", 0.0)
            ) / 1e6


def judge_stored(
    store: RunStore,
    judge,
    benchmark: BenchRef,
    *,
    models: Sequence[str],
    baseline: str | None = None,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> JudgeRun:
    """Judge the stored answers of ``models`` on a benchmark (``lioneval judge``)."""
    bench = benchmarks.load(benchmark)
    questions = store.questions(benchmark=bench.name)
    answers = store.answers(benchmark=bench.name, model=list(models))
    if not answers:
        raise LionEvalError(
            f"no stored {bench.name} answers for {', '.join(models)}",
            fix="generate them with `lioneval run` or import them with `lioneval import`",
        )
    wanted = [baseline] if baseline else bench.baseline_models()
    base = store.answers(benchmark=bench.name, model=wanted) if wanted else []
    if bench.kind == "pairwise" and not base:
        raise LionEvalError(
            f"no stored answers of baseline {' or '.join(map(repr, wanted))} for {bench.name}",
            fix="import the baseline's answers (official model_answer/ or reference outputs) or pass --baseline",
        )
    t0 = time.perf_counter()
    run = judge.run_answers(bench, questions, answers, base, store, retry_failed=retry_failed, progress=progress)
    log.info("%s in %.1fs", run.line(), time.perf_counter() - t0)
    return run


def make_judge(spec: JudgeSpec | str, backend: Backend | None = None, **overrides: Any):
    """The judge object a spec names, built by the class the JUDGES registry holds for its kind (a chat judge, a
    reward-model judge, an ensemble or a plug-in); overrides set spec fields."""
    spec = parse_spec(spec, **overrides)
    return JUDGES.get(spec.kind).from_spec(spec, backend)


def backend_for(spec: Any, **options: Any) -> Backend:
    """The chat backend a spec names, built by the class the BACKENDS registry holds for its kind."""
    return BACKENDS.get(spec.kind).from_spec(spec, **options)


def judge_answers(
    judge,
    benchmark: BenchRef,
    questions: Sequence[Question],
    answers: Sequence[Answer],
    baseline_answers: Sequence[Answer] = (),
    store: RunStore | None = None,
    *,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> JudgeRun:
    """Judge answers with any judge; what the store holds already costs nothing, and is returned too."""
    return judge.run_answers(benchmark, questions, answers, baseline_answers, store, retry_failed=retry_failed,
                             progress=progress)
