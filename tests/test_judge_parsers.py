"""Verdict parsers: self-written samples of each protocol, and agreement with real published MT-Bench judgments."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from lioneval.judges.parsers import (
    AMBIGUOUS,
    MALFORMED,
    MISSING_IDS,
    NO_LOGPROBS,
    NO_VERDICT,
    OUT_OF_RANGE,
    PAIRWISE_LABELS,
    ParseResult,
    needs_followup,
    parse_alpaca_logprobs,
    parse_alpaca_ranking,
    parse_mtbench_pairwise,
    parse_pairwise_verdict,
    parse_rating,
    parser_for,
)

FIX = Path(__file__).parent / "fixtures" / "judges"
VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "validation" / "mt_bench"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- MT-Bench ratings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", _rows(FIX / "rating_outputs.jsonl"), ids=lambda r: r["text"][:40])
def test_rating_samples(row):
    result = parse_rating(row["text"])
    assert result.value == row["value"]
    assert result.code == row["code"]
    assert result.ok == (row["value"] is not None)
    if not result.ok:
        assert result.error


def test_rating_out_of_range_says_why():
    for text, label in (("Rating: [[0]]", "0"), ("Rating: [[11]]", "11"), ("Rating: [[10.5]]", "10.5")):
        r = parse_rating(text)
        assert r.value is None and r.code == OUT_OF_RANGE
        assert r.label == label and "outside the 1-10 scale" in r.error


def test_rating_multiple_rules():
    text = "Draft score [[4]]. After re-reading: Rating: [[7]]"
    assert parse_rating(text).value == 4  # FastChat's rule: the first match
    assert parse_rating(text, multiple="last").value == 7
    amb = parse_rating(text, multiple="fail")
    assert amb.code == AMBIGUOUS and "[[4]]" in amb.error and "[[7]]" in amb.error
    assert parse_rating("Rating: [[7]] ... so [[7]]", multiple="fail").value == 7


def test_rating_prefers_double_brackets_over_citations():
    text = "See [3] for the definition. The answer is correct. Rating: [[9]]"
    assert parse_rating(text).value == 9


def test_rating_decimal_forms_and_labels():
    assert parse_rating("[[8.5]]") == ParseResult(value=8.5, label="8.5")
    assert parse_rating("[[8.]]") == ParseResult(value=8.0, label="8")
    assert parse_rating("[[7.0]]").label == "7"


def test_rating_custom_scale():
    assert parse_rating("[[0]]", low=0, high=5).value == 0
    assert parse_rating("[[6]]", low=0, high=5).code == OUT_OF_RANGE


def test_rating_none_input():
    assert parse_rating(None).code == NO_VERDICT


# --- pairwise ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", _rows(FIX / "arena_outputs.jsonl"), ids=lambda r: r["text"][:40])
def test_arena_samples(row):
    result = parse_pairwise_verdict(row["text"])
    assert result.label == row["label"]
    assert result.code == row["code"]
    if row["label"]:
        assert result.label in PAIRWISE_LABELS
        assert result.value == {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}[row["label"]]


@pytest.mark.parametrize(
    "spelling,label",
    [
        ("A>>B", "A>>B"),
        ("B<<A", "A>>B"),
        ("A>B", "A>B"),
        ("B<A", "A>B"),
        ("A=B", "A=B"),
        ("B=A", "A=B"),
        ("A==B", "A=B"),
        ("B>A", "B>A"),
        ("A<B", "B>A"),
        ("B>>A", "B>>A"),
        ("A<<B", "B>>A"),
    ],
)
def test_arena_mirrored_spellings(spelling, label):
    assert parse_pairwise_verdict(f"Final verdict: [[{spelling}]]").label == label


def test_arena_same_verdict_in_two_spellings_is_not_ambiguous():
    assert parse_pairwise_verdict("[[A>B]] ... i.e. [[B<A]]").label == "A>B"


def test_arena_other_brackets_are_ignored():
    assert parse_pairwise_verdict("Score [[8]]; verdict [[B>A]]").label == "B>A"


def test_arena_followup_only_when_no_verdict():
    assert needs_followup(parse_pairwise_verdict("I need more time to think."))
    assert needs_followup(parse_pairwise_verdict(""))
    assert not needs_followup(parse_pairwise_verdict("[[A>B]] or [[B>A]]"))
    assert not needs_followup(parse_pairwise_verdict("[[A>A]]"))
    assert not needs_followup(parse_pairwise_verdict("[[A>B]]"))
    # after the follow-up, the two outputs are read together (as Arena-Hard does)
    assert parse_pairwise_verdict("I need more time.\nFinal verdict: [[A=B]]").label == "A=B"


def test_arena_malformed():
    r = parse_pairwise_verdict("[[A>A]]")
    assert r.code == MALFORMED and "[[A>A]]" in r.error


@pytest.mark.parametrize("row", _rows(FIX / "mtbench_pairwise_outputs.jsonl"), ids=lambda r: r["text"][:40])
def test_mtbench_pairwise_samples(row):
    result = parse_mtbench_pairwise(row["text"])
    assert result.label == row["label"]
    assert result.code == row["code"]


def test_mtbench_pairwise_values_and_case():
    assert parse_mtbench_pairwise("[[A]]").value == 1.0
    assert parse_mtbench_pairwise("[[b]]").value == 0.0
    assert parse_mtbench_pairwise("[[ C ]]").value == 0.5
    assert parse_mtbench_pairwise("[[A]] [[A]]").label == "A"


def test_parser_for():
    assert parser_for("[[rating]]") is parse_rating
    assert parser_for("[[A]]") is parse_mtbench_pairwise
    assert parser_for("[[A>B]]") is parse_pairwise_verdict
    assert parser_for("ranking") is parse_alpaca_ranking
    with pytest.raises(ValueError, match="parse_alpaca_logprobs"):
        parser_for("logprob")


# --- AlpacaEval weighted -----------------------------------------------------------------------------------------


def test_alpaca_preference_formula():
    lp_m, lp_big = math.log(0.2), math.log(0.6)
    r = parse_alpaca_logprobs([{"M": lp_big, "m": lp_m, "The": -5.0}])
    assert r.ok and r.label == "M"
    assert r.value == pytest.approx(1 + 0.6 / 0.8)
    # alpaca_eval writes the same thing as 2 - p(m) / (p(m) + p(M))
    assert r.value == pytest.approx(2 - 0.2 / 0.8)
    assert 1.0 <= r.value <= 2.0


def test_alpaca_only_later_tokens_do_not_count():
    r = parse_alpaca_logprobs([{"m": -0.1, "M": -2.3}, {"M": 0.0}])
    assert r.value == pytest.approx(1 + math.exp(-2.3) / (math.exp(-0.1) + math.exp(-2.3)))
    assert r.label == "m"


def test_alpaca_one_id_missing_is_probability_zero():
    assert parse_alpaca_logprobs([{"m": -0.01, "Based": -6.0}]).value == 1.0
    assert parse_alpaca_logprobs([{"M": -0.01, "Based": -6.0}]).value == 2.0


def test_alpaca_both_missing_is_a_failure_not_a_tie():
    r = parse_alpaca_logprobs([{"The": -0.1, "Based": -2.0}])
    assert r.value is None and r.code == MISSING_IDS and "'The'" in r.error
    assert parse_alpaca_logprobs([{"m": float("-inf"), "M": float("-inf")}]).code == MISSING_IDS


def test_alpaca_case_matters_and_whitespace_does_not():
    r = parse_alpaca_logprobs([{" m": math.log(0.3), "m": math.log(0.1), "M\n": math.log(0.4)}])
    assert r.value == pytest.approx(1 + 0.4 / 0.8)
    # a tokenizer's space marker ("Ġ", "▁") is a leading space, not part of the id
    assert parse_alpaca_logprobs([{"\u2581M": -0.1}]).value == 2.0


def test_alpaca_custom_ids():
    r = parse_alpaca_logprobs([{"x": math.log(0.75), "y": math.log(0.25)}], ids=("x", "y"))
    assert r.value == pytest.approx(1.25) and r.label == "x"
    with pytest.raises(ValueError):
        parse_alpaca_logprobs([{"x": 0.0}], ids=("x", "x"))


@pytest.mark.parametrize("missing", [None, [], [{}]])
def test_alpaca_no_logprobs(missing):
    r = parse_alpaca_logprobs(missing, text="M")
    assert r.value is None and r.code == NO_LOGPROBS
    assert r.error.startswith("backend returned no logprobs") and "'M'" in r.error


def test_alpaca_accepts_a_single_mapping():
    assert parse_alpaca_logprobs({"m": 0.0}).value == 1.0


def test_alpaca_nan_is_malformed():
    assert parse_alpaca_logprobs([{"m": float("nan")}]).code == MALFORMED


def test_alpaca_matches_alpaca_eval_logprob_parser():
    completion_parsers = pytest.importorskip(
        "alpaca_eval.completion_parsers", reason="alpaca-eval is not importable (pip install 'lioneval[alpaca]')"
    )
    cases = [{"m": -0.3, "M": -1.4, "Both": -9.0}, {"M": -0.01, "The": -5.0}, {"m": -2.0, "M": -0.2}]
    for top in cases:
        completion = {
            "logprobs": {"content": [{"top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()]}]}
        }
        (official,) = completion_parsers.logprob_parser(completion, "m", ["m", "M"], is_binarize=False)
        assert parse_alpaca_logprobs([top]).value == pytest.approx(official)


def test_alpaca_binarized_preference():
    # alpaca_eval's logprob_parser with is_binarize (the *_clf_* evaluators): 1 only when the first id is likelier
    assert parse_alpaca_logprobs([{"m": math.log(0.6), "M": math.log(0.4)}], binarize=True).value == 1.0
    assert parse_alpaca_logprobs([{"m": math.log(0.4), "M": math.log(0.6)}], binarize=True).value == 2.0
    assert parse_alpaca_logprobs([{"m": math.log(0.5), "M": math.log(0.5)}], binarize=True).value == 2.0
    assert parse_alpaca_logprobs([{"The": -0.1}], binarize=True).code == MISSING_IDS


def test_alpaca_binarized_matches_alpaca_eval_logprob_parser():
    completion_parsers = pytest.importorskip(
        "alpaca_eval.completion_parsers", reason="alpaca-eval is not importable (pip install 'lioneval[alpaca]')"
    )
    for top in ({"m": -0.3, "M": -1.4}, {"M": -0.01, "The": -5.0}, {"m": -2.0, "M": -0.2}, {"m": -0.7, "M": -0.7}):
        completion = {
            "logprobs": {"content": [{"top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()]}]}
        }
        (official,) = completion_parsers.logprob_parser(completion, "m", ["m", "M"], is_binarize=True)
        assert parse_alpaca_logprobs([top], binarize=True).value == official


# --- AlpacaEval ranking ------------------------------------------------------------------------------------------

RANK_1 = "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
RANK_2 = "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"


@pytest.mark.parametrize(
    "text,value,label",
    [
        (RANK_1, 1.0, "model_1"),
        (RANK_2, 2.0, "model_2"),
        ("  " + RANK_2 + "\n", 2.0, "model_2"),
        ('[{"model": "model_2", "rank": 1}, {"model": "model_1", "rank": 2}]', 2.0, "model_2"),  # JSON, other order
        ("[{'model': 'model_1', 'rank': 1.0}, {'model': 'model_2', 'rank': 2.0}]", 1.0, "model_1"),
        ("[{'model': 'model_1', 'rank': 2}]", 2.0, "not model_1"),  # only output_1's rank: enough, as officially
        ("Here is my ranking:\n```python\n" + RANK_2 + "\n```\nModel 2 explains more.", 2.0, "model_2"),
        ("Ranking: " + RANK_1 + " and again, to be sure: " + RANK_1, 1.0, "model_1"),
        ('{"ordered_models": [{"model": "model_1", "rank": 1}, {"model": "model_2", "rank": 2}]}', 1.0, "model_1"),
        # the format example the prompt shows is no ranking; the judge's own list after it is
        ("[{'model': <model-name>, 'rank': <model-rank>}]\n" + RANK_2, 2.0, "model_2"),
        ("[{'model': ' model_1 ', 'rank': 1}, {'model': 'model_2', 'rank': 2}]", 1.0, "model_1"),
    ],
)
def test_alpaca_ranking(text, value, label):
    r = parse_alpaca_ranking(text)
    assert r.ok and (r.value, r.label) == (value, label)


@pytest.mark.parametrize(
    "text,code",
    [
        (None, NO_VERDICT),
        ("   ", NO_VERDICT),
        ("Model 1 is better.", NO_VERDICT),
        ("[{'model': <model-name>, 'rank': <model-rank>}]", NO_VERDICT),
        ("[1, 2]", NO_VERDICT),
        ("[{'model': 'model_1'}, {'model': 'model_2', 'rank': 1}]", NO_VERDICT),  # an entry without a rank
        ("[{'model': 'model_2', 'rank': 1}, {'model': 'model_3', 'rank': 2}]", MISSING_IDS),
        ("[{'model': 'Model_1', 'rank': 1}]", MISSING_IDS),  # names are exact
        ("[{'model': 'model_1', 'rank': 3}, {'model': 'model_2', 'rank': 1}]", OUT_OF_RANGE),
        ("[{'model': 'model_1', 'rank': '1'}]", OUT_OF_RANGE),
        ("[{'model': 'model_1', 'rank': True}]", OUT_OF_RANGE),
        ("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 1}]", AMBIGUOUS),  # a tie
        ("[{'model': 'model_1', 'rank': 1}, {'model': 'model_1', 'rank': 2}]", AMBIGUOUS),
        ("First " + RANK_1 + ", on second thought " + RANK_2, AMBIGUOUS),
    ],
)
def test_alpaca_ranking_failures(text, code):
    r = parse_alpaca_ranking(text)
    assert r.value is None and r.code == code and r.error


def test_alpaca_ranking_custom_name():
    # the *_fn evaluators name output_1 "m" (its ranking_parser's model_1_name); "M" is the other output
    text = '[{"model": "M", "rank": 1}, {"model": "m", "rank": 2}]'
    assert parse_alpaca_ranking(text, model_1="m").value == 2.0
    assert parse_alpaca_ranking(text, model_1="m").label == "M"
    assert parse_alpaca_ranking(text).code == MISSING_IDS


def test_alpaca_ranking_never_evaluates_code():
    r = parse_alpaca_ranking("[{'model': __import__('os').getcwd(), 'rank': 1}]")
    assert r.value is None and r.code == NO_VERDICT


def test_alpaca_ranking_matches_alpaca_eval_ranking_parser():
    completion_parsers = pytest.importorskip(
        "alpaca_eval.completion_parsers", reason="alpaca-eval is not importable (pip install 'lioneval[alpaca]')"
    )
    # where the official parser reads a verdict, the same one; a tie it reads for output_1 is ambiguous here
    for text in (RANK_1, RANK_2, "[{'model': 'model_1', 'rank': 2}]", '[{"model": "model_1", "rank": 1.0}]'):
        (official,) = completion_parsers.ranking_parser(text)
        assert parse_alpaca_ranking(text).value == official
    for text in ("[{'model': 'model_1', 'rank': 3}]", "[{'model': 'model_2', 'rank': 1}]"):
        (official,) = completion_parsers.ranking_parser(text)
        assert math.isnan(official) and parse_alpaca_ranking(text).value is None


# --- real MT-Bench judgments (../shared/validation, never copied into the repo) -----------------------------------


def _validation(name: str) -> list[dict]:
    path = VALIDATION / name
    if not path.is_file():
        pytest.skip(f"{path} is not present (real validation data lives beside the repo in shared/validation)")
    return _rows(path)


def test_real_gpt4_judgments_agree_with_recorded_scores():
    rows = _validation("gpt4_single_judgments.jsonl")
    outcome: Counter[str] = Counter()
    disagreements = []
    for row in rows:
        result = parse_rating(row["judgment"])
        if row["score"] == -1:  # FastChat could not parse it
            ok = not result.ok
            outcome["failure as recorded" if ok else "parsed a recorded failure"] += 1
        else:
            ok = result.value == row["score"]
            outcome["same score" if ok else "different score"] += 1
        if not ok:
            disagreements.append((row["question_id"], row["model"], row["turn"], row["score"], result))
    agreement = 1 - len(disagreements) / len(rows)
    print(f"\nMT-Bench GPT-4 judgments: {len(rows)} rows, agreement {agreement:.2%}, {dict(outcome)}")
    assert len(rows) > 5000
    assert disagreements == [], disagreements[:10]


def test_real_weak_judge_failures():
    rows = _validation("weak_judge_parse_failures.jsonl")
    outcome: Counter[str] = Counter()
    for row in rows:
        result = parse_rating(row["judgment"])
        if row["score"] == -1:
            assert not result.ok, row["judgment"][-200:]
            assert result.code == NO_VERDICT
        elif not 1 <= row["score"] <= 10:
            # FastChat read these as 0 from code such as `array[0]` (its single-bracket fallback): out of range
            # there, and not a rating at all here. Either way they must be failures, never a score.
            assert not result.ok, row["judgment"][-200:]
            assert result.code in (OUT_OF_RANGE, NO_VERDICT)
        else:
            assert result.value == row["score"], row["judgment"][-200:]
        outcome[f"{'ok' if result.ok else result.code} (recorded {row['score'] if row['score'] < 1 else '1-10'})"] += 1
    print(f"\nweak-judge outputs: {len(rows)} rows, {dict(outcome)}")
    assert outcome["no_verdict (recorded -1)"] == sum(r["score"] == -1 for r in rows)


@pytest.mark.parametrize("text, label", [
    ("first [[A>B]], on reflection [[B>>A]]", "B>>A"),  # the last verdict counts
    ("My final verdict is [[a = b]].", "A=B"),
    ("no double brackets, final: [B>A]", "B>A"),  # single brackets only when there is no double-bracket verdict
    ("[[A>B]] and a citation [B>A]", "A>B"),
    ("mirrored [[B<<A]]", "A>>B"),
])
def test_arena_hard_v2_reads_the_last_verdict(text, label):
    res = parse_pairwise_verdict(text, rule="last")
    assert res.label == label and res.error is None


@pytest.mark.parametrize("text, code", [("", NO_VERDICT), ("no label at all", NO_VERDICT), ("[[A>C]]", NO_VERDICT)])
def test_arena_hard_v2_failures_are_values(text, code):
    res = parse_pairwise_verdict(text, rule="last")
    assert res.value is None and res.code == code
