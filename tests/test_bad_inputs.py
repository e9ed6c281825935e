"""Bad input never costs a traceback or a stored record.

The product rule, checked verb by verb on one populated store (a scripted run of the bundled demo data, copied per
case): a bad file, flag, path or store gives exit code 2 (3 where the work is left incomplete) and exactly one line
on stderr, "lioneval: ...", saying what failed, why and the fix; nothing in the output is a traceback; and the
store holds exactly what it held before (for exit 3, and for a run stopped by a full disk: everything it held before,
unchanged).

The disk-full cases are real SQLITE_FULL errors: the store's connection gets ``PRAGMA max_page_count`` set to its
current size, so the first write that needs a new page fails the way a full disk does. File permissions do not stop
root, so the chmod cases skip when the tests run as root; a store path under /proc or /sys stands in for a read-only
place there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lioneval.cli import main
from lioneval.pipeline import DEMO_DATA
from lioneval.store import RunStore

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_SKIP = "running as root: file permissions do not stop root, so this chmod-based case cannot fail here"
SCRIPTED = ["--policy", "scripted:echo", "--judge", "scripted:fair-judge"]
MT = ["--bench", "mt-bench", "--data", f"mt-bench={DEMO_DATA / 'mt_bench'}"]
RUN_MT = ["run", *SCRIPTED, *MT]


@dataclass
class Populated:
    db: Path
    runs: list[str]
    model: str


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    """One store with two scripted runs on the demo data of all three benchmarks (built once per module)."""
    db = tmp_path_factory.mktemp("populated") / "store.db"
    three = [*MT, "--bench", "arena-hard", "--data", f"arena-hard={DEMO_DATA / 'arena_hard'}",
             "--baseline", "arena-hard=demo-baseline", "--bench", "alpaca-eval",
             "--data", f"alpaca-eval={DEMO_DATA / 'alpaca_eval' / 'reference_outputs.json'}"]
    for seed in ("0", "1"):
        assert main(["--store", str(db), "run", *SCRIPTED, *three, "--seed", seed, "--json"]) == 0
    with RunStore(db, readonly=True) as st:
        runs = [r.key for r in st.runs()]
        counts = st.counts()
    assert len(runs) == 2 and all(counts[t] for t in ("questions", "answers", "judgments", "reports", "checks"))
    with RunStore(db, readonly=True) as st:
        model = st.run(runs[0]).model
    return Populated(db, runs, model)


def rows(db: Path) -> dict[str, set[str]]:
    """Every row of every table, as text (a content fingerprint that does not depend on row order)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: {repr(r) for r in con.execute(f"SELECT * FROM {t}")} for t in tables}
    finally:
        con.close()


def digest(content: dict[str, set[str]]) -> str:
    return hashlib.sha256(json.dumps({t: sorted(v) for t, v in content.items()}).encode()).hexdigest()


# -- the cases --------------------------------------------------------------------------------------------------------
# argv placeholders: {store} the case's copy of the populated store, {w} a scratch folder holding the case's files,
# {run} / {run2} the two stored runs, {model} the runs' model, {demo} the bundled demo data.

@dataclass
class Case:
    id: str
    argv: list[str]
    expect: str  # a piece of the one stderr line
    files: dict = field(default_factory=dict)  # name under {w} -> content (bytes or str)
    code: int = 2
    store: str = "{store}"  # the --store argument
    full: bool = False  # the store's disk is full
    keeps: bool = False  # exit 3 or a started run: new rows are allowed, no stored row may change or go
    non_root: bool = False  # relies on file permissions (skipped as root)
    setup: Callable[[Path, Path], None] | None = None  # (scratch folder, store copy) -> None
    absent: tuple[str, ...] = ()  # paths (with placeholders) that must not exist afterwards


def _utf16(text: str) -> bytes:
    return text.encode("utf-16")


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def _mt_judgments(n: int, model: str = "other-model") -> str:
    rows = [{"question_id": 1000 + i, "model": model, "judge": ["gpt-4", "single-v1"],
             "judgment": "Rating: [[5]] " + "x" * 2000, "score": 5, "turn": 1} for i in range(n)]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _mt_questions(n: int) -> str:
    return "".join(json.dumps({"question_id": 5000 + i, "category": "writing", "turns": [f"q{i} " + "y" * 2000]})
                   + "\n" for i in range(n))


def _export(n: int) -> str:
    return "".join(json.dumps({"table": "judgments", "record": {
        "question_id": f"e{i}", "benchmark": "mt-bench", "judge": "j", "model": "m", "kind": "rating",
        "value": 5.0, "raw": "z" * 2000}}) + "\n" for i in range(n))


def _arena_dir(folder: Path, *, questions: bytes | str | None = None, judgments: bytes | str | None = None,
               answers: bytes | str | None = None) -> None:
    for rel, content in (("question.jsonl", questions), ("model_judgment/j/m.jsonl", judgments),
                         ("model_answer/m.jsonl", answers)):
        if content is not None:
            p = folder / "ah" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode() if isinstance(content, str) else content)


def _arena(**parts: bytes | str) -> Callable[[Path, Path], None]:
    return lambda w, _db: _arena_dir(w, **parts)


def _mt_dir(question_file: bytes | str) -> dict:
    return {"mt/question.jsonl": question_file}


def _foreign_sqlite(w: Path, _db: Path) -> None:
    con = sqlite3.connect(w / "other.db")
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()


def _chmod(rel: str, mode: int) -> Callable[[Path, Path], None]:
    def setup(w: Path, db: Path) -> None:
        con = sqlite3.connect(db)  # the last connection to close removes -wal and -shm, as after any command
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        assert not Path(f"{db}-shm").exists()
        target = db if rel == "{store}" else (db.parent if rel == "{storedir}" else w / rel)
        target.chmod(mode)
    return setup


def _read_only_subfolder(w: Path, _db: Path) -> None:
    (w / "ro").mkdir()
    (w / "ro").chmod(0o555)


ANN = {"instruction": "i", "output_1": "a", "output_2": "b", "generator_1": "g1", "generator_2": "g2",
       "annotator": "x", "preference": 1.5}
QID = '{"question_id": %s, "turns": %s}\n'

CASES = [
    # -- the store itself ---------------------------------------------------------------------------------------------
    Case("info-store-is-a-folder", ["info"], "is a folder, not a store file", store="{w}"),
    Case("runs-store-is-a-folder", ["runs"], "is a folder, not a store file", store="{w}"),
    Case("report-store-is-a-folder", ["report", "{run}"], "is a folder", store="{w}"),
    Case("migrate-store-is-a-folder", ["migrate"], "is a folder", store="{w}"),
    Case("import-store-is-a-folder", ["import", "jsonl", "{w}/x.jsonl"], "is a folder", store="{w}",
         files={"x.jsonl": _export(1)}),
    Case("info-store-missing", ["info"], "no store at", store="{w}/none.db"),
    Case("leaderboard-store-missing", ["leaderboard", "--bench", "mt-bench"], "no store at", store="/proc/nope.db"),
    Case("run-store-on-read-only-proc", RUN_MT, "cannot create store /proc/lioneval-test.db",
         store="/proc/lioneval-test.db", absent=("/proc/lioneval-test.db",)),
    Case("import-store-on-sysfs", ["import", "mt-bench", "{w}/j_single.jsonl"], "cannot create store",
         store="/sys/lioneval-test.db", files={"j_single.jsonl": _mt_judgments(1)}),
    Case("migrate-store-folder-cannot-be-made", ["migrate"], "cannot create the folder /proc/lioneval-sub",
         store="/proc/lioneval-sub/s.db"),
    Case("info-store-not-sqlite", ["info"], "not a lioneval store (not an SQLite database)", store="{w}/notes.txt",
         files={"notes.txt": "shopping list\n" * 200}),
    Case("import-into-store-not-sqlite", ["import", "jsonl", "{w}/x.jsonl"], "not a lioneval store",
         store="{w}/notes.txt", files={"notes.txt": "shopping list\n" * 200, "x.jsonl": _export(1)}),
    Case("runs-store-is-another-database", ["runs"], "not a lioneval store", store="{w}/other.db",
         setup=_foreign_sqlite),
    Case("import-into-another-database", ["import", "jsonl", "{w}/x.jsonl"], "not a lioneval store",
         store="{w}/other.db", setup=_foreign_sqlite, files={"x.jsonl": _export(1)}),
    Case("info-store-unreadable", ["info"], "no permission to read store", non_root=True,
         setup=_chmod("{store}", 0)),
    Case("import-into-read-only-store", ["import", "jsonl", "{w}/x.jsonl"], "is read-only: no permission to write",
         non_root=True, files={"x.jsonl": _export(3)}, setup=_chmod("{store}", 0o444)),
    Case("runs-store-in-read-only-folder", ["runs"], "no permission to write in the folder", non_root=True,
         setup=_chmod("{storedir}", 0o555)),
    # -- a full disk --------------------------------------------------------------------------------------------------
    Case("import-mt-bench-disk-full", ["import", "mt-bench", "{w}/j_single.jsonl"], "the disk is full", full=True,
         files={"j_single.jsonl": _mt_judgments(300)}),
    Case("import-jsonl-disk-full", ["import", "jsonl", "{w}/x.jsonl"], "the disk is full", full=True,
         files={"x.jsonl": _export(300)}),
    Case("import-arena-hard-disk-full", ["import", "arena-hard", "{w}/ah"], "the disk is full", full=True,
         setup=_arena(judgments="".join(json.dumps({"question_id": f"q{i}", "model": "m", "games": [
             {"score": "A>B", "judgment": "w" * 2000}, {"score": "B>A", "judgment": "v" * 2000}]}) + "\n"
             for i in range(200)))),
    Case("import-alpaca-eval-disk-full", ["import", "alpaca-eval", "{w}/ann.json"], "the disk is full", full=True,
         files={"ann.json": json.dumps([{**ANN, "instruction": f"i{i}", "output_2": "o" * 2000}
                                        for i in range(200)])}),
    Case("run-disk-full", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "the disk is full", full=True, keeps=True, files=_mt_dir(_mt_questions(300))),
    # -- numeric flags outside their range ------------------------------------------------------------------------
    Case("run-limit-zero", [*RUN_MT, "--limit", "0"], "0 is not in the range x>=1"),
    Case("run-limit-negative", [*RUN_MT, "--limit", "-1"], "-1 is not in the range x>=1"),
    Case("run-limit-not-a-number", [*RUN_MT, "--limit", "ten"], "'ten' is not a valid integer"),
    Case("run-rounds-zero", [*RUN_MT, "--rounds", "0"], "--rounds"),
    Case("run-max-new-tokens-negative", [*RUN_MT, "--max-new-tokens", "-5"], "--max-new-tokens"),
    Case("run-batch-size-zero", [*RUN_MT, "--batch-size", "0"], "--batch-size"),
    Case("run-seed-negative", [*RUN_MT, "--seed", "-1"], "-1 is not in the range x>=0"),
    Case("leaderboard-rounds-negative", ["leaderboard", "--bench", "mt-bench", "--rounds", "-3"], "--rounds"),
    Case("leaderboard-rounds-zero", ["leaderboard", "--bench", "arena-hard", "--rounds", "0"], "--rounds"),
    Case("leaderboard-seed-negative", ["leaderboard", "--bench", "mt-bench", "--seed", "-2"], "--seed"),
    Case("compare-rounds-zero", ["compare", "{run}", "{run2}", "--rounds", "0"], "--rounds"),
    Case("compare-seed-negative", ["compare", "{run}", "{run2}", "--seed", "-1"], "--seed"),
    Case("audit-judge-sample-zero", ["audit", "judge", "--judge", "scripted:fair-judge", "--bench", "mt-bench",
                                     "--sample", "0"], "--sample"),
    Case("audit-judge-sample-negative", ["audit", "judge", "--judge", "scripted:fair-judge", "--bench", "mt-bench",
                                         "--sample", "-4"], "--sample"),
    Case("report-recompute-rounds-zero", ["report", "{run}", "--recompute", "--rounds", "0"], "--rounds"),
    Case("failures-limit-zero", ["failures", "{run}", "--limit", "0"], "--limit"),
    Case("dashboard-port-zero", ["dashboard", "--port", "0"], "1<=x<=65535"),
    # -- question files a run reads -----------------------------------------------------------------------------------
    Case("run-mt-bench-questions-latin1", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "not UTF-8", files=_mt_dir(_latin1(QID % (1, '["caf\u00e9"]')))),
    Case("run-mt-bench-questions-utf16", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "UTF-16", files=_mt_dir(_utf16(QID % (1, '["hi"]')))),
    Case("run-mt-bench-turns-a-number", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "no usable MT-Bench questions", files=_mt_dir(QID % (1, "5"))),
    Case("run-mt-bench-question-id-an-object", ["run", *SCRIPTED, "--bench", "mt-bench", "--data",
                                                "mt-bench={w}/mt"], "no usable MT-Bench questions",
         files=_mt_dir(QID % ('{"a": 1}', '["hi"]'))),
    Case("run-mt-bench-rows-are-lists", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "line is not a JSON object", files=_mt_dir('[1, 2]\n["a"]\n')),
    Case("run-mt-bench-category-a-number", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "malformed field (category)", files=_mt_dir('{"question_id": 1, "turns": ["hi"], "category": 5}\n')),
    Case("run-mt-bench-reference-a-number", ["run", *SCRIPTED, "--bench", "mt-bench", "--data",
                                             "mt-bench={w}/mt"], "malformed field (reference)",
         files=_mt_dir('{"question_id": 1, "turns": ["hi"], "reference": 5}\n')),
    Case("run-mt-bench-questions-empty", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/mt"],
         "the file is empty", files=_mt_dir("")),
    Case("run-mt-bench-data-missing", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "mt-bench={w}/nope"],
         "does not exist"),
    Case("run-data-without-bench", ["run", *SCRIPTED, "--bench", "mt-bench", "--data", "{w}/mt"],
         "--data takes BENCH=VALUE"),
    Case("run-arena-hard-questions-latin1", ["run", *SCRIPTED, "--bench", "arena-hard", "--data",
                                             "arena-hard={w}/ah"], "not UTF-8",
         setup=_arena(questions=_latin1('{"question_id": "a", "turns": [{"content": "caf\u00e9"}]}\n'))),
    Case("run-alpaca-eval-set-latin1", ["run", *SCRIPTED, "--bench", "alpaca-eval", "--data",
                                        "alpaca-eval={w}/ref.json"], "is not UTF-8 text",
         files={"ref.json": _latin1('[{"instruction": "caf\u00e9", "output": "x", "generator": "b"}]')}),
    Case("run-alpaca-eval-rows-are-lists", ["run", *SCRIPTED, "--bench", "alpaca-eval", "--data",
                                            "alpaca-eval={w}/ref.json"], "no usable AlpacaEval instructions",
         files={"ref.json": '[[1], 5, {"instruction": 5}]'}),
    Case("run-subset-latin1", [*RUN_MT, "--subset", "{w}/ids.txt"], "cannot read subset file",
         files={"ids.txt": b"\xe9\xe8\n"}),
    Case("run-subset-is-a-folder", [*RUN_MT, "--subset", "{w}"], "is a directory"),
    Case("run-chat-template-latin1", [*RUN_MT, "--chat-template", "{w}/t.jinja"], "chat template",
         files={"t.jinja": b"{{ caf\xe9 }}"}),
    # -- official files to import -------------------------------------------------------------------------------------
    Case("import-mt-bench-latin1", ["import", "mt-bench", "{w}/j_single.jsonl"], "not UTF-8",
         files={"j_single.jsonl": _latin1(_mt_judgments(2, model="caf\u00e9"))}),
    Case("import-mt-bench-utf16", ["import", "mt-bench", "{w}/j_single.jsonl"], "UTF-16",
         files={"j_single.jsonl": _utf16(_mt_judgments(2))}),
    Case("import-mt-bench-rows-are-lists", ["import", "mt-bench", "{w}/j_single.jsonl"], "not a JSON object",
         files={"j_single.jsonl": '[1]\n"x"\n5\n'}),
    Case("import-mt-bench-model-an-object", ["import", "mt-bench", "{w}/j_single.jsonl"], "every record was skipped",
         files={"j_single.jsonl": '{"question_id": 1, "model": {"a": 1}, "turn": 1, "score": 5}\n'}),
    Case("import-mt-bench-turn-true", ["import", "mt-bench", "{w}/j_single.jsonl"], "turn 1/2",
         files={"j_single.jsonl": '{"question_id": 1, "model": "m", "turn": true, "score": 5}\n'}),
    Case("import-mt-bench-judge-an-object", ["import", "mt-bench", "{w}/j_single.jsonl"], "judge is neither",
         files={"j_single.jsonl": '{"question_id": 1, "model": "m", "turn": 1, "score": 5, "judge": {"x": 1}}\n'}),
    Case("import-mt-bench-empty", ["import", "mt-bench", "{w}/j_single.jsonl"], "holds no mt-bench records",
         files={"j_single.jsonl": ""}),
    Case("import-mt-bench-answers-turns-a-number", ["import", "mt-bench", "{w}/j_single.jsonl", "--answers",
                                                    "{w}/a.jsonl"], "answer without question_id",
         files={"j_single.jsonl": "", "a.jsonl": '{"question_id": 1, "turns": 5}\n'}),
    Case("import-mt-bench-missing", ["import", "mt-bench", "{w}/nope.jsonl"], "does not exist"),
    Case("import-arena-hard-judgments-latin1", ["import", "arena-hard", "{w}/ah"], "not UTF-8",
         setup=_arena(judgments=_latin1('{"question_id": "caf\u00e9", "games": [{"score": "A>B"}]}\n'))),
    Case("import-arena-hard-turns-a-number", ["import", "arena-hard", "{w}/ah"], "question without a question_id",
         setup=_arena(questions='{"question_id": "a", "turns": 5}\n')),
    Case("import-arena-hard-answer-id-an-object", ["import", "arena-hard", "{w}/ah"], "answer without a question_id",
         setup=_arena(answers='{"question_id": {"a": 1}, "choices": [{"turns": [{"content": "x"}]}]}\n')),
    Case("import-arena-hard-is-a-file", ["import", "arena-hard", "{w}/x.jsonl"], "nothing to import",
         files={"x.jsonl": "{}\n"}),
    Case("import-alpaca-eval-latin1", ["import", "alpaca-eval", "{w}/ann.json"], "is not UTF-8 text",
         files={"ann.json": _latin1(json.dumps([{**ANN, "instruction": "caf\u00e9"}], ensure_ascii=False))}),
    Case("import-alpaca-eval-rows-are-lists", ["import", "alpaca-eval", "{w}/ann.json"], "row is not a JSON object",
         files={"ann.json": '[[1], 2, "x"]'}),
    Case("import-alpaca-eval-jsonl-utf16", ["import", "alpaca-eval", "{w}/ann.jsonl"], "UTF-16",
         files={"ann.jsonl": _utf16(json.dumps(ANN) + "\n")}),
    Case("import-jsonl-latin1", ["import", "jsonl", "{w}/x.jsonl"], "nothing imported",
         files={"x.jsonl": _latin1('{"table": "runs", "record": "caf\u00e9"}\n')}),
    Case("import-jsonl-rows-are-lists", ["import", "jsonl", "{w}/x.jsonl"], "none of its lines is an exported record",
         files={"x.jsonl": '[1]\n"x"\n{"table": ["x"]}\n{"table": "run_records", "record": [1]}\n'}),
    Case("import-jsonl-wrong-types", ["import", "jsonl", "{w}/x.jsonl"], "nothing imported",
         files={"x.jsonl": '{"table": "runs", "record": "m"}\n{"table": "nope", "record": {}}\n'
                           '{"table": "judgments", "record": {"question_id": 1, "benchmark": "b", "judge": "j", '
                           '"model": "m", "kind": "rating", "inputs": NaN}}\n'}),
    Case("import-jsonl-utf16", ["import", "jsonl", "{w}/x.jsonl"], "UTF-16", files={"x.jsonl": _utf16(_export(2))}),
    Case("import-jsonl-missing", ["import", "jsonl", "{w}/nope.jsonl"], "does not exist"),
    Case("import-unknown-benchmark", ["import", "mt-bnch", "{w}/x.jsonl"], "No such command",
         files={"x.jsonl": "{}\n"}),
    # -- exports ------------------------------------------------------------------------------------------------------
    Case("export-to-missing-folder", ["export", "{w}/nope/x.jsonl"], "does not exist", absent=("{w}/nope",)),
    Case("export-into-proc", ["export", "/proc/lioneval-export.jsonl"], "cannot export to",
         absent=("/proc/lioneval-export.jsonl",)),
    Case("export-into-sysfs", ["export", "/sys/lioneval-export.jsonl"], "cannot export to",
         absent=("/sys/lioneval-export.jsonl",)),
    Case("export-unknown-table", ["export", "{w}/x.jsonl", "--table", "jugdments"], "unknown table",
         absent=("{w}/x.jsonl",)),
    Case("export-into-read-only-folder", ["export", "{w}/ro/x.jsonl"], "Permission denied", non_root=True,
         setup=_read_only_subfolder, absent=("{w}/ro/x.jsonl",)),
    Case("export-over-a-read-only-file", ["export", "{w}/x.jsonl"], "is not writable", non_root=True,
         files={"x.jsonl": "kept\n"}, setup=lambda w, _db: (w / "x.jsonl").chmod(0o444)),
    Case("export-official-into-proc", ["export-official", "/proc/lioneval-out", "--bench", "mt-bench"],
         "cannot write in /proc/lioneval-out", absent=("/proc/lioneval-out",)),
    Case("export-official-blocked-by-a-file", ["export-official", "{w}/out", "--bench", "mt-bench"],
         "cannot write in", files={"out/model_answer": "a file where a folder goes\n"},
         absent=("{w}/out/question.jsonl", "{w}/out/model_judgment")),
    Case("export-target-is-a-folder", ["export", "{w}"], "is a directory"),
    Case("export-official-unknown-benchmark", ["export-official", "{w}/out", "--bench", "mt-bnch"], "mt-bench"),
    Case("export-official-unknown-run", ["export-official", "{w}/out", "--bench", "mt-bench", "--run", "nope-run"],
         "no run 'nope-run'"),
    Case("export-official-out-is-a-file", ["export-official", "{w}/x.jsonl", "--bench", "mt-bench"], "is a file",
         files={"x.jsonl": "{}\n"}),
    # -- verbs on stored runs -----------------------------------------------------------------------------------------
    Case("leaderboard-unknown-benchmark", ["leaderboard", "--bench", "mt-bnch"], "did you mean"),
    Case("leaderboard-unknown-toggle", ["leaderboard", "--bench", "mt-bench", "--toggle", "nope"], "has no toggle"),
    Case("leaderboard-data-missing", ["leaderboard", "--bench", "alpaca-eval", "--data", "{w}/nope.json"],
         "does not exist"),
    Case("report-unknown-run", ["report", "nope-run"], "no run 'nope-run'"),
    Case("report-recompute-unknown-run", ["report", "nope-run", "--recompute"], "no run 'nope-run'"),
    Case("compare-unknown-run", ["compare", "{run}", "nope-run"], "no run 'nope-run'"),
    Case("failures-unknown-run", ["failures", "nope-run"], "no run 'nope-run'"),
    Case("rejudge-unknown-run", ["rejudge", "nope-run", "--judge", "scripted:fair-judge"], "no run 'nope-run'"),
    Case("rejudge-unknown-backend", ["rejudge", "{run}", "--judge", "nosuch:judge"], "nosuch"),
    Case("rejudge-unknown-script", ["rejudge", "{run}", "--judge", "scripted:no-such-script"],
         "no scripted backend"),
    Case("rejudge-garbage-judge-is-incomplete", ["rejudge", "{run}", "--judge", "scripted:echo"], "incomplete",
         code=3, keeps=True),
    Case("judge-unknown-benchmark", ["judge", "--bench", "mt-bnch", "--model", "{model}", "--judge",
                                     "scripted:fair-judge"], "did you mean"),
    Case("judge-unknown-backend", ["judge", "--bench", "mt-bench", "--model", "{model}", "--judge", "nosuch:x"],
         "nosuch"),
    Case("judge-garbage-judge-is-incomplete", ["judge", "--bench", "mt-bench", "--model", "{model}", "--judge",
                                               "scripted:echo"], "verdicts could not be read", code=3, keeps=True),
    Case("runs-extra-argument", ["runs", "{run}"], "unexpected extra argument"),
    Case("info-extra-argument", ["info", "now"], "unexpected extra argument"),
    # -- audits -------------------------------------------------------------------------------------------------------
    Case("audit-answers-latin1", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"], "is not UTF-8 text",
         files={"a.jsonl": _latin1('{"question_id": 1, "question": "caf\u00e9", "answer": "x"}\n')}),
    Case("audit-answers-utf16", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"], "UTF-16",
         files={"a.jsonl": _utf16('{"question_id": 1, "question": "q", "answer": "x"}\n')}),
    Case("audit-answers-question-id-an-object", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"],
         "question_id", files={"a.jsonl": '{"question_id": {"a": 1}, "question": "q", "answer": "x"}\n'}),
    Case("audit-answers-model-an-object", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"],
         "must be strings",
         files={"a.jsonl": '{"question_id": 1, "question": "q", "answer": "x", "model": {"a": 1}}\n'}),
    Case("audit-answers-finish-reasons-numbers", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"],
         "bad finish_reasons",
         files={"a.jsonl": '{"question_id": 1, "question": "q", "answer": "x", "finish_reasons": [5]}\n'}),
    Case("audit-answers-row-a-list", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"], "JSON object",
         files={"a.jsonl": '["question_id", 1]\n'}),
    Case("audit-answers-empty", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench"], "holds no answers",
         files={"a.jsonl": "\n\n"}),
    Case("audit-answers-config-latin1", ["audit", "answers", "{w}/a.jsonl", "--bench", "mt-bench", "--config",
                                         "{w}/c.yaml"], "not UTF-8",
         files={"a.jsonl": '{"question_id": 1, "question": "q", "answer": "x"}\n', "c.yaml": b"a: \xe9\n"}),
    Case("audit-judge-unknown-benchmark", ["audit", "judge", "--judge", "scripted:fair-judge", "--bench", "nope"],
         "nope"),
    Case("audit-judge-data-missing", ["audit", "judge", "--judge", "scripted:fair-judge", "--bench", "mt-bench",
                                      "--data", "{w}/nope"], "does not exist"),
    # -- promotion and listing ----------------------------------------------------------------------------------------
    Case("promote-stage-traversal", ["promote", "--stage", "../evil"], "stage"),
    Case("promote-stage-without-checkpoints", ["promote", "--stage", "sft"], "eligible for promotion"),
    Case("list-unknown-kind", ["list", "widgets"], "'widgets' is not one of"),
    Case("list-without-kind", ["list"], "Missing argument"),
]


# Tables of what a run paid for (model and judge calls) or was given: a failing command never rewrites a row of
# them. Reports and checks are derived and may be recomputed (replaced) by a command that then exits 3.
PAID = {"runs", "questions", "answers", "judgments", "game_results", "run_records", "promotions", "early_stops"}


def _fill(arg: str, w: Path, db: Path, pop: Populated) -> str:
    return (arg.replace("{store}", str(db)).replace("{w}", str(w)).replace("{run2}", pop.runs[1])
            .replace("{run}", pop.runs[0]).replace("{model}", pop.model).replace("{demo}", str(DEMO_DATA)))


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store opened for writing gets no page beyond its current size: the next write that needs one fails
    with SQLite's own SQLITE_FULL, "database or disk is full"."""
    opened = RunStore.__init__

    def init(self: RunStore, *args, **kwargs) -> None:
        opened(self, *args, **kwargs)
        if not self.readonly:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(RunStore, "__init__", init)


def test_there_are_enough_cases_and_every_verb_is_covered():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    verbs = {c.argv[0] for c in CASES}
    assert {"import", "export", "export-official", "leaderboard", "report", "compare", "judge", "rejudge", "audit",
            "info", "runs", "failures", "promote", "list"} <= verbs
    assert {c.argv[1] for c in CASES if c.argv[0] == "audit"} == {"answers", "judge"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_exits_with_one_line_and_keeps_the_store(case: Case, populated: Populated, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch):
    if case.non_root and AS_ROOT:
        pytest.skip(ROOT_SKIP)
    db = tmp_path / "store" / "store.db"
    db.parent.mkdir()
    shutil.copy(populated.db, db)
    w = tmp_path / "w"
    w.mkdir()
    for name, content in case.files.items():
        p = w / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    before = rows(db)
    if case.setup is not None:
        case.setup(w, db)
    store_arg = _fill(case.store, w, db, populated)
    foreign = Path(store_arg) if store_arg != str(db) and Path(store_arg).is_file() else None
    foreign_before = foreign.read_bytes() if foreign else None
    if case.full:
        _full_disk(monkeypatch)
    capsys.readouterr()
    try:
        code = main(["--store", store_arg, *(_fill(a, w, db, populated) for a in case.argv)])
    finally:
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)
        db.parent.chmod(0o755)
        monkeypatch.undo()
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == case.code, f"exit {code}, stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("lioneval: "), f"stderr is not one line: {err!r}"
    assert case.expect in lines[0], lines[0]
    assert "Fix:" in lines[0] or "--help" in lines[0], f"no fix given: {lines[0]}"
    assert "Traceback" not in out + err
    for path in case.absent:
        assert not Path(_fill(path, w, db, populated)).exists(), f"{path} was left behind"
    assert not list(w.rglob("*.tmp")) and not list(w.rglob(".lioneval-export-*")), "a temporary file was left"
    if foreign is not None:
        assert foreign.read_bytes() == foreign_before, "the file given as --store was changed"
    after = rows(db)
    if case.keeps:  # nothing lost: every stored key is still there, and what was paid for is unchanged
        for table, old in before.items():
            keys = {r.split(",")[0] for r in after[table]}
            assert {r.split(",")[0] for r in old} <= keys, f"rows of {table} went missing"
            if table in PAID:
                assert old <= after[table], f"rows of {table} changed"
    else:
        assert digest(after) == digest(before), {t: (len(before[t]), len(after.get(t, ()))) for t in before}


# -- what the table does not show ---------------------------------------------------------------------------------


def test_a_byte_order_mark_does_not_drop_the_first_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bom = b"\xef\xbb\xbf"
    db = tmp_path / "s.db"
    (tmp_path / "mt").mkdir()
    (tmp_path / "mt" / "question.jsonl").write_bytes(bom + (QID % (1, '["one"]') + QID % (2, '["two"]')).encode())
    (tmp_path / "j_single.jsonl").write_bytes(bom + _mt_judgments(2).encode())
    (tmp_path / "x.jsonl").write_bytes(bom + _export(2).encode())
    (tmp_path / "ann.json").write_bytes(bom + json.dumps([ANN]).encode())
    (tmp_path / "a.jsonl").write_bytes(bom + b'{"question_id": 1, "question": "q", "answer": "x"}\n')
    assert main(["--store", str(db), "run", *SCRIPTED, "--bench", "mt-bench", "--data", f"mt-bench={tmp_path / 'mt'}",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reports"][0]["counts"]["questions"] == 2
    assert main(["--store", str(db), "import", "mt-bench", str(tmp_path / "j_single.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["read"]["judgments"] == 2
    assert main(["--store", str(db), "import", "jsonl", str(tmp_path / "x.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["added"]["judgments"] == 2
    assert main(["--store", str(db), "import", "alpaca-eval", str(tmp_path / "ann.json")]) == 0
    assert json.loads(capsys.readouterr().out)["read"]["judgments"] == 1
    assert main(["audit", "answers", str(tmp_path / "a.jsonl"), "--bench", "mt-bench"]) == 0
    assert "1 answers" in capsys.readouterr().out


def test_bad_lines_among_good_ones_are_skipped_counted_and_warned_once(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]):
    good = _mt_judgments(3)
    bad = [_latin1('{"question_id": 1, "model": "caf\u00e9", "turn": 1, "score": 5}\n'), b'[1, 2]\n',
           b'{"question_id": 1, "model": "m", "turn": 1, "score": 5, "judgment": "x", "category": 7, "judge": 3}\n',
           b'{"question_id": 2.5, "model": "m", "turn": 1, "score": 5}\n', b'{"question_id": 1, "model": "m", '
           b'"turn": 1, "score": NaN}\n']
    (tmp_path / "j_single.jsonl").write_bytes(good.encode() + b"".join(bad) + _latin1("\u00e9\n"))
    assert main(["--store", str(tmp_path / "s.db"), "import", "mt-bench", str(tmp_path / "j_single.jsonl")]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["read"]["judgments"] == 4  # the NaN score is kept as a failed rating, as FastChat's -1 is
    assert result["skipped"]["line is not UTF-8 text (save the file as UTF-8)"] == 2
    assert result["skipped"]["line is not a JSON object"] == 1
    assert err.count("not UTF-8") == 1 and "Traceback" not in err
    assert all(line.startswith("warning: ") for line in err.splitlines())


def test_export_official_writes_only_under_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Model and judge names come from files anyone can write; as file names they never leave OUT."""
    db, out = tmp_path / "s.db", tmp_path / "deep" / "er" / "out"
    evil = "../../evil"
    (tmp_path / "j_single.jsonl").write_text(
        json.dumps({"question_id": 1, "model": evil, "judge": "../../judge", "turn": 1, "score": 7}) + "\n")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"question_id": 1, "model": evil, "choices": [{"turns": ["hello"]}]}) + "\n")
    assert main(["--store", str(db), "import", "mt-bench", str(tmp_path / "j_single.jsonl"),
                 "--answers", str(tmp_path / "a.jsonl")]) == 0
    # AlpacaEval exports what a run stored (it needs the questions): the baseline is named by the eval set
    eval_set = [{"instruction": f"Say {w}.", "output": f"{w}!", "generator": evil} for w in ("yes", "no", "maybe")]
    (tmp_path / "ref.json").write_text(json.dumps(eval_set))
    assert main(["--store", str(db), "run", *SCRIPTED, "--bench", "alpaca-eval", "--data",
                 f"alpaca-eval={tmp_path / 'ref.json'}", "--json"]) == 0
    ah = tmp_path / "ah"
    (ah / "model_judgment" / "j").mkdir(parents=True)
    (ah / "model_judgment" / "j" / "x.jsonl").write_text(json.dumps(
        {"question_id": "q1", "model": evil, "games": [{"score": "A>B"}, {"score": "B>A"}]}) + "\n")
    assert main(["--store", str(db), "import", "arena-hard", str(ah)]) == 0
    capsys.readouterr()
    before = {p for p in tmp_path.rglob("*")}
    for bench in ("mt-bench", "arena-hard", "alpaca-eval"):
        assert main(["--store", str(db), "export-official", str(out), "--bench", bench]) == 0, capsys.readouterr()
        counts = json.loads(capsys.readouterr().out)
        assert counts and all(Path(p).resolve().is_relative_to(out.resolve()) for p in counts)
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if not p.resolve().is_relative_to(out.resolve()) and p not in out.parents
               and not str(p).startswith(str(db))]
    assert not outside, outside
    assert not (tmp_path / "evil").exists() and not (tmp_path / "deep" / "evil").exists()
    assert not list(out.rglob(".lioneval-export-*"))


def test_export_leaves_out_a_damaged_record_and_says_so(populated: Populated, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]):
    db = tmp_path / "s.db"
    shutil.copy(populated.db, db)
    con = sqlite3.connect(db)
    n = con.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    con.execute("UPDATE judgments SET record = '{\"question_id\": 5' WHERE rowid = (SELECT MIN(rowid) FROM judgments)")
    con.execute("UPDATE answers SET record = '{\"question_id\": \"1\"}' WHERE rowid = (SELECT MIN(rowid) FROM answers)")
    con.commit()
    con.close()
    before = rows(db)
    out = tmp_path / "x.jsonl"
    assert main(["--store", str(db), "export", str(out)]) == 0
    stdout, err = capsys.readouterr()
    counts = json.loads(stdout)
    assert counts["judgments"] == n - 1 and "skipped" not in counts
    assert err.startswith("warning: left out 2 damaged record(s)") and len(err.splitlines()) == 1
    assert sum(1 for _ in out.open()) == sum(counts.values())
    assert rows(db) == before
    assert main(["--store", str(tmp_path / "b.db"), "import", "jsonl", str(out)]) == 0  # the export reads back


def test_a_failed_write_rolls_back_cleanly_and_keeps_every_committed_batch(tmp_path: Path):
    from lioneval.errors import StoreError
    from lioneval.types import Judgment

    def batch(tag: str, n: int) -> list[Judgment]:
        return [Judgment(question_id=f"{tag}{i}", benchmark="b", judge="j", model="m", kind="rating", value=1.0,
                         raw="r" * 1000) for i in range(n)]

    st = RunStore(tmp_path / "s.db")
    st.put_judgments(batch("a", 5))
    pages = st._db.execute("PRAGMA page_count").fetchone()[0]
    st._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="the disk is full") as info:
        st.put_judgments(batch("b", 500))
    assert "rollback" not in str(info.value) and "Fix:" in str(info.value)
    assert not st._db.in_transaction
    assert st.counts()["judgments"] == 5
    st._db.execute(f"PRAGMA max_page_count = {pages * 100}")  # space freed: the same store carries on
    assert st.put_judgments(batch("c", 5)) == 5
    st.close()
    with RunStore(tmp_path / "s.db", readonly=True) as ro:
        assert ro.counts()["judgments"] == 10


def test_info_aligns_every_table_name(populated: Populated, capsys: pytest.CaptureFixture[str]):
    assert main(["--store", str(populated.db), "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = {len(line) - len(line.split()[-1]) for line in lines[1:]}
    assert len(starts) == 1, lines
    assert any(line.split() == ["early_stops", "0"] for line in lines)
    assert any(line.split()[0] == "questions" and line.split()[1].isdigit() for line in lines)


def _read_only_mount_works(folder: Path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {folder} {folder} && "
                            f"mount -o remount,ro,bind {folder} && ! touch {folder}/probe 2>/dev/null"],
                           capture_output=True, timeout=30) if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0


@pytest.mark.parametrize("verb", [["info"], ["runs"], ["migrate"], ["import", "jsonl", "EXPORT"], ["export", "OUT"]],
                         ids=lambda v: v[0])
def test_a_store_on_a_read_only_mount(verb: list[str], populated: Populated, tmp_path: Path):
    """A store on a read-only file system (a read-only bind mount in a private mount namespace, where the system
    allows one; file permissions would not stop root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(populated.db, ro / "store.db")
    if not _read_only_mount_works(ro):
        pytest.skip("no private read-only mount here (needs `unshare -m` and mount permission)")
    (tmp_path / "x.jsonl").write_text(_export(2))
    before = rows(ro / "store.db")
    con = sqlite3.connect(ro / "store.db")  # closed cleanly, as after any command: no -wal or -shm file left
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert not (ro / "store.db-shm").exists()
    argv = [a.replace("EXPORT", str(tmp_path / "x.jsonl")).replace("OUT", str(ro / "x.jsonl")) for a in verb]
    store = str(tmp_path / "store.db") if verb[0] == "export" else str(ro / "store.db")
    if verb[0] == "export":
        shutil.copy(populated.db, store)
    cli = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "lioneval.cli", "--store", store, *argv])
    res = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} "
                          f"&& exec {cli}"], capture_output=True, text=True, timeout=120)
    lines = res.stderr.splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("lioneval: error: "), res.stderr
    assert "read-only file system" in lines[0].lower() and "Fix:" in lines[0], lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert rows(ro / "store.db") == before and not (ro / "x.jsonl").exists()
