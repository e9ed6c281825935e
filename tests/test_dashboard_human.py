"""Human labels and judge cost on the judge report card.

The human votes are a fixture written for these tests in FastChat's human-judgment format (tests/fixtures/human),
imported by the CLI; the agreement figures are counted by hand below. Latency and tokens come from a real judge run
over HTTP against the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lioneval.cli import main
from lioneval.dashboards import data
from lioneval.judges.judge import judge_answers, make_judge
from lioneval.judges.spec import parse_spec
from lioneval.store import RunStore
from lioneval.testing.openai_server import ScriptedServer
from lioneval.types import Answer, Judgment, Question

VOTES = Path(__file__).parent / "fixtures" / "human" / "mt_bench_votes.jsonl"
BENCH = "mt-bench"
RATER = "openai:gpt-4#aaaa11"
PAIR = "openai:pair-judge#bbbb22"
# (question, model, turn) -> the rating judge's score; None: the rating failed
RATINGS = {("1", "tiny-a", 1): 8, ("1", "tiny-b", 1): 4, ("1", "tiny-c", 1): 8,
           ("1", "tiny-a", 2): 7, ("1", "tiny-b", 2): 7, ("1", "tiny-c", 2): 3,
           ("2", "tiny-a", 1): 9, ("2", "tiny-b", 1): 5, ("2", "tiny-a", 2): None, ("2", "tiny-b", 2): 6}


def _judgments() -> list[Judgment]:
    out = [Judgment(question_id=q, benchmark=BENCH, judge=RATER, model=m, kind="rating", turn=t,
                    value=None if v is None else float(v), error="no [[rating]]" if v is None else None)
           for (q, m, t), v in RATINGS.items()]
    # a pairwise judge: tiny-b lost to tiny-a on q1 (stored the other way round), tiny-a tied tiny-b on q2
    out += [Judgment(question_id="1", benchmark=BENCH, judge=PAIR, model="tiny-b", baseline="tiny-a",
                     kind="pairwise", turn=1, value=0.0),
            Judgment(question_id="2", benchmark=BENCH, judge=PAIR, model="tiny-a", baseline="tiny-b",
                     kind="pairwise", turn=1, value=0.5)]
    return out


@pytest.fixture
def store(tmp_path, capsys):
    db = tmp_path / "human.db"
    with RunStore(db) as st:
        st.put_judgments(_judgments())
    assert main(["--store", str(db), "import", "fastchat-human", str(VOTES), "--bench", BENCH]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # eight votes read; an unknown winner and a vote with one model are skipped and counted
    assert out["read"] == {"judgments": 8} and out["added"] == {"judgments": 8}
    assert sum(out["skipped"].values()) == 2 and out["annotators"] == 3
    return db


def test_import_keeps_every_annotators_vote_once(store, capsys):
    with RunStore(store, readonly=True) as st:
        votes = st.judgments(benchmark=BENCH, judge="human")
    assert len(votes) == 8 and {j.kind for j in votes} == {"pairwise"}
    first = [j for j in votes if j.question_id == "1" and j.turn == 1 and j.model == "tiny-a"]
    # two annotators voted on the same pair and turn: both votes are kept, with their names and verdicts
    assert sorted((j.meta["annotator"], j.meta["winner"], j.value) for j in first) == [
        ("author_2", "tie", 0.5), ("expert_0", "model_a", 1.0)]
    assert main(["--store", str(store), "import", "fastchat-human", str(VOTES), "--bench", BENCH]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"] == {"judgments": 0}


def test_a_json_list_imports_like_jsonl(tmp_path, capsys):
    records = [json.loads(line) for line in VOTES.read_text().splitlines()]
    listed = tmp_path / "votes.json"
    listed.write_text(json.dumps({"human": records}, indent=1))
    db = tmp_path / "list.db"
    assert main(["--store", str(db), "import", "fastchat-human", str(listed), "--bench", BENCH,
                 "--judge", "human:experts"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"] == {"judgments": 8}
    with RunStore(db, readonly=True) as st:
        assert {j.judge for j in st.judgments(benchmark=BENCH)} == {"human:experts"}


@pytest.mark.parametrize(("args", "says"), [
    (["--bench", "mt-bnech"], "mt-bench"),  # did you mean
    (["--bench", BENCH, "--judge", "gpt-4"], "human"),
])
def test_bad_import_arguments_exit_2_with_the_fix(tmp_path, capsys, args, says):
    assert main(["--store", str(tmp_path / "x.db"), "import", "fastchat-human", str(VOTES), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_file_without_votes_exits_2(tmp_path, capsys):
    bad = tmp_path / "answers.jsonl"
    bad.write_text(json.dumps({"question_id": 1, "model_id": "m", "choices": [{"turns": ["hi"]}]}) + "\n")
    assert main(["--store", str(tmp_path / "x.db"), "import", "fastchat-human", str(bad), "--bench", BENCH]) == 2
    err = capsys.readouterr().err
    assert "no human votes" in err and "Traceback" not in err


def test_agreement_with_humans_counts_each_vote_as_the_mt_bench_paper(store):
    frame = data.judgment_frame(store, BENCH)
    table = data.human_agreement(frame).set_index(["judge", "turn"])
    # Rating judge, vote by vote (judge's implied preference vs the human's):
    #   q1 t1 a-b: a (8>4) vs a; vs tie | q1 t1 c-a: tie (8=8) vs c | q1 t2 a-b: tie vs tie | q1 t2 b-c: b vs c
    #   q2 t1 a-b: a vs a | q2 t1 a-c: no rating of c | q2 t2 b-a: a's rating failed
    rater = table.loc[(RATER, "all")]
    assert rater["votes"] == 6 and rater["items"] == 5
    assert rater["agreement_with_ties"] == pytest.approx(3 / 6)
    assert rater["votes_without_ties"] == 3 and rater["agreement_without_ties"] == pytest.approx(2 / 3)
    assert rater["judge_ties"] == pytest.approx(2 / 6) and rater["human_ties"] == pytest.approx(2 / 6)
    assert table.loc[(RATER, "1"), "agreement_with_ties"] == pytest.approx(2 / 4)
    assert table.loc[(RATER, "1"), "agreement_without_ties"] == pytest.approx(1.0)
    assert table.loc[(RATER, "2"), "votes"] == 2 and table.loc[(RATER, "2"), "agreement_without_ties"] == 0.0
    # Pairwise judge: q1 t1 a beat b (stored as b vs a) against a and tie; q2 t1 tie against a
    pair = table.loc[(PAIR, "all")]
    assert pair["votes"] == 3 and pair["agreement_with_ties"] == pytest.approx(1 / 3)
    assert pair["votes_without_ties"] == 1 and pair["agreement_without_ties"] == pytest.approx(1.0)
    # the bar: annotators against each other, every two votes on one item (only q1 t1 a-b has two: model_a, tie)
    among = table.loc[("human", "all")]
    assert among["items"] == 1 and among["votes"] == 1 and among["agreement_with_ties"] == 0.0
    assert among["votes_without_ties"] == 0 and np.isnan(among["agreement_without_ties"])
    assert among["human_ties"] == pytest.approx(0.5)
    assert ("human", "2") not in table.index  # no item of turn 2 has two votes


def test_report_card_shows_the_human_agreement(store, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LIONEVAL_STORE", str(store))
    at = AppTest.from_file(str(Path(data.__file__).with_name("app.py")), default_timeout=60)
    at.query_params.update(view="Judges", bench=BENCH)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(h.value == "Agreement with human labels" for h in at.subheader)
    shown = next(d.value for d in at.dataframe if "agreement_without_ties" in d.value.columns)
    row = shown[(shown["judge"] == RATER) & (shown["turn"] == "all")].iloc[0]
    assert row["agreement_with_ties"] == pytest.approx(0.5)
    assert row["agreement_without_ties"] == pytest.approx(2 / 3)
    # the votes are not scores: the leaderboard of the benchmark ranks the rating judge's models only
    at = AppTest.from_file(str(Path(data.__file__).with_name("app.py")), default_timeout=60)
    at.query_params.update(view="Leaderboards", bench=BENCH)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    board = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    assert set(board["judge"]) == {RATER}


def _rate(req: dict) -> str:
    return "Solid answer. Rating: [[7]]"


def test_usage_card_reports_latency_tokens_and_cost(tmp_path, monkeypatch):
    db = tmp_path / "usage.db"
    qs = [Question(id=f"q{i}", benchmark=BENCH, turns=[f"Question {i}?"], category="writing") for i in range(6)]
    answers = [Answer(question_id=q.id, benchmark=BENCH, model="m", turns=[f"Answer {q.id}."]) for q in qs]
    with RunStore(db) as st, ScriptedServer(_rate, latency=0.05) as srv:
        st.put_questions(qs)
        st.put_answers(answers)
        judge = make_judge(parse_spec(f"openai-compatible:judge-x@{srv.base_url}", max_retries=1, timeout=10))
        run = judge_answers(judge, BENCH, qs, answers, (), st)
        assert len(run.judgments) == 6
        # an imported judgment records no usage: counted apart, never as zero cost or zero latency
        st.put_judgments([Judgment(question_id="q0", benchmark=BENCH, judge="gpt-4", model="m", kind="rating",
                                   turn=1, value=5.0)])
        stored = [j for j in st.judgments(benchmark=BENCH) if j.judge != "gpt-4"]
    seconds = np.array([j.meta["usage"]["latency_s"] for j in stored])
    assert (seconds >= 0.05).all()  # the server's delay is inside every call's wall time
    prompt = sum(j.meta["usage"]["prompt_tokens"] for j in stored)
    completion = sum(j.meta["usage"]["completion_tokens"] for j in stored)
    prices = data.parse_prices(["judge-x=3/15"])
    usage = data.judge_usage(db, BENCH, prices).set_index("judge")
    jid = stored[0].judge
    assert usage.loc[jid, "with_latency"] == 6
    assert usage.loc[jid, "latency_p50_s"] == pytest.approx(np.quantile(seconds, 0.5))
    assert usage.loc[jid, "latency_p90_s"] == pytest.approx(np.quantile(seconds, 0.9))
    want = (prompt * 3 + completion * 15) / 1e6 * 1000 / 6
    assert usage.loc[jid, "usd_per_1k"] == pytest.approx(want) and want > 0
    assert usage.loc[jid, "price"] == "judge-x: 3/15"
    assert usage.loc["gpt-4", "with_usage"] == 0 and np.isnan(usage.loc["gpt-4", "usd_per_1k"])

    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    price_file = tmp_path / "prices.yaml"
    price_file.write_text("judge-x: {input_per_mtok: 3, output_per_mtok: 15}\n")
    monkeypatch.setenv("LIONEVAL_STORE", str(db))
    monkeypatch.setenv("LIONEVAL_PRICES", str(price_file))
    at = AppTest.from_file(str(Path(data.__file__).with_name("app.py")), default_timeout=60)
    at.query_params.update(view="Judges", bench=BENCH)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    card = next(d.value for d in at.dataframe if "usd_per_1k" in d.value.columns).set_index("judge")
    assert card.loc[jid, "usd_per_1k"] == pytest.approx(want)
    assert card.loc[jid, "latency_p90_s"] == pytest.approx(np.quantile(seconds, 0.9))


@pytest.mark.parametrize("price", ["gpt-4o", "gpt-4o=2.5", "gpt-4o=a/b", "gpt-4o=-1/2"])
def test_a_malformed_price_is_refused_with_the_fix(price, capsys):
    assert main(["dashboard", "--price", price]) == 2
    err = capsys.readouterr().err
    assert "gpt-4o=2.5/10" in err or "IN/OUT" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_agreement_between_annotators_counts_every_two_votes_on_an_item():
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame({
        "judge": "human", "kind": "pairwise", "question_id": rng.integers(0, 30, n).astype(str),
        "model": "m1", "baseline": "m2", "turn": rng.integers(1, 3, n), "value": rng.choice([0.0, 0.5, 1.0], n),
    })
    row = data.human_agreement(frame).set_index(["judge", "turn"]).loc[("human", "all")]
    same = pairs = d_same = d_pairs = 0
    for _, g in frame.groupby(["question_id", "turn"]):
        v = g["value"].tolist()
        for i in range(len(v)):
            for j in range(i + 1, len(v)):
                pairs += 1
                same += v[i] == v[j]
                if v[i] != 0.5 and v[j] != 0.5:
                    d_pairs += 1
                    d_same += v[i] == v[j]
    assert row["votes"] == pairs and row["agreement_with_ties"] == pytest.approx(same / pairs)
    assert row["votes_without_ties"] == d_pairs and row["agreement_without_ties"] == pytest.approx(d_same / d_pairs)
