"""A benchmark that lives outside lioneval (tests/plugins/toy_bench.py) runs through every verb: registered through
the `lioneval.benchmarks` entry-point group of an installed distribution, or through the registry API, with no edit
to lioneval. Generation and judging are in-process scripted backends, so this needs no torch and no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lioneval.cli import main
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.testing.scripted import script

PLUGINS = Path(__file__).parent / "plugins"


@script("harsh-judge")
def _harsh(chat, sampling) -> str:
    return "Too short. Rating: [[2]]"


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """Install a distribution whose entry point names the toy benchmark, as `pip install toy-bench` would."""
    site = tmp_path / "site"
    dist = site / "toy_bench_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-bench-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lioneval.benchmarks]\ntoy = toy_bench:ToyBench\n")
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(BENCHMARKS, "_plugins_loaded", False)
    yield "toy"
    BENCHMARKS.unregister("toy")
    BENCHMARKS._plugins_loaded = False


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_entry_point_registers_the_benchmark(toy, capsys):
    assert "toy" in BENCHMARKS.names()
    code, out, _ = cli(capsys, "list", "benchmarks")
    assert code == 0 and "toy" in out and "plug-in from toy-bench-plugin" in out


def test_every_verb_runs_on_a_plugin_benchmark(toy, tmp_path, capsys):
    db = str(tmp_path / "runs.db")
    code, out, err = cli(capsys, "--store", db, "run", "--policy", "scripted:echo", "--bench", "toy",
                         "--judge", "scripted:fair-judge", "--limit", "10", "--json")
    assert code == 0, err
    result = json.loads(out)
    run_key = result["run"]
    (rep,) = result["reports"]
    assert rep["benchmark"] == "toy" and rep["counts"]["questions"] == 10 and rep["metrics"]["mean"]["n"] == 10
    assert rep["metrics"]["mean"]["ci_low"] < rep["metrics"]["mean"]["value"] < rep["metrics"]["mean"]["ci_high"]
    names = {c["name"] for c in rep["checks"]}
    assert {"toy_floor", "duplicates", "injection"} <= names  # its own check beside the generic ones

    # report --recompute: the same report from the stored records, byte for byte
    with RunStore(db, readonly=True) as st:
        stored = st.reports(run=run_key)[0].to_json()
    code, out, err = cli(capsys, "--store", db, "report", run_key, "--recompute", "--json")
    assert code == 0, err
    with RunStore(db, readonly=True) as st:
        assert st.reports(run=run_key)[0].to_json() == stored

    # rejudge with another judge: a second report of the same run, the first one kept
    code, out, err = cli(capsys, "--store", db, "rejudge", run_key, "--judge", "scripted:harsh-judge")
    assert code == 0, err
    with RunStore(db, readonly=True) as st:
        reports = {r.judge.split("#")[0]: r for r in st.reports(run=run_key)}
        checks = st.checks(run=run_key, benchmark="toy")
    assert set(reports) == {"scripted:fair-judge", "scripted:harsh-judge"}
    assert reports["scripted:harsh-judge"].metrics["mean"].value == 2.0
    assert reports["scripted:harsh-judge"].meta["eligible_for_promotion"] is True
    floor = {c.judge.split("#")[0]: c.status for c in checks if c.name == "toy_floor"}
    assert floor == {"scripted:fair-judge": "pass", "scripted:harsh-judge": "pass"}

    # leaderboard: one row per judge
    code, out, err = cli(capsys, "--store", db, "leaderboard", "--bench", "toy", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["judge"].split("#")[0] for r in rows} == {"scripted:fair-judge", "scripted:harsh-judge"}
    assert all(r["mean"]["n"] == 10 for r in rows)

    # export to JSONL and import into a fresh store: the run, its links and its reports come along
    dump = tmp_path / "dump.jsonl"
    assert cli(capsys, "--store", db, "export", str(dump))[0] == 0
    db2 = str(tmp_path / "copy.db")
    code, out, err = cli(capsys, "--store", db2, "import", "jsonl", str(dump))
    assert code == 0, err and json.loads(out)["added"]["run_records"] > 0
    code, out, err = cli(capsys, "--store", db2, "report", run_key, "--recompute", "--json")
    assert code == 0, err
    assert {r["judge"] for r in json.loads(out)} == {r.judge for r in reports.values()}

    # the benchmark's official format: export, then import into a third store
    official = tmp_path / "official"
    code, out, err = cli(capsys, "--store", db, "export-official", str(official), "--bench", "toy", "--run", run_key)
    assert code == 0, err
    db3 = str(tmp_path / "third.db")
    code, out, err = cli(capsys, "--store", db3, "import", "toy", str(official / "toy.jsonl"), "--judge", "imported")
    assert code == 0, err and json.loads(out)["read"]["answers"] == 10
    code, out, err = cli(capsys, "--store", db3, "leaderboard", "--bench", "toy", "--json")
    assert json.loads(out)[0]["judge"] == "imported"


def test_registry_api_registration_and_the_null_probe(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(PLUGINS))
    BENCHMARKS.register("toy-api", "toy_bench:ToyBench", "toy benchmark registered in code")
    try:
        db = str(tmp_path / "runs.db")
        code, out, err = cli(capsys, "--store", db, "audit", "judge", "--judge", "scripted:harsh-judge",
                             "--bench", "toy-api", "--no-families", "--json")
        assert code == 0, err  # a constant answer gets 2 of 10 from this judge: below the toy threshold of 4
        probe = json.loads(out)
        assert probe["benchmark"] == "toy-api" and {s["answer"] for s in probe["scores"]} == {
            "plain", "refusal", "inject-rating"}
    finally:
        BENCHMARKS.unregister("toy-api")
