"""Arena-Hard-Auto v0.1: loading the official layout, battles, Bradley-Terry scores, bootstrap and style control.

The fixture (tests/fixtures/arena_hard) is small enough to score by hand:
- model-x, battles against the baseline: 6 weighted wins, 1 tie, 8 weighted losses -> (6 + 0.5) / 15;
- model-y: 9 wins, 3 ties, 8 losses -> (9 + 1.5) / 20.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lioneval.benchmarks.arena_hard import (
    ArenaHard,
    battles_from_judgments,
    load_official,
    normalize_label,
)
from lioneval.errors import DataError
from lioneval.stats import arena
from lioneval.stats.arena import Battles, arena_scores, resample_indices
from lioneval.types import Game, Judgment

DATA = Path(__file__).parent / "fixtures" / "arena_hard"
BASE = "gpt-4-0314"
X_SHARE, Y_SHARE = 6.5 / 15, 10.5 / 20


@pytest.fixture(scope="module")
def bundle():
    return load_official(DATA)


def _by(bundle, model, qid):
    return next(j for j in bundle.judgments if j.model == model and j.question_id == qid)


# ---------------------------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("A>>B", "A>>B"),
        (" A>B\n", "A>B"),
        ("B<<A", "A>>B"),
        ("B<A", "A>B"),
        ("B=A", "A=B"),
        ("A<B", "B>A"),
        ("A<<B", "B>>A"),
        ("B >> A", "B>>A"),
        ("A>>>B", None),
        ("", None),
        ("A is better", None),
    ],
)
def test_normalize_label(raw, label):
    assert normalize_label(raw) == label


def test_load_counts_every_malformed_line(bundle):
    assert len(bundle.questions) == 7
    assert {q.meta["cluster"] for q in bundle.questions} == {1, 2, 3, 4, 5}
    assert all(q.benchmark == "arena-hard" for q in bundle.questions)
    assert len(bundle.judgments) == 7 + 6
    assert len(bundle.answers) == 7 + 7 + 6
    skipped = bundle.skipped
    assert sum(n for reason, n in skipped.items() if reason.startswith("not valid JSON")) == 2
    assert skipped["judgment without a question_id"] == 1
    assert skipped["judgment without games"] == 1
    assert skipped["judgment with one game (the other is counted as dropped)"] == 1
    assert skipped["unknown verdict label (game counted as failed)"] == 1
    assert skipped["question without a question_id or text turns"] == 1
    assert skipped["answer without choices[0].turns"] == 1
    assert bundle.warnings  # each reason is reported once


def test_games_are_seen_from_the_model_side(bundle):
    q1 = _by(bundle, "model-x", "q1")
    assert q1.judge == "judge-a" and q1.baseline == BASE and q1.kind == "pairwise"
    assert [(g.model_position, g.label, g.value) for g in q1.games] == [("B", "B>>A", 1.0), ("A", "A>B", 1.0)]
    assert q1.games[0].raw == "verdict text B>>A"
    q2 = _by(bundle, "model-x", "q2")
    assert [(g.label, g.value) for g in q2.games] == [("A=B", 0.5), ("A>B", 1.0)]  # " B<A " mirrored
    assert q2.value == 0.75
    q4 = _by(bundle, "model-x", "q4")
    assert q4.games[0].value is None and "no verdict" in q4.games[0].error
    assert (q4.games[1].label, q4.games[1].value) == ("B>>A", 0.0)
    assert q4.value == 0.0
    q5 = _by(bundle, "model-x", "q5")
    assert q5.games[1].value is None and "'A>>>B'" in q5.games[1].error
    q6 = _by(bundle, "model-x", "q6")
    assert len(q6.games) == 1 and q6.value == 1.0
    q7 = _by(bundle, "model-x", "q7")
    assert q7.failed and q7.value is None and "game 1" in q7.error and "game 2" in q7.error


def test_answers_carry_tokens_and_style_totals(bundle):
    ans = {(a.model, a.question_id): a for a in bundle.answers}
    x4 = ans[("model-x", "q4")]
    assert x4.token_counts == [330]
    assert x4.meta["style"] == {"token_len": 330, "header_count": 2, "list_count": 3, "bold_count": 5}
    assert x4.meta["answer_id"] == "model-x-q4"
    y1 = ans[("model-y", "q1")]
    assert y1.token_counts == [100] and "style" not in y1.meta


def test_load_selects_models_and_judges(tmp_path):
    only_x = load_official(DATA, models=["model-x"])
    assert {j.model for j in only_x.judgments} == {"model-x"}
    assert {a.model for a in only_x.answers} == {"model-x", BASE}
    root = tmp_path / "data"
    shutil.copytree(DATA, root)
    (root / "model_judgment" / "judge-b").mkdir()
    with pytest.raises(DataError, match="several judges") as err:
        load_official(root)
    assert "judge=" in str(err.value)
    assert len(load_official(root, judge="judge-a").judgments) == 13
    with pytest.raises(DataError, match="no judgments for judge"):
        load_official(root, judge="judge-c")


def test_questions_need_a_data_folder():
    assert [q.id for q in ArenaHard(DATA).questions()] == [f"q{i}" for i in range(1, 8)]
    with pytest.raises(DataError, match="not bundled"):
        ArenaHard().questions()


# ---------------------------------------------------------------------------------------------------------------
# Battles and scores


def test_battles_follow_the_official_table(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    assert bt.models[0] == BASE and set(bt.models) == {BASE, "model-x", "model-y"}
    assert np.all(bt.a == 0)  # the baseline is side A in both games
    x = bt.b == bt.models.index("model-x")
    assert bt.weight[x].sum() == 15 and len(bt.weight[x]) == 9  # 13 games written, 4 failed
    assert bt.weight[bt.b == bt.models.index("model-y")].sum() == 20
    assert set(bt.game.tolist()) == {0, 1}
    # model-y has no markdown counts: its rows carry NaN, the baseline's side is known
    y = bt.b == bt.models.index("model-y")
    assert np.isnan(bt.style_b[y]).all() and not np.isnan(bt.style_a[y]).any()


def test_point_scores_are_weighted_win_shares(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    res = arena_scores(bt, BASE, rounds=0)
    assert res.scores["model-x"].value == pytest.approx(100 * X_SHARE, abs=1e-12)
    assert res.scores["model-y"].value == pytest.approx(100 * Y_SHARE, abs=1e-12)
    assert res.scores[BASE].value == 50.0
    assert res.ratings[BASE] == 1000.0
    assert res.ratings["model-x"] == pytest.approx(1000 + 400 * np.log10(X_SHARE / (1 - X_SHARE)))
    assert res.battles == {BASE: 35, "model-x": 15, "model-y": 20}


def test_strong_weight_is_configurable(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers, strong_weight=1)
    res = arena_scores(bt, BASE, rounds=0)
    assert res.scores["model-x"].value == pytest.approx(50.0)  # 4 wins, 1 tie, 4 losses


def test_summarize(bundle):
    out = ArenaHard(DATA).summarize(bundle.judgments, bundle.answers, rounds=200, seed=3, unit="battle")
    assert set(out) == {"model-x", "model-y"}
    sx = out["model-x"]
    assert sx.counts == {
        "judgments": 7,
        "failed": 3,  # judgments with a failed game: one failed game is enough
        "dropped": 1,  # judgments with a game missing
        "judgments_failed": 1,
        "judgments_partial": 3,
        "games_failed": 4,
        "games_dropped": 1,
        "battles": 15,
    }
    est = sx.metrics["score"]
    assert est.value == pytest.approx(100 * X_SHARE)
    assert (est.method, est.rounds, est.seed, est.unit, est.n) == ("bradley-terry", 200, 3, "battle", 15)
    # 6 questions: fewer than the minimum for an interval, and half the judgments lost a game
    assert est.ci_low is None and est.ci_high is None and not est.reliable
    assert "minimum" in est.meta["note"] and "lost a game" in est.meta["unreliable"][0]
    assert "score_style_controlled" not in sx.metrics
    assert out["model-y"].meta["avg_tokens"] == pytest.approx(125.0)
    assert sx.meta["baseline"] == BASE and sx.meta["judge"] == "judge-a"
    by_question = ArenaHard(DATA).summarize(bundle.judgments, bundle.answers, rounds=50, seed=3)
    q = by_question["model-x"].metrics["score"]
    assert q.unit == "question" and q.n == 6 and q.value == est.value  # question unit by default
    assert ArenaHard().report_options(bundle.answers)["unit"] == "question"


def test_summarize_rejects_mixed_inputs_and_unknown_options(bundle):
    other = bundle.judgments[0].model_copy(update={"judge": "judge-b"})
    with pytest.raises(DataError, match="several judges"):
        ArenaHard().summarize([*bundle.judgments, other], bundle.answers, rounds=10, seed=0)
    with pytest.raises(TypeError, match="unknown arena-hard option"):
        ArenaHard().summarize(bundle.judgments, bundle.answers, rounds=10, seed=0, length_control=True)


def test_all_failed_model_has_no_score_but_counts():
    j = Judgment(
        question_id="q1",
        benchmark="arena-hard",
        judge="j",
        model="m",
        kind="pairwise",
        baseline=BASE,
        games=[Game(model_position="B", error="no verdict"), Game(model_position="A", error="no verdict")],
        error="both games failed",
    )
    out = ArenaHard().summarize([j], [], rounds=10, seed=0)
    assert out["m"].metrics == {} and out["m"].counts["games_failed"] == 2 and "error" in out["m"].meta


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap


def _naive_share(bt: Battles, rows: np.ndarray, model: int) -> float:
    mine = rows[bt.b[rows] == model]
    return float((1.0 - bt.outcome[mine]).sum() / len(mine))


def test_battle_bootstrap_matches_a_per_round_recount(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    idx = resample_indices(bt, 30, seed=5, unit="battle")
    res = arena_scores(bt, BASE, indices=idx, min_units=1)
    expanded = bt.expanded_rows()
    for model in ("model-x", "model-y"):
        col = bt.models.index(model)
        naive = [_naive_share(bt, expanded[r], col) for r in idx]
        np.testing.assert_allclose(res.samples[:, col], 100 * np.array(naive), atol=1e-9)
        lo, hi = np.percentile(1000 + 400 * np.log10(np.array(naive) / (1 - np.array(naive))), [2.5, 97.5])
        assert res.scores[model].ci_low == pytest.approx(100 * arena.win_rate(lo), abs=1e-9)
        assert res.scores[model].ci_high == pytest.approx(100 * arena.win_rate(hi), abs=1e-9)
    assert res.scores["model-x"].seed is None  # the draws were given, not seeded here


def test_question_bootstrap_keeps_games_together(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    idx = resample_indices(bt, 30, seed=2, unit="question")
    assert idx.shape == (30, len(bt.questions))
    res = arena_scores(bt, BASE, indices=idx, unit="question")
    expanded = bt.expanded_rows()
    col = bt.models.index("model-y")
    for r, drawn in enumerate(idx):
        rows = np.concatenate([expanded[bt.question[expanded] == q] for q in drawn])
        assert res.samples[r, col] == pytest.approx(100 * _naive_share(bt, rows, col))


def test_seeded_bootstrap_is_reproducible(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    one = arena_scores(bt, BASE, rounds=100, seed=11, min_units=1)
    two = arena_scores(bt, BASE, rounds=100, seed=11, min_units=1)
    other = arena_scores(bt, BASE, rounds=100, seed=12, min_units=1)
    assert one.scores == two.scores
    assert one.scores["model-x"].ci_low != other.scores["model-x"].ci_low
    assert one.scores[BASE].ci_low == one.scores[BASE].ci_high == 50.0


# ---------------------------------------------------------------------------------------------------------------
# Solvers against references


def _random_battles(rng, n_models=4, n_rows=300, star=False, style=False) -> Battles:
    a = np.zeros(n_rows, dtype=np.intp) if star else rng.integers(0, n_models, n_rows)
    b = rng.integers(1, n_models, n_rows)
    if not star:
        b = np.where(b == a, (a + 1) % n_models, b)
    n_q = n_rows // 2
    style_a = style_b = None
    if style:
        table = rng.integers(0, 40, (n_models, n_q, 4)).astype(float) * [20, 1, 1, 1]
        q = np.arange(n_rows) // 2
        style_a, style_b = table[a, q], table[b, q]
    return Battles(
        models=tuple(f"m{i}" for i in range(n_models)),
        questions=tuple(f"q{i}" for i in range(n_q)),
        a=a,
        b=b,
        outcome=rng.choice([0.0, 0.5, 1.0], n_rows, p=[0.45, 0.2, 0.35]),
        weight=rng.choice([1, 3], n_rows, p=[0.7, 0.3]),
        question=np.arange(n_rows) // 2,
        game=np.arange(n_rows) % 2,
        style_a=style_a,
        style_b=style_b,
    )


def _sklearn_fit(bt: Battles, C: float, feats: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The official construction: expanded rows, each listed twice, a tie as one win and one loss."""
    from sklearn.linear_model import LogisticRegression

    rows = bt.expanded_rows()
    n, m = len(rows), len(bt.models)
    k = 0 if feats is None else feats.shape[1]
    x = np.zeros((2 * n, m + k))
    x[np.arange(2 * n), np.tile(bt.a[rows], 2)] = np.log(10)
    x[np.arange(2 * n), np.tile(bt.b[rows], 2)] = -np.log(10)
    if k:
        x[:, m:] = np.tile(feats[rows], (2, 1))
    out = bt.outcome[rows]
    y = np.concatenate([out >= 0.5, out == 1.0]).astype(float)
    lr = LogisticRegression(C=C, fit_intercept=False, solver="newton-cg", tol=1e-10, max_iter=1000).fit(x, y)
    coef = lr.coef_[0]
    return 400 * (coef[:m] - coef[0]) + 1000, coef[m:]


def test_newton_matches_sklearn_without_penalty_on_a_general_graph():
    bt = _random_battles(np.random.default_rng(0))
    res = arena_scores(bt, "m0", rounds=0)
    ref, _ = _sklearn_fit(bt, C=np.inf)
    np.testing.assert_allclose([res.ratings[m] for m in bt.models], ref, atol=1e-4)
    assert res.scores["m2"].method == "bradley-terry"


def test_style_control_matches_sklearn_l2_on_every_coefficient():
    bt = _random_battles(np.random.default_rng(1), star=True, style=True)
    res = arena_scores(bt, "m0", rounds=0, style_control=True)
    feats = arena._style_matrix(bt, arena.STYLE_FEATURES)
    # z-scored over the expanded battle rows, as the official fit does
    w = bt.weight / bt.weight.sum()
    np.testing.assert_allclose(w @ feats, 0, atol=1e-12)
    np.testing.assert_allclose(w @ feats**2, 1, atol=1e-12)
    ratings, coefs = _sklearn_fit(bt, C=1.0, feats=feats)
    np.testing.assert_allclose([res.ratings[m] for m in bt.models], ratings, atol=1e-4)
    np.testing.assert_allclose(list(res.style_coefs.values()), coefs, atol=1e-7)
    assert list(res.style_coefs) == list(arena.STYLE_FEATURES)
    assert res.scores["m1"].method == "bradley-terry-style-control"


def test_style_control_bootstrap_matches_per_round_fits():
    bt = _random_battles(np.random.default_rng(2), n_models=3, star=True, style=True)
    idx = resample_indices(bt, 4, seed=0)
    res = arena_scores(bt, "m0", indices=idx, style_control=("token_len", "list_count"))
    feats = arena._style_matrix(bt, ("token_len", "list_count"))
    expanded = bt.expanded_rows()
    for r, drawn in enumerate(idx):
        counts = np.bincount(expanded[drawn], minlength=len(bt))
        sub = Battles(**{**bt.__dict__, "weight": counts})  # a round is a reweighting of the same rows
        keep = counts > 0
        ratings, _ = _sklearn_fit(_select(sub, keep), C=1.0, feats=feats[keep])
        np.testing.assert_allclose(100 * arena.win_rate(ratings), res.samples[r], atol=1e-5)


def _select(bt: Battles, keep: np.ndarray) -> Battles:
    per_row = ("a", "b", "outcome", "weight", "question", "game", "style_a", "style_b")
    return Battles(**{k: (v[keep] if k in per_row else v) for k, v in bt.__dict__.items()})


def test_closed_form_and_newton_agree_on_a_star_graph():
    bt = _random_battles(np.random.default_rng(3), n_models=5, star=True)
    counts = arena._round_counts(bt, resample_indices(bt, 20, seed=1), "battle")
    counts = np.hstack([bt.weight[:, None].astype(float), counts])
    closed = arena._closed_form(bt, counts, 0)
    theta = arena._fit_bt(bt, np.zeros((len(bt), 0)), counts, pin=0, C=None)
    np.testing.assert_allclose(arena.win_rate(1000 + 400 * theta), closed, atol=1e-10)
    # from a far-off start plain Newton overshoots; the damped fallback still lands on the optimum
    far = arena._fit_bt(bt, np.zeros((len(bt), 0)), counts, pin=0, C=None, theta0=np.array([0, 9, -9, 9, -9.0]))
    np.testing.assert_allclose(far, theta, atol=1e-8)


def test_a_model_absent_from_a_round_is_nan_not_a_number():
    bt = _random_battles(np.random.default_rng(4), n_models=3)
    counts = np.repeat(bt.weight[:, None].astype(float), 2, axis=1)
    counts[(bt.a == 2) | (bt.b == 2), 1] = 0
    theta = arena._fit_bt(bt, np.zeros((len(bt), 0)), counts, pin=0, C=None)
    assert np.isfinite(theta[0]).all() and np.isnan(theta[1, 2]) and np.isfinite(theta[1, :2]).all()


# ---------------------------------------------------------------------------------------------------------------
# Style control on the fixture, and what it refuses


def test_style_control_on_the_official_layout():
    only_x = load_official(DATA, models=["model-x"])
    out = ArenaHard().summarize(only_x.judgments, only_x.answers, rounds=50, seed=0, style_control=True)
    sc = out["model-x"].metrics["score_style_controlled"]
    assert sc.method == "bradley-terry-style-control" and sc.unit == "question"
    assert sc.ci_low is None and not sc.reliable  # 6 questions: no interval claimed
    bt = battles_from_judgments(only_x.judgments, only_x.answers)
    wide = arena_scores(bt, BASE, rounds=50, seed=0, unit="question", style_control=True, min_units=1)
    sc = wide.scores["model-x"]
    assert sc.ci_low <= sc.value <= sc.ci_high and sc.meta["ci"] == "bootstrap-percentile" and "ci_note" in sc.meta
    assert set(out["model-x"].meta["style_coefs"]) == set(arena.STYLE_FEATURES)
    assert out["model-x"].metrics["score"].value == pytest.approx(100 * X_SHARE)


def test_style_control_without_answer_metadata_says_how_to_fix(bundle):
    with pytest.raises(DataError, match="model-y") as err:
        ArenaHard().summarize(bundle.judgments, bundle.answers, rounds=10, seed=0, style_control=True)
    assert "conv_metadata" in str(err.value)
    bt = battles_from_judgments(bundle.judgments, [])
    with pytest.raises(DataError, match="no answer metadata") as err:
        arena_scores(bt, BASE, rounds=10, style_control=True)
    assert err.value.fix


def test_arena_scores_input_errors(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    with pytest.raises(DataError, match="resampling unit"):
        arena_scores(bt, BASE, unit="judgment")
    with pytest.raises(DataError, match="baseline"):
        arena_scores(bt, "gpt-4o", rounds=10)
    with pytest.raises(DataError, match="unknown style feature"):
        arena_scores(bt, BASE, rounds=10, style_control=("emoji_count",))
