import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from lioneval.cli import cli, main


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(cli)], ids=lambda p: " ".join(p) or "root")
def test_every_verb_has_help(path, capsys):
    assert main([*path, "--help"]) == 0
    assert "Usage:" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "lioneval, version" in capsys.readouterr().out


def test_bad_usage_exits_2_with_one_line(capsys):
    for argv in (["list", "widgets"], ["no-such-verb"], ["list"], ["export"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lioneval: error:") and "\n" not in err


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "none.db"), "info"]) == 2
    err = capsys.readouterr().err
    assert "no store" in err and "Fix:" in err


def test_list_and_export_import_round_trip(tmp_path, capsys):
    from lioneval.store import RunStore
    from lioneval.types import Judgment

    db = tmp_path / "a.db"
    with RunStore(db) as st:
        st.put_judgments([Judgment(question_id="1", benchmark="b", judge="j", model="m", kind="rating", value=5)])
    assert main(["list", "benchmarks"]) == 0
    out = tmp_path / "x.jsonl"
    assert main(["--store", str(db), "export", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"judgments": 1}
    assert main(["--store", str(tmp_path / "b.db"), "import", "jsonl", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["added"]["judgments"] == 1
    assert main(["--store", str(tmp_path / "b.db"), "info"]) == 0
    assert "judgments1" in capsys.readouterr().out.replace(" ", "")


def test_console_script_runs():
    exe = [sys.executable, "-m", "lioneval.cli", "list", "judges"]
    assert subprocess.run(exe, capture_output=True, text=True).returncode == 0


def test_import_subcommands_come_from_the_benchmarks_with_their_settings(tmp_path, capsys):
    from lioneval.store import RunStore

    db = str(tmp_path / "s.db")
    fixtures = Path(__file__).parent / "fixtures" / "arena_hard"
    assert main(["import", "arena-hard", "--help"]) == 0
    assert "Judge folder under model_judgment/" in capsys.readouterr().out
    assert main(["--store", db, "import", "arena-hard", str(fixtures), "--models", "model-x"]) == 0
    with RunStore(db, readonly=True) as st:
        assert {j.model for j in st.judgments()} == {"model-x"}
