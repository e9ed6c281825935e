"""Evaluation in the training loop: ``LionEvalCallback`` scores checkpoints with a quick lioneval suite.

What it does, per saved checkpoint (``on_save``) and optionally per evaluation (``on_evaluate``):

* names the checkpoint ``<stage>-step<N>`` (a link next to the trainer's ``checkpoint-<N>``), so ``identify()``
  and the store know its stage and step;
* runs the suite (``lioneval.pipeline.run``: answers, judgments, statistics, cheat checks and the Report, all
  written to the store) inline, or in a background process so training does not wait;
* logs every headline metric with its confidence interval through ``Trainer.log``, so TensorBoard, W&B and the
  trainer state get them: ``lioneval/mt-bench/overall``, ``lioneval/mt-bench/overall_ci_low``, ``..._ci_high``,
  ``lioneval/mt-bench/cheat_flagged`` and ``lioneval/step`` (the checkpoint's step: background results arrive some
  steps after the checkpoint they score); with ``drift:`` set, also the checkpoint's drift from the stage's start
  (lioneval.trainers.drift): ``lioneval/drift/kl`` with ``kl_ci_low`` / ``kl_ci_high``, ``length_mean``,
  ``length_growth``, ``near_copy_share``;
* with ``on_evaluate: true``, evaluates the current weights during ``Trainer.evaluate`` and adds the scores to its
  metrics as ``eval_lioneval_<bench>_<metric>`` (``/`` becomes ``_``: ``eval_lioneval_mt-bench_overall``), so
  ``metric_for_best_model="lioneval_mt-bench_overall"``, ``load_best_model_at_end`` and transformers'
  ``EarlyStoppingCallback`` use them;
* early stopping (``patience``) on paired decisions (``lioneval.decisions``): the new checkpoint is compared with
  the best eligible checkpoint so far on per-question differences of the watched metric, from each evaluation's own
  stored judgments (the store the evaluations are written to), with one-sided paired t-tests. Training stops after
  ``patience`` consecutive evaluations that are *not significantly better* than the checkpoint that last improved
  significantly (a plateau; the first evaluation, to begin with; ``stop_on_plateau``), or that are *significantly
  worse* than the best one (a drop, by more than ``margin``; the one-sided p is Bonferroni-adjusted by the number of
  earlier evaluations the best was chosen from). Each test runs at ``alpha * patience / (horizon - 1)``
  (``decisions.strike_level``; ``horizon``: the trainer's planned number of evaluations, else 10), which holds the
  chance that a flat run is stopped for a *drop* within the horizon at ``alpha`` whatever the patience
  (``benchmarks/decision_sim.py`` measures it); a flat run does stop for a plateau, after ``patience`` evaluations
  and never sooner. Improvement is measured against the checkpoint that last improved significantly rather than the
  highest score so far, so gains too small to detect between neighbouring checkpoints count once they add up.
  When the judgments are not in the store, an unpaired test on the two reports' estimates stands in. Every
  evaluation logs the smallest difference its test can detect (``lioneval/<bench>/<metric>_mde``, and a log line).
  The Decision of each evaluation is stored as a check named ``early_stopping`` on its run (``meta["decision"]``):
  promotion reads the same Decisions and never promotes a checkpoint early stopping found significantly worse than
  another eligible one. A stop is recorded as an ``EarlyStop`` record (``RunStore.early_stops()``: stage, the run
  that triggered it, model, checkpoint, step, reason, metric, ``meta["cause"]``: plateau, drop, cheat or
  failed_evaluations, and the Decision in ``meta``);
* sequential mode (``sequential: true`` or ``{batch, budget, finish_improvements}``; ``lioneval.adaptive``): the
  first checkpoint is evaluated in full; each later one is judged in a seeded question order, a batch at a time,
  only until an anytime-valid test (betting confidence sequences) settles "better than the checkpoint that last
  improved, or not better by more than ``margin``?" at the per-evaluation level above. Better improves (and its run
  is then finished, as the next one to beat and for promotion); worse by more than the margin strikes; anything else
  counts towards the plateau. The Decision (method ``betting-cs``) is stored like any other, and
  ``lioneval/<bench>/questions_judged`` is logged;
* cheat checks: a flag of ``CHEAT_CHECKS`` (an injection aimed at the judge, constant or near-duplicate answers, a
  gameable judge) stops training at once with ``stop_on_cheat`` (the default). Any flagged checkpoint (answers that
  ignore their question too) is logged as flagged and never becomes the best one, as promotion never picks it;
  otherwise it is compared like any other, so early stopping goes on with ``stop_on_cheat: false``. Warnings
  (length, style, truncation) change nothing;
* a failed evaluation is an event, never a crash: whatever the evaluator raises (a judge that is down, a checkpoint
  without a tokenizer, any error) and any incomplete report (unanswered or unreadable verdicts) is logged (python
  logger and ``Trainer.log``: ``lioneval/failed``, ``lioneval/failed_in_a_row``), stored as a check named
  ``evaluation_failed`` (status "warn", ``meta["error"]``), and decides nothing (no best, no strike, no plateau
  count). The injected ``eval_lioneval_...`` metric is then the worst value there is (``-inf``, or ``+inf`` where
  lower is better), so ``metric_for_best_model`` always finds it and neither ``load_best_model_at_end`` nor
  ``EarlyStoppingCallback`` takes the evaluation for an improvement; a flagged checkpoint's injected value is the
  worst value too. After ``max_failed_evaluations`` failures in a row (default 3) training stops cleanly: the
  trainer still saves the checkpoint whole, so training can resume from it.

Wiring it into a transformers or TRL trainer::

    cb = LionEvalCallback({"suite": {"bench": ["mt-bench"], "judge": "openai:gpt-4o", "limit": 20},
                           "on_evaluate": True, "patience": 3, "store": "lioneval.db"})
    args = TrainingArguments(..., eval_strategy="steps", eval_steps=200, save_strategy="steps", save_steps=200,
                             metric_for_best_model="lioneval_mt-bench_overall", greater_is_better=True,
                             load_best_model_at_end=True)
    trainer = Trainer(..., args=args, eval_dataset=small_eval_set,
                      callbacks=[cb, EarlyStoppingCallback(early_stopping_patience=3)])   # this order
    cb.attach(trainer)   # logging through trainer.log, and a check of the settings below
    trainer.train()

Required for metric injection: LionEvalCallback must come *before* EarlyStoppingCallback in ``callbacks`` (the
trainer calls ``on_evaluate`` in list order, and EarlyStoppingCallback reads the metrics when its turn comes;
``attach`` refuses the wrong order); ``eval_strategy`` must equal ``save_strategy`` with equal steps (transformers
requires this for ``load_best_model_at_end``, and it is what makes the scored weights the ones saved as
``checkpoint-<N>``); the trainer needs an ``eval_dataset`` (any small one) for ``evaluate`` to run; injection
evaluates inline (a background result would come too late for the decision at that step). ``on_evaluate`` writes
the weights into ``checkpoint-<N>`` before the trainer saves there (the same bytes, so one checkpoint identity).

Background mode starts one ``lioneval watch`` process (``lioneval.watch``) on the checkpoint links of the stage, with
``background_threads`` CPU threads at nice ``background_nice``: it imports, loads data and sets up the judge once for
the whole run, evaluates the newest checkpoint whenever it falls behind (the older ones it skips are recorded as
skipped), and is told to finish when training ends (``wait_at_end`` waits for it). A suite ``policy`` with ``{ckpt}``
or ``{name}`` in it says how the watcher serves a checkpoint (default: transformers on it). External mode leaves the
evaluation to a ``lioneval watch`` run elsewhere on the same store. In both, training never waits: at each step end
(at most once a second) the callback reads the watcher's results for its checkpoints from the store and records
them against their own steps, so early stopping acts on the newest decision. With an evaluator of its own (not the
pipeline), background mode runs it in a spawned worker process instead (a script then needs the ``if __name__ ==
"__main__":`` guard). Call ``close()`` (the stages do) to stop the worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import TrainerCallback

from lioneval import adaptive, decisions
from lioneval.checkpoint import identify
from lioneval.errors import LionEvalError
from lioneval.judges.judge import make_judge
from lioneval.pipeline import run
from lioneval.store import DEFAULT_STORE, RunStore, is_url
from lioneval.trainers.config import EvalConfig, StageConfig, check_stage_name
from lioneval.trainers.drift import add_drift, drift_logs, with_reference
from lioneval.trainers.models import resolve_judge, resolve_model
from lioneval.trainers.promotion import EARLY_STOP_CHECK, FAILED_CHECK
from lioneval.trainers.stage import StageResult
from lioneval.trainers.state_file import add_log_entry
from lioneval.types import CheckResult, EarlyStop, Estimate, Report
from lioneval.watch import Awaited, collect, start_watcher

log = logging.getLogger("lioneval.train")

__all__ = [
    "CHEAT_CHECKS",
    "CheckpointLinker",
    "EvalConfig",
    "Evaluation",
    "LionEvalCallback",
    "PipelineEvaluator",
    "StageHooks",
    "bounds",
    "link_checkpoint",
    "metric_key",
]

# (checkpoint path, step) -> Reports. The default runs lioneval.pipeline; tests inject scripted ones.
Evaluator = Callable[[str, int], list[Report]]

# The checks whose flag stops training (with stop_on_cheat): the policy writes to the judge instead of answering
# (injection), gives the same answer everywhere (duplicates: constant or near-duplicate answers), or is scored by a
# judge that a constant answer games. Other flags (ignores_question: a weak model's off-topic answers look the same)
# keep a checkpoint from becoming the best one but never stop training; warnings (length, style) change nothing.
CHEAT_CHECKS = ("injection", "duplicates", "judge_gameable")


# -- checkpoint names -------------------------------------------------------------------------------------------
def link_checkpoint(run_dir: str | Path, step: int, stage: str, links_dir: str | Path, step_offset: int = 0) -> Path:
    """Make ``<links_dir>/<stage>-step<step+offset>`` point at ``<run_dir>/checkpoint-<step>``; returns the link.

    The trainer keeps owning ``checkpoint-<N>`` (resuming, rotation and ``load_best_model_at_end`` read it); the
    link gives the checkpoint the name lioneval identifies stage and step by. With an offset (online DPO rounds),
    the checkpoint's trainer_state.json gets the overall step too, as ``identify()`` reads it from there.
    """
    target = Path(run_dir) / f"checkpoint-{step}"
    link = Path(links_dir).absolute() / f"{stage}-step{step + step_offset}"
    rel = os.path.relpath(target.absolute(), link.parent)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if os.readlink(link) == rel:
            _patch_state(target, step, step_offset)
            return link
        link.unlink()
    elif link.exists():
        raise LionEvalError(f"{link} exists and is not a link lioneval made",
                            fix="move it away, or train into another output_dir")
    os.symlink(rel, link, target_is_directory=True)
    _patch_state(target, step, step_offset)
    return link


def _patch_state(target: Path, step: int, offset: int) -> None:
    state = target / "trainer_state.json"
    if not offset or not state.is_file():
        return
    data = json.loads(state.read_text())
    if data.get("global_step") == step + offset:
        return
    data["round_global_step"] = data.get("global_step", step)
    data["global_step"] = step + offset
    state.write_text(json.dumps(data, indent=2))


def _prune_dangling(links_dir: str | Path, stage: str) -> None:
    d = Path(links_dir)
    if d.is_dir():
        for link in d.glob(f"{stage}-step*"):
            if link.is_symlink() and not link.exists():  # the trainer rotated its checkpoint away
                link.unlink()


class CheckpointLinker(TrainerCallback):
    """Links every saved checkpoint as ``<stage>-step<N>`` and makes sure the last step is saved."""

    def __init__(self, stage: str, links_dir: str | Path, *, step_offset: int = 0, save_last: bool = True):
        self.stage = stage
        self.links_dir = Path(links_dir)
        self.step_offset = step_offset
        self.save_last = save_last
        self.saved: list[str] = []

    def on_step_end(self, args, state, control, **kwargs):
        if self.save_last and state.max_steps and state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        link = link_checkpoint(args.output_dir, state.global_step, self.stage, self.links_dir, self.step_offset)
        if str(link) not in self.saved:
            self.saved.append(str(link))
        _prune_dangling(self.links_dir, self.stage)
        return control

    @property
    def checkpoints(self) -> list[str]:
        return [p for p in self.saved if Path(p).exists()]


# -- evaluators -----------------------------------------------------------------------------------------------------
_JUDGES: dict[tuple, Any] = {}  # per process: a local judge model is loaded once, not per checkpoint


def _judge_for(cfg: Any) -> Any:
    overrides: dict[str, Any] = {"max_tokens": cfg.judge_max_tokens} if cfg.judge_max_tokens else {}
    if cfg.judge_prefill:
        overrides["prefill"] = True
    key = (cfg.judge, tuple(sorted(overrides.items())))
    if key not in _JUDGES:
        _JUDGES[key] = make_judge(cfg.judge, None, **overrides)
    return _JUDGES[key]


@dataclass
class PipelineEvaluator:
    """Evaluates a checkpoint with ``lioneval.pipeline.run`` (everything stored, reruns cost nothing)."""

    suite: Any  # RunConfig
    store: str
    drift: Any = None  # DriftConfig with its reference: drift analysis added to the reports (trainers.drift)

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        cfg = dataclasses.replace(self.suite, ckpt=checkpoint)
        with RunStore(self.store) as st:
            reports = run(cfg, st, judge=_judge_for(cfg)).reports
            return add_drift(st, reports, cfg, checkpoint, self.drift) if self.drift is not None else reports


def _evaluate_in_worker(evaluator: Evaluator, checkpoint: str, step: int, threads: int) -> list[str]:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    # Reports cross the process boundary as JSON: the same schema-checked form the store keeps.
    return [r.to_json() for r in evaluator(checkpoint, step)]


# -- the callback ---------------------------------------------------------------------------------------------------
def bounds(e: Estimate) -> tuple[float | None, float | None]:
    """An estimate's confidence interval: its bootstrap bounds, else value ± 1.96 SE, else none."""
    if e.ci_low is not None and e.ci_high is not None:
        return e.ci_low, e.ci_high
    if e.se is not None and math.isfinite(e.se):
        return e.value - 1.96 * e.se, e.value + 1.96 * e.se
    return None, None


def metric_key(bench: str, metric: str) -> str:
    """The name a lioneval metric gets among a trainer's evaluation metrics (after the `eval_` prefix)."""
    return f"lioneval_{bench}_{metric}".replace("/", "_")


@dataclass
class Evaluation:
    """One evaluated checkpoint, as the callback saw it."""

    step: int
    checkpoint: str
    reports: list[Report] = field(default_factory=list)
    value: float | None = None  # the watched metric
    ci_low: float | None = None
    ci_high: float | None = None
    flagged: list[str] = field(default_factory=list)  # names of the checks that flagged it: it cannot be the best
    in_contention: bool | None = None  # not significantly worse than the best one at the time (no strike)
    error: str | None = None  # why the evaluation failed (an error, an incomplete report); it then decides nothing
    cheat: list[str] = field(default_factory=list)  # the flags among CHEAT_CHECKS (they stop training)
    failures: int = 0  # failed evaluations in a row, this one included
    improved: bool | None = None  # significantly better than the checkpoint that last improved (resets the plateau)
    se: float | None = None  # the watched metric's standard error (the unpaired fallback)
    n: int | None = None
    mde: float | None = None  # smallest difference with the best one its test detects (80% power)
    decision: dict[str, Any] | None = None  # the paired Decision against the best one so far
    run: str | None = None  # RunSpec key of the report of the watched metric
    units: Any = field(default=None, repr=False)  # (per-question units, scale), or None when not stored

    @property
    def model(self) -> str | None:
        return self.reports[0].model if self.reports else None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("step", "checkpoint", "value", "ci_low", "ci_high", "flagged", "cheat",
                                           "in_contention", "improved", "error", "failures", "mde", "decision")}
        return {**d, "model": self.model, "reports": [r.key for r in self.reports]}


def _flags(report: Report) -> tuple[list[str], list[str]]:
    """The report's flags that keep it from being the best (as from promotion), and those that stop training."""
    flags = {c.name for c in report.checks if c.status == "flag" and c.scope in ("answer", "run")}
    if not flags and report.meta.get("cheat_flagged"):
        flags.add("cheat_flagged")  # flagged, but the checks that did it are not in the report
    cheat = {c.name for c in report.checks if c.status == "flag" and c.name in CHEAT_CHECKS}
    return sorted(flags | cheat), sorted(cheat)


def _has_tokenizer(path: str | Path) -> bool:
    p = Path(path)
    return not p.is_dir() or any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                             "tokenizer.model", "vocab.json"))


class LionEvalCallback(TrainerCallback):
    """Scores checkpoints with a lioneval suite during training; see the module docstring for the wiring."""

    def __init__(self, config: EvalConfig | dict[str, Any] | None = None, *, evaluator: Evaluator | None = None,
                 stage: str | None = None, links_dir: str | Path | None = None, step_offset: int = 0,
                 trainer: Any = None):
        self.config = EvalConfig.coerce(config)
        if stage is not None:
            check_stage_name(stage)
        seq = self.config.sequential
        if evaluator is None and seq is not None:  # adaptive: each checkpoint judged until settled
            evaluator = adaptive.SequentialEvaluator(self.config.run_config(), self.config.store or DEFAULT_STORE,
                                                     margin=self.config.margin, batch=seq.batch, budget=seq.budget,
                                                     finish=seq.finish_improvements)
        if evaluator is None:
            evaluator = PipelineEvaluator(self.config.run_config(), self.config.store or DEFAULT_STORE,
                                          drift=self.config.drift)
        self.evaluator = evaluator
        self.stage = stage
        self.links_dir = links_dir
        self.step_offset = step_offset
        self.trainer = None
        self.evaluations: list[Evaluation] = []
        self.best: Evaluation | None = None  # the eligible evaluation with the best score so far
        self.reference: Evaluation | None = None  # the one that last improved significantly (plateau reference)
        self.strikes = 0  # evaluations in a row significantly worse than the best one
        self.stale = 0  # evaluations in a row not significantly better than the reference
        self.failures = 0  # failed evaluations in a row
        self.stop_reason: str | None = None
        self.stopped_at: int | None = None
        self._pending: list[tuple[int, str, Any]] = []
        self._started: set[int] = set()
        self._executor: Any = None
        self._warned: set[str] = set()
        self._awaited: list[Awaited] = []  # saved checkpoints an evaluator process is to report on (see _poll)
        self._watcher: Any = None  # the `lioneval watch` process background mode starts
        self._polled = 0.0
        if trainer is not None:
            self.attach(trainer)

    # -- wiring -------------------------------------------------------------------------------------------------
    def attach(self, trainer: Any) -> LionEvalCallback:
        """Log through ``trainer.log`` and check the callback order and evaluation settings."""
        from transformers import EarlyStoppingCallback

        cbs = trainer.callback_handler.callbacks
        if self not in cbs:
            raise LionEvalError("this LionEvalCallback is not among the trainer's callbacks",
                                fix="pass it in Trainer(callbacks=[...]) before attaching")
        if self.config.on_evaluate:
            mine = cbs.index(self)
            if any(isinstance(cb, EarlyStoppingCallback) for cb in cbs[:mine]):
                raise LionEvalError(
                    "EarlyStoppingCallback comes before LionEvalCallback, so it would decide without the lioneval "
                    "metrics", fix="pass callbacks=[LionEvalCallback(...), EarlyStoppingCallback(...)] in this order")
        best = trainer.args.metric_for_best_model or ""
        if "lioneval" in best and not self.config.on_evaluate:
            raise LionEvalError(
                f"metric_for_best_model={best!r} is a lioneval metric but the callback does not evaluate on evaluate",
                fix="set on_evaluate: true (with eval_strategy and eval_steps equal to the save settings)",
            )
        bench, _, metric = self.config.metric.partition("/")
        up = trainer.args.greater_is_better
        if (best.removeprefix("eval_") == metric_key(bench, metric) and up is not None
                and bool(up) != bool(self.config.greater_is_better)):
            raise LionEvalError(
                f"metric_for_best_model={best!r} with greater_is_better={up}, but for {self.config.metric} "
                f"{'higher' if self.config.greater_is_better else 'lower'} is better",
                fix=f"set greater_is_better={bool(self.config.greater_is_better)} in the training arguments")
        if getattr(trainer, "processing_class", None) is None and "tokenizer" not in self._warned:
            self._warned.add("tokenizer")
            log.warning("lioneval: the trainer has no tokenizer (processing_class), so its checkpoints hold none and "
                        "evaluating them fails unless the evaluator brings its own; training goes on either way. "
                        "Fix: pass processing_class=tokenizer to the trainer")
        self.trainer = trainer
        return self

    def close(self) -> None:
        if self._watcher is not None and self._watcher.poll() is None:
            self._watcher.terminate()
            self._watcher.wait(timeout=30)
        self._watcher = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _names(self, args: Any) -> tuple[str, Path]:
        out = Path(args.output_dir)
        return self.stage or out.name, Path(self.links_dir) if self.links_dir is not None else out.parent

    def _link(self, args: Any, state: Any) -> str:
        stage, links = self._names(args)
        return str(link_checkpoint(args.output_dir, state.global_step, stage, links, self.step_offset))

    # -- events -------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if self.stop_reason is not None:
            control.should_training_stop = True  # a later round of the same stage: the decision stands
        if self.config.mode == "background" and isinstance(self.evaluator, PipelineEvaluator) and \
                self.evaluator.drift is None:  # the watcher runs the pipeline's suite (drift analysis: below)
            self._start_watcher(args)
        elif self.config.mode == "background" and self._executor is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # The niceness is set by a builtin, before the worker imports anything: importing torch and
            # transformers is seconds of CPU that must not compete with training either.
            nice = self.config.background_nice
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=functools.partial(os.nice, nice) if nice > 0 else None,
            )
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self._pending:
            self._collect(state, control, wait=False)
        if self._awaited:
            self._poll(state, control)
        return control

    def on_save(self, args, state, control, **kwargs):
        step = state.global_step + self.step_offset
        if not self.config.on_save or step in self._started:
            return control
        self._started.add(step)
        self._prime(state)
        try:
            path = self._link(args, state)
        except Exception as e:  # noqa: BLE001 - a checkpoint that cannot be named is a failed evaluation, not a crash
            path = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            self._record(step, path, [], _describe(e), state, control)
            return control
        if self._watcher is not None or self.config.mode == "external":
            self._awaited.append(Awaited.of(step, path))  # training goes on; _poll picks the result up
        elif self.config.mode == "background":
            fut = self._executor.submit(_evaluate_in_worker, self.evaluator, path, step, self.config.background_threads)
            self._pending.append((step, path, fut))
        else:
            self._record(step, path, *self._run(path, step), state, control)
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.config.on_evaluate:
            return control
        step = state.global_step + self.step_offset
        ev = next((e for e in self.evaluations if e.step == step), None)
        if ev is None:
            self._started.add(step)
            if self._pending:  # keep the order of results: earlier checkpoints first
                self._collect(state, control, wait=True)
            self._prime(state)
            try:
                path = self._materialize(args, state, kwargs)
            except Exception as e:  # noqa: BLE001 - reported and stored like any failed evaluation
                path = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
                ev = self._record(step, path, [], _describe(e), state, control)
            else:
                ev = self._record(step, path, *self._run(path, step), state, control)
            if state.global_step > 0:
                # The weights are in checkpoint-<N> now: have the trainer save the rest there too (optimizer,
                # scheduler, trainer state) at this step, so the checkpoint can be resumed from even when training
                # stops here or eval and save steps differ.
                control.should_save = True
        if metrics is not None:
            metrics.update(self.eval_metrics(ev))
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._pending and self.config.wait_at_end:
            self._collect(state, control, wait=True)
        if self._watcher is not None:
            self._stop_watcher(wait=self.config.wait_at_end)
        if self._awaited:
            self._poll(state, control, now=True)
        return control

    # -- an evaluator process: the watcher background mode starts, or the one an external mode reads from -------
    def _start_watcher(self, args: Any) -> None:
        if self._watcher is not None and self._watcher.poll() is None:
            return
        import tempfile

        stage, links = self._names(args)
        self._stop_file = Path(tempfile.mkdtemp(prefix="lioneval-watch-")) / "training-done"
        evaluator: PipelineEvaluator = self.evaluator  # type: ignore[assignment]
        self._watcher = start_watcher(links, evaluator.suite, evaluator.store, pattern=f"{stage}-step*",
                                      stop_file=self._stop_file, max_behind=1, nice=self.config.background_nice,
                                      threads=self.config.background_threads,
                                      log_file=self._stop_file.with_suffix(".log"))
        log.info("lioneval: evaluating %s/%s-step* in a watcher process (pid %d, log %s)", links, stage,
                 self._watcher.pid, self._stop_file.with_suffix(".log"))

    def _stop_watcher(self, *, wait: bool) -> None:
        """Tell the watcher training is over: it evaluates the newest checkpoint left, then exits."""
        self._stop_file.parent.mkdir(parents=True, exist_ok=True)  # a /tmp cleaner may have removed it
        self._stop_file.touch()
        if wait:
            self._watcher.wait()
            if self._watcher.returncode not in (0, 3):
                log.warning("lioneval: the watcher process ended with exit code %s; see %s",
                            self._watcher.returncode, self._stop_file.with_suffix(".log"))
            else:  # its log is kept only when something went wrong
                shutil.rmtree(self._stop_file.parent, ignore_errors=True)
        self._watcher = None

    def _poll(self, state: Any, control: Any, *, now: bool = False) -> None:
        """Record what the evaluator process stored for the awaited checkpoints (at most once a second)."""
        if not now and time.monotonic() - self._polled < 1.0:
            return
        self._polled = time.monotonic()
        try:
            found = collect(self._store_path() or "", self._awaited)
        except Exception as e:  # noqa: BLE001 - a store being written or migrated: the next poll reads it
            log.debug("lioneval: cannot read the watcher's results yet: %s", e)
            return
        for awaited, record, reports in sorted(found, key=lambda f: f[0].step):
            self._awaited.remove(awaited)
            outcome = record.meta.get("outcome")
            if outcome in ("skipped", "vanished"):  # not a failure: a newer checkpoint was evaluated instead
                log.info("lioneval: step %d was not evaluated: %s", awaited.step, record.detail)
                continue
            error = record.meta.get("error") or (None if reports else record.detail)
            self._record(awaited.step, awaited.path, reports, error, state, control)

    # -- evaluating ------------------------------------------------------------------------------------------
    def _materialize(self, args: Any, state: Any, kwargs: dict[str, Any]) -> str:
        """Write the current weights where the trainer is about to save this step's checkpoint, and link it."""
        target = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.trainer is not None:
            self.trainer.save_model(str(target))
        else:
            kwargs["model"].save_pretrained(target)
            if kwargs.get("processing_class") is not None:
                kwargs["processing_class"].save_pretrained(target)
        return self._link(args, state)

    def _prime(self, state: Any) -> None:
        """Tell a sequential evaluator what the next checkpoint is compared with (the checkpoint that last improved;
        in background mode, the last one recorded) and at which level (early stopping's per-evaluation level)."""
        if isinstance(self.evaluator, adaptive.SequentialEvaluator):
            self.evaluator.incumbent = self.reference.run if self.reference is not None else None
            self.evaluator.alpha = decisions.strike_level(self.config.alpha, self.config.patience,
                                                          self._horizon(state))

    def _run(self, path: str, step: int) -> tuple[list[Report], str | None]:
        if self.config.mode == "background" and self._executor is not None:
            fut = self._executor.submit(_evaluate_in_worker, self.evaluator, path, step, self.config.background_threads)
            return self._unpack(fut)
        try:
            return list(self.evaluator(path, step)), None
        except Exception as e:  # noqa: BLE001 - a failed evaluation is reported and stored, and training goes on
            why = _describe(e)
            if not _has_tokenizer(path):
                why += (" (the checkpoint holds no tokenizer: the trainer was built without one; fix: pass "
                        "processing_class=tokenizer to the trainer)")
            return [], why

    @staticmethod
    def _unpack(fut: Any) -> tuple[list[Report], str | None]:
        try:
            return [Report.model_validate_json(r) for r in fut.result()], None
        except Exception as e:  # noqa: BLE001 - as in _run: reported, not fatal
            return [], _describe(e)

    def _collect(self, state: Any, control: Any, *, wait: bool) -> None:
        while self._pending:
            step, path, fut = self._pending[0]
            if not wait and not fut.done():
                return
            self._pending.pop(0)
            self._record(step, path, *self._unpack(fut), state, control)

    def wait(self) -> None:
        """Block until every background evaluation has been recorded (outside of a trainer's loop)."""
        from transformers import TrainerControl, TrainerState

        self._collect(self.trainer.state if self.trainer else TrainerState(), TrainerControl(), wait=True)

    # -- recording and deciding ----------------------------------------------------------------------------------
    def _record(self, step: int, path: str, reports: list[Report], error: str | None, state: Any,
                control: Any) -> Evaluation:
        ev = Evaluation(step=step, checkpoint=path, reports=reports)
        bench, _, metric = self.config.metric.partition("/")
        problems = [error] if error else []
        if not reports and not error:
            problems.append("the evaluation returned no report")
        for r in reports:
            # an incomplete report decides nothing: no score, no flag, no best, no strike (an adaptive run that
            # stopped once settled, or spent its budget, lacks only the questions it did not need)
            if not r.complete and adaptive.usable(r) is None:
                problems.append(f"incomplete {r.benchmark} evaluation: {'; '.join(r.incomplete) or 'unfinished'}")
                continue
            flags, cheat = _flags(r)
            ev.flagged += [f for f in flags if f not in ev.flagged]
            ev.cheat += [f for f in cheat if f not in ev.cheat]
            if r.benchmark == bench and metric in r.metrics:
                est = r.metrics[metric]
                ev.value = est.value
                ev.ci_low, ev.ci_high = bounds(est)
                ev.se, ev.n, ev.run = decisions.estimate_se(est), est.n, r.run
                ev.units = self._units(r, metric)
        ev.error = "; ".join(problems) or None
        if not ev.failed and ev.value is None and "metric" not in self._warned:
            self._warned.add("metric")
            log.warning("lioneval: no %s in the reports; early stopping on scores is off", self.config.metric)
        self.failures = self.failures + 1 if ev.failed else 0
        ev.failures = self.failures
        self._decide(ev, state, control)
        if ev.failed:
            self._failed(ev, control)
        self.evaluations.append(ev)
        self._keep(ev)
        self._log(ev, state)
        return ev

    def _units(self, report: Report, metric: str) -> Any:
        """The report's per-question units (its run's stored judgments), or None when the store lacks them."""
        store_path = self._store_path()
        if not store_path or (not is_url(store_path) and not Path(store_path).is_file()):
            return None
        try:
            with RunStore(store_path, readonly=True) as st:
                return decisions.report_units(st, report, metric)
        except Exception as e:  # noqa: BLE001 - without units the unpaired test decides; say so once
            if "units" not in self._warned:
                self._warned.add("units")
                log.warning("lioneval: cannot read per-question judgments from %s (%s); early stopping falls "
                            "back to unpaired tests", store_path, e)
            return None

    def _versus(self, ev: Evaluation, best: Evaluation) -> decisions.Stats:
        """The new evaluation (candidate) against an earlier one (incumbent), paired when both have units."""
        if ev.units is not None and best.units is not None:
            (u_new, scale), (u_best, _) = ev.units, best.units
            st = decisions.contrast([decisions.panel(u_best, [u_new], scale=scale)])
            if int(st.n[0]) >= 2:
                return st
        assert ev.value is not None and best.value is not None  # only evaluations with a score are compared
        return decisions.unpaired([[(ev.value, ev.se)]], [(best.value, best.se)], [1.0], [ev.n or 0])

    def _decide(self, ev: Evaluation, state: Any, control: Any) -> None:
        cfg = self.config
        if ev.cheat and cfg.stop_on_cheat:
            self._stop(ev, f"cheat checks flagged {ev.checkpoint} ({', '.join(ev.cheat)})", control, cause="cheat")
        if ev.flagged:
            log.warning("lioneval: step %d: checks flagged %s (%s): it cannot become the best checkpoint%s", ev.step,
                        ev.checkpoint, ", ".join(ev.flagged),
                        "" if self.stop_reason else "; it is compared like any other and training goes on")
        if ev.value is None:
            return
        rec = next((adaptive.usable(r) for r in ev.reports if r.run == ev.run and adaptive.usable(r)), None)
        if rec is not None and rec.get("decision") and self.reference is not None and self.best is not None:
            self._decide_sequential(ev, rec, state, control)
            return
        if self.best is None or self.reference is None:
            if ev.flagged:
                return  # nothing to compare it with, and it cannot be the best
            ev.in_contention = ev.improved = True
            self.best = self.reference = ev
            if ev.se is not None:  # no partner yet: the unpaired bound, which pairing only lowers
                ev.mde = decisions.mde_se(math.sqrt(2) * ev.se, math.inf, alpha=cfg.alpha)
                log.info("lioneval: step %d: with %s questions and this judge's noise, the smallest difference "
                         "detectable is %.3g %s (unpaired bound; paired from the next evaluation)", ev.step, ev.n,
                         ev.mde, cfg.metric)
            return
        b, ref = self.best, self.reference
        assert b.value is not None and ref.value is not None  # only evaluations with a score become either
        higher = bool(cfg.greater_is_better)
        earlier = sum(1 for e in self.evaluations if e.value is not None and not e.flagged)
        horizon = self._horizon(state)
        level = decisions.strike_level(cfg.alpha, cfg.patience, horizon)
        st = self._versus(ev, b)
        good = st if higher else st.negated()
        strike, p_worse = decisions.decline(good, earlier, alpha=level, margin=cfg.margin)
        p_better = float(decisions.p_greater(good, float(cfg.margin))[0])
        worse = bool(strike[0])
        verdict: Literal["worse", "better", "inconclusive"] = (
            "worse" if worse else "better" if p_better <= level else "inconclusive")
        # the plateau: significantly better than the checkpoint that last improved significantly?
        st_ref = st if ref is b else self._versus(ev, ref)
        p_up = p_better if ref is b else float(decisions.p_greater(st_ref if higher else st_ref.negated(),
                                                                   float(cfg.margin))[0])
        improved = p_up <= level and not ev.flagged
        self.strikes = self.strikes + 1 if worse else 0
        self.stale = 0 if improved else self.stale + 1
        ev.in_contention, ev.improved = not worse, improved
        ev.mde = decisions.mde_se(float(st.se[0]), float(st.df[0]), alpha=level / earlier)
        bench, _, metric = cfg.metric.partition("/")
        d = decisions.decision(
            st, 0, kind="early_stop", verdict=verdict, alpha=level, margin=cfg.margin,
            correction=f"bonferroni over {earlier} earlier evaluation(s)", p_value=float(p_worse[0]),
            higher_is_better=higher, benchmark=bench, metric=metric, candidate=ev.run, incumbent=b.run,
            meta={"best_step": b.step, "step": ev.step, "p_better": p_better, "horizon": horizon,
                  "false_stop_rate": cfg.alpha, "patience": cfg.patience, "flagged": list(ev.flagged),
                  "reference_step": ref.step, "reference": ref.run, "reference_diff": float(st_ref.diff[0]),
                  "p_improved": p_up, "improved": improved, "strikes": self.strikes, "stale": self.stale,
                  "rule": "worse: the best is significantly better by more than the margin (a strike); improved: "
                          "significantly better than the reference by more than the margin (resets the plateau)"})
        ev.decision = d.model_dump(mode="json")
        log.info("lioneval: step %d: with %d questions and this judge's noise, the smallest difference detectable is "
                 "%.3g %s (%s, one-sided alpha %.3g, 80%% power); vs best step %d: %+.3g, %s; %s step %d", ev.step,
                 d.n, ev.mde, cfg.metric, d.method, level / earlier, b.step, d.diff, verdict,
                 "improves on" if improved else "no significant improvement on", ref.step)
        if improved:
            self.reference = ev
        if not ev.flagged and (1.0 if higher else -1.0) * (ev.value - b.value) > 0:
            self.best = ev
        patience = cfg.patience
        if patience is None:
            return
        if self.strikes >= patience:
            self._stop(ev, f"{self.strikes} evaluation(s) in a row significantly worse than the best checkpoint "
                           f"(step {b.step}, {cfg.metric}={b.value:.3g}): this one {ev.value:.3g}, difference "
                           f"{d.diff:+.3g} [{_num(d.ci_low)}, {_num(d.ci_high)}], one-sided p={d.p_value:.2g} "
                           f"({d.correction}) <= {level:.3g} (drop false-stop rate {cfg.alpha:g} over {horizon} "
                           f"evaluations, patience {patience}), margin {cfg.margin:g}, {d.method}",
                       control, cause="drop", metric=cfg.metric)
        elif cfg.stop_on_plateau and self.stale >= patience:
            last = "significantly worse than the best" if worse else f"{verdict} against the best"
            self._stop(ev, f"plateau: {self.stale} evaluation(s) in a row not significantly better than step "
                           f"{ref.step} ({cfg.metric}={ref.value:.3g}), the checkpoint that last improved: this one "
                           f"{ev.value:.3g}, difference {float(st_ref.diff[0]):+.3g}, one-sided p={p_up:.2g} > "
                           f"{level:.3g} (patience {patience}, margin {cfg.margin:g}, {d.method}); best so far: step "
                           f"{self.best.step} ({self.best.value:.3g}); this one is {last}",
                       control, cause="plateau", metric=cfg.metric)

    def _decide_sequential(self, ev: Evaluation, rec: dict[str, Any], state: Any, control: Any) -> None:
        """Early stopping on the sequential decision the evaluation made against the reference (``adaptive``):
        better (settled) improves and resets the plateau; worse by more than the margin strikes; anything else
        (not better by more than the margin, or left open) counts towards the plateau."""
        cfg = self.config
        ref, b = self.reference, self.best
        assert ref is not None and b is not None
        d = dict(rec["decision"])
        verdict = d.get("verdict", "inconclusive") if rec.get("decided") else "inconclusive"
        improved = verdict == "better" and not ev.flagged
        worse = verdict == "worse"
        self.strikes = self.strikes + 1 if worse else 0
        self.stale = 0 if improved else self.stale + 1
        ev.in_contention, ev.improved = not worse, improved
        d["verdict"] = verdict
        d["p_value"] = 1.0 if d.get("p_value") is None else d["p_value"]
        d["meta"] = {**(d.get("meta") or {}), "best_step": b.step, "reference_step": ref.step, "step": ev.step,
                     "reference": ref.run, "improved": improved, "strikes": self.strikes, "stale": self.stale,
                     "patience": cfg.patience, "line": rec.get("line")}
        ev.decision = d
        log.info("lioneval: step %d vs step %d (sequential, %s): %s", ev.step, ref.step, d.get("method"),
                 rec.get("line"))
        if improved:
            self.reference = self.best = ev
        patience = cfg.patience
        if patience is None:
            return
        if self.strikes >= patience:
            self._stop(ev, f"{self.strikes} evaluation(s) in a row significantly worse than step {ref.step} by more "
                           f"than the margin {cfg.margin:g} (sequential: {rec.get('line')})", control, cause="drop",
                       metric=cfg.metric)
        elif cfg.stop_on_plateau and self.stale >= patience:
            self._stop(ev, f"plateau: {self.stale} evaluation(s) in a row not shown better than step {ref.step}, "
                           f"the checkpoint that last improved (sequential, margin {cfg.margin:g}: "
                           f"{rec.get('line')})", control, cause="plateau", metric=cfg.metric)

    def _failed(self, ev: Evaluation, control: Any) -> None:
        cap = self.config.max_failed_evaluations
        stop = cap is not None and ev.failures >= cap
        counts = (f"Its {self.config.metric} still counts (that report is complete)" if ev.value is not None
                  else "It decides nothing")
        log.warning("lioneval: the evaluation of step %d (%s) failed (%d in a row%s): %s. %s%s", ev.step,
                    ev.checkpoint, ev.failures, f"; at most {cap}" if cap else "", ev.error, counts,
                    "" if stop or self.stop_reason else "; training goes on")
        if stop:
            self._stop(ev, f"{ev.failures} evaluations in a row failed (max_failed_evaluations: {cap}); the last: "
                           f"{ev.error}", control, cause="failed_evaluations")

    def _horizon(self, state: Any) -> int:
        """Evaluations the false-stop rate is held over: the config's, else the trainer's planned number."""
        if self.config.horizon:
            return self.config.horizon
        every = getattr(state, "save_steps", 0) if self.config.on_save else getattr(state, "eval_steps", 0)
        total = getattr(state, "max_steps", 0)
        if isinstance(every, float) and 0 < every < 1:  # a fraction of the run
            every = every * total
        if total and every and total > 0 and every > 0:
            return max(2, math.ceil(total / every))
        return 10

    # -- what is stored ------------------------------------------------------------------------------------------
    def _store_path(self) -> str | None:
        return getattr(self.evaluator, "store", None) or self.config.store

    def _model_id(self, ev: Evaluation) -> str:
        if ev.model:
            return ev.model
        try:
            return identify(ev.checkpoint).model_id
        except Exception:  # noqa: BLE001 - a checkpoint that cannot be read is still named by its path
            return Path(ev.checkpoint).name or ev.checkpoint

    def _stage_of(self, report: Report | None) -> str | None:
        return (report.meta.get("stage") if report is not None else None) or self.stage

    def _put(self, what: str, write: Callable[[RunStore], Any]) -> None:
        """Write to the store; a store that cannot be written is reported, and training goes on."""
        store_path = self._store_path()
        if not store_path:
            return
        try:
            with RunStore(store_path) as st:
                write(st)
        except Exception as e:  # noqa: BLE001 - losing a record must not end the training run
            log.warning("lioneval: cannot store %s in %s: %s", what, store_path, e)

    def _keep(self, ev: Evaluation) -> None:
        """Store the evaluation's failure and its early-stopping Decision as checks on its run (see the module
        docstring); ``benchmark`` stays empty so that re-checking the run's benchmark keeps them."""
        records: list[CheckResult] = []
        first = ev.reports[0] if ev.reports else None
        if ev.failed:
            cap = self.config.max_failed_evaluations
            records.append(CheckResult(
                name=FAILED_CHECK, scope="run", status="warn", run=first.run if first else None,
                model=self._model_id(ev), value=float(ev.failures), threshold=float(cap) if cap else None,
                detail=f"the evaluation of step {ev.step} failed ({ev.failures} in a row): {ev.error}",
                meta={"step": ev.step, "checkpoint": ev.checkpoint, "stage": self._stage_of(first),
                      "error": ev.error, "in_a_row": ev.failures, "benchmarks": [r.benchmark for r in ev.reports],
                      "reports": [r.key for r in ev.reports]}))
        if ev.decision is not None:
            d = ev.decision
            watched = next(r for r in ev.reports if r.run == ev.run and (r.complete or adaptive.usable(r)))
            records.append(CheckResult(
                name=EARLY_STOP_CHECK, scope="run", status="warn" if d["verdict"] == "worse" else "pass",
                run=ev.run, model=watched.model, judge=watched.judge, value=d["diff"], threshold=d["margin"],
                detail=(f"step {ev.step} vs the best checkpoint (step {d['meta']['best_step']}): {d['verdict']} "
                        f"({d['metric']} {d['diff']:+.3g}, one-sided p={d['p_value']:.2g} at {d['alpha']:.3g}, "
                        f"{d['method']}); {'improves on' if ev.improved else 'no significant improvement on'} step "
                        f"{d['meta']['reference_step']}"),
                meta={"decision": d, "step": ev.step, "checkpoint": ev.checkpoint, "stage": self._stage_of(watched),
                      "flagged": list(ev.flagged)}))
        if records:
            self._put(f"the evaluation of step {ev.step}", lambda st: st.put_checks(records))

    def _stop(self, ev: Evaluation, reason: str, control: Any, *, cause: str, metric: str | None = None) -> None:
        control.should_training_stop = True
        if self.stop_reason is not None:
            return
        self.stop_reason, self.stopped_at = reason, ev.step
        log.warning("lioneval: stopping training at step %d: %s", ev.step, reason)
        if metric:
            trigger = next((r for r in ev.reports if r.run == ev.run), None)
        else:
            trigger = next((r for r in ev.reports if _flags(r)[1]), None)
        trigger = trigger or (ev.reports[0] if ev.reports else None)
        best = self.best
        stop = EarlyStop(
            stage=self._stage_of(trigger), run=trigger.run if trigger else None,
            model=trigger.model if trigger else self._model_id(ev), checkpoint=ev.checkpoint, step=ev.step,
            reason=reason, metric=metric,
            meta={"cause": cause, "flagged": sorted(set(ev.flagged)), "cheat": sorted(set(ev.cheat)),
                  "value": ev.value, "ci_low": ev.ci_low, "ci_high": ev.ci_high,
                  "best_step": best.step if best is not None else None,
                  "reference_step": self.reference.step if self.reference is not None else None,
                  "patience": self.config.patience, "alpha": self.config.alpha, "margin": self.config.margin,
                  "stop_on_plateau": self.config.stop_on_plateau, "error": ev.error, "failures": ev.failures,
                  "max_failed_evaluations": self.config.max_failed_evaluations,
                  "decision": ev.decision if metric else None},
        )
        self._put("the early stop", lambda st: st.put_early_stop(stop))

    # -- what is logged ------------------------------------------------------------------------------------------
    def _metric_names(self, r: Report) -> list[str]:
        wanted = self.config.log_metrics
        if wanted is None:
            return [m for m in r.metrics if "/" not in m]
        return [m.partition("/")[2] for m in wanted if m.partition("/")[0] == r.benchmark and
                m.partition("/")[2] in r.metrics]

    def logs_for(self, ev: Evaluation) -> dict[str, float]:
        """What gets logged for an evaluation: ``lioneval/<bench>/<metric>`` with ``_ci_low`` / ``_ci_high``
        (complete reports only: an incomplete one logs ``lioneval/<bench>/incomplete``)."""
        logs: dict[str, float] = {"lioneval/step": float(ev.step)}
        for r in ev.reports:
            rec = adaptive.usable(r)
            if rec is not None:  # an adaptive evaluation: how many questions it took
                logs[f"lioneval/{r.benchmark}/questions_judged"] = float(rec.get("questions_used") or 0)
            if not r.complete and rec is None:
                logs[f"lioneval/{r.benchmark}/incomplete"] = 1.0
                continue
            for m in self._metric_names(r):
                est = r.metrics[m]
                lo, hi = bounds(est)
                logs[f"lioneval/{r.benchmark}/{m}"] = est.value
                if lo is not None and hi is not None:
                    logs[f"lioneval/{r.benchmark}/{m}_ci_low"] = lo
                    logs[f"lioneval/{r.benchmark}/{m}_ci_high"] = hi
                if ev.mde is not None and math.isfinite(ev.mde) and f"{r.benchmark}/{m}" == self.config.metric:
                    logs[f"lioneval/{r.benchmark}/{m}_mde"] = ev.mde
            logs[f"lioneval/{r.benchmark}/cheat_flagged"] = float(bool(_flags(r)[0]))
        if ev.failed:
            logs["lioneval/failed"] = 1.0
            logs["lioneval/failed_in_a_row"] = float(ev.failures)
        if self.stopped_at == ev.step:
            logs["lioneval/early_stop_step"] = float(ev.step)
        logs.update(drift_logs([r for r in ev.reports if r.complete]))
        return logs

    def eval_metrics(self, ev: Evaluation) -> dict[str, float]:
        """What gets added to ``Trainer.evaluate`` metrics: ``eval_lioneval_<bench>_<metric>`` (and CI bounds).

        The watched metric, and the trainer's ``metric_for_best_model`` when it is a lioneval one, are always there:
        for a failed, incomplete or flagged evaluation they hold the worst value there is (``-inf`` where higher is
        better, ``+inf`` where lower is), so transformers finds them and never takes the evaluation for an
        improvement (``load_best_model_at_end``, ``EarlyStoppingCallback``)."""
        out: dict[str, float] = {}
        for key, value in self.logs_for(ev).items():
            parts = key.split("/", 2)
            if len(parts) == 3:
                out["eval_" + metric_key(parts[1], parts[2])] = value
        bench, _, metric = self.config.metric.partition("/")
        watched = "eval_" + metric_key(bench, metric)
        if ev.value is not None:
            out.setdefault(watched, ev.value)
        higher = {watched: bool(self.config.greater_is_better)}
        args = getattr(self.trainer, "args", None)
        wanted = getattr(args, "metric_for_best_model", None) or ""
        if "lioneval" in wanted and args is not None:
            key = wanted if wanted.startswith("eval_") else f"eval_{wanted}"
            higher[key] = bool(args.greater_is_better) if args.greater_is_better is not None else True
        for key, up in higher.items():
            if key not in out or ev.flagged:
                out[key] = -math.inf if up else math.inf
        return out

    def _log(self, ev: Evaluation, state: Any) -> None:
        logs = self.logs_for(ev)
        if self.trainer is not None:
            self.trainer.log(dict(logs))
        else:
            state.log_history.append({**logs, "step": state.global_step})
        # the state file saved with the checkpoint predates this score: add it there too
        add_log_entry(ev.checkpoint, state.log_history[-1] if state.log_history else logs)
        shown = ", ".join(f"{k.removeprefix('lioneval/')}={v:.3g}" for k, v in logs.items() if "_ci_" not in k)
        log.info("lioneval: %s: %s", ev.checkpoint, shown + (f"; failed: {ev.error}" if ev.error else ""))


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:+.3g}"


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


# -- what the stages share -----------------------------------------------------------------------------------------
class StageHooks:
    """The callbacks a stage adds to its trainer (checkpoint names, evaluation) and the stage's result."""

    def __init__(self, cfg: StageConfig, *, store: str | None = None, step_offset: int = 0,
                 evaluation: LionEvalCallback | None = None):
        self.cfg = cfg
        self.linker = CheckpointLinker(cfg.stage, cfg.output_dir, step_offset=step_offset)
        self.eval = evaluation if evaluation is not None else self.evaluation_for(cfg, store)
        if self.eval is not None:
            self.eval.step_offset = step_offset
            self.eval.stage, self.eval.links_dir = cfg.stage, cfg.output_dir

    @staticmethod
    def evaluation_for(cfg: StageConfig, store: str | None = None) -> LionEvalCallback | None:
        """The stage's LionEvalCallback (None without `eval`), judging into ``store`` unless its config names one."""
        if cfg.eval is None:
            return None
        settings = EvalConfig.coerce(cfg.eval)
        suite = dict(settings.suite)
        if suite.get("judge"):
            suite["judge"] = resolve_judge(suite["judge"], cfg.output_dir)
        settings = dataclasses.replace(settings, suite=suite, store=settings.store or store,
                                       drift=with_reference(settings.drift, resolve_model(cfg.model, cfg.output_dir)))
        return LionEvalCallback(settings, stage=cfg.stage, links_dir=cfg.output_dir)

    @property
    def callbacks(self) -> list[TrainerCallback]:
        return [self.linker] + ([self.eval] if self.eval is not None else [])

    def attach(self, trainer: Any) -> None:
        if self.eval is not None:
            self.eval.attach(trainer)

    @property
    def stopped(self) -> bool:
        return self.eval is not None and self.eval.stop_reason is not None

    def result(self, steps: int, checkpoints: list[str] | None = None) -> StageResult:
        ev = self.eval
        return StageResult(
            stage=self.cfg.stage,
            checkpoints=checkpoints if checkpoints is not None else self.linker.checkpoints,
            steps=steps,
            stopped_early=self.stopped,
            stop_reason=ev.stop_reason if ev is not None else None,
            evaluations=[e.to_json() for e in ev.evaluations] if ev is not None else [],
        )
