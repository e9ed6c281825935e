"""Fan-out over several scripted OpenAI-compatible servers: health checks, per-server bounds, failover of a killed
server's requests, prefix affinity."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

from lioneval.backends.base import Sampling
from lioneval.backends.fanout import FanoutBackend, affinity_keys
from lioneval.judges.judge import backend_for
from lioneval.judges.spec import parse_spec
from lioneval.testing.openai_server import ScriptedServer, prompt_hash

SYSTEM = "Please act as an impartial judge and compare the two answers below. " * 8
SAMPLING = Sampling(max_tokens=16, temperature=0.0)


def _game(q: int, first: str, second: str) -> list[dict]:
    question = f"Question {q}: explain topic number {q} in detail, with examples and a short summary at the end."
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"<|User Prompt|>\n{question}\n\n<|Assistant A|>\n{first}\n<|Assistant B|>\n"
                                        f"{second}"}]


def _games(n: int, model: str) -> list[list[dict]]:
    """Both position orders of n pairwise judgments, as Arena-Hard asks them."""
    out = []
    for q in range(n):
        mine, base = f"{model} answers {q} like this", f"the baseline answers {q} like that"
        out += [_game(q, base, mine), _game(q, mine, base)]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answered(*servers: ScriptedServer) -> Counter:
    return Counter(r.prompt_hash for s in servers for r in s.chat_requests() if r.status == 200)


def test_the_spec_grammar_builds_a_fanout_backend():
    be = backend_for(parse_spec("openai-compatible:m@http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"))
    assert isinstance(be, FanoutBackend) and be.base_urls == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
    again = FanoutBackend.from_spec(be.to_spec())
    assert again.to_spec() == be.to_spec()


def test_affinity_keys_pair_the_games_of_a_question_and_match_across_checkpoints():
    one, two = affinity_keys(_games(10, "ckpt-1")), affinity_keys(_games(10, "ckpt-2"))
    assert all(one[2 * q] == one[2 * q + 1] for q in range(10))  # both games of a question
    assert len(set(one)) == 10  # different questions apart
    assert one == two  # the same question in another checkpoint's batch


def test_pairs_go_to_one_server_in_every_batch_and_the_load_is_spread():
    servers = [ScriptedServer(lambda r: "[[A>B]]") for _ in range(3)]
    try:
        be = FanoutBackend("judge", [s.base_url for s in servers], max_in_flight=64)
        where = []
        for model in ("ckpt-1", "ckpt-2"):
            out = be.generate(_games(30, model), SAMPLING)
            assert all(c.ok for c in out)
            where.append([c.meta["base_url"] for c in out])
    finally:
        for s in servers:
            s.stop()
    first, second = where
    assert all(first[2 * q] == first[2 * q + 1] for q in range(30))
    assert first == second  # a question's prefix is cached where the earlier checkpoint's judgments went
    assert len(set(first)) == 3 and min(Counter(first).values()) >= 6


def test_each_server_gets_at_most_its_bound():
    servers = [ScriptedServer(lambda r: "ok", latency=0.05) for _ in range(2)]
    try:
        be = FanoutBackend("m", [s.base_url for s in servers], max_in_flight=3)
        out = be.generate(_games(20, "m"), SAMPLING)
        peaks = [s.peak_in_flight for s in servers]
        counts = Counter(c.meta["base_url"] for c in out)
    finally:
        for s in servers:
            s.stop()
    assert all(c.ok for c in out)
    assert max(peaks) <= 3 and min(peaks) >= 2  # both busy, none past its bound
    assert len(counts) == 2


def test_a_killed_server_loses_no_request_and_none_is_answered_twice():
    servers = [ScriptedServer(lambda r: "[[B>A]]", latency=0.1) for _ in range(3)]
    victim = servers[1]

    def kill() -> None:
        while len(victim.requests) < 5:
            time.sleep(0.01)
        victim.stop()  # its connections are cut mid-answer, and the port refuses from now on

    killer = threading.Thread(target=kill)
    killer.start()
    chats = _games(60, "m")
    try:
        be = FanoutBackend("m", [s.base_url for s in servers], max_in_flight=4, health_interval=0.2)
        out = be.generate(chats, SAMPLING)
    finally:
        killer.join(timeout=10)
        for s in servers:
            s.stop()
    assert all(c.ok for c in out), [c.error for c in out if not c.ok][:3]
    answered = _answered(*servers)
    assert all(answered[prompt_hash(c)] == 1 for c in chats)  # each answer delivered once, none lost
    assert sum(c.meta["failovers"] for c in out) >= 1  # requests in flight at the killed server moved on
    late = [c for c in out if c.meta["base_url"] == victim.base_url]
    assert len(late) <= len([r for r in victim.chat_requests() if r.status == 200])


def test_a_dead_url_gets_no_traffic_and_a_server_that_comes_up_gets_some():
    live = ScriptedServer(lambda r: "ok", latency=0.05)
    port = _free_port()
    late: list[ScriptedServer] = []
    dead = f"http://127.0.0.1:{port}/v1"

    def start_later() -> None:
        time.sleep(0.5)
        late.append(ScriptedServer(lambda r: "ok", latency=0.05, port=port))

    starter = threading.Thread(target=start_later)
    try:
        be = FanoutBackend("m", [live.base_url, dead], max_in_flight=2, health_interval=0.1)
        t0 = time.monotonic()
        out = be.generate(_games(5, "m"), SAMPLING)
        assert all(c.ok for c in out) and {c.meta["base_url"] for c in out} == {live.base_url}
        assert time.monotonic() - t0 < 3  # no retries spent on the dead URL
        starter.start()
        out = be.generate(_games(50, "m"), SAMPLING)  # 2.5 s or more at 2 in flight: the late server joins
        assert all(c.ok for c in out)
    finally:
        starter.join(timeout=5)
        live.stop()
        for s in late:
            s.stop()
    assert Counter(c.meta["base_url"] for c in out)[dead] >= 1
