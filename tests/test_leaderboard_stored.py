"""The AlpacaEval leaderboard reads stored records as JSON, keeping only the fields its scores use: the same numbers as
the summary of the validated records, and a damaged record is a clear error."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lioneval.benchmarks.alpaca_eval import question_id
from lioneval.checks import audit
from lioneval.cli import main as lioneval
from lioneval.leaderboard import answer_sizes, leaderboard, summarize_store
from lioneval.store import RunStore
from lioneval.types import NULL_MODEL_PREFIX, Answer, Game, Judgment

FIX = Path(__file__).parent / "fixtures" / "alpaca_eval"
SETTINGS = {"lc_data": str(FIX / "lc")}


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def _judgment(qid: str, model: str, value: float | None, *, judge: str = "toy_annotator", **meta) -> Judgment:
    return Judgment(question_id=qid, benchmark="alpaca-eval", judge=judge, model=model, kind="pairwise",
                    baseline="base-model", value=value, games=[Game(value=value, error=None if value is not None
                                                                     else "no verdict")],
                    error=None if value is not None else "no verdict", raw="m" if value else "", meta=meta)


def _fill(store: RunStore) -> None:
    outputs = json.loads((FIX / "model_outputs.json").read_text())
    qids = [question_id(o["instruction"]) for o in outputs]
    judgments, answers = [], []
    for i, qid in enumerate(qids):
        answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model="base-model", turns=["x" * (20 + i)]))
        # "imported": rows of an annotations file (in eval order), one failed
        judgments.append(_judgment(qid, "imported", None if i == 2 else 0.1 * i, row=i, file="annotations.json"))
        answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model="imported", turns=["y" * (5 + 7 * i)],
                              token_counts=[3 + i]))
        # lioneval's own judgments name their templates and carry their eval index
        judgments.append(_judgment(qid, "own", 0.9 - 0.15 * i, eval_idx=i,
                                   templates=["weighted_alpaca_eval_gpt4_turbo@official#abc"]))
        answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model="own", turns=["z" * (40 - 3 * i)],
                              meta={"style": {"token_len": 10 + i}}))
        # a second judge, and the null-model probe (never a contender)
        judgments.append(_judgment(qid, "imported", 0.5 + 0.05 * i, judge="other_annotator", row=i, file="a.json"))
        judgments.append(_judgment(qid, NULL_MODEL_PREFIX + "inject", 1.0, eval_idx=i))
    store.put_answers(answers)
    store.put_judgments(judgments)


def test_stored_leaderboard_equals_the_summary_of_validated_records(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        _fill(st)
        data = str(FIX / "model_outputs.json")
        fast = summarize_store(st, "alpaca-eval", rounds=40, seed=3, data=data, settings=SETTINGS)
        # handing the answers over takes the path through validated Judgment and Answer records
        slow = summarize_store(st, "alpaca-eval", rounds=40, seed=3, data=data, settings=SETTINGS,
                               answers=st.answers(benchmark="alpaca-eval"))
        assert sorted(fast) == sorted(slow) == ["other_annotator", "toy_annotator"]
        for judge in fast:
            assert sorted(fast[judge]) == sorted(slow[judge]) == ["imported", "own"][: len(slow[judge])]
            for model, summary in slow[judge].items():
                got = fast[judge][model]
                assert got.metrics == summary.metrics and got.counts == summary.counts and got.meta == summary.meta
        own = fast["toy_annotator"]["own"]
        assert own.metrics["avg_length"].value == pytest.approx((40 + 37 + 34 + 31 + 28 + 25) / 6)
        assert fast["toy_annotator"]["imported"].counts["failed"] == 1

        board = leaderboard(st, "alpaca-eval", rounds=40, seed=3, data=data, settings=SETTINGS)
        one = leaderboard(st, "alpaca-eval", judge="toy_annotator", rounds=40, seed=3, data=data, settings=SETTINGS)
    assert not any(r["model"].startswith(NULL_MODEL_PREFIX) for r in board)
    assert [r for r in board if r["judge"] == "toy_annotator"] == one
    rows = {(r["judge"], r["model"]): r for r in board}
    assert rows["toy_annotator", "imported"]["avg_tokens"] == pytest.approx(5.5)  # token counts 3..8
    assert rows["toy_annotator", "own"]["avg_tokens"] == pytest.approx(12.5)  # style token_len 10..15
    assert rows["toy_annotator", "own"]["avg_chars"] == pytest.approx(32.5)
    assert rows["toy_annotator", "imported"]["failed"] == 1


def test_answer_sizes_and_record_dicts_read_numbers_in_stored_order(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        _fill(st)
        sizes = answer_sizes(st, "alpaca-eval")
        assert len(sizes) == 18 and sizes[0][1:] == ("base-model", 20, 20, None)
        models = [d["model"] for d in st.record_dicts("judgments", benchmark="alpaca-eval", model=["own", "imported"],
                                                       judge="toy_annotator")]
        assert models == ["imported", "own"] * 6
        assert list(st.record_dicts("judgments", model=[])) == []
        with pytest.raises(ValueError, match="cannot filter judgments on 'value'"):
            next(st.record_dicts("judgments", value=1.0))


@pytest.mark.parametrize("damage", [
    ("judgments", "replace(record, '\"value\":0.1', '\"value\":\"high\"')", "judgment record is damaged"),
    ("judgments", "'{not json'", "judgments record in .* is damaged"),
    ("answers", "replace(record, '\"turns\":[', '\"turns\":\"x\",\"was\":[')", "answer record is damaged"),
])
def test_a_damaged_stored_record_is_a_one_line_error(tmp_path, capsys, damage):
    table, expr, message = damage
    path = tmp_path / "s.db"
    with RunStore(path) as st:
        _fill(st)
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {table} SET record = {expr} WHERE model = 'imported'")
    code = lioneval(["--store", str(path), "leaderboard", "--bench", "alpaca-eval", "--rounds", "10", "--data",
                     str(FIX / "model_outputs.json"), "--lc-data", str(FIX / "lc")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert "lioneval export" in err  # the fix


def test_the_leaderboard_loads_no_cheat_checks_and_hides_the_same_null_models_as_the_probe():
    # The leaderboard CLI starts a process per call: the checks (and what they import) are not part of its start.
    code = ("import sys, lioneval.leaderboard; "
            "print(sorted(m for m in sys.modules if m.startswith('lioneval.checks')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert audit.NULL_MODEL_PREFIX == NULL_MODEL_PREFIX
