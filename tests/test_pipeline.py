"""`lioneval run` end to end: a tiny checkpoint built from a config, the bundled question sets in the official
formats, a scripted judge over real HTTP, SQLite; then a rerun that must make no model or judge call."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the train extra (torch, transformers)")

from lioneval.checkpoint import identify  # noqa: E402
from lioneval.cli import main  # noqa: E402
from lioneval.compare import paired_difference  # noqa: E402
from lioneval.pipeline import DEMO_DATA  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import Reply, ScriptedServer  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402


def judge_reply(req: dict):
    text = req["messages"][-1]["content"]
    if req.get("logprobs"):
        return Reply(text="M", top_logprobs=[{"m": math.log(0.35), "M": math.log(0.65)}])
    if "<answer_b>" in text:
        return "Final verdict: [[B>A]]" if len(text) % 2 else "Final verdict: [[A=B]]"
    return f"Rating: [[{3 + len(text) % 5}]]"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("out") / "dpo-step10")


def _run_args(db: Path, ckpt: Path, url: str, *extra: str) -> list[str]:
    return [
        "--store", str(db), "run", "--ckpt", str(ckpt), "--judge", f"openai-compatible:judge@{url}",
        "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--data", f"arena-hard={DEMO_DATA / 'arena_hard'}",
        "--data", f"alpaca-eval={DEMO_DATA / 'alpaca_eval' / 'reference_outputs.json'}",
        "--baseline", "arena-hard=demo-baseline", "--max-new-tokens", "6", "--rounds", "200", "--json", *extra,
    ]


def test_checkpoint_identity(ckpt, tmp_path):
    info = identify(ckpt)
    assert (info.stage, info.step) == ("dpo", 10) and info.model_id.startswith("dpo-step10@")
    (ckpt.parent / "checkpoint-30").symlink_to(ckpt, target_is_directory=True)
    again = identify(ckpt.parent / "checkpoint-30")
    assert again.step == 30 and again.weights_hash == info.weights_hash  # same weights, same answers


def test_run_end_to_end_then_rerun_makes_no_calls(ckpt, tmp_path, capsys):
    db = tmp_path / "s.db"
    with ScriptedServer(judge_reply) as srv:
        assert main(_run_args(db, ckpt, srv.base_url)) == 0
        out = json.loads(capsys.readouterr().out)
        n_judge_calls = len(srv.requests)
        assert {r["benchmark"] for r in out["reports"]} == {"mt-bench", "arena-hard", "alpaca-eval"}
        assert out["stage"] == "dpo" and out["step"] == 10
        headline = {"mt-bench": ["overall", "turn1", "turn2"], "arena-hard": ["score"],
                    "alpaca-eval": ["win_rate", "length_controlled_winrate"]}
        for r in out["reports"]:
            for m in headline[r["benchmark"]]:
                e = r["metrics"][m]
                if m == "length_controlled_winrate":
                    assert e["meta"]["comparable"] is False  # no official LC data here
                if e["ci_low"] is None:
                    # the demo's few questions are below the minimum for an interval: none is claimed, and the
                    # estimate says it is not reliable, never a zero-width interval presented as exact
                    assert e["reliable"] is False and e["n"] < 50, (r["benchmark"], m)
                else:
                    assert e["ci_low"] < e["ci_high"] and e["ci_low"] <= e["value"] <= e["ci_high"], (r["benchmark"], m)
                assert e["n"] > 0 and e["method"]
            assert r["counts"]["answers"] == r["counts"]["questions"]
            assert {c["name"] for c in r["checks"]} >= {"duplicates", "injection"}
        with RunStore(db, readonly=True) as st:
            counts = st.counts()
            assert counts["answers"] >= 4 + 3 + 6 and counts["judgments"] == 8 + 3 + 6
            answers = st.answers(model=out["model"])
            assert all(a.finish_reasons and a.token_counts for a in answers)
            assert all("style" in a.meta for a in answers if a.benchmark == "arena-hard")
            mt = [a for a in answers if a.benchmark == "mt-bench"]
            writing = [a for a in mt if a.question_id == "1"][0]
            assert writing.generation["temperature"] == 0.7 and len(writing.turns) == 2
        # rerun: nothing generated (answers are looked up by checkpoint hash and settings), nothing judged
        import lioneval.backends.transformers_backend as tb

        calls = []
        original = tb.TransformersBackend.generate
        tb.TransformersBackend.generate = lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
        try:
            assert main(_run_args(db, ckpt, srv.base_url)) == 0
        finally:
            tb.TransformersBackend.generate = original
        again = json.loads(capsys.readouterr().out)
        assert not calls and len(srv.requests) == n_judge_calls
        assert [r["metrics"] for r in again["reports"]] == [r["metrics"] for r in out["reports"]]
    # report and compare from the store alone
    assert main(["--store", str(db), "report", out["run"][:8]]) == 0
    assert "arena-hard" in capsys.readouterr().out
    assert main(["--store", str(db), "compare", out["run"], out["run"], "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["diff"] == 0 and r["ci_low"] == 0 == r["ci_high"] for r in rows)


def test_bad_inputs_exit_2_and_keep_what_was_computed(ckpt, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(["--store", str(db), "run", "--ckpt", str(tmp_path / "nope"), "--judge", "openai:x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--store", str(db), "run", "--ckpt", str(tmp_path), "--judge", "openai:x",
                 "--bench", "mt-bench", "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}"]) == 2
    assert "not a model checkpoint" in capsys.readouterr().err
    assert main(["--store", str(db), "run", "--ckpt", str(ckpt), "--judge", "openai:x", "--bench", "mt-bnch"]) == 2
    assert "did you mean 'mt-bench'" in capsys.readouterr().err
    assert main(["--store", str(db), "run", "--ckpt", str(ckpt), "--judge", "opnai:x", "--bench", "mt-bench",
                 "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}"]) == 2
    assert "did you mean 'openai'" in capsys.readouterr().err
    assert main(["--store", str(db), "run", "--ckpt", str(ckpt), "--judge", "openai:x", "--bench", "arena-hard",
                 "--data", f"arena-hard={tmp_path}"]) == 2
    assert "question.jsonl" in capsys.readouterr().err
    plain = make_tiny_causal_lm(tmp_path / "plain", chat_template=False)
    assert main(["--store", str(db), "run", "--ckpt", str(plain), "--judge", "openai:x", "--bench", "mt-bench",
                 "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}"]) == 2
    assert "chat template" in capsys.readouterr().err
    # a judge endpoint that refuses connections: the run is incomplete (exit 3) with the fix, answers kept
    with ScriptedServer(judge_reply) as srv:
        url = srv.base_url
    args = ["--store", str(db), "run", "--ckpt", str(ckpt), "--judge", f"openai-compatible:judge@{url}",
            "--bench", "mt-bench", "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--max-new-tokens", "4"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "incomplete" in err and "Fix:" in err and "rerun the same command" in err
    with RunStore(db, readonly=True) as st:
        assert st.counts()["answers"] == 4 and st.counts()["judgments"] == 0
        (spec,) = st.runs()
        assert st.run_status(spec.key)[0] == "incomplete" and not st.reports(run=spec.key)[0].complete


def test_paired_difference_is_tighter_than_independent():
    a = {str(i): (float(5 + i % 4), 1.0) for i in range(40)}
    b = {str(i): (float(4 + i % 4), 1.0) for i in range(40)}  # B is A minus one on every question
    d = paired_difference(a, b, rounds=300, seed=0)
    assert d["diff"] == pytest.approx(1.0) and d["ci_low"] == pytest.approx(1.0) and d["ci_high"] == pytest.approx(1.0)
