"""Training stages, the evaluation callback, early stopping and promotion, on tiny models built from a config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs the train extra (torch, transformers, trl)")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
)

from lioneval.checkpoint import identify  # noqa: E402
from lioneval.cli import main  # noqa: E402
from lioneval.errors import ConfigError, DataError, LionEvalError  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import ScriptedServer  # noqa: E402
from lioneval.testing.stage_data import rating_by_length, write_stage_data  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm, make_tiny_reward_model  # noqa: E402
from lioneval.trainers.callback import CheckpointLinker, LionEvalCallback, PipelineEvaluator  # noqa: E402
from lioneval.trainers.config import config_from_dict  # noqa: E402
from lioneval.trainers.dpo import DPOConfig, dpo  # noqa: E402
from lioneval.trainers.evalset import split_eval  # noqa: E402
from lioneval.trainers.online_dpo import OnlineDPOConfig, best_worst_pairs, online_dpo  # noqa: E402
from lioneval.trainers.promotion import PromotionPolicy, promote  # noqa: E402
from lioneval.trainers.recipe import load_recipe, train  # noqa: E402
from lioneval.trainers.sft import (  # noqa: E402
    IGNORE,
    PackedCollator,
    SFTConfig,
    build_rows,
    sft,
    tokenize_conversation,
)
from lioneval.types import Answer, CheckResult, Estimate, Report, RunSpec  # noqa: E402

CONVERSATIONS = [
    [{"role": "user", "content": "what is the answer"}, {"role": "assistant", "content": "the answer is 42."}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "rate this"},
     {"role": "assistant", "content": "[[8]]"}, {"role": "user", "content": "why"},
     {"role": "assistant", "content": "because the quick fox jumps over the lazy dog."}],
    [{"role": "user", "content": "write a poem about rain"},
     {"role": "assistant", "content": "rain on a tin roof, the quick brown fox sleeps"}],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    messages = {"prompt": [{"role": "user", "content": "explain why"}],  # a pair written as chat messages
                "chosen": [{"role": "assistant", "content": "because the judge rates it"}],
                "rejected": [{"role": "assistant", "content": "verdict"}]}
    return write_stage_data(tmp_path_factory.mktemp("data"), [CONVERSATIONS[i % 3] for i in range(8)],
                            ["write about rain", "explain the answer", "name a rating"], preferences=[messages])


def _small(**kw):
    return {"max_steps": 2, "save_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1,
            "learning_rate": 1e-3, "report_to": ["none"], **kw}


# -- SFT: packing and masking -------------------------------------------------------------------------------------
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packing_gives_the_per_token_loss_of_the_unpacked_batch(tiny, attn):
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation=attn)
    model.train()  # training mode: the path the trainer takes (with the model's default KV cache setting)
    torch.manual_seed(0)
    docs = [tokenize_conversation(tok, c, 256) for c in CONVERSATIONS]
    packed_rows = build_rows(docs, 256, packing=True)
    assert len(packed_rows) == 1 and packed_rows[0]["position_ids"].count(0) == 3  # all three in one row
    packed = PackedCollator(tok.pad_token_id, padding_free=True)(packed_rows)
    unpacked = PackedCollator(tok.pad_token_id, padding_free=False)(build_rows(docs, 256, packing=False))
    model.config.hidden_dropout = 0.0
    with torch.no_grad():
        lp = model(**{k: v for k, v in packed.items() if k != "labels"}).logits
        lu = model(**{k: v for k, v in unpacked.items() if k != "labels"}).logits

    def per_token(logits, labels):
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                               reduction="none", ignore_index=IGNORE)
        keep = labels[:, 1:].flatten() != IGNORE
        return ce[keep], labels[:, 1:].flatten()[keep]

    a, ta = per_token(lp, packed["labels"])
    b, tb = per_token(lu, unpacked["labels"])
    # the packed row holds the documents longest first; compare document by document
    order = sorted(range(3), key=lambda i: -len(docs[i][0]))
    counts = [sum(1 for t in docs[i][1][1:] if t != IGNORE) for i in range(3)]
    starts_u = [sum(counts[:i]) for i in range(3)]
    got = torch.cat([b[starts_u[i]: starts_u[i] + counts[i]] for i in order])
    assert torch.equal(ta, torch.cat([tb[starts_u[i]: starts_u[i] + counts[i]] for i in order]))
    torch.testing.assert_close(a, got, rtol=1e-5, atol=1e-5)


def test_only_assistant_tokens_carry_loss(tiny):
    tok = AutoTokenizer.from_pretrained(tiny)
    conv = CONVERSATIONS[1]
    ids, labels = tokenize_conversation(tok, conv)
    learned = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    assert learned == "[[8]]<|im_end|>\nbecause the quick fox jumps over the lazy dog.<|im_end|>\n"
    assert all(lab in (IGNORE, t) for t, lab in zip(ids, labels, strict=True))
    # the model's loss is the mean over the assistant targets only: masked positions add nothing
    model = AutoModelForCausalLM.from_pretrained(tiny)
    batch = PackedCollator(tok.pad_token_id)(build_rows([(ids, labels)], 256))
    with torch.no_grad():
        out = model(**batch)
    logits, lab = out.logits[0, :-1], batch["labels"][0, 1:]
    keep = lab != IGNORE
    manual = torch.nn.functional.cross_entropy(logits[keep], lab[keep])
    torch.testing.assert_close(out.loss, manual)
    assert keep.sum() < len(ids) / 2  # the prompt tokens really were left out


# -- the stages -----------------------------------------------------------------------------------------------------
def _loads(path: str, stage: str, step: int) -> None:
    info = identify(path)
    assert (info.stage, info.step) == (stage, step)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == len(tok) and tok.chat_template


def test_each_stage_writes_loadable_checkpoints(tiny, data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    s = sft(SFTConfig(model=str(tiny), data=str(data["sft"]), output_dir=str(out), max_length=128, **_small()))
    assert [Path(c).name for c in s.checkpoints] == ["sft-step1", "sft-step2"] and s.steps == 2
    _loads(s.last, "sft", 2)

    import lioneval.trainers.dpo as dpo_mod

    seen = []
    original = dpo_mod.dpo_trainer

    def spy(*a, **k):
        trainer = original(*a, **k)
        seen.append(trainer)
        return trainer

    monkeypatch.setattr(dpo_mod, "dpo_trainer", spy)
    d = dpo(DPOConfig(model=s.last, data=str(data["prefs"]), output_dir=str(out), beta=0.2, max_length=128,
                      **_small()))
    # reference log-probs precomputed (when the trainer is built or when training starts, by TRL version), no second
    # model
    assert [(t.ref_model, "ref_chosen_logps" in t.train_dataset.column_names) for t in seen] == [(None, True)]
    _loads(d.last, "dpo", 2)

    with ScriptedServer(rating_by_length) as srv:  # ratings that depend on the answer, so few ties
        o = online_dpo(OnlineDPOConfig(
            model=d.last, prompts=str(data["prompts"]), judge=f"openai-compatible:judge@{srv.base_url}",
            output_dir=str(out), rounds=2, k=3, max_new_tokens=8, **_small(max_steps=-1, steps_per_round=1)))
        assert len(srv.requests) >= 2 * 3 * 2  # every sample of both rounds was judged
    assert [Path(c).name for c in o.checkpoints] == ["online-dpo-step1", "online-dpo-step2"]
    _loads(o.last, "online-dpo", 2)  # the step counts across rounds, in the name and in trainer_state.json


def test_best_worst_pairs_skip_ties_and_unscored():
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    samples = [["a", "b", "c"], ["x", "y", "z"], ["m", "n", "o"]]
    scores = [[3.0, 7.0, 5.0], [4.0, 4.0, 4.0], [None, 2.0, None]]
    pairs = best_worst_pairs(prompts, samples, scores)
    assert len(pairs) == 1
    assert pairs[0]["chosen"][0]["content"] == "b" and pairs[0]["rejected"][0]["content"] == "a"


# -- the callback ---------------------------------------------------------------------------------------------------
class ScriptedEvaluator:
    """Returns reports with scripted MT-Bench scores (and cheat flags) per step."""

    def __init__(self, scores: dict[int, float], flagged: tuple[int, ...] = (), half_width: float = 0.3):
        self.scores, self.flagged, self.half_width = scores, flagged, half_width
        self.calls: list[tuple[str, int, bool]] = []

    def __call__(self, checkpoint: str, step: int) -> list[Report]:
        self.calls.append((checkpoint, step, (Path(checkpoint) / "model.safetensors").is_file()))
        v = self.scores[step]
        flag = step in self.flagged
        checks = [CheckResult(name="duplicates", scope="run", status="flag" if flag else "pass")]
        est = Estimate(value=v, ci_low=v - self.half_width, ci_high=v + self.half_width, n=10, method="scripted")
        return [Report(run=f"run-{step}", benchmark="mt-bench", benchmark_version="test", judge="scripted",
                       model=f"{Path(checkpoint).name}@00000000", metrics={"overall": est}, checks=checks,
                       meta={"stage": "sft", "step": step, "cheat_flagged": flag})]


def _trainer(tiny, tmp_path, callbacks, **args):
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    rows = build_rows([tokenize_conversation(tok, c, 128) for c in CONVERSATIONS * 2], 128, packing=False)
    kw = {"output_dir": str(tmp_path / "sft"), "max_steps": 8, "save_steps": 1, "per_device_train_batch_size": 2,
          "learning_rate": 1e-3, "logging_steps": 1, "report_to": [], "save_strategy": "steps",
          "dataloader_pin_memory": False, **args}
    return Trainer(model=model, args=TrainingArguments(**kw), train_dataset=rows, eval_dataset=rows[:2],
                   data_collator=PackedCollator(tok.pad_token_id, padding_free=False), processing_class=tok,
                   callbacks=callbacks)


def test_callback_evaluates_on_save_logs_and_stops_when_scores_drop(tiny, tmp_path):
    scripted = ScriptedEvaluator({1: 5.0, 2: 6.0, 3: 5.8, 4: 4.0, 5: 3.9, 6: 7.0, 7: 7.0, 8: 7.0})
    store = tmp_path / "s.db"
    # only drops count here (tests/test_early_stopping.py covers plateaus, which would stop this run at step 4)
    cb = LionEvalCallback({"patience": 2, "store": str(store), "stop_on_plateau": False}, evaluator=scripted)
    trainer = _trainer(tiny, tmp_path, [CheckpointLinker("sft", tmp_path), cb])
    cb.attach(trainer)
    trainer.train()
    # step 3 (5.8) is not significantly worse than the best (6.0): no strike; steps 4 and 5 are: stop at 5. The
    # scripted reports have no stored judgments, so the unpaired test on their estimates decides.
    assert trainer.state.global_step == 5 and cb.stopped_at == 5
    assert [e.in_contention for e in cb.evaluations] == [True, True, True, False, False]
    assert [(Path(c).name, s, ok) for c, s, ok in scripted.calls] == [(f"sft-step{i}", i, True) for i in range(1, 6)]
    logged = [h for h in trainer.state.log_history if "lioneval/mt-bench/overall" in h]
    assert [h["lioneval/mt-bench/overall"] for h in logged] == [5.0, 6.0, 5.8, 4.0, 3.9]
    assert logged[1]["lioneval/mt-bench/overall_ci_low"] == pytest.approx(5.7)
    assert logged[1]["lioneval/mt-bench/overall_ci_high"] == pytest.approx(6.3)
    assert logged[-1]["lioneval/early_stop_step"] == 5
    with RunStore(store, readonly=True) as st:  # the dashboard reads the stop from the store: an EarlyStop record
        (stop,) = st.early_stops()
        assert st.runs() == []  # and no extra run stands for it
        assert (stop.stage, stop.step, stop.run, stop.model) == ("sft", 5, "run-5", "sft-step5@00000000")
        assert Path(stop.checkpoint).name == "sft-step5" and stop.metric == "mt-bench/overall"
        assert stop.reason == cb.stop_reason and "significantly worse than the best checkpoint" in stop.reason
        assert stop.meta["decision"]["verdict"] == "worse" and stop.meta["decision"]["method"] == "unpaired-z"
        assert stop.meta["alpha"] == 0.05 and "bonferroni over 4" in stop.meta["decision"]["correction"]
        assert st.early_stops(stage="sft", model="sft-step5@00000000") == [stop]


def test_callback_stops_when_cheat_checks_flag(tiny, tmp_path):
    scripted = ScriptedEvaluator({1: 5.0, 2: 9.5, 3: 9.6}, flagged=(2,))
    cb = LionEvalCallback({"store": str(tmp_path / "s.db")}, evaluator=scripted)
    trainer = _trainer(tiny, tmp_path, [cb])
    cb.attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 2 and "duplicates" in cb.stop_reason
    assert cb.best.step == 1  # a flagged checkpoint never becomes the best
    with RunStore(tmp_path / "s.db", readonly=True) as st:
        (stop,) = st.early_stops()
        assert (stop.step, stop.run, stop.metric) == (2, "run-2", None)  # the cheat checks, not a score, stopped it
        assert stop.meta["flagged"] == ["duplicates"] and st.runs() == []


def test_injected_metrics_drive_load_best_model_and_early_stopping(tiny, tmp_path):
    scripted = ScriptedEvaluator({1: 5.0, 2: 8.0, 3: 6.0, 4: 7.0, 5: 9.0, 6: 9.0})
    cb = LionEvalCallback({"on_evaluate": True}, evaluator=scripted)
    stopper = EarlyStoppingCallback(early_stopping_patience=2)
    args = {"eval_strategy": "steps", "eval_steps": 1, "metric_for_best_model": "lioneval_mt-bench_overall",
            "greater_is_better": True, "load_best_model_at_end": True, "max_steps": 6}
    wrong = _trainer(tiny, tmp_path / "wrong", [stopper, cb], **args)
    with pytest.raises(LionEvalError, match="before LionEvalCallback"):
        cb.attach(wrong)
    trainer = _trainer(tiny, tmp_path, [cb, stopper], **args)
    cb.attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 4  # EarlyStoppingCallback saw 6.0 and 7.0 fail to beat 8.0
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 4
    best = AutoModelForCausalLM.from_pretrained(tmp_path / "sft-step2")
    last = AutoModelForCausalLM.from_pretrained(tmp_path / "sft-step4")
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in best.state_dict().items())
    assert not all(torch.equal(final[k], v) for k, v in last.state_dict().items())
    # the weights scored during evaluate are the ones the trainer then saved: one checkpoint identity
    assert all(ok for _, _, ok in scripted.calls)


def test_background_mode_runs_the_pipeline_in_a_worker(tiny, tmp_path):
    from lioneval.pipeline import DEMO_DATA, RunConfig

    rm = make_tiny_reward_model(tmp_path / "rm")
    store = tmp_path / "bg.db"
    suite = RunConfig(bench=("mt-bench",), judge=f"reward-model:{rm}", data={"mt-bench": str(DEMO_DATA / "mt_bench")},
                      limit=1, max_new_tokens=4, rounds=50)
    cb = LionEvalCallback({"mode": "background", "stop_on_cheat": False},
                          evaluator=PipelineEvaluator(suite, str(store)))
    trainer = _trainer(tiny, tmp_path, [CheckpointLinker("sft", tmp_path), cb], max_steps=2, save_steps=2)
    cb.attach(trainer)
    try:
        trainer.train()  # the evaluation of step 2 is still running when training ends; on_train_end waits for it
    finally:
        cb.close()
    assert [e.step for e in cb.evaluations] == [2] and cb.evaluations[0].error is None
    assert cb.evaluations[0].model.startswith("sft-step2@")
    with RunStore(store, readonly=True) as st:
        (report,) = st.reports()
        assert report.meta["stage"] == "sft" and report.meta["step"] == 2
    assert any("lioneval/mt-bench/overall" in h for h in trainer.state.log_history)


# -- promotion ----------------------------------------------------------------------------------------------------
def _put(st: RunStore, step: int, value: float, half: float, length: int, *, flag: bool = False,
         stage: str = "dpo", out: Path | None = None) -> str:
    """A stored evaluation of ``<stage>-step<step>``: a path only, or (``out``) a tiny checkpoint made there."""
    model, checkpoint, weights = f"{stage}-step{step}@{step:08d}", f"/ckpts/{stage}-step{step}", None
    if out is not None:
        make_tiny_causal_lm(out / stage / f"checkpoint-{step}", hidden=16, layers=1, seed=step)
        (out / f"{stage}-step{step}").symlink_to(f"{stage}/checkpoint-{step}", target_is_directory=True)
        info = identify(out / f"{stage}-step{step}")
        model, checkpoint, weights = info.model_id, info.path, info.weights_hash
    spec = RunSpec(model=model, checkpoint=checkpoint, stage=stage, step=step, weights_hash=weights,
                   benchmarks=["mt-bench"], judge="openai:gpt-4o")
    key = st.put_run(spec)
    checks = [CheckResult(name="injection", scope="run", run=key, status="flag" if flag else "pass", model=model)]
    est = Estimate(value=value, ci_low=value - half, ci_high=value + half, n=80, method="bootstrap-percentile")
    st.put_answers([Answer(question_id=str(q), benchmark="mt-bench", model=model, turns=["x" * length])
                    for q in range(3)])
    meta = {"stage": stage, "step": step, "cheat_flagged": flag, "eligible_for_promotion": not flag}
    st.put_report(Report(run=key, benchmark="mt-bench", benchmark_version="v1", model=model,
                         judge="openai:gpt-4o#abc", metrics={"overall": est}, checks=checks, meta=meta))
    st.put_checks(checks)
    return key


def test_promotion_picks_by_policy_and_records_the_decision(tmp_path):
    # Promotion decides on paired differences with the incumbent (tests/test_decisions.py covers them on stored
    # judgments); these reports come without judgments, so the unpaired test on their estimates decides here.
    with RunStore(tmp_path / "p.db") as st:
        _put(st, 100, 6.0, 0.5, 300)  # the earliest: the incumbent
        _put(st, 200, 7.5, 0.3, 300)  # significantly better than the incumbent
        _put(st, 300, 8.5, 0.2, 310, flag=True)  # the top score, but flagged
        best = _put(st, 400, 7.7, 0.6, 420)  # significantly better too, by the most: it wins (no CI-overlap tie)
        _put(st, 500, 9.0, 0.2, 1000)  # answers 3.3x as long as the stage's first: length inflation
        d = promote(st, "dpo", PromotionPolicy(), out=None, mark=False)
        assert [c.step for c in d.promoted] == [400] and d.incumbent.step == 100
        text = " | ".join(d.reasons)
        assert "dpo-step300: cheat checks flagged it (injection)" in text
        assert "dpo-step500: answers average 1000 characters" in text
        assert "significantly better than the incumbent dpo-step100" in d.reasons[0]
        assert "incumbent: dpo-step100, the stage's earliest eligible checkpoint" in text
        assert "holm over 2 candidate(s)" in text and "no per-question judgments" in text
        (rec,) = st.promotions("dpo")  # the decision is a Promotion record, not a check
        assert not [c for c in st.checks() if c.name == "promotion"]
        assert (rec.run, rec.rank, rec.step, rec.model) == (best, 1, 400, "dpo-step400@00000400")
        assert rec.reasons == d.reasons and rec.meta["why"] == d.reasons[0]
        assert rec.score == d.promoted[0].score and rec.ci_low < rec.score < rec.ci_high
        assert rec.judge == "openai:gpt-4o" and rec.policy["weights"] == PromotionPolicy().weights
        assert (rec.meta["alpha"], rec.meta["margin"]) == (0.05, 1.0)
        assert rec.meta["correction"] == "holm over 2 candidate(s)"
        assert rec.meta["test"]["verdict"] == "better" and rec.meta["test"]["p_value"] <= 0.05
        assert rec.meta["corrected_score"] is None  # the winner's-curse correction needs per-question units
        assert [c["step"] for c in rec.candidates] == [100, 200, 300, 400, 500]
        assert [c["excluded"] is not None for c in rec.candidates] == [False, False, True, False, True]
        assert [c["incumbent"] for c in rec.candidates] == [True, False, False, False, False]
        # the tie-break order does not change a significant win; a policy without a length bound and without
        # cheat exclusion lets the inflated one win
        assert promote(st, "dpo", PromotionPolicy(tie_break=["earlier"]), record=False, mark=False
                       ).promoted[0].step == 400
        loose = PromotionPolicy(max_length_growth=None, exclude_flagged=False)
        assert promote(st, "dpo", loose, record=False, mark=False).promoted[0].step == 500
        # promoting two: ranks 1 and 2 (the passing candidates, largest difference first), each its own record
        promote(st, "dpo", PromotionPolicy(count=2, tie_break=["earlier"]), mark=False)
        assert [(p.rank, p.step) for p in st.promotions("dpo")[1:]] == [(1, 400), (2, 200)]
        assert st.promotions("sft") == []

        # the audit's case: a later, shorter checkpoint that scores lower but whose interval overlaps the incumbent's
        # was promoted by the CI-overlap tie rule; now it must be non-inferior within the margin, and is not
        _put(st, 10, 6.0, 0.5, 300, stage="kto")
        _put(st, 20, 5.7, 0.5, 250, stage="kto")
        kept = promote(st, "kto", PromotionPolicy(), record=False, mark=False)
        assert [c.step for c in kept.promoted] == [10] and "(the incumbent; kept)" in kept.reasons[0]
        assert kept.decisions[0].meta["rule"] == "non-inferiority" and kept.decisions[0].verdict == "inconclusive"
        # the checkpoint the stage started from is the incumbent when it was evaluated
        start = _put(st, 5, 6.5, 0.5, 300, stage="sft")
        d = promote(st, "kto", PromotionPolicy(), start=start, record=False, mark=False)
        assert d.incumbent.run == start and d.promoted[0].run == start and d.candidates[0].incumbent


def test_promotion_refuses_a_flagged_checkpoint_and_marks_on_disk(tiny, tmp_path, capsys):
    db = tmp_path / "p.db"
    with RunStore(db) as st:
        _put(st, 10, 9.0, 0.1, 100, flag=True, stage="sft")
        d = promote(st, "sft")
        assert d.promoted == [] and "cheat checks flagged" in " ".join(d.reasons)
        assert st.promotions() == [] and not [c for c in st.checks() if c.name == "promotion"]
    assert main(["--store", str(db), "promote", "--stage", "sft"]) == 2
    assert "no checkpoint of stage 'sft' is eligible" in capsys.readouterr().err
    # a real checkpoint on disk: the marker links to it
    out = tmp_path / "out"
    (out / "sft").mkdir(parents=True)
    ckpt = make_tiny_causal_lm(out / "sft" / "checkpoint-20")
    (out / "sft-step20").symlink_to("sft/checkpoint-20", target_is_directory=True)
    info = identify(out / "sft-step20")
    with RunStore(db) as st:
        key = st.put_run(RunSpec(model=info.model_id, checkpoint=str(out / "sft-step20"), stage="sft", step=20,
                                 weights_hash=info.weights_hash, judge="openai:gpt-4o"))
        est = Estimate(value=6.0, ci_low=5.5, ci_high=6.5, n=80, method="bootstrap-percentile")
        st.put_report(Report(run=key, benchmark="mt-bench", benchmark_version="v1", model=info.model_id,
                             judge="openai:gpt-4o#abc", metrics={"overall": est}, meta={"stage": "sft", "step": 20}))
    assert main(["--store", str(db), "promote", "--stage", "sft", "--out", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["promoted"][0]["step"] == 20 and (out / "sft-promoted").resolve() == ckpt.resolve()
    note = json.loads((out / "sft-promoted.json").read_text())
    assert note["promoted"][0]["run"] == key
    assert note["marker"] == got["marker"] == str(out / "sft-promoted")  # the note names its own marker
    with RunStore(db, readonly=True) as st:
        assert [(p.run, p.checkpoint) for p in st.promotions("sft")] == [(key, str(out / "sft-step20"))]


def test_promote_refuses_a_stage_name_that_leaves_the_checkpoint_folder(tmp_path, capsys):
    # a stored run whose stage is a path: promoting it would write <out>/../../x-promoted
    out = tmp_path / "a" / "b" / "out"
    (out / "x").mkdir(parents=True)
    ckpt = make_tiny_causal_lm(out / "x" / "checkpoint-1")
    info = identify(ckpt)
    db = tmp_path / "p.db"
    with RunStore(db) as st:
        key = st.put_run(RunSpec(model=info.model_id, checkpoint=str(ckpt), stage="../../x", step=1,
                                 weights_hash=info.weights_hash, judge="openai:gpt-4o"))
        est = Estimate(value=6.0, ci_low=5.5, ci_high=6.5, n=80, method="bootstrap-percentile")
        st.put_report(Report(run=key, benchmark="mt-bench", benchmark_version="v1", model=info.model_id,
                             judge="openai:gpt-4o#abc", metrics={"overall": est}))
    before = sorted(p for p in tmp_path.rglob("*") if "p.db" not in p.name)
    for stage in ("../../x", "..", "a/b", "x\\..\\y", ""):
        assert main(["--store", str(db), "promote", "--stage", stage, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is not a valid stage name" in err and "Fix: use a plain name" in err
    with RunStore(db) as st, pytest.raises(LionEvalError, match="not a valid stage name"):
        promote(st, "../../x", out=out)
    assert sorted(p for p in tmp_path.rglob("*") if "p.db" not in p.name) == before  # nothing written anywhere
    with RunStore(db, readonly=True) as st:
        assert st.promotions() == []


# -- the recipe -----------------------------------------------------------------------------------------------------
def test_recipe_runs_the_stages_in_order_from_the_cli(data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = {
        "output_dir": "out", "model": "tiny:hidden=32,layers=1", "on_no_promotion": "last",
        "eval": {"suite": {"bench": ["mt-bench"], "judge": "reward-model:tiny-reward:hidden=32", "limit": 1,
                           "max_new_tokens": 4, "rounds": 50}, "demo_data": True},
        "stages": [
            {"stage": "sft", "data": str(data["sft"]), "max_length": 96, **_small(max_steps=1)},
            {"stage": "dpo", "data": str(data["prefs"]), "max_length": 96, "eval": None, **_small(max_steps=1)},
        ],
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    assert main(["--store", "s.db", "train", "--config", "r.yaml", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    sft_stage, dpo_stage = got["stages"]
    assert [Path(c).name for c in sft_stage["checkpoints"]] == ["sft-step1"]
    assert len(sft_stage["evaluations"]) == 1 and sft_stage["evaluations"][0]["error"] is None
    assert dpo_stage["evaluations"] == [] and dpo_stage["promotion"] is None
    assert Path(got["final"]).name == "dpo-step1" and identify(got["final"]).stage == "dpo"
    assert (tmp_path / "out" / "models" / "tiny-hidden32-layers1" / "config.json").is_file()


def test_recipe_errors_name_the_fix(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text("stages:\n  - {stage: sfft, data: x}\n")
    assert main(["--store", str(tmp_path / "s.db"), "train", "--config", str(tmp_path / "r.yaml")]) == 2
    assert "did you mean 'sft'" in capsys.readouterr().err
    (tmp_path / "r.yaml").write_text("stages:\n  - {stage: sft, data: x, max_step: 3}\n")
    assert main(["--store", str(tmp_path / "s.db"), "train", "--config", str(tmp_path / "r.yaml")]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err


# -- eval sets and the checkpoint's own trainer state ---------------------------------------------------------------
def _state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())


def test_each_checkpoint_state_holds_its_own_score(tiny, tmp_path):
    scripted = ScriptedEvaluator({1: 5.0, 2: 6.0, 3: 6.5})
    cb = LionEvalCallback({"store": str(tmp_path / "s.db")}, evaluator=scripted)
    trainer = _trainer(tiny, tmp_path, [CheckpointLinker("sft", tmp_path), cb], max_steps=3)
    cb.attach(trainer)
    trainer.train()
    for step, value in ((1, 5.0), (2, 6.0), (3, 6.5)):
        history = _state(tmp_path / f"sft-step{step}")["log_history"]
        own = [h for h in history if h.get("lioneval/step") == step]
        assert len(own) == 1 and own[0]["lioneval/mt-bench/overall"] == value and own[0]["step"] == step
        assert not any(h.get("lioneval/step", 0) > step for h in history)  # nothing from a later checkpoint


def test_recipe_stages_evaluate_on_a_held_out_set_for_the_best_model_settings(data, tmp_path, monkeypatch):
    import lioneval.trainers.callback as callback_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(callback_mod, "PipelineEvaluator", lambda *a, **k: ScriptedEvaluator({1: 7.0, 2: 5.0}))
    best = {"metric_for_best_model": "lioneval_mt-bench_overall", "load_best_model_at_end": True}
    recipe = {
        "output_dir": "out", "model": "tiny:hidden=32,layers=1", "on_no_promotion": "last",
        "eval": {"suite": {"bench": ["mt-bench"], "judge": "reward-model:tiny-reward:hidden=32", "limit": 1,
                           "max_new_tokens": 4, "rounds": 50}, "demo_data": True, "on_evaluate": True,
                 "stop_on_cheat": False},
        "stages": [
            {"stage": "sft", "data": str(data["sft"]), "max_length": 96, "training_args": best, **_small()},
            {"stage": "dpo", "data": str(data["prefs"]), "max_length": 96, "eval": None, "eval_split": 1,
             **_small(max_steps=1)},
        ],
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    result = train(load_recipe(tmp_path / "r.yaml"), store=str(tmp_path / "s.db"))
    sft_stage, dpo_stage = result.stages
    assert [e["step"] for e in sft_stage.evaluations] == [1, 2] and all(e["error"] is None
                                                                      for e in sft_stage.evaluations)
    last = _state(tmp_path / "out" / "sft" / "checkpoint-2")
    # 8 conversations, 10% held out (1), evaluated at every save; the injected lioneval score chose the best one
    assert [h["step"] for h in last["log_history"] if "eval_loss" in h] == [1, 2]
    assert [h["step"] for h in last["log_history"] if "lioneval/step" in h] == [1, 2]
    assert last["best_metric"] == 7.0 and last["best_model_checkpoint"].endswith("checkpoint-1")
    first = _state(tmp_path / "out" / "sft" / "checkpoint-1")
    assert any(h.get("lioneval/step") == 1 for h in first["log_history"])  # the checkpoint's own score
    dpo_state = _state(tmp_path / "out" / "dpo" / "checkpoint-1")
    assert any("eval_loss" in h for h in dpo_state["log_history"])  # one held-out pair, DPO's eval loss


def test_eval_split_is_seeded_and_disjoint():
    cfg = config_from_dict(SFTConfig, {"data": "x.jsonl", "eval_split": 0.25, "seed": 3})
    examples = list(range(20))
    train_a, held_a = split_eval(examples, cfg, lambda p: [])
    train_b, held_b = split_eval(examples, cfg, lambda p: [])
    assert held_a == held_b and len(held_a) == 5 and sorted(train_a + held_a) == examples
    other = split_eval(examples, config_from_dict(SFTConfig, {"data": "x.jsonl", "eval_split": 0.25, "seed": 4}),
                       lambda p: [])[1]
    assert other != held_a
    # without evaluation nothing is held out; a given eval_data file is read instead of holding out
    assert split_eval(examples, config_from_dict(SFTConfig, {"data": "x.jsonl"}), lambda p: []) == (examples, None)
    given = config_from_dict(SFTConfig, {"data": "x.jsonl", "eval_data": "e.jsonl"})
    assert split_eval(examples, given, lambda p: [p]) == (examples, ["e.jsonl"])
    with pytest.raises(DataError, match="too few"):
        split_eval([1], cfg, lambda p: [])


def test_best_model_settings_that_cannot_work_fail_when_the_recipe_loads():
    with pytest.raises(ConfigError, match="set on_evaluate: true"):
        config_from_dict(SFTConfig, {"data": "x.jsonl",
                                     "training_args": {"metric_for_best_model": "lioneval_mt-bench_overall"}})
    with pytest.raises(ConfigError, match="eval_split must be"):
        config_from_dict(SFTConfig, {"data": "x.jsonl", "eval_split": 2.5})
    # transformers' own refusal is one clear line naming the stage
    cfg = config_from_dict(SFTConfig, {"data": "x.jsonl", "output_dir": "o", "eval_split": 0.5,
                                       "training_args": {"load_best_model_at_end": True, "save_strategy": "epoch"}})
    with pytest.raises(ConfigError, match="sft stage's training arguments are refused by TrainingArguments"):
        cfg.training_arguments(TrainingArguments)


def test_promote_follows_the_recipe_policy(tmp_path, capsys):
    db = tmp_path / "p.db"
    out = tmp_path / "out"
    with RunStore(db) as st:
        _put(st, 100, 6.0, 0.5, 300, out=out)
        _put(st, 400, 7.7, 0.6, 420, out=out)
        _put(st, 500, 9.0, 0.2, 1000, out=out)  # length inflation by the default policy's bound
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "stages": [{"stage": "dpo", "data": "x"}],
                                  "promotion": {"max_length_growth": None}}))
    assert main(["--store", str(db), "promote", "--stage", "dpo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["promoted"][0]["step"] == 400  # the default policy
    assert main(["--store", str(db), "promote", "--stage", "dpo", "--config", str(recipe), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["promoted"][0]["step"] == 500 and got["policy"]["max_length_growth"] is None
    note = json.loads((tmp_path / "out" / "dpo-promoted.json").read_text())  # marked in the recipe's output_dir
    assert note["marker"] == str(tmp_path / "out" / "dpo-promoted") and note["promoted"][0]["step"] == 500
    assert main(["--store", str(db), "promote", "--stage", "dpo", "--config", str(recipe), "--policy",
                 str(recipe)]) == 2
