"""AlpacaEval 2.0: loaders of the official formats, win rates, and the length-controlled GLM."""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from lioneval.benchmarks.alpaca_eval import (
    AlpacaEval,
    LCData,
    find_lc_data,
    load_annotations,
    load_glm_weights,
    load_lc_data,
    load_outputs,
    question_id,
)
from lioneval.stats.alpaca import (
    FEATURES,
    GamedRows,
    LCRows,
    group_folds,
    lc_from_weights,
    length_controlled_win_rate,
    length_controlled_win_rates,
    win_rates,
)

FIX = Path(__file__).parent / "fixtures" / "alpaca_eval"


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    # The default LC data comes from the Hugging Face cache; keep the user's real cache out of the tests.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def _toy(bundle):
    return [j for j in bundle.judgments if j.judge == "toy_annotator"]


# --------------------------------------------------------------------------------------------------------------------
# Loaders


def test_load_annotations_counts_malformed_rows_and_keeps_failures():
    bundle = load_annotations(FIX / "annotations.json")
    assert len(bundle.judgments) == 10
    assert sum(j.failed for j in bundle.judgments) == 4
    assert bundle.skipped["row without output_2"] == 1
    assert bundle.skipped["row is not a JSON object"] == 1
    assert bundle.skipped["no preference (kept as a failed judgment)"] == 2  # null and NaN
    assert bundle.skipped["preference outside [1, 2] (kept as a failed judgment)"] == 1
    assert bundle.skipped["preference is not a number (kept as a failed judgment)"] == 1
    assert bundle.skipped["row without an annotator (judge recorded as 'unknown')"] == 1
    assert all(j.error for j in bundle.judgments if j.failed)
    assert bundle.warnings  # one warning per kind of problem

    j = bundle.judgments[0]
    assert (j.benchmark, j.kind, j.judge, j.model, j.baseline) == (
        "alpaca-eval", "pairwise", "toy_annotator", "tiny-model", "base-model"
    )
    assert j.value == 1.0 and j.games[0].value == 1.0 and j.games[0].model_position == "B"
    assert j.meta["row"] == 0 and j.meta["instruction"] == "Write a haiku about tea."
    assert j.question_id == question_id("Write a haiku about tea.")
    draw = next(j for j in bundle.judgments if j.meta["row"] == 3)
    assert draw.value == 0.5  # preference 0 is the older spelling of a draw
    models = {(a.model, a.question_id) for a in bundle.answers}
    assert len(models) == len(bundle.answers) == 16  # base-model's answers are read once


def test_load_annotations_jsonl_directory_model_and_judge_options(tmp_path):
    bundle = load_annotations(FIX / "annotations.jsonl")
    assert len(bundle.judgments) == 2
    assert sum(bundle.skipped.values()) == 1 and "not valid JSON" in next(iter(bundle.skipped))
    assert [j.meta["row"] for j in bundle.judgments] == [0, 1]

    renamed = load_annotations(FIX / "annotations.jsonl", model="renamed")
    assert {j.model for j in renamed.judgments} == {"renamed"}
    only = load_annotations(FIX / "annotations.json", judge="toy_annotator")
    assert {j.judge for j in only.judgments} == {"toy_annotator"}

    results = tmp_path / "results" / "m" / "toy_annotator"
    results.mkdir(parents=True)
    (results / "annotations.json").write_text((FIX / "annotations.json").read_text())
    assert len(load_annotations(tmp_path / "results").judgments) == 10

    broken = tmp_path / "annotations.json"
    broken.write_text("[{not json")
    b = load_annotations(broken)
    assert not b.judgments and sum(b.skipped.values()) == 1


def test_load_outputs_and_eval_index():
    bundle = load_outputs(FIX / "model_outputs.json")
    assert [q.meta["eval_idx"] for q in bundle.questions] == list(range(6))
    assert bundle.questions[1].turns == ["Write a haiku about tea."] and bundle.questions[1].category == "koala"
    assert {a.model for a in bundle.answers} == {"base-model"}
    with_idx = load_annotations(FIX / "annotations.json", eval_set=FIX / "model_outputs.json")
    assert [j.meta["eval_idx"] for j in with_idx.judgments[:6]] == [1, 0, 2, 3, 4, 5]


# --------------------------------------------------------------------------------------------------------------------
# Win rates


def test_win_rates_by_hand():
    # valid preferences 2, 1, 1.5, 0 (a draw), 1.75; NaN and out-of-range values are left out
    metrics, counts = win_rates([2.0, 1.0, 1.5, 0.0, 1.75, np.nan, 2.5, None])
    assert counts == {"n_wins": 2, "n_wins_base": 1, "n_draws": 2, "n_total": 5}
    v = np.array([1, 0, 0.5, 0.5, 0.75])
    assert metrics["win_rate"].value == pytest.approx(55.0)
    assert metrics["win_rate"].se == pytest.approx(100 * math.sqrt(0.55 / 4) / math.sqrt(5))
    assert metrics["win_rate"].se == pytest.approx(100 * v.std(ddof=1) / math.sqrt(5))
    assert metrics["discrete_win_rate"].value == pytest.approx(60.0)  # (2 wins + 2 draws / 2) / 5
    assert metrics["win_rate"].n == 5

    boot, _ = win_rates([2.0, 1.0, 1.5, 1.75, 1.2], rounds=200, seed=3)
    again, _ = win_rates([2.0, 1.0, 1.5, 1.75, 1.2], rounds=200, seed=3)
    assert boot["win_rate"].ci_low < boot["win_rate"].value < boot["win_rate"].ci_high
    assert (boot["win_rate"].ci_low, boot["win_rate"].seed) == (again["win_rate"].ci_low, 3)


def test_summarize_fixture_scores_failed_rows_as_missing():
    bundle = load_annotations(FIX / "annotations.json", judge="toy_annotator")
    bench = AlpacaEval(FIX / "model_outputs.json", lc_data=FIX / "lc")
    out = bench.summarize(bundle.judgments, bundle.answers)
    tiny = out["tiny-model"]
    assert tiny.metrics["win_rate"].value == pytest.approx(55.0)
    assert tiny.metrics["discrete_win_rate"].value == pytest.approx(60.0)
    assert tiny.counts["failed"] == 1 and tiny.counts["n_total"] == 5 and tiny.counts["rows"] == 6
    assert out["other-model"].counts["failed"] == 3 and "error" in out["other-model"].meta
    lc = tiny.metrics["length_controlled_winrate"]
    assert lc.method == "glm-lc" and lc.meta["comparable"] and lc.meta["glm"] == "length_controlled_v1"
    assert lc.n == 6  # every row is predicted, including the one without a preference
    assert 0 < lc.value < 100
    # With bootstrap rounds: six questions are too few for an LC interval, so none is claimed (and no zero-width
    # "standard error" is shown as if it were one); the win rates keep theirs.
    boot = bench.summarize(bundle.judgments, bundle.answers, rounds=200, seed=1)["tiny-model"]
    lc = boot.metrics["length_controlled_winrate"]
    assert lc.value == tiny.metrics["length_controlled_winrate"].value
    assert lc.ci_low is None and lc.se is None and "minimum" in lc.meta["note"]
    assert boot.metrics["win_rate"].ci_low is not None


# --------------------------------------------------------------------------------------------------------------------
# Length-controlled GLM


def _synthetic(n=150, seed=0, with_gamed=True):
    rng = np.random.default_rng(seed)
    diff = rng.normal(0, 0.7, n)
    len_base = rng.lognormal(7, 0.4, n).round()
    len_model = (len_base * rng.lognormal(0.3, 0.5, n)).round()
    delta = len_base - len_model
    logit = -0.8 - 1.5 * np.tanh(delta / delta.std()) + diff + rng.normal(0, 0.8, n)
    pref = 1 + 1 / (1 + np.exp(-logit))
    pref[[3, 17]] = np.nan  # missing annotations: predicted but not fitted
    pref[5] = 1.5
    gamed = None
    if with_gamed:
        sdl = np.r_[rng.normal(-1, 0.5, n), rng.normal(1, 0.5, n)]
        d2 = np.r_[diff, diff]
        gamed = GamedRows(sdl, d2, 1 / (1 + np.exp(1.4 * np.tanh(sdl) - 0.8 * d2)), np.r_[np.arange(n), np.arange(n)])
    return pref, len_base, len_model, diff, gamed


def _sklearn_lc(pref, len_base, len_model, diff, gamed, lam=0.2):
    """The official recipe written directly with scikit-learn (liblinear, L1, grouped 5-fold CV, refit)."""
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    delta = len_base - len_model
    x_len = np.tanh(delta / np.std(delta, ddof=1))
    cols = [x_len] + ([diff] if diff is not None else []) + [np.ones(len(pref))]
    X, y, w = np.column_stack(cols), pref - 1, np.ones(len(pref))
    if gamed is not None:
        Xg = np.column_stack([np.tanh(gamed.std_delta_len), gamed.difficulty, np.zeros(len(gamed.preference))])
        X, y = np.vstack([Xg, X]), np.r_[gamed.preference, y]
        w = np.r_[np.full(len(gamed.preference), lam / 2), w]
    keep = ~np.isnan(y)
    X, y, w = X[keep], y[keep], w[keep]
    n = len(y)

    def loss(y_true, y_pred, true_prob, true_weight):
        p = np.where(y_true == 1, true_prob, 1 - true_prob)
        q = np.clip(y_pred, 1e-15, 1 - 1e-15)
        return -np.mean(true_weight * (p * np.log(q) + (1 - p) * np.log(1 - q)))

    prob, w2 = np.r_[y, 1 - y], np.r_[w, w]
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = make_scorer(loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_prob=True, true_weight=True)
        model = LogisticRegressionCV(cv=GroupKFold(5), scoring=scorer, penalty="l1", solver="liblinear",
                                     fit_intercept=False, random_state=123)
        model.set_fit_request(sample_weight=True)
        model.fit(np.vstack([X, X]), np.r_[np.ones(n), np.zeros(n)], sample_weight=prob * w2,
                  groups=np.r_[np.arange(n), np.arange(n)], true_prob=prob, true_weight=w2)
    X_test = np.column_stack(cols)
    X_test[:, 0] = 0
    return 100 * model.predict_proba(X_test)[:, 1].mean(), model.coef_[0], model.C_[0]


@pytest.mark.parametrize("variant", ["v1", "noreg", "minimal"])
def test_lc_matches_scikit_learn(variant):
    pref, lb, lm, diff, gamed = _synthetic(with_gamed=variant == "v1")
    d = None if variant == "minimal" else diff
    ours = length_controlled_win_rate(pref, lb, lm, d, gamed=gamed)
    ref, coef, C = _sklearn_lc(pref, lb, lm, d, gamed)
    assert ours.estimate.value == pytest.approx(ref, abs=1e-8)
    assert np.allclose(list(ours.coef.values()), coef, atol=1e-9)
    assert ours.C == C
    assert ours.estimate.meta["glm"] == {"v1": "length_controlled_v1", "noreg": "length_controlled_noreg",
                                         "minimal": "length_controlled_minimal"}[variant]
    pred = ours.predicted
    assert ours.estimate.se == pytest.approx(100 * pred.std(ddof=1) / math.sqrt(pred.size))


def test_lc_batch_equals_one_by_one():
    fits = [_synthetic(n=90, seed=s) for s in (1, 2, 3)]
    gamed = fits[0][4]
    rows = [LCRows(p, lb, lm, d) for p, lb, lm, d, _ in fits]
    batch = length_controlled_win_rates(rows, gamed, chunk=2)
    alone = [length_controlled_win_rate(p, lb, lm, d, gamed=gamed) for p, lb, lm, d, _ in fits]
    assert [r.estimate.value for r in batch] == pytest.approx([r.estimate.value for r in alone], abs=1e-12)


def test_interval_quantiles_are_numpys_to_the_bit():
    """The bootstrap intervals take numpy's default (linear) quantiles, computed without np.quantile itself."""
    from lioneval.stats.bootstrap import quantiles

    rng = np.random.default_rng(0)
    for trial in range(300):
        x = rng.normal(size=int(rng.integers(1, 1200))) * 10.0 ** int(rng.integers(-3, 3))
        if trial % 3 == 0:
            x = np.round(x, 1)  # ties
        qs = [0.025, 0.975, 0.0, 1.0, 0.5, float(rng.random())]
        assert quantiles(x, qs) == np.quantile(x, qs).tolist()
    assert quantiles([3.0, 1.0, 2.0], [0.025, 0.975]) == np.percentile([3.0, 1.0, 2.0], [2.5, 97.5]).tolist()
    assert all(math.isnan(v) for v in quantiles([1.0, np.nan, 2.0], [0.1, 0.9]))


@pytest.mark.parametrize("rejections", [False, True])
def test_lc_coordinate_descent_of_many_problems_at_once_takes_the_scalar_steps(monkeypatch, rejections):
    """The CV problems' coordinate descent runs pass by pass over all of them with numpy; it must take liblinear's
    steps exactly as the loop over one problem does: same weights, CV losses and strength, to the bit."""
    import lioneval.stats.alpaca as lc

    if rejections:
        # Streams with many zero draws, which bounded_rand_int rejects for three coordinates (Lemire's method).
        def grow(self, sid):
            draws = self._rs[sid].randint(0, 2**32, size=4096, dtype=np.uint32)
            draws[::5] = 0
            self.raw[sid].extend(draws.tolist())
            self._table = None

        monkeypatch.setattr(lc._Draws, "grow", grow)
    fits = [_synthetic(n=120, seed=s) for s in (5, 6)]
    rows = [LCRows(p, lb, lm, d) for p, lb, lm, d, _ in fits]
    results = {}
    for least in (10**9, 1):  # every problem on the scalar loop; every pass batched
        monkeypatch.setattr(lc, "_BATCH_MIN", least)
        results[least] = length_controlled_win_rates(rows, fits[0][4])
    for scalar, batched in zip(results[10**9], results[1], strict=True):
        assert scalar.coef == batched.coef and scalar.C == batched.C
        assert (scalar.cv_loss == batched.cv_loss).all()


def _replicate_reference(pref, lb, lm, diff, gamed, counts, C, lam=0.2):
    """One bootstrap replicate refitted independently: scikit-learn's liblinear run to a tight tolerance on the
    replicate's rows (each drawn row weighted by its multiplicity, both copies of a soft label), at the given C."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    delta = lb - lm
    X = np.column_stack([np.tanh(delta / np.std(delta, ddof=1)), diff, np.ones(len(pref))])
    y, w = pref - 1, counts.astype(float)
    Xg = np.column_stack([np.tanh(gamed.std_delta_len), gamed.difficulty, np.zeros(len(gamed.preference))])
    X, y, w = np.vstack([Xg, X]), np.r_[gamed.preference, y], np.r_[np.full(len(gamed.preference), lam / 2), w]
    keep = ~np.isnan(y) & (w > 0)
    X, y, w = X[keep], y[keep], w[keep]
    n = len(y)
    model = LogisticRegression(penalty="l1", solver="liblinear", C=C, fit_intercept=False, tol=1e-12,
                               max_iter=100000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(np.vstack([X, X]), np.r_[np.ones(n), np.zeros(n)], sample_weight=np.r_[w * y, w * (1 - y)])
    coef = model.coef_[0]
    pred = 1 / (1 + np.exp(-(coef[1] * diff + coef[2])))
    return 100 * (counts * pred).sum() / counts.sum()


def test_lc_bootstrap_refits_every_replicate_exactly():
    from lioneval.stats.bootstrap import resample_counts

    pref, lb, lm, diff, gamed = _synthetic(n=120, seed=4)
    res = length_controlled_win_rate(pref, lb, lm, diff, gamed=gamed, rounds=50, seed=7)
    est = res.estimate
    assert res.boot is not None and res.boot.shape == (50,)
    counts = resample_counts(len(pref), 50, 7)
    for r in (0, 13, 49):
        ref = _replicate_reference(pref, lb, lm, diff, gamed, counts[r], res.C)
        assert res.boot[r] == pytest.approx(ref, abs=1e-6)
    assert est.meta["bootstrap"]["unconverged"] == 0
    assert est.ci_low == pytest.approx(np.quantile(res.boot, 0.025))
    assert est.ci_high == pytest.approx(np.quantile(res.boot, 0.975))


def test_lc_interval_is_seeded_and_keeps_the_official_point_and_se():
    pref, lb, lm, diff, gamed = _synthetic(n=150, seed=0)
    plain = length_controlled_win_rate(pref, lb, lm, diff, gamed=gamed).estimate
    est = length_controlled_win_rate(pref, lb, lm, diff, gamed=gamed, rounds=300, seed=11).estimate
    again = length_controlled_win_rate(pref, lb, lm, diff, gamed=gamed, rounds=300, seed=11).estimate
    other = length_controlled_win_rate(pref, lb, lm, diff, gamed=gamed, rounds=300, seed=12).estimate
    assert plain.ci_low is None and plain.method == "glm-lc" and plain.rounds is None
    assert est.value == plain.value and est.se == plain.se == est.meta["official_se"]
    assert (est.method, est.unit, est.rounds, est.seed, est.level) == (
        "bootstrap-percentile(glm-lc)", "question", 300, 11, 0.95)
    assert est.meta["C"] == plain.meta["C"] and "held fixed" in est.meta["C_selection"]
    assert est.ci_low < est.value < est.ci_high
    assert (est.ci_low, est.ci_high) == (again.ci_low, again.ci_high)
    assert (est.ci_low, est.ci_high) != (other.ci_low, other.ci_high)
    # The official standard error is the spread of per-row predictions, not a sampling error: the bootstrap's is
    # about twice as large (2.0-2.35 times on the published validation models).
    assert est.meta["bootstrap"]["sd"] > 1.5 * est.se


@pytest.mark.parametrize("variant", ["noreg", "minimal"])
def test_lc_interval_of_the_fallback_glms(variant):
    pref, lb, lm, diff, _ = _synthetic(n=100, seed=2, with_gamed=False)
    est = length_controlled_win_rate(pref, lb, lm, None if variant == "minimal" else diff, rounds=200).estimate
    assert est.ci_low < est.value < est.ci_high
    if variant == "minimal":
        assert est.se == pytest.approx(0.0)  # constant predictions: the official "standard error" is exactly 0


def test_lc_below_the_minimum_claims_no_interval():
    pref, lb, lm, diff, gamed = _synthetic(n=25, seed=3)
    est = length_controlled_win_rate(pref, lb, lm, diff, gamed=gamed, rounds=200).estimate
    assert est.ci_low is None and est.ci_high is None and est.se is None and not est.reliable
    assert "minimum" in est.meta["note"] and est.meta["official_se"] > 0


def test_group_folds_match_group_kfold():
    from_sklearn = pytest.importorskip("sklearn.model_selection")
    n = 23
    groups = np.r_[np.arange(n), np.arange(n)]
    folds = np.full(n, -1)
    for f, (_, test) in enumerate(from_sklearn.GroupKFold(5).split(np.zeros((2 * n, 1)), groups=groups)):
        folds[groups[test]] = f
    assert (folds == group_folds(n, 5)).all()


def test_lc_from_weights_by_hand():
    coef = {FEATURES[0]: -1.0, FEATURES[1]: 0.5, FEATURES[2]: -2.0}
    est = lc_from_weights(coef, [0.0, 1.0, -1.0])
    expected = 100 * np.mean(1 / (1 + np.exp(-(-2.0 + 0.5 * np.array([0.0, 1.0, -1.0])))))
    assert est.value == pytest.approx(expected)
    assert lc_from_weights(coef, [0.3], baseline_coef=coef).value == pytest.approx(50.0)


def _write_subset(tmp_path: Path, order: list[int], prefs: list[float]) -> Path:
    """An annotations file over a subset of the fixture eval set, rows in the given eval order."""
    outputs = json.loads((FIX / "model_outputs.json").read_text())
    rows = [
        {"instruction": outputs[i]["instruction"], "output_1": outputs[i]["output"], "output_2": "x" * (5 + 7 * k),
         "generator_1": "base-model", "generator_2": "m", "annotator": "toy_annotator", "preference": p}
        for k, (i, p) in enumerate(zip(order, prefs, strict=True))
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    return path


def test_difficulty_lookup_position_vs_instruction(tmp_path):
    order = [3, 0, 5, 1]  # four of the six instructions, not in eval order
    path = _write_subset(tmp_path, order, [1.9, 1.2, 1.6, 1.4])
    bundle = load_annotations(path)
    table = np.array([0.0, 0.4, -0.3, 0.9, -0.6, 0.2])  # lc/instruction_difficulty.csv
    coef = {FEATURES[0]: -1.2, FEATURES[1]: 0.8, FEATURES[2]: -0.5}
    weights = {"m": coef, "base-model": {f: 0.0 for f in FEATURES}}

    def lc(lookup):
        bench = AlpacaEval(FIX / "model_outputs.json", lc_data=FIX / "lc", difficulty_lookup=lookup, weights=weights)
        return bench.summarize(bundle.judgments, bundle.answers)["m"]

    by_position, by_instruction = lc("position"), lc("instruction")
    sig = lambda d: 1 / (1 + np.exp(-(-0.5 + 0.8 * d)))  # noqa: E731
    from_position = by_position.metrics["lc_from_weights"].value
    from_instruction = by_instruction.metrics["lc_from_weights"].value
    assert from_position == pytest.approx(100 * sig(table[:4]).mean())
    assert from_instruction == pytest.approx(100 * sig(table[order]).mean())
    assert from_position != pytest.approx(from_instruction)
    # the refit uses the same lookup: its difficulty column differs, so does its value
    assert by_position.metrics["length_controlled_winrate"].meta["difficulty_lookup"] == "position"
    assert by_position.metrics["length_controlled_winrate"].value != pytest.approx(
        by_instruction.metrics["length_controlled_winrate"].value
    )
    # without the eval set, instruction lookup has nothing to go by: difficulties unknown, not comparable
    blind = AlpacaEval(lc_data=FIX / "lc", difficulty_lookup="instruction")
    s = blind.summarize(bundle.judgments, bundle.answers)["m"]
    assert s.counts["lc_difficulty_unknown"] == 4
    assert not s.metrics["length_controlled_winrate"].meta["comparable"]


def test_missing_lc_data_falls_back_with_one_warning(tmp_path, caplog):
    bundle = load_annotations(FIX / "annotations.json", judge="toy_annotator")
    bench = AlpacaEval(FIX / "model_outputs.json")  # no lc_data, empty hub cache
    with caplog.at_level(logging.WARNING, logger="lioneval.alpaca_eval"):
        first = bench.summarize(bundle.judgments, bundle.answers)
        bench.summarize(bundle.judgments, bundle.answers)
    warned = [r for r in caplog.records if "NOT comparable" in r.getMessage()]
    assert len(warned) == 1
    lc = first["tiny-model"].metrics["length_controlled_winrate"]
    assert lc.meta["comparable"] is False and lc.meta["glm"] == "length_controlled_minimal"
    assert "not comparable" in lc.meta["note"]

    only_difficulty = tmp_path / "lc"
    only_difficulty.mkdir()
    (only_difficulty / "instruction_difficulty.csv").write_text((FIX / "lc" / "instruction_difficulty.csv").read_text())
    out = AlpacaEval(FIX / "model_outputs.json", lc_data=only_difficulty).summarize(bundle.judgments, bundle.answers)
    lc = out["tiny-model"].metrics["length_controlled_winrate"]
    assert lc.meta["glm"] == "length_controlled_noreg" and lc.meta["comparable"] is False


def test_lc_data_files_and_hub_cache(tmp_path, monkeypatch):
    data = load_lc_data(FIX / "lc")
    assert data.difficulty.tolist() == [0.0, 0.4, -0.3, 0.9, -0.6, 0.2]
    assert data.gamed.preference.size == 12 and data.gamed.n_models == 2
    assert np.allclose(data.fit_difficulty(), data.difficulty)
    assert load_lc_data() == LCData()  # nothing in the (empty) hub cache

    snap = tmp_path / "hub" / "datasets--tatsu-lab--alpaca_eval" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for name in ("instruction_difficulty.csv", "df_gamed.csv"):
        (snap / name).write_text((FIX / "lc" / name).read_text())
    assert find_lc_data() == snap
    assert load_lc_data().gamed is not None

    weights = tmp_path / "baseline_base-model.csv"
    weights.write_text(",".join(["", *FEATURES]) + "\nm,-1.0,0.5,0.25\nbase-model,0,0,0\n")
    assert load_glm_weights(weights)["m"][FEATURES[2]] == 0.25


def test_baseline_against_itself_and_options():
    bundle = load_annotations(FIX / "annotations.jsonl", model="base-model")
    out = AlpacaEval(lc_data=FIX / "lc").summarize(bundle.judgments, bundle.answers)
    assert out["base-model"].metrics["length_controlled_winrate"].value == 50.0
    with pytest.raises(TypeError, match="unknown alpaca-eval option"):
        AlpacaEval().summarize(bundle.judgments, bundle.answers, style_control=True)
    with pytest.raises(ValueError):
        AlpacaEval(difficulty_lookup="row")


def test_own_judgments_without_rows_use_eval_order():
    # Judgments made by lioneval carry no file row: the fit sees them in eval order, and "position" means eval index.
    from lioneval.types import Answer, Game, Judgment

    outputs = json.loads((FIX / "model_outputs.json").read_text())
    judgments, answers = [], []
    for i in (4, 1, 3):
        qid = question_id(outputs[i]["instruction"])
        judgments.append(Judgment(question_id=qid, benchmark="alpaca-eval", judge="j", model="m", kind="pairwise",
                                  baseline="base-model", value=0.3 + 0.1 * i, games=[Game(value=0.3 + 0.1 * i)]))
        answers += [Answer(question_id=qid, benchmark="alpaca-eval", model="m", turns=["y" * (10 + i)]),
                    Answer(question_id=qid, benchmark="alpaca-eval", model="base-model", turns=["x" * 12])]
    coef = {FEATURES[0]: 0.0, FEATURES[1]: 1.0, FEATURES[2]: 0.0}
    bench = AlpacaEval(FIX / "model_outputs.json", lc_data=FIX / "lc", weights={"m": coef})
    got = bench.summarize(judgments, answers)["m"].metrics["lc_from_weights"].value
    table = np.array([0.0, 0.4, -0.3, 0.9, -0.6, 0.2])
    assert got == pytest.approx(100 * np.mean(1 / (1 + np.exp(-table[[1, 3, 4]]))))
