"""Judging: turn stored answers into judge calls, and judge outputs into stored Judgments.

A Judge is a backend + the benchmark's prompt templates + the matching parser. Its id per benchmark hashes the spec
(model, sampling, settings), the template texts and the parser version, so a stored number always says exactly
which judge produced it, and swapping any of these gives a new judge whose judgments sit beside the old ones.

Every request has a content key (judge id, benchmark, question, model, and a hash of the exact messages sent). Keys
already in the store cost no call; a judgment is stored as soon as all its games are back, so a crash loses at
most the calls in flight. Transport failures (the judge never answered) are not stored and are retried next run;
parse failures are stored with the raw output and retried only with ``retry_failed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lioneval import benchmarks
from lioneval.backends.base import Backend, Completion, Sampling
from lioneval.benchmarks import Benchmark
from lioneval.benchmarks.base import JudgeTask
from lioneval.benchmarks.prompts import PromptTemplate, followup_messages
from lioneval.errors import LionEvalError
from lioneval.judges import parsers
from lioneval.judges.spec import JudgeSpec, parse_spec
from lioneval.registry import BACKENDS, JUDGES
from lioneval.store import RunStore
from lioneval.types import Answer, Game, Judgment, Question, content_hash

log = logging.getLogger("lioneval.judge")

BenchRef = str | Benchmark  # a registered benchmark's name, or the object

PREFILL = {"[[rating]]": "Rating: [[", "[[A>B]]": "My final verdict is: [["}


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
    cost_usd: float | None = None
    errors: Counter = field(default_factory=Counter)
    judgments: list[Judgment] = field(default_factory=list)

    def line(self) -> str:
        cost = f", ${self.cost_usd:.4f}" if self.cost_usd is not None else ""
        return (
            f"judge {self.judge}: {self.judged} judged, {self.cached} cached, {self.parse_failures} unparsed, "
            f"{self.transport_failures} not answered; {self.calls} calls, "
            f"{self.prompt_tokens}+{self.completion_tokens} tokens{cost}"
        )


class Judge:
    """A chat judge: a spec bound to a backend, with the templates each benchmark asks it to use."""

    def __init__(self, spec: JudgeSpec | str, backend: Backend | None = None):
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self._backend = backend
        self._templates: dict[tuple[str, str | None], PromptTemplate] = {}

    @classmethod
    def from_spec(cls, spec: JudgeSpec, backend: Backend | None = None) -> Judge:
        return cls(spec, backend)

    # -- identity ---------------------------------------------------------------------------------------------
    def template(self, benchmark: BenchRef, mode: str | None = None) -> PromptTemplate:
        bench = benchmarks.load(benchmark)
        key = (bench.name, mode)
        if key not in self._templates:
            source = self.spec.templates.get(f"{bench.name}/{mode}") or self.spec.templates.get(bench.name) or "auto"
            self._templates[key] = bench.judge_template(mode, source)
        return self._templates[key]

    def id_for(self, benchmark: BenchRef) -> str:
        bench = benchmarks.load(benchmark)
        tpl = [self.template(bench, m).hash for m in bench.judge_modes()]
        ident = {"spec": self.spec.identity(), "templates": tpl, "parser": parsers.PARSER_VERSION}
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
        return [self._request(bench.name, t) for t in tasks]

    def _request(self, bench: str, t: JudgeTask) -> JudgeRequest:
        games = [self._game_request(g.template, g.values, g.position) for g in t.games]
        return JudgeRequest(bench, t.question_id, t.model, t.kind, games, turn=t.turn, baseline=t.baseline,
                            follow_up=t.follow_up, meta=dict(t.meta))

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
        """Judge what the store does not hold yet; store each judgment as it completes."""
        if not requests:
            return JudgeRun(judge="-")
        bench = requests[0].benchmark
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

        self._dispatch(pending, finish, run, lock, progress)
        self._account(run)
        if run.transport_failures and not run.judged:
            top = run.errors.most_common(1)[0][0]
            generic = "check that the judge server is up and the URL, model name and API key are right"
            raise LionEvalError(
                f"the judge answered none of {len(pending)} requests: {top}",
                fix=None if "Fix:" in top else f"{generic}; rerun: nothing judged so far is lost",
            )
        return run

    def _dispatch(self, pending, finish, run: JudgeRun, lock, progress) -> None:
        sampling = self.sampling(pending[0][1].games[0].template)
        flat = [(i, g) for i, (_, r) in enumerate(pending) for g in range(len(r.games))]
        results: dict[int, dict[int, Completion]] = {}
        follow: list[tuple[JudgeRequest, list[Completion]]] = []

        def on_result(idx: int, c: Completion) -> None:
            i, g = flat[idx]
            req = pending[i][1]
            with lock:
                self._count(run, c)
                results.setdefault(i, {})[g] = c
                if len(results[i]) < len(req.games):
                    return
                outs = [results[i][k] for k in range(len(req.games))]
                if any(not o.ok for o in outs):
                    run.transport_failures += 1
                    run.errors.update(o.error or "no text" for o in outs if not o.ok)
                    return
                if self._needs_follow_up(req, outs):
                    follow.append((req, outs))
                    return
            finish(req, outs)

        chats = [pending[i][1].games[g].messages for i, g in flat]
        self.backend.generate(chats, sampling, on_result=on_result)
        if follow:
            self._follow_up(follow, sampling, finish, run, lock)

    @staticmethod
    def _count(run: JudgeRun, c: Completion) -> None:
        run.calls += c.attempts
        run.prompt_tokens += c.prompt_tokens
        run.completion_tokens += c.completion_tokens

    def _needs_follow_up(self, req: JudgeRequest, outs: list[Completion]) -> bool:
        if not req.follow_up or not self.spec.follow_up:
            return False
        return any(
            parsers.needs_followup(parsers.parse_pairwise_verdict(g.prefill + (o.text or "")))
            for g, o in zip(req.games, outs, strict=True)
        )

    def _follow_up(self, follow, sampling: Sampling, finish, run: JudgeRun, lock) -> None:
        """Arena-Hard v0.1: ask once more for the verdict when a game's output has none."""
        asks = [
            (n, g)
            for n, (req, outs) in enumerate(follow)
            for g, out in enumerate(outs)
            if parsers.needs_followup(parsers.parse_pairwise_verdict(req.games[g].prefill + (out.text or "")))
        ]
        chats = []
        for n, g in asks:
            game = follow[n][0].games[g]
            chats.append(followup_messages(game.messages, follow[n][1][g].text or "", game.template))
        more = self.backend.generate(chats, sampling)
        for (n, g), extra in zip(asks, more, strict=True):
            with lock:
                self._count(run, extra)
            if extra.ok:
                first = follow[n][1][g]
                follow[n][1][g] = Completion(
                    text=(first.text or "") + "\n\n" + (extra.text or ""),
                    finish_reason=extra.finish_reason,
                    prompt_tokens=first.prompt_tokens + extra.prompt_tokens,
                    completion_tokens=first.completion_tokens + extra.completion_tokens,
                    attempts=first.attempts + extra.attempts,
                    meta={"follow_up": True},
                )
        for req, outs in follow:
            finish(req, outs)

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
        if fmt == "logprob":
            ids = tuple(g.template.options.get("ids", ("m", "M")))
            res = parsers.parse_alpaca_logprobs(o.top_logprobs, ids=ids, text=text)
            # preference in [1, 2]: 2 means output_2 won; the model is output_2 unless the order was swapped
            value = None if res.value is None else (res.value - 1 if g.model_position == "B" else 2 - res.value)
        elif g.model_position == "single":
            res = parsers.parse_rating(text)
            value = res.value
        else:
            res = parsers.parse_pairwise_verdict(text)
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
    baseline = baseline or bench.default_baseline
    base = store.answers(benchmark=bench.name, model=baseline) if baseline else []
    if bench.kind == "pairwise" and not base:
        raise LionEvalError(
            f"no stored answers of baseline {baseline!r} for {bench.name}",
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
