"""Evaluation beside training: LionEvalCallback in background mode starts a warm `lioneval watch` process, training
never waits for it, results come back against each checkpoint's own step, and early stopping acts on them before
training ends. A real transformers Trainer on a tiny model; the policy and the judge are scripted HTTP servers."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("torch", reason="needs the `train` extra")

from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from lioneval.pipeline import DEMO_DATA  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import ScriptedServer  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402
from lioneval.trainers.callback import CheckpointLinker, LionEvalCallback  # noqa: E402
from lioneval.trainers.sft import PackedCollator, build_rows, tokenize_conversation  # noqa: E402
from lioneval.watch import outcomes  # noqa: E402

STEP_S = 0.5  # a training step's time: the watcher must keep up with a checkpoint every SAVE steps
SAVE = 4
MAX_STEPS = 200  # reached only if early stopping never acts
# The stated bound: once the watcher is warm (its first result in), a checkpoint's decision is logged within this
# many steps of its save. The first result also waits for the watcher's start-up (imports, data, judge).
LAG_STEPS = 3 * SAVE


class SlowSteps(TrainerCallback):
    """Makes each step take STEP_S, as a real model's would, and notes when each lioneval result was logged."""

    def __init__(self):
        self.arrivals: list[tuple[int, int]] = []  # (checkpoint step, step when its result was logged)

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(STEP_S)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "lioneval/step" in logs:
            self.arrivals.append((int(logs["lioneval/step"]), state.global_step))


def _policy_or_judge(request: dict) -> str:
    if request["model"] == "judge":
        return "The answer is adequate. Rating: [[7]]"  # every checkpoint scores the same: a plateau
    question = request["messages"][-1]["content"]
    return f"{request['model']} answers: {question[:80]}"


def test_background_evaluation_keeps_up_and_stops_a_plateau_before_training_ends(tmp_path):
    tiny = make_tiny_causal_lm(tmp_path / "tiny", hidden=32)
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    convs = [[{"role": "user", "content": f"Say something about {t}."},
              {"role": "assistant", "content": f"Something about {t}."}] for t in ("rain", "dogs", "foxes", "tin")]
    rows = build_rows([tokenize_conversation(tok, c, 64) for c in convs * 4], 64, packing=False)
    store = tmp_path / "runs.db"
    slow = SlowSteps()
    with ScriptedServer(_policy_or_judge) as srv:
        cb = LionEvalCallback({
            "mode": "background", "patience": 2, "store": str(store), "background_nice": 0,
            "suite": {"bench": ["mt-bench"], "data": {"mt-bench": str(DEMO_DATA / "mt_bench")}, "limit": 3,
                      "judge": f"openai-compatible:judge@{srv.base_url}",
                      "policy": f"openai-compatible:{{name}}@{srv.base_url}"},
        })
        args = TrainingArguments(output_dir=str(tmp_path / "sft"), max_steps=MAX_STEPS, save_steps=SAVE,
                                 save_strategy="steps", per_device_train_batch_size=2, learning_rate=1e-3,
                                 report_to=[], disable_tqdm=True, save_only_model=True, dataloader_pin_memory=False,
                                 save_total_limit=2)
        trainer = Trainer(model=model, args=args, train_dataset=rows, processing_class=tok,
                          data_collator=PackedCollator(tok.pad_token_id, padding_free=False),
                          callbacks=[CheckpointLinker("sft", tmp_path), cb, slow])
        cb.attach(trainer)
        try:
            trainer.train()
        finally:
            cb.close()
    assert cb.stop_reason is not None and "plateau" in cb.stop_reason
    assert trainer.state.global_step < MAX_STEPS  # stopped by the watcher's results, long before the end
    assert all(e.error is None for e in cb.evaluations)
    steps = [e.step for e in cb.evaluations]
    assert steps == sorted(steps) and len(steps) >= 3 and all(s % SAVE == 0 for s in steps)
    assert slow.arrivals[0][1] < trainer.state.global_step  # the first result came in during training
    warm = [logged - step for step, logged in slow.arrivals[1:]]
    assert warm and max(warm) <= LAG_STEPS, slow.arrivals
    with RunStore(store, readonly=True) as st:
        (stop,) = st.early_stops()
        seen = {c.meta["step"]: c.meta["outcome"] for c in outcomes(st)}
    assert stop.meta["cause"] == "plateau" and stop.step == cb.stopped_at
    assert all(seen[s] == "evaluated" for s in steps)


def test_external_mode_reads_a_watchers_results_in_step_order(tmp_path):
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from lioneval.pipeline import RunConfig
    from lioneval.watch import WatchConfig, Watcher

    store = tmp_path / "runs.db"
    cb = LionEvalCallback({"mode": "external", "patience": 5, "store": str(store),
                           "suite": {"bench": ["mt-bench"], "judge": "scripted:fair-judge", "limit": 2,
                                     "data": {"mt-bench": str(DEMO_DATA / "mt_bench")}}},
                          stage="sft", links_dir=tmp_path)
    args, control = SimpleNamespace(output_dir=str(tmp_path / "out")), TrainerControl()
    for step in (1, 2, 3):  # what a trainer leaves: checkpoint-<N>, then on_save (which links sft-step<N>)
        ckpt = tmp_path / "out" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "config.json").write_text("{}")
        (ckpt / "model.safetensors").write_bytes(bytes([step]) * 64)
        (ckpt / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
        cb.on_save(args, TrainerState(global_step=step), control)
    cb.on_step_end(args, TrainerState(global_step=3), control)
    assert cb.evaluations == []  # nothing evaluated yet, and training did not wait
    suite = RunConfig(bench=("mt-bench",), judge="scripted:fair-judge", limit=2,
                      data={"mt-bench": str(DEMO_DATA / "mt_bench")})
    Watcher(WatchConfig(folder=str(tmp_path), policy="scripted:echo", pattern="sft-step*", once=True,
                        interval=0.05), suite, str(store)).run()
    cb.on_train_end(args, TrainerState(global_step=3), control)
    assert [e.step for e in cb.evaluations] == [1, 2, 3]
    assert all(e.error is None and e.value is not None for e in cb.evaluations)
    assert cb.evaluations[0].model.startswith("sft-step1@")
    assert cb.evaluations[-1].decision is not None  # compared with the best so far, from the stored judgments
