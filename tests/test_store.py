"""The store's contract, on both back ends: SQLite (a file) and PostgreSQL (a throwaway cluster, see pg_server.py).

Idempotent content-keyed writes, a failure never overwriting a success, versioned migrations, read-only readers,
export/import, run state and leases, the dashboard's column reads; then a process that writes while another reads,
and a writer killed mid-batch."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from lioneval.errors import MissingExtraError, StoreError
from lioneval.store import STORE_VERSION, RunStore
from lioneval.types import Answer, CheckResult, Estimate, Game, Judgment, Question, Report, RunSpec


@pytest.fixture(params=["sqlite", "postgresql"])
def new_location(request, tmp_path):
    """A factory of locations for new, empty stores on the back end under test (a file path or a database URL)."""
    if request.param == "sqlite":
        count = iter(range(1000))
        yield lambda: str(tmp_path / f"store{next(count)}.db")
        return
    server = request.getfixturevalue("pg_server")
    made: list[str] = []

    def make() -> str:
        made.append(server.new_database())
        return made[-1]

    yield make
    for url in made:
        server.drop_database(url)


@pytest.fixture
def store(new_location):
    st = RunStore(new_location())
    yield st
    st.close()


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
    assert store.put_judgments([failed]) == 1
    assert store.existing("judgments", [ok.key], ok_only=True) == set()
    assert store.put_judgments([ok]) == 1
    assert store.judgments()[0].value == 9.0
    assert store.put_judgments([failed]) == 0  # a later failure of the same request does not erase a paid verdict
    assert store.judgments()[0].value == 9.0
    assert store.existing("judgments", [ok.key], ok_only=True) == {ok.key}


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


def test_records_come_back_in_stored_order_across_chunks(store):
    judgments = [_judgment(i) for i in reversed(range(1200))]  # more keys than one IN (...) chunk holds
    assert store.put_judgments(judgments) == 1200
    assert [j.question_id for j in store.judgments()] == [j.question_id for j in judgments]
    keys = [j.key for j in judgments]
    assert [j.key for j in store.get("judgments", keys[::-1])] == keys[::-1]
    assert store.existing("judgments", [*keys[:700], "missing"]) == set(keys[:700])
    assert store.distinct("judgments", "question_id")[:3] == ["0", "1", "10"]
    run = "run-1"
    assert store.link(run, "judgments", keys[:600]) == 600
    assert store.link(run, "judgments", keys[:601]) == 1
    assert [j.key for j in store.linked(run, "judgments")] == keys[:601]
    assert store.linked(run, "judgments", judge="other") == []
    stamped = store.stamped("judgments", question_id=["5", "6"])
    assert [r.question_id for _, _, r in stamped] == ["6", "5"] and all(t > 0 for _, t, _ in stamped)


def test_dashboard_column_reads(store):
    games = [Game(model_position="A", value=1.0), Game(model_position="B", value=0.5)]
    pair = Judgment(question_id="q1", benchmark="arena-hard", judge="j", model="m", kind="pairwise",
                    baseline="gpt-4", value=0.75, games=games, raw="text with \x00 and 100% of it")
    rating = Judgment(question_id="q2", benchmark="arena-hard", judge="j", model="m", kind="rating", turn=2,
                      value=8.0, games=[Game(value=8.0)])
    failed = Judgment(question_id="q3", benchmark="arena-hard", judge="k", model="n", kind="rating",
                      error="unparsed")
    store.put_judgments([pair, rating, failed])
    rows = store.judgment_columns("arena-hard")
    assert [r[1:] for r in rows] == [
        ("q1", "m", "j", None, 0, "gpt-4", 0.75, 2, 1.0, 1, 0.5, 0),
        ("q2", "m", "j", 2, 0, None, 8.0, 1, 8.0, None, None, None),
        ("q3", "n", "k", None, 1, None, None, 0, None, None, None, None),
    ]
    assert store.judgment_columns("arena-hard", judges=["k"], models=[])  == []
    assert [j.question_id for j in store.judgments_at([rows[2][0], rows[0][0]])] == ["q1", "q3"]
    assert store.judgments_at([rows[0][0]])[0].raw == pair.raw
    assert store.judgment_inventory() == [("arena-hard", "j", "pairwise", 2), ("arena-hard", "k", "rating", 1)]
    assert store.judge_kinds("arena-hard") == {"j": "pairwise", "k": "rating"}


def test_answers_questions_and_checks(store):
    store.put_questions([Question(id=str(i), benchmark="mt-bench", turns=[f"q{i}"]) for i in range(3)])
    assert [q.id for q in store.find_questions("mt-bench", ["2", "0"])] == ["0", "2"]
    first = Answer(question_id="1", benchmark="mt-bench", model="m", turns=["a"])
    again = Answer(question_id="1", benchmark="mt-bench", model="m", turns=["b"])  # same request: kept as first
    assert store.put_answers([first, again, Answer(question_id="1", benchmark="mt-bench", model="x", turns=["c"])]) == 2
    assert [a.turns for a in store.find_answers(["1"], ["m"], benchmark="mt-bench")] == [["a"]]
    assert store.find_answers(["1"], []) == []
    old = CheckResult(name="length", scope="answer", status="flag", run="r", benchmark="mt-bench", model="m",
                      question_id="1")
    other = CheckResult(name="length", scope="answer", status="warn", run="r", benchmark="mt-bench", model="m",
                        question_id="2")
    store.put_checks([old, other])
    new = old.model_copy(update={"status": "pass"})
    assert store.replace_checks("r", "mt-bench", None, [new]) == 1
    assert store.checks(run="r") == [new]  # the result no longer produced is gone, the new one replaced the old


def test_run_state_leases_and_progress(store):
    assert store.run_status("r") == ("unknown", "")
    assert store.claim_run("r", owner="other-host:1") == (True, None)
    assert store.claim_run("r", owner="another-host:2") == (False, "other-host:1")  # a live lease is respected
    store.set_progress("r", "generate", done=3, total=10)
    store.set_progress("r", "judge", done=1, total=10)
    progress = store.run_progress("r")
    assert progress["generate"]["done"] == 3 and progress["judge"]["total"] == 10
    store.renew_run("r", owner="other-host:1", lease_s=-1)  # its lease runs out: the run was killed
    assert store.run_status("r")[0] == "killed"
    assert store.claim_run("r", owner="another-host:2") == (True, None)
    store.finish_run("r", "complete", owner="another-host:2")
    assert store.run_status("r") == ("complete", "")


def test_paid_games_are_kept_once(store):
    store.put_game("k1", "j", {"label": "A>B", "raw": "100% sure"})
    store.put_game("k1", "j", {"label": "other"})
    assert store.games(["k1", "k2"]) == {"k1": {"label": "A>B", "raw": "100% sure"}}


def test_readonly_store_refuses_writes_and_a_missing_store(new_location):
    location = new_location()
    RunStore(location).close()
    ro = RunStore(location, readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        ro.put_judgments([_judgment(1)])
    assert ro.judgments() == []
    ro.close()
    with pytest.raises(StoreError, match="no store"):
        RunStore(new_location(), readonly=True)


def _set_version(location: str, version: int) -> None:
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as db:
            db.execute("UPDATE meta SET value = %s WHERE key = 'store_version'", (str(version),))
    else:
        db = sqlite3.connect(location)
        db.execute("UPDATE meta SET value=? WHERE key='store_version'", (str(version),))
        db.commit()
        db.close()


def test_migrations_and_version_guard(new_location):
    location = new_location()
    st = RunStore(location)
    assert st.version == STORE_VERSION
    st.put_judgments([_judgment(1)])
    st.close()
    _set_version(location, STORE_VERSION + 1)
    with pytest.raises(StoreError, match="upgrade lioneval"):
        RunStore(location)
    _set_version(location, STORE_VERSION)
    with RunStore(location, readonly=True) as again:  # reopening migrates nothing and loses nothing
        assert again.version == STORE_VERSION and len(again.judgments()) == 1


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all, just some bytes" * 100)
    with pytest.raises(StoreError):
        RunStore(tmp_path / "junk.db")


def test_export_import_round_trip(new_location, tmp_path):
    store = RunStore(new_location())
    store.put_questions([Question(id="1", benchmark="mt-bench", turns=["q"])])
    store.put_answers([Answer(question_id="1", benchmark="mt-bench", model="m", turns=["a"])])
    store.put_judgments([_judgment(1), _judgment(2, value=None)])
    store.link("r", "judgments", [_judgment(1).key])
    out = tmp_path / "export.jsonl"
    assert store.export_jsonl(out) == {"questions": 1, "answers": 1, "judgments": 2, "run_records": 1}
    with open(out, "a") as fh:
        fh.write("{not json\n")
        fh.write(json.dumps({"table": "judgments", "record": {"question_id": "x"}}) + "\n")
    other = RunStore(new_location())
    result = other.import_jsonl(out)
    assert result["added"]["judgments"] == 2 and sum(result["skipped"].values()) == 2
    assert result["added"]["run_records"] == 1
    assert [j.key for j in other.judgments()] == [j.key for j in store.judgments()]
    assert other.import_jsonl(out)["added"]["judgments"] == 0
    other.close()
    store.close()


# -- PostgreSQL's own failures: each a one-line StoreError with the fix ----------------------------------------------
def test_postgres_errors_say_what_to_do(pg_server, monkeypatch):
    with pytest.raises(StoreError, match="createdb no_such_db"):
        RunStore(pg_server.url("no_such_db"))
    with pytest.raises(StoreError, match="cannot reach PostgreSQL store"):
        RunStore("postgresql://nobody@127.0.0.1:1/x", timeout=2)
    with pytest.raises(StoreError, match="unsupported store URL"):
        RunStore("mysql://u@h/db")
    with pytest.raises(StoreError, match=r"postgresql://u:\*\*\*@127.0.0.1:1/x") as err:
        RunStore("postgresql://u:secret@127.0.0.1:1/x", timeout=2)
    assert "secret" not in str(err.value)
    url = pg_server.new_database()
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(StoreError, match="not a lioneval store"):
        RunStore(url)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # the driver not installed
    with pytest.raises(MissingExtraError, match=r"lioneval\[postgres\]"):
        RunStore(url)


# -- processes ---------------------------------------------------------------------------------------------------------
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


def _start_writer(location, batch_size, pause):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(location), str(batch_size), str(pause)],
        stdout=subprocess.PIPE, text=True,
    )


def test_concurrent_reader_sees_consistent_batches_while_a_process_writes(new_location):
    location = new_location()
    RunStore(location).close()
    writer = _start_writer(location, 200, 0.005)
    try:
        assert writer.stdout.readline().strip() == "0"
        reader = RunStore(location, readonly=True, timeout=5)
        seen = []
        deadline = time.time() + 2
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


def test_writer_killed_mid_batch_leaves_every_committed_row(new_location):
    location = new_location()
    RunStore(location).close()
    writer = _start_writer(location, 2000, 0.0)  # large batches: the kill lands inside one with high probability
    committed = -1
    for line in writer.stdout:
        committed = int(line)
        if committed >= 3:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    st = RunStore(location, readonly=True)
    if not location.startswith("postgresql://"):
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
    again = RunStore(location)  # and a new writer can carry on
    again.put_judgments([_judgment(99)])
    again.close()


def test_content_stamp_and_record_reads(store):
    before = store.content_stamp(["judgments"])
    store.put_judgments([_judgment(1), _judgment(2, judge="j2")])
    after = store.content_stamp(["judgments"])
    assert after != before and after[0][:2] == ("judgments", 2)
    store.set_progress("r", "judge", done=1)  # not a record: the stamp stays
    assert store.content_stamp(["judgments"]) == after
    assert [d["judge"] for d in store.record_dicts("judgments", judge=["j2"])] == ["j2"]


# Where RunStore may still speak SQLite only: its file's own setup and upkeep, each behind a check of the back end.
_SQLITE_ONLY_ALLOWED = {"PRAGMA": {"__init__", "_bound_wal", "judgment_columns"}, "sqlite_master": {"remove_if_empty"}}


def test_every_store_method_speaks_sql_both_back_ends_accept():
    """A method added to RunStore that uses SQLite-only SQL would fail on PostgreSQL stores only: caught here, for
    every method, including those no contract test above calls yet."""
    import ast
    import inspect

    import lioneval.store as store_module

    tree = ast.parse(inspect.getsource(store_module))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RunStore"]
    found = []
    for fn in cls.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        texts = [n.value for n in ast.walk(fn) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        for token in ("json_extract", "json_array_length", "INSERT OR", "PRAGMA", "sqlite_master", "GLOB ",
                      "IFNULL(", "group_concat(", "strftime("):
            if any(token.lower() in t.lower() for t in texts) and fn.name not in _SQLITE_ONLY_ALLOWED.get(token, ()):
                found.append(f"RunStore.{fn.name}: {token}")
    assert not found, ("SQLite-only SQL (write it through self._dialect, see lioneval/store_sql.py, so it runs on "
                       f"PostgreSQL too): {found}")
