"""A failed evaluation is a logged, stored event, never a training crash: whatever the evaluator raises, a judge that
is down or answers garbage mid-training, a trainer without a tokenizer. Real transformers (and TRL) trainers on tiny
models; scripted evaluators, or the real pipeline with a scripted policy and a judge over HTTP."""

from __future__ import annotations

import json
import logging
import math
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="needs the train extra (torch, transformers)")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from lioneval.checkpoint import identify  # noqa: E402
from lioneval.errors import IncompleteError, JudgeUnavailableError, LionEvalError  # noqa: E402
from lioneval.judges.judge import make_judge  # noqa: E402
from lioneval.pipeline import DEMO_DATA, RunConfig, run  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import ScriptedServer  # noqa: E402
from lioneval.testing.scripted import SCRIPTS, ScriptedBackend  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402
from lioneval.trainers.callback import LionEvalCallback, PipelineEvaluator  # noqa: E402
from lioneval.trainers.promotion import FAILED_CHECK  # noqa: E402
from lioneval.trainers.sft import PackedCollator, build_rows, tokenize_conversation  # noqa: E402
from lioneval.types import CheckResult, Estimate, Report, RunSpec  # noqa: E402

CONVERSATIONS = [
    [{"role": "user", "content": "what is the answer"}, {"role": "assistant", "content": "the answer is 42."}],
    [{"role": "user", "content": "write a poem about rain"},
     {"role": "assistant", "content": "rain on a tin roof, the quick brown fox sleeps"}],
]
METRIC = "eval_lioneval_mt-bench_overall"
GARBAGE = "incomplete"  # a scripted step that returns a report whose verdicts could not be read


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny", layers=1, hidden=32)


def _trainer(tiny: Path, out: Path, callbacks: list, *, tokenizer: bool = True, **args) -> Trainer:
    tok = AutoTokenizer.from_pretrained(tiny)
    rows = build_rows([tokenize_conversation(tok, c, 64) for c in CONVERSATIONS * 2], 64, packing=False)
    kw = {"output_dir": str(out / "sft"), "max_steps": 3, "save_steps": 1, "per_device_train_batch_size": 2,
          "learning_rate": 1e-3, "logging_steps": 1, "report_to": [], "save_strategy": "steps",
          "dataloader_pin_memory": False, **args}
    return Trainer(model=AutoModelForCausalLM.from_pretrained(tiny), args=TrainingArguments(**kw),
                   train_dataset=rows, eval_dataset=rows[:2], processing_class=tok if tokenizer else None,
                   data_collator=PackedCollator(tok.pad_token_id, padding_free=False), callbacks=callbacks)


def _on_evaluate(**kw) -> dict:
    """Training arguments that make transformers read the injected lioneval metric (and raise if it is missing)."""
    return {"eval_strategy": "steps", "eval_steps": 1, "metric_for_best_model": "lioneval_mt-bench_overall",
            "greater_is_better": True, "load_best_model_at_end": True, **kw}


class Scripted:
    """Per step: a score (a complete report), an exception to raise, or GARBAGE (an incomplete report)."""

    def __init__(self, script: dict, store: str | None = None):
        self.script, self.store = script, store

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        what = self.script[step]
        if isinstance(what, BaseException):
            raise what
        v = 5.0 if what == GARBAGE else float(what)
        est = Estimate(value=v, ci_low=v - 0.3, ci_high=v + 0.3, n=10, method="scripted")
        garbage = what == GARBAGE
        return [Report(run=f"run-{step}", benchmark="mt-bench", benchmark_version="test", judge="scripted",
                       model=f"{Path(checkpoint).name}@00000000", metrics={} if garbage else {"overall": est},
                       complete=not garbage,
                       incomplete=["2 of 2 verdicts could not be read (100% > 5% allowed)"] if garbage else [],
                       checks=[CheckResult(name="duplicates", scope="run", status="pass")],
                       meta={"stage": "sft", "step": step})]


class Seen(TrainerCallback):
    """What transformers got from Trainer.evaluate (after LionEvalCallback added its metrics)."""

    def __init__(self):
        self.values: list[float] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.values.append(metrics[METRIC])


def _failed_checks(db: Path) -> list[CheckResult]:
    with RunStore(db, readonly=True) as st:
        return sorted((c for c in st.checks() if c.name == FAILED_CHECK), key=lambda c: c.meta["step"])


def _resumable(ckpt: Path) -> bool:
    return all((ckpt / f).is_file() for f in ("trainer_state.json", "optimizer.pt", "scheduler.pt"))


# -- whatever the evaluator raises -------------------------------------------------------------------------------
def test_failed_evaluations_are_logged_stored_and_training_goes_on(tiny, tmp_path, caplog):
    db = tmp_path / "s.db"
    script = {1: 5.0, 2: JudgeUnavailableError("the judge answered none of 2 requests", fix="start the server"),
              3: 6.0, 4: GARBAGE, 5: IncompleteError("run x is incomplete", fix="rerun it"),
              6: RuntimeError("the evaluator broke"), 7: 5.9}
    cb = LionEvalCallback({"on_evaluate": True, "store": str(db), "patience": 5, "max_failed_evaluations": 4},
                          evaluator=Scripted(script))
    stopper, seen = EarlyStoppingCallback(early_stopping_patience=10), Seen()
    trainer = _trainer(tiny, tmp_path, [cb, stopper, seen], **_on_evaluate(max_steps=7))
    cb.attach(trainer)
    with caplog.at_level(logging.WARNING, logger="lioneval.train"):
        trainer.train()  # transformers raised KeyError at step 2: metric_for_best_model was missing
    assert trainer.state.global_step == 7 and cb.stop_reason is None  # 3 failures in a row: one short of a stop
    # the injected metric is always there; a failure holds -inf (higher is better), never an improvement
    assert seen.values == [5.0, -math.inf, 6.0, -math.inf, -math.inf, -math.inf, 5.9]
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-3")  # load_best_model_at_end: the real best
    assert stopper.early_stopping_patience_counter == 4  # failures count as "no improvement" for transformers too
    # logged through the trainer (TensorBoard, W&B, the trainer state) and the python logger
    failed = [h for h in trainer.state.log_history if "lioneval/failed" in h]
    assert [(h["lioneval/step"], h["lioneval/failed_in_a_row"]) for h in failed] == [(2, 1), (4, 1), (5, 2), (6, 3)]
    warned = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(warned) == 4 and "JudgeUnavailableError: the judge answered none" in warned[0]
    assert "training goes on" in warned[0] and "could not be read" in warned[1] and "RuntimeError" in warned[3]
    # stored: one check per failed evaluation, with the error, the step and how many in a row
    checks = _failed_checks(db)
    assert [(c.meta["step"], c.status, c.meta["in_a_row"]) for c in checks] == [(2, "warn", 1), (4, "warn", 1),
                                                                                (5, "warn", 2), (6, "warn", 3)]
    assert checks[1].run == "run-4" and "verdicts could not be read" in checks[1].meta["error"]
    assert checks[0].run is None and checks[0].model.startswith("sft-step2@")  # the checkpoint's model id
    assert "Fix: start the server" in checks[0].detail
    # a failed evaluation decides nothing: step 3 was compared with step 1, step 7 with step 3
    assert [e.decision is not None for e in cb.evaluations] == [False, False, True, False, False, False, True]
    assert cb.evaluations[6].decision["meta"]["best_step"] == 3 and cb.best.step == 3
    # the checkpoints of failed evaluations are whole: training can resume from them
    assert all(_resumable(tmp_path / "sft" / f"checkpoint-{s}") for s in (2, 4, 6))


def test_evaluations_that_keep_failing_stop_training_at_a_checkpoint_it_resumes_from(tiny, tmp_path):
    db = tmp_path / "s.db"
    down = Scripted({s: JudgeUnavailableError("the judge is down", fix="start it") for s in range(1, 9)})
    cb = LionEvalCallback({"on_evaluate": True, "store": str(db), "max_failed_evaluations": 2}, evaluator=down)
    trainer = _trainer(tiny, tmp_path, [cb], **_on_evaluate(max_steps=6))
    cb.attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 2 and cb.stopped_at == 2
    assert cb.stop_reason.startswith("2 evaluations in a row failed (max_failed_evaluations: 2)")
    ckpt = tmp_path / "sft" / "checkpoint-2"
    assert _resumable(ckpt) and json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == 2
    with RunStore(db, readonly=True) as st:
        (stop,) = st.early_stops()
    assert stop.meta["cause"] == "failed_evaluations" and stop.step == 2 and stop.run is None
    assert stop.model.startswith("sft-step2@") and "the judge is down" in stop.meta["error"]
    # the judge is back: training resumes from the checkpoint the stop left
    back = LionEvalCallback({"on_evaluate": True, "store": str(db)}, evaluator=Scripted({3: 5.0}))
    again = _trainer(tiny, tmp_path, [back], **_on_evaluate(max_steps=3))
    back.attach(again)
    again.train(resume_from_checkpoint=str(ckpt))
    assert again.state.global_step == 3 and [e.value for e in back.evaluations] == [5.0]


# -- the real pipeline: a judge over HTTP that answers garbage, then goes down ---------------------------------------
@dataclass
class JudgedEvaluator:
    """lioneval.pipeline.run on the checkpoint, with a scripted policy (no generation) and a real judge."""

    suite: RunConfig
    store: str
    before: dict

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        self.before.get(step, lambda: None)()
        info = identify(checkpoint)
        spec = RunSpec(model=info.model_id, checkpoint=checkpoint, stage="sft", step=step,
                       weights_hash=info.weights_hash)
        echo = SCRIPTS["echo"]  # answers of its own per step: no judge verdict is reused from an earlier step
        policy = ScriptedBackend("echo", fn=lambda chat, sampling: f"{echo(chat, sampling)} (step {step})")
        with RunStore(self.store) as st:
            return run(self.suite, st, backend=policy, spec=spec, judge=make_judge(self.suite.judge)).reports


def _judge_file(folder: Path, url: str) -> str:
    path = folder / "judge.yaml"  # no retries: a judge that is down fails at once
    path.write_text(f"kind: openai-compatible\nmodel: judge\nbase_urls: [{url}]\nmax_retries: 0\ntimeout: 5\n")
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_judge_that_answers_garbage_then_goes_down_mid_training(tiny, tmp_path, caplog):
    db = tmp_path / "s.db"
    mode = {"verdict": "Rating: [[7]]"}
    with ScriptedServer(lambda req: mode["verdict"]) as srv:
        suite = RunConfig(bench=("mt-bench",), judge=_judge_file(tmp_path, srv.base_url),
                          data={"mt-bench": str(DEMO_DATA / "mt_bench")}, limit=2)
        before = {2: lambda: mode.update(verdict="I would rather not say."), 3: srv.stop}
        cb = LionEvalCallback({"store": str(db), "patience": 2}, evaluator=JudgedEvaluator(suite, str(db), before))
        trainer = _trainer(tiny, tmp_path, [cb])
        cb.attach(trainer)
        with caplog.at_level(logging.WARNING, logger="lioneval.train"):
            trainer.train()
    assert trainer.state.global_step == 3 and cb.stop_reason is None
    ok, garbage, down = cb.evaluations
    assert ok.error is None and ok.value == 7.0 and cb.best is ok
    assert "verdicts could not be read" in garbage.error and garbage.value is None and garbage.decision is None
    assert "connection refused" in down.error and down.failures == 2
    assert sum("failed (" in r.getMessage() for r in caplog.records) == 2
    assert [h["lioneval/failed_in_a_row"] for h in trainer.state.log_history if "lioneval/failed" in h] == [1, 2]
    checks = _failed_checks(db)
    assert [(c.meta["step"], c.run) for c in checks] == [(2, garbage.reports[0].run), (3, down.reports[0].run)]
    assert "could not be read" in checks[0].meta["error"] and "connection refused" in checks[1].meta["error"]
    with RunStore(db, readonly=True) as st:  # the pipeline's reports say the same: stored as incomplete
        assert [r.complete for r in sorted(st.reports(), key=lambda r: r.meta["step"])] == [True, False, False]
        assert st.early_stops() == []


# -- a trainer without a tokenizer --------------------------------------------------------------------------------
def test_a_trainer_without_a_tokenizer_trains_on_and_says_why_evaluations_fail(tiny, tmp_path, caplog):
    db = tmp_path / "s.db"
    suite = RunConfig(bench=("mt-bench",), judge="scripted:fair-judge", limit=1, max_new_tokens=4,
                      data={"mt-bench": str(DEMO_DATA / "mt_bench")})
    cb = LionEvalCallback({"on_evaluate": True}, evaluator=PipelineEvaluator(suite, str(db)))
    stopper, seen = EarlyStoppingCallback(early_stopping_patience=3), Seen()
    trainer = _trainer(tiny, tmp_path, [cb, stopper, seen], tokenizer=False, **_on_evaluate(max_steps=2))
    with caplog.at_level(logging.WARNING, logger="lioneval.train"):
        cb.attach(trainer)
        trainer.train()
    assert trainer.state.global_step == 2
    assert "the trainer has no tokenizer (processing_class)" in caplog.text
    assert all("holds no tokenizer" in e.error and "processing_class=tokenizer" in e.error for e in cb.evaluations)
    assert seen.values == [-math.inf, -math.inf]
    checks = _failed_checks(db)
    assert [c.model.partition("@")[0] for c in checks] == ["sft-step1", "sft-step2"]


# -- a TRL trainer: the DPO stage with a judge that is down ---------------------------------------------------------
def test_dpo_stage_trains_through_a_judge_that_is_down(tiny, tmp_path):
    pytest.importorskip("trl", reason="needs the train extra (trl)")
    from lioneval.trainers.dpo import DPOConfig, dpo

    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"question {i}", "chosen": "the answer is 42", "rejected": "no"})
                             + "\n" for i in range(4)))
    db = tmp_path / "s.db"
    judge = _judge_file(tmp_path, f"http://127.0.0.1:{_free_port()}/v1")
    result = dpo(DPOConfig(model=str(tiny), data=str(prefs), output_dir=str(tmp_path / "out"), max_length=64,
                           max_steps=2, save_steps=1, per_device_train_batch_size=2, report_to=["none"],
                           eval={"suite": {"bench": ["mt-bench"], "judge": judge, "limit": 1, "max_new_tokens": 2},
                                 "demo_data": True, "patience": 1}),
                 store=str(db))
    assert result.steps == 2 and not result.stopped_early
    assert [Path(c).name for c in result.checkpoints] == ["dpo-step1", "dpo-step2"]
    assert all("could not connect" in e["error"] for e in result.evaluations)
    assert [e["failures"] for e in result.evaluations] == [1, 2]
    assert [c.meta["step"] for c in _failed_checks(db)] == [1, 2]


def test_a_failure_never_becomes_the_best_for_transformers_even_when_lower_is_better(tiny, tmp_path):
    cb = LionEvalCallback({"on_evaluate": True, "greater_is_better": False},
                          evaluator=Scripted({1: LionEvalError("no judge")}))
    seen = Seen()
    trainer = _trainer(tiny, tmp_path, [cb, seen], **_on_evaluate(max_steps=1, greater_is_better=False))
    cb.attach(trainer)
    trainer.train()
    assert seen.values == [math.inf]
    other = LionEvalCallback({"on_evaluate": True}, evaluator=Scripted({}))
    wrong = _trainer(tiny, tmp_path / "wrong", [other], **_on_evaluate(greater_is_better=False))
    with pytest.raises(LionEvalError, match="greater_is_better=False, but for mt-bench/overall higher is better"):
        other.attach(wrong)
