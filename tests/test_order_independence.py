"""AlpacaEval results do not depend on the order of the records: the same judgments, in any order (of the list, of
the store, of the rows of an annotations file), give byte-identical summaries and leaderboards, points and intervals.

The real data is the published AlpacaEval 2.0 validation set (../shared/validation/alpaca_eval, read at run time and
written out in the official layout in a temporary folder); those tests are skipped when it is missing.
"""

from __future__ import annotations

import csv
import json
import random
import zlib
from collections import defaultdict
from pathlib import Path

import pytest

from lioneval.benchmarks.alpaca_eval import AlpacaEval, load_annotations, question_id
from lioneval.types import Answer, Game, Judgment, Question

FIX = Path(__file__).parent / "fixtures" / "alpaca_eval"
VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "validation" / "alpaca_eval"
BASELINE = "gpt4_1106_preview"
ROUNDS = 200


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    # The default LC data comes from the Hugging Face cache; keep the user's real cache out of the tests.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def _dump(summaries: dict) -> str:
    return json.dumps({m: {"metrics": {k: e.model_dump(mode="json") for k, e in s.metrics.items()},
                           "counts": s.counts, "meta": s.meta} for m, s in summaries.items()}, sort_keys=True)


def _shuffled(items, seed):
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


# --------------------------------------------------------------------------------------------------------------------
# Small cases (no validation data needed)


def _own_run(n: int = 60, seed: int = 0):
    """Judgments as lioneval makes them (no file row), with the questions' eval indices and both sides' answers."""
    rng = random.Random(seed)
    questions, answers, judgments = [], [], []
    for i in range(n):
        text = f"Instruction number {i}: explain topic {i}."
        qid = question_id(text)
        questions.append(Question(id=qid, benchmark="alpaca-eval", turns=[text], meta={"eval_idx": i}))
        long = rng.random() < 0.5
        answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model="m",
                              turns=["y" * (400 + (600 if long else 0) + rng.randrange(200))]))
        answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model="base", turns=["x" * 500]))
        value = min(max(rng.gauss(0.65 if long else 0.35, 0.25), 0.0), 1.0)
        judgments.append(Judgment(question_id=qid, benchmark="alpaca-eval", judge="j", model="m", kind="pairwise",
                                  baseline="base", value=value, games=[Game(value=value)]))
    return questions, answers, judgments


def test_own_judgments_in_any_order_give_identical_summaries():
    questions, answers, judgments = _own_run()
    bench = AlpacaEval(baseline="base")
    ref = bench.summarize(judgments, answers, questions=questions, rounds=ROUNDS, seed=3)
    lc = ref["m"].metrics["length_controlled_winrate"]
    assert lc.ci_low is not None and lc.ci_low < lc.ci_high  # 60 questions: the fallback GLM gets an interval
    assert (lc.method, lc.unit, lc.rounds, lc.seed) == ("bootstrap-percentile(glm-lc)", "question", ROUNDS, 3)
    for k in range(3):
        again = AlpacaEval(baseline="base").summarize(
            _shuffled(judgments, k), _shuffled(answers, k + 10), questions=_shuffled(questions, k + 20),
            rounds=ROUNDS, seed=3,
        )
        assert _dump(again) == _dump(ref)


def test_demo_sized_lc_is_the_same_in_every_order_and_claims_no_interval():
    # Six judgments, as in the demo (no df_gamed.csv: fallback GLM): the value once depended on their order.
    questions, answers, judgments = _own_run(n=6, seed=1)
    values = set()
    for k in range(6):
        out = AlpacaEval(baseline="base").summarize(_shuffled(judgments, k), _shuffled(answers, k),
                                                    questions=questions, rounds=ROUNDS, seed=0)
        lc = out["m"].metrics["length_controlled_winrate"]
        values.add(_dump(out))
        assert lc.ci_low is None and lc.ci_high is None and lc.se is None and not lc.reliable
        assert "minimum" in lc.meta["note"] and "official_se" in lc.meta
        assert lc.meta["comparable"] is False
    assert len(values) == 1


def test_annotation_file_rows_in_any_order(tmp_path):
    # The fixture's annotations file, rows shuffled: same summaries once the eval set gives every row its index.
    rows = json.loads((FIX / "annotations.json").read_text())
    ref_bundle = load_annotations(FIX / "annotations.json", judge="toy_annotator")
    bench_args = {"lc_data": FIX / "lc"}
    ref = AlpacaEval(FIX / "model_outputs.json", **bench_args).summarize(
        ref_bundle.judgments, ref_bundle.answers, rounds=ROUNDS)
    for k in range(3):
        path = tmp_path / f"shuffled{k}.json"
        path.write_text(json.dumps(_shuffled(rows, k)))
        b = load_annotations(path, judge="toy_annotator")
        got = AlpacaEval(FIX / "model_outputs.json", **bench_args).summarize(
            _shuffled(b.judgments, k), _shuffled(b.answers, k), rounds=ROUNDS)
        assert _dump(got) == _dump(ref)


def test_without_an_eval_index_the_lc_is_not_comparable_and_not_guessed_from_order():
    bundle = load_annotations(FIX / "annotations.json", judge="toy_annotator")
    outs = []
    for k in range(3):
        bench = AlpacaEval(lc_data=FIX / "lc")  # no eval set: rows have no eval index
        outs.append(bench.summarize(_shuffled(bundle.judgments, k), bundle.answers, rounds=ROUNDS))
    assert len({_dump(o) for o in outs}) == 1
    lc = outs[0]["tiny-model"].metrics["length_controlled_winrate"]
    assert lc.meta["comparable"] is False and "eval index" in lc.meta["note"]
    assert outs[0]["tiny-model"].counts["lc_no_eval_index"] == 6


# --------------------------------------------------------------------------------------------------------------------
# The published validation data


def _write_official(root: Path, order_seed: int | None) -> dict[str, Path]:
    """Annotation files per model (placeholder outputs of the recorded lengths), the eval set and the LC folder;
    with ``order_seed`` the rows of every annotations file are shuffled."""
    eval_set = [json.loads(s) for s in (VALIDATION / "eval_set.jsonl").read_text().splitlines() if s.strip()]
    ref = root / BASELINE / "model_outputs.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": e["instruction"], "output": "x" * e["len_reference"],
                                "generator": BASELINE, "dataset": e["dataset"]} for e in eval_set]))
    by_model = defaultdict(list)
    for line in (VALIDATION / "annotations.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            by_model[r["model"]].append(r)
    files = {}
    for model, rs in sorted(by_model.items()):
        rs.sort(key=lambda r: r["row"])
        if order_seed is not None:
            rs = _shuffled(rs, zlib.crc32(f"{order_seed}:{model}".encode()))
        path = root / "results" / model / "annotations.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps([{
            "instruction": eval_set[r["eval_idx"]]["instruction"], "output_1": "x" * r["len_1"],
            "output_2": ("x" if r.get("identical_outputs") else "y") * r["len_2"], "generator_1": r["generator_1"],
            "generator_2": r["generator_2"], "annotator": r["annotator"], "preference": r["preference"],
            "dataset": r["dataset"]} for r in rs]))
        files[model] = path
    lc = root / "lc"
    lc.mkdir()
    (lc / "instruction_difficulty.csv").write_text((VALIDATION / "instruction_difficulty_recovered.csv").read_text())
    (lc / "df_gamed.csv").write_text((VALIDATION / "df_gamed_calibrated.csv").read_text())
    return {"eval_set": ref, "lc": lc, **files}


def _expected() -> dict[str, dict[str, str]]:
    with open(VALIDATION / "expected.csv", newline="") as fh:
        return {r["model"]: r for r in csv.DictReader(fh)}


needs_validation = pytest.mark.skipif(not (VALIDATION / "annotations.jsonl").is_file(),
                                       reason=f"AlpacaEval validation data not found at {VALIDATION}")


@needs_validation
def test_validation_judgments_shuffled_give_identical_summaries(tmp_path):
    expected = _expected()
    dumps = []
    for k, order_seed in enumerate((None, 11)):
        paths = _write_official(tmp_path / f"v{k}", order_seed)
        judgments, answers = [], []
        for model in expected:
            b = load_annotations(paths[model], model=model)
            judgments += b.judgments
            answers += b.answers
        if order_seed is not None:
            judgments, answers = _shuffled(judgments, order_seed), _shuffled(answers, order_seed + 1)
        bench = AlpacaEval(paths["eval_set"], lc_data=paths["lc"],
                           weights=VALIDATION / "glm_weights_published.csv")
        out = bench.summarize(judgments, answers, rounds=ROUNDS, seed=5)
        # claude-2 once scored 35.05 instead of 28.16 (and stayed "comparable") when its rows came in another order
        lc = out["claude-2"].metrics["length_controlled_winrate"]
        assert lc.value == pytest.approx(float(expected["claude-2"]["length_controlled_winrate"]), abs=0.25)
        assert lc.meta["comparable"] is True
        assert lc.ci_low < lc.value < lc.ci_high and lc.se == lc.meta["official_se"]
        assert (lc.method, lc.unit, lc.rounds, lc.seed) == ("bootstrap-percentile(glm-lc)", "question", ROUNDS, 5)
        dumps.append(_dump(out))
    assert dumps[0] == dumps[1]


@needs_validation
def test_validation_leaderboards_from_stores_filled_in_different_orders(tmp_path):
    from lioneval.imports import import_official
    from lioneval.leaderboard import leaderboard
    from lioneval.store import RunStore

    models = ["claude-2", "phi-2", "gpt4_0613_concise", "alpaca-7b_verbose"]  # two of them with missing rows
    boards = []
    for k, order_seed in enumerate((None, 7)):
        paths = _write_official(tmp_path / f"v{k}", order_seed)
        with RunStore(tmp_path / f"s{k}.db") as st:
            for model in (models if order_seed is None else _shuffled(models, order_seed)):
                import_official(st, "alpaca-eval", paths[model], model=model)
            board = leaderboard(st, "alpaca-eval", rounds=ROUNDS, seed=1, data=str(paths["eval_set"]),
                                settings={"lc_data": str(paths["lc"])})
        for row in board:  # the leaderboard carries no file paths; keep it that way for the comparison
            assert str(tmp_path) not in json.dumps(row)
        boards.append(json.dumps(board, sort_keys=True))
    assert boards[0] == boards[1]
    rows = {r["model"]: r for r in json.loads(boards[0])}
    expected = _expected()
    for model in models:
        lc = rows[model]["length_controlled_winrate"]
        assert lc["value"] == pytest.approx(float(expected[model]["length_controlled_winrate"]), abs=0.25)
        assert lc["lower"] < lc["value"] < lc["upper"] and lc["comparable"] is True
