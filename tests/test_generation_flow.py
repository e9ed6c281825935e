"""Generation that is resumable, visible and overlapped with judging: each turn stored the moment it completes (a
SIGKILL loses nothing stored), progress lines at a bounded interval when output is not a terminal, progress in the
store, and judging that starts while generation continues. Policy and judge are scripted OpenAI-compatible servers
over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from lioneval.pipeline import DEMO_DATA, RunConfig, run
from lioneval.store import RunStore
from lioneval.testing.openai_server import ScriptedServer

MT_BENCH = DEMO_DATA / "mt_bench"


def policy_reply(req: dict) -> str:
    """A deterministic policy: the answer is a function of the chat, so every run gives the same answers."""
    msgs = req["messages"]
    return f"answer to turn {sum(m['role'] == 'user' for m in msgs)}: {len(msgs[-1]['content'])} chars asked"


def judge_reply(req: dict) -> str:
    text = "\n".join(m["content"] for m in req["messages"])
    if "model_1" in text:  # an AlpacaEval ranking annotator
        return "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"
    if "[[A>" in text or "[[B>" in text:  # a pairwise verdict format
        return "My final verdict is tie: [[A=B]]"
    return f"Rating: [[{3 + len(text) % 5}]]"


def both(req: dict) -> str:
    return policy_reply(req) if req["model"] == "policy" else judge_reply(req)


def _cli(db: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lioneval.cli", "--store", str(db), "run",
            "--policy", f"openai-compatible:policy@{url}", "--judge", f"openai-compatible:judge@{url}",
            "--bench", "mt-bench", "--data", f"mt-bench={MT_BENCH}", *extra]


def _stored_turns(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM game_results WHERE judge = 'generation'").fetchone()[0]
    except sqlite3.OperationalError:  # the store is being created
        return 0


def _policy_asks(srv: ScriptedServer, model_hashes: set[str]) -> Counter:
    return Counter(r.prompt_hash for r in srv.chat_requests() if r.prompt_hash in model_hashes and r.status == 200)


@pytest.mark.slow
def test_sigkill_mid_generation_then_rerun_regenerates_nothing_stored(tmp_path):
    questions = sum(1 for line in (MT_BENCH / "question.jsonl").read_text().splitlines() if line.strip())
    seen_policy: set[str] = set()

    def reply(req: dict) -> str:
        if req["model"] == "policy":
            from lioneval.testing.openai_server import prompt_hash

            seen_policy.add(prompt_hash(req["messages"]))
        return both(req)

    # the uninterrupted run, for the answers the interrupted one must end with
    with ScriptedServer(both) as srv:
        ref = tmp_path / "ref.db"
        subprocess.run(_cli(ref, srv.base_url, "--json"), check=True, capture_output=True, timeout=300)
    with RunStore(ref, readonly=True) as st:
        expected = {a.question_id: a.turns for a in st.answers(benchmark="mt-bench", model="policy")}
    assert len(expected) == questions

    db = tmp_path / "s.db"
    with ScriptedServer(reply, latency=0.8) as srv:
        proc = subprocess.Popen(_cli(db, srv.base_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # every first turn is stored (they go out together); kill while the second turns are in flight
        while (not db.exists() or _stored_turns(db) < questions) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = _stored_turns(db)
        assert questions <= stored < 2 * questions, stored
        listing = subprocess.run([sys.executable, "-m", "lioneval.cli", "runs", "--store", str(db)],
                                 capture_output=True, text=True, check=True).stdout
        assert "killed" in listing and "generate mt-bench" in listing  # and how far it got
        first_pass = len(srv.chat_requests())

        subprocess.run(_cli(db, srv.base_url, "--json"), check=True, capture_output=True, timeout=300)
        rerun = [r for r in srv.chat_requests()[first_pass:] if r.prompt_hash in seen_policy]
        # the rerun asks the policy only for the turns that were not stored when the process died
        assert len(rerun) == 2 * questions - stored
    with RunStore(db, readonly=True) as st:
        got = {a.question_id: a.turns for a in st.answers(benchmark="mt-bench", model="policy")}
    assert got == expected


def test_piped_output_gets_progress_lines_at_a_bounded_interval(tmp_path):
    db = tmp_path / "s.db"
    with ScriptedServer(both, latency=0.5) as srv:
        proc = subprocess.Popen(_cli(db, srv.base_url, "--progress-interval", "0.3"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        times: list[tuple[float, str]] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                times.append((time.monotonic(), line.rstrip("\n")))

        reader = threading.Thread(target=read)
        reader.start()
        proc.wait(timeout=300)
        reader.join()
    assert proc.returncode == 0, times
    progress = [(t, line) for t, line in times if line.startswith(("generate mt-bench:", "judge mt-bench:"))]
    gen = [(t, line) for t, line in progress if line.startswith("generate")]
    assert len(gen) >= 3, progress  # the second turns take a while: heartbeat lines say it is alive
    assert gen[-1][1].startswith(f"generate mt-bench: {len(_questions())}/{len(_questions())}")
    gaps = [b[0] - a[0] for a, b in zip(gen, gen[1:], strict=False)]
    assert max(gaps) < 0.3 + 1.0, gaps  # a line at least every interval (with slack for a loaded machine)
    assert "\x1b[" not in "".join(line for _, line in times)  # no terminal control codes in a log


def _questions() -> list[str]:
    return [line for line in (MT_BENCH / "question.jsonl").read_text().splitlines() if line.strip()]


def test_progress_is_recorded_in_the_store(tmp_path):
    with ScriptedServer(both) as srv:
        with RunStore(tmp_path / "s.db") as st:
            cfg = RunConfig(policy=f"openai-compatible:policy@{srv.base_url}",
                            judge=f"openai-compatible:judge@{srv.base_url}", bench=("mt-bench",),
                            data={"mt-bench": str(MT_BENCH)})
            result = run(cfg, st)
            progress = st.run_progress(result.run)
    n = len(_questions())
    assert progress["generate mt-bench"]["done"] == progress["generate mt-bench"]["total"] == n
    assert progress["generate mt-bench"]["tokens"] > 0
    assert progress["judge mt-bench"]["done"] == progress["judge mt-bench"]["total"]


@pytest.mark.slow
def test_judging_overlaps_generation(tmp_path, monkeypatch):
    """A slow policy and a slow judge: overlapped, the run takes clearly less than generation plus judging."""
    import lioneval.pipeline as pipeline

    eval_set = tmp_path / "model_outputs.json"
    eval_set.write_text(json.dumps([{"instruction": f"Task {i}: explain item {i}", "output": f"baseline answer {i}",
                                     "generator": "base", "dataset": "lioneval-test"} for i in range(16)]))

    def timed(overlap: bool, db: Path) -> float:
        lock, arrived = threading.Lock(), [0]

        def slow(req: dict) -> str:
            if req["model"] == "policy":  # the answers come in one by one, 0.2 s apart
                with lock:
                    arrived[0] += 1
                    k = arrived[0]
                time.sleep(0.2 * k)
            else:
                time.sleep(0.1)  # and the judge takes 0.1 s a call, one call at a time
            return both(req)

        with ScriptedServer(slow) as srv, RunStore(db) as st:
            cfg = RunConfig(policy=f"openai-compatible:policy@{srv.base_url}",
                            judge=f"openai-compatible:judge@{srv.base_url}", bench=("alpaca-eval",),
                            data={"alpaca-eval": str(eval_set)}, judge_concurrency=1,
                            bench_options={"alpaca-eval": {"annotator": "alpaca_eval_gpt4"}})
            with monkeypatch.context() as m:
                if not overlap:
                    m.setattr(pipeline, "_can_overlap", lambda *a: False)
                t0 = time.monotonic()
                result = run(cfg, st)
                wall = time.monotonic() - t0
            assert result.complete, [r.incomplete for r in result.reports]
            return wall

    sequential = timed(False, tmp_path / "a.db")
    overlapped = timed(True, tmp_path / "b.db")
    assert overlapped < 0.85 * sequential, (overlapped, sequential)
