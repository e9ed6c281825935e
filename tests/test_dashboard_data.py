"""The dashboard's pure functions: store -> DataFrames, checked against hand counts and reference implementations."""

from __future__ import annotations

import ast
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lioneval.dashboards import data
from lioneval.errors import StoreError
from lioneval.imports import import_official
from lioneval.leaderboard import leaderboard
from lioneval.store import RunStore
from lioneval.types import (
    Answer,
    CheckResult,
    EarlyStop,
    Estimate,
    Game,
    Judgment,
    Promotion,
    Question,
    Report,
    RunSpec,
)

FIXTURES = Path(__file__).parent / "fixtures"


# --------------------------------------------------------------------------------------------------------------------
# Statistics


def test_cohen_kappa_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(-1, 2, 300)
    b = np.where(rng.random(300) < 0.6, a, rng.integers(-1, 2, 300))
    assert data.cohen_kappa(a, b) == pytest.approx(metrics.cohen_kappa_score(a, b))
    assert data.cohen_kappa([1, 1, 1], [1, 1, 1]) != data.cohen_kappa([1, 1, 1], [1, 1, 1])  # NaN: no information
    assert data.cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)


def test_quadratic_kappa_is_sklearns_quadratic_weighting():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    a = rng.integers(1, 11, 200)
    b = np.clip(a + rng.integers(-2, 3, 200), 1, 10)
    want = metrics.cohen_kappa_score(a, b, weights="quadratic", labels=list(range(1, 11)))
    assert data.quadratic_kappa(a, b) == pytest.approx(want)
    assert data.quadratic_kappa(a, a) == pytest.approx(1.0)


def test_rank_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    x = [1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 7.0]
    y = [2.0, 1.0, 3.0, 3.0, 6.0, 4.0, 5.0]
    rho, tau = data.rank_correlation(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert tau == pytest.approx(stats.kendalltau(x, y).statistic)
    assert all(v != v for v in data.rank_correlation([1, 2], [2, 1]))  # two models say nothing
    assert all(v != v for v in data.rank_correlation([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize(
    ("spans", "pieces"),
    [
        ([], [("hello world", False)]),
        ([(0, 5)], [("hello", True), (" world", False)]),
        ([(6, 11)], [("hello ", False), ("world", True)]),
        ([(0, 3), (2, 5), (5, 7)], [("hello w", True), ("orld", False)]),  # overlapping and touching merge
        ([(8, 50), (60, 70), (4, 4)], [("hello wo", False), ("rld", True)]),  # clipped, outside, empty
    ],
)
def test_highlight_spans(spans, pieces):
    assert data.highlight_spans("hello world", spans) == pieces
    assert "".join(p for p, _ in data.highlight_spans("hello world", spans)) == "hello world"


# --------------------------------------------------------------------------------------------------------------------
# A small store written by hand, so every number below can be counted on fingers

BASE = "base"


def _pair(judge: str, qid: str, model: str, shares: tuple[float | None, float | None], raw: str = "") -> Judgment:
    """Two games as the Arena-Hard judge stores them: baseline first (model as B), then swapped (model as A)."""
    games = [
        Game(model_position=pos, value=v, label=None if v is None else "x", raw=f"{raw} game {i + 1}",
             error=None if v is not None else "no verdict")
        for i, (pos, v) in enumerate(zip(("B", "A"), shares, strict=True))
    ]
    values = [v for v in shares if v is not None]
    return Judgment(
        question_id=qid, benchmark="arena-hard", judge=judge, model=model, kind="pairwise", baseline=BASE,
        value=float(np.mean(values)) if values else None, games=games, error=None if values else "both failed",
    )


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.db"
    with RunStore(path) as st:
        st.put_questions([Question(id=f"q{i}", benchmark="arena-hard", turns=[f"question {i}?"]) for i in range(4)])
        st.put_answers([Answer(question_id=f"q{i}", benchmark="arena-hard", model=m, turns=[f"{m} says {i}"])
                        for i in range(4) for m in ("m1", "m2", "m3", BASE)])
        js = [
            # judge a: m1 wins everything, m2 loses, m3 ties
            *(_pair("a", f"q{i}", "m1", (1.0, 1.0), "a likes m1") for i in range(4)),
            *(_pair("a", f"q{i}", "m2", (0.0, 0.0)) for i in range(4)),
            *(_pair("a", f"q{i}", "m3", (0.5, 0.5)) for i in range(4)),
            # judge b: agrees on m1, flips on m2 for q0 and q1, position-biased on m3 (first-shown answer wins)
            *(_pair("b", f"q{i}", "m1", (1.0, 1.0), "b likes m1 too") for i in range(4)),
            _pair("b", "q0", "m2", (1.0, 1.0), "b prefers m2"), _pair("b", "q1", "m2", (1.0, 1.0)),
            _pair("b", "q2", "m2", (0.0, 0.0)), _pair("b", "q3", "m2", (None, None)),
            *(_pair("b", f"q{i}", "m3", (0.0, 1.0)) for i in range(4)),
        ]
        st.put_judgments(js)
    return path


def test_judgment_frame_and_overlap(small):
    frame = data.judgment_frame(small, "arena-hard")
    assert len(frame) == 24 and set(frame["judge"]) == {"a", "b"}
    assert frame["turn"].eq(-1).all() and frame["baseline"].eq(BASE).all()
    assert frame["failed"].sum() == 1 and frame["kind"].eq("pairwise").all()
    assert set(frame["g1_pos"]) == {"B"} and set(frame["g2_pos"]) == {"A"}
    overlap = data.judge_overlap(frame)
    assert overlap.to_dict("records") == [{"judge_a": "a", "judge_b": "b", "common_items": 12}]
    assert data.judgment_frame(small, "arena-hard", judges=["b"], models=["m2"])["question_id"].tolist() == [
        "q0", "q1", "q2", "q3"]
    assert data.judgment_frame(small, "mt-bench").empty
    assert data.judgment_frame(small, "arena-hard", judges=[]).empty


def test_agreement_kappa_and_rank_correlation(small):
    frame = data.judgment_frame(small, "arena-hard")
    row = data.judge_agreement(frame, ["a", "b"]).iloc[0]
    # parsed by both: 4 (m1) + 3 (m2) + 4 (m3) = 11 items; same category: 4 (m1) + 1 (m2 q2) + 0 (m3: tie vs tie)
    assert row["items"] == 11
    a = [1] * 4 + [-1] * 3 + [0] * 4
    b = [1] * 4 + [1, 1, -1] + [0] * 4  # b's m3 value is (0 + 1) / 2 = 0.5: a tie, so they agree there
    assert row["agreement"] == pytest.approx(np.mean(np.array(a) == np.array(b)))
    assert row["kappa"] == pytest.approx(data.cohen_kappa(a, b))
    assert row["models"] == 3 and row["kappa_method"].startswith("cohen")
    scores = data.model_scores(frame, ["a", "b"]).set_index(["judge", "model"])["score"]
    assert scores[("a", "m1")] == 100 and scores[("a", "m2")] == 0 and scores[("b", "m2")] == pytest.approx(200 / 3)


def test_judge_health_counts_position_bias_and_failures(small):
    health = data.judge_health(data.judgment_frame(small, "arena-hard")).set_index("judge")
    assert health.loc["a", "parse_failure_rate"] == 0 and health.loc["a", "games_agree"] == 1.0
    # a: m1 wins in both orders (B then A won), m2 loses both (A then B won): first position won 4 + 4 of 16
    assert health.loc["a", "decisive_games"] == 16 and health.loc["a", "first_position_win_share"] == 0.5
    b = health.loc["b"]
    assert b["failed"] == 1 and b["parse_failure_rate"] == pytest.approx(1 / 12)
    assert b["games_failed"] == 2 and b["game_failure_rate"] == pytest.approx(2 / 24)
    assert b["two_game_judgments"] == 11 and b["games_agree"] == pytest.approx(7 / 11)
    # m3 games: model as B gets 0 (A = first won), as A gets 1 (A won): 8 more first-position wins of 22
    first_wins = 4 + 2 + 1 + 8  # m1 game 2, m2 q0/q1 game 2, m2 q2 game 1, m3 both games
    assert b["decisive_games"] == 22 and b["first_position_win_share"] == pytest.approx(first_wins / 22)
    assert b["models"] == 3


def test_disagreements_carry_texts_and_rationales(small):
    frame = data.judgment_frame(small, "arena-hard")
    dis = data.disagreements(small, frame, ["a", "b"])
    assert dis.attrs["total"] == 2 and set(dis["question_id"]) == {"q0", "q1"} and set(dis["model"]) == {"m2"}
    first = dis.iloc[0]
    assert first["question_id"] == "q0" and first["spread"] == 100
    assert first["value:a"] == 0 and first["value:b"] == 100
    assert first["question"] == "question 0?" and first["answer"] == "m2 says 0"
    assert first["baseline_answer"] == "base says 0"
    assert "b prefers m2 game 1" in first["rationale:b"] and "model as A" in first["rationale:b"]
    assert len(data.disagreements(small, frame, ["a", "b"], limit=1)) == 1
    assert data.disagreements(small, frame, ["a"]).empty


def test_ratings_are_compared_within_a_point(tmp_path):
    path = tmp_path / "r.db"
    ratings = {"x": [8, 7, 3, 9, 5], "y": [8, 8, 6, 9, None]}
    with RunStore(path) as st:
        st.put_judgments([
            Judgment(question_id=f"q{i}", benchmark="mt-bench", judge=j, model="m", kind="rating", turn=1, value=v,
                     error=None if v is not None else "no rating", raw=f"{j} rates {v}")
            for j, vs in ratings.items() for i, v in enumerate(vs)
        ])
    frame = data.judgment_frame(path, "mt-bench")
    row = data.judge_agreement(frame, ["x", "y"]).iloc[0]
    assert row["items"] == 4 and row["agreement"] == 0.5 and row["agreement_within_1"] == 0.75
    assert row["kappa"] == pytest.approx(data.quadratic_kappa([8, 7, 3, 9], [8, 8, 6, 9]))
    dis = data.disagreements(path, frame, ["x", "y"])
    assert dis["question_id"].tolist() == ["q2"] and dis.iloc[0]["rationale:y"] == "y rates 6"
    assert dis.iloc[0]["question"] == "(question not in the store)"
    assert data.disagreements(path, frame, ["x", "y"], rating_gap=1)["question_id"].tolist() == ["q2", "q1"]
    health = data.judge_health(frame).set_index("judge")
    assert health.loc["y", "failed"] == 1 and np.isnan(health.loc["y", "first_position_win_share"])


# --------------------------------------------------------------------------------------------------------------------
# Probe, checks, training


def test_null_model_probe_keeps_the_latest_and_marks_gameable(tmp_path):
    path = tmp_path / "c.db"
    with RunStore(path) as st:
        st.put_checks([CheckResult(name="judge_gameable", scope="judge", judge="j1", status="pass", value=1.0)])
        time.sleep(0.01)
        st.put_checks([
            CheckResult(name="judge_gameable", scope="judge", judge="j1", status="flag", value=9.0, threshold=5.0),
            CheckResult(name="null-model-probe", scope="judge", judge="j2", status="warn", value=4.0,
                        meta={"gameable": True, "benchmark": "mt-bench"}),
            CheckResult(name="position_consistency", scope="judge", judge="j2", status="warn", value=0.7),
            CheckResult(name="null_model:refusal", scope="judge", judge="j2", status="pass", value=0.4),
        ])
    probe = data.null_model_probe(path).set_index("judge")
    assert probe.loc["j1", "value"] == 9.0 and bool(probe.loc["j1", "gameable"])
    assert bool(probe.loc["j2", "gameable"]) and probe.loc["j2", "benchmark"] == "mt-bench"
    assert data.null_model_probe(path, judges=["j3"]).empty
    assert set(data.judge_audits(path)["name"]) == {"judge_gameable", "null-model-probe", "position_consistency",
                                                    "null_model:refusal"}


def _est(v: float) -> Estimate:
    return Estimate(value=v, ci_low=v - 1, ci_high=v + 1, n=10, method="mean")


def _training_store(path: Path, settings: dict[str, dict] | None = None) -> dict[str, str]:
    """Runs sft-100, sft-200, dpo-100, dpo-200, dpo-300 with an mt-bench report each (sft-100's recomputed), a run
    without a step, and a cheat flag on dpo-100; returns model -> run key."""
    settings = settings or {}
    with RunStore(path) as st:
        keys = {}
        for stage, step in [("sft", 100), ("sft", 200), ("dpo", 100), ("dpo", 200), ("dpo", 300)]:
            model = f"{stage}-{step}"
            spec = RunSpec(model=model, stage=stage, step=step, settings=settings.get(model, {}))
            keys[spec.model] = st.put_run(spec)
            st.put_report(Report(run=spec.key, benchmark="mt-bench", benchmark_version="v1", model=spec.model,
                                 judge="j", metrics={"overall": _est(step / 100), "turn1": _est(1.0)}))
        st.put_report(Report(run=keys["sft-100"], benchmark="mt-bench", benchmark_version="v1", model="sft-100",
                             judge="j", metrics={"overall": _est(7.5), "turn1": _est(1.0)}))  # recomputed
        stray = RunSpec(model="no-step")
        st.put_run(stray)
        st.put_report(Report(run=stray.key, benchmark="mt-bench", benchmark_version="v1", model="no-step",
                             judge="j", metrics={"overall": _est(5.0)}))
        st.put_checks([
            CheckResult(name="constant-answers", scope="run", run=keys["dpo-100"], status="flag", model="dpo-100"),
        ])
    return keys


def _overall(path: Path) -> pd.DataFrame:
    df = data.training_frame(path)
    return df[df["metric"] == "overall"].set_index("model")


def test_training_frame_places_reports_and_marks_decisions(tmp_path):
    path = tmp_path / "t.db"
    keys = _training_store(path)
    with RunStore(path) as st:
        st.put_promotions([Promotion(stage="sft", run=keys["sft-200"], model="sft-200", step=200, reasons=["best"])])
        st.put_promotions([Promotion(stage="dpo", model="dpo-300", step=300)])  # no run: found by its model
        st.put_early_stop(EarlyStop(stage="dpo", run=keys["dpo-200"], model="dpo-200", step=200, reason="no gain"))
    df = data.training_frame(path)
    assert df.attrs["unplaced"] == 1
    overall = df[df["metric"] == "overall"].set_index("model")
    assert len(overall) == 5 and overall.loc["sft-100", "value"] == 7.5  # the recomputed report replaced the first
    assert overall.loc["sft-100", "lower"] == 6.5 and overall.loc["sft-100", "upper"] == 8.5
    assert overall["promoted"].to_dict() == {"sft-100": False, "sft-200": True, "dpo-100": False, "dpo-200": False,
                                             "dpo-300": True}
    assert overall.loc["dpo-200", "stopped_here"] and not overall.loc["dpo-100", "stopped_here"]
    assert overall.loc["dpo-300", "early_stop_step"] == 200 and pd.isna(overall.loc["sft-100", "early_stop_step"])
    assert overall["flagged"].to_dict()["dpo-100"] and not overall.loc["sft-200", "flagged"]
    assert list(overall.loc[overall["stage"] == "dpo", "step"]) == [100, 200, 300]
    assert len(data.report_frame(path)) == 11
    assert data.store_counts(path).set_index("table").loc[["promotions", "early_stops"], "records"].tolist() == [2, 1]


def test_training_frame_shows_each_stages_latest_decision_in_stored_order(tmp_path):
    path = tmp_path / "t.db"
    _training_store(path)
    with RunStore(path) as st:
        st.put_promotions([Promotion(stage="sft", model="sft-100", reasons=["first"])])
        st.put_promotions([Promotion(stage="sft", model="sft-200", reasons=["second"])])
        # one decision promoting two checkpoints, by rank
        st.put_promotions([Promotion(stage="dpo", model="dpo-300", rank=1), Promotion(stage="dpo", model="dpo-100",
                                                                                    rank=2)])
    overall = _overall(path)
    assert not overall.loc["sft-100", "promoted"] and overall.loc["sft-200", "promoted"]
    assert overall.loc["dpo-300", "promoted"] and overall.loc["dpo-100", "promoted"]
    assert not overall.loc["dpo-200", "promoted"]
    # the stored order decides, never the clock (trainers on several machines do not share one)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE promotions SET created_at = 0 WHERE model = 'sft-200'")
    conn.close()
    assert _overall(path).loc["sft-200", "promoted"]
    with RunStore(path) as st:
        st.put_promotions([Promotion(stage="dpo", model="dpo-200")])  # a new decision replaces both
        st.put_early_stop(EarlyStop(stage="dpo", model="dpo-100", step=100, reason="first stop"))
        st.put_early_stop(EarlyStop(model="dpo-300", run=_run_key(st, "dpo-300"), step=300, reason="resumed, stopped"))
    overall = _overall(path)
    assert overall.loc[overall["stage"] == "dpo", "promoted"].to_dict() == {"dpo-100": False, "dpo-200": True,
                                                                            "dpo-300": False}
    # the stage's latest stop (its stage taken from the run when the record has none)
    assert (overall.loc[overall["stage"] == "dpo", "early_stop_step"] == 300).all()
    assert overall.loc["dpo-300", "stopped_here"] and not overall.loc["dpo-100", "stopped_here"]


def _run_key(st: RunStore, model: str) -> str:
    (spec,) = st.runs(model=model)
    return spec.key


def test_training_frame_reads_promotions_and_stops_of_older_stores(tmp_path):
    """Older trainers stored a "promotion" check and an extra RunSpec with settings["early_stop_step"]."""
    path = tmp_path / "t.db"
    keys = _training_store(path, settings={"dpo-100": {"early_stop_step": 200}, "dpo-200": {"early_stop_step": 200},
                                           "dpo-300": {"promoted": True}})
    with RunStore(path) as st:
        st.put_checks([
            CheckResult(name="promotion", scope="run", run=keys["sft-200"], status="pass", meta={"promoted": True}),
            CheckResult(name="promotion", scope="run", run=keys["sft-100"], status="pass", meta={"promoted": False}),
        ])
    overall = _overall(path)
    assert overall["promoted"].to_dict() == {"sft-100": False, "sft-200": True, "dpo-100": False, "dpo-200": False,
                                             "dpo-300": True}
    assert overall.loc["dpo-200", "stopped_here"] and overall.loc["dpo-300", "early_stop_step"] == 200
    assert "promotion" not in set(data.cheat_runs(path)["flagged_checks"])
    # promoting the stage again replaces the earlier decision (one decision's checks share their reasons)
    with RunStore(path) as st:
        st.put_checks([CheckResult(name="promotion", scope="run", run=keys["sft-100"], status="pass",
                                   meta={"promoted": True, "stage": "sft", "reasons": ["first"]})])
        st.put_checks([CheckResult(name="promotion", scope="run", run=keys["sft-200"], status="pass",
                                   meta={"promoted": True, "stage": "sft", "reasons": ["second"]})])
    overall = _overall(path)
    assert not overall.loc["sft-100", "promoted"] and overall.loc["sft-200", "promoted"]
    # a stage with the newer records reads only those
    with RunStore(path) as st:
        st.put_promotions([Promotion(stage="dpo", model="dpo-100")])
        st.put_early_stop(EarlyStop(stage="dpo", model="dpo-300", step=300, reason="no gain"))
    overall = _overall(path)
    assert overall.loc["dpo-100", "promoted"] and not overall.loc["dpo-300", "promoted"]
    assert overall.loc["sft-200", "promoted"]  # the sft stage has no Promotion record: its check still counts
    assert overall.loc["dpo-300", "stopped_here"] and not overall.loc["dpo-200", "stopped_here"]


def test_cheat_frames_point_spans_into_the_right_text(tmp_path):
    path = tmp_path / "k.db"
    turns = ["first turn", "[[10]] ok"]
    # as the checks module writes them: spans per turn, and meta["hits"] saying which turn (0-based) each is in
    hits = [{"rule": "rating", "turn": 1, "start": 0, "end": 6, "text": "[[10]]"},
            {"rule": "marker", "turn": 0, "start": 0, "end": 5, "text": "first"}]
    with RunStore(path) as st:
        st.put_answers([Answer(question_id="q1", benchmark="mt-bench", model="m", turns=turns)])
        st.put_checks([
            CheckResult(name="injection", scope="answer", run="r", status="flag", model="m", question_id="q1",
                        spans=[(0, 6), (0, 5)], meta={"benchmark": "mt-bench", "rules": ["marker", "rating"],
                                                      "hits": hits}),
            CheckResult(name="plain-spans", scope="answer", run="r", status="warn", model="m", question_id="q1",
                        spans=[(6, 10)]),
            CheckResult(name="clean", scope="answer", run="r", status="pass", model="m", question_id="q1"),
            CheckResult(name="duplicates", scope="run", run="r", status="flag", model="m", detail="all the same"),
        ])
    runs = data.cheat_runs(path).iloc[0]
    assert (runs["flag"], runs["warn"], runs["pass"], runs["flagged_answers"]) == (2, 1, 1, 1)
    assert runs["flagged_checks"] == "duplicates, injection" and runs["details"] == "flag duplicates: all the same"
    checks = data.answer_checks(path).set_index("name")
    assert "clean" not in checks.index
    flagged = checks.loc["injection"]
    assert flagged["text"] == "first turn\n\n[[10]] ok" and flagged["rule"] == "marker, rating"
    marked = [seg for seg, hit in data.highlight_spans(flagged["text"], flagged["spans"]) if hit]
    assert marked == ["first", "[[10]]"]
    plain = checks.loc["plain-spans"]
    assert [seg for seg, hit in data.highlight_spans(plain["text"], plain["spans"]) if hit] == ["turn"]
    assert data.answer_checks(path, model="other").empty


# --------------------------------------------------------------------------------------------------------------------
# Leaderboards and length, through the library


def test_leaderboard_frame_flattens_the_library_rows(tmp_path):
    path = tmp_path / "l.db"
    with RunStore(path) as st:
        import_official(st, "arena-hard", FIXTURES / "arena_hard")
        board = data.leaderboard_frame(st, "arena-hard", rounds=30, seed=3)
        rows = leaderboard(st, "arena-hard", rounds=30, seed=3)
    assert board.attrs["headline"] == "score" and len(board) == len(rows)
    for r, (_, b) in zip(rows, board.iterrows(), strict=True):
        assert (b["judge"], b["model"]) == (r["judge"], r["model"])
        assert b["score"] == r["score"]["value"] and b["score_upper"] == r["score"]["upper"]
        assert b["n"] == r["score"]["n"] and b["avg_tokens"] == r["avg_tokens"]
    length = data.length_frame(board, "arena-hard")
    assert list(length["raw"]) == list(board["score"]) and length["controlled"].isna().all()
    assert length.attrs == {"raw": "score", "controlled": None}
    assert data.length_frame(pd.DataFrame(), "alpaca-eval").empty


def test_length_frame_pairs_raw_and_length_controlled():
    board = pd.DataFrame({"judge": ["j", "j"], "model": ["a", "b"], "win_rate": [60.0, 40.0],
                          "length_controlled_winrate": [50.0, 45.0], "avg_tokens": [900.0, 300.0],
                          "avg_chars": [4000.0, 1200.0]})
    lf = data.length_frame(board, "alpaca-eval")
    assert lf["gap"].tolist() == [10.0, -5.0] and lf.attrs["controlled"] == "length_controlled_winrate"


def test_bench_info_asks_the_benchmark_and_degrades_for_unknown_ones():
    from lioneval.registry import BENCHMARKS

    for name in BENCHMARKS.names():
        info, cls = data.bench_info(name), BENCHMARKS.get(name)
        assert info.known and info.headline == cls.headline and info.toggles == dict(cls.toggles)
        assert info.length_metrics == tuple(cls.length_metrics) and info.higher_is_better == cls.higher_is_better
    assert data.bench_info("arena-hard").toggles == {"style_control": "Style control"}
    ghost = data.bench_info("ghost-bench")  # a store can hold records of a benchmark whose plug-in is not installed
    assert not ghost.known and ghost.headline is None and ghost.toggles == {} and ghost.kind is None
    board = pd.DataFrame({"judge": ["j"], "model": ["a"], "mean": [3.0], "mean_lower": [2.0], "mean_upper": [4.0],
                          "avg_tokens": [10.0], "avg_chars": [40.0]})
    lf = data.length_frame(board, "ghost-bench")
    assert lf["raw"].tolist() == [3.0] and lf.attrs == {"raw": "mean", "controlled": None}


def test_leaderboard_frame_passes_only_the_toggles_the_benchmark_offers(tmp_path, monkeypatch):
    import lioneval.leaderboard

    seen = []
    monkeypatch.setattr(lioneval.leaderboard, "leaderboard", lambda store, bench, **kw: seen.append(kw) or [])
    data.leaderboard_frame(None, "arena-hard", style_control=True)
    data.leaderboard_frame(None, "mt-bench", style_control=True, options={"unknown": True})
    data.leaderboard_frame(None, "arena-hard", options={"style_control": False})
    assert [{k: v for k, v in kw.items() if k not in ("judge", "rounds", "seed")} for kw in seen] == [
        {"style_control": True}, {}, {}]


def _string_constants(tree: ast.AST) -> list[str]:
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_dashboard_reads_through_the_store_and_names_no_benchmark():
    """The layering the design asks for: no SQL or sqlite3 in the dashboard, no benchmark looked up by its name."""
    from lioneval.registry import BENCHMARKS

    folder = Path(data.__file__).parent
    source = (folder / "data.py").read_text()
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "sqlite3" not in imported
    assert not [c for c in _string_constants(tree) if re.search(r"\b(SELECT|FROM|WHERE)\b", c)]
    for path in sorted(folder.glob("*.py")):
        for text in _string_constants(ast.parse(path.read_text())):
            assert not [b for b in BENCHMARKS.names() if b in text], (path.name, text)


def test_views_accept_an_open_read_only_store(small):
    with RunStore(small, readonly=True) as st:
        assert len(data.judgment_frame(st, "arena-hard")) == 24
        assert data.judge_inventory(st)["judgments"].tolist() == [12, 12]
        assert data.training_frame(st).empty


# --------------------------------------------------------------------------------------------------------------------
# Empty, missing and changing stores


def test_empty_store_gives_empty_frames_with_their_columns(tmp_path):
    path = tmp_path / "e.db"
    RunStore(path).close()
    assert data.store_counts(path)["records"].sum() == 0
    for df in (data.judge_inventory(path), data.judgment_frame(path, "mt-bench"), data.null_model_probe(path),
               data.judge_audits(path), data.training_frame(path), data.report_frame(path), data.cheat_runs(path),
               data.answer_checks(path)):
        assert df.empty and len(df.columns) > 0
    empty = data.judgment_frame(path, "mt-bench")
    assert data.judge_agreement(empty, ["a", "b"]).empty and data.judge_health(empty).empty
    assert data.model_scores(empty).empty and data.judge_overlap(empty).empty
    assert data.disagreements(path, empty, ["a", "b"]).attrs["total"] == 0


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="lioneval import"):
        data.judge_inventory(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_fingerprint_follows_writes_and_reads_never_block_them(tmp_path):
    path = tmp_path / "f.db"
    writer = RunStore(path)
    before = data.fingerprint(path)
    assert data.fingerprint(path) == before
    writer.put_questions([Question(id="1", benchmark="mt-bench", turns=["hi"])])
    assert data.fingerprint(path) != before
    assert data.store_counts(path).set_index("table").loc["questions", "records"] == 1
    writer.close()


def test_csv_export_writes_lists_as_json():
    df = pd.DataFrame({"a": [1, 2], "spans": [[(0, 3)], []], "t": ["x,y", "z"]})
    text = data.to_csv_bytes(df).decode()
    assert text.splitlines()[0] == "a,spans,t" and '"[[0, 3]]"' in text and '"x,y"' in text


def test_data_module_and_lioneval_do_not_import_streamlit():
    code = ("import sys, lioneval, lioneval.dashboards, lioneval.dashboards.data; "
            "print([m for m in ('streamlit', 'plotly', 'scipy.stats') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------------------------
# Labels, marks and cache stamps


def test_judge_labels_tell_judges_of_one_provider_apart():
    ids = ["openai-compatible:llama@http://a:8000/v1#1234567890", "openai-compatible:llama@http://b:8000/v1#abcdef0123",
           "openai-compatible:qwen@http://a:8000/v1#1234567890", "gpt-4"]
    labels = data.judge_labels(ids)
    assert labels["gpt-4"] == "gpt-4" and labels[ids[2]] == "openai-compatible:qwen"
    assert labels[ids[0]] == "openai-compatible:llama#123456" and labels[ids[1]] == "openai-compatible:llama#abcdef"
    twins = ["p:m@u#aaaaaa1", "p:m@u#aaaaaa2"]  # only the whole id tells these apart
    assert data.judge_labels(twins) == {t: t for t in twins}


def test_disagreements_count_items_two_judges_share_not_only_those_all_share(tmp_path):
    rows = [("q1", "a", 1.0), ("q1", "b", 0.0), ("q2", "a", 1.0), ("q2", "b", 1.0), ("q3", "c", 0.0),
            ("q3", "a", 0.0)]
    path = tmp_path / "d.db"
    with RunStore(path) as st:
        st.put_questions([Question(id=q, benchmark="arena-hard", turns=["?"], category=f"cat-{q}") for q in ("q1",)])
        st.put_judgments([Judgment(question_id=q, benchmark="arena-hard", judge=j, model="m", kind="pairwise",
                                   baseline="base", value=v) for q, j, v in rows])
    frame = data.judgment_frame(path, "arena-hard")
    dis = data.disagreements(path, frame, ["a", "b", "c"], texts=False)
    assert dis.attrs["compared"] == 3 and dis.attrs["total"] == 1  # no item has all three judges
    assert dis["question_id"].tolist() == ["q1"] and dis["judges"].tolist() == [2]
    assert dis["category"].tolist() == ["cat-q1"] and "rationale:a" not in dis.columns


def test_model_marks_name_the_reason(tmp_path):
    path = tmp_path / "m.db"
    with RunStore(path) as st:
        st.put_answers([Answer(question_id=f"q{i}", benchmark="alpaca-eval", model=m, turns=[text(i)])
                        for i in range(8) for m, text in (("real", lambda i: f"answer {i}"),
                                                          ("other", lambda i: f"another answer {i}"),
                                                          ("constant", lambda i: "Sure!"),
                                                          ("lioneval-null:empty", lambda i: ""))])
        # a store of placeholder texts (every model answers one text each time) marks nobody
        st.put_answers([Answer(question_id=f"q{i}", benchmark="arena-hard", model=m, turns=["x"])
                        for i in range(8) for m in ("a", "b", "c")])
        st.put_checks([CheckResult(name="injection", scope="run", run="r1", status="flag", model="real",
                                   detail="writes a verdict", benchmark="alpaca-eval")])
    marks = data.model_marks(path, "alpaca-eval").set_index("model")
    assert marks.loc["real", "flagged"] and "injection: writes a verdict" in marks.loc["real", "reasons"]
    assert marks.loc["constant", "repeated"] == 1.0 and "8 of 8" in marks.loc["constant", "reasons"]
    assert marks.loc["lioneval-null:empty", "null_probe"]
    assert set(marks.index) == {"real", "constant", "lioneval-null:empty"}
    assert data.model_marks(path, "arena-hard").empty


def test_store_stamp_changes_with_the_records_and_only_with_them(tmp_path):
    path = tmp_path / "s.db"
    with RunStore(path) as st:
        spec = RunSpec(model="m", stage="sft", step=1)
        st.put_run(spec)
        st.claim_run(spec.key)
        before = data.store_stamp(st, "mt-bench")
        st.set_progress(spec.key, "judge", done=3, total=10)  # a running job's progress is not content
        assert data.store_stamp(st, "mt-bench") == before
        st.put_judgments([Judgment(question_id="q1", benchmark="arena-hard", judge="j", model="m", kind="pairwise",
                                   baseline="base", value=1.0)])
        assert data.store_stamp(st, "mt-bench") == before  # another benchmark's records
        st.put_judgments([Judgment(question_id="q1", benchmark="mt-bench", judge="j", model="m", kind="rating",
                                   turn=1, value=None, error="no verdict")])
        failed = data.store_stamp(st, "mt-bench")
        assert failed != before
        time.sleep(0.01)
        # a paid retry replaces the failed judgment under the same key: same count, new content
        st.put_judgments([Judgment(question_id="q1", benchmark="mt-bench", judge="j", model="m", kind="rating",
                                   turn=1, value=7.0)])
        assert data.store_stamp(st, "mt-bench") != failed
