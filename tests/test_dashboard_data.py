"""The dashboard's pure functions: store -> DataFrames, checked against hand counts and reference implementations."""

from __future__ import annotations

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
from lioneval.types import Answer, CheckResult, Estimate, Game, Judgment, Question, Report, RunSpec

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


def test_training_frame_places_reports_and_marks_decisions(tmp_path):
    path = tmp_path / "t.db"
    with RunStore(path) as st:
        keys = {}
        for stage, step, settings in [("sft", 100, {}), ("sft", 200, {}), ("dpo", 100, {"early_stop_step": 200}),
                                      ("dpo", 200, {"early_stop_step": 200}), ("dpo", 300, {"promoted": True})]:
            spec = RunSpec(model=f"{stage}-{step}", stage=stage, step=step, settings=settings)
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
            CheckResult(name="promotion", scope="run", run=keys["sft-200"], status="pass", meta={"promoted": True}),
            CheckResult(name="promotion", scope="run", run=keys["sft-100"], status="pass", meta={"promoted": False}),
            CheckResult(name="constant-answers", scope="run", run=keys["dpo-100"], status="flag", model="dpo-100"),
        ])
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
    # promoting the stage again replaces the earlier decision
    with RunStore(path) as st:
        st.put_checks([CheckResult(name="promotion", scope="run", run=keys["sft-100"], status="pass",
                                   meta={"promoted": True, "stage": "sft", "reasons": ["first"]})])
        st.put_checks([CheckResult(name="promotion", scope="run", run=keys["sft-200"], status="pass",
                                   meta={"promoted": True, "stage": "sft", "reasons": ["second"]})])
    again = data.training_frame(path)
    again = again[again["metric"] == "overall"].set_index("model")
    assert not again.loc["sft-100", "promoted"] and again.loc["sft-200", "promoted"]


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
    assert runs["flagged_checks"] == "duplicates, injection" and runs["details"] == "all the same"
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
