"""A scripted OpenAI-compatible chat server for offline tests and benchmarks.

It speaks the real wire format over real HTTP (``POST /v1/chat/completions``, ``GET /v1/models``), so the code under
test runs the official ``openai`` client end to end. What it answers is scripted: a ``responder`` writes the content,
and a ``Faults`` plan injects rate limits, server errors, slow or trickled answers, broken or cut bodies, empty content
or choices, missing logprobs and echoed credentials, either at a seeded rate or for the first attempts of each prompt.
Every request is logged with a hash of its prompt, so a test can count attempts and prove that no prompt was answered
twice.

    with ScriptedServer(responder=lambda req: "[[A>B]]", latency=0.1) as server:
        backend = OpenAICompatibleBackend("judge", server.base_url)

Run ``python -m lioneval.testing.openai_server --help`` to start one by hand.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import importlib
import json
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

__all__ = [
    "FAULTS", "Faults", "Reply", "RequestRecord", "ScriptedServer", "ScriptedServerProcess", "prompt_hash", "main",
]  # fmt: skip

#: what a fault does to one attempt
FAULTS = {
    "rate_limit": "429 with a Retry-After header",
    "server_error": "500 with an error body",
    "slow": "answers only after Faults.slow_s (meant to exceed the client's timeout)",
    "malformed": "200 with a truncated, unparseable JSON body",
    "empty": "200 with empty content",
    "no_logprobs": "200 without logprobs, even when they were asked for",
    "bad_request": "400 with an error body",
    "drop": "closes the connection without answering",
    "truncated_json": "200 with the JSON of a real completion cut in half (Content-Length matches the cut body)",
    "empty_choices": '200 with a well-formed completion whose "choices" is []',
    "drop_mid_body": "200 headers and half the body, then the connection closes",
    "trickle": "the answer a few bytes at a time, spread over Faults.trickle_s (each byte within any read timeout)",
    "echo_key": "200 without choices, whose body echoes the Authorization credentials it was sent",
    "echo_key_error": "400 whose error message echoes the Authorization credentials it was sent",
    "echo_key_answer": "a normal answer whose text ends by echoing the Authorization credentials",
}

_ADMIN = "/_scripted"
# control calls go straight to 127.0.0.1 even when the environment sets an HTTP proxy
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# nginx's code for "the client went away before the answer was ready"; such an answer was never delivered
CLIENT_CLOSED = 499

Responder = Callable[[dict[str, Any]], "str | Reply"]
Script = Callable[[dict[str, Any], int], "str | None"]


@dataclass(frozen=True)
class Reply:
    """A scripted answer richer than a string."""

    text: str | None
    finish_reason: str = "stop"
    # per token {candidate: logprob}; the most likely candidate is taken as the generated token
    top_logprobs: list[dict[str, float]] | None = None


@dataclass(frozen=True)
class Faults:
    """Which attempts fail and how. Decisions depend only on (seed, prompt, attempt), not on thread timing."""

    rate: float = 0.0  # share of attempts that fail
    kinds: Sequence[str] | Mapping[str, float] = ("rate_limit", "server_error", "slow")  # drawn for `rate`
    first: int = 0  # fail the first N attempts of every distinct prompt ...
    first_kind: str = "server_error"  # ... this way
    script: Script | None = None  # (request json, attempt number from 1) -> fault name or None; checked first
    retry_after: str | float | None = "1"  # Retry-After header on 429 (seconds or an HTTP date; None: no header)
    slow_s: float = 2.0
    trickle_s: float = 5.0  # how long a trickled answer takes to arrive in full
    seed: int = 0

    def __post_init__(self) -> None:
        names = list(self.kinds) + [self.first_kind]
        unknown = [n for n in names if n not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; choose from {sorted(FAULTS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Faults.rate must be in [0, 1], got {self.rate}")

    def decide(self, request: dict[str, Any], phash: str, attempt: int) -> str | None:
        if self.script is not None:
            kind = self.script(request, attempt)
            if kind is not None:
                if kind not in FAULTS:
                    raise ValueError(f"script returned unknown fault {kind!r}; choose from {sorted(FAULTS)}")
                return kind
        if attempt <= self.first:
            return self.first_kind
        if self.rate > 0 and _uniform(self.seed, phash, attempt, "hit") < self.rate:
            weights = dict(self.kinds) if isinstance(self.kinds, Mapping) else dict.fromkeys(self.kinds, 1.0)
            u = _uniform(self.seed, phash, attempt, "kind") * sum(weights.values())
            for kind, w in weights.items():
                u -= w
                if u < 0:
                    return kind
            return kind
        return None


class RequestRecord(NamedTuple):
    prompt_hash: str  # "" for requests without messages
    status: int  # HTTP status sent; 499 when the client left first; 0 when the server dropped the connection
    timestamp: float  # time.monotonic() when the request arrived
    fault: str | None
    finished: float  # time.monotonic() when the answer was sent (or abandoned)
    path: str = "/v1/chat/completions"


def prompt_hash(messages: Sequence[Mapping[str, Any]]) -> str:
    """The key the server logs a chat under; compute it in tests to find a chat's requests."""
    blob = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _uniform(seed: int, phash: str, attempt: int, salt: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{phash}:{attempt}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def echo_responder(request: dict[str, Any]) -> str:
    """Default content: the last user message, so tests can tell answers apart."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return f"echo: {_text_of(message.get('content'))}"
    return "echo:"


def _text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


_TOKEN = re.compile(r"\s*\S+|\s+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _token_entry(token: str, logprob: float, top: list[tuple[str, float]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in (top or [])]
    return entry


def _logprobs_block(reply: Reply, tokens: list[str], k: int) -> dict[str, Any]:
    content = []
    if reply.top_logprobs is not None:
        for cands in reply.top_logprobs:
            ranked = sorted(cands.items(), key=lambda kv: -kv[1])
            token, lp = ranked[0] if ranked else ("", 0.0)
            content.append(_token_entry(token, lp, ranked[:k]))
    else:
        # made-up but well-formed: the generated token is the most likely, then k-1 weaker variants
        for tok in tokens:
            top = [(tok, -0.05)] + [(f"{tok.strip()}~{j}", -1.5 * j) for j in range(1, k)]
            content.append(_token_entry(tok, -0.05, top[:k]))
    return {"content": content, "refusal": None}


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for handler threads parked on idle keep-alive connections or slow answers
    block_on_close = False
    request_queue_size = 512  # many clients connect at once; the default backlog of 5 resets some of them
    allow_reuse_address = True
    scripted: ScriptedServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do; a new connection per request skews timings
    server: _HTTPServer
    timeout = 60  # an idle keep-alive connection frees its thread after this

    def setup(self) -> None:
        super().setup()
        self.server.scripted._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.scripted._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr noise would drown test output

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> int:
        try:
            self.wfile.write(self._head(status, len(body), headers) + body)
        except OSError:  # the client left
            self.close_connection = True
            return CLIENT_CLOSED
        return status

    def _head(self, status: int, length: int, headers: Mapping[str, str] | None = None) -> bytes:
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {length}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    def _send_cut(self, body: bytes) -> int:
        """Announce the whole body, send half of it, and hang up: the connection drops mid-body."""
        self.close_connection = True
        try:
            self.wfile.write(self._head(200, len(body)) + body[: len(body) // 2])
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            return CLIENT_CLOSED
        return 0

    def _send_trickle(self, body: bytes, seconds: float) -> int:
        """The body a few bytes at a time over ``seconds``; a step every 50 ms, so no single read waits long."""
        step_s = 0.05
        steps = max(1, int(seconds / step_s))
        chunk = max(1, -(-len(body) // steps))
        try:
            self.wfile.write(self._head(200, len(body)))
            for start in range(0, len(body), chunk):  # bounded: at most `steps` rounds
                if self._client_left_during(step_s):
                    self.close_connection = True
                    return CLIENT_CLOSED
                self.wfile.write(body[start : start + chunk])
        except OSError:
            self.close_connection = True
            return CLIENT_CLOSED
        return 200

    def _credentials(self) -> str:
        """What the client presented in Authorization, as a careless server would quote it back: the header, and
        for basic auth the decoded user:password as well."""
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                return f"{header} ({base64.b64decode(value, validate=True).decode('utf-8', 'replace')})"
            except (binascii.Error, ValueError):
                return header
        return header

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> int:
        return self._send(status, json.dumps(obj).encode(), headers)

    def _client_left_during(self, seconds: float) -> bool:
        """Wait ``seconds``, returning early (True) if the client closes the connection meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], remaining)
            if not readable:
                return False
            try:
                peek = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return True
            if not peek:
                return True
            time.sleep(max(0.0, deadline - time.monotonic()))  # bytes of a pipelined request: still connected
            return False
        return False

    def _authorized(self) -> bool:
        srv = self.server.scripted
        wanted = []
        if srv.require_key is not None:
            wanted.append(f"Bearer {srv.require_key}")
        if srv.require_basic is not None:
            token = base64.b64encode(":".join(srv.require_basic).encode()).decode("ascii")
            wanted.append(f"Basic {token}")
        return not wanted or self.headers.get("Authorization") in wanted

    def _unauthorized(self) -> int:
        body = _error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return self._send_json(401, body)

    # -- routes ----------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        srv = self.server.scripted
        t0 = time.monotonic()
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.startswith(_ADMIN):
            self._admin(path, b"")
            return
        if not self._authorized():
            status = self._unauthorized()
        elif path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "lioneval-test"} for m in srv.models]
            status = self._send_json(200, {"object": "list", "data": data})
        else:
            status = self._send_json(404, _error_body(f"no route GET {path}", "not_found_error"))
        srv._log(RequestRecord("", status, t0, None, time.monotonic(), path))

    def do_POST(self) -> None:
        srv = self.server.scripted
        t0 = time.monotonic()
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.startswith(_ADMIN):
            self._admin(path, raw)
            return
        if path != "/v1/chat/completions":
            status = self._send_json(404, _error_body(f"no route POST {path}", "not_found_error"))
            srv._log(RequestRecord("", status, t0, None, time.monotonic(), path))
            return
        try:
            request = json.loads(raw)
            messages = request["messages"]
            model = request["model"]
            if not isinstance(messages, list) or not isinstance(model, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            status = self._send_json(400, _error_body("body must be JSON with 'model' and 'messages'", "invalid"))
            srv._log(RequestRecord("", status, t0, None, time.monotonic(), path))
            return
        phash = prompt_hash(messages)
        attempt = srv._arrive(phash)
        fault, status = None, 0
        try:
            if not self._authorized():
                status = self._unauthorized()
            elif srv._check_models and model not in srv.models:
                body = _error_body(f"The model `{model}` does not exist.", "NotFoundError", "model_not_found")
                status = self._send_json(404, body)
            else:
                try:
                    fault = srv.faults.decide(request, phash, attempt)
                    status = self._answer(request, fault)
                except Exception as err:  # a broken responder or script: say so instead of dropping the connection
                    msg = f"scripted server: {type(err).__name__}: {err}"
                    status = self._send_json(500, _error_body(msg, "server_error"))
        finally:
            srv._leave(RequestRecord(phash, status, t0, fault, time.monotonic()))

    def _admin(self, path: str, raw: bytes) -> None:
        """Control routes for ScriptedServerProcess; not logged, so they never count as requests."""
        srv = self.server.scripted
        if path == f"{_ADMIN}/requests":
            with srv._lock:
                state = {"requests": [list(r) for r in srv._requests], "peak_in_flight": srv.peak_in_flight}
            self._send_json(200, state)
        elif path == f"{_ADMIN}/reset":
            srv.reset()
            self._send_json(200, {"ok": True})
        elif path == f"{_ADMIN}/faults":
            try:
                srv.faults = Faults(**json.loads(raw or b"{}"))
            except (TypeError, ValueError) as err:
                self._send_json(400, _error_body(str(err), "invalid_request_error"))
                return
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, _error_body(f"no admin route {path}", "not_found_error"))

    def _answer(self, request: dict[str, Any], fault: str | None) -> int:
        srv = self.server.scripted
        faults = srv.faults
        if fault == "rate_limit":
            headers = {} if faults.retry_after is None else {"Retry-After": str(faults.retry_after)}
            body = _error_body("Rate limit reached; retry later.", "rate_limit_error", "rate_limit_exceeded")
            return self._send_json(429, body, headers)
        if fault == "server_error":
            return self._send_json(500, _error_body("The server had an error.", "server_error"))
        if fault == "bad_request":
            return self._send_json(400, _error_body("Scripted invalid request.", "invalid_request_error"))
        if fault == "echo_key_error":
            body = _error_body(f"Scripted invalid request sent with {self._credentials()}.", "invalid_request_error")
            return self._send_json(400, body)
        if fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 0
        wait = faults.slow_s if fault == "slow" else srv.latency
        if wait > 0 and self._client_left_during(wait):
            self.close_connection = True
            return CLIENT_CLOSED
        if fault == "malformed":
            return self._send(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind')
        if fault == "echo_key":
            body = {"id": f"chatcmpl-{srv._next_id()}", "object": "chat.completion", "model": request["model"],
                    "warning": f"request authorized by {self._credentials()}"}  # fmt: skip
            return self._send_json(200, body)
        reply = srv.responder(request)
        if not isinstance(reply, Reply):
            reply = Reply(reply)
        if fault == "empty":
            reply = Reply("", reply.finish_reason)
        if fault == "echo_key_answer":
            reply = dataclasses.replace(reply, text=f"{reply.text or ''} (you sent {self._credentials()})")
        completion = self._completion(request, reply, with_logprobs=fault != "no_logprobs")
        if fault == "empty_choices":
            completion["choices"] = []
        raw = json.dumps(completion).encode()
        if fault == "truncated_json":
            return self._send(200, raw[: len(raw) // 2])
        if fault == "drop_mid_body":
            return self._send_cut(raw)
        if fault == "trickle":
            return self._send_trickle(raw, faults.trickle_s)
        return self._send(200, raw)

    def _completion(self, request: dict[str, Any], reply: Reply, *, with_logprobs: bool) -> dict[str, Any]:
        text, finish = reply.text, reply.finish_reason
        tokens = _tokens(text or "")
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        if isinstance(max_tokens, int) and len(tokens) > max_tokens:
            tokens, finish = tokens[:max_tokens], "length"
            text = "".join(tokens)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": finish,
            "logprobs": None,
        }
        k = request.get("top_logprobs")
        if with_logprobs and request.get("logprobs"):
            choice["logprobs"] = _logprobs_block(reply, tokens, int(k or 0))
        n_prompt = sum(len(_tokens(_text_of(m.get("content")))) for m in request["messages"] if isinstance(m, dict))
        n_completion = len(reply.top_logprobs) if reply.top_logprobs is not None else len(tokens)
        return {
            "id": f"chatcmpl-{self.server.scripted._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [choice],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_completion,
                "total_tokens": n_prompt + n_completion,
            },
        }


class _LogViews:
    """Questions about the request log, shared by the in-thread and the child-process server."""

    requests: list[RequestRecord]

    def chat_requests(self, messages: Sequence[Mapping[str, Any]] | None = None) -> list[RequestRecord]:
        """Finished chat requests, optionally only those of one chat, in arrival order."""
        wanted = None if messages is None else prompt_hash(messages)
        recs = [r for r in self.requests if r.path == "/v1/chat/completions" and wanted in (None, r.prompt_hash)]
        return sorted(recs, key=lambda r: r.timestamp)

    def duplicates(self) -> dict[str, int]:
        """Prompts that got more than one delivered 200, with their count; empty when every prompt got at most one."""
        counts = Counter(r.prompt_hash for r in self.chat_requests() if r.status == 200)
        return {h: n for h, n in counts.items() if n > 1}


class ScriptedServer(_LogViews):
    """An OpenAI-compatible server on 127.0.0.1 in a background thread; starts at construction.

    ``responder(request_json)`` returns the content (a str or a ``Reply``); ``latency`` delays every normal answer;
    ``faults`` (changeable between runs) injects failures; ``require_key`` makes requests without
    ``Authorization: Bearer <key>`` fail with 401, ``require_basic=(user, password)`` those without that HTTP basic
    auth (with both, either will do); ``models`` (when given) makes other model names 404.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        faults: Faults | None = None,
        require_key: str | None = None,
        require_basic: tuple[str, str] | None = None,
        models: Sequence[str] = (),
        port: int = 0,
    ):
        self.responder: Responder = responder or echo_responder
        self.latency = latency
        self.faults = faults or Faults()
        self.require_key = require_key
        self.require_basic = require_basic
        self.models = tuple(models) or ("test-model",)
        self._check_models = bool(models)
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._attempts: Counter[str] = Counter()
        self._ids = 0
        self._in_flight = 0
        self.peak_in_flight = 0
        self._connections: set[socket.socket] = set()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.scripted = self
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"scripted-openai-{self.port}"
        )
        self._thread.daemon = True
        self._thread.start()
        self._stopped = False

    def __repr__(self) -> str:
        return f"ScriptedServer({self.base_url!r}, latency={self.latency}, faults={self.faults!r})"

    # -- the request log -------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every finished request, in the order they finished."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._attempts.clear()
            self.peak_in_flight = self._in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _arrive(self, phash: str) -> int:
        with self._lock:
            self._attempts[phash] += 1
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            return self._attempts[phash]

    def _leave(self, record: RequestRecord) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests.append(record)

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(conn)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop listening and cut open connections, so the URL refuses from now on."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # keep-alive connections would otherwise go on being served
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedServerProcess(_LogViews):
    """The same server in a child process, for benchmarks: its CPU then does not compete with the client's for one
    interpreter lock, as a real inference server would not. Same log views; ``faults`` cannot carry a ``script``.

    ``responder`` is an import path ``"module:attr"`` (the child cannot receive a function), ``text`` a fixed answer.
    """

    def __init__(
        self,
        *,
        text: str | None = None,
        responder: str | None = None,
        latency: float = 0.0,
        faults: Faults | None = None,
        require_key: str | None = None,
        start_timeout: float = 20.0,
    ):
        cmd = [sys.executable, "-m", "lioneval.testing.openai_server", "--port", "0", "--latency", str(latency)]
        if text is not None:
            cmd += ["--text", text]
        if responder is not None:
            cmd += ["--responder", responder]
        if require_key is not None:
            cmd += ["--require-key", require_key]
        # stderr to a file: a pipe nobody reads would block the child once tracebacks fill it
        self._stderr = tempfile.TemporaryFile("w+")
        self._err = ""
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        ready, _, _ = select.select([self._proc.stdout], [], [], start_timeout)
        line = self._proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        found = re.search(r"(http://\S+/v1)", line)
        if not found:
            self.stop()
            raise RuntimeError(f"scripted server process did not start within {start_timeout} s: {line!r} {self._err}")
        self.base_url = found.group(1)
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])
        self._faults = Faults()
        if faults is not None:
            self.faults = faults

    def _call(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{_ADMIN}/{route}", data=data)
        with _DIRECT.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if faults.script is not None:
            raise ValueError("a Faults.script cannot cross into a child process; use ScriptedServer for scripts")
        fields = {k: v for k, v in dataclasses.asdict(faults).items() if k != "script"}
        if isinstance(faults.kinds, Mapping):
            fields["kinds"] = dict(faults.kinds)
        self._call("faults", fields)
        self._faults = faults

    def _state(self) -> dict[str, Any]:
        return self._call("requests")

    @property
    def requests(self) -> list[RequestRecord]:  # type: ignore[override]
        return [RequestRecord(*r) for r in self._state()["requests"]]

    @property
    def peak_in_flight(self) -> int:
        return int(self._state()["peak_in_flight"])

    def reset(self) -> None:
        self._call("reset", {})

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._err = self._stderr_tail()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()

    def _stderr_tail(self) -> str:
        if self._stderr.closed:
            return self._err
        self._stderr.seek(0)
        return self._stderr.read()[-2000:]

    def __enter__(self) -> ScriptedServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fixed(text: str) -> Responder:
    return lambda request: text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lioneval.testing.openai_server",
        description="Serve scripted OpenAI-compatible chat completions on 127.0.0.1 (for manual tests).",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each normal answer")
    parser.add_argument("--text", default=None, help="fixed answer text (default: echo the last user message)")
    parser.add_argument("--responder", default=None, help="import path 'module:attr' of a responder function")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of attempts that fail")
    parser.add_argument(
        "--faults", default="rate_limit,server_error,slow", help=f"comma-separated kinds: {', '.join(FAULTS)}"
    )
    parser.add_argument("--fail-first", type=int, default=0, help="fail the first N attempts of every prompt")
    parser.add_argument("--fail-with", default="server_error", help="fault kind for --fail-first")
    parser.add_argument("--retry-after", default="1", help="Retry-After header value on 429 ('' for none)")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds a 'slow' answer takes")
    parser.add_argument("--trickle", type=float, default=5.0, help="seconds a 'trickle' answer takes to arrive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--require-key", default=None, help="answer 401 unless this bearer token is sent")
    parser.add_argument("--model", action="append", default=[], help="served model name (repeatable)")
    args = parser.parse_args(argv)
    faults = Faults(
        rate=args.fault_rate,
        kinds=tuple(k for k in args.faults.split(",") if k),
        first=args.fail_first,
        first_kind=args.fail_with,
        retry_after=args.retry_after or None,
        slow_s=args.slow,
        trickle_s=args.trickle,
        seed=args.seed,
    )
    responder = _fixed(args.text) if args.text is not None else None
    if args.responder:
        module, _, attr = args.responder.partition(":")
        responder = getattr(importlib.import_module(module), attr)
    server = ScriptedServer(
        responder, latency=args.latency, faults=faults, require_key=args.require_key, models=args.model, port=args.port
    )
    print(f"serving on {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        ok = sum(1 for r in server.requests if r.status == 200)
        print(f"stopped after {len(server.requests)} requests ({ok} answered 200)")


if __name__ == "__main__":
    main()
