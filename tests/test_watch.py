"""`lioneval watch`: checkpoints evaluated as a scripted trainer writes them, newest first, with old ones deleted
mid-run (save_total_limit), resumable from the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lioneval.cli import main
from lioneval.pipeline import DEMO_DATA, RunConfig
from lioneval.store import RunStore
from lioneval.testing.openai_server import ScriptedServer
from lioneval.testing.scripted import SCRIPTS
from lioneval.watch import WatchConfig, Watcher, outcomes, pin

MT = ["--bench", "mt-bench", "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--limit", "3"]


def _judge(request: dict) -> str:
    return SCRIPTS["fair-judge"](request["messages"], None)


def save_checkpoint(out: Path, step: int, keep: int | None = None) -> Path:
    """What a trainer writes: weights and config first, trainer_state.json last; then rotation deletes the oldest."""
    ckpt = out / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (ckpt / "model.safetensors").write_bytes(os.urandom(4096))
    (ckpt / "optimizer.pt").write_bytes(os.urandom(1024))
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if keep is not None:
        for old in sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old)
    return ckpt


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_watch_evaluates_checkpoints_as_a_trainer_writes_and_deletes_them(tmp_path):
    out, db = tmp_path / "sft", tmp_path / "runs.db"
    out.mkdir()
    save_checkpoint(out, 1)
    save_checkpoint(out, 2)
    with ScriptedServer(_judge, latency=0.3) as srv:
        cmd = [sys.executable, "-m", "lioneval.cli", "--store", str(db), "watch", str(tmp_path), "--policy",
               "scripted:echo", "--judge", f"openai-compatible:judge@{srv.base_url}", "--judge-concurrency", "1",
               *MT, "--interval", "0.1", "--stop-file", str(tmp_path / "DONE")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # the newest checkpoint goes first: once its judging started, the trainer saves on and rotates
            _wait(lambda: srv.requests or proc.poll() is not None, 60, "the first judge request")
            assert proc.poll() is None, proc.communicate()
            for step in (3, 4, 5):
                save_checkpoint(out, step, keep=2)  # deletes checkpoint-1 (waiting), then 2 (being evaluated)
                time.sleep(0.3)
            (tmp_path / "DONE").touch()
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-5"]
    with RunStore(db, readonly=True) as st:
        seen = outcomes(st)
        by_step = {}
        for c in seen:
            by_step.setdefault(c.meta["step"], []).append(c.meta["outcome"])
        runs = {r.step: r for r in st.runs()}
        reports = {s: st.reports(run=r.key) for s, r in runs.items()}
    assert sorted(by_step) == [1, 2, 3, 4, 5] and all(len(v) == 1 for v in by_step.values()), by_step
    assert by_step[1] == ["vanished"]  # deleted while it waited: recorded, not crashed on
    assert by_step[2] == ["evaluated"]  # deleted mid-evaluation: its pinned files carried it through
    for step in (4, 5):  # every surviving checkpoint has a complete report of its own step
        assert by_step[step] == ["evaluated"]
        assert reports[step] and all(r.complete for r in reports[step])
        assert runs[step].checkpoint == str(tmp_path / "sft" / f"checkpoint-{step}")
        assert reports[step][0].meta["step"] == step
    assert by_step[3][0] in ("evaluated", "vanished")
    assert not (tmp_path / ".lioneval-pins").exists() or not any((tmp_path / ".lioneval-pins").iterdir())
    vanished = sum(v == ["vanished"] for v in by_step.values())
    assert f"{5 - vanished} evaluated, 0 incomplete, 0 failed, 0 skipped, {vanished} vanished" in stdout


def test_watch_resumes_from_the_store_and_skips_obsolete_checkpoints(tmp_path):
    out, db = tmp_path / "dpo", tmp_path / "runs.db"
    for step in (1, 2, 3):
        save_checkpoint(out, step)
    with ScriptedServer(_judge) as srv:
        judge = f"openai-compatible:judge@{srv.base_url}"
        suite = RunConfig(bench=("mt-bench",), data={"mt-bench": str(DEMO_DATA / "mt_bench")}, limit=2, judge=judge)
        seen = Watcher(WatchConfig(folder=str(tmp_path), policy="scripted:echo", once=True, max_behind=1,
                                   interval=0.05), suite, str(db)).run()
        assert [c.state for c in seen] == ["skipped", "skipped", "evaluated"]
        calls = len(srv.requests)
        assert calls > 0
        # a second watcher (a restart) finds the newest done: no judge call; the skipped ones wait no longer
        argv = ["--store", str(db), "watch", str(tmp_path), "--policy", "scripted:echo", "--judge", judge,
                "--bench", "mt-bench", "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--limit", "2", "--once",
                "--interval", "0.05", "--max-behind", "1"]
        assert main(argv) == 0
        assert len(srv.requests) == calls
    with RunStore(db, readonly=True) as st:
        latest = {c.meta["step"]: c for c in outcomes(st)}
    assert latest[3].meta["outcome"] == "evaluated" and "already evaluated" in latest[3].detail
    assert latest[1].meta["outcome"] == "skipped" and "obsolete" in latest[1].detail


def test_a_pinned_checkpoint_outlives_its_deletion(tmp_path):
    ckpt = save_checkpoint(tmp_path / "run", 7)
    weights = (ckpt / "model.safetensors").read_bytes()
    pinned = pin(ckpt, tmp_path / "pins")
    shutil.rmtree(ckpt)
    assert pinned.name == "checkpoint-7" and pinned.parent.name == "run"  # identify() reads stage and step alike
    assert (pinned / "model.safetensors").read_bytes() == weights
    assert not (pinned / "optimizer.pt").exists()  # the trainer's own state is not needed to evaluate


def test_watch_refuses_a_bad_policy_spec_before_watching(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = main(["--store", str(tmp_path / "db.sqlite"), "watch", str(tmp_path / "out"), "--policy", "nope:{ckpt}",
                 "--judge", "scripted:fair-judge", *MT, "--once"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_watch_refuses_a_parallel_below_one(tmp_path, bad):
    assert main(["watch", str(tmp_path), "--parallel", bad]) == 2
