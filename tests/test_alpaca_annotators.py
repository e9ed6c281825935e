"""AlpacaEval annotators over real HTTP: the leaderboard's weighted one needs logprobs, and a judge whose server returns
none is stopped after its first few calls with the fix; the text annotator serves such a judge; judgments of
different annotators never mix, and a non-leaderboard annotator's numbers say they are not comparable."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import threading
from pathlib import Path

import pytest

from lioneval import benchmarks
from lioneval.benchmarks import prompts as T
from lioneval.benchmarks.alpaca_eval import (
    DEFAULT_ANNOTATOR,
    TEXT_ANNOTATOR,
    AlpacaEval,
    annotator_of,
    load_annotations,
)
from lioneval.errors import ConfigError, DataError, JudgeUnavailableError, UnknownNameError
from lioneval.judges.judge import LOGPROB_PROBE, judge_stored, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.store import RunStore
from lioneval.testing.openai_server import Faults, Reply, ScriptedServer
from lioneval.types import Answer, Question

N = 20  # questions: well above LOGPROB_PROBE, so an early stop saves calls
HAS_ALPACA = importlib.util.find_spec("alpaca_eval") is not None
needs_alpaca = pytest.mark.skipif(not HAS_ALPACA,
                                  reason="alpaca-eval is not installed (pip install 'lioneval[alpaca]')")

# A ranking evaluator in alpaca_eval's configs.yaml format, written for these tests (prompt in our own words).
TINY_RANKING_CONFIG = """\
tiny_ranking:
  prompt_template: "tiny_ranking/prompt.txt"
  fn_completions: "openai_completions"
  completions_kwargs:
    model_name: "some-judge"
    max_tokens: 100
    temperature: 0
  fn_completion_parser: "ranking_parser"
  batch_size: 1
"""
TINY_RANKING_PROMPT = """\
<|im_start|>system
Rank two replies.
<|im_end|>
<|im_start|>user
Instruction: {instruction}

[{"model": "model_1", "answer": \"\"\"{output_1}\"\"\"}, {"model": "model_2", "answer": \"\"\"{output_2}\"\"\"}]

Reply with a list of {'model': name, 'rank': n} entries, rank 1 for the better reply.
<|im_end|>
"""


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def _user(req: dict) -> str:
    return [m["content"] for m in req["messages"] if m["role"] == "user"][-1]


def _first_is_good(text: str, second: str) -> bool:
    """Whether output_1 (shown before ``second``, the mark of output_2) is the GOOD answer."""
    head, _, _ = text.partition(second)
    return "GOOD" in head


def judge_reply(req: dict):
    """A judge that prefers the answer saying GOOD: the output's id with logprobs when they are asked for (the
    server strips them under the no_logprobs fault), else a ranking list in text."""
    text = _user(req)
    if req.get("logprobs"):
        p1 = 0.9 if _first_is_good(text, '"M"') else 0.1
        return Reply(text="m" if p1 > 0.5 else "M", top_logprobs=[{"m": math.log(p1), "M": math.log(1 - p1)}])
    first = 1 if _first_is_good(text, "model_2") else 2
    return (f"Here is the ranking:\n```python\n[{{'model': 'model_1', 'rank': {first}}}, "
            f"{{'model': 'model_2', 'rank': {3 - first}}}]\n```")


def _setup(store: RunStore, n: int = N) -> list[Question]:
    """n questions; the model's answer is GOOD on 3 of every 4 (win rate 75%), the baseline's on the others."""
    qs = [Question(id=f"q{i:02d}", benchmark="alpaca-eval", turns=[f"Task {i}: explain item {i}"]) for i in range(n)]
    store.put_questions(qs)
    store.put_answers([Answer(question_id=q.id, benchmark="alpaca-eval", model="m",
                              turns=["GOOD model answer" if i % 4 else "weak model answer"]) for i, q in enumerate(qs)])
    store.put_answers([Answer(question_id=q.id, benchmark="alpaca-eval", model="base",
                              turns=["plain baseline answer" if i % 4 else "GOOD baseline answer"])
                       for i, q in enumerate(qs)])
    return qs


def _spec(server, name="judge-a", **kw):
    return parse_spec(f"openai-compatible:{name}@{server.base_url}", max_retries=1, timeout=10, **kw)


def _chat(server) -> int:
    return len(server.chat_requests())


def _ranking_config(tmp_path: Path) -> Path:
    folder = tmp_path / "evaluators_configs" / "tiny_ranking"
    folder.mkdir(parents=True)
    (folder / "configs.yaml").write_text(TINY_RANKING_CONFIG)
    (folder / "prompt.txt").write_text(TINY_RANKING_PROMPT)
    return folder / "configs.yaml"


never_logprobs = Faults(script=lambda req, attempt: "no_logprobs")


# --------------------------------------------------------------------------------------------------------------------
# The weighted annotator without logprobs: an early, clear stop


@pytest.mark.parametrize("bench", ["alpaca-eval", AlpacaEval()])
def test_no_logprobs_stops_after_the_first_calls_with_the_fix(store, bench):
    _setup(store)
    with ScriptedServer(judge_reply, faults=never_logprobs) as server:
        with pytest.raises(JudgeUnavailableError) as info:
            judge_stored(store, make_judge(_spec(server)), bench, models=["m"], baseline="base")
        assert _chat(server) == LOGPROB_PROBE < N  # the other requests were never paid for
    err = info.value
    text = str(err)
    package = "" if HAS_ALPACA else "; its prompt: pip install 'lioneval[alpaca]'"
    assert text == (
        f"judge openai-compatible:judge-a returned no logprobs in its first {LOGPROB_PROBE} answers and the AlpacaEval "
        f"annotator {DEFAULT_ANNOTATOR} needs them: judging stopped after {LOGPROB_PROBE} of {N} requests. Fix: use "
        f'the annotator {TEXT_ANNOTATOR}, which reads the text: annotator = "{TEXT_ANNOTATOR}" under '
        f"[benchmarks.alpaca-eval] in lioneval.toml or --bench-option alpaca-eval.annotator={TEXT_ANNOTATOR} (not "
        f"comparable with the AlpacaEval 2.0 leaderboard{package}); or serve the judge with logprobs"
    )
    assert text.count("Fix:") == 1 and err.message == text  # the fix is in the message a stored report keeps
    assert err.requested == N  # type: ignore[attr-defined]
    assert store.counts()["judgments"] == 0  # answers without logprobs are no verdicts: nothing wrong is stored


def test_the_stop_loses_nothing_stored_and_a_fixed_server_resumes(store):
    qs = _setup(store)
    with ScriptedServer(judge_reply) as server:
        judge = make_judge(_spec(server))
        # five judgments made while the server still returned logprobs
        first = [a for a in store.answers(benchmark="alpaca-eval", model="m") if a.question_id in
                 {q.id for q in qs[:5]}]
        base = store.answers(benchmark="alpaca-eval", model="base")
        run = judge.run_answers("alpaca-eval", qs, first, base, store)
        assert run.judged == 5 and _chat(server) == 5
        server.faults = never_logprobs
        with pytest.raises(JudgeUnavailableError, match="returned no logprobs"):
            judge_stored(store, judge, "alpaca-eval", models=["m"], baseline="base")
        assert _chat(server) == 5 + LOGPROB_PROBE  # the stored five were not asked again
        kept = store.judgments(benchmark="alpaca-eval")
        assert len(kept) == 5 and all(j.value is not None for j in kept)
        assert store.counts()["answers"] == 2 * N
        # the server returns logprobs again: the rerun asks only for the judgments still missing
        server.faults = Faults()
        before = _chat(server)
        again = judge_stored(store, judge, "alpaca-eval", models=["m"], baseline="base")
        assert again.cached == 5 and again.judged == N - 5 and _chat(server) - before == N - 5


def test_a_judge_with_logprobs_for_some_answers_is_not_stopped(store):
    _setup(store)
    arrivals = itertools.count(1)
    lock = threading.Lock()

    def mixed(req: dict, attempt: int) -> str | None:
        with lock:
            k = next(arrivals)
        # the probe's calls are the first 8 to arrive: only the last of them has logprobs; later, every other one
        return None if k == LOGPROB_PROBE or (k > LOGPROB_PROBE and k % 2) else "no_logprobs"

    with ScriptedServer(judge_reply, faults=Faults(script=mixed)) as server:
        run = judge_stored(store, make_judge(_spec(server)), "alpaca-eval", models=["m"], baseline="base")
        assert _chat(server) == N  # every request was sent
    with_logprobs = 1 + sum(1 for k in range(LOGPROB_PROBE + 1, N + 1) if k % 2)
    assert run.judged == with_logprobs and run.parse_failures == 0
    assert run.transport_failures == N - with_logprobs  # the others are unanswered, asked again next run
    assert "logprobs" in run.errors.most_common(1)[0][0]
    assert store.counts()["judgments"] == with_logprobs


def test_a_backend_without_logprobs_stops_too_and_stores_no_failed_verdict(store):
    """A backend that answers without an error but without logprobs (not only the OpenAI-compatible one, which marks
    such an answer failed itself) is read the same way: the check uses what came back."""
    from lioneval.testing.scripted import ScriptedBackend

    _setup(store)
    backend = ScriptedBackend("no-logprobs", fn=lambda chat, sampling: "M")
    original = backend.generate

    def without_logprobs(chats, sampling, *, on_result=None):
        def strip(i, c):
            c.top_logprobs = None
            if on_result is not None:
                on_result(i, c)
        out = original(chats, sampling, on_result=strip)
        return out

    backend.generate = without_logprobs  # type: ignore[method-assign]
    judge = make_judge("scripted:no-logprobs", backend)
    with pytest.raises(JudgeUnavailableError, match="scripted:no-logprobs returned no logprobs"):
        judge_stored(store, judge, "alpaca-eval", models=["m"], baseline="base")
    assert backend.calls == LOGPROB_PROBE and store.counts()["judgments"] == 0


def test_fewer_requests_than_the_probe_still_get_the_clear_message(store):
    _setup(store, n=3)
    with ScriptedServer(judge_reply, faults=never_logprobs) as server:
        with pytest.raises(JudgeUnavailableError, match="judging stopped after 3 of 3 requests") as info:
            judge_stored(store, make_judge(_spec(server)), "alpaca-eval", models=["m"], baseline="base")
    assert TEXT_ANNOTATOR in str(info.value)


# --------------------------------------------------------------------------------------------------------------------
# The text annotator: any chat judge serves it


@needs_alpaca
def test_text_annotator_completes_where_the_weighted_one_stops(store):
    _setup(store)
    asked: list[dict] = []

    def recording(req: dict):
        asked.append(req)
        return judge_reply(req)

    bench = AlpacaEval(annotator=TEXT_ANNOTATOR)
    with ScriptedServer(recording, faults=never_logprobs) as server:
        judge = make_judge(_spec(server))
        run = judge_stored(store, judge, bench, models=["m"], baseline="base")
        assert run.judged == N and run.parse_failures == 0 and run.transport_failures == 0
        assert _chat(server) == N and not any(r.get("logprobs") for r in asked)
        # the official prompt: output_1 and output_2 are named model_1 and model_2, and a ranking is asked for
        assert '"model": "model_1"' in _user(asked[0]) and "rank" in _user(asked[0])
        # a rerun costs nothing
        assert judge_stored(store, judge, bench, models=["m"], baseline="base").cached == N
        assert _chat(server) == N
        weighted = judge.id_for("alpaca-eval")
    judgments = store.judgments(benchmark="alpaca-eval")
    assert {j.judge for j in judgments} == {judge.id_for(bench)} and judge.id_for(bench) != weighted
    assert annotator_of(judgments[0]) == (TEXT_ANNOTATOR, False)
    assert {j.games[0].label for j in judgments} <= {"model_1", "model_2"}
    answers = store.answers(benchmark="alpaca-eval")
    s = bench.summarize(judgments, answers, lc=False)["m"]
    wr = s.metrics["win_rate"]
    assert wr.value == pytest.approx(75.0) and wr.n == N
    assert wr.meta["annotator"] == TEXT_ANNOTATOR and wr.meta["comparable"] is False
    assert DEFAULT_ANNOTATOR in wr.meta["note"] and "not comparable" in wr.meta["note"]
    assert s.metrics["discrete_win_rate"].meta["comparable"] is False and s.meta["annotator"] == TEXT_ANNOTATOR


def test_a_ranking_evaluator_from_a_configs_file(store, tmp_path):
    """The same protocol from a user's configs.yaml (no alpaca-eval needed), given as the judge's template file."""
    _setup(store)
    config = _ranking_config(tmp_path)
    bench = AlpacaEval(annotator="tiny_ranking")
    with ScriptedServer(judge_reply, faults=never_logprobs) as server:
        judge = make_judge(_spec(server, templates={"alpaca-eval": str(config)}))
        run = judge_stored(store, judge, bench, models=["m"], baseline="base")
        assert run.judged == N and run.parse_failures == 0 and _chat(server) == N
    judgments = store.judgments(benchmark="alpaca-eval")
    tpl = judge.template(bench, "tiny_ranking")
    assert tpl.output_format == "ranking" and tpl.options["ids"] == ("model_1",)
    assert tpl.options["annotator"] == "tiny_ranking" and tpl.options["sampling"]["temperature"] == 0
    s = bench.summarize(judgments, store.answers(benchmark="alpaca-eval"), lc=False)["m"]
    assert s.metrics["win_rate"].value == pytest.approx(75.0)
    assert s.metrics["win_rate"].meta["annotator"] == "tiny_ranking"
    # both output orders occurred and were mapped back to the model's side
    assert {j.meta["swapped"] for j in judgments} == {True, False}


def test_ranking_failures_are_failures_not_losses(store, tmp_path):
    _setup(store, n=4)
    config = _ranking_config(tmp_path)
    with ScriptedServer(lambda req: "Both are fine, I will not rank them.") as server:
        judge = make_judge(_spec(server, templates={"alpaca-eval": str(config)}))
        run = judge_stored(store, judge, AlpacaEval(annotator="tiny_ranking"), models=["m"], baseline="base")
    assert run.parse_failures == 4
    assert all(j.value is None and "no ranking found" in j.error for j in store.judgments())


# --------------------------------------------------------------------------------------------------------------------
# The annotator on the benchmark: choice, identity, comparability


def test_annotator_choice_and_validation():
    assert AlpacaEval().annotator == DEFAULT_ANNOTATOR
    assert AlpacaEval(annotator="weighted").annotator == DEFAULT_ANNOTATOR
    assert AlpacaEval().judge_modes() == [None]
    assert AlpacaEval(annotator=TEXT_ANNOTATOR).judge_modes() == [TEXT_ANNOTATOR]
    assert benchmarks.load("alpaca-eval", annotator=TEXT_ANNOTATOR).annotator == TEXT_ANNOTATOR
    for bad in ("", "  ", 3):
        with pytest.raises(ConfigError, match="annotator"):
            AlpacaEval(annotator=bad)  # type: ignore[arg-type]


@needs_alpaca
def test_judge_ids_keep_annotators_apart():
    judge = make_judge("openai-compatible:j@http://127.0.0.1:9/v1")
    default = judge.id_for(AlpacaEval())
    assert judge.id_for(AlpacaEval(annotator=DEFAULT_ANNOTATOR)) == default == judge.id_for("alpaca-eval")
    text = judge.id_for(AlpacaEval(annotator=TEXT_ANNOTATOR))
    # the binarized annotator shares the weighted one's prompt and ids, but not its judgments
    clf = judge.id_for(AlpacaEval(annotator="alpaca_eval_clf_gpt4_turbo"))
    assert len({default, text, clf}) == 3
    assert judge.template(AlpacaEval(annotator="alpaca_eval_clf_gpt4_turbo"), "alpaca_eval_clf_gpt4_turbo").hash == \
        judge.template(AlpacaEval(), None).hash


@needs_alpaca
def test_official_annotators_read_or_refused_before_any_call():
    text = T.load_alpaca_template(TEXT_ANNOTATOR)
    assert (text.kind, text.output_format, text.options["ids"]) == ("ranking", "ranking", ("model_1",))
    assert text.options["sampling"]["temperature"] == 0 and text.options["annotator"] == TEXT_ANNOTATOR
    assert set(text.placeholders) == {"instruction", "output_1", "output_2"}
    weighted = T.load_alpaca_template(DEFAULT_ANNOTATOR)
    assert weighted.options["binarize"] is False and "annotator" not in weighted.options
    assert T.load_alpaca_template("alpaca_eval_clf_gpt4_turbo").options["binarize"] is True
    assert TEXT_ANNOTATOR in T.alpaca_annotators() and DEFAULT_ANNOTATOR in T.alpaca_annotators()
    with pytest.raises(DataError, match="function calling") as info:
        T.load_alpaca_template("alpaca_eval_gpt4_turbo_fn")
    assert TEXT_ANNOTATOR in str(info.value)
    with pytest.raises(DataError, match="later token"):
        T.load_alpaca_template("weighted_alpaca_eval_cot_gpt4_turbo")
    with pytest.raises(DataError, match="regex_parser"):
        T.load_alpaca_template("chatgpt")
    with pytest.raises(UnknownNameError, match="closest: alpaca_eval_gpt4"):
        T.load_alpaca_template("alpaca_eval_gpt5")
    # the benchmark's logprob template says what a judge without logprobs should do instead
    hint = AlpacaEval().judge_template()
    assert TEXT_ANNOTATOR in hint.options["no_logprobs"]["fix"]
    assert "no_logprobs" not in AlpacaEval(annotator=TEXT_ANNOTATOR).judge_template().options


def test_an_unknown_annotator_fails_before_any_call(store):
    with ScriptedServer(judge_reply) as server:
        judge = make_judge(_spec(server))
        with pytest.raises((UnknownNameError, DataError), match="alpaca_eval_gpt5"):
            judge.id_for(AlpacaEval(annotator="alpaca_eval_gpt5"))
        assert _chat(server) == 0


def test_imported_annotations_say_their_annotator(tmp_path):
    rows = [{"instruction": f"Task {i}", "output_1": "b" * (10 + i), "output_2": "m" * (12 + i),
             "generator_1": "base", "generator_2": "m", "preference": 1.0 + (i % 2)} for i in range(8)]

    def summary(annotator: str):
        path = tmp_path / f"{annotator}.json"
        path.write_text(json.dumps([{**r, "annotator": annotator} for r in rows]))
        b = load_annotations(path)
        return AlpacaEval().summarize(b.judgments, b.answers, lc=False)["m"].metrics["win_rate"]

    leaderboard = summary(DEFAULT_ANNOTATOR)
    assert leaderboard.meta["annotator"] == DEFAULT_ANNOTATOR and "comparable" not in leaderboard.meta
    other = summary(TEXT_ANNOTATOR)
    assert other.meta["annotator"] == TEXT_ANNOTATOR and other.meta["comparable"] is False
    unknown = summary("my_own_annotator")  # named, but lioneval cannot tell how it compares
    assert unknown.meta["annotator"] == "my_own_annotator" and "comparable" not in unknown.meta


def test_the_builtin_prompt_is_not_comparable(store):
    _setup(store, n=4)
    with ScriptedServer(judge_reply) as server:
        judge = make_judge(_spec(server, templates={"alpaca-eval": "builtin"}))
        run = judge_stored(store, judge, "alpaca-eval", models=["m"], baseline="base")
    assert run.judged == 4
    s = AlpacaEval().summarize(store.judgments(), store.answers(), lc=False)["m"]
    assert s.metrics["win_rate"].meta["comparable"] is False
    assert "built-in prompt" in s.metrics["win_rate"].meta["note"]


# --------------------------------------------------------------------------------------------------------------------
# The pipeline: a clean stop, stored as an incomplete run


def test_run_with_a_judge_without_logprobs_is_stored_incomplete(tmp_path):
    from lioneval.errors import IncompleteError
    from lioneval.pipeline import RunConfig, run
    from lioneval.testing.scripted import ScriptedBackend
    from lioneval.types import RunSpec

    eval_set = tmp_path / "model_outputs.json"
    eval_set.write_text(json.dumps([{"instruction": f"Task {i}: explain item {i}", "output": f"baseline answer {i}",
                                     "generator": "base", "dataset": "lioneval-test"} for i in range(N)]))
    with ScriptedServer(judge_reply, faults=never_logprobs) as server, RunStore(tmp_path / "s.db") as st:
        cfg = RunConfig(bench=("alpaca-eval",), judge=f"openai-compatible:judge@{server.base_url}",
                        data={"alpaca-eval": str(eval_set)})
        result = run(cfg, st, backend=ScriptedBackend("echo"), spec=RunSpec(model="m"))
        assert _chat(server) == LOGPROB_PROBE
        assert not result.complete
        (rep,) = result.reports
        assert rep.counts["unanswered"] == N and rep.counts["answers"] == N
        assert any("returned no logprobs" in why for why in rep.incomplete)
        assert st.run_status(result.run)[0] == "incomplete"
        assert len(st.answers(benchmark="alpaca-eval", model="m")) == N  # the generated answers are kept
        with pytest.raises(IncompleteError) as info:
            result.raise_if_incomplete()
        assert info.value.exit_code == 3
