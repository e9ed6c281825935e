"""Nothing half-done passes as done: a run whose judge leaves judgments unanswered (or answers garbage) exits 3,
stores its reports marked incomplete with what is missing and how to finish, and no decision uses them; rerunning
the same command once the judge is well makes only the missing calls and completes it."""

from __future__ import annotations

import json
import re

import pytest

from lioneval.cli import main
from lioneval.store import RunStore
from lioneval.testing.openai_server import Faults, ScriptedServer
from lioneval.testing.scripted import ScriptedBackend
from lioneval.trainers.promotion import PromotionPolicy, promote
from lioneval.types import RunSpec


@pytest.fixture(autouse=True)
def _no_key_needed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "unused")


def _rating(req: dict) -> str:
    return f"Fine. Rating: [[{3 + len(req['messages'][-1]['content']) % 5}]]"


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_unanswered_judgments_exit_3_and_a_rerun_finishes_with_only_the_missing_calls(toy, tmp_path, capsys):
    db = tmp_path / "s.db"
    failing = {0, 7}  # 2 of the 12 questions (17%): the judge fails every attempt at them

    def script(request: dict, attempt: int) -> str | None:
        m = re.search(r"Question: What is (\d+) \+", request["messages"][-1]["content"])
        return "server_error" if m and int(m.group(1)) in failing else None

    with ScriptedServer(_rating, faults=Faults(script=script)) as server:
        spec_yaml = tmp_path / "judge.yaml"
        spec_yaml.write_text(f"spec: openai-compatible:judge@{server.base_url}\nmax_retries: 1\n")
        args = ["--store", str(db), "run", "--policy", "scripted:echo", "--bench", "toy", "--judge", str(spec_yaml),
                "--json"]
        code, out, err = _cli(capsys, *args)
        assert code == 3, err
        assert "incomplete" in err and "rerun the same command" in err and "Traceback" not in err
        (rep,) = json.loads(out)["reports"]
        assert rep["complete"] is False and rep["counts"]["unanswered"] == 2 and rep["counts"]["requested"] == 12
        assert any("2 of 12 judgments were never answered" in why for why in rep["incomplete"])
        assert rep["meta"]["eligible_for_promotion"] is False
        run_key = json.loads(out)["run"]
        with RunStore(db) as st:
            assert st.run_status(run_key)[0] == "incomplete"
            assert st.reports(run=run_key)[0].complete is False
        code, out, _ = _cli(capsys, "--store", str(db), "runs")
        assert f"{run_key}  incomplete" in out

        # the judge is well again: the same command asks only for the 2 missing judgments
        first = len(server.chat_requests())
        server.faults = Faults()
        code, out, err = _cli(capsys, *args)
        assert code == 0, err
        assert len(server.chat_requests()) - first == 2
        (rep,) = json.loads(out)["reports"]
        assert rep["complete"] is True and rep["counts"]["unanswered"] == 0 and rep["metrics"]["mean"]["n"] == 12
        with RunStore(db) as st:
            assert st.run_status(run_key)[0] == "complete"


def test_an_incomplete_report_is_not_promoted(toy, tmp_path):
    from lioneval.pipeline import RunConfig, run

    with ScriptedServer(lambda req: "no verdict here") as server, RunStore(tmp_path / "s.db") as st:
        judge = f"openai-compatible:judge@{server.base_url}"
        for step in (10, 20):
            spec = RunSpec(model=f"dpo-step{step}", stage="dpo", step=step)
            result = run(RunConfig(bench=("toy",), judge=judge, limit=5), st, backend=ScriptedBackend("echo"),
                         spec=spec)
            assert not result.complete
        decision = promote(st, "dpo", PromotionPolicy(weights={"toy/mean": 1.0}), mark=False)
        assert not decision.promoted
        assert any("incomplete evaluation" in why for why in decision.reasons)
        assert st.promotions() == []


def test_a_down_judge_leaves_an_incomplete_run_not_a_crash(toy, tmp_path, capsys):
    db = tmp_path / "s.db"
    code, out, err = _cli(capsys, "--store", str(db), "run", "--policy", "scripted:echo", "--bench", "toy",
                          "--limit", "3", "--judge", "openai-compatible:judge@http://127.0.0.1:9/v1")
    assert code == 3, err
    assert "Traceback" not in err and "never answered" in err or "no judgment could be scored" in err
    with RunStore(db) as st:
        (spec,) = st.runs()
        assert st.run_status(spec.key)[0] == "incomplete"
        assert st.reports(run=spec.key)[0].complete is False
