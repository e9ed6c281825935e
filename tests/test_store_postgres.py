"""Many processes on one PostgreSQL store, as on a cluster: four writers (evaluators and trainers) and two readers (a
dashboard, a training callback) at once, one writer killed with SIGKILL mid-run. Nothing committed is lost, nothing is
stored twice, readers only ever see whole batches, and a writer that loses a deadlock to another runs its batch again.
Also the command line on a PostgreSQL store, chosen by --store, LIONEVAL_STORE or the project config."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from lioneval.cli import main
from lioneval.pipeline import DEMO_DATA
from lioneval.store import RunStore

OWN, SHARED = 40, 8  # per batch: records only this writer writes, and records every writer writes (same keys)

WRITER = textwrap.dedent(
    f"""
    import random, sys, time
    from lioneval.store import RunStore
    from lioneval.types import Judgment
    url, w, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(w)
    store = RunStore(url)
    def judgment(q, model, b):
        return Judgment(question_id=q, benchmark="mt-bench", judge="j", model=model, kind="rating", value=1.0,
                        meta={{"batch": b}})
    for b in range(batches):
        rows = [judgment(f"w{{w}}-b{{b}}-{{i}}", f"w{{w}}", b) for i in range({OWN})]
        shared = [judgment(f"shared-b{{b}}-{{i}}", "shared", b) for i in range({SHARED})]
        rng.shuffle(shared)  # the same keys in another order in each writer: their transactions can deadlock
        rows = shared[: {SHARED} // 2] + rows + shared[{SHARED} // 2 :]
        added = store.put_judgments(rows)
        store.link(f"run-w{{w}}", "judgments", [r.key for r in rows])
        print(b, added, flush=True)
    """
)

READER = textwrap.dedent(
    f"""
    import json, os, sys, time
    from lioneval.store import RunStore
    url, stop = sys.argv[1], sys.argv[2]
    store = RunStore(url, readonly=True)
    last, reads, problems = {{}}, 0, []
    while not os.path.exists(stop):
        for model in ("w0", "w1", "w2", "w3"):
            n = len(store.judgment_columns("mt-bench", models=[model]))
            if n % {OWN}:
                problems.append(f"{{model}}: {{n}} rows, not whole batches")
            if n < last.get(model, 0):
                problems.append(f"{{model}}: {{n}} rows after {{last[model]}}")
            last[model] = n
        reads += 1
    print(json.dumps({{"reads": reads, "problems": problems[:5]}}), flush=True)
    """
)


def _python(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True)


def test_four_writers_two_readers_and_a_killed_writer_lose_and_duplicate_nothing(pg_server, tmp_path):
    url = pg_server.new_database()
    RunStore(url).close()  # created and migrated before anyone opens it read-only
    stop = tmp_path / "stop"
    batches, doomed = 12, 0
    readers = [_python(READER, url, str(stop)) for _ in range(2)]
    writers = [_python(WRITER, url, str(w), str(batches if w != doomed else 10_000)) for w in range(4)]
    printed: dict[int, list[tuple[int, int]]] = {w: [] for w in range(4)}
    try:
        for line in writers[doomed].stdout:  # kill it mid-run, once it has committed a few batches
            printed[doomed].append(tuple(map(int, line.split())))
            if len(printed[doomed]) >= 5:
                break
        os.kill(writers[doomed].pid, signal.SIGKILL)
        writers[doomed].wait()
        for w in range(1, 4):
            out, _ = writers[w].communicate(timeout=240)
            assert writers[w].returncode == 0
            printed[w] = [tuple(map(int, line.split())) for line in out.splitlines()]
        stop.touch()
        reports = [json.loads(r.communicate(timeout=60)[0].splitlines()[-1]) for r in readers]
    finally:
        for p in (*writers, *readers):
            if p.poll() is None:
                p.kill()
                p.wait()

    assert all(r["problems"] == [] for r in reports), reports
    assert all(r["reads"] > 0 for r in reports)
    with RunStore(url, readonly=True) as st:
        rows = st.judgments()
        keys = Counter(j.key for j in rows)
        assert max(keys.values()) == 1  # nothing stored twice
        per_batch = Counter((j.model, j.meta["batch"]) for j in rows)
        # the survivors' batches all there and whole
        for w in range(1, 4):
            assert [b for b, _ in printed[w]] == list(range(batches))
            assert all(per_batch[(f"w{w}", b)] == OWN for b in range(batches))
        # the killed writer: every batch it reported committed is whole; of the one it was writing, all or nothing
        committed = [b for b, _ in printed[doomed]]
        assert committed == list(range(len(committed)))
        own = sorted(b for (m, b) in per_batch if m == f"w{doomed}")
        assert own in (committed, [*committed, len(committed)])
        assert all(per_batch[(f"w{doomed}", b)] == OWN for b in own)
        # every batch's shared records once, though all writers wrote them
        assert all(per_batch[("shared", b)] == SHARED for b in range(batches))
        # and the writers' own counts of what they added agree with what is there: no double counting
        added = sum(n for w in range(4) for _, n in printed[w])
        in_flight = len(rows) - added
        assert in_flight == 0 or (len(own) > len(committed) and OWN <= in_flight <= OWN + SHARED)
        for w in range(1, 4):
            assert len(st.linked(f"run-w{w}", "judgments")) == batches * (OWN + SHARED)


ARGS = ["run", "--policy", "scripted:echo", "--judge", "scripted:fair-judge", "--bench", "mt-bench",
        "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}", "--limit", "2"]


def test_the_command_line_runs_on_a_postgresql_store(pg_server, tmp_path, capsys, monkeypatch):
    url = pg_server.new_database()
    assert main(["--store", url, *ARGS]) == 0
    capsys.readouterr()
    with RunStore(url, readonly=True) as st:
        (spec,) = st.runs()
        assert st.run_status(spec.key) == ("complete", "")
        assert st.reports(run=spec.key)
    monkeypatch.setenv("LIONEVAL_STORE", url)
    assert main(["runs"]) == 0
    assert f"{spec.key}  complete" in capsys.readouterr().out
    monkeypatch.delenv("LIONEVAL_STORE")
    (tmp_path / "lioneval.toml").write_text(f'store = "{url}"\n')
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert url in out and "judgments" in out
    assert main(["--store", pg_server.url("missing_db"), "info"]) == 2
    assert "createdb missing_db" in capsys.readouterr().err


def test_sqlite_stays_the_default_and_a_file_path_is_never_taken_for_a_url(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LIONEVAL_STORE", raising=False)
    assert main(["info"]) == 2  # nothing stored yet: the default store is the file lioneval.db here
    assert "no store at lioneval.db" in capsys.readouterr().err
    odd = tmp_path / "postgresql:" / "x.db"  # a folder named like a scheme is still a path
    assert main(["--store", str(odd), "migrate"]) == 0
    assert odd.is_file()


def test_a_sqlite_store_moves_to_postgresql_by_export_and_import(pg_server, tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["--store", db, *ARGS]) == 0
    assert main(["--store", db, "export", str(tmp_path / "all.jsonl")]) == 0
    url = pg_server.new_database()
    assert main(["--store", url, "import", "jsonl", str(tmp_path / "all.jsonl")]) == 0
    capsys.readouterr()
    with RunStore(db, readonly=True) as a, RunStore(url, readonly=True) as b:
        assert a.counts() == b.counts()
        (spec,) = b.runs()
        assert [j.key for j in b.judgments()] == [j.key for j in a.judgments()]
        assert [r.metrics for r in b.reports(run=spec.key)] == [r.metrics for r in a.reports(run=spec.key)]
        assert [j.key for j in b.linked(spec.key, "judgments")] == [j.key for j in a.linked(spec.key, "judgments")]


def test_a_writer_that_loses_a_deadlock_runs_its_transaction_again(pg_server):
    """Two writers insert the same two keys in opposite orders: the server aborts one transaction to break the
    deadlock, and that writer runs it again, so both batches are stored, each key once."""
    url = pg_server.new_database()
    stores = [RunStore(url), RunStore(url)]
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts = Counter()

    def writer(i: int) -> int:
        first, second = ("k1", "k2") if i == 0 else ("k2", "k1")

        def work(db) -> int:
            attempts[i] += 1
            before = db.total_changes
            db.execute("INSERT INTO game_results (key, judge, created_at, record) VALUES (?, 'j', 0, '{}') "
                       "ON CONFLICT(key) DO NOTHING", (first,))
            if attempts[i] == 1:
                both_hold_one.wait()  # each holds one key: the next insert waits on the other's
            db.executemany("INSERT INTO game_results (key, judge, created_at, record) VALUES (?, 'j', 0, '{}') "
                           "ON CONFLICT(key) DO NOTHING", [(second,), ("k3",)])  # as a batch is written
            return db.total_changes - before

        return stores[i]._write(work)

    with ThreadPoolExecutor(2) as pool:
        added = list(pool.map(writer, range(2)))
    assert sorted(attempts.values()) == [1, 2]  # one lost the deadlock and ran again
    assert sum(added) == 3 and set(stores[0].games(["k1", "k2", "k3"])) == {"k1", "k2", "k3"}
    for st in stores:
        st.close()
