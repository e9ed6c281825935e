"""Judging end to end over real HTTP: the openai client against the scripted server, judgments into SQLite."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from lioneval.benchmarks.alpaca_eval import swap_for
from lioneval.cli import main
from lioneval.errors import LionEvalError
from lioneval.judges.judge import Judge, judge_answers, judge_stored, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.store import RunStore
from lioneval.testing.openai_server import Faults, Reply, ScriptedServer, prompt_hash
from lioneval.types import Answer, Question


def _last_user(req: dict) -> str:
    return [m["content"] for m in req["messages"] if m["role"] == "user"][-1]


def scripted_judge(req: dict):
    """A judge that prefers (or rates highly) whatever says GOOD, and misbehaves on request."""
    msgs = req["messages"]
    text = _last_user(req)
    if req.get("logprobs"):  # AlpacaEval: the better output's id as the first token, with logprobs
        p1 = 0.8 if text.find("GOOD") < text.find("BAD") else 0.2
        return Reply(text="m" if p1 > 0.5 else "M", top_logprobs=[{"m": math.log(p1), "M": math.log(1 - p1)}])
    if len(msgs) > 2 and msgs[-2]["role"] == "assistant":  # Arena-Hard's follow-up turn
        return "Final verdict: [[A=B]]"
    if "<answer_b>" in text:  # Arena-Hard (the built-in template marks the two answers)
        if "NOVERDICT" in text:
            return "Both answers are fine, I cannot decide."
        a_part, b_part = text.split("<answer_b>")
        if "GOOD" in a_part and "GOOD" not in b_part:
            return "A is clearly better.\nFinal verdict: [[A>>B]]"
        if "GOOD" in b_part and "GOOD" not in a_part:
            return "B is better.\nFinal verdict: [[B>A]]"
        return "Final verdict: [[A=B]]"
    if "UNPARSEABLE" in text:
        return "I would rather not give a number."
    return "Solid answer. Rating: [[8]]" if "GOOD" in text else "Weak answer. Rating: [[3]]"


QS = [
    Question(id="1", benchmark="mt-bench", turns=["Say hi", "Say bye"], category="writing"),
    Question(id="2", benchmark="mt-bench", turns=["2+2?", "3+3?"], category="math", reference=["4", "6"]),
]


def _mt_answers(model: str, good: bool) -> list[Answer]:
    word = "GOOD" if good else "meh"
    return [
        Answer(question_id=q.id, benchmark="mt-bench", model=model, turns=[f"{word} one", f"{word} two"])
        for q in QS
    ]


@pytest.fixture
def server():
    with ScriptedServer(scripted_judge) as srv:
        yield srv


def _spec(server, name="judge-a", **kw):
    return parse_spec(f"openai-compatible:{name}@{server.base_url}", max_retries=2, timeout=10, **kw)


def test_mt_bench_judging_is_cached_and_judges_coexist(server, store):
    store.put_questions(QS)
    store.put_answers(_mt_answers("good-model", True) + _mt_answers("weak-model", False))
    a = make_judge(_spec(server))
    run = judge_stored(store, a, "mt-bench", models=["good-model", "weak-model"])
    assert run.judged == 8 and run.cached == 0 and run.parse_failures == 0
    n_requests = len(server.requests)
    assert n_requests == 8
    again = judge_stored(store, make_judge(_spec(server)), "mt-bench", models=["good-model", "weak-model"])
    assert again.judged == 0 and again.cached == 8
    assert len(server.requests) == n_requests  # a rerun makes no judge call
    vals = {(j.model, j.question_id, j.turn): j.value for j in store.judgments(judge=a.id_for("mt-bench"))}
    assert set(vals.values()) == {8.0, 3.0} and vals[("good-model", "2", 2)] == 8.0
    # the math question used the reference-guided template, which shows the reference answer to the judge
    math_req = a.requests("mt-bench", QS, _mt_answers("good-model", True))[2]
    assert math_req.meta["category"] == "math" and "4" in json.dumps(math_req.games[0].messages)
    # a second judge (another model name) stores beside the first
    b = make_judge(_spec(server, name="judge-b"))
    judge_stored(store, b, "mt-bench", models=["good-model"])
    assert {j.judge for j in store.judgments(model="good-model")} == {a.id_for("mt-bench"), b.id_for("mt-bench")}
    assert a.id_for("mt-bench") != b.id_for("mt-bench")
    assert run.prompt_tokens > 0 and run.completion_tokens > 0


def test_parse_failures_are_stored_and_retried_only_when_asked(server, store):
    store.put_questions(QS[:1])
    store.put_answers([Answer(question_id="1", benchmark="mt-bench", model="m", turns=["fine", "UNPARSEABLE"])])
    judge = make_judge(_spec(server))
    run = judge_stored(store, judge, "mt-bench", models=["m"])
    assert run.parse_failures == 1
    failed = [j for j in store.judgments() if j.failed]
    assert len(failed) == 1 and "no" in failed[0].error.lower() and "rather not" in failed[0].games[0].raw
    n = len(server.requests)
    judge_stored(store, judge, "mt-bench", models=["m"])
    assert len(server.requests) == n
    judge_stored(store, judge, "mt-bench", models=["m"], retry_failed=True)
    assert len(server.requests) == n + 1


def _pairwise_setup(store, bench):
    qs = [Question(id=str(i), benchmark=bench, turns=[f"Task {i}: explain"]) for i in range(6)]
    store.put_questions(qs)
    store.put_answers([Answer(question_id=q.id, benchmark=bench, model="base", turns=["BAD base answer"]) for q in qs])
    store.put_answers([Answer(question_id=q.id, benchmark=bench, model="m", turns=["GOOD model answer"]) for q in qs])
    return qs


def test_arena_hard_judges_both_orders_from_the_models_side(server, store):
    _pairwise_setup(store, "arena-hard")
    judge = make_judge(_spec(server))
    run = judge_stored(store, judge, "arena-hard", models=["m"], baseline="base")
    assert run.judged == 6 and len(server.requests) == 12  # two games per question
    for j in store.judgments(benchmark="arena-hard"):
        assert [g.model_position for g in j.games] == ["B", "A"]
        # game 1: model in B wins slightly ([[B>A]]); game 2: model in A wins strongly ([[A>>B]])
        assert [g.label for g in j.games] == ["B>A", "A>>B"] and [g.value for g in j.games] == [1.0, 1.0]
        assert j.value == 1.0 and j.meta["games_agree"] is True and j.baseline == "base"


def test_arena_hard_follow_up_turn_when_no_verdict(server, store):
    qs = [Question(id="1", benchmark="arena-hard", turns=["NOVERDICT please"])]
    store.put_questions(qs)
    store.put_answers([Answer(question_id="1", benchmark="arena-hard", model="base", turns=["x"]),
                       Answer(question_id="1", benchmark="arena-hard", model="m", turns=["y"])])

    def no_then_yes(req):
        if len(req["messages"]) > 2:  # the follow-up carries the first output and a new user turn
            return "Final verdict: [[A=B]]"
        return "Both answers are fine, I cannot decide."

    server.responder = no_then_yes
    run = judge_stored(store, make_judge(_spec(server)), "arena-hard", models=["m"], baseline="base")
    (j,) = run.judgments
    assert len(server.requests) == 4 and j.value == 0.5 and all(g.label == "A=B" for g in j.games)
    assert "cannot decide" in j.games[0].raw and "[[A=B]]" in j.games[0].raw


def test_alpaca_eval_logprob_preference_with_deterministic_swap(server, store):
    qs = _pairwise_setup(store, "alpaca-eval")
    judge = make_judge(_spec(server))
    run = judge_stored(store, judge, "alpaca-eval", models=["m"], baseline="base")
    assert run.judged == 6
    swaps = [swap_for(q.turns[0]) for q in qs]
    assert any(swaps) and not all(swaps)  # both orders occur in this set
    for j in store.judgments(benchmark="alpaca-eval"):
        assert j.value == pytest.approx(0.8)  # the model's answer wins with p=0.8 whichever position it had
    reqs = [r for r in server.requests if r.status == 200]
    assert len(reqs) == 6


def test_missing_logprob_ids_are_failures_not_ties(server, store):
    _pairwise_setup(store, "alpaca-eval")
    server.responder = lambda req: Reply(text="The", top_logprobs=[{"The": -0.1, "Output": -2.5}])
    run = judge_stored(store, make_judge(_spec(server)), "alpaca-eval", models=["m"], baseline="base")
    assert run.parse_failures == 6 and all(j.value is None and j.error for j in store.judgments())


def test_server_without_logprobs_is_a_clear_error(server, store):
    _pairwise_setup(store, "alpaca-eval")
    server.faults = Faults(script=lambda req, attempt: "no_logprobs")  # a server that ignores the logprobs request
    with pytest.raises(LionEvalError, match="logprobs") as info:
        judge_stored(store, make_judge(_spec(server)), "alpaca-eval", models=["m"], baseline="base")
    assert str(info.value).count("Fix:") == 1
    assert store.counts()["judgments"] == 0  # not stored: a fixed server gets the requests on the next run


def test_transient_faults_still_complete_without_duplicates(store):
    faults = Faults(rate=0.3, kinds=("rate_limit", "server_error"), retry_after="0", seed=3)
    with ScriptedServer(scripted_judge, faults=faults) as srv:
        store.put_questions(QS)
        store.put_answers(_mt_answers("m", True))
        spec = parse_spec(f"openai-compatible:j@{srv.base_url}", max_retries=8, timeout=5)
        run = judge_stored(store, make_judge(spec), "mt-bench", models=["m"])
        ok = [r for r in srv.requests if r.status == 200]
        assert run.judged == 4 and len(ok) == 4 and len({r.prompt_hash for r in ok}) == 4
        assert any(r.status in (429, 500) for r in srv.requests)


def test_unreachable_judge_is_a_clear_error_and_loses_nothing(store):
    store.put_questions(QS)
    store.put_answers(_mt_answers("m", True))
    with ScriptedServer(scripted_judge) as srv:
        url = srv.base_url
    spec = parse_spec(f"openai-compatible:j@{url}", max_retries=1, timeout=2)
    with pytest.raises(LionEvalError, match="answered none"):
        judge_stored(store, make_judge(spec), "mt-bench", models=["m"])
    assert store.counts()["answers"] == 2 and store.counts()["judgments"] == 0


def test_api_key_never_reaches_store_logs_or_errors(tmp_path, monkeypatch, capsys, caplog):
    secret = "sk-test-" + "9" * 24
    db = tmp_path / "s.db"
    with RunStore(db) as st:
        st.put_questions(QS)
        st.put_answers(_mt_answers("m", True))
    with ScriptedServer(scripted_judge, require_key=secret) as srv:
        monkeypatch.setenv("LIONEVAL_TEST_KEY", secret)
        cfg = tmp_path / "judge.yaml"
        cfg.write_text(
            f"kind: openai-compatible\nmodel: j\nbase_urls: [{srv.base_url}]\napi_key_env: LIONEVAL_TEST_KEY\n"
        )
        assert main(["--store", str(db), "judge", "--bench", "mt-bench", "--model", "m", "--judge", str(cfg)]) == 0
        monkeypatch.setenv("LIONEVAL_TEST_KEY", secret[:-1] + "0")  # a wrong key: 401, not retried
        cfg2 = tmp_path / "judge2.yaml"
        cfg2.write_text(cfg.read_text() + "max_tokens: 99\n")
        assert main(["--store", str(db), "judge", "--bench", "mt-bench", "--model", "m", "--judge", str(cfg2)]) == 2
    out = capsys.readouterr()
    assert "LIONEVAL_TEST_KEY" in out.err  # the error names the variable to fix ...
    export = tmp_path / "x.jsonl"
    assert main(["--store", str(db), "export", str(export)]) == 0
    everything = db.read_bytes() + export.read_bytes() + (out.out + out.err + caplog.text).encode()
    for f in tmp_path.glob("s.db*"):
        everything += f.read_bytes()
    assert secret.encode() not in everything and secret[:-1].encode() not in everything  # ... never the key


def test_ensemble_aggregates_members_and_reuses_their_cache(server, store):
    store.put_questions(QS)
    store.put_answers(_mt_answers("m", True))
    spec = parse_spec(f"ensemble:[openai-compatible:a@{server.base_url}; openai-compatible:b@{server.base_url}]")
    ens = make_judge(spec)
    run = judge_answers(ens, "mt-bench", QS, _mt_answers("m", True), store=store)
    assert run.judged == 4 and all(j.value == 8.0 for j in run.judgments)
    judges = {j.judge for j in store.judgments()}
    assert len(judges) == 3  # two members and the ensemble
    n = len(server.requests)
    judge_answers(make_judge(spec), "mt-bench", QS, _mt_answers("m", True), store=store)
    assert len(server.requests) == n


def test_judge_ids_change_with_template_sampling_and_model(server):
    j1 = Judge(_spec(server))
    assert j1.id_for("mt-bench") == Judge(_spec(server)).id_for("mt-bench")
    assert j1.id_for("mt-bench") != Judge(_spec(server, temperature=0.7)).id_for("mt-bench")
    assert j1.id_for("mt-bench") != j1.id_for("arena-hard")
    assert Judge(_spec(server)).id_for("mt-bench") == Judge(
        parse_spec("openai-compatible:judge-a@http://elsewhere:1/v1")
    ).id_for("mt-bench")  # where a judge is served does not change what it is


KILLABLE = textwrap.dedent(
    """
    import sys
    from lioneval.judges.judge import judge_stored, make_judge
    from lioneval.judges.spec import parse_spec
    from lioneval.store import RunStore
    store = RunStore(sys.argv[1])
    spec = parse_spec(f"openai-compatible:j@{sys.argv[2]}", max_in_flight=4)
    judge_stored(store, make_judge(spec), "mt-bench", models=["m"])
    """
)


def test_sigkill_midway_then_rerun_repeats_no_stored_judgment(tmp_path):
    db = tmp_path / "s.db"
    qs = [Question(id=str(i), benchmark="mt-bench", turns=[f"q{i}", f"r{i}"], category="writing") for i in range(40)]
    answers = [Answer(question_id=q.id, benchmark="mt-bench", model="m", turns=["GOOD a", "GOOD b"]) for q in qs]
    with RunStore(db) as st:
        st.put_questions(qs)
        st.put_answers(answers)
    with ScriptedServer(scripted_judge, latency=0.05) as srv:
        child = subprocess.Popen([sys.executable, "-c", KILLABLE, str(db), srv.base_url])
        deadline = time.time() + 60
        ro = RunStore(db, readonly=True)
        while time.time() < deadline and ro.counts()["judgments"] < 20:
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        stored_before = {j.key: j for j in ro.judgments()}
        ro.close()
        assert 20 <= len(stored_before) < 80
        with RunStore(db) as st:
            judge = make_judge(parse_spec(f"openai-compatible:j@{srv.base_url}"))
            run = judge_stored(st, judge, "mt-bench", models=["m"])
            assert run.cached == len(stored_before) and run.judged == 80 - len(stored_before)
            assert st.counts()["judgments"] == 80
        # no judgment that was stored before the kill was asked for again (calls in flight at the kill may be)
        jid = judge.id_for("mt-bench")
        by_key = {judge._skeleton(jid, r).key: r for r in judge.requests("mt-bench", qs, answers)}
        stored_hashes = {prompt_hash(by_key[k].games[0].messages) for k in stored_before}
        ok = Counter(r.prompt_hash for r in srv.requests if r.status == 200)
        assert len(stored_hashes) == len(stored_before) and all(ok[h] == 1 for h in stored_hashes)
