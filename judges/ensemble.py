"""Ensembles of judges: each member judges (and caches) under its own id; the ensemble aggregates their values.

``mean`` averages the members' values. ``majority`` votes: for pairwise judgments each member's value counts as a
win (> 0.5), loss (< 0.5) or tie, and the most common outcome wins (a split vote is a tie); for ratings it takes
the median.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from lioneval import benchmarks
from lioneval.judges.judge import BenchRef, JudgeRun, make_judge
from lioneval.judges.spec import JudgeSpec
from lioneval.store import RunStore
from lioneval.types import Answer, Game, Judgment, Question, content_hash


class EnsembleJudge:
    def __init__(self, spec: JudgeSpec, members: Sequence | None = None):
        self.spec = spec
        self.members = list(members) if members is not None else [make_judge(m) for m in spec.members]
        if spec.aggregate not in ("mean", "majority"):
            raise ValueError(f"unknown ensemble aggregate {spec.aggregate!r}: use mean or majority")

    @classmethod
    def from_spec(cls, spec: JudgeSpec, backend: Any = None) -> EnsembleJudge:
        return cls(spec)

    def id_for(self, benchmark: BenchRef) -> str:
        ident = {"members": [m.id_for(benchmark) for m in self.members], "aggregate": self.spec.aggregate}
        return f"{self.spec.label}#{content_hash(ident, 10)}"

    def run_answers(
        self,
        benchmark: BenchRef,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        baseline_answers: Sequence[Answer] = (),
        store: RunStore | None = None,
        *,
        retry_failed: bool = False,
        progress: Any = None,
    ) -> JudgeRun:
        """The Judge protocol: every member judges (cached judgments included), the ensemble aggregates."""
        bench = benchmarks.load(benchmark)
        runs = [
            m.run_answers(bench, questions, answers, baseline_answers, store, retry_failed=retry_failed)
            for m in self.members
        ]
        judge_id = self.id_for(bench)
        benchmark = bench.name
        groups: dict[tuple, list[Judgment]] = defaultdict(list)
        for r in runs:
            for j in r.judgments:
                groups[(j.question_id, j.model, j.turn, j.baseline, j.kind)].append(j)
        out = []
        for (qid, model, turn, baseline, kind), js in groups.items():
            if len(js) != len(self.members):
                continue  # a member did not answer (transport failure): judge it again next run
            value = self._aggregate(kind, [j.value for j in js if j.value is not None])
            out.append(Judgment(
                question_id=qid, benchmark=benchmark, judge=judge_id, model=model, kind=kind, turn=turn,
                baseline=baseline, value=value,
                games=[Game(model_position="single", label=j.judge, value=j.value, error=j.error) for j in js],
                inputs=content_hash(sorted(j.key for j in js)),
                error=None if value is not None else "no member gave a value",
                meta={"members": [j.judge for j in js]},
            ))
        if store is not None:
            store.put_judgments(out)
        run = JudgeRun(judge=judge_id, requested=len(groups), judged=len(out), judgments=out)
        run.parse_failures = sum(j.failed for j in out)
        for r in runs:
            run.calls += r.calls
            run.prompt_tokens += r.prompt_tokens
            run.completion_tokens += r.completion_tokens
            run.transport_failures += r.transport_failures
            if r.cost_usd is not None:
                run.cost_usd = (run.cost_usd or 0.0) + r.cost_usd
        return run

    def _aggregate(self, kind: str, values: list[float]) -> float | None:
        if not values:
            return None
        if self.spec.aggregate == "mean":
            return sum(values) / len(values)
        if kind == "rating":
            return float(statistics.median(values))
        votes = Counter(1.0 if v > 0.5 else 0.0 if v < 0.5 else 0.5 for v in values)
        (top, n), *rest = votes.most_common()
        return 0.5 if rest and rest[0][1] == n else top
