"""A judgment's recorded wall time covers every paid call behind it, Arena-Hard's follow-up turns included: over
real HTTP (the openai client against the scripted server), judgments into SQLite, read back by the dashboard."""

from __future__ import annotations

import time

import pytest

from lioneval.dashboards import data
from lioneval.judges.judge import judge_stored, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.store import RunStore
from lioneval.testing.openai_server import ScriptedServer
from lioneval.types import Answer, Question

LATENCY_S = 0.05  # the server's delay before every answer
FOLLOW_UP_S = 0.3  # what a follow-up turn takes on top of it


def _judge(req: dict) -> str:
    """No verdict at first for questions that ask for it; the follow-up turn (the first output and a new user turn)
    answers slowly, with a verdict."""
    if len(req["messages"]) > 2 and req["messages"][-2]["role"] == "assistant":
        time.sleep(FOLLOW_UP_S)
        return "Final verdict: [[A=B]]"
    text = [m["content"] for m in req["messages"] if m["role"] == "user"][-1]
    return "Both are fine, I cannot decide." if "NOVERDICT" in text else "A is better.\nFinal verdict: [[A>B]]"


@pytest.fixture
def judged(tmp_path):
    db = tmp_path / "arena.db"
    qs = [Question(id="slow", benchmark="arena-hard", turns=["NOVERDICT please"]),
          Question(id="quick", benchmark="arena-hard", turns=["Name a colour."])]
    with RunStore(db) as st, ScriptedServer(_judge, latency=LATENCY_S) as srv:
        st.put_questions(qs)
        st.put_answers([Answer(question_id=q.id, benchmark="arena-hard", model=m, turns=[f"{m} on {q.id}"])
                        for q in qs for m in ("base", "m")])
        spec = parse_spec(f"openai-compatible:judge-a@{srv.base_url}", max_retries=1, timeout=10)
        run = judge_stored(st, make_judge(spec), "arena-hard", models=["m"], baseline="base")
        requests = len(srv.requests)
        judgments = {j.question_id: j for j in st.judgments(benchmark="arena-hard")}
    return db, run, requests, judgments


def test_follow_up_calls_add_their_wall_time_to_the_judgment(judged):
    _, run, requests, judgments = judged
    assert run.judged == 2 and requests == 6  # two games each, and a follow-up for each game of "slow"
    slow, quick = judgments["slow"], judgments["quick"]
    assert slow.value == 0.5 and all("[[A=B]]" in g.raw for g in slow.games)
    assert slow.meta["usage"]["calls"] == 4 and quick.meta["usage"]["calls"] == 2
    # every call's wall time holds the server's delay; the follow-ups' holds their own wait too
    assert slow.meta["usage"]["latency_s"] >= 4 * LATENCY_S + 2 * FOLLOW_UP_S
    assert 2 * LATENCY_S <= quick.meta["usage"]["latency_s"] < 2 * FOLLOW_UP_S


def test_the_report_card_counts_judgments_with_follow_ups_as_timed(judged):
    db, _, _, judgments = judged
    usage = data.judge_usage(db, "arena-hard").iloc[0]
    assert usage["with_latency"] == 2
    seconds = sorted(j.meta["usage"]["latency_s"] for j in judgments.values())
    assert usage["latency_p90_s"] == pytest.approx(seconds[0] + 0.9 * (seconds[1] - seconds[0]))
