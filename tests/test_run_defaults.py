"""`lioneval run --ckpt out/dpo-step2000` exactly as users type it: the official data of each benchmark from the
Hugging Face hub (a local hub serving fixture repositories, downloaded by the real huggingface_hub client), the
official judges (OpenAI's API, here the scripted server behind OPENAI_BASE_URL), no other flag. And the same command
without a key or a network: exit 2, one line, nothing stored."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch", reason="needs the train extra (torch, transformers)")

from lioneval.cli import main  # noqa: E402
from lioneval.store import RunStore  # noqa: E402
from lioneval.testing.openai_server import Reply, ScriptedServer  # noqa: E402
from lioneval.testing.tiny import make_tiny_causal_lm  # noqa: E402


def load_hub_server() -> ModuleType:
    """tests/hub_server.py, loaded by path (tests/ is not a package and not on sys.path)."""
    name = "hub_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("hub_server.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


hub_server = load_hub_server()
hub = hub_server.hub  # the fixture


MODELS: set[str] = set()  # the model names the judge server was asked for


def judge_reply(req: dict):
    """An "official" judge: logprobs for AlpacaEval's weighted annotator, a verdict or a rating otherwise."""
    MODELS.add(req["model"])
    text = req["messages"][-1]["content"]
    if req.get("logprobs"):
        return Reply(text="m", top_logprobs=[{"m": math.log(0.6), "M": math.log(0.4)}])
    if "Assistant A" in text or "assistant A" in text:
        return "My final verdict is tie: [[A=B]]"
    return f"Rating: [[{3 + len(text) % 5}]]"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    make_tiny_causal_lm(root / "out" / "dpo-step2000")
    return root


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder of a user: out/dpo-step2000 in it, no lioneval.toml, no store yet; the MT-Bench package
    hidden so that every benchmark's data comes from the hub (the package path is tested in test_sources.py)."""
    monkeypatch.chdir(workdir)
    for leftover in workdir.glob("lioneval.db*"):
        leftover.unlink()
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] == "mtbench_evaluator" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delenv("LIONEVAL_STORE", raising=False)
    return workdir


def test_run_as_written_uses_official_data_and_judges(hub, project, monkeypatch, capsys):
    commits = hub.add_repos(hub_server.official_repos())
    MODELS.clear()
    with ScriptedServer(judge_reply) as judge:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", judge.base_url)
        assert main(["run", "--ckpt", "out/dpo-step2000"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "lmarena-ai/arena-hard-auto@" in out and "tatsu-lab/alpaca_eval@" in out  # printed with the reports
        calls = len(judge.requests)
        assert MODELS == {"gpt-4", "gpt-4-1106-preview"}
        downloads = len(hub.downloads())
        assert downloads > 0

        with RunStore(project / "lioneval.db", readonly=True) as st:
            reports = {r.benchmark: r for r in st.reports()}
        assert set(reports) == {"mt-bench", "arena-hard", "alpaca-eval"}
        for name, r in reports.items():
            assert r.complete, (name, r.incomplete)
            data = r.meta["data"]
            assert data["origin"] == "hub-download" and data["commit"] == commits[data["repo_id"]]
            assert data["files"] and all(len(sha) == 64 for sha in data["files"].values())
        assert reports["mt-bench"].meta["judge_spec"] == "openai:gpt-4"
        assert reports["arena-hard"].meta["judge_spec"] == "openai:gpt-4-1106-preview"
        assert reports["alpaca-eval"].meta["judge_spec"] == "openai:gpt-4-1106-preview"
        assert reports["mt-bench"].meta["data"]["repo_id"] == "lmsys/mt-bench"

        # Again: the data comes from the hub cache (no download) and nothing is generated or judged again.
        assert main(["run", "--ckpt", "out/dpo-step2000", "--json"]) == 0
        again = json.loads(capsys.readouterr().out)
        assert len(judge.requests) == calls and len(hub.downloads()) == downloads
        assert {r["meta"]["data"]["origin"] for r in again["reports"]} == {"hub-cache"}
        assert {r["run"] for r in again["reports"]} == {reports["mt-bench"].run}


def test_no_key_no_config_offline_exits_2_in_one_line(hub, project, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "--ckpt", "out/dpo-step2000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for words in ("no judge for mt-bench, arena-hard, alpaca-eval", "openai:gpt-4", "OPENAI_API_KEY",
                  "--judge", "lioneval.toml"):
        assert words in err, (words, err)
    assert not (project / "lioneval.db").exists()


def test_offline_without_cached_data_names_the_dataset_and_the_fix(hub, project, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "--ckpt", "out/dpo-step2000", "--bench", "alpaca-eval"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for words in ("tatsu-lab/alpaca_eval", "main", "download", "--data alpaca-eval=PATH"):
        assert words in err, (words, err)
    assert not (project / "lioneval.db").exists()


def test_a_project_config_sets_judge_and_data(hub, project, monkeypatch, capsys, tmp_path):
    """A team's lioneval.toml: its judge (an OpenAI-compatible server, no key needed) and a pinned revision."""
    commits = hub.add_repos({k: v for k, v in hub_server.official_repos().items() if k == "lmsys/mt-bench"})
    MODELS.clear()
    with ScriptedServer(judge_reply) as judge:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        (project / "lioneval.toml").write_text(
            f'bench = ["mt-bench"]\nstore = "runs/team.db"\n'
            f'[judges]\nmt-bench = "openai-compatible:j@{judge.base_url}"\n'
            f'[revisions]\nmt-bench = "{commits["lmsys/mt-bench"]}"\n', encoding="utf-8")
        try:
            assert main(["config", "show", "--json"]) == 0
            rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
            assert rows["judges.mt-bench"]["value"].startswith("openai-compatible:j@")
            assert commits["lmsys/mt-bench"] in rows["data.mt-bench"]["value"]
            assert main(["run", "--ckpt", "out/dpo-step2000", "--json"]) == 0
            result = json.loads(capsys.readouterr().out)
            (rep,) = result["reports"]
            assert rep["meta"]["data"]["commit"] == commits["lmsys/mt-bench"] and rep["complete"]
            assert MODELS == {"j"}
            assert (project / "runs" / "team.db").exists()
        finally:
            (project / "lioneval.toml").unlink()


def test_arena_hard_v2_as_written(hub, project, monkeypatch, capsys):
    """`--bench arena-hard@v2.0`: today's layout from the hub (per-category baselines), its official judge, the
    style-controlled headline, and the v2.0 rule for reading verdicts (the last label counts)."""
    folder = Path(__file__).parent / "fixtures" / "arena_hard_v2"
    files = {f"data/arena-hard-v2.0/{p.relative_to(folder).as_posix()}": p.read_bytes()
             for p in folder.rglob("*.jsonl") if "model_judgment" not in p.parts}
    commit = hub.add_repo("lmarena-ai/arena-hard-auto", files, repo_type="dataset")
    MODELS.clear()

    def v2_judge(req: dict):
        MODELS.add(req["model"])
        return "First thought [[A>B]]; on reflection my final verdict is [[B>A]]"  # v2.0 reads the last label

    with ScriptedServer(v2_judge) as judge:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", judge.base_url)
        assert main(["run", "--ckpt", "out/dpo-step2000", "--bench", "arena-hard@v2.0", "--json"]) == 0
        (rep,) = json.loads(capsys.readouterr().out)["reports"]
    assert MODELS == {"gpt-4.1"} and rep["benchmark_version"] == "v2.0" and rep["complete"]
    assert rep["meta"]["data"]["commit"] == commit and rep["meta"]["headline"] == "score_style_controlled"
    assert rep["counts"]["failed"] == 0  # two different labels in one reply: v0.1 would call it ambiguous
    assert {"score", "score_style_controlled"} <= set(rep["metrics"])
    assert any(m.startswith("score/creative_writing") for m in rep["metrics"])
