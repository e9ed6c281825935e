"""The transformers backend's schedulers on real transformers code: a tiny Llama built from a config.

The continuous scheduler (the default) must give, token for token, what generating each prompt alone gives; report
each result the moment its sequence ends; and keep what the static scheduler does (prefill, stop strings, finish
reasons, token counts, seeds, top_logprobs). The paged scheduler (transformers' own continuous batching) is held to
the same outputs. No timing here: speed lives in benchmarks/generation_speed.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch, transformers)")
pytest.importorskip("transformers", reason="needs the train extra (torch, transformers)")

from lioneval.backends.base import Completion, Sampling  # noqa: E402
from lioneval.backends.transformers_backend import SCHEDULERS, TransformersBackend  # noqa: E402
from lioneval.errors import LionEvalError  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402

MAX = 16
# positions in CHATS of a prompt whose greedy answer runs to MAX and one that ends early; LONG has the shortest
# prompt, so that it is among the first to start whatever the scheduler's order
LONG, SHORT = 0, 1
CHATS = [[{"role": "user", "content": f"question {k}: " + "the quick brown fox " * k}] for k in (1, 3, 6, 2, 4, 5)]


def _backend(lm: tuple, scheduler: str = "continuous", batch_size: int = 3) -> TransformersBackend:
    model, tok = lm
    return TransformersBackend("tiny", model=model, tokenizer=tok, batch_size=batch_size, scheduler=scheduler)


def _alone(lm: tuple, chats: list, sampling: Sampling) -> list[Completion]:
    """The reference: plain ``model.generate`` on each prompt by itself (no padding, no batch)."""
    b = _backend(lm, "static", batch_size=1)
    return [b.generate([c], sampling)[0] for c in chats]


def _same(a: Completion, b: Completion) -> bool:
    return (a.text, a.finish_reason, a.completion_tokens, a.prompt_tokens) == (
        b.text, b.finish_reason, b.completion_tokens, b.prompt_tokens)


def _greedy_ids(lm: tuple, chat: list) -> list[int]:
    """The tokens plain greedy ``model.generate`` produces for ``chat`` alone, up to MAX or an end token."""
    model, tok = lm
    prompt = _backend(lm, "static")._format(chat)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=MAX, do_sample=False, pad_token_id=tok.pad_token_id)
    return gen[0, enc["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> tuple:
    """A tiny Llama whose greedy answers differ from prompt to prompt, with an end-of-sequence token chosen so that
    CHATS[SHORT] ends after a few tokens while CHATS[LONG] runs to MAX."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", seed=0)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    # A freshly initialised model predicts nearly flat logits and repeats one token; larger weights give varied,
    # well-separated predictions (no near-ties that rounding could flip).
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.generation_config.eos_token_id = None
    tok.eos_token = "<|endoftext|>"  # a token the model is never steered to: nothing ends until we choose
    long, short = (_greedy_ids((model, tok), CHATS[i]) for i in (LONG, SHORT))
    assert len(long) == MAX
    # the first token of the short answer (from its 3rd on) that the long answer never produces becomes the EOS
    eos = next(t for t in short[2:6] if t not in long)
    model.generation_config.eos_token_id = eos
    return model, tok


@pytest.mark.parametrize("scheduler", ["continuous", "paged"])
def test_greedy_is_identical_to_one_prompt_at_a_time(lm, scheduler):
    ref = _alone(lm, CHATS, Sampling(max_tokens=MAX))
    out = _backend(lm, scheduler).generate(CHATS, Sampling(max_tokens=MAX))
    assert [c.text for c in out] == [c.text for c in ref]
    assert all(_same(a, b) for a, b in zip(out, ref, strict=True))
    # a mixed-length workload: some answers end early, some run to the limit
    assert {c.finish_reason for c in out} == {"stop", "length"}


def test_identical_with_eager_attention_too(lm):
    model, tok = lm
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    out = _backend((eager, tok)).generate(CHATS, Sampling(max_tokens=MAX))
    assert all(_same(a, b) for a, b in zip(out, _alone((eager, tok), CHATS, Sampling(max_tokens=MAX)), strict=True))


@pytest.mark.parametrize("scheduler", ["continuous", "paged"])
def test_each_answer_is_reported_as_it_ends_and_returned_in_the_callers_order(lm, scheduler):
    seen: list[int] = []
    out = _backend(lm, scheduler).generate(CHATS, Sampling(max_tokens=MAX), on_result=lambda i, c: seen.append(i))
    assert sorted(seen) == list(range(len(CHATS)))  # once per prompt
    # LONG and SHORT start in the first batch; SHORT is reported first although LONG was asked first
    assert seen.index(SHORT) < seen.index(LONG)
    ref = _alone(lm, CHATS, Sampling(max_tokens=MAX))
    assert all(_same(a, b) for a, b in zip(out, ref, strict=True))


def test_the_static_scheduler_reports_a_batch_once_its_longest_answer_ends(lm):
    seen: list[int] = []
    _backend(lm, "static").generate(CHATS, Sampling(max_tokens=MAX), on_result=lambda i, c: seen.append(i))
    assert seen.index(LONG) < seen.index(SHORT)  # the old behaviour, kept reachable for comparisons


def test_finish_reasons_and_token_counts(lm):
    model, tok = lm
    b = _backend(lm)
    out = b.generate(CHATS, Sampling(max_tokens=MAX))
    long, short = out[LONG], out[SHORT]
    assert long.finish_reason == "length" and long.completion_tokens == MAX
    assert short.finish_reason == "stop" and 3 <= short.completion_tokens < MAX  # the EOS token is counted
    for chat, c in zip(CHATS, out, strict=True):
        assert c.prompt_tokens == len(tok(b._format(chat), add_special_tokens=False)["input_ids"])
        assert c.ok and c.error is None
    # an answer that ends at its first token never takes a row; one token asked is one token given
    one = b.generate(CHATS, Sampling(max_tokens=1))
    assert all(c.completion_tokens == 1 and c.finish_reason in ("stop", "length") for c in one)


def test_prefill_continues_the_assistant_message(lm):
    _, tok = lm
    chats = [[*c, {"role": "assistant", "content": "Rating: [["}] for c in CHATS[:3]]
    b = _backend(lm)
    prompt = b._format(chats[0])
    assert prompt.endswith("Rating: [[") and not prompt.endswith("<|im_end|>\n")
    out = b.generate(chats, Sampling(max_tokens=MAX))
    assert all(_same(a, r) for a, r in zip(out, _alone(lm, chats, Sampling(max_tokens=MAX)), strict=True))
    assert out[0].prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert out[0].text != _backend(lm).generate(CHATS[:1], Sampling(max_tokens=MAX))[0].text


@pytest.mark.parametrize("scheduler", ["continuous", "static", "paged"])
def test_stop_strings_cut_the_text_and_end_the_sequence(lm, scheduler):
    _, tok = lm
    full = _backend(lm).generate([CHATS[LONG]], Sampling(max_tokens=MAX))[0]
    ids = _greedy_ids(lm, CHATS[LONG])
    # a stop string completed by the 8th token of the long answer, not found before it
    stop = tok.decode(ids[6:8], skip_special_tokens=True)
    assert stop and stop not in tok.decode(ids[:7], skip_special_tokens=True)
    cut = full.text[: full.text.index(stop)]
    sampling = Sampling(max_tokens=MAX, stop=(stop, "never-produced"))
    out = _backend(lm, scheduler).generate(CHATS, sampling)
    c = out[LONG]
    assert c.text == cut and stop not in c.text  # as OpenAI and vLLM: the stop string is not returned
    assert c.finish_reason == "stop"
    assert c.completion_tokens == 8  # the tokens generated up to the one that completed the stop string
    # every prompt as when generated alone, stop strings included
    assert all(_same(a, r) for a, r in zip(out, _alone(lm, CHATS, sampling), strict=True))


def test_seeded_sampling_is_reproducible(lm):
    b = _backend(lm)
    s7 = Sampling(temperature=1.0, max_tokens=MAX, seed=7)
    first = [c.text for c in b.generate(CHATS, s7)]
    assert [c.text for c in b.generate(CHATS, s7)] == first
    assert [c.text for c in b.generate(CHATS, Sampling(temperature=1.0, max_tokens=MAX, seed=8))] != first
    assert first != [c.text for c in b.generate(CHATS, Sampling(max_tokens=MAX))]  # it did sample
    # unseeded: drawn from the global generator, which moves on
    torch.manual_seed(0)
    a = [c.text for c in b.generate(CHATS, Sampling(temperature=1.0, max_tokens=MAX))]
    torch.manual_seed(0)
    assert [c.text for c in b.generate(CHATS, Sampling(temperature=1.0, max_tokens=MAX))] == a
    assert [c.text for c in b.generate(CHATS, Sampling(temperature=1.0, max_tokens=MAX))] != a
    for scheduler in ("static", "paged"):
        other = _backend(lm, scheduler)
        assert [c.text for c in other.generate(CHATS, s7)] == [c.text for c in other.generate(CHATS, s7)]


def test_a_greedy_call_leaves_the_callers_random_state_alone(lm):
    for scheduler in ("continuous", "paged"):
        torch.manual_seed(123)
        before = torch.random.get_rng_state()
        _backend(lm, scheduler).generate(CHATS[:2], Sampling(max_tokens=4))
        assert torch.equal(torch.random.get_rng_state(), before)


def test_top_logprobs(lm):
    greedy = _backend(lm).generate(CHATS, Sampling(max_tokens=MAX))
    asked = Sampling(max_tokens=MAX, top_logprobs=3)
    out = _backend(lm).generate(CHATS, asked)
    static = _backend(lm, "static", batch_size=1).generate(CHATS, asked)
    for c, g, s in zip(out, greedy, static, strict=True):
        assert _same(c, g) and _same(c, s)
        assert len(c.top_logprobs) == c.completion_tokens and all(1 <= len(t) <= 3 for t in c.top_logprobs)
        assert all(v <= 0 for t in c.top_logprobs for v in t.values())
        for mine, theirs in zip(c.top_logprobs, s.top_logprobs, strict=True):
            assert mine.keys() == theirs.keys()
            assert all(mine[k] == pytest.approx(theirs[k], abs=1e-4) for k in mine)


def test_top_logprobs_take_the_static_path_under_the_paged_scheduler(lm, monkeypatch):
    b = _backend(lm, "paged")
    monkeypatch.setattr(b, "_paged", lambda *a, **k: pytest.fail("transformers' batching gives no top-k"))
    out = b.generate(CHATS, Sampling(max_tokens=MAX, top_logprobs=3))
    assert all(len(c.top_logprobs) == c.completion_tokens for c in out)


def test_what_the_continuous_scheduler_cannot_honour_goes_static(lm, monkeypatch):
    model, _ = lm
    b = _backend(lm)
    monkeypatch.setattr(b, "_slots", lambda *a, **k: pytest.fail("would change the outputs"))
    # a repetition penalty needs each sequence's history
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.5)
    out = b.generate(CHATS, Sampling(max_tokens=MAX))
    assert all(_same(a, r) for a, r in zip(out, _alone(lm, CHATS, Sampling(max_tokens=MAX)), strict=True))
    monkeypatch.undo()
    # sliding-window attention keeps a cache of another shape
    monkeypatch.setattr(b, "_slots", lambda *a, **k: pytest.fail("would change the outputs"))
    monkeypatch.setattr(model.config, "sliding_window", 8, raising=False)
    assert b._slot_plan(Sampling()) is None
    monkeypatch.undo()
    assert b._slot_plan(Sampling()) == []


def test_the_model_is_left_as_it_was(lm):
    model, _ = lm
    impl = model.config._attn_implementation
    for scheduler in SCHEDULERS:
        _backend(lm, scheduler).generate(CHATS[:2], Sampling(max_tokens=4))
        assert model.config._attn_implementation == impl
        assert not hasattr(model, "_cached_continuous_batching_manager")


def test_no_chats_and_unknown_scheduler(lm):
    assert _backend(lm).generate([], Sampling()) == []
    with pytest.raises(LionEvalError, match="unknown scheduler 'dynamic'"):
        _backend(lm, "dynamic")


def test_the_default_is_continuous_and_wide(tmp_path: Path):
    b = TransformersBackend(make_tiny_causal_lm(tmp_path / "tiny"))
    assert (b.scheduler, b.batch_size) == ("continuous", 32)
    out = b.generate(CHATS[:2], Sampling(max_tokens=4))
    assert all(c.ok and 1 <= c.completion_tokens <= 4 for c in out)


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_rows_are_cut_to_the_kv_budget_and_outputs_stay_the_same(lm, scheduler, monkeypatch):
    from lioneval.backends import transformers_backend as tb

    wide = _backend(lm, scheduler, batch_size=len(CHATS))
    want = wide.generate(CHATS, Sampling(max_tokens=MAX))
    per_token = tb._kv_bytes_per_token(wide.model)
    assert per_token > 0
    longest = max(len(wide.tokenizer(wide._format(c), add_special_tokens=False)["input_ids"]) for c in CHATS)
    narrow = _backend(lm, scheduler, batch_size=len(CHATS))
    narrow.kv_cache_gb = 2.5 * per_token * (longest + MAX) / 2**30  # room for two rows of the longest prompt
    widths: list[int] = []
    if scheduler == "continuous":
        real = tb._SlotCache
        monkeypatch.setattr(tb, "_SlotCache", lambda rows, length: widths.append(rows) or real(rows, length))
    else:
        real_batch = narrow._batch
        monkeypatch.setattr(narrow, "_batch", lambda prompts, s: widths.append(len(prompts)) or real_batch(prompts, s))
    with pytest.warns(UserWarning, match=r"decoding [23] sequences at a time instead of"):
        got = narrow.generate(CHATS, Sampling(max_tokens=MAX))
    assert [c.text for c in got] == [c.text for c in want]
    if scheduler == "continuous":
        assert widths == [2]  # one cache, two rows: what the longest prompt's full length allows
    else:  # batches in prompt-length order, each as wide as its own longest prompt allows
        assert 2 <= max(widths) <= 3 and sum(widths) == len(CHATS)
