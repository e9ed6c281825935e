"""Runs have a status: running (a lease its process renews), complete, incomplete, failed, or killed (a lease whose
process died); an identical run started while one is running is refused instead of paying for the same calls."""

from __future__ import annotations

import socket
import subprocess
import sys

from lioneval.cli import main
from lioneval.pipeline import DEMO_DATA
from lioneval.store import RunStore

ARGS = ["run", "--policy", "scripted:echo", "--judge", "scripted:fair-judge", "--bench", "mt-bench",
        "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--limit", "2"]


def test_a_run_is_complete_and_listed_so(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["--store", db, *ARGS]) == 0
    capsys.readouterr()
    with RunStore(db) as st:
        (spec,) = st.runs()
        assert st.run_status(spec.key) == ("complete", "")
    assert main(["--store", db, "runs"]) == 0
    assert f"{spec.key}  complete" in capsys.readouterr().out


def test_an_identical_run_in_progress_elsewhere_is_refused_and_a_dead_one_is_killed(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["--store", db, *ARGS]) == 0
    with RunStore(db) as st:
        (spec,) = st.runs()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with RunStore(db) as st:  # another live process holds the run
            assert st.claim_run(spec.key, owner=f"{socket.gethostname()}:{sleeper.pid}") == (True, None)
        capsys.readouterr()
        assert main(["--store", db, *ARGS]) == 2
        err = capsys.readouterr().err
        assert "being evaluated right now by another process" in err and len(err.strip().splitlines()) == 1
        with RunStore(db) as st:
            assert st.run_status(spec.key)[0] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunStore(db) as st:  # its process died without finishing: killed, and a rerun may resume it
        status, detail = st.run_status(spec.key)
        assert status == "killed" and "rerun" in detail
    assert main(["--store", db, *ARGS]) == 0
    with RunStore(db) as st:
        assert st.run_status(spec.key)[0] == "complete"


def test_a_failed_run_says_so(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    code = main(["--store", db, "run", "--policy", "scripted:no-such-script", "--judge", "scripted:fair-judge",
                 "--bench", "mt-bench", "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--limit", "2"])
    assert code == 2
    assert "no scripted backend" in capsys.readouterr().err


def test_a_damaged_record_and_unreadable_configs_exit_2_with_one_line(tmp_path, capsys):
    import sqlite3

    db = str(tmp_path / "s.db")
    assert main(["--store", db, *ARGS]) == 0
    with RunStore(db) as st:
        (spec,) = st.runs()
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"max_failed_share: \xff\xfe\n")
    for argv in (["report", spec.key, "--recompute", "--checks", str(bad)],
                 ["promote", "--stage", "dpo", "--policy", str(bad)]):
        capsys.readouterr()
        assert main(["--store", db, *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "UTF-8" in err or "utf-8" in err
    con = sqlite3.connect(db)
    con.execute("UPDATE reports SET record = '{\"run\": 5}'")
    con.commit()
    con.close()
    capsys.readouterr()
    assert main(["--store", db, "report", spec.key]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
