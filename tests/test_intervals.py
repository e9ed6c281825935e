"""Honest intervals: the minimum sample, no zero-width interval claimed as exact, failures marked, question units for
Arena-Hard, and results that do not depend on the order of the records."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from lioneval.benchmarks.arena_hard import ArenaHard, battles_from_judgments, load_official
from lioneval.benchmarks.mt_bench import MTBench, load_judgments
from lioneval.cli import main
from lioneval.leaderboard import leaderboard
from lioneval.stats.arena import Battles, arena_scores
from lioneval.stats.bootstrap import MAX_FAILED_SHARE, MIN_UNITS, grouped_mean
from lioneval.store import RunStore
from lioneval.types import Game, Judgment

VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "validation"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _ratings(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 11, 2 * n).astype(float), np.repeat(np.arange(n), 2)


# ---------------------------------------------------------------------------------------------------------------
# Small samples and all-equal scores


@pytest.mark.parametrize("n", [2, 3, 5, MIN_UNITS - 1])
def test_no_interval_below_the_minimum_number_of_questions(n):
    vals, groups = _ratings(n)
    est = grouped_mean(vals, groups, rounds=500, seed=0, bounds=(1, 10))
    assert est.ci_low is None and est.ci_high is None
    assert not est.reliable and f"minimum of {MIN_UNITS}" in est.meta["note"]
    assert est.method == "bootstrap-t" and est.rounds == 500 and est.seed == 0 and est.unit == "question"


def test_an_interval_from_the_minimum_on():
    vals, groups = _ratings(MIN_UNITS)
    est = grouped_mean(vals, groups, rounds=500, seed=0, bounds=(1, 10))
    assert est.reliable and est.ci_low < est.value < est.ci_high and 1 <= est.ci_low and est.ci_high <= 10
    assert est.method == "bootstrap-t" and "note" not in est.meta


@pytest.mark.parametrize("value", [1.0, 7.0, 10.0])
def test_all_equal_scores_never_give_a_zero_width_interval(value):
    n = 12
    est = grouped_mean(np.full(2 * n, value), np.repeat(np.arange(n), 2), rounds=300, seed=0, bounds=(1, 10))
    assert est.ci_low is not None and est.ci_high is not None
    assert est.ci_high - est.ci_low > 0 and est.ci_low <= value <= est.ci_high
    assert est.method == "rule-of-three" and "rule of three" in est.meta["note"] and est.se and est.se > 0
    # the stated rule: at most 3/n of the questions may differ, anywhere on the scale
    assert est.ci_low == pytest.approx(value - 3 / n * (value - 1))
    assert est.ci_high == pytest.approx(value + 3 / n * (10 - value))
    # without a known scale there is nothing to widen by: no interval is claimed
    bare = grouped_mean(np.full(2 * n, value), np.repeat(np.arange(n), 2), rounds=300, seed=0)
    assert bare.ci_low is None and not bare.reliable and bare.se is None
    # and below the minimum, even the rule of three is not claimed
    few = grouped_mean(np.full(6, value), np.repeat(np.arange(3), 2), rounds=300, seed=0, bounds=(1, 10))
    assert few.ci_low is None and not few.reliable


def test_mt_bench_all_equal_ratings_are_not_exact():
    js = [Judgment(question_id=str(q), benchmark="mt-bench", judge="j", model="m", kind="rating", turn=t, value=8.0)
          for q in range(20) for t in (1, 2)]
    est = MTBench().summarize(js, rounds=200, seed=0)["m"].metrics["overall"]
    assert est.value == 8.0 and est.ci_high - est.ci_low > 0 and est.meta["bounds"] == [1.0, 10.0]


def _star(n: int, share_game1: np.ndarray, share_game2: np.ndarray, weight1=None, weight2=None) -> Battles:
    """Battles of one model against the baseline: two games per question, ``share`` the model's win share."""
    w1 = np.ones(n, dtype=np.intp) if weight1 is None else weight1
    w2 = np.ones(n, dtype=np.intp) if weight2 is None else weight2
    return Battles(
        models=("base", "m"),
        questions=tuple(f"q{i:03d}" for i in range(n)),
        a=np.zeros(2 * n, dtype=np.intp),
        b=np.ones(2 * n, dtype=np.intp),
        outcome=1.0 - np.column_stack([share_game1, share_game2]).ravel(),
        weight=np.column_stack([w1, w2]).ravel(),
        question=np.repeat(np.arange(n), 2),
        game=np.tile([0, 1], n).astype(np.int8),
    )


@pytest.mark.parametrize("unit", ["battle", "question"])
@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_arena_model_that_won_lost_or_tied_everything_is_not_exact(unit, share):
    n = 20
    bt = _star(n, np.full(n, share), np.full(n, share))
    est = arena_scores(bt, "base", rounds=200, seed=0, unit=unit).scores["m"]
    assert est.value == pytest.approx(100 * share)
    assert est.ci_high - est.ci_low > 0 and est.ci_low <= est.value <= est.ci_high
    assert est.meta["ci"] == "rule-of-three"


def test_arena_minimum_questions():
    n = MIN_UNITS - 1
    rng = np.random.default_rng(0)
    bt = _star(n, rng.choice([0.0, 0.5, 1.0], n), rng.choice([0.0, 0.5, 1.0], n))
    for unit in ("battle", "question"):
        est = arena_scores(bt, "base", rounds=100, seed=0, unit=unit).scores["m"]
        assert est.ci_low is None and not est.reliable and "minimum" in est.meta["note"]


# ---------------------------------------------------------------------------------------------------------------
# Arena-Hard: the question unit keeps both games (and the copies of a strong verdict) together


def test_question_unit_is_wider_when_both_games_agree():
    n = 150
    rng = np.random.default_rng(1)
    share = rng.choice([0.0, 1.0], n, p=[0.7, 0.3])
    strong = rng.choice([1, 3], n, p=[0.6, 0.4]).astype(np.intp)
    bt = _star(n, share, share, strong, strong)  # the verdict duplicated in both games
    by_battle = arena_scores(bt, "base", rounds=1000, seed=0, unit="battle").scores["m"]
    by_question = arena_scores(bt, "base", rounds=1000, seed=0, unit="question").scores["m"]
    assert by_battle.value == by_question.value
    w_battle = by_battle.ci_high - by_battle.ci_low
    w_question = by_question.ci_high - by_question.ci_low
    # two identical games and up to three copies per verdict: the honest interval is much wider
    assert w_question > 1.4 * w_battle
    assert by_question.unit == "question" and by_question.meta["ci"] == "bootstrap-t"
    assert by_battle.unit == "battle" and by_battle.meta["ci"] == "bootstrap-percentile"


def test_question_rounds_move_whole_questions():
    bt = _star(30, np.zeros(30), np.ones(30))  # each question: one loss, one win -> every round at exactly 50%
    res = arena_scores(bt, "base", rounds=200, seed=0, unit="question", interval="percentile")
    np.testing.assert_allclose(res.samples[:, 1], 50.0)
    assert not np.allclose(arena_scores(bt, "base", rounds=200, seed=0, unit="battle").samples[:, 1], 50.0)


def test_report_options_ask_for_question_units():
    assert ArenaHard().report_options([]) == {"unit": "question", "min_rounds": 1000}


# ---------------------------------------------------------------------------------------------------------------
# Failures are part of the result


def _pairwise(q: str, games: list[Game]) -> Judgment:
    values = [g.value for g in games if g.value is not None]
    return Judgment(question_id=q, benchmark="arena-hard", judge="j", model="m", kind="pairwise", baseline="base",
                    value=float(np.mean(values)) if values else None, games=games,
                    error=None if values else "both games failed")


def test_arena_one_failed_game_counts_as_a_failed_judgment():
    ok = [Game(model_position="B", label="A>B", value=0.0), Game(model_position="A", label="A>B", value=1.0)]
    half = [Game(model_position="B", label="B>A", value=1.0), Game(model_position="A", error="no verdict")]
    js = [_pairwise(f"q{i}", ok) for i in range(18)] + [_pairwise("q18", half), _pairwise("q19", ok[:1])]
    s = ArenaHard().summarize(js, rounds=50, seed=0)["m"]
    assert s.counts["failed"] == 1 and s.counts["judgments_partial"] == 2 and s.counts["games_failed"] == 1
    assert s.counts["dropped"] == 1 and s.counts["games_dropped"] == 1 and s.counts["judgments_failed"] == 0
    assert s.metrics["score"].reliable  # 2 of 20 = 10%: at the limit, not above it
    js.append(_pairwise("q20", half))
    s = ArenaHard().summarize(js, rounds=50, seed=0)["m"]
    assert not s.metrics["score"].reliable and "3 of 21" in s.metrics["score"].meta["unreliable"][0]


def test_many_failed_ratings_mark_the_estimate_unreliable(tmp_path, capsys):
    rng = np.random.default_rng(0)
    js = []
    for q in range(80):
        for t in (1, 2):
            failed = rng.random() < 0.76
            js.append(Judgment(question_id=str(q), benchmark="mt-bench", judge="weak", model="m", kind="rating",
                               turn=t, value=None if failed else float(rng.integers(6, 10)),
                               error="no rating" if failed else None, inputs=f"{q}/{t}"))
    s = MTBench().summarize(js, rounds=200, seed=0)["m"]
    failed = s.counts["failed"]
    assert failed / 160 > MAX_FAILED_SHARE and s.counts["dropped"] == 0
    assert all(not e.reliable for e in s.metrics.values())
    assert f"{failed} of 160 judgments failed" in s.metrics["overall"].meta["unreliable"][0]
    # the leaderboard row carries the counts and the flag; the table marks the row and says why
    db = tmp_path / "s.db"
    with RunStore(db) as st:
        st.put_judgments(js)
    with RunStore(db, readonly=True) as st:
        (row,) = leaderboard(st, "mt-bench", rounds=200)
    assert row["failed"] == failed and row["dropped"] == 0 and row["reliable"] is False
    assert row["overall"]["reliable"] is False and row["unreliable"]
    assert main(["--store", str(db), "leaderboard", "--bench", "mt-bench", "--rounds", "200"]) == 0
    out = capsys.readouterr().out
    assert "m !" in out and f"! m: {failed} of 160 judgments failed" in out


def test_the_published_weak_judge_is_flagged(tmp_path):
    path = VALIDATION / "mt_bench" / "weak_judge_parse_failures.jsonl"
    if not path.is_file():
        pytest.skip(f"validation data not found at {path}")
    js = load_judgments(path, judge="weak").judgments
    s = next(iter(MTBench().summarize(js, rounds=200, seed=0).values()))
    assert s.counts["failed"] > 0.7 * s.counts["judgments"]
    assert not s.metrics["overall"].reliable and s.meta["unreliable"]


# ---------------------------------------------------------------------------------------------------------------
# Order independence on the real Arena-Hard verdicts


@pytest.fixture(scope="module")
def arena_bundle(tmp_path_factory):
    data = VALIDATION / "arena_hard" / "judgments_gpt-4-1106-preview.jsonl"
    if not data.is_file():
        pytest.skip(f"validation data not found at {data}")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from speed_arena import write_official
    finally:
        sys.path.remove(str(BENCHMARKS))
    lines = [json.loads(x) for x in data.read_text().splitlines() if x.strip()]
    return load_official(write_official(lines, tmp_path_factory.mktemp("arena")))


def _board(bundle, order: list[int], db: Path, **kw) -> str:
    with RunStore(db) as st:
        st.put_answers(bundle.answers[::-1] if order[0] % 2 else bundle.answers)
        st.put_judgments([bundle.judgments[i] for i in order])
    with RunStore(db, readonly=True) as st:
        return json.dumps(leaderboard(st, "arena-hard", rounds=100, seed=0, **kw))


@pytest.mark.parametrize("options", [{}, {"unit": "question"}, {"unit": "question", "style_control": True}])
def test_arena_leaderboard_does_not_depend_on_record_order(arena_bundle, tmp_path, options):
    n = len(arena_bundle.judgments)
    forward = _board(arena_bundle, list(range(n)), tmp_path / "a.db", **options)
    shuffled = list(range(n))
    random.Random(7).shuffle(shuffled)
    again = _board(arena_bundle, shuffled, tmp_path / "b.db", **options)
    assert forward == again  # byte for byte: points, intervals, counts
    rows = json.loads(forward)
    assert {r["model"] for r in rows} == {"gpt-4-0613", "gpt-3.5-turbo-0125"}
    assert all(r["score"]["lower"] < r["score"]["value"] < r["score"]["upper"] for r in rows)
    assert all(r["reliable"] and r["failed"] == 0 for r in rows)
    # and the battle table itself is the same whatever the order
    a = battles_from_judgments(arena_bundle.judgments, arena_bundle.answers)
    b = battles_from_judgments([arena_bundle.judgments[i] for i in shuffled], arena_bundle.answers[::-1])
    assert a.models == b.models and a.questions == b.questions
    for field in ("a", "b", "outcome", "weight", "question", "game", "style_a", "style_b"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_question_unit_is_wider_on_the_published_verdicts(arena_bundle):
    bt = battles_from_judgments(arena_bundle.judgments, arena_bundle.answers)
    for model in ("gpt-4-0613", "gpt-3.5-turbo-0125"):
        battle = arena_scores(bt, "gpt-4-0314", rounds=1000, seed=0, unit="battle").scores[model]
        question = arena_scores(bt, "gpt-4-0314", rounds=1000, seed=0, unit="question").scores[model]
        ratio = (question.ci_high - question.ci_low) / (battle.ci_high - battle.ci_low)
        assert 1.3 < ratio < 2.0, (model, ratio)
