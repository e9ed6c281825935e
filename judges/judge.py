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

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lioneval.backends.base import Backend, Completion, Sampling
from lioneval.errors import LionEvalError
from lioneval.judges import parsers
from lioneval.judges.spec import JudgeSpec, parse_spec
from lioneval.judges.templates import PromptTemplate, followup_messages, mtbench_template_name, template_for
from lioneval.store import RunStore
from lioneval.types import Answer, Game, Judgment, Question, content_hash

log = logging.getLogger("lioneval.judge")

PAIRWISE_BENCHMARKS = ("arena-hard", "alpaca-eval")
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


def swap_for(instruction: str) -> bool:
    """AlpacaEval's order randomisation, made deterministic per instruction (same swap on every rerun)."""
    return hashlib.sha256(instruction.encode("utf-8")).digest()[0] % 2 == 1


class Judge:
    """A judge spec bound to a backend, with the templates it uses per benchmark."""

    def __init__(self, spec: JudgeSpec | str, backend: Backend | None = None):
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self._backend = backend
        self._templates: dict[tuple[str, str | None], PromptTemplate] = {}

    # -- identity ---------------------------------------------------------------------------------------------
    def template(self, benchmark: str, mode: str | None = None) -> PromptTemplate:
        key = (benchmark, mode)
        if key not in self._templates:
            source = self.spec.templates.get(f"{benchmark}/{mode}") or self.spec.templates.get(benchmark) or "auto"
            self._templates[key] = template_for(benchmark, mode, source=source)
        return self._templates[key]

    def _benchmark_templates(self, benchmark: str) -> list[PromptTemplate]:
        if benchmark == "mt-bench":
            modes = sorted({mtbench_template_name(c, t) for c in ("writing", "math") for t in (1, 2)})
            return [self.template(benchmark, m) for m in modes]
        return [self.template(benchmark)]

    def id_for(self, benchmark: str) -> str:
        tpl = [t.hash for t in self._benchmark_templates(benchmark)]
        ident = {"spec": self.spec.identity(), "templates": tpl, "parser": parsers.PARSER_VERSION}
        return f"{self.spec.label}#{content_hash(ident, 10)}"

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from lioneval.judges.backends import backend_for

            self._backend = backend_for(self.spec)
        return self._backend

    # -- requests ---------------------------------------------------------------------------------------------
    def requests(
        self,
        benchmark: str,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        baseline_answers: Sequence[Answer] = (),
    ) -> list[JudgeRequest]:
        """Judge requests for every answer that has its question (and, for pairwise benchmarks, a baseline)."""
        qs = {q.id: q for q in questions}
        base = {a.question_id: a for a in baseline_answers}
        out = []
        for a in answers:
            q = qs.get(a.question_id)
            if q is None:
                continue
            if benchmark == "mt-bench":
                out += self._mt_bench(q, a)
            elif benchmark in PAIRWISE_BENCHMARKS:
                b = base.get(a.question_id)
                if b is not None:
                    out.append(self._arena(q, a, b) if benchmark == "arena-hard" else self._alpaca(q, a, b))
            else:
                raise LionEvalError(f"no judge protocol for benchmark {benchmark!r}", fix="use a registered benchmark")
        return out

    def _mt_bench(self, q: Question, a: Answer) -> list[JudgeRequest]:
        reqs = []
        for turn in range(1, min(len(q.turns), len(a.turns)) + 1):
            tpl = self.template("mt-bench", mtbench_template_name(q.category, turn))
            values = {f"question_{i + 1}": t for i, t in enumerate(q.turns)}
            values |= {f"answer_{i + 1}": t for i, t in enumerate(a.turns)}
            values |= {f"ref_answer_{i + 1}": t for i, t in enumerate(q.reference or [])}
            values |= {"question": q.turns[0], "answer": a.turns[0], "ref_answer_1": (q.reference or [""])[0]}
            values = {k: v for k, v in values.items() if k in tpl.placeholders}
            reqs.append(
                JudgeRequest(
                    "mt-bench", q.id, a.model, "rating", [self._game_request(tpl, values, "single")], turn=turn,
                    meta={"category": q.category},
                )
            )
        return reqs

    def _arena(self, q: Question, a: Answer, b: Answer) -> JudgeRequest:
        tpl = self.template("arena-hard")
        games = []
        for first, second, pos in ((b, a, "B"), (a, b, "A")):  # game 1: baseline in A; game 2: model in A
            values = {"question_1": q.turns[0], "answer_1": first.turns[0], "answer_2": second.turns[0]}
            games.append(self._game_request(tpl, values, pos))
        return JudgeRequest("arena-hard", q.id, a.model, "pairwise", games, baseline=b.model)

    def _game_request(self, tpl: PromptTemplate, values: dict[str, str], position: str) -> GameRequest:
        prefill = PREFILL.get(tpl.output_format, "") if self.spec.prefill else ""
        messages = tpl.render(values)
        if prefill:
            messages = [*messages, {"role": "assistant", "content": prefill}]
        return GameRequest(messages, position, tpl, prefill)

    def _alpaca(self, q: Question, a: Answer, b: Answer) -> JudgeRequest:
        tpl = self.template("alpaca-eval")
        swapped = swap_for(q.turns[0])
        out1, out2 = (a, b) if swapped else (b, a)
        values = {"instruction": q.turns[0], "output_1": out1.turns[0], "output_2": out2.turns[0]}
        game = GameRequest(tpl.render(values), "A" if swapped else "B", tpl)
        return JudgeRequest("alpaca-eval", q.id, a.model, "pairwise", [game], baseline=b.model,
                            meta={"swapped": swapped})

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
        if store is not None:
            run.judgments += [j for j in store.judgments(benchmark=bench, judge=judge_id) if j.key in done]
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
        if req.benchmark != "arena-hard" or not self.spec.follow_up:
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
    benchmark: str,
    *,
    models: Sequence[str],
    baseline: str | None = None,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> JudgeRun:
    """Judge the stored answers of ``models`` on a benchmark (re-judging a stored run with another judge)."""
    questions = store.questions(benchmark=benchmark)
    answers = store.answers(benchmark=benchmark, model=list(models))
    if not answers:
        raise LionEvalError(
            f"no stored {benchmark} answers for {', '.join(models)}",
            fix="generate them with `lioneval run` or import them with `lioneval import`",
        )
    base = store.answers(benchmark=benchmark, model=baseline) if baseline else []
    if benchmark in PAIRWISE_BENCHMARKS and not base:
        raise LionEvalError(
            f"no stored answers of baseline {baseline!r} for {benchmark}",
            fix="import the baseline's answers (official model_answer/ or reference outputs) or pass --baseline",
        )
    t0 = time.perf_counter()
    run = judge_answers(judge, benchmark, questions, answers, base, store, retry_failed=retry_failed,
                        progress=progress)
    log.info("%s in %.1fs", run.line(), time.perf_counter() - t0)
    return run

def make_judge(spec: JudgeSpec | str, backend: Backend | None = None, **overrides: Any):
    """The judge object a spec names (a chat judge, a reward-model judge or an ensemble); overrides set fields."""
    spec = parse_spec(spec, **overrides)
    if spec.kind == "reward-model":
        from lioneval.judges.reward import RewardModelJudge

        return RewardModelJudge(spec)
    if spec.kind == "ensemble":
        from lioneval.judges.ensemble import EnsembleJudge

        return EnsembleJudge(spec)
    return Judge(spec, backend)


def judge_answers(
    judge,
    benchmark: str,
    questions: Sequence[Question],
    answers: Sequence[Answer],
    baseline_answers: Sequence[Answer] = (),
    store: RunStore | None = None,
    *,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> JudgeRun:
    """Judge answers with any kind of judge; what the store holds already costs nothing."""
    if isinstance(judge, Judge):
        reqs = judge.requests(benchmark, questions, answers, baseline_answers)
        return judge.run(reqs, store, retry_failed=retry_failed, progress=progress)
    return judge.run_answers(benchmark, questions, answers, baseline_answers, store, retry_failed=retry_failed)
