"""The project config (lioneval.toml / [tool.lioneval]), `lioneval config show`, and the command line around it:
flags over config over defaults, --store before or after the verb, no empty store left by a failing command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lioneval.cli import main, run_config
from lioneval.errors import ConfigError
from lioneval.project import load_project


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_found_from_a_subfolder_and_paths_relative_to_the_file(tmp_path, monkeypatch):
    _write(tmp_path / "lioneval.toml", 'store = "runs/x.db"\n[data]\narena-hard = "data/ah"\n')
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sub" / "deeper")
    cfg = load_project()
    assert cfg.path == (tmp_path / "lioneval.toml").resolve()
    assert cfg.get("store") == str(tmp_path.resolve() / "runs" / "x.db")
    assert cfg.table("data") == {"arena-hard": str(tmp_path.resolve() / "data" / "ah")}


def test_pyproject_tool_table(tmp_path, monkeypatch):
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.lioneval]\njudge = "openai:gpt-4o"\n'
                                        'bench = ["mt-bench", "arena-hard@v0.1"]\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_project()
    assert cfg.get("judge") == "openai:gpt-4o" and cfg.bench() == ("mt-bench", "arena-hard@v0.1")
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert load_project().path is None  # a pyproject without the table is not a config


@pytest.mark.parametrize("text, words", [
    ('jugde = "openai:x"\n', ["unknown setting 'jugde'", "did you mean 'judge'"]),
    ('openai_api_key = "sk-123"\n', ["looks like a secret", "environment variable"]),
    ('[judges]\nmt-bnch = "openai:x"\n', ["did you mean 'mt-bench'"]),
    ('seed = "zero"\n', ["seed", "must be int"]),
    ('judge_timeout = true\n', ["judge_timeout"]),
    ('[benchmarks.alpaca-eval]\nhf_token = "x"\n', ["looks like a secret"]),
    ('store = \n', ["not valid TOML"]),
])
def test_bad_configs_say_what_and_how(tmp_path, monkeypatch, text, words):
    _write(tmp_path / "lioneval.toml", text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_project()
    for w in words:
        assert w in str(err.value)


def test_judge_max_tokens_is_not_mistaken_for_a_secret(tmp_path):
    cfg = load_project(_write(tmp_path / "c.toml", "judge_max_tokens = 4096\n"))
    assert cfg.get("judge_max_tokens") == 4096


def test_flags_override_the_config_and_a_cli_judge_replaces_per_benchmark_judges(tmp_path):
    cfg = load_project(_write(tmp_path / "lioneval.toml", (
        'judge = "openai:a"\nseed = 3\njudge_timeout = 300\nbench = ["mt-bench"]\n'
        '[judges]\nmt-bench = "openai:per-bench"\n[revisions]\nmt-bench = "abc"\n'
        '[benchmarks.alpaca-eval]\nannotator = "x"\n')))
    run = run_config(cfg, {"ckpt": "c"})
    assert run.judge == "openai:a" and run.judges == {"mt-bench": "openai:per-bench"}
    assert run.seed == 3 and run.judge_timeout == 300 and run.bench == ("mt-bench",)
    assert run.revisions == {"mt-bench": "abc"} and run.bench_options == {"alpaca-eval": {"annotator": "x"}}
    run = run_config(cfg, {"ckpt": "c", "judge": "openai:flag", "seed": 5, "bench": ("arena-hard",),
                           "bench_options": {"alpaca-eval": {"annotator": "y"}}})
    assert run.judge == "openai:flag" and run.judges == {} and run.seed == 5 and run.bench == ("arena-hard",)
    assert run.bench_options == {"alpaca-eval": {"annotator": "y"}}


def test_config_show_names_every_source(tmp_path, monkeypatch, capsys):
    _write(tmp_path / "lioneval.toml", 'judge_timeout = 300\n[judges]\nalpaca-eval = "openai:gpt-4o"\n'
                                       '[data]\narena-hard = "ah"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["config", "show", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["judge_timeout"]["value"] == 300 and "lioneval.toml" in rows["judge_timeout"]["source"]
    assert rows["judges.alpaca-eval"]["value"] == "openai:gpt-4o" and "[judges]" in rows["judges.alpaca-eval"]["source"]
    assert rows["judges.mt-bench"]["value"] == "openai:gpt-4"
    assert "official judge" in rows["judges.mt-bench"]["source"] and "not set" in rows["judges.mt-bench"]["source"]
    assert rows["data.arena-hard"]["value"] == str(tmp_path.resolve() / "ah")
    assert "lmsys/mt-bench" in rows["data.mt-bench"]["value"]
    assert rows["seed"] == {"name": "seed", "value": 0, "source": "default"}
    assert main(["config", "show"]) == 0
    assert "official judge of mt-bench" in capsys.readouterr().out


def test_store_before_or_after_the_verb_and_from_the_config(tmp_path, monkeypatch, capsys):
    from lioneval.store import RunStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIONEVAL_STORE", raising=False)
    RunStore(tmp_path / "a.db").close()
    assert main(["runs", "--store", str(tmp_path / "a.db")]) == 0
    assert main(["runs", f"--store={tmp_path / 'a.db'}"]) == 0
    assert main(["--store", str(tmp_path / "a.db"), "runs"]) == 0
    capsys.readouterr()
    _write(tmp_path / "lioneval.toml", 'store = "b.db"\n')
    assert main(["runs"]) == 2  # the config's store, which does not exist yet
    assert "b.db" in capsys.readouterr().err


def test_a_failing_command_leaves_no_empty_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "new.db"
    for args in (["run", "--ckpt", str(tmp_path / "missing")],
                 ["import", "arena-hard", str(tmp_path / "missing-folder")],
                 ["rejudge", "nosuchrun", "--judge", "openai:x"]):
        assert main(["--store", str(db), *args]) == 2, args
        assert not db.exists() and not Path(f"{db}-wal").exists(), args
    capsys.readouterr()


def test_missing_checkpoint_comes_before_the_judge_check(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["run", "--ckpt", "out/dpo-step2000"]) == 2
    err = capsys.readouterr().err
    assert "out/dpo-step2000" in err and "does not exist" in err and "judge" not in err
    assert err.count("\n") == 1 and "Traceback" not in err
