"""LoRA stages: adapter checkpoints that chain across stages and rounds, load as whole models, and get evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("peft", reason="needs the train extra (peft)")
pytest.importorskip("trl", reason="needs the train extra (trl)")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from lioneval.backends.transformers_backend import TransformersBackend  # noqa: E402
from lioneval.checkpoint import adapter_base, identify, weights_hash  # noqa: E402
from lioneval.errors import ConfigError, LionEvalError  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import ScriptedServer  # noqa: E402
from lioneval.testing.stage_data import rating_by_length, write_stage_data  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402
from lioneval.trainers.config import config_from_dict  # noqa: E402
from lioneval.trainers.dpo import DPOConfig, DPOStage  # noqa: E402
from lioneval.trainers.models import load_policy  # noqa: E402
from lioneval.trainers.online_dpo import OnlineDPOConfig, online_dpo  # noqa: E402
from lioneval.trainers.recipe import train  # noqa: E402
from lioneval.trainers.sft import SFTConfig, SFTStage  # noqa: E402

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
CONV = [{"role": "user", "content": "what is the answer"}, {"role": "assistant", "content": "the answer is 42."}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_stage_data(tmp_path_factory.mktemp("data"), [CONV], ["write about rain", "explain the answer"])


def _small(**kw):
    return {"max_steps": 2, "save_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1,
            "learning_rate": 5e-2, "report_to": ["none"], "peft_config": dict(LORA), **kw}


class _Keep:
    """Runs a stage and keeps the trainer's final model (the adapter still attached)."""

    def __init__(self, stage):
        self.stage, self.models = stage, []
        original = stage.trainer

        def trainer(*a, **k):
            t = original(*a, **k)
            if t is not None:
                self.models.append(t.model)
            return t

        stage.trainer = trainer

    def run(self):
        return self.stage.run()


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_lora_stages_chain_adapter_checkpoints_that_load_as_the_trained_model(tiny, data, tmp_path):
    out = tmp_path / "out"
    sft = _Keep(SFTStage(SFTConfig(model=str(tiny), data=str(data["sft"]), output_dir=str(out), max_length=64,
                                   **_small())))
    s = sft.run()
    last = Path(s.last)
    # only the adapter is saved: no full weights, a few kilobytes, naming the stage's start as its base
    assert (last / "adapter_config.json").is_file() and not (last / "model.safetensors").exists()
    assert sum(f.stat().st_size for f in last.iterdir()) < (tiny / "model.safetensors").stat().st_size / 4
    assert adapter_base(last).resolve() == tiny.resolve()
    info = identify(last)
    assert (info.stage, info.step) == ("sft", 2)
    assert weights_hash(last) != weights_hash(Path(s.checkpoints[0]))  # the two steps' adapters differ
    # the checkpoint loads (training and evaluation paths alike) as the trained weights, adapter merged in
    trained = sft.models[0].merge_and_unload()
    policy, tok = load_policy(str(last))
    assert _same_weights(policy, trained) and tok.chat_template
    backend = TransformersBackend(str(last), dtype="float32")
    assert _same_weights(backend.model, trained)
    assert not _same_weights(policy, AutoModelForCausalLM.from_pretrained(tiny))

    # a DPO stage from the SFT adapter: its adapter names the SFT checkpoint, and loading merges both
    dpo = _Keep(DPOStage(DPOConfig(model=str(last), data=str(data["prefs"]), output_dir=str(out), beta=0.5,
                                   max_length=64, **_small())))
    d = dpo.run()
    assert adapter_base(Path(d.last)).resolve() == last.resolve()
    assert _same_weights(load_policy(d.last)[0], dpo.models[0].merge_and_unload())
    # the identity covers the base: the same adapter on another base is another model
    other = make_tiny_causal_lm(tmp_path / "other", seed=1)
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in Path(d.last).iterdir():
        if f.is_file():
            (moved / f.name).write_bytes(f.read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    assert weights_hash(moved) == weights_hash(d.last)  # where the base lies does not matter
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(other)}))
    assert weights_hash(moved) != weights_hash(d.last)
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "gone"}))
    with pytest.raises(LionEvalError, match="does not exist"):
        identify(moved)


def test_online_dpo_rounds_with_lora_start_from_the_last_round(tiny, data, tmp_path):
    with ScriptedServer(rating_by_length) as srv:
        o = online_dpo(OnlineDPOConfig(
            model=str(tiny), prompts=str(data["prompts"]), judge=f"openai-compatible:judge@{srv.base_url}",
            output_dir=str(tmp_path / "out"), rounds=2, k=3, max_new_tokens=8, beta=0.5,
            **_small(max_steps=-1, steps_per_round=1)))
    assert [Path(c).name for c in o.checkpoints] == ["online-dpo-step1", "online-dpo-step2"]
    first, second = (Path(c) for c in o.checkpoints)
    assert adapter_base(first).resolve() == tiny.resolve()
    assert adapter_base(second).resolve() == first.resolve()  # round 2 trained on round 1's merged weights
    assert identify(second).step == 2


def test_recipe_evaluates_adapter_checkpoints_and_promotes_one(tiny, data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({
        "output_dir": str(tmp_path / "out"), "model": str(tiny),
        "eval": {"suite": {"bench": ["mt-bench"], "judge": "reward-model:tiny-reward", "limit": 1,
                           "max_new_tokens": 4, "rounds": 50},
                 "demo_data": True, "stop_on_cheat": False},
        "on_no_promotion": "last",
        "stages": [{"stage": "sft", "data": str(data["sft"]), "max_length": 64, **_small()}],
    }))
    result = train(recipe, store=str(tmp_path / "s.db"))
    (stage,) = result.stages
    assert [e["error"] for e in stage.evaluations] == [None, None]
    with RunStore(tmp_path / "s.db", readonly=True) as st:
        models = sorted(r.model for r in st.reports())
    assert models == sorted(identify(c).model_id for c in stage.checkpoints)
    assert (Path(result.final) / "adapter_config.json").is_file()


def test_peft_settings_are_checked_when_the_recipe_loads():
    with pytest.raises(ConfigError, match=r"peft_config.*did you mean 'alpha'"):
        config_from_dict(SFTConfig, {"data": "x.jsonl", "peft_config": {"alpah": 8}}, "stages[0] (sft)")
    with pytest.raises(ConfigError, match="dropout must be below 1"):
        config_from_dict(SFTConfig, {"data": "x.jsonl", "peft_config": {"dropout": 1.0}}, "stages[0] (sft)")
    cfg = config_from_dict(SFTConfig, {"data": "x.jsonl", "peft_config": {}}, "stages[0] (sft)")
    lora = cfg.peft_config.lora()
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (16, 32.0, "all-linear")


def test_a_stage_that_trains_no_adapter_refuses_peft_config(tiny, data, tmp_path):
    from transformers import Trainer, TrainingArguments

    class FullOnly(SFTStage):  # a stage whose trainer ignores peft_config
        def trainer(self, round, model, tokenizer, callbacks):
            args = self.cfg.training_arguments(TrainingArguments, remove_unused_columns=False)
            return Trainer(model=model, args=args, train_dataset=self.rows, callbacks=callbacks)

    stage = FullOnly(SFTConfig(model=str(tiny), data=str(data["sft"]), output_dir=str(tmp_path), max_length=64,
                               **_small()))
    with pytest.raises(ConfigError, match="does not train a LoRA adapter"):
        stage.run()
