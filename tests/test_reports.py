"""Reports are made one way (``lioneval.pipeline.report``) from the records a run links, whether by `run`, `rejudge`
or `report --recompute`; checks read the report's summary and replace their earlier results; compare pairs each
run's own answers. Everything here runs in-process on scripted backends (no torch, no server)."""

from __future__ import annotations

import json

import pytest

from lioneval.cli import main
from lioneval.compare import compare_runs
from lioneval.judges.judge import make_judge
from lioneval.pipeline import DEMO_DATA, RunConfig, recompute, rejudge, run
from lioneval.store import RunStore
from lioneval.testing.scripted import ScriptedBackend, script
from lioneval.trainers.promotion import PromotionPolicy, promote
from lioneval.types import RunSpec


@script("harsh-judge")
def _harsh(chat, sampling) -> str:
    return "Too short. Rating: [[2]]"


@script("mute-judge")
def _mute(chat, sampling) -> str:
    return "I cannot decide."


def _run(store: RunStore, step: int = 10, judge: str = "scripted:fair-judge", **cfg) -> str:
    spec = RunSpec(model=f"dpo-step{step}", stage="dpo", step=step)
    result = run(RunConfig(bench=cfg.pop("bench", ("toy",)), judge=judge, **cfg), store,
                 backend=ScriptedBackend("echo"), spec=spec)
    return result.run


def test_lc_gap_check_reads_the_reports_own_lc(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        cfg = RunConfig(bench=("alpaca-eval",), judge="scripted:fair-judge",
                        data={"alpaca-eval": str(DEMO_DATA / "alpaca_eval/reference_outputs.json")},
                        baseline={"alpaca-eval": "demo-baseline"})
        (rep,) = run(cfg, st, backend=ScriptedBackend("echo"), spec=RunSpec(model="m")).reports
        gap = next(c for c in st.checks(run=rep.run) if c.name == "lc_gap")
    lc = rep.metrics["length_controlled_winrate"].value
    assert gap.meta["length_controlled_winrate"] == lc
    assert gap.value == pytest.approx(rep.metrics["win_rate"].value - lc)
    assert gap.judge == rep.judge


def test_ensemble_rerun_returns_its_cached_judgments(toy, tmp_path):
    judge = make_judge("ensemble:[scripted:fair-judge; scripted:harsh-judge]")
    with RunStore(tmp_path / "s.db") as st:
        run_key = _run(st, judge="ensemble:[scripted:fair-judge; scripted:harsh-judge]")
        spec = st.run(run_key)
        qs = st.linked(run_key, "questions")
        answers = st.linked(run_key, "answers")
        again = judge.run_answers("toy", qs, answers, [], st)
    assert again.calls == 0 and len(again.judgments) == len(answers) == 12
    assert {j.model for j in again.judgments} == {spec.model}


def test_reward_model_rerun_returns_its_cached_judgments(toy, tmp_path):
    pytest.importorskip("torch", reason="needs the train extra")
    from lioneval.testing.tiny import make_tiny_reward_model

    rm = make_tiny_reward_model(tmp_path / "rm")
    judge = make_judge(f"reward-model:{rm}")
    with RunStore(tmp_path / "s.db") as st:
        run_key = _run(st, judge=f"reward-model:{rm}")
        qs, answers = st.linked(run_key, "questions"), st.linked(run_key, "answers")
        first = st.reports(run=run_key)[0]
        again = judge.run_answers("toy", qs, answers, [], st)
        assert again.cached == 12 and again.judged == 0 and len(again.judgments) == 12
        (rep,) = recompute(st, run_key)
    assert rep.to_json() == first.to_json()


def test_a_recheck_replaces_the_old_result_and_promotion_follows_it(toy, tmp_path):
    strict = {"duplicate_share_flag": 0.01, "duplicate_min_group": 1}
    with RunStore(tmp_path / "s.db") as st:
        run_key = _run(st, checks=None)
        (rep,) = recompute(st, run_key, checks=strict)
        assert rep.meta["eligible_for_promotion"] is False
        assert any(c.status == "flag" for c in st.checks(run=run_key))
        refused = promote(st, "dpo", PromotionPolicy(weights={"toy/mean": 1.0}), mark=False)
        assert not refused.promoted and "flag" in " ".join(refused.reasons)

        (rep,) = recompute(st, run_key)  # the default thresholds again
        assert rep.meta["eligible_for_promotion"] is True
        dup = [c for c in st.checks(run=run_key) if c.name == "duplicates"]
        assert [c.status for c in dup] == ["pass"]  # replaced, not kept beside the new result
        decision = promote(st, "dpo", PromotionPolicy(weights={"toy/mean": 1.0}), mark=False)
    assert [c.run for c in decision.promoted] == [run_key]


def test_rejudge_writes_reports_that_promotion_uses(toy, tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        keys = [_run(st, step) for step in (10, 20)]
        for k in keys:
            reports, _ = rejudge(st, k, "scripted:harsh-judge")
            assert reports[0].metrics["mean"].value == 2.0 and reports[0].run == k
        decision = promote(st, "dpo", PromotionPolicy(weights={"toy/mean": 1.0}, judge="scripted:harsh-judge"),
                           mark=False)
    assert decision.promoted and decision.promoted[0].score == pytest.approx(2.0)


def test_a_report_covers_exactly_its_runs_questions_and_settings(toy, tmp_path, capsys):
    db = tmp_path / "s.db"
    with RunStore(db) as st:
        five = _run(st, limit=5)
        ten = _run(st, limit=10)
        short = _run(st, limit=10, max_new_tokens=3)  # same checkpoint, other generation settings
        r5, r10, rs = (st.reports(run=k)[0] for k in (five, ten, short))
        assert (r5.metrics["mean"].n, r10.metrics["mean"].n, rs.metrics["mean"].n) == (5, 10, 10)
        assert rs.counts["truncated_answers"] == 10 and r10.counts["truncated_answers"] == 0
        before = r5.to_json()
    backend = ScriptedBackend("echo")
    with RunStore(db) as st:  # the first command again, fully cached: no call, the same report byte for byte
        spec = RunSpec(model="dpo-step10", stage="dpo", step=10)
        judge = make_judge("scripted:fair-judge")
        result = run(RunConfig(bench=("toy",), judge="scripted:fair-judge", limit=5), st, backend=backend,
                     spec=spec, judge=judge)
        assert backend.calls == 0 and judge.backend.calls == 0
        assert result.reports[0].to_json() == before == st.reports(run=five)[0].to_json()

        rows = compare_runs(st, ten, short)
        assert len(rows) == 1 and rows[0]["n"] == 10
        assert rows[0]["a"] == pytest.approx(r10.metrics["mean"].value)
        assert rows[0]["b"] == pytest.approx(rs.metrics["mean"].value)
        assert rows[0]["diff"] != 0  # the two runs' own answers, not the model compared with itself

        # a judge whose every verdict fails does not stop the comparison by the judges that worked
        for k in (ten, short):
            (mute,), _ = rejudge(st, k, "scripted:mute-judge")
            assert not mute.complete and not mute.metrics and mute.counts["failed"] == 10
            assert any("could not be read" in why for why in mute.incomplete)
        assert len(compare_runs(st, ten, short)) == 1
    assert main(["--store", str(db), "compare", ten, short, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] == 10


def test_a_limited_run_stores_only_its_baseline_answers(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        cfg = RunConfig(bench=("arena-hard",), judge="scripted:fair-judge", limit=2,
                        data={"arena-hard": str(DEMO_DATA / "arena_hard")}, baseline={"arena-hard": "demo-baseline"})
        (rep,) = run(cfg, st, backend=ScriptedBackend("echo"), spec=RunSpec(model="m")).reports
        assert len(st.answers(model="demo-baseline")) == 2
        assert rep.counts["questions"] == 2 and "score_style_controlled" in rep.metrics
