"""Benchmark quality measures (Li et al. 2024): a small case computed by hand, and the command on a store filled
through `lioneval import`."""

from __future__ import annotations

import json
import math
import random

import pytest

from lioneval.bench_quality import ModelScore, load_reference, quality
from lioneval.cli import main
from lioneval.errors import DataError, LionEvalError
from lioneval.store import RunStore

Z = 1.959963984540054  # the normal quantile of a 95% interval


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


SCORES = [ModelScore("A", 10.0, 9.0, 11.0), ModelScore("B", 8.0, 7.5, 8.5), ModelScore("C", 7.8, 7.0, 8.6),
          ModelScore("D", 5.0, 4.0, 6.0)]
# the reference puts C above B and D above B
REFERENCE = {"A": ModelScore("A", 1200), "B": ModelScore("B", 1100), "C": ModelScore("C", 1150),
             "D": ModelScore("D", 1120), "E": ModelScore("E", 900)}


def test_hand_computed_case():
    q = quality(SCORES, REFERENCE, benchmark="toy", judge="j", metric="score")
    # intervals: A-B, A-C, A-D, B-D, C-D apart; B [7.5, 8.5] and C [7, 8.6] overlap -> 5 of 6 pairs
    assert (q.models, q.pairs, q.reference_models) == (4, 6, 4)
    assert q.separability == pytest.approx(5 / 6)
    assert q.mean_ci_width == pytest.approx((2 + 1 + 1.6 + 2) / 4)
    assert q.mean_ci_width_rel == pytest.approx(1.65 / (10 - 5))
    # agreement: A-B +1, A-C +1, A-D +1, B-C 0 (overlap), B-D -1 (confident, reference says D > B), C-D +1
    assert q.agreement == pytest.approx(3 / 6)
    # ranks (A, B, C, D): benchmark 1 2 3 4, reference 1 4 2 3: sum d^2 = 0 + 4 + 1 + 1 = 6
    assert q.spearman == pytest.approx(1 - 6 * 6 / (4 * (16 - 1)))
    # concordant: A-B A-C A-D C-D; discordant: B-C B-D
    assert q.kendall == pytest.approx((4 - 2) / 6)
    se = {s.model: (s.ci_high - s.ci_low) / (2 * Z) for s in SCORES}
    val = {s.model: s.value for s in SCORES}
    expected = []
    for a, b in [("A", "B"), ("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"), ("C", "D")]:
        p = phi((val[a] - val[b]) / math.sqrt(se[a] ** 2 + se[b] ** 2))
        expected.append((p - (REFERENCE[a].value > REFERENCE[b].value)) ** 2)
    assert q.brier == pytest.approx(sum(expected) / 6)
    # B-C is the benchmark's near coin flip that the reference decides the other way; B-D is confidently wrong
    assert 0.15 < q.brier < 0.25


def test_reference_with_intervals_counts_only_the_pairs_it_separates():
    ref = {"A": ModelScore("A", 3, 2.9, 3.1), "B": ModelScore("B", 2, 1.9, 2.1), "C": ModelScore("C", 2.05, 1.9, 2.2),
           "D": ModelScore("D", 1, 0.9, 1.1)}
    q = quality(SCORES, ref)
    # B-C overlap in the reference: left out; the other five pairs agree and the benchmark separates them all
    assert q.agreement == pytest.approx(1.0)


def test_lower_is_better_scores_are_turned_around():
    flipped = [ModelScore(s.model, -s.value, -s.ci_high, -s.ci_low) for s in SCORES]
    a, b = quality(SCORES, REFERENCE), quality(flipped, REFERENCE, higher_is_better=False)
    assert (a.separability, a.agreement, a.spearman, a.kendall) == (b.separability, b.agreement, b.spearman,
                                                                    b.kendall)
    assert a.brier == pytest.approx(b.brier)


def test_too_few_models_and_bad_reference_files(tmp_path):
    with pytest.raises(LionEvalError, match="at least 2"):
        quality(SCORES[:1])
    bad = tmp_path / "ref.csv"
    bad.write_text("model,points\nA,1\nB,2\n")
    with pytest.raises(DataError, match="cannot be read"):
        load_reference(bad)
    good = tmp_path / "ref.json"
    good.write_text(json.dumps({"A": 1200, "B": {"score": 1100, "lower": 1090, "upper": 1110}}))
    assert load_reference(good)["B"] == ModelScore("B", 1100, 1090, 1110)


def _mt_bench_file(path, strengths: dict[str, float], questions: int = 40, seed: int = 0) -> None:
    """Single-grading judgments in FastChat's layout: each model's ratings scattered around its strength."""
    rng = random.Random(seed)
    lines = []
    for model, mu in strengths.items():
        for qid in range(1, questions + 1):
            for turn in (1, 2):
                score = max(1, min(10, round(rng.gauss(mu, 1.5))))
                lines.append({"question_id": qid, "model": model, "judge": ["gpt-4", "single-v1"],
                              "user_prompt": "(prompt)", "judgment": f"Rating: [[{score}]]", "score": score,
                              "turn": turn, "tstamp": 1.0})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_command_on_an_imported_store(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    strengths = {"m-strong": 8.5, "m-mid": 6.0, "m-mid2": 5.8, "m-weak": 3.0}
    _mt_bench_file(tmp_path / "gpt-4_single.jsonl", strengths)
    assert main(["--store", db, "import", "mt-bench", str(tmp_path / "gpt-4_single.jsonl")]) == 0
    ref = tmp_path / "elo.csv"
    ref.write_text("model,score\nm-strong,1250\nm-mid,1100\nm-mid2,1090\nm-weak,900\n")
    capsys.readouterr()
    assert main(["--store", db, "bench-quality", "--reference", str(ref), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["benchmark"], row["metric"], row["models"], row["pairs"]) == ("mt-bench", "overall", 4, 6)
    # strong and weak stand apart from everything; the two middle models are too close to separate
    assert row["separability"] == pytest.approx(5 / 6)
    assert row["agreement"] == pytest.approx(5 / 6) and row["spearman"] == pytest.approx(1.0)
    assert 0 < row["brier"] < 0.1 and 0 < row["mean_ci_width"] < 2 and row["left_out"] == []
    assert main(["--store", db, "bench-quality"]) == 0
    table = capsys.readouterr().out
    assert "mt-bench" in table and "83.3%" in table


def test_command_errors_exit_2(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["--store", db, "bench-quality"]) == 2
    assert "no store" in capsys.readouterr().err
    RunStore(db).close()
    assert main(["--store", db, "bench-quality"]) == 2
    err = capsys.readouterr().err
    assert "holds no judgments" in err and len(err.strip().splitlines()) == 1
    assert main(["--store", db, "bench-quality", "--data", "nonsense"]) == 2
