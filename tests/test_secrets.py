"""Secrets never leave lioneval: not the API key, not the password of a base URL.

Servers echo what they were sent (a rejected key in an error body, the Authorization header in a debug field, even in
an answer), and judge specs carry URLs with ``user:password@``. Whatever comes back is scrubbed before it is printed,
logged or stored; names, labels, ids and reprs never show credentials. The end-to-end test runs the real CLI
in-process against the scripted server and scans every channel: stdout, stderr, log records, the store's bytes, the
export and the listings.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import pytest

from lioneval.backends.base import Sampling, redact_url, scrub, split_credentials
from lioneval.backends.openai_compat import OpenAICompatibleBackend
from lioneval.cli import main
from lioneval.judges.spec import parse_spec
from lioneval.registry import BENCHMARKS
from lioneval.testing.openai_server import Faults, ScriptedServer

PLUGINS = Path(__file__).parent / "plugins"
KEY_ENV = "LIONEVAL_TEST_SECRET_KEY"
KEY = "sk-LIONEVAL-distinctive-0123456789abcdef"
USER, PASSWORD = "user", "S3CRETPASS"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def leaks(text: str | bytes) -> list[str]:
    """The secrets (or telling pieces of them) found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    pieces = {"key": KEY, "key prefix": KEY[:12], "key suffix": KEY[-12:], "password": PASSWORD, "basic token": BASIC}
    return [name for name, piece in pieces.items() if piece in text]


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"q {i}"}] for i in range(n)]


def creds_url(server: ScriptedServer, password: str = PASSWORD) -> str:
    return server.base_url.replace("http://", f"http://{USER}:{password}@")


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


# -- the helpers ---------------------------------------------------------------------------------------------------


def test_url_helpers():
    assert split_credentials("http://u:p%40ss@h:8000/v1") == ("http://h:8000/v1", "u:p%40ss")
    assert split_credentials("https://h/v1") == ("https://h/v1", None)
    assert redact_url("see http://u:pw@h/v1 and https://tok@h2/v1, http://h3/v1") == (
        "see http://***@h/v1 and https://***@h2/v1, http://h3/v1"
    )
    # one URL's credentials never reach into the next item of a spec
    assert redact_url("ensemble:[openai-compatible:a@http://h:1;openai-compatible:b@http://u:pw@h2/v1]") == (
        "ensemble:[openai-compatible:a@http://h:1;openai-compatible:b@http://***@h2/v1]"
    )
    assert scrub("abc key-1234 key-12345", ["key-12345", "key-1234", "abc"]) == "abc *** ***"  # short ones stay


# -- the backend ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["echo_key", "echo_key_error"])
def test_a_key_echoed_in_an_error_is_scrubbed(key, kind, caplog):
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(faults=Faults(rate=1.0, kinds=(kind,)), require_key=KEY) as server:
        b = OpenAICompatibleBackend("test-model", server.base_url, api_key_env=KEY_ENV, max_retries=1,
                                    backoff_base=0.01)
        out = b.generate(chats(2), Sampling())
        assert len(server.chat_requests()) == (4 if kind == "echo_key" else 2)  # a 200 without choices is retried
    for c in out:
        assert not c.ok and "***" in c.error and "Fix:" in c.error
        assert leaks(c.error) == []
    assert leaks(caplog.text) == [] and leaks(" ".join(str(r.args) for r in caplog.records)) == []


def test_a_key_echoed_in_the_answer_is_scrubbed_from_the_text(key):
    with ScriptedServer(faults=Faults(rate=1.0, kinds=("echo_key_answer",))) as server:
        out = OpenAICompatibleBackend("test-model", server.base_url, api_key_env=KEY_ENV).generate(
            chats(2), Sampling()
        )
    assert [c.text for c in out] == ["echo: q 0 (you sent Bearer ***)", "echo: q 1 (you sent Bearer ***)"]


def test_url_credentials_are_sent_as_basic_auth_and_never_shown(key):
    with ScriptedServer(require_basic=(USER, PASSWORD), faults=Faults(first=1, first_kind="echo_key_answer")) as srv:
        b = OpenAICompatibleBackend("test-model", creds_url(srv), api_key_env=KEY_ENV)
        out = b.generate(chats(2), Sampling())
        assert [r.status for r in srv.chat_requests()] == [200, 200]  # the server accepted the credentials
        # the answer quoted the header and the decoded user:password; neither survives
        assert all(c.ok and c.text.startswith("echo: q") and "(you sent Basic ***" in c.text for c in out)
        assert all(leaks(c.text) == [] for c in out)
        assert b.name == f"openai-compatible:test-model@{srv.base_url}"
        assert {c.meta["base_url"] for c in out} == {srv.base_url}
        for shown in (b.name, repr(b), json.dumps(b.to_spec())):
            assert leaks(shown) == []
        assert b.to_spec(credentials=True)["base_urls"] == [creds_url(srv)]  # only when asked

        wrong = OpenAICompatibleBackend("test-model", creds_url(srv, "wrong-password-77"), api_key_env=KEY_ENV)
        (c,) = wrong.generate(chats(1), Sampling())
    assert c.attempts == 1 and "401" in c.error and "user:password in the base URL was rejected" in c.error
    assert "wrong-password-77" not in c.error and "http://***@127.0.0.1" in c.error


def test_a_judge_spec_with_credentials_builds_a_backend_that_uses_them():
    from lioneval.judges.judge import backend_for

    with ScriptedServer(require_basic=(USER, PASSWORD)) as srv:
        spec = parse_spec(f"openai-compatible:test-model@{creds_url(srv)}")
        b = backend_for(spec)
        assert b.generate(chats(1), Sampling())[0].ok
    assert leaks(spec.label + spec.id + repr(spec) + b.name + repr(b)) == []


# -- the CLI, every channel ----------------------------------------------------------------------------------------


def _question_number(request: dict) -> int:
    text = " ".join(str(m.get("content")) for m in request["messages"])
    found = re.search(r"What is (\d+) \+", text)
    return int(found.group(1)) if found else 0


def _responder(request: dict) -> str:
    if request["model"] == "policy":
        return f"The sum is {_question_number(request) * 4}."
    return "Correct and brief. Rating: [[7]]"


def _faults(request: dict, attempt: int) -> str | None:
    """Judges: a 400 that echoes the credentials (kept as a failed judgment), a 200 without choices echoing them
    (retried), an answer echoing them; the policy: answers echoing them."""
    i = _question_number(request)
    if request["model"] == "policy":
        return "echo_key_answer" if i % 2 == 0 else None
    return {0: "echo_key_error", 1: "echo_key" if attempt == 1 else None, 2: "echo_key_answer"}.get(i % 4)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    BENCHMARKS.register("toy-secrets", "toy_bench:ToyBench", "toy benchmark (secrets test)")
    yield "toy-secrets"
    BENCHMARKS.unregister("toy-secrets")


def test_no_secret_reaches_any_output_channel(toy, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the default api_key_env of specs
    db = str(tmp_path / "runs.db")
    seen: list[str] = []

    def cli(*args: str) -> int:
        code = main(["--store", db, *args])
        out, err = capsys.readouterr()
        seen.extend([out, err])
        return code

    with ScriptedServer(_responder, require_key=KEY, require_basic=(USER, PASSWORD), faults=Faults(script=_faults),
                        models=["policy", "judge", "judge-two"]) as server:  # fmt: skip
        url = creds_url(server)
        code = cli("run", "--policy", f"openai-compatible:policy@{url}", "--bench", toy,
                   "--judge", f"openai-compatible:judge@{url}", "--limit", "8", "--json")  # fmt: skip
        assert code in (0, 3), seen[-1]  # 3: complete except for the judgments that kept failing
        run_key = json.loads(seen[-2])["run"]
        # another judge, reached with the bearer key instead of URL credentials
        code = cli("rejudge", run_key, "--judge", f"openai-compatible:judge-two@{server.base_url}")
        assert code in (0, 3), seen[-1]
        recs = server.chat_requests()
    assert {r.fault for r in recs} >= {"echo_key", "echo_key_error", "echo_key_answer"}  # the server did echo
    assert all(r.status != 401 for r in recs)  # both ways of authenticating worked

    assert cli("runs") == 0
    assert cli("report", run_key) in (0, 3)
    assert cli("failures", run_key, "--json") == 0
    assert cli("export", str(tmp_path / "dump.jsonl")) == 0
    assert cli("leaderboard", "--bench", toy, "--json") == 0
    assert "***" in "".join(seen)  # failures showed the scrubbed echoes

    for text in seen:
        assert leaks(text) == [], text
    assert leaks(caplog.text) == []
    assert leaks(" ".join(f"{r.msg} {r.args}" for r in caplog.records)) == []
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "dump.jsonl" for p in files) and any(p.name.startswith("runs.db") for p in files)
    for path in files:  # the store (and its WAL), the export, anything else written
        assert leaks(path.read_bytes()) == [], path
    stored = b"".join(p.read_bytes() for p in files)
    assert b"***" in stored  # the echoes were stored scrubbed, not lost
    assert b"openai-compatible:judge" in stored and server.base_url.encode() in stored  # URLs kept, minus credentials
