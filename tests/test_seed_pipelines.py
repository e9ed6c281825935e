"""Reward model, rejection sampling, LN-DPO, pairs with a curriculum, drift analysis,
and the two example recipes end to end with tiny models."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl", reason="needs the train extra")

import torch  # noqa: E402

from lioneval.cli import main  # noqa: E402
from lioneval.errors import ConfigError, LionEvalError  # noqa: E402
from lioneval.judges.judge import make_judge  # noqa: E402
from lioneval.judges.reward import RewardModelJudge  # noqa: E402
from lioneval.stats.drift import jaccard, kl_estimate, length_stats, near_copy_share  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import ScriptedServer  # noqa: E402
from lioneval.testing.stage_data import rating_by_length  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm, make_tiny_reward_model  # noqa: E402
from lioneval.trainers.config import JudgedSampling, config_from_dict  # noqa: E402
from lioneval.trainers.dpo import DPOConfig, dpo, dpo_trainer, ln_dpo_loss, read_preferences  # noqa: E402
from lioneval.trainers.drift import analyze, sequence_logps  # noqa: E402
from lioneval.trainers.models import load_policy  # noqa: E402
from lioneval.trainers.online_dpo import OnlineDPOConfig, online_dpo  # noqa: E402
from lioneval.trainers.outputs import check_refs, resolve_refs  # noqa: E402
from lioneval.trainers.pairs import PairsConfig, build_pairs, curriculum, pairs  # noqa: E402
from lioneval.trainers.promotion import PromotionPolicy, promote  # noqa: E402
from lioneval.trainers.recipe import load_recipe  # noqa: E402
from lioneval.trainers.rejection import (  # noqa: E402
    RejectionSamplingConfig,
    RejectionSamplingStage,
    rejection_sampling,
    select_best,
)
from lioneval.trainers.reward_model import (  # noqa: E402
    RewardModelConfig,
    pairwise_accuracy,
    reward_model,
    split_pairs,
)
from lioneval.types import Estimate, Report, RunSpec  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROMPTS = ["write a poem about rain", "explain why the answer is 42", "rate this answer", "name a quick fox"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("seed") / "tiny", hidden=32, layers=1)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory) -> Path:
    return make_tiny_reward_model(tmp_path_factory.mktemp("seed") / "rm", hidden=32)


def _chats(prompts=PROMPTS):
    return [[{"role": "user", "content": p}] for p in prompts]


# -- the pure parts ----------------------------------------------------------------------------------------------
def test_length_stats_and_near_copies_match_a_hand_count():
    s = length_stats([3, 5, 10, 2], reference=[2, 2, 4, 4])
    assert (s["n"], s["mean"], s["median"], s["min"], s["max"]) == (4, 5.0, 4.0, 2, 10)
    assert s["p90"] == pytest.approx(8.5)  # sorted 2 3 5 10: position 0.9 * 3 = 2.7 -> 5 + 0.7 * 5
    assert s["reference_mean"] == 3.0 and s["growth"] == pytest.approx(5 / 3 - 1)
    # 5-grams {abcde, bcdef} and {abcde, bcdeg}: one shared of three
    assert jaccard("abcdef", "ABCDEG") == pytest.approx(1 / 3)
    assert jaccard("the  answer\nis", "the answer is") == 1.0  # whitespace runs fold
    got = near_copy_share(["the answer is 42", "rain on a roof", "x"], ["the answer is 42.", "a fox", "x"],
                          threshold=0.8)
    assert (got["copies"], got["n"]) == (2, 3) and got["share"] == pytest.approx(2 / 3)


def test_kl_estimate_is_the_mean_with_a_t_interval_over_prompts():
    got = kl_estimate([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert got["value"] == pytest.approx(2.0)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    # samples of one prompt are averaged first: prompts a (1, 3), b (2), c (5) -> 2, 2, 5
    grouped = kl_estimate([1.0, 3.0, 2.0, 5.0], ["a", "a", "b", "c"])
    assert grouped["n"] == 3 and grouped["value"] == pytest.approx(3.0)
    assert kl_estimate([1.0, 2.0])["ci_low"] is None  # below the minimum n no interval is claimed


def test_ln_dpo_loss_on_a_hand_computed_example():
    # chosen: log-ratio -2 over 4 tokens, rejected: -6 over 3 tokens, beta 0.5
    # z = 0.5 * (-2/4 - (-6/3)) = 0.75; loss = -log sigmoid(0.75) = log(1 + e^-0.75)
    assert ln_dpo_loss(-2.0, -6.0, 4, 3, 0.5) == pytest.approx(0.38687100611489994)  # log(1.4723666)
    assert ln_dpo_loss(0.0, 0.0, 5, 9, 0.1) == pytest.approx(math.log(2))
    # plain DPO of the same pair would be -log sigmoid(0.5 * 4) = 0.1269: the normalisation changes the loss
    assert ln_dpo_loss(-2.0, -6.0, 1, 1, 0.5) == pytest.approx(0.12692801104297263)


def test_trl_trainer_with_ln_dpo_computes_the_formula(tiny, tmp_path):
    model, tok = load_policy(str(tiny))
    reference = copy.deepcopy(model).eval()
    pairs = [{"prompt": [{"role": "user", "content": p}],
              "chosen": [{"role": "assistant", "content": "the answer is 42 because of rain"}],
              "rejected": [{"role": "assistant", "content": "no"}]} for p in PROMPTS[:3]]
    cfg = DPOConfig(model=str(tiny), data="unused", output_dir=str(tmp_path), loss_type="ln-dpo", beta=0.5,
                    per_device_train_batch_size=3, max_steps=1)
    args = cfg.trl_args()
    assert args.loss_type == ["sigmoid_norm"]
    trainer = dpo_trainer(model, tok, pairs, args, [])
    with torch.no_grad():  # move the policy away from the reference so the log-ratios are not zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(iter(trainer.get_train_dataloader()))
    loss = float(trainer.compute_loss(model, batch))

    def logps(m):
        with torch.no_grad():
            logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        tok_logp = torch.log_softmax(logits.float(), -1).gather(2, batch["input_ids"][:, 1:, None])[..., 0]
        return (tok_logp * batch["completion_mask"][:, 1:]).sum(1)

    ratio = logps(model) - logps(reference)
    lengths = batch["completion_mask"].sum(1)
    n = len(pairs)
    want = sum(ln_dpo_loss(float(ratio[i]), float(ratio[n + i]), int(lengths[i]), int(lengths[n + i]), 0.5)
               for i in range(n)) / n
    assert abs(float(ratio[0])) > 1e-3  # a non-trivial example
    assert loss == pytest.approx(want, rel=1e-4)


def test_curriculum_order_is_monotone_in_the_gap():
    prompts = _chats(PROMPTS[:3])
    answers = [[f"strong {p}", f"middle {p}", f"weak {p}"] for p in range(3)]
    pairs = build_pairs(prompts, answers, [3.0, 1.0, 0.0])
    assert len(pairs) == 9 and sorted({p["gap"] for p in pairs}) == [1.0, 2.0, 3.0]
    assert all(p["chosen"][0]["content"].split()[0] == ["strong", "middle", "weak"][p["models"][0]] for p in pairs)
    easy = [p["gap"] for p in curriculum(pairs, "easy-to-hard")]
    hard = [p["gap"] for p in curriculum(pairs, "hard-to-easy")]
    assert easy == sorted(easy, reverse=True) and hard == sorted(hard)
    assert sorted(p["gap"] for p in curriculum(pairs, "shuffled", seed=1)) == sorted(easy)
    # a judge that disagrees drops the pair: prompt 0 scores the weak answer above the middle one
    scores = [[3.0, 1.0, 2.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]
    confirmed = build_pairs(prompts, answers, [3.0, 1.0, 0.0], scores)
    assert len(confirmed) == 8 and all(p["judge_margin"] > 0 for p in confirmed)


def test_select_best_keeps_the_top_score_subject_to_min_score_and_margin():
    chats = _chats(PROMPTS[:4])
    samples = [["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], ["a", "", "c"]]
    scores = [[0.1, 0.9, 0.5], [0.2, 0.3, 0.25], [0.9, 0.9, 0.1], [None, 2.0, 1.0]]
    rows = select_best(chats, samples, scores, min_score=0.5, min_margin=0.0)
    assert [r["best"] for r in rows] == [1, None, 0, 2]  # tie: the earliest; empty answers are never kept
    assert "min_score" in rows[1]["skipped"]
    rows = select_best(chats, samples, scores, min_margin=0.2)
    assert [r["best"] for r in rows] == [1, None, None, 2]


def test_stage_references_are_checked_and_resolved(tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                                                                            "content": "a"}]}) + "\n")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a prompt\n")
    recipe = {"model": "tiny", "stages": [
        {"stage": "rejection-sampling", "name": "rs", "prompts": str(prompts), "judge": "reward-model:@rm"},
        {"stage": "reward-model", "name": "rm", "data": str(sft)}]}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    with pytest.raises(ConfigError, match="@rm, which is not an earlier stage"):
        load_recipe(tmp_path / "r.yaml")
    recipe["stages"] = recipe["stages"][::-1] + [{"stage": "dpo", "data": "@rm/pairs"}]
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    assert main(["--store", str(tmp_path / "s.db"), "train", "--config", str(tmp_path / "r.yaml")]) == 2
    recipe["stages"][-1]["data"] = "@rs"
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    loaded = load_recipe(tmp_path / "r.yaml")
    check_refs(loaded.stages)
    got = resolve_refs(loaded.stages[1], {"rm": {"model": "/ckpt/rm-step4"}})
    assert got.judge == "reward-model:/ckpt/rm-step4"
    assert resolve_refs(loaded.stages[2], {"rs": {"pairs": "/x/rs-pairs.jsonl"}}).data == "/x/rs-pairs.jsonl"


# -- the stages on tiny models ---------------------------------------------------------------------------------
def _prefs(path: Path, n: int, seed: int) -> Path:
    import random

    rng = random.Random(seed)
    words = "write a poem about rain on a tin roof explain why the quick brown fox jumps".split()
    good = ["the answer is 42.", "a judge rates answers from 1 to 10.", "explain why because the answer is 42."]
    bad = ["dog dog dog dog", "fox fox lazy lazy", "the the the the"]
    rows = [{"prompt": " ".join(rng.choice(words) for _ in range(5)), "chosen": rng.choice(good),
             "rejected": rng.choice(bad)} for _ in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reward_model_learns_a_planted_preference_and_judges_with_it(tmp_path):
    # planted: answers about "the answer is 42" / judges are preferred to repeated filler words
    data = _prefs(tmp_path / "prefs.jsonl", 40, seed=0)
    res = reward_model(RewardModelConfig(model="tiny-reward:hidden=64", data=str(data), output_dir=str(tmp_path / "o"),
                                         heldout=0.25, max_steps=20, save_steps=20, learning_rate=1e-3,
                                         per_device_train_batch_size=8, logging_steps=5))
    assert not res.policy and res.outputs["model"] == res.last
    (acc,) = res.evaluations
    assert acc["n"] == 10 and acc["heldout_accuracy"] >= 0.8  # the stated floor; chance is 0.5
    judge = RewardModelJudge(f"reward-model:{res.last}")
    good, bad = judge.score([[{"role": "user", "content": "a new question"},
                              {"role": "assistant", "content": c}] for c in ("the answer is 42.", "dog dog dog dog")])
    assert good > bad


def test_rejection_sampling_keeps_the_judges_top_answer_and_trains_on_it(tiny, tiny_rm, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    cfg = RejectionSamplingConfig(model=str(tiny), prompts=str(prompts), judge=f"reward-model:{tiny_rm}", k=4,
                                  temperature=1.0, max_new_tokens=12, output_dir=str(tmp_path / "o"), name="rs",
                                  max_steps=4, save_steps=4, learning_rate=5e-3, per_device_train_batch_size=4)
    res = rejection_sampling(cfg)
    rows = [json.loads(line) for line in Path(res.outputs["samples"]).read_text().splitlines()]
    judge = RewardModelJudge(f"reward-model:{tiny_rm}")
    kept = []
    for row in rows:
        texts = row["samples"]
        fresh = judge.score([row["prompt"] + [{"role": "assistant", "content": t}] for t in texts])
        assert row["scores"] == pytest.approx(fresh, abs=1e-5)  # the stored scores are the judge's
        if row["best"] is not None:
            assert row["best"] == max(range(len(texts)), key=lambda j: (fresh[j], -j) if texts[j] else (-1e9, 0))
            kept.append((row["prompt"], texts[row["best"]]))
    assert kept
    pairs = [json.loads(line) for line in Path(res.outputs["pairs"]).read_text().splitlines()]
    assert pairs and all(p["chosen"][0]["content"] in {t for r in rows for t in r["samples"]} for p in pairs)

    # trained on the kept answers: their likelihood rose
    def kept_logp(path):
        model, tok = load_policy(str(path))
        ids = [tok(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"] for c, _ in kept]
        ans = [tok(a + "<|im_end|>", add_special_tokens=False)["input_ids"] for _, a in kept]
        return sum(sequence_logps(model.eval(), ids, ans))

    assert kept_logp(res.last) > kept_logp(tiny) + 1.0


def test_reward_model_with_lora_and_an_eval_set_saves_an_adapter_that_judges_as_trained(tiny, tmp_path):
    data = _prefs(tmp_path / "prefs.jsonl", 40, seed=0)
    held = _prefs(tmp_path / "eval.jsonl", 6, seed=1)
    cfg = RewardModelConfig(model=str(tiny), data=str(data), eval_data=str(held), output_dir=str(tmp_path / "o"),
                            heldout=0.25, max_steps=16, save_steps=8, learning_rate=1e-2,
                            per_device_train_batch_size=8, logging_steps=4,
                            peft_config={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    res = reward_model(cfg)
    last = Path(res.last)
    # the checkpoint is the adapter and the score head, not the model
    assert (last / "adapter_config.json").is_file() and not (last / "model.safetensors").exists()
    assert json.loads((last / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    adapter = sum(f.stat().st_size for f in last.glob("adapter_model.*"))
    assert 0 < adapter < (tiny / "model.safetensors").stat().st_size / 4
    # Trainer.evaluate ran on the eval set at each save: TRL's loss and accuracy of the six eval_data pairs
    evals = [row for row in _logged(res.last) if "eval_loss" in row]
    assert [row["step"] for row in evals] == [8, 16] and all(0 <= row["eval_accuracy"] <= 1 for row in evals)
    # loaded as a judge (base + adapter + head merged), it scores the held-out pairs as the trained model did
    heldout_pairs = res.evaluations[-1]
    assert heldout_pairs["n"] == 10 and heldout_pairs["heldout_accuracy"] >= 0.8  # planted preference; chance 0.5
    judge = make_judge(f"reward-model:{res.last}")
    good, bad = judge.score([[{"role": "user", "content": "a new question"},
                              {"role": "assistant", "content": c}] for c in ("the answer is 42.", "dog dog dog dog")])
    assert good > bad
    _, heldout = split_pairs(read_preferences(data), cfg.heldout, cfg.seed)
    assert pairwise_accuracy(judge, heldout) == pytest.approx(heldout_pairs["heldout_accuracy"])


def test_reward_model_holds_out_eval_split_of_its_training_pairs(tiny, tmp_path):
    data = _prefs(tmp_path / "prefs.jsonl", 20, seed=2)
    res = reward_model(RewardModelConfig(model=str(tiny), data=str(data), output_dir=str(tmp_path / "o"), heldout=0.2,
                                         eval_split=4, max_steps=2, save_steps=2, per_device_train_batch_size=4,
                                         peft_config={}))
    (row,) = [r for r in _logged(res.last) if "eval_loss" in r]
    assert row["step"] == 2 and res.evaluations[-1]["n"] == 4  # 4 pairs held out for accuracy, 4 more to evaluate


class _Crash(Exception):
    pass


def test_sample_judgments_are_stored_so_a_restart_asks_the_judge_nothing_again(tiny, tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "o"
    main_store = tmp_path / "main.db"
    with ScriptedServer(rating_by_length) as srv:
        judge = f"openai-compatible:judge@{srv.base_url}"
        cfg = RejectionSamplingConfig(model=str(tiny), prompts=str(prompts), judge=judge, k=3, temperature=1.0,
                                      max_new_tokens=8, output_dir=str(out), name="rs", max_steps=1, save_steps=1,
                                      per_device_train_batch_size=2)

        def crash(self, *a, **k):  # the process dies after judging, before any checkpoint
            raise _Crash

        monkeypatch.setattr(RejectionSamplingStage, "trainer", crash)
        with pytest.raises(_Crash):
            rejection_sampling(cfg, store=str(main_store))
        monkeypatch.undo()
        paid = len(srv.requests)
        assert paid > 0
        res = rejection_sampling(cfg, store=str(main_store))  # the restart: same seed, same samples
        assert len(srv.requests) == paid and res.checkpoints
        rows = [json.loads(line) for line in Path(res.outputs["samples"]).read_text().splitlines()]
        answered = sum(1 for r in rows for t in r["samples"] if t)
        assert answered == paid  # one call per non-empty sample, each made once
        with RunStore(res.outputs["judgments"], readonly=True) as st:
            stored = st.judgments()
        assert len(stored) == paid and {j.model for j in stored} <= {"sample-0", "sample-1", "sample-2"}
        scores = {(f"rs-{i}", f"sample-{j}"): v for i, r in enumerate(rows) for j, v in enumerate(r["scores"])
                  if v is not None}
        assert {(j.question_id, j.model): j.value for j in stored} == scores
        if main_store.exists():  # training samples are not benchmark answers: the run store's leaderboards skip them
            with RunStore(main_store, readonly=True) as st:
                assert not st.judgments()

        # the pairs stage's confirming judge keeps its calls the same way
        pcfg = PairsConfig(prompts=str(prompts), models=[res.last, str(tiny)], judge=judge, output_dir=str(out),
                           temperature=1.0, max_new_tokens=8)  # sampled with the seed: the rerun's answers are the same
        try:
            pairs(pcfg)
        except LionEvalError as e:  # the judge agreed with no pair: its calls count all the same
            assert "made no preference pair" in e.message
        confirm = len(srv.requests) - paid
        assert confirm > 0
        try:
            again = pairs(pcfg)
        except LionEvalError:
            again = None
        assert len(srv.requests) - paid == confirm
        if again is not None:
            assert again.outputs["judgments"] == str(out / "pairs-judgments.db")


def test_online_dpo_ranking_judgments_are_stored_so_a_restart_asks_the_judge_nothing_again(tiny, tmp_path,
                                                                                            monkeypatch):
    from lioneval.trainers import online_dpo as module

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    with ScriptedServer(rating_by_length) as srv:
        cfg = OnlineDPOConfig(model=str(tiny), prompts=str(prompts), judge=f"openai-compatible:judge@{srv.base_url}",
                              k=3, temperature=1.0, max_new_tokens=8, rounds=1, steps_per_round=1,
                              output_dir=str(tmp_path / "o"), name="odpo", per_device_train_batch_size=2)

        def crash(*a, **k):  # the process dies after the round's judging, before training
            raise _Crash

        monkeypatch.setattr(module, "dpo_trainer", crash)
        with pytest.raises(_Crash):
            online_dpo(cfg, store=str(tmp_path / "main.db"))
        monkeypatch.undo()
        paid = len(srv.requests)
        assert paid > 0
        res = online_dpo(cfg, store=str(tmp_path / "main.db"))  # the restart: same seed, same samples
        assert len(srv.requests) == paid and res.checkpoints
    with RunStore(cfg.judgments_store, readonly=True) as st:
        assert len(st.judgments()) == paid


def test_sampling_settings_are_one_set_of_keys_for_online_dpo_and_rejection_sampling():
    shared = {f.name: f.default for f in dataclasses.fields(JudgedSampling)}
    assert {"prompts", "judge", "k", "temperature", "top_p", "max_new_tokens"} <= set(shared)
    for cls in (OnlineDPOConfig, RejectionSamplingConfig):
        own = {f.name: f.default for f in dataclasses.fields(cls)}
        assert {k: own[k] for k in shared} == shared
        cfg = config_from_dict(cls, {"prompts": "p.txt", "judge": "reward-model:rm", "k": 3, "top_p": 0.9,
                                     "generation_batch_size": 2}, f"stages[0] ({cls.KIND})")
        assert (cfg.k, cfg.top_p, cfg.generation_batch_size) == (3, 0.9, 2)
        with pytest.raises(ConfigError, match=r"did you mean 'temperature'"):
            config_from_dict(cls, {"prompts": "p.txt", "judge": "reward-model:rm", "temprature": 1.0}, "s")
        with pytest.raises(ConfigError, match="k must be at least 2"):
            config_from_dict(cls, {"prompts": "p.txt", "judge": "reward-model:rm", "k": 1}, "s")


def test_kl_of_a_model_from_itself_is_zero_and_grows_after_dpo(tiny, tmp_path):
    chats = _chats([*PROMPTS, "a judge rates answers", "why is the sky", "the lazy dog", "give a verdict"])
    same = analyze(str(tiny), str(tiny), chats, samples=4, max_new_tokens=12)
    kl = same["kl"]
    assert kl["value"] == pytest.approx(0.0, abs=1e-5) and kl["ci_low"] <= 0 <= kl["ci_high"] + 1e-9
    assert same["near_copy"]["share"] == 1.0 and same["length"]["growth"] == pytest.approx(0.0)
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": p, "chosen": "the answer is 42.", "rejected": "no"}) + "\n"
                             for p in PROMPTS))
    res = dpo(DPOConfig(model=str(tiny), data=str(prefs), output_dir=str(tmp_path / "o"), max_steps=3, save_steps=3,
                        learning_rate=5e-2, per_device_train_batch_size=4, beta=0.1))
    moved = analyze(res.last, str(tiny), chats, samples=4, max_new_tokens=12)
    assert moved["kl"]["value"] > 0.05 and moved["kl"]["ci_low"] > 0  # significantly above zero


# -- the example recipes, CI-sized ------------------------------------------------------------------------------
def _ci_sized(name: str, tmp_path: Path) -> Path:
    """The example recipe with tiny models, tiny steps and absolute data paths."""
    recipe = yaml.safe_load((EXAMPLES / name).read_text())
    recipe["model"] = "tiny:hidden=32,layers=1"
    recipe["output_dir"] = str(tmp_path / "out")
    recipe["eval"]["suite"].update(judge="reward-model:tiny-reward:hidden=32", limit=2, max_new_tokens=6, rounds=20)
    for st in recipe["stages"]:
        for key in ("data", "prompts"):
            if isinstance(st.get(key), str) and not st[key].startswith("@"):
                st[key] = str(EXAMPLES / st[key])
        for key in ("max_new_tokens",):
            if key in st:
                st[key] = 8
        if (st.get("eval") or {}).get("drift"):
            st["eval"]["drift"].update(max_new_tokens=8)
        if st["stage"] == "pairs":  # three SFT checkpoints of steps 1, 2, 3
            st["models"] = ["@sft/step1", "@sft/step2", "@sft/step3"]
        else:  # one evaluation per stage; three SFT checkpoints where pairs are built from them
            few = st["stage"] == "sft" and name == "curriculum.yaml"
            st.update(max_length=128, learning_rate=2e-2 if few else 1e-3, max_steps=3 if few else 2,
                      save_steps=1 if few else 2,
                      logging_steps=1)
        st.pop("training_args", None)
    if recipe["eval"].get("drift"):
        recipe["eval"]["drift"].update(max_new_tokens=8)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def _logged(checkpoint: str) -> list[dict]:
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())["log_history"]


def test_xwin_recipe_runs_end_to_end(tmp_path, capsys):
    path = _ci_sized("xwin.yaml", tmp_path)
    assert main(["--store", str(tmp_path / "s.db"), "train", "--config", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    sft, rm, rs, dpo_stage = got["stages"]
    assert not rm["policy"] and rm["evaluations"][0]["heldout_accuracy"] is not None
    # the reward model judged the samples, and the policy went on from SFT, not from the reward model
    rows = [json.loads(line) for line in Path(rs["outputs"]["samples"]).read_text().splitlines()]
    assert len(rows) == 8 and any(r["best"] is not None for r in rows)
    assert Path(rs["outputs"]["pairs"]).is_file() and [Path(c).name for c in dpo_stage["checkpoints"]] == ["dpo-step2"]
    with RunStore(str(tmp_path / "s.db"), readonly=True) as st:
        drifted = [r for r in st.reports() if r.meta.get("drift")]
    assert {r.model.split("@")[0] for r in drifted} >= {Path(c).name for c in dpo_stage["checkpoints"]}
    assert any("lioneval/drift/kl" in row for row in _logged(dpo_stage["checkpoints"][-1]))


def test_curriculum_recipe_runs_end_to_end(tmp_path, capsys):
    path = _ci_sized("curriculum.yaml", tmp_path)
    assert main(["--store", str(tmp_path / "s.db"), "train", "--config", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    sft, pairs_stage, dpo_stage = got["stages"]
    rows = [json.loads(line) for line in Path(pairs_stage["outputs"]["pairs"]).read_text().splitlines()]
    gaps = [r["gap"] for r in rows]
    assert rows and gaps == sorted(gaps, reverse=True)
    # the DPO stage trained on them from the SFT stage's pick (promotion may keep that pick: nothing here is better)
    assert [Path(c).name for c in dpo_stage["checkpoints"]] == ["dpo-step2"]
    assert Path(got["final"]).name in {"dpo-step2", *(Path(c).name for c in sft["checkpoints"])}
    assert any("lioneval/drift/near_copy_share" in row for row in _logged(dpo_stage["checkpoints"][-1]))


def test_promotion_excludes_checkpoints_that_drifted_past_the_bounds(tmp_path):
    with RunStore(str(tmp_path / "s.db")) as st:
        for step, value, kl, growth in ((1, 7.0, 0.5, 0.0), (2, 9.0, 40.0, 0.1), (3, 8.5, 1.0, 0.9)):
            model = f"dpo-step{step}@{step:08d}"
            key = st.put_run(RunSpec(model=model, checkpoint=f"/ckpts/dpo-step{step}", stage="dpo", step=step,
                                     benchmarks=["mt-bench"], judge="openai:gpt-4o"))
            drift = {"kl": {"value": kl, "ci_low": kl / 2, "ci_high": kl * 2}, "length": {"mean": 10, "growth": growth}}
            st.put_report(Report(run=key, benchmark="mt-bench", benchmark_version="v1", model=model,
                                 judge="openai:gpt-4o#abc", meta={"drift": drift},
                                 metrics={"overall": Estimate(value=value, ci_low=value - 0.1, ci_high=value + 0.1,
                                                              n=80, method="bootstrap-percentile")}))
        policy = PromotionPolicy(max_kl=10.0, max_drift_length_growth=0.5, max_length_growth=None, margin=0.0)
        decision = promote(st, "dpo", policy)
    reasons = " ".join(decision.reasons)
    assert "dpo-step2" in reasons and "exceeds max_kl" in reasons
    assert "dpo-step3" in reasons and "max_drift_length_growth" in reasons
    assert [c.step for c in decision.candidates if c.excluded is None] == [1]


def test_list_stages_names_every_stage_with_a_line(capsys):
    assert main(["list", "stages"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["sft", "dpo", "online-dpo", "reward-model", "rejection-sampling", "pairs"]
    assert all(len(line.split("  ", 1)[1].strip()) > 20 for line in lines)
