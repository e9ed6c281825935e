"""OpenAICompatibleBackend over real HTTP, through the official openai client, against the scripted server."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import threading
import time
from collections import Counter

import pytest

from lioneval.backends.base import Backend, Completion, Sampling
from lioneval.backends.openai_compat import OpenAIBackend, OpenAICompatibleBackend, _retry_after
from lioneval.errors import LionEvalError
from lioneval.testing import Reply, ScriptedServer, prompt_hash
from lioneval.testing.openai_server import Faults, ScriptedServerProcess

KEY_ENV = "LIONEVAL_TEST_OPENAI_KEY"


def chats(n: int, tag: str = "q") -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{tag} {i}"}] for i in range(n)]


def backend(server, **kw) -> OpenAICompatibleBackend:
    kw.setdefault("api_key_env", KEY_ENV)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff_base", 0.01)
    return OpenAICompatibleBackend("test-model", server.base_url, **kw)


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def settled(server, n: int, timeout: float = 3.0):
    """The chat log once it holds ``n`` requests: abandoned slow answers are logged only when the server notices."""
    return settled_all([server], n, timeout)[0]


def settled_all(servers, n: int, timeout: float = 3.0):
    """The servers' chat logs once they hold ``n`` requests together (a request is logged after its answer has gone
    out, so the client may have the last answer before the log has its request)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [s.chat_requests() for s in servers]
        if sum(map(len, recs)) >= n or time.monotonic() >= deadline:
            return recs
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- normal answers ------------------------------------------------------------------------------------------------


def test_completions_in_order_with_usage_and_name():
    with ScriptedServer() as server:
        b = backend(server)
        out = b.generate(chats(5), Sampling(max_tokens=50))
    assert isinstance(b, Backend)
    assert b.name == f"openai-compatible:test-model@{server.base_url}"
    assert [c.text for c in out] == [f"echo: q {i}" for i in range(5)]
    for c in out:
        assert c.ok and c.finish_reason == "stop" and c.attempts == 1
        assert c.prompt_tokens > 0 and c.completion_tokens == 3
        assert c.top_logprobs is None
    assert len(server.chat_requests()) == 5


def test_max_tokens_and_sampling_reach_the_server():
    seen = []

    def responder(request):
        seen.append(request)
        return "one two three four five"

    with ScriptedServer(responder) as server:
        out = backend(server, extra_body={"top_k": 5}).generate(
            chats(1), Sampling(temperature=0.7, max_tokens=2, seed=3, stop=("\n",))
        )
    assert out[0].text == "one two" and out[0].finish_reason == "length" and out[0].ok
    req = seen[0]
    assert (req["max_tokens"], req["temperature"], req["seed"], req["stop"], req["top_k"]) == (2, 0.7, 3, ["\n"], 5)
    assert "logprobs" not in req


def test_top_logprobs_are_parsed():
    scripted = Reply("7", top_logprobs=[{"7": -0.1, "8": -2.5, "6": -3.0}])
    with ScriptedServer(lambda req: scripted) as server:
        out = backend(server).generate(chats(2), Sampling(top_logprobs=3))
    assert all(c.ok for c in out)
    assert out[0].text == "7"
    assert out[0].top_logprobs == [{"7": -0.1, "8": -2.5, "6": -3.0}]

    with ScriptedServer() as server:  # made-up logprobs: one dict per generated token, k candidates each
        out = backend(server).generate(chats(1), Sampling(top_logprobs=2))
    assert len(out[0].top_logprobs) == 3 and all(len(d) == 2 for d in out[0].top_logprobs)


# -- faults that are retried ---------------------------------------------------------------------------------------


def test_rate_limit_waits_at_least_retry_after():
    faults = Faults(first=1, first_kind="rate_limit", retry_after="0.4")
    with ScriptedServer(faults=faults) as server:
        out = backend(server, backoff_base=0.0).generate(chats(1), Sampling())
        recs = server.chat_requests()
    assert out[0].ok and out[0].attempts == 2
    assert [r.status for r in recs] == [429, 200]
    assert recs[1].timestamp - recs[0].finished >= 0.4


def test_retry_after_forms():
    assert _retry_after({"retry-after": "2.5"}) == 2.5
    assert _retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    in_5s = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.5 <= _retry_after({"retry-after": in_5s}) <= 5.0
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None


def test_server_errors_and_dropped_connections_are_retried():
    with ScriptedServer(faults=Faults(first=2, first_kind="server_error")) as server:
        out = backend(server).generate(chats(3), Sampling())
        assert [c.attempts for c in out] == [3, 3, 3] and all(c.ok for c in out)
        assert sorted(r.status for r in server.chat_requests(chats(3)[0])) == [200, 500, 500]
    with ScriptedServer(faults=Faults(first=1, first_kind="drop")) as server:
        out = backend(server).generate(chats(2), Sampling())
        assert all(c.ok and c.attempts == 2 for c in out)


def test_timeouts_are_retried_without_double_answers():
    with ScriptedServer(faults=Faults(first=1, first_kind="slow", slow_s=1.0)) as server:
        t0 = time.monotonic()
        out = backend(server, timeout=0.3).generate(chats(4), Sampling())
        elapsed = time.monotonic() - t0
        statuses = sorted(r.status for r in settled(server, 8))
    assert all(c.ok and c.attempts == 2 for c in out)
    assert elapsed < 1.0  # did not wait for the slow answers
    assert statuses == [200] * 4 + [499] * 4  # the slow answers were never delivered
    assert server.duplicates() == {}


def test_gives_up_after_max_retries_with_a_clear_error():
    with ScriptedServer(faults=Faults(rate=1.0, kinds=("server_error",))) as server:
        out = backend(server, max_retries=2).generate(chats(1), Sampling())
        assert len(server.chat_requests()) == 3
    c = out[0]
    assert not c.ok and c.text is None and c.attempts == 3
    assert "HTTP 500" in c.error and "3 attempts" in c.error and "Fix:" in c.error


# -- faults that are not retried -----------------------------------------------------------------------------------


def test_bad_request_is_not_retried():
    with ScriptedServer(faults=Faults(first=5, first_kind="bad_request")) as server:
        out = backend(server).generate(chats(1), Sampling())
        assert len(server.chat_requests()) == 1
    assert out[0].attempts == 1 and "HTTP 400" in out[0].error and "Fix:" in out[0].error


def test_missing_key_says_which_variable_to_set():
    with ScriptedServer(require_key="sk-right-key-123") as server:
        out = backend(server).generate(chats(2), Sampling())
        assert len(server.chat_requests()) == 2
    assert all(c.attempts == 1 and "401" in c.error and f"set {KEY_ENV}" in c.error for c in out)
    assert "not set" in out[0].error


def test_wrong_key_never_leaks_and_right_key_is_read_at_call_time(monkeypatch):
    secret = "sk-wrong-secret-987654"
    with ScriptedServer(require_key="sk-right-key-123") as server:
        b = backend(server)  # built before the key exists: it is read when generate runs
        monkeypatch.setenv(KEY_ENV, secret)
        out = b.generate(chats(1), Sampling())
        assert "rejected" in out[0].error and f"set {KEY_ENV}" in out[0].error
        for text in (out[0].error, b.name, repr(b), str(b.to_spec())):
            assert secret not in text
        monkeypatch.setenv(KEY_ENV, "sk-right-key-123")
        assert b.generate(chats(1), Sampling())[0].ok


def test_unknown_model_points_at_the_model_list():
    with ScriptedServer(models=["served-model"]) as server:
        out = backend(server).generate(chats(1), Sampling())
        assert len(server.chat_requests()) == 1
    assert "404" in out[0].error and "/models" in out[0].error and "test-model" in out[0].error


def test_answers_without_logprobs_are_not_retried():
    with ScriptedServer(faults=Faults(first=1, first_kind="no_logprobs")) as server:
        out = backend(server).generate(chats(2), Sampling(top_logprobs=2))
        assert len(server.chat_requests()) == 2  # not retried: a server that answers this way will again
    for c in out:
        assert isinstance(c, Completion) and not c.ok and "no usable logprobs" in c.error and "Fix:" in c.error
    assert out[0].text == "echo: q 0"  # kept for inspection


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("malformed", "truncated or malformed JSON"),
        ("truncated_json", "truncated or malformed JSON"),
        ("empty_choices", "without a chat completion choice"),
        ("empty", "empty content"),
    ],
)
def test_bad_answers_that_persist_become_error_completions(kind, phrase):
    with ScriptedServer(faults=Faults(rate=1.0, kinds=(kind,))) as server:
        out = backend(server, max_retries=2).generate(chats(2), Sampling())
        assert len(server.chat_requests()) == 6  # retried up to the budget, no further
    for c in out:
        assert isinstance(c, Completion) and not c.ok and c.attempts == 3
        assert phrase in c.error and "on each of 3 attempts" in c.error and "Fix:" in c.error
    if kind == "empty":
        assert out[0].finish_reason == "stop" and "raise max_tokens if the reason is 'length'" in out[0].error


def test_empty_content_cut_at_max_tokens_is_not_retried():
    with ScriptedServer(lambda req: Reply("", finish_reason="length")) as server:
        out = backend(server).generate(chats(2), Sampling(max_tokens=5))
        assert len(server.chat_requests()) == 2  # the same request would be cut the same way
    for c in out:
        assert not c.ok and c.attempts == 1 and c.finish_reason == "length"
        assert "empty content (finish_reason='length')" in c.error and "raise max_tokens" in c.error


def _item(request) -> int:
    return int(request["messages"][-1]["content"].rsplit(" ", 1)[1])


@pytest.mark.parametrize(
    "kind", ["malformed", "truncated_json", "empty_choices", "empty", "echo_key", "drop_mid_body", "drop"]
)
def test_transient_faults_are_retried_until_every_item_is_answered(kind):
    """Item i fails its first i % 3 attempts: every item ends answered, with exactly one request per attempt."""
    faults = Faults(script=lambda req, attempt: kind if attempt <= _item(req) % 3 else None)
    with ScriptedServer(faults=faults) as server:
        out = backend(server).generate(chats(9), Sampling())
        recs = settled(server, sum(1 + i % 3 for i in range(9)))
    assert [c.text for c in out] == [f"echo: q {i}" for i in range(9)]
    assert [c.attempts for c in out] == [1 + i % 3 for i in range(9)]
    assert len(recs) == sum(1 + i % 3 for i in range(9))  # no request beyond the retries
    assert sorted(r.fault or "" for r in recs) == [""] * 9 + [kind] * 9
    answered = Counter(r.prompt_hash for r in recs if r.fault is None)
    assert sorted(answered.values()) == [1] * 9  # each prompt answered once


def test_a_trickled_answer_is_bounded_by_the_timeout_and_retried():
    """The timeout bounds the whole answer: a server that sends a byte now and then cannot hold an item longer."""
    faults = Faults(first=1, first_kind="trickle", trickle_s=8.0)
    with ScriptedServer(faults=faults) as server:
        t0 = time.monotonic()
        out = backend(server, timeout=1.0).generate(chats(3), Sampling())
        elapsed = time.monotonic() - t0
        statuses = sorted(r.status for r in settled(server, 6))
    assert all(c.ok and c.attempts == 2 for c in out)
    assert elapsed < 4 * 1.0  # one timed-out attempt and a quick one; a bound per read would wait out all 8 s
    assert statuses == [200] * 3 + [499] * 3  # the trickled answers were abandoned, not delivered


def test_an_answer_that_always_trickles_fails_as_a_timeout():
    with ScriptedServer(faults=Faults(rate=1.0, kinds=("trickle",), trickle_s=8.0)) as server:
        t0 = time.monotonic()
        out = backend(server, timeout=1.0, max_retries=1).generate(chats(2), Sampling())
        elapsed = time.monotonic() - t0
    assert elapsed < 4 * 1.0 * 2  # about timeout x attempts, far from the 2 x 8 s the trickles would take
    for c in out:
        assert not c.ok and c.attempts == 2
        assert "within the 1 s timeout on each of 2 attempts" in c.error and "Fix:" in c.error


def test_connection_refused_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    b = OpenAICompatibleBackend("m", url, api_key_env=KEY_ENV, max_retries=2, backoff_base=0.01)
    t0 = time.monotonic()
    out = b.generate(chats(20), Sampling())
    assert time.monotonic() - t0 < 5
    for c in out:
        assert not c.ok and url in c.error and "connection refused" in c.error and "start the server" in c.error


# -- load ----------------------------------------------------------------------------------------------------------


def test_in_flight_is_bounded():
    with ScriptedServer(latency=0.1) as server:
        out = backend(server, max_in_flight=4).generate(chats(20), Sampling())
        assert all(c.ok for c in out)
        assert server.peak_in_flight == 4


def test_several_base_urls_share_the_load():
    with ScriptedServer(latency=0.05) as a, ScriptedServer(latency=0.05) as b:
        be = OpenAICompatibleBackend("test-model", [a.base_url, b.base_url], api_key_env=KEY_ENV, max_in_flight=8)
        out = be.generate(chats(40), Sampling())
        na, nb = map(len, settled_all([a, b], 40))
    assert all(c.ok for c in out) and na + nb == 40
    assert 10 <= na <= 30 and 10 <= nb <= 30
    assert be.name.endswith(f"@{a.base_url}")
    assert {c.meta["base_url"] for c in out} == {a.base_url, b.base_url}


def test_faults_at_a_rate_every_item_answered_once():
    faults = Faults(rate=0.3, kinds=("rate_limit", "server_error", "slow", "drop"), retry_after="0", slow_s=0.6)
    seen: list[int] = []
    with ScriptedServer(latency=0.01, faults=faults) as server:
        b = backend(server, timeout=0.3, max_in_flight=16)
        out = b.generate(chats(60), Sampling(), on_result=lambda i, c: seen.append(i))
        recs = settled(server, sum(c.attempts for c in out))
    assert sorted(seen) == list(range(60))
    assert all(c.ok for c in out) and [c.text for c in out] == [f"echo: q {i}" for i in range(60)]
    assert len(recs) == sum(c.attempts for c in out)  # every attempt counted, no hidden extra requests
    assert server.duplicates() == {} and sum(r.status == 200 for r in recs) == 60
    assert any(c.attempts > 1 for c in out)


def test_on_result_sees_each_item_as_it_finishes():
    calls: list[tuple[int, float]] = []

    def responder(req):
        if req["messages"][-1]["content"].endswith(" 0"):
            time.sleep(0.3)  # item 0 finishes last
        return "ok"

    with ScriptedServer(responder) as server:
        out = backend(server).generate(chats(5), Sampling(), on_result=lambda i, c: calls.append((i, c.text)))
    assert [i for i, _ in calls][-1] == 0 and sorted(i for i, _ in calls) == list(range(5))
    assert all(text == "ok" for _, text in calls) and len(out) == 5


def test_generate_works_from_a_thread_and_inside_a_running_loop():
    with ScriptedServer() as server:
        b = backend(server)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("out", b.generate(chats(3), Sampling())))
        t.start()
        t.join(timeout=10)
        assert [c.ok for c in box["out"]] == [True] * 3

        async def inside():
            return b.generate(chats(2), Sampling())

        assert all(c.ok for c in asyncio.run(inside()))
        assert all(c.ok for c in asyncio.run(b.agenerate(chats(2), Sampling())))
    assert b.generate([], Sampling()) == []


def test_on_result_errors_propagate():
    def boom(i, c):
        raise RuntimeError("store is full")

    with ScriptedServer() as server, pytest.raises(RuntimeError, match="store is full"):
        backend(server).generate(chats(3), Sampling(), on_result=boom)


# -- construction --------------------------------------------------------------------------------------------------


def test_from_spec_and_back():
    spec = {"model": "m", "base_url": "http://127.0.0.1:9/v1/", "max_in_flight": 4, "timeout": 2.0}
    b = OpenAICompatibleBackend.from_spec(spec)
    assert b.base_urls == ["http://127.0.0.1:9/v1"] and b.max_in_flight == 4
    assert OpenAICompatibleBackend.from_spec(b.to_spec()).to_spec() == b.to_spec()
    b = OpenAICompatibleBackend("m", ["http://u:pw-1234@127.0.0.1:9/v1", "http://127.0.0.1:8/v1"])
    assert b.to_spec()["base_urls"] == ["http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"]
    again = OpenAICompatibleBackend.from_spec(b.to_spec(credentials=True))
    assert again.to_spec(credentials=True)["base_urls"] == ["http://u:pw-1234@127.0.0.1:9/v1", "http://127.0.0.1:8/v1"]
    with pytest.raises(LionEvalError, match="max_inflight"):
        OpenAICompatibleBackend.from_spec({"model": "m", "base_urls": "http://x/v1", "max_inflight": 3})
    with pytest.raises(LionEvalError, match="http"):
        OpenAICompatibleBackend("m", "localhost:8000/v1")


def test_openai_backend_needs_a_key_and_sends_nothing_without_one(monkeypatch):
    with ScriptedServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # never the real API in tests
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        b = OpenAIBackend("gpt-test", backoff_base=0.01)
        out = b.generate(chats(2), Sampling(max_tokens=7))
        assert server.requests == []
        assert all("OPENAI_API_KEY is not set" in c.error for c in out)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local")
        seen = []
        server.responder = lambda req: seen.append(req) or "hi"
        assert b.generate(chats(1), Sampling(max_tokens=7))[0].text == "hi"
        assert seen[0]["max_completion_tokens"] == 7 and "max_tokens" not in seen[0]
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert OpenAIBackend("gpt-test").name == "openai:gpt-test"


# -- the server itself ---------------------------------------------------------------------------------------------


def test_server_faults_are_seeded_and_validated():
    f = Faults(rate=0.5, seed=7)
    draws = [f.decide({}, prompt_hash(c), 1) for c in chats(50)]
    assert draws == [Faults(rate=0.5, seed=7).decide({}, prompt_hash(c), 1) for c in chats(50)]
    assert 10 < sum(d is not None for d in draws) < 40
    with pytest.raises(ValueError, match="unknown fault"):
        Faults(first_kind="explode")


def test_server_in_a_child_process():
    with ScriptedServerProcess(text="fixed", faults=Faults(first=1, first_kind="server_error")) as server:
        out = backend(server).generate(chats(3), Sampling())
        assert [c.text for c in out] == ["fixed"] * 3 and all(c.attempts == 2 for c in out)
        assert sorted(r.status for r in server.chat_requests()) == [200] * 3 + [500] * 3
        assert server.duplicates() == {} and server.peak_in_flight >= 1
        server.reset()
        assert server.requests == []


def test_server_lists_models_and_reports_responder_bugs():
    import openai

    def broken(request):
        raise KeyError("no such fixture")

    with ScriptedServer(broken, models=["a", "b"], require_key="k-1234") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k-1234", max_retries=0)
        assert [m.id for m in client.models.list()] == ["a", "b"]
        with pytest.raises(openai.InternalServerError, match="no such fixture"):
            client.chat.completions.create(model="a", messages=[{"role": "user", "content": "hi"}])
        client.close()
