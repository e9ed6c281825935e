import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from lioneval.errors import StoreError
from lioneval.store import STORE_VERSION, RunStore
from lioneval.types import Answer, CheckResult, Estimate, Judgment, Question, Report, RunSpec


def _judgment(i: int, judge: str = "j1", value: float | None = 7.0, **kw) -> Judgment:
    err = None if value is not None else "no [[rating]] in output"
    return Judgment(
        question_id=str(i), benchmark="mt-bench", judge=judge, model="m", kind="rating", turn=1, value=value,
        error=err, **kw,
    )


def test_writes_are_idempotent(store):
    j = _judgment(1)
    assert store.put_judgments([j]) == 1
    assert store.put_judgments([j]) == 0
    assert store.put_judgments([j, _judgment(2)]) == 1
    assert len(store.judgments()) == 2
    a = Answer(question_id="1", benchmark="mt-bench", model="m", turns=["hi"])
    assert store.put_answers([a, a]) == 1
    assert store.counts()["answers"] == 1


def test_two_judges_of_the_same_answer_coexist(store):
    store.put_judgments([_judgment(1, "judge-a"), _judgment(1, "judge-b", value=3.0)])
    assert {j.judge for j in store.judgments(model="m")} == {"judge-a", "judge-b"}
    assert [j.value for j in store.judgments(judge="judge-b")] == [3.0]


def test_success_replaces_stored_failure_but_never_the_reverse(store):
    failed, ok = _judgment(1, value=None), _judgment(1, value=9.0)
    assert failed.key == ok.key
    store.put_judgments([failed])
    assert store.existing("judgments", [ok.key], ok_only=True) == set()
    store.put_judgments([ok])
    assert store.judgments()[0].value == 9.0
    store.put_judgments([failed])  # a later failure of the same request does not erase a paid verdict
    assert store.judgments()[0].value == 9.0


def test_reads_filter_and_reports_replace(store):
    spec = RunSpec(model="ckpt-1", stage="dpo", step=100, benchmarks=["mt-bench"], judge="j")
    run = store.put_run(spec)
    assert store.run(run[:6]) == spec
    est = Estimate(value=7.0, ci_low=6.5, ci_high=7.5, n=80, method="bootstrap", rounds=100, seed=0)
    rep = Report(run=run, benchmark="mt-bench", benchmark_version="1", model="ckpt-1", judge="j",
                 metrics={"overall": est})
    store.put_report(rep)
    est2 = est.model_copy(update={"rounds": 1000})
    store.put_report(rep.model_copy(update={"metrics": {"overall": est2}}))
    assert [r.metrics["overall"].rounds for r in store.reports(run=run)] == [1000]
    chk = CheckResult(name="constant-answers", scope="run", status="flag", model="ckpt-1", run=run)
    store.put_checks([chk])
    assert store.checks(run=run, status="flag") == [chk]
    with pytest.raises(StoreError, match="lioneval runs"):
        store.run("nope-not-a-run")


def test_readonly_store_refuses_writes_and_missing_file(tmp_path):
    RunStore(tmp_path / "s.db").close()
    ro = RunStore(tmp_path / "s.db", readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        ro.put_judgments([_judgment(1)])
    ro.close()
    with pytest.raises(StoreError, match="no store"):
        RunStore(tmp_path / "missing.db", readonly=True)


def test_migrations_and_version_guard(tmp_path):
    path = tmp_path / "s.db"
    st = RunStore(path)
    assert st.version == STORE_VERSION
    st.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='store_version'", (str(STORE_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="upgrade lioneval"):
        RunStore(path)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all, just some bytes" * 100)
    with pytest.raises(StoreError):
        RunStore(tmp_path / "junk.db")


def test_export_import_round_trip(store, tmp_path):
    store.put_questions([Question(id="1", benchmark="mt-bench", turns=["q"])])
    store.put_answers([Answer(question_id="1", benchmark="mt-bench", model="m", turns=["a"])])
    store.put_judgments([_judgment(1), _judgment(2, value=None)])
    out = tmp_path / "export.jsonl"
    assert store.export_jsonl(out) == {"questions": 1, "answers": 1, "judgments": 2}
    with open(out, "a") as fh:
        fh.write("{not json\n")
        fh.write(json.dumps({"table": "judgments", "record": {"question_id": "x"}}) + "\n")
    other = RunStore(tmp_path / "other.db")
    result = other.import_jsonl(out)
    assert result["added"]["judgments"] == 2 and sum(result["skipped"].values()) == 2
    assert sorted(j.key for j in other.judgments()) == sorted(j.key for j in store.judgments())
    assert other.import_jsonl(out)["added"]["judgments"] == 0
    other.close()


WRITER = textwrap.dedent(
    """
    import sys, time
    from lioneval.store import RunStore
    from lioneval.types import Judgment
    store = RunStore(sys.argv[1])
    batch_size, pause = int(sys.argv[2]), float(sys.argv[3])
    b = 0
    while True:  # killed from outside
        rows = [Judgment(question_id=f"{b}-{i}", benchmark="mt-bench", judge="j", model="m", kind="rating",
                         value=float(i % 10), meta={"batch": b, "size": batch_size}) for i in range(batch_size)]
        store.put_judgments(rows)
        print(b, flush=True)
        b += 1
        time.sleep(pause)
    """
)


def _start_writer(path, batch_size, pause):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(batch_size), str(pause)],
        stdout=subprocess.PIPE, text=True,
    )


def test_concurrent_reader_sees_consistent_batches_while_a_process_writes(tmp_path):
    path = tmp_path / "s.db"
    RunStore(path).close()
    writer = _start_writer(path, 200, 0.005)
    try:
        assert writer.stdout.readline().strip() == "0"
        reader = RunStore(path, readonly=True, timeout=5)
        seen = []
        deadline = time.time() + 3
        while time.time() < deadline:
            t0 = time.time()
            rows = reader.judgments()
            assert time.time() - t0 < 2.0  # a reader is never blocked behind the writer
            # every batch is visible whole or not at all
            assert len(rows) % 200 == 0
            seen.append(len(rows))
        reader.close()
    finally:
        writer.kill()
        writer.wait()
    assert seen[-1] > seen[0], "the reader should observe the writer's progress"


def test_writer_killed_mid_batch_leaves_every_committed_row(tmp_path):
    path = tmp_path / "s.db"
    RunStore(path).close()
    writer = _start_writer(path, 2000, 0.0)  # large batches: the kill lands inside one with high probability
    committed = -1
    for line in writer.stdout:
        committed = int(line)
        if committed >= 3:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    st = RunStore(path, readonly=True)
    assert st._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = st.judgments()
    batches = {}
    for j in rows:
        batches.setdefault(j.meta["batch"], []).append(j)
    # every batch the writer reported as committed is there, complete, and nothing partial exists
    assert all(b in batches for b in range(committed + 1))
    assert all(len(v) == 2000 for v in batches.values())
    assert all(j.value == float(int(j.question_id.split("-")[1]) % 10) for j in rows)
    st.close()
    again = RunStore(path)  # and a new writer can carry on
    again.put_judgments([_judgment(99)])
    again.close()
