"""Evaluation in the training loop: ``LionEvalCallback`` scores checkpoints with a quick lioneval suite.

What it does, per saved checkpoint (``on_save``) and optionally per evaluation (``on_evaluate``):

* names the checkpoint ``<stage>-step<N>`` (a link next to the trainer's ``checkpoint-<N>``), so ``identify()``
  and the store know its stage and step;
* runs the suite (``lioneval.pipeline.run``: answers, judgments, statistics, cheat checks and the Report, all
  written to the store) inline, or in a background process so training does not wait;
* logs every headline metric with its confidence interval through ``Trainer.log``, so TensorBoard, W&B and the
  trainer state get them: ``lioneval/mt-bench/overall``, ``lioneval/mt-bench/overall_ci_low``, ``..._ci_high``,
  ``lioneval/mt-bench/cheat_flagged`` and ``lioneval/step`` (the checkpoint's step: background results arrive some
  steps after the checkpoint they score);
* with ``on_evaluate: true``, evaluates the current weights during ``Trainer.evaluate`` and adds the scores to its
  metrics as ``eval_lioneval_<bench>_<metric>`` (``/`` becomes ``_``: ``eval_lioneval_mt-bench_overall``), so
  ``metric_for_best_model="lioneval_mt-bench_overall"``, ``load_best_model_at_end`` and transformers'
  ``EarlyStoppingCallback`` use them;
* stops training after ``patience`` consecutive evaluations that are significantly worse than the best checkpoint
  so far, and at once when cheat checks flag the policy (``lioneval.checks.is_cheat``). "Significantly worse" is a
  paired decision (``lioneval.decisions.decline``): the new checkpoint and the best one are compared on per-question
  differences of the watched metric, from each evaluation's own stored judgments (the store the evaluations are
  written to), with a one-sided paired t-test Bonferroni-adjusted by the number of earlier evaluations the best
  was chosen from, and an optional ``margin``. A strike needs the best to be significantly better than the new
  one; a new checkpoint that is significantly better, or merely not distinguishable, resets the count. Each test
  runs at ``alpha * patience / (horizon - 1)`` (``decisions.strike_level``; ``horizon``: the trainer's planned
  number of evaluations, else 10), which holds the chance that a flat run stops within the horizon at ``alpha``
  whatever the patience (``benchmarks/decision_sim.py`` measures it: about 3% at patience 1). When the
  judgments are not in the store, an unpaired test on the two reports' estimates stands in. Every evaluation logs
  the smallest difference its test can detect (``lioneval/<bench>/<metric>_mde``, and a log line). The stop is
  recorded in the store as an ``EarlyStop`` record (``RunStore.early_stops()``: stage, the run that triggered it,
  model, checkpoint, step, reason, metric, and the paired decision in ``meta``).

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

Background mode runs evaluations one at a time in a spawned worker process with ``background_threads`` torch
threads at nice ``background_nice``: on a busy CPU it yields to training, and on a GPU it mostly waits for the
device. Results are picked up at each step end and when training ends (``wait_at_end``). Both modes load the
checkpoint from disk. A script that uses background mode needs the ``if __name__ == "__main__":`` guard (spawn
re-imports the main module). Call ``close()`` (the stages do) to stop the worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lioneval import decisions
from lioneval.checks import is_cheat
from lioneval.errors import LionEvalError
from lioneval.judges.judge import make_judge
from lioneval.pipeline import run
from lioneval.store import DEFAULT_STORE, RunStore
from lioneval.trainers.config import EvalConfig, StageConfig, check_stage_name
from lioneval.trainers.models import resolve_judge
from lioneval.trainers.stage import StageResult
from lioneval.types import EarlyStop, Estimate, Report

log = logging.getLogger("lioneval.train")

__all__ = [
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

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        cfg = dataclasses.replace(self.suite, ckpt=checkpoint)
        with RunStore(self.store) as st:
            return run(cfg, st, judge=_judge_for(cfg)).reports


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
    flagged: list[str] = field(default_factory=list)  # names of the checks that flagged it
    in_contention: bool | None = None  # not significantly worse than the best one at the time (no strike)
    error: str | None = None
    se: float | None = None  # the watched metric's standard error (the unpaired fallback)
    n: int | None = None
    mde: float | None = None  # smallest difference with the best one its test detects (80% power)
    decision: dict[str, Any] | None = None  # the paired Decision against the best one so far
    run: str | None = None  # RunSpec key of the report of the watched metric
    units: Any = field(default=None, repr=False)  # (per-question units, scale), or None when not stored

    @property
    def model(self) -> str | None:
        return self.reports[0].model if self.reports else None

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("step", "checkpoint", "value", "ci_low", "ci_high", "flagged",
                                           "in_contention", "error", "mde", "decision")}
        return {**d, "model": self.model, "reports": [r.key for r in self.reports]}


class LionEvalCallback(TrainerCallback):
    """Scores checkpoints with a lioneval suite during training; see the module docstring for the wiring."""

    def __init__(self, config: EvalConfig | dict[str, Any] | None = None, *, evaluator: Evaluator | None = None,
                 stage: str | None = None, links_dir: str | Path | None = None, step_offset: int = 0,
                 trainer: Any = None):
        self.config = EvalConfig.coerce(config)
        if stage is not None:
            check_stage_name(stage)
        if evaluator is None:
            evaluator = PipelineEvaluator(self.config.run_config(), self.config.store or DEFAULT_STORE)
        self.evaluator = evaluator
        self.stage = stage
        self.links_dir = links_dir
        self.step_offset = step_offset
        self.trainer = None
        self.evaluations: list[Evaluation] = []
        self.best: Evaluation | None = None
        self.strikes = 0
        self.stop_reason: str | None = None
        self.stopped_at: int | None = None
        self._pending: list[tuple[int, str, Any]] = []
        self._started: set[int] = set()
        self._executor: Any = None
        self._warned: set[str] = set()
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
        self.trainer = trainer
        return self

    def close(self) -> None:
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
        if self.config.mode == "background" and self._executor is None:
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
        return control

    def on_save(self, args, state, control, **kwargs):
        step = state.global_step + self.step_offset
        if not self.config.on_save or step in self._started:
            return control
        path = self._link(args, state)
        self._started.add(step)
        if self.config.mode == "background":
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
            path = self._materialize(args, state, kwargs)
            self._started.add(step)
            if self._pending:  # keep the order of results: earlier checkpoints first
                self._collect(state, control, wait=True)
            ev = self._record(step, path, *self._run(path, step), state, control)
        if metrics is not None:
            metrics.update(self.eval_metrics(ev))
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._pending and self.config.wait_at_end:
            self._collect(state, control, wait=True)
        return control

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

    def _run(self, path: str, step: int) -> tuple[list[Report], str | None]:
        if self.config.mode == "background" and self._executor is not None:
            fut = self._executor.submit(_evaluate_in_worker, self.evaluator, path, step, self.config.background_threads)
            return self._unpack(fut)
        try:
            return list(self.evaluator(path, step)), None
        except Exception as e:  # noqa: BLE001 - a failed evaluation is reported and training goes on
            log.warning("lioneval: evaluating %s failed: %s", path, e)
            return [], f"{type(e).__name__}: {e}"

    @staticmethod
    def _unpack(fut: Any) -> tuple[list[Report], str | None]:
        try:
            return [Report.model_validate_json(r) for r in fut.result()], None
        except Exception as e:  # noqa: BLE001 - as in _run: reported, not fatal
            log.warning("lioneval: a background evaluation failed: %s", e)
            return [], f"{type(e).__name__}: {e}"

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
        ev = Evaluation(step=step, checkpoint=path, reports=reports, error=error)
        bench, _, metric = self.config.metric.partition("/")
        for r in reports:
            if is_cheat(r.checks) or r.meta.get("cheat_flagged"):
                ev.flagged += sorted({c.name for c in r.checks if c.status == "flag"}) or ["cheat_flagged"]
            if not r.complete:  # an incomplete evaluation decides nothing: no best, no strike
                ev.error = f"incomplete {r.benchmark} evaluation: {'; '.join(r.incomplete)}"
                continue
            if r.benchmark == bench and metric in r.metrics:
                est = r.metrics[metric]
                ev.value = est.value
                ev.ci_low, ev.ci_high = bounds(est)
                ev.se, ev.n, ev.run = decisions.estimate_se(est), est.n, r.run
                ev.units = self._units(r, metric)
        if reports and ev.value is None and "metric" not in self._warned:
            self._warned.add("metric")
            log.warning("lioneval: no %s in the reports; early stopping on scores is off", self.config.metric)
        self._decide(ev, state, control)
        self.evaluations.append(ev)
        self._log(ev, state)
        return ev

    def _units(self, report: Report, metric: str) -> Any:
        """The report's per-question units (its run's stored judgments), or None when the store lacks them."""
        store_path = getattr(self.evaluator, "store", None) or self.config.store
        if not store_path or not Path(store_path).is_file():
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
        """The new evaluation (candidate) against the best one (incumbent), paired when both have units."""
        if ev.units is not None and best.units is not None:
            (u_new, scale), (u_best, _) = ev.units, best.units
            st = decisions.contrast([decisions.panel(u_best, [u_new], scale=scale)])
            if int(st.n[0]) >= 2:
                return st
        return decisions.unpaired([[(ev.value, ev.se)]], [(best.value, best.se)], [1.0], [ev.n or 0])

    def _decide(self, ev: Evaluation, state: Any, control: Any) -> None:
        if ev.flagged:
            if self.config.stop_on_cheat:
                self._stop(ev, f"cheat checks flagged {ev.checkpoint} ({', '.join(sorted(set(ev.flagged)))})",
                           control)
            return  # a flagged checkpoint is never the best
        if ev.value is None:
            return
        cfg = self.config
        sign = 1.0 if cfg.greater_is_better else -1.0
        if self.best is None:
            ev.in_contention = True
            self.best = ev
            if ev.se is not None:  # no partner yet: the unpaired bound, which pairing only lowers
                ev.mde = decisions.mde_se(math.sqrt(2) * ev.se, math.inf, alpha=cfg.alpha)
                log.info("lioneval: step %d: with %s questions and this judge's noise, the smallest difference "
                         "detectable is %.3g %s (unpaired bound; paired from the next evaluation)", ev.step, ev.n,
                         ev.mde, cfg.metric)
            return
        b = self.best
        earlier = sum(1 for e in self.evaluations if e.value is not None and not e.flagged)
        horizon = self._horizon(state)
        level = decisions.strike_level(cfg.alpha, cfg.patience, horizon)
        st = self._versus(ev, b)
        good = st if cfg.greater_is_better else st.negated()
        strike, p_worse = decisions.decline(good, earlier, alpha=level, margin=cfg.margin)
        p_better = float(decisions.p_greater(good, 0.0)[0])
        strike = bool(strike[0])
        verdict = "worse" if strike else ("better" if p_better <= cfg.alpha else "inconclusive")
        ev.mde = decisions.mde_se(float(st.se[0]), float(st.df[0]), alpha=level / earlier)
        bench, _, metric = cfg.metric.partition("/")
        d = decisions.decision(
            st, 0, kind="early_stop", verdict=verdict, alpha=level, margin=cfg.margin,
            correction=f"bonferroni over {earlier} earlier evaluation(s)", p_value=float(p_worse[0]),
            higher_is_better=bool(cfg.greater_is_better), benchmark=bench, metric=metric, candidate=ev.run,
            incumbent=b.run, meta={"best_step": b.step, "step": ev.step, "p_better": p_better, "horizon": horizon,
                                   "false_stop_rate": cfg.alpha, "patience": cfg.patience,
                                   "rule": "strike when the best is significantly better by more than the margin"})
        ev.decision = d.model_dump(mode="json")
        log.info("lioneval: step %d: with %d questions and this judge's noise, the smallest difference detectable is "
                 "%.3g %s (%s, one-sided alpha %.3g, 80%% power); vs best step %d: %+.3g, %s", ev.step, d.n, ev.mde,
                 cfg.metric, d.method, level / earlier, b.step, d.diff, verdict)
        ev.in_contention = not strike
        if sign * (ev.value - b.value) > 0:
            self.best = ev
        self.strikes = self.strikes + 1 if strike else 0
        patience = cfg.patience
        if patience is not None and self.strikes >= patience:
            self._stop(ev, f"{self.strikes} evaluation(s) in a row significantly worse than the best checkpoint "
                           f"(step {b.step}, {cfg.metric}={b.value:.3g}): this one {ev.value:.3g}, difference "
                           f"{d.diff:+.3g} [{_num(d.ci_low)}, {_num(d.ci_high)}], one-sided p={d.p_value:.2g} "
                           f"({d.correction}) <= {level:.3g} (plateau false-stop rate {cfg.alpha:g} over {horizon} "
                           f"evaluations, patience {patience}), margin {cfg.margin:g}, {d.method}",
                       control, metric=cfg.metric)

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

    def _stop(self, ev: Evaluation, reason: str, control: Any, *, metric: str | None = None) -> None:
        control.should_training_stop = True
        if self.stop_reason is not None:
            return
        self.stop_reason, self.stopped_at = reason, ev.step
        log.warning("lioneval: stopping training at step %d: %s", ev.step, reason)
        store_path = getattr(self.evaluator, "store", None) or self.config.store
        if store_path and ev.model:
            if metric:
                trigger = next((r for r in ev.reports if r.benchmark == metric.partition("/")[0]), None)
            else:
                trigger = next((r for r in ev.reports if is_cheat(r.checks) or r.meta.get("cheat_flagged")), None)
            trigger = trigger or ev.reports[0]
            stop = EarlyStop(
                stage=trigger.meta.get("stage") or self.stage, run=trigger.run, model=trigger.model,
                checkpoint=ev.checkpoint, step=ev.step, reason=reason, metric=metric,
                meta={"cause": "cheat" if ev.flagged else "patience", "flagged": sorted(set(ev.flagged)),
                      "value": ev.value, "ci_low": ev.ci_low, "ci_high": ev.ci_high,
                      "best_step": self.best.step if self.best is not None else None,
                      "patience": self.config.patience, "alpha": self.config.alpha, "margin": self.config.margin,
                      "decision": ev.decision if metric else None},
            )
            with RunStore(store_path) as st:
                st.put_early_stop(stop)

    def _metric_names(self, r: Report) -> list[str]:
        wanted = self.config.log_metrics
        if wanted is None:
            return [m for m in r.metrics if "/" not in m]
        return [m.partition("/")[2] for m in wanted if m.partition("/")[0] == r.benchmark and
                m.partition("/")[2] in r.metrics]

    def logs_for(self, ev: Evaluation) -> dict[str, float]:
        """What gets logged for an evaluation: ``lioneval/<bench>/<metric>`` with ``_ci_low`` / ``_ci_high``."""
        logs: dict[str, float] = {"lioneval/step": float(ev.step)}
        for r in ev.reports:
            for m in self._metric_names(r):
                est = r.metrics[m]
                lo, hi = bounds(est)
                logs[f"lioneval/{r.benchmark}/{m}"] = est.value
                if lo is not None and hi is not None:
                    logs[f"lioneval/{r.benchmark}/{m}_ci_low"] = lo
                    logs[f"lioneval/{r.benchmark}/{m}_ci_high"] = hi
                if ev.mde is not None and math.isfinite(ev.mde) and f"{r.benchmark}/{m}" == self.config.metric:
                    logs[f"lioneval/{r.benchmark}/{m}_mde"] = ev.mde
            logs[f"lioneval/{r.benchmark}/cheat_flagged"] = float(bool(r.meta.get("cheat_flagged")))
        if ev.error:
            logs["lioneval/failed"] = 1.0
        if self.stopped_at == ev.step:
            logs["lioneval/early_stop_step"] = float(ev.step)
        return logs

    def eval_metrics(self, ev: Evaluation) -> dict[str, float]:
        """What gets added to ``Trainer.evaluate`` metrics: ``eval_lioneval_<bench>_<metric>`` (and CI bounds)."""
        out: dict[str, float] = {}
        for key, value in self.logs_for(ev).items():
            parts = key.split("/", 2)
            if len(parts) == 3:
                out["eval_" + metric_key(parts[1], parts[2])] = value
        return out

    def _log(self, ev: Evaluation, state: Any) -> None:
        logs = self.logs_for(ev)
        if self.trainer is not None:
            self.trainer.log(dict(logs))
        else:
            state.log_history.append({**logs, "step": state.global_step})
        shown = ", ".join(f"{k.removeprefix('lioneval/')}={v:.3g}" for k, v in logs.items() if "_ci_" not in k)
        log.info("lioneval: %s: %s", ev.checkpoint, shown or ev.error)


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:+.3g}"


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
        settings = dataclasses.replace(settings, suite=suite, store=settings.store or store)
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
