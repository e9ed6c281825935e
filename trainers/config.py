"""The typed configuration tree of the training stages, checked when it is built.

A recipe becomes :class:`StageConfig` subclasses (one per stage), each holding an :class:`EvalConfig` (its ``eval:``
block) whose ``suite`` is a :class:`lioneval.pipeline.RunConfig`. Every one of them checks itself on construction:
unknown keys (with the closest known one), wrong types (``patience: "3"``), out-of-range values (``limit: -1``),
names that do not exist (a benchmark in ``metric``, a judge kind). So a typo fails when the recipe loads, before a
model is loaded and before any checkpoint is written or deleted.

Errors name the place in the recipe (``stages[2] (dpo).eval.suite.limit``) and are :class:`ConfigError` (exit code
2 in the CLI). This module stays light: no torch at import.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import shutil
import types
import typing
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.errors import ConfigError, DataError, LionEvalError
from lioneval.judges.spec import parse_spec
from lioneval.pipeline import DEMO_DATA, RunConfig
from lioneval.registry import BENCHMARKS
from lioneval.trainers.evalset import check_best_model, evaluation_arguments

__all__ = [
    "DEMO_BASELINE",
    "DriftConfig",
    "EvalConfig",
    "JudgedSampling",
    "PeftConfig",
    "RANKINGS",
    "SequentialConfig",
    "StageConfig",
    "check_stage_name",
    "config_from_dict",
]

# The model name of the bundled demo's baseline answers (lioneval/data/demo, every pairwise benchmark).
DEMO_BASELINE = "demo-baseline"


def _help(default: Any, text: str, *, choices: tuple[Any, ...] | None = None, minimum: float | None = None,
          special: tuple[Any, ...] = ()) -> Any:
    """A dataclass field with help text (TRL-style) and the values it accepts: one of ``choices``, or at least
    ``minimum`` (values in ``special``, such as -1 for "unset", pass as well)."""
    meta: dict[str, Any] = {"help": text}
    if choices is not None:
        meta["choices"] = choices
    if minimum is not None:
        meta["minimum"] = minimum
    if special:
        meta["special"] = special
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# -- stage names --------------------------------------------------------------------------------------------------
_STAGE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def metric_bench(metric: str, where: str) -> str:
    """The benchmark of a BENCH/METRIC name, refused with the place it came from when malformed or unknown."""
    bench, sep, name = metric.partition("/")
    if not sep or not bench or not name:
        raise ConfigError(f"{where} {metric!r} is not BENCH/METRIC", fix="e.g. mt-bench/overall")
    try:
        BENCHMARKS.entry(bench)
    except LionEvalError as e:
        raise ConfigError(f"{where} {metric!r} names an {e.message}", fix=e.fix) from None
    return bench


def check_stage_name(name: Any, where: str = "stage") -> str:
    """A stage name that is safe in file names: letters, digits, ``-``, ``_`` and ``.``, never ``..``."""
    if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"{where} {name!r} is not a valid stage name: it becomes part of checkpoint and marker file names "
            f"(<stage>-step<N>, <stage>-promoted), so it may hold only letters, digits, '-', '_' and '.', and "
            f"neither '..' nor a path separator",
            fix="use a plain name such as sft, dpo or online-dpo",
        )
    return name


# -- typed fields ---------------------------------------------------------------------------------------------------
# Set by config_from_dict while it builds a config: the place in the recipe that error messages name.
_WHERE: ContextVar[str | None] = ContextVar("lioneval_config_where", default=None)

# PyYAML reads 1e-5 (YAML 1.1 wants 1.0e-5) as a string; for number fields that spelling is meant as a number.
_EXP_FLOAT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")


class _Mismatch(ConfigError):
    """A value of the wrong type at ``where`` (a union tries its next member)."""

    def __init__(self, message: str, *, fix: str, where: str):
        super().__init__(message, fix=fix)
        self.where = where


_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings", type(None): "nulls"}
_SINGULAR = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _describe(hint: Any, plural: bool = False) -> str:
    if hint is Any:
        return "values" if plural else "any value"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args)
    if origin in (list, tuple):
        return ("lists" if plural else "a list") + f" of {_describe(args[0], True)}"
    if origin is dict:
        return ("mappings" if plural else "a mapping") + f" of {_describe(args[0], True)} to {_describe(args[1], True)}"
    table = _PLURAL if plural else _SINGULAR
    if hint in table:
        return table[hint]
    name = getattr(hint, "__name__", str(hint))
    return f"{name} settings" if plural else f"a mapping of {name} settings"


def _mismatch(value: Any, hint: Any, where: str) -> _Mismatch:
    leaf = where.rpartition(".")[2]
    expected = _describe(hint)
    fix = f"give {leaf} {expected}"
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value) and hint is not str:
        fix = f"write {leaf}: {value.strip()} without quotes"
    return _Mismatch(f"{where} must be {expected}, not {value!r} ({type(value).__name__})", fix=fix, where=where)


def conform(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a type hint (and converted where YAML spells it otherwise); ConfigError if wrong."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return conform(value, a, where)
            except _Mismatch as e:
                if e.where != where and not e.where.startswith(where + "["):
                    raise  # a nested config's own field is wrong: that message is the useful one
        raise _mismatch(value, hint, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _EXP_FLOAT.fullmatch(value.strip()):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            items = [conform(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
            return items if origin is list else tuple(items)
    elif origin is dict:
        if isinstance(value, dict):
            return {conform(k, args[0], f"{where}[{k!r}]"): conform(v, args[1], f"{where}[{k!r}]")
                    for k, v in value.items()}
    elif isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict) and hasattr(hint, "coerce"):
            return hint.coerce(value, where=where)
    raise _mismatch(value, hint, where)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _closest(key: Any, names: list[str]) -> str:
    close = difflib.get_close_matches(str(key), names, n=1)
    return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_keys(data: Any, names: list[str], where: str, what: str) -> None:
    """Refuse a mapping that is not one, or has keys outside ``names`` (naming the closest known key)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of {what} settings, not {type(data).__name__}",
                          fix="write it as `key: value` lines")
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"unknown {what} key(s) in {where}: {', '.join(_closest(k, names) for k in unknown)}",
                          fix=f"use the fields of {what}: {', '.join(sorted(names))}")


def config_from_dict(cls: type, data: dict[str, Any], where: str | None = None) -> Any:
    """A config dataclass from a mapping, refusing unknown keys with the closest known one; a :class:`Checked`
    class then checks every value, naming ``where`` (the place in the recipe) in its errors."""
    where = where or cls.__name__
    check_keys(data, [f.name for f in dataclasses.fields(cls)], where, cls.__name__)
    token = _WHERE.set(where)
    try:
        return cls(**data)
    finally:
        _WHERE.reset(token)


class Checked:
    """Mixin of config dataclasses: on construction every field is checked against its type and its ``choices`` /
    ``minimum``, then :meth:`check` adds what the class knows (cross-field rules, names that must exist)."""

    def __post_init__(self) -> None:
        where = _WHERE.get() or type(self).__name__
        token = _WHERE.set(None)  # configs built while checking this one name their own place
        try:
            hints = _hints(type(self))
            for f in dataclasses.fields(self):  # type: ignore[arg-type]
                at = f"{where}.{f.name}"
                value = conform(getattr(self, f.name), hints[f.name], at)
                _check_range(value, f.metadata, at)
                setattr(self, f.name, value)
            self.check(where)
        finally:
            _WHERE.reset(token)

    def check(self, where: str) -> None:
        """Rules beyond single fields; ``where`` is this config's place in the recipe."""


def _check_range(value: Any, meta: Any, where: str) -> None:
    if value is None or value in meta.get("special", ()):
        return
    leaf = where.rpartition(".")[2]
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, not {value!r}{hint}",
                          fix=f"set {leaf} to one of {', '.join(map(str, choices))}")
    low = meta.get("minimum")
    if low is not None and isinstance(value, (int, float)) and value < low:
        also = "".join(f" or {s}" for s in meta.get("special", ()))
        raise ConfigError(f"{where} must be at least {low}{also}, not {value!r}", fix=f"set {leaf} to {low} or more")


def _prefixed(e: LionEvalError, where: str) -> ConfigError:
    msg = e.message if where in e.message else f"{where}: {e.message}"
    return ConfigError(msg, fix=e.fix)


def _checkpointing_name(args_cls: type) -> str:
    names = {f.name for f in dataclasses.fields(args_cls)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


# -- the evaluation block -----------------------------------------------------------------------------------------
@dataclass
class DriftConfig(Checked):
    """Drift analysis of each evaluated checkpoint (the `eval.drift:` block; lioneval.trainers.drift)."""

    reference: str = _help("", "Checkpoint the KL, length growth and near-copies are measured against; empty: the "
                               "checkpoint the stage started from.")
    prompts: int = _help(16, "Questions of the suite's first benchmark used (first turns).", minimum=1)
    samples: int = _help(2, "Answers sampled from the policy per prompt for the KL estimate.", minimum=1)
    max_new_tokens: int = _help(128, "Longest answer sampled or generated for the analysis.", minimum=1)
    near_copy_threshold: float = _help(0.8, "Character 5-gram Jaccard similarity to the reference model's answer "
                                            "at which an answer counts as a near-copy.", minimum=0)
    seed: int = _help(0, "Seed of the sampled answers.")

    @classmethod
    def coerce(cls, value: DriftConfig | dict[str, Any], *, where: str = "drift") -> DriftConfig:
        return value if isinstance(value, cls) else config_from_dict(cls, dict(value), where)


@dataclass
class SequentialConfig(Checked):
    """Adaptive evaluation in the training loop (the `eval.sequential:` block; lioneval.adaptive): each checkpoint is
    judged in a seeded question order, a batch at a time, until "better than the checkpoint that last improved
    (not better by more than `margin`)?" is settled by an anytime-valid test at the early-stopping level."""

    batch: int = _help(10, "Questions judged between two looks at the sequential test.", minimum=1)
    budget: int | None = _help(None, "Most judge calls per evaluated checkpoint (None: up to every question, after "
                                     "which the question stays open and counts as no improvement).", minimum=1)
    finish_improvements: bool = _help(True, "Judge the remaining questions of a checkpoint found better: it is the "
                                            "one later checkpoints are compared with, and promotion needs its "
                                            "complete report.")

    @classmethod
    def coerce(cls, value: SequentialConfig | dict[str, Any], *, where: str = "sequential") -> SequentialConfig:
        return value if isinstance(value, cls) else config_from_dict(cls, dict(value), where)


@dataclass
class EvalConfig(Checked):
    """Settings of LionEvalCallback (the `eval:` block of a recipe or stage)."""

    suite: dict[str, Any] = _help({}, "The quick suite: RunConfig fields (bench, judge, data, baseline, limit, "
                                      "subset, seed, rounds, max_new_tokens, batch_size, judge_prefill, "
                                      "judge_max_tokens).")
    demo_data: bool = _help(False, "Use lioneval's bundled demo question sets for benchmarks without `data`.")
    mode: str = _help("inline", "inline: training waits for each evaluation; background: an evaluator process it "
                                "starts (`lioneval watch`, warm for the whole run) evaluates the newest checkpoint "
                                "while training goes on; external: a `lioneval watch` you run (on any machine, same "
                                "store) evaluates, and early stopping reads its results from the store.",
                      choices=("inline", "background", "external"))
    on_save: bool = _help(True, "Evaluate every saved checkpoint.")
    on_evaluate: bool = _help(False, "Evaluate inside Trainer.evaluate and add the scores to its metrics "
                                     "(eval_lioneval_<bench>_<metric>) for metric_for_best_model and "
                                     "EarlyStoppingCallback.")
    metric: str | None = _help(None, "BENCH/METRIC that early stopping watches, e.g. mt-bench/overall; default: "
                                     "the headline metric of the suite's first benchmark.")
    greater_is_better: bool | None = _help(None, "Whether a higher `metric` is better; default: what the "
                                                 "benchmark says of its metric.")
    patience: int | None = _help(None, "Stop after this many consecutive evaluations that are not significantly "
                                       "better than the best one so far (a plateau; see stop_on_plateau), or that are "
                                       "significantly worse than it (a drop), on paired per-question differences "
                                       "(see alpha, margin, horizon; None: never on scores).", minimum=1)
    stop_on_plateau: bool = _help(True, "Count a plateau against patience: an evaluation that is not significantly "
                                        "better than the checkpoint that last improved significantly (the first "
                                        "one, to begin with). false: only significant drops count.")
    alpha: float = _help(0.05, "Error rate of early stopping's paired one-sided tests: the chance that a run whose "
                               "checkpoints are all equally good is stopped for a drop within `horizon` evaluations "
                               "(each test runs at alpha * patience / (horizon - 1); the drop test is also "
                               "Bonferroni-adjusted for the evaluations the best one was chosen from). An improvement "
                               "(which resets the plateau count) is called at the same per-test level. Between 0 "
                               "and 1.", minimum=0)
    horizon: int | None = _help(None, "Evaluations the false-stop rate is held over (None: the trainer's planned "
                                      "number, max_steps / save_steps, else 10).", minimum=2)
    margin: float = _help(0.0, "Differences within this many units of the watched metric (e.g. 0.1 MT-Bench point) "
                               "do not count: a drop must be significantly larger than the margin, and so must an "
                               "improvement.", minimum=0)
    stop_on_cheat: bool = _help(True, "Stop at once when a cheat check flags an evaluated checkpoint: an injection "
                                      "aimed at the judge, constant or near-duplicate answers, a gameable judge. "
                                      "Other flags (answers that ignore their question) and warnings (length, style) "
                                      "never stop training. Either way a flagged checkpoint is logged as flagged and "
                                      "never becomes the best one, and early stopping goes on.")
    max_failed_evaluations: int | None = _help(3, "Stop training after this many evaluations in a row failed (an "
                                                  "error, a judge that is down, unreadable verdicts); the checkpoint "
                                                  "is saved whole, so training can resume from it. A failed "
                                                  "evaluation is logged and stored and training goes on. None: "
                                                  "never stop for failures.", minimum=1)
    log_metrics: list[str] | None = _help(None, "BENCH/METRIC names to log; default every metric of each report "
                                                "except per-category ones.")
    store: str | None = _help(None, "Run store the evaluations are written to (default: lioneval.db; a recipe "
                                    "sets its own).")
    background_threads: int = _help(1, "Torch threads of the background worker.", minimum=1)
    background_nice: int = _help(5, "Scheduling niceness of the background worker. 5 (the default) leaves training "
                                    "most of a busy CPU while evaluation still moves (about a quarter of a core "
                                    "beside each training thread); 19 runs it on idle CPU time only, which on a "
                                    "machine whose cores training keeps busy means almost never.", minimum=0)
    wait_at_end: bool = _help(True, "At the end of training, wait for background evaluations still running.")
    drift: DriftConfig | None = _help(None, "Drift analysis of every evaluated checkpoint against the stage's "
                                            "starting model (DriftConfig fields: KL with a CI, answer lengths, "
                                            "near-copies), stored in the reports' meta and logged as "
                                            "lioneval/drift/*. None: off.")
    sequential: SequentialConfig | bool | None = _help(
        None, "Adaptive evaluation (SequentialConfig fields: batch, budget, finish_improvements; true: the "
              "defaults): after the first checkpoint, judging stops as soon as the new checkpoint is shown better "
              "than the one that last improved, or not better by more than `margin` (anytime-valid betting "
              "confidence sequences at the early-stopping level). Saves judge calls and generation; patience, "
              "alpha and margin keep their meaning. None/false: every question is judged.")

    @classmethod
    def coerce(cls, value: EvalConfig | dict[str, Any] | None, *, where: str = "eval") -> EvalConfig:
        if isinstance(value, cls):
            return value
        return config_from_dict(cls, dict(value) if isinstance(value, dict) else ({} if value is None else value),
                                where)

    def check(self, where: str) -> None:
        self._where = where
        if isinstance(self.sequential, bool):
            self.sequential = SequentialConfig() if self.sequential else None
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{where}.alpha must be between 0 and 1, not {self.alpha!r}", fix="e.g. alpha: 0.05")
        suite = self._suite()
        if not suite.bench:
            raise ConfigError(f"{where}.suite.bench names no benchmark", fix="e.g. bench: [mt-bench]")
        if self.metric is None:
            self.metric = f"{suite.bench[0]}/{BENCHMARKS.get(suite.bench[0]).headline}"
        bench = metric_bench(self.metric, f"{where}.metric")
        if bench not in suite.bench:
            raise ConfigError(f"{where}.metric {self.metric!r} watches {bench}, which {where}.suite does not "
                              f"evaluate (bench: {', '.join(suite.bench)})",
                              fix=f"add {bench} to suite.bench, or watch a metric of {', '.join(suite.bench)}")
        if self.greater_is_better is None:
            self.greater_is_better = bool(BENCHMARKS.get(bench).higher_is_better)
        for i, m in enumerate(self.log_metrics or []):
            metric_bench(m, f"{where}.log_metrics[{i}]")
        if suite.judge:
            try:
                parse_spec(suite.judge)
            except LionEvalError as e:
                raise _prefixed(e, f"{where}.suite.judge") from None


    def _suite(self) -> Any:
        """The suite as the pipeline's RunConfig (every field checked), before demo data is filled in."""
        where = f"{getattr(self, '_where', 'eval')}.suite"
        suite = dict(self.suite)
        if isinstance(suite.get("bench"), str):
            suite["bench"] = [suite["bench"]]
        hints = _hints(RunConfig)
        for k, v in suite.items():
            if k in hints:  # unknown keys: RunConfig.from_dict names the closest
                suite[k] = conform(v, hints[k], f"{where}.{k}")
        try:
            return RunConfig.from_dict(suite, where=where)
        except LionEvalError as e:
            raise _prefixed(e, where) from None

    def run_config(self) -> Any:
        """The pipeline's RunConfig for this suite, with the demo's data and baselines when ``demo_data``."""
        cfg = self._suite()
        if self.demo_data:
            data, baseline = {}, {}
            for b in cfg.bench:
                bench = BENCHMARKS.get(b)
                if bench.demo_data:
                    data[b] = str(DEMO_DATA / bench.demo_data)
                if bench.kind == "pairwise":
                    baseline[b] = DEMO_BASELINE
            cfg = dataclasses.replace(cfg, data={**data, **cfg.data}, baseline={**baseline, **cfg.baseline})
        if not cfg.judge:
            where = getattr(self, "_where", "eval")
            raise ConfigError(f"{where}.suite has no judge", fix="set eval.suite.judge to a judge spec (see "
                                                                 "`lioneval list judges`)")
        return cfg


# -- sampling answers for a judge to score ---------------------------------------------------------------------------
RANKINGS = ("rating", "pairwise")


@dataclass
class JudgedSampling:
    """The settings of a stage that samples answers from its policy and has a judge score them (online DPO,
    rejection sampling): one set of keys, mixed into each such stage's config."""

    prompts: str = _help("", "Prompts to sample from: JSONL with `prompt` (a string or chat messages) per line, or a "
                             "text file with one prompt per line.")
    judge: str = _help("", "Judge spec that scores the samples (see `lioneval list judges`), e.g. "
                           "openai-compatible:M@URL, reward-model:PATH or reward-model:@<reward-model stage>.")
    ranking: str = _help("rating", "rating: score each answer alone; pairwise: compare each with the first sample.",
                         choices=RANKINGS)
    judge_benchmark: str | None = _help(None, "Benchmark whose judging protocol (prompt template, verdict format) "
                                              "scores the samples; its kind must match `ranking`. Default: the "
                                              "first registered benchmark of that kind (MT-Bench for rating, "
                                              "Arena-Hard-Auto for pairwise).")
    judge_prefill: bool = _help(False, "Start the judge's reply with the verdict format (small local judges).")
    k: int = _help(4, "Answers sampled per prompt.", minimum=2)
    temperature: float = _help(0.8, "Sampling temperature.", minimum=0)
    top_p: float = _help(1.0, "Nucleus sampling threshold.", minimum=0)
    max_new_tokens: int = _help(128, "Longest sampled answer.", minimum=1)
    generation_batch_size: int = _help(8, "Chats per generate() call.", minimum=1)


# -- LoRA -----------------------------------------------------------------------------------------------------------
@dataclass
class PeftConfig(Checked):
    """LoRA settings of a stage (its `peft_config:` block): the stage trains a low-rank adapter on frozen weights and
    saves only the adapter (megabytes, not the whole model). An adapter checkpoint names the checkpoint it applies to
    (the stage's start, itself maybe an adapter), and is evaluated as that model with the adapter merged in."""

    r: int = _help(16, "Rank of the update matrices.", minimum=1)
    alpha: float = _help(32.0, "Scale of the update: it is multiplied by alpha / r.", minimum=0)
    dropout: float = _help(0.0, "Dropout on the adapter's input.", minimum=0)
    target_modules: list[str] | str = _help("all-linear", "Modules that get an adapter: names (e.g. [q_proj, "
                                                          "v_proj]) or all-linear (every linear layer but the "
                                                          "output head).")

    @classmethod
    def coerce(cls, value: PeftConfig | dict[str, Any], *, where: str = "peft_config") -> PeftConfig:
        return value if isinstance(value, cls) else config_from_dict(cls, dict(value), where)

    def check(self, where: str) -> None:
        if not self.dropout < 1:
            raise ConfigError(f"{where}.dropout must be below 1, not {self.dropout!r}", fix="e.g. dropout: 0.05")
        if not self.target_modules:
            raise ConfigError(f"{where}.target_modules names no module", fix="e.g. target_modules: all-linear")

    def lora(self, task_type: str = "CAUSAL_LM") -> Any:
        """peft's LoraConfig for a causal LM (``task_type``: peft's task, e.g. SEQ_CLS for a reward model)."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, task_type=task_type,
                          target_modules=self.target_modules)


# -- what every stage shares ----------------------------------------------------------------------------------------
@dataclass
class StageConfig(Checked):
    """What every stage shares: where it starts, where checkpoints go, the usual optimisation settings."""

    model: str = _help("", "Starting checkpoint: a directory, a .gguf file, `smollm2` or `tiny[:k=v,...]`. In a "
                           "recipe, leave it empty to start from the checkpoint promoted out of the previous stage.")
    name: str = _help("", "Stage name used in checkpoint names (<output_dir>/<name>-step<N>); default: the stage "
                          "kind (sft, dpo, online-dpo). Letters, digits, '-', '_' and '.'.")
    output_dir: str = _help("out", "Checkpoints appear as <output_dir>/<name>-step<N>, links to the trainer's "
                                   "<output_dir>/<name>/checkpoint-<N>. A stage run replaces that stage's earlier "
                                   "checkpoints there.")
    max_steps: int = _help(-1, "Optimizer steps to run (-1: num_train_epochs decides).", minimum=1, special=(-1,))
    num_train_epochs: float = _help(1.0, "Passes over the data when max_steps is -1.", minimum=0)
    learning_rate: float = _help(1e-5, "Peak learning rate.", minimum=0)
    per_device_train_batch_size: int = _help(4, "Examples (SFT: packed rows) per device and step.", minimum=1)
    gradient_accumulation_steps: int = _help(1, "Batches accumulated into one optimizer step.", minimum=1)
    lr_scheduler_type: str = _help("linear", "Learning-rate schedule (transformers SchedulerType).")
    warmup_steps: int = _help(0, "Linear warmup steps.", minimum=0)
    weight_decay: float = _help(0.0, "AdamW weight decay.", minimum=0)
    max_grad_norm: float = _help(1.0, "Gradient clipping norm.", minimum=0)
    save_steps: int = _help(50, "Save (and evaluate, when `eval` is set) every N steps; the last step is always "
                                "saved.", minimum=1)
    save_total_limit: int | None = _help(None, "Keep at most this many checkpoints (older ones are deleted; do not "
                                               "combine a small limit with background evaluation).", minimum=1)
    logging_steps: int = _help(10, "Log the training loss every N steps.", minimum=1)
    seed: int = _help(0, "Seed of data order, initialisation and sampling.")
    bf16: bool = _help(False, "Train in bfloat16 mixed precision (GPU).")
    activation_checkpointing: bool = _help(False, "Recompute activations in the backward pass: less memory, about "
                                                  "a third more compute.")
    attn_implementation: str = _help("sdpa", "Attention kernel: sdpa, eager, flash_attention_2, ...")
    report_to: list[str] = _help(["none"], "Logging integrations: tensorboard, wandb, ... (`none`: only the "
                                           "trainer state).")
    eval: EvalConfig | None = _help(None, "LionEvalCallback settings (EvalConfig fields): the quick suite that "
                                          "scores each saved checkpoint, early stopping. None: no evaluation.")
    eval_data: str = _help("", "Eval set for Trainer.evaluate (eval loss; the best-model settings), a file in the "
                               "stage's data format; default: a held-out share of the training data when the stage "
                               "evaluates (see eval_split).")
    eval_split: float | None = _help(None, "Share (below 1) or number of training examples held out as the eval set, "
                                           "drawn with `seed`; None: 0.1 when the stage evaluates (eval.on_evaluate, "
                                           "or eval_strategy / metric_for_best_model / load_best_model_at_end in "
                                           "training_args), else none.", minimum=0)
    peft_config: PeftConfig | None = _help(None, "Train a LoRA adapter instead of every weight (PeftConfig "
                                                 "fields: r, alpha, dropout, target_modules; {} for the defaults). "
                                                 "None: full fine-tuning.")
    training_args: dict[str, Any] = _help({}, "Any other TrainingArguments (or TRL config) field, passed through, "
                                              "e.g. {save_only_model: true}.")

    KIND = ""
    # Fields that must be set for the stage to run, and fields naming an input file that must exist.
    REQUIRED = ()  # not annotated: class settings, not fields
    INPUT_FILES = ()

    def check(self, where: str) -> None:
        if self.name:
            check_stage_name(self.name, f"{where}.name")
        check_best_model(self, where)
        if self.eval is not None and not self.eval.suite.get("judge"):
            raise ConfigError(f"{where}.eval.suite has no judge: the stage evaluates its checkpoints with one",
                              fix="set eval.suite.judge to a judge spec (see `lioneval list judges`), or eval: null")

    def check_inputs(self, where: str | None = None) -> None:
        """Refuse a stage whose required settings are empty or whose input files do not exist."""
        where = where or f"the {self.stage} stage"
        for name in self.REQUIRED:
            if not getattr(self, name):
                help_text = next(f.metadata["help"] for f in dataclasses.fields(self) if f.name == name)
                raise ConfigError(f"{where} has no {name}", fix=f"set `{name}:` ({help_text})")
        for name in self.INPUT_FILES:
            value = getattr(self, name)
            if value and not value.startswith("@") and not Path(value).is_file():  # @stage: an earlier stage's output
                raise DataError(f"{where}: {name} {value!r} is not a file",
                                fix=f"set `{name}:` to an existing file (a relative path is read from the recipe's "
                                    "folder, else from the working directory)")

    @property
    def stage(self) -> str:
        return self.name or self.KIND

    @property
    def stage_dir(self) -> Path:
        return Path(self.output_dir) / self.stage

    @property
    def judgments_store(self) -> Path:
        """The run store of the judgments of this stage's own samples, ``<output_dir>/<stage>-judgments.db``: apart
        from the benchmark judgments (whose leaderboards training samples must not join) and kept when the stage
        runs again, so a rerun pays for no judge call twice."""
        return Path(self.output_dir) / f"{self.stage}-judgments.db"

    def training_arguments(self, args_cls: type, **stage_specific: Any) -> Any:
        """The trainer's arguments object (TrainingArguments or a TRL config) from this config."""
        import torch

        kw: dict[str, Any] = {
            "output_dir": str(self.stage_dir),
            "max_steps": self.max_steps,
            "num_train_epochs": self.num_train_epochs,
            "learning_rate": self.learning_rate,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "lr_scheduler_type": self.lr_scheduler_type,
            "warmup_steps": self.warmup_steps,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "seed": self.seed,
            "bf16": self.bf16,
            # transformers before 5.23 calls it gradient_checkpointing
            _checkpointing_name(args_cls): self.activation_checkpointing,
            "report_to": list(self.report_to),
            "dataloader_num_workers": 0,
            "dataloader_pin_memory": torch.cuda.is_available(),  # pinning without a GPU only warns
            **evaluation_arguments(self),
            **stage_specific,
        }
        kw.update(self.training_args)
        try:
            return args_cls(**kw)
        except (ValueError, TypeError) as e:  # transformers' own checks: a one-line error, not a traceback
            raise ConfigError(f"the {self.stage} stage's training arguments are refused by {args_cls.__name__}: "
                              f"{' '.join(str(e).split())}", fix="change the settings it names (training_args, "
                                                                   "save_steps, eval settings)") from None

    def fresh_stage_dir(self) -> None:
        """Remove this stage's checkpoints and links from an earlier run, so that promotion sees only this run's."""
        out = Path(self.output_dir)
        check_stage_name(self.stage)  # never remove a folder outside output_dir
        if self.stage_dir.exists():
            shutil.rmtree(self.stage_dir)
        if out.is_dir():
            for link in out.glob(f"{self.stage}-step*"):
                if link.is_symlink():
                    link.unlink()
