"""Adaptive evaluation end to end (lioneval.adaptive): a run judges questions in a seeded order until its question is
settled, stores ordinary judgments that a later full run reuses, records what it stopped at without passing for a
full result (report, leaderboard), answers on the command line, and drives LionEvalCallback in sequential mode
against a scripted judge server that counts the requests it receives."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from lioneval import adaptive as A
from lioneval.cli import main
from lioneval.leaderboard import leaderboard
from lioneval.pipeline import RunConfig, run
from lioneval.store import RunStore
from lioneval.testing.openai_server import ScriptedServer
from lioneval.testing.scripted import ScriptedBackend, script
from lioneval.types import RunSpec, content_hash

SIZE = 120


def _answer(quality: int, tag: str = "") -> object:
    return lambda chat, sampling: f"{chat[-1]['content']} {tag} quality {quality}"


for _q in (3, 5, 6, 8):
    script(f"quality-{_q}", _answer(_q))


def _rating(text: str) -> int:
    """A judge whose rating follows the answer's stated quality, with noise from the question and the answer."""
    found = re.search(r"quality (\d+)", text)
    question = text.split("Answer:")[0]
    noise = int(content_hash(question, 8), 16) % 5 - 2 + int(content_hash(text, 8), 16) % 3 - 1
    return min(10, max(1, (int(found.group(1)) if found else 5) + noise))


@script("quality-judge")
def _judge(chat, sampling) -> str:
    return f"Rating: [[{_rating(chat[-1]['content'])}]]"


def _server_reply(request: dict) -> str:
    return f"Rating: [[{_rating(request['messages'][-1]['content'])}]]"


def _cfg(policy: str, judge: str = "scripted:quality-judge", size: int = SIZE) -> RunConfig:
    return RunConfig(policy=f"scripted:{policy}", bench=("toy",), judge=judge, bench_options={"toy": {"size": size}})


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_clearly_better_run_stops_early_and_a_full_run_judges_only_the_rest(toy, tmp_path):
    with ScriptedServer(_server_reply) as server, RunStore(tmp_path / "s.db") as st:
        judge = f"openai-compatible:judge@{server.base_url}"
        incumbent = run(_cfg("quality-5", judge), st)
        assert len(server.chat_requests()) == SIZE
        res = A.run_until_decided(_cfg("quality-8", judge), st, A.Goal("better", incumbent=incumbent.run))
        (rep,) = res.reports
        rec = rep.meta["adaptive"]
        used = rec["questions_used"]
        assert res.decided and rec["decided"] and rec["verdict"] == "better" and rec["answer"] == "yes"
        assert 10 <= used < SIZE / 2 and len(server.chat_requests()) == SIZE + used
        assert f"decided after {used} of {SIZE} questions" in rec["line"]
        assert rec["alpha"] == 0.05 and rec["margin"] == 0.0 and rec["rule"] == "better"
        assert rec["decision"]["method"] == A.METHOD and rec["decision"]["n"] == used
        assert rec["decision"]["ci_low"] > 0
        # stored as what it is: not complete, not eligible, with the way to finish it
        assert not rep.complete and rep.meta["eligible_for_promotion"] is False
        assert any("rerun without --until-decided" in w for w in rep.incomplete)
        assert rep.counts["questions"] == used and A.settled(rep) is not None
        # the leaderboard does not take it for a full run
        rows = {r["model"]: r for r in leaderboard(st, "toy")}
        assert rows["quality-8"]["reliable"] is False and "judged" in rows["quality-8"]["partial"]
        assert "partial" not in rows["quality-5"]
        # the same settings without --until-decided: the same run, judging only what is missing
        full = run(_cfg("quality-8", judge), st)
        assert full.run == res.run and full.complete
        assert len(server.chat_requests()) == 2 * SIZE and not server.duplicates()
        rows = {r["model"]: r for r in leaderboard(st, "toy")}
        assert "partial" not in rows["quality-8"]


def test_each_question_a_run_can_ask(toy, tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        inc = run(_cfg("quality-5"), st).run
        worse = A.run_until_decided(_cfg("quality-3"), st, A.Goal("better", incumbent=inc, margin=0.5))
        assert worse.outcomes["toy"].answer == "no" and worse.outcomes["toy"].n < SIZE
        same = A.run_until_decided(_cfg("quality-6"), st, A.Goal("not-worse", incumbent=inc, margin=0.5))
        assert same.outcomes["toy"].answer == "yes" and same.reports[0].meta["adaptive"]["verdict"] in (
            "non-inferior", "better")
        width = A.run_until_decided(_cfg("quality-8"), st, A.Goal("width", width=2.0))
        o = width.outcomes["toy"]
        assert o.decided and o.ci_high - o.ci_low < 2.0 and o.n < SIZE
        assert width.reports[0].meta["adaptive"]["decision"] is None


def test_the_budget_caps_judge_calls_and_leaves_the_question_open(toy, tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        inc = run(_cfg("quality-5"), st).run
        res = A.run_until_decided(_cfg("quality-6"), st, A.Goal("better", incumbent=inc, margin=0.0, budget=15))
        assert res.calls <= 15 and not res.decided
        assert "budget spent" in res.stopped["toy"]
        assert A.usable(res.reports[0]) is not None and A.settled(res.reports[0]) is None
        with pytest.raises(Exception, match="undecided") as e:
            res.raise_if_undecided()
        assert getattr(e.value, "exit_code", None) == 3 and "--budget" in e.value.fix


def test_a_race_settles_the_clear_candidates_first_and_spends_the_rest_on_the_close_one(toy, tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        inc = run(_cfg("quality-5"), st).run
        cands = [_cfg(p) for p in ("quality-8", "quality-6", "quality-3")]
        better, close, worse = A.race_until_decided(cands, st, A.Goal("better", incumbent=inc, margin=0.5,
                                                                      budget=200))
        assert better.outcomes["toy"].answer == "yes" and worse.outcomes["toy"].answer == "no"
        n = {name: r.outcomes["toy"].n for name, r in (("better", better), ("close", close), ("worse", worse))}
        assert n["better"] <= 30 and n["worse"] <= 50 and n["close"] > max(n["better"], n["worse"]), n
        assert better.calls + close.calls + worse.calls <= 200
        assert "Holm" in better.stopped["toy"]
        rec = better.reports[0].meta["adaptive"]
        assert rec["decision"]["meta"]["candidates"] == 3 and rec["alpha"] < 0.05


def test_command_line(toy, tmp_path, capsys):
    db = str(tmp_path / "runs.db")
    base = ["--store", db, "run", "--bench", "toy", "--bench-option", f"toy.size={SIZE}",
            "--judge", "scripted:quality-judge"]
    code, out, err = cli(capsys, *base, "--policy", "scripted:quality-5", "--json")
    assert code == 0, err
    inc = json.loads(out)["run"]
    code, out, err = cli(capsys, *base, "--policy", "scripted:quality-8", "--until-decided", "--better-than", inc,
                         "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["decided"] and got["outcomes"]["toy"]["n"] < SIZE and got["judge_calls"] == got["outcomes"]["toy"]["n"]
    code, out, err = cli(capsys, *base, "--policy", "scripted:quality-6", "--until-decided", "--better-than", inc,
                         "--budget", "12")
    assert code == 3 and "undecided" in err and "Traceback" not in err
    code, out, err = cli(capsys, *base, "--policy", "scripted:quality-6", "--margin", "0.1")
    assert code == 2 and "--until-decided" in err and "Traceback" not in err
    code, out, err = cli(capsys, *base, "--policy", "scripted:quality-6", "--until-decided")
    assert code == 2 and "needs one question" in err
    # compare reads the sequential test on two stored runs, without judging
    code, out, err = cli(capsys, "--store", db, "compare", got["run"], inc, "--until-decided", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["decided"] and row["verdict"] == "better" and row["n"] <= row["of"]


# -- in the training loop ---------------------------------------------------------------------------------------------
QUALITY = {1: 5, 2: 8, 3: 7, 4: 3, 5: 3}  # the scripted checkpoints: step -> answer quality


def _policy(checkpoint: str) -> tuple[ScriptedBackend, RunSpec]:
    step = int(Path(checkpoint).name.rpartition("step")[2])
    fn = _answer(QUALITY[step], tag=f"(step {step})")
    return ScriptedBackend(f"step-{step}", fn=fn), RunSpec(model=f"sft-step{step}", stage="sft", step=step)


def test_callback_in_sequential_mode_judges_until_settled(toy, tmp_path):
    pytest.importorskip("transformers", reason="needs the train extra (transformers)")
    from transformers import TrainerControl, TrainerState

    from lioneval.trainers.callback import LionEvalCallback

    db = str(tmp_path / "runs.db")
    out = tmp_path / "sft"
    with ScriptedServer(_server_reply) as server:
        cb = LionEvalCallback({
            "suite": {"bench": ["toy"], "judge": f"openai-compatible:judge@{server.base_url}",
                      "bench_options": {"toy": {"size": SIZE}}},
            "sequential": {"batch": 10}, "patience": 3, "margin": 0.5, "horizon": 10, "store": db},
            stage="sft", links_dir=tmp_path / "links")
        assert isinstance(cb.evaluator, A.SequentialEvaluator)
        cb.evaluator.policy = _policy
        control = TrainerControl()
        for step in QUALITY:
            (out / f"checkpoint-{step}").mkdir(parents=True)
            cb.on_save(SimpleNamespace(output_dir=str(out)), TrainerState(global_step=step), control)
            if control.should_training_stop:
                break
        evs = {e.step: e for e in cb.evaluations}
        assert not any(e.failed for e in evs.values())
        assert evs[2].improved and cb.reference is evs[2]  # better: the new incumbent, its run finished
        assert not evs[3].improved and not evs[4].improved and not evs[5].improved
        assert control.should_training_stop and cb.stopped_at == 5 and "plateau" in cb.stop_reason
        used = {s: evs[s].reports[0].meta["adaptive"]["questions_used"] for s in (3, 4, 5)}
        assert all(10 <= u < SIZE for u in used.values()), used
        # the judge received: every question of step 1 (no incumbent) and step 2 (found better, then finished),
        # and for each later checkpoint only the questions it took to settle
        assert len(server.chat_requests()) == 2 * SIZE + sum(used.values())
        assert len(server.chat_requests()) < 3 * SIZE and not server.duplicates()
        assert evs[2].reports[0].complete and evs[2].decision["verdict"] == "better"
        assert evs[3].decision["method"] == A.METHOD and evs[3].decision["kind"] == "early_stop"
    with RunStore(db, readonly=True) as st:
        stop = st.early_stops()[0]
        assert stop.step == 5 and stop.meta["cause"] == "plateau"
        kept = [c for c in st.checks() if c.name == "early_stopping"]
        assert len(kept) == 4
        # promotion reads the sequential Decisions as it reads the fixed-n ones
        from lioneval.trainers.promotion import early_stop_decisions

        found = early_stop_decisions(st, [evs[s].run for s in (3, 4, 5)])
        assert {d.method for d in found.values()} == {A.METHOD} and len(found) == 3
        assert all(d.incumbent == evs[2].run for d in found.values())
