"""Every paid judge call is stored the moment it is answered, so no rerun pays for it again.

Arena-Hard judges each answer in two games (one per position order). These tests run the whole pipeline on the demo
data against the scripted OpenAI-compatible server, make single games fail (or the run crash), and count at the
server which calls a rerun asks for again.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from lioneval import benchmarks
from lioneval.benchmarks.prompts import followup_messages
from lioneval.judges.judge import make_judge
from lioneval.pipeline import DEMO_BASELINE, DEMO_DATA, RunConfig, run
from lioneval.store import RunStore
from lioneval.testing.openai_server import Faults, ScriptedServer, prompt_hash
from lioneval.testing.scripted import ScriptedBackend
from lioneval.types import RunSpec

DATA = DEMO_DATA / "arena_hard"
_BENCH = benchmarks.load("arena-hard", str(DATA), baseline=DEMO_BASELINE)
QUESTIONS = {q.id: q.turns[0] for q in _BENCH.questions()}
BASELINE_TEXTS = {a.turns[0].strip() for a in _BENCH.baseline_answers()}

Tag = tuple[str, str, bool]  # (question id, where the judged model stands: "A" | "B", follow-up call)


class ScriptedArenaJudge:
    """The judge behind the scripted server: it names every request it gets by question, position and call, and
    fails, withholds or garbles verdicts for the tags a test picks."""

    def __init__(self) -> None:
        self.tags: dict[str, Tag] = {}  # prompt hash -> tag
        self.fail: set[Tag] = set()  # answered with a 500 (every attempt)
        self.no_verdict: set[Tag] = set()  # answered without a verdict (Arena-Hard asks once more)
        self.unparseable: set[Tag] = set()  # answered with two different verdicts (a parse failure)

    def tag(self, req: dict) -> Tag:
        msgs = req["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        qid = next(q for q, text in QUESTIONS.items() if text in user)
        answer_a = user.split("<answer_a>", 1)[1].split("</answer_a>", 1)[0].strip()
        tag = (qid, "B" if answer_a in BASELINE_TEXTS else "A", any(m["role"] == "assistant" for m in msgs))
        self.tags[prompt_hash(msgs)] = tag
        return tag

    def respond(self, req: dict) -> str:
        tag = self.tag(req)
        if tag in self.unparseable:
            return "Hard to say. [[A>B]] or perhaps [[B>A]]."
        if tag in self.no_verdict:
            return "Both answers have merits; I cannot decide."
        # it prefers the judged model, wherever it stands
        if tag[2]:
            return "Final verdict: [[A>B]]" if tag[1] == "A" else "Final verdict: [[B>A]]"
        return f"{tag[1]} is better.\nFinal verdict: " + ("[[A>>B]]" if tag[1] == "A" else "[[B>>A]]")

    def script(self, req: dict, attempt: int) -> str | None:
        return "server_error" if self.tag(req) in self.fail else None


def _asked(srv: ScriptedServer, judge: ScriptedArenaJudge, status: int | None = None) -> Counter:
    """Requests the server got since its last reset, per tag (only those answered with ``status``, if given)."""
    return Counter(judge.tags[r.prompt_hash] for r in srv.chat_requests() if status in (None, r.status))


@pytest.fixture
def arena():
    judge = ScriptedArenaJudge()
    with ScriptedServer(judge.respond, faults=Faults(script=judge.script)) as srv:
        yield srv, judge


def _judge(srv: ScriptedServer, max_retries: int = 0):
    return make_judge(f"openai-compatible:judge@{srv.base_url}", max_retries=max_retries, timeout=10)


def _run(store: RunStore, srv: ScriptedServer, *, retry_failed: bool = False):
    cfg = RunConfig(bench=("arena-hard",), data={"arena-hard": str(DATA)}, baseline={"arena-hard": DEMO_BASELINE},
                    retry_failed=retry_failed)
    return run(cfg, store, backend=ScriptedBackend("echo"), spec=RunSpec(model="m"), judge=_judge(srv))


def _stored(store: RunStore, srv: ScriptedServer, scripted: ScriptedArenaJudge) -> set[Tag]:
    """The calls the store keeps (found under the keys the judge gives its games and their follow-ups)."""
    judge = _judge(srv)
    reqs = judge.requests(_BENCH, _BENCH.questions(), store.answers(benchmark="arena-hard", model="m"),
                          _BENCH.baseline_answers())
    jid, sampling = judge.id_for(_BENCH), judge.sampling(reqs[0].games[0].template)
    chats = {judge.call_key(jid, g, sampling): (g, g.messages) for r in reqs for g in r.games}
    firsts = store.games(chats)
    for key, rec in firsts.items():
        g, _ = chats[key]
        chat = followup_messages(g.messages, rec["text"], g.template)
        chats[judge.call_key(jid, g, sampling, chat)] = (g, chat)
    return {scripted.tags[prompt_hash(chats[k][1])] for k in store.games(chats)}


def _quiet(srv: ScriptedServer, calm_s: float = 0.5, limit_s: float = 10.0) -> None:
    """Wait until the server has answered every request a crashed run left in flight (the client cancels its
    pending calls, but requests already sent are still answered, and logged only as they leave): else a late one
    would be counted as the next run's."""
    deadline = time.monotonic() + limit_s
    calm_since = time.monotonic()
    while time.monotonic() < deadline:
        if srv.in_flight:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= calm_s:
            return
        time.sleep(0.02)


def _judgments(store: RunStore) -> dict[str, object]:
    return {j.question_id: j for j in store.judgments(benchmark="arena-hard", model="m")}


def test_a_failed_game_does_not_throw_away_its_paid_twin(arena, store):
    srv, judge = arena
    judge.fail = {("demo-1", "A", False), ("demo-3", "B", False)}  # one game of two questions, every attempt
    first = _run(store, srv)
    assert sum(_asked(srv, judge).values()) == 6  # three questions, two games each, no retries
    assert sum(_asked(srv, judge, 200).values()) == 4
    assert set(_judgments(store)) == {"demo-2"}  # the two half-answered questions are not judged ...
    assert "2 not answered" in first.judge_lines[0]
    assert _stored(store, srv, judge) == set(_asked(srv, judge, 200))  # ... but their answered games are kept

    judge.fail = set()
    srv.reset()
    second = _run(store, srv)
    # only the two failed games are asked again: no paid call is bought twice
    assert _asked(srv, judge) == Counter({("demo-1", "A", False): 1, ("demo-3", "B", False): 1})
    line = second.judge_lines[0]
    assert "2 judged (0 unparsed), 1 cached" in line and "2 calls (+2 stored calls reused)" in line
    judged = _judgments(store)
    assert set(judged) == {"demo-1", "demo-2", "demo-3"}
    for j in judged.values():
        assert [g.model_position for g in j.games] == ["B", "A"] and j.value == 1.0
        assert j.meta["usage"]["calls"] == 2  # what the judgment cost, stored game or not
    assert second.reports[0].counts.get("unanswered", 0) == 0

    srv.reset()
    _run(store, srv)
    assert not srv.chat_requests()  # everything stored: a third run asks nothing


class CrashingStore(RunStore):
    """A store whose process dies (here: raises) while writing the judgment of ``crash_on`` (any, if None)."""

    crash_on: str | None = None
    armed = True

    def put_judgments(self, judgments):
        judgments = list(judgments)
        if self.armed and any(self.crash_on in (None, j.question_id) for j in judgments):
            raise RuntimeError("simulated crash after the judge calls were paid")
        return super().put_judgments(judgments)


def test_a_crash_after_paying_loses_no_stored_call(arena, tmp_path):
    srv, judge = arena
    db = tmp_path / "crash.db"
    with CrashingStore(db) as st, pytest.raises(RuntimeError, match="simulated crash"):
        _run(st, srv)
    _quiet(srv)
    first = _asked(srv, judge, 200)
    with RunStore(db) as st:
        assert st.counts()["judgments"] == 0
        stored = _stored(st, srv, judge)
        assert len(stored) >= 2  # at least the two games of the judgment being written
        assert stored <= set(first)
        srv.reset()
        _run(st, srv)
        again = _asked(srv, judge)
        assert not stored & set(again)  # no stored call is asked for again
        # only the calls that were in flight at the crash (or never sent), each once
        assert set(again) == {(q, p, False) for q in QUESTIONS for p in "AB"} - stored
        assert max(again.values()) == 1
        assert set(_judgments(st)) == set(QUESTIONS)


def test_a_crash_after_a_follow_up_does_not_buy_it_again(arena, tmp_path):
    srv, judge = arena
    judge.no_verdict = {("demo-2", "A", False), ("demo-2", "B", False)}  # both games of demo-2 need a follow-up
    db = tmp_path / "crash.db"
    with CrashingStore(db) as st:
        st.crash_on = "demo-2"  # dies writing demo-2's judgment, after its games and follow-ups were paid
        with pytest.raises(RuntimeError, match="simulated crash"):
            _run(st, srv)
    _quiet(srv)
    assert _asked(srv, judge, 200) == Counter({**{(q, p, False): 1 for q in QUESTIONS for p in "AB"},
                                               ("demo-2", "A", True): 1, ("demo-2", "B", True): 1})
    with RunStore(db) as st:
        assert set(_judgments(st)) == {"demo-1", "demo-3"}
        assert _stored(st, srv, judge) == set(_asked(srv, judge))  # six games and two follow-ups
        srv.reset()
        again = _run(st, srv)
        assert not srv.chat_requests()  # demo-2 is judged from its stored games and follow-ups alone
        line = again.judge_lines[0]
        assert "1 judged (0 unparsed), 2 cached" in line and "0 calls (+4 stored calls reused)" in line
        j = _judgments(st)["demo-2"]
        assert [g.label for g in j.games] == ["B>A", "A>B"] and j.value == 1.0
        assert all("cannot decide" in g.raw and "Final verdict" in g.raw for g in j.games)


def test_retry_failed_asks_an_unparsed_stored_game_again(arena, store):
    srv, judge = arena
    demo1 = {("demo-1", "A", False), ("demo-1", "B", False)}
    judge.unparseable = set(demo1)
    _run(store, srv)
    assert _judgments(store)["demo-1"].failed and len(_stored(store, srv, judge)) == 6

    srv.reset()
    _run(store, srv)  # without retry_failed a stored parse failure stays as it is
    assert not srv.chat_requests()

    # retry_failed: the unparsed games are asked again, not re-read from the store; this time one of them
    # cannot be reached, so the failed judgment stays, and the answer to the other is kept
    judge.unparseable = set()
    judge.fail = {("demo-1", "A", False)}
    srv.reset()
    result = _run(store, srv, retry_failed=True)  # a judge that answers nothing leaves the run incomplete
    assert not result.complete, result.reports[0].incomplete
    assert any("1 of 3 verdicts could not be read" in why for why in result.reports[0].incomplete)
    assert _asked(srv, judge) == Counter(demo1)
    assert _judgments(store)["demo-1"].failed

    judge.fail = set()
    srv.reset()
    _run(store, srv, retry_failed=True)
    # the game answered on the last retry is not bought again, the one that could not be reached is asked
    assert _asked(srv, judge) == Counter({("demo-1", "A", False): 1})
    j = _judgments(store)["demo-1"]
    assert not j.failed and j.value == 1.0 and [g.label for g in j.games] == ["B>>A", "A>>B"]

    srv.reset()
    _run(store, srv, retry_failed=True)
    assert not srv.chat_requests()  # nothing failed any more: nothing to retry
