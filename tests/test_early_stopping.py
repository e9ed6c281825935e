"""Early stopping on paired decisions: plateaus, drops and noisy flat runs; which cheat flags stop training; and the
Decisions early stopping makes are the ones promotion honours. Scripted evaluators (scores, or per-question judgments
written to a real store) in real transformers trainers on a tiny model, or fed to the callback directly."""

from __future__ import annotations

import logging
import math
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="needs the train extra (torch, transformers)")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from lioneval import decisions as D  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402
from lioneval.trainers.callback import CheckpointLinker, LionEvalCallback  # noqa: E402
from lioneval.trainers.promotion import EARLY_STOP_CHECK, PromotionPolicy, early_stop_decisions, promote  # noqa: E402
from lioneval.trainers.sft import PackedCollator, build_rows, tokenize_conversation  # noqa: E402
from lioneval.types import Answer, CheckResult, Estimate, Judgment, Report, RunSpec  # noqa: E402

JUDGE = "openai:gpt-4o#abc"
METRIC = "eval_lioneval_mt-bench_overall"
CONVERSATIONS = [
    [{"role": "user", "content": "what is the answer"}, {"role": "assistant", "content": "the answer is 42."}],
    [{"role": "user", "content": "write a poem about rain"},
     {"role": "assistant", "content": "rain on a tin roof, the quick brown fox sleeps"}],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny", layers=1, hidden=32)


def _trainer(tiny: Path, out: Path, callbacks: list, **args) -> Trainer:
    tok = AutoTokenizer.from_pretrained(tiny)
    rows = build_rows([tokenize_conversation(tok, c, 64) for c in CONVERSATIONS * 2], 64, packing=False)
    kw = {"output_dir": str(out / "sft"), "max_steps": 8, "save_steps": 1, "per_device_train_batch_size": 2,
          "learning_rate": 1e-3, "logging_steps": 1, "report_to": [], "save_strategy": "steps",
          "dataloader_pin_memory": False, **args}
    return Trainer(model=AutoModelForCausalLM.from_pretrained(tiny), args=TrainingArguments(**kw),
                   train_dataset=rows, eval_dataset=rows[:2], processing_class=tok,
                   data_collator=PackedCollator(tok.pad_token_id, padding_free=False), callbacks=callbacks)


# -- evaluators -------------------------------------------------------------------------------------------------
class Scores:
    """Scripted MT-Bench scores per step, without stored judgments (the unpaired test decides), with the checks
    ``flags[step]`` names as flagged (or ``(name, scope, status)``)."""

    def __init__(self, scores: dict[int, float], flags: dict[int, list] | None = None, half_width: float = 0.3):
        self.scores, self.flags, self.half_width = scores, flags or {}, half_width

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        v = self.scores[step]
        checks = [CheckResult(name=f, scope="run", status="flag") if isinstance(f, str)
                  else CheckResult(name=f[0], scope=f[1], status=f[2]) for f in self.flags.get(step, [])]
        est = Estimate(value=v, ci_low=v - self.half_width, ci_high=v + self.half_width, n=10, method="scripted")
        return [Report(run=f"run-{step}", benchmark="mt-bench", benchmark_version="test", judge="scripted",
                       model=f"{Path(checkpoint).name}@00000000", metrics={"overall": est}, checks=checks,
                       meta={"stage": "sft", "step": step})]


def _ratings(rng, q: np.ndarray, effect: float, noise: float = 1.2) -> np.ndarray:
    """MT-Bench-like 1-10 ratings for two turns: question difficulty, checkpoint noise, a true effect."""
    return np.clip(np.rint(q[:, None] + effect + rng.normal(0, noise, (len(q), 2))), 1, 10)


def _stored(st: RunStore, checkpoint: str, step: int, ratings: np.ndarray, length: int) -> Report:
    """A run with its own per-question MT-Bench judgments, answers and report, as the pipeline writes them."""
    model = f"sft-step{step}@{step:08d}"
    key = st.put_run(RunSpec(model=model, checkpoint=checkpoint, stage="sft", step=step, benchmarks=["mt-bench"],
                             judge="openai:gpt-4o"))
    js = [Judgment(question_id=f"q{i:03d}", benchmark="mt-bench", judge=JUDGE, model=model, kind="rating", turn=t + 1,
                   value=float(ratings[i, t]), inputs=f"{model}/{i}/{t}")
          for i in range(len(ratings)) for t in range(ratings.shape[1])]
    st.put_judgments(js)
    st.link(key, "judgments", [j.key for j in js])
    st.put_answers([Answer(question_id=f"q{i:03d}", benchmark="mt-bench", model=model, turns=["x" * length])
                    for i in range(len(ratings))])
    per_q = ratings.mean(1)
    half = 1.96 * per_q.std(ddof=1) / math.sqrt(len(per_q))
    est = Estimate(value=float(ratings.mean()), ci_low=float(ratings.mean() - half),
                   ci_high=float(ratings.mean() + half), n=len(per_q), method="bootstrap-percentile")
    report = Report(run=key, benchmark="mt-bench", benchmark_version="v1", model=model, judge=JUDGE,
                    metrics={"overall": est}, meta={"stage": "sft", "step": step})
    st.put_report(report)
    return report


@dataclass
class Judged:
    """Writes each step's scripted per-question judgments to the store and returns its report: the callback then
    decides on paired per-question differences, as with the real pipeline."""

    store: str
    ratings: dict[int, np.ndarray]
    lengths: dict[int, int] = field(default_factory=dict)

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        with RunStore(self.store) as st:
            return [_stored(st, checkpoint, step, self.ratings[step], self.lengths.get(step, 300))]


def _feed(cb: LionEvalCallback, steps, evaluator) -> int | None:
    """Evaluations handed to the callback one by one, as a trainer would; the step training stopped at."""
    state, control = TrainerState(), TrainerControl()
    for s in steps:
        cb._record(s, f"/ckpts/sft-step{s}", evaluator(f"/ckpts/sft-step{s}", s), None, state, control)
        if control.should_training_stop:
            return s
    return None


# -- plateaus and drops -------------------------------------------------------------------------------------------
def test_constant_scores_stop_when_patience_runs_out(tiny, tmp_path):
    db = tmp_path / "s.db"
    cb = LionEvalCallback({"patience": 2, "store": str(db)}, evaluator=Scores({s: 6.0 for s in range(1, 9)}))
    trainer = _trainer(tiny, tmp_path, [cb])
    cb.attach(trainer)
    trainer.train()  # eight identical scores used to run to the last step
    assert trainer.state.global_step == 3 and cb.stopped_at == 3
    assert [e.improved for e in cb.evaluations] == [True, False, False]
    assert [e.in_contention for e in cb.evaluations] == [True, True, True]  # a plateau, not a drop
    assert cb.stop_reason.startswith("plateau: 2 evaluation(s) in a row not significantly better than step 1")
    with RunStore(db, readonly=True) as st:
        (stop,) = st.early_stops()
        assert stop.meta["cause"] == "plateau" and stop.step == 3 and stop.meta["reference_step"] == 1
        assert stop.meta["decision"]["verdict"] == "inconclusive" and stop.meta["decision"]["meta"]["stale"] == 2
        # every comparison is stored, on its run: the Decision promotion reads
        stored = early_stop_decisions(st, ["run-1", "run-2", "run-3"])
    assert sorted(stored) == ["run-2", "run-3"]  # the first evaluation has nothing to be compared with
    assert [(d.kind, d.incumbent, d.verdict) for d in stored.values()] == [("early_stop", "run-1", "inconclusive")] * 2


def test_a_real_drop_stops_as_a_drop(tiny, tmp_path):
    cb = LionEvalCallback({"patience": 2}, evaluator=Scores({1: 5.0, 2: 6.0, 3: 4.0, 4: 3.9, 5: 7.0, 6: 7.0}))
    trainer = _trainer(tiny, tmp_path, [cb], max_steps=6)
    cb.attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 4
    assert [e.decision["verdict"] if e.decision else None for e in cb.evaluations] == [None, "better", "worse",
                                                                                       "worse"]
    assert [e.improved for e in cb.evaluations] == [True, True, False, False]
    assert cb.stop_reason.startswith("2 evaluation(s) in a row significantly worse than the best checkpoint (step 2")


def test_a_noisy_flat_run_stops_no_earlier_than_patience_allows(tmp_path):
    # no true difference between checkpoints: a plateau from the start. With patience 3 the earliest stop is the
    # fourth evaluation (the first has nothing to be compared with); a chance "improvement" only delays it, and no
    # flat run is stopped for a drop
    stops, causes = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        q = rng.normal(6, 2.5, 40)
        db = tmp_path / f"s{seed}.db"
        judged = Judged(str(db), {s: _ratings(rng, q, 0.0) for s in range(1, 11)})
        cb = LionEvalCallback({"patience": 3, "store": str(db)}, evaluator=judged)
        stops.append(_feed(cb, range(1, 11), judged))
        causes.append(cb.stop_reason.partition(":")[0] if cb.stop_reason else None)
        assert all(e.decision["method"] == D.METHOD for e in cb.evaluations[1:])  # paired on the stored judgments
    assert all(s is not None and s >= 4 for s in stops), stops
    assert stops.count(4) >= 6 and set(causes) == {"plateau"}


def test_gains_that_add_up_are_not_a_plateau(tmp_path):
    # each checkpoint a little better than the last (0.15 points): mostly too little to tell from the best one just
    # before it, so a plateau measured against the best so far would stop at step 3; measured against the checkpoint
    # that last improved significantly, the gains add up and reset the count before patience runs out
    rng = np.random.default_rng(0)
    q = rng.normal(5, 2, 80)
    db = tmp_path / "s.db"
    judged = Judged(str(db), {s: _ratings(rng, q, 0.15 * s, noise=0.8) for s in range(1, 9)})
    cb = LionEvalCallback({"patience": 2, "store": str(db)}, evaluator=judged)
    assert _feed(cb, range(1, 9), judged) is None
    verdicts = [e.decision["verdict"] for e in cb.evaluations[1:]]
    assert verdicts[:2] == ["inconclusive", "inconclusive"] and verdicts.count("better") <= 1
    assert [e.improved for e in cb.evaluations] == [True, False, True, False, True, False, True, False]
    assert [e.decision["meta"]["reference_step"] for e in cb.evaluations[1:]] == [1, 1, 3, 3, 5, 5, 7]


def test_plateau_detection_can_be_turned_off(tmp_path):
    cb = LionEvalCallback({"patience": 2, "stop_on_plateau": False}, evaluator=Scores({}))
    assert _feed(cb, range(1, 9), Scores({s: 6.0 for s in range(1, 9)})) is None
    assert cb.stale == 7 and cb.strikes == 0


# -- which flags stop training -----------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["injection", "duplicates", ("judge_gameable", "judge", "flag")])
def test_real_cheat_flags_stop_training(flag):
    cb = LionEvalCallback({"patience": 3}, evaluator=Scores({}))
    stopped = _feed(cb, [1, 2, 3], Scores({1: 5.0, 2: 5.5, 3: 5.0}, flags={2: [flag]}))
    name = flag if isinstance(flag, str) else flag[0]
    assert stopped == 2 and cb.stop_reason == f"cheat checks flagged /ckpts/sft-step2 ({name})"


def test_off_topic_answers_and_length_warnings_never_stop_training(caplog):
    flags = {2: ["ignores_question"], 3: [("length_ratio", "run", "warn"), ("style_control_gap", "run", "warn")]}
    cb = LionEvalCallback({"patience": 5}, evaluator=Scores({}))
    with caplog.at_level(logging.WARNING, logger="lioneval.train"):
        assert _feed(cb, [1, 2, 3, 4], Scores({1: 5.0, 2: 9.0, 3: 6.0, 4: 5.0}, flags=flags)) is None
    first, off_topic, long_answers, _ = cb.evaluations
    assert off_topic.flagged == ["ignores_question"] and off_topic.cheat == []
    assert "checks flagged /ckpts/sft-step2 (ignores_question): it cannot become the best checkpoint" in caplog.text
    assert long_answers.flagged == [] and cb.best is long_answers  # warnings change nothing
    # the flagged one is still compared (significantly better than step 1) but it neither becomes the best nor
    # counts as an improvement
    assert off_topic.decision["verdict"] == "better" and off_topic.improved is False
    assert cb.logs_for(off_topic)["lioneval/mt-bench/cheat_flagged"] == 1.0


def test_without_stop_on_cheat_flagged_checkpoints_are_evaluated_and_early_stopping_stays_on(tiny, tmp_path):
    scores = Scores({1: 5.0, 2: 9.0, 3: 5.0, 4: 5.0, 5: 5.0}, flags={2: ["duplicates"]})
    cb = LionEvalCallback({"patience": 2, "stop_on_cheat": False, "on_evaluate": True}, evaluator=scores)
    args = {"eval_strategy": "steps", "eval_steps": 1, "metric_for_best_model": "lioneval_mt-bench_overall",
            "greater_is_better": True, "load_best_model_at_end": True, "max_steps": 5}
    trainer = _trainer(tiny, tmp_path, [cb], **args)
    cb.attach(trainer)
    trainer.train()
    # step 2 is flagged: evaluated and logged, never the best, no improvement; steps 2 and 3 make the plateau
    assert trainer.state.global_step == 3 and cb.stop_reason.startswith("plateau: 2 evaluation(s)")
    assert cb.evaluations[1].flagged == ["duplicates"] and cb.best.step == 1
    assert cb.evaluations[1].decision["meta"]["flagged"] == ["duplicates"]
    assert cb.eval_metrics(cb.evaluations[1])[METRIC] == -math.inf  # transformers' best model is never a flagged one
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-1")
    assert any(h.get("lioneval/mt-bench/cheat_flagged") == 1.0 for h in trainer.state.log_history)


# -- one decision for early stopping and promotion ------------------------------------------------------------------
def test_promotion_never_picks_a_checkpoint_early_stopping_found_worse(tiny, tmp_path):
    # The demo's contradiction: step 4 stopped training as significantly worse than step 3, then was promoted as
    # "tied, shorter" (non-inferior to the incumbent, step 1, and shorter), while step 3, longer, had to be
    # significantly better than step 1 and was not. Steps 3 and 4 share most of their per-question noise, so their
    # paired difference is sharp; step 1's own noise makes both of them uncertain against it.
    rng = np.random.default_rng(7)
    n = 80
    base = rng.normal(6, 1.5, n)
    shared = rng.normal(0, 1.0, n)

    def two_turns(per_question):
        return np.clip(np.repeat(per_question[:, None], 2, 1) + rng.normal(0, 0.05, (n, 2)), 1, 10)

    ratings = {1: two_turns(base + rng.normal(0, 1.0, n)), 2: two_turns(base + rng.normal(0, 1.0, n)),
               3: two_turns(base + shared + 0.25), 4: two_turns(base + shared - 0.05 + rng.normal(0, 0.1, n))}
    ratings |= {s: two_turns(base + shared - 0.05) for s in (5, 6)}
    db = tmp_path / "s.db"
    judged = Judged(str(db), ratings, lengths={1: 300, 2: 300, 3: 400, 4: 250, 5: 250, 6: 250})
    cb = LionEvalCallback({"patience": 1, "stop_on_plateau": False, "store": str(db)}, evaluator=judged)
    trainer = _trainer(tiny, tmp_path, [CheckpointLinker("sft", tmp_path), cb], max_steps=6)
    cb.attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 4 and cb.stopped_at == 4  # the stop fires at step 4
    stop_decision = cb.evaluations[3].decision
    assert stop_decision["verdict"] == "worse" and stop_decision["meta"]["best_step"] == 3
    assert stop_decision["method"] == D.METHOD
    policy = PromotionPolicy(weights={"mt-bench/overall": 1.0}, margin=0.5)
    with RunStore(db) as st:
        d = promote(st, "sft", policy, record=False, mark=False)
        runs = {c.step: c.run for c in d.candidates}
        assert early_stop_decisions(st, [runs[4]])[runs[4]].model_dump(mode="json") == stop_decision
    assert d.promoted and d.promoted[0].step != 4
    step4 = next(c for c in d.candidates if c.step == 4)
    assert step4.excluded.startswith("early stopping found it significantly worse than sft-step3")
    assert "excluded sft-step4: early stopping found it significantly worse than sft-step3" in " | ".join(d.reasons)
    # without the early-stopping Decisions (a store written before they were kept) promotion would pick step 4
    # "tied, shorter": the contradiction this rule removes
    old = tmp_path / "old.db"
    with RunStore(db) as st:
        st.close()
    shutil.copy(db, old)
    with sqlite3.connect(old) as con:
        con.execute("DELETE FROM checks WHERE name = ?", (EARLY_STOP_CHECK,))
    with RunStore(old) as st:
        before = promote(st, "sft", policy, record=False, mark=False)
    assert before.promoted[0].step == 4 and before.promoted[0].verdict == "non-inferior"
