"""A local stand-in for the part of the Hugging Face hub's HTTP API that ``hf_hub_download`` uses, so tests run the
real ``huggingface_hub`` client over real HTTP without touching the internet.

Served (repository ids may have one or two parts; revisions are URL-quoted as the client sends them):

* ``HEAD``/``GET /{datasets|spaces}/{repo}/resolve/{revision}/{path}`` and ``/{repo}/resolve/...`` for models: the
  file, with ``X-Repo-Commit``, ``ETag`` (the git blob sha1, as the hub sends for regular files; with ``lfs=True`` the
  sha256 in ``X-Linked-Etag`` and ``X-Linked-Size``, as for LFS files), ``Content-Length`` and ``Accept-Ranges``; a
  ``Range: bytes=N-`` / ``bytes=N-M`` request gets ``206`` with ``Content-Range``.
* ``GET /api/{datasets|spaces|models}/{repo}[/revision/{revision}]``: the repository's id, commit sha and files.
* Errors as the hub words them for the client: ``404`` + ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` /
  ``EntryNotFound`` (the last with ``X-Repo-Commit``), a gated repository ``401`` + ``GatedRepo``, a forbidden one
  ``403``.
* Faults: ``cut_next(path, after)`` sends the full ``Content-Length`` but only ``after`` bytes of the next GET of that
  file, then drops the connection (an interrupted download); ``truncate_next(path, after)`` answers a short body with
  a matching ``Content-Length`` (what a broken proxy does: only the size announced by the HEAD call catches it).

Every request is logged (``requests``: method, path, headers with lower-case names).

Use the ``hub`` fixture (it points ``HF_ENDPOINT`` at the server and ``HF_HOME`` at a fresh folder, and clears
``HF_HUB_OFFLINE``). Tests run with ``--import-mode=importlib`` and no ``tests/__init__.py``, so a test module loads
this file by path and re-exports the fixture::

    hub_server = load_hub_server()            # see tests/test_sources.py
    hub = hub_server.hub

    def test_download(hub):
        commit = hub.add_repo("org/data", {"a.jsonl": b"..."}, repo_type="dataset")
        ...                                     # code under test downloads from hub.url into hub.cache_dir
        assert [r.method for r in hub.downloads()] == ["GET"]

``official_repos()`` returns tiny repositories in the official layouts of MT-Bench (space ``lmsys/mt-bench``),
Arena-Hard-Auto v0.1 (dataset ``lmarena-ai/arena-hard-auto``) and AlpacaEval 2.0 (dataset ``tatsu-lab/alpaca_eval``),
written for lioneval (tests/fixtures/hub/); ``hub.add_repos(official_repos())`` serves them all.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import pytest

__all__ = ["HUB_FIXTURES", "HubServer", "Request", "hub", "official_repos", "repos_from_folder"]

HUB_FIXTURES = Path(__file__).parent / "fixtures" / "hub"
_PLURAL = {"datasets": "dataset", "spaces": "space", "models": "model"}
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class _Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> path -> content
    lfs: bool = False
    opaque_etag: bool = False  # ETags that are not content hashes, as some caching proxies send
    deny: int | None = None  # 401 (gated) or 403 (forbidden)


def fake_commit(repo_type: str, repo_id: str, revision: str = "main") -> str:
    """The fixed commit sha the server gives a repository's revision unless told another."""
    return hashlib.sha1(f"{repo_type}/{repo_id}@{revision}".encode()).hexdigest()  # noqa: S324 - an id, not security


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's object id


class HubServer:
    """The server; start it with ``with HubServer() as hub:`` (or use the ``hub`` fixture)."""

    def __init__(self) -> None:
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._cuts: dict[str, list[tuple[int, bool]]] = {}  # path -> [(after, drop)] for the next GETs
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.cache_dir: Path | None = None  # set by the fixture: where the client's hub cache lies
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content ---------------------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Mapping[str, bytes | str], *, repo_type: str = "dataset",
                 revision: str = "main", commit: str | None = None, lfs: bool = False,
                 opaque_etag: bool = False) -> str:
        """Serve ``files`` (path -> content) as ``revision`` of a repository; returns its commit sha. Adding another
        revision of the same repository keeps the earlier ones (for pinned-revision tests). ``lfs``: answer as for
        LFS files (sha256 ETags); ``opaque_etag``: ETags that are hex but not a hash of the content."""
        commit = commit or fake_commit(repo_type, repo_id, revision)
        data = {p: (c.encode("utf-8") if isinstance(c, str) else bytes(c)) for p, c in files.items()}
        with self._lock:
            repo = self._repos.setdefault((repo_type, repo_id), _Repo())
            repo.refs[revision] = commit
            repo.commits[commit] = data
            repo.lfs = repo.lfs or lfs
            repo.opaque_etag = repo.opaque_etag or opaque_etag
        return commit

    def add_repos(self, repos: Mapping[str, tuple[str, Mapping[str, bytes]]]) -> dict[str, str]:
        """Serve ``{repo_id: (repo_type, {path: bytes})}`` (e.g. ``official_repos()``); returns repo_id -> commit."""
        return {rid: self.add_repo(rid, files, repo_type=rtype) for rid, (rtype, files) in repos.items()}

    def deny(self, repo_id: str, *, repo_type: str = "dataset", status: int = 401) -> None:
        """Refuse the repository: 401 answers as a gated repository does, 403 as a forbidden one."""
        with self._lock:
            self._repos.setdefault((repo_type, repo_id), _Repo()).deny = status

    def cut_next(self, path: str, after: int, times: int = 1) -> None:
        """The next ``times`` GETs of a file at ``path`` send the full Content-Length but only ``after`` bytes, then
        drop the connection."""
        with self._lock:
            self._cuts.setdefault(path, []).extend([(after, True)] * times)

    def truncate_next(self, path: str, after: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` answer 200 with only the first ``after`` bytes and a Content-Length that
        matches them."""
        with self._lock:
            self._cuts.setdefault(path, []).extend([(after, False)] * times)

    # --- the log -----------------------------------------------------------------------------------------------

    def downloads(self, path: str | None = None) -> list[Request]:
        """GET requests for files (optionally of one file path)."""
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path
                and (path is None or unquote(r.path).endswith("/" + path))]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- the server --------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hub-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answers -----------------------------------------------------------------------------------------------

    def _log(self, method: str, path: str, headers: Mapping[str, str]) -> None:
        with self._lock:
            self.requests.append(Request(method, path, {k.lower(): v for k, v in headers.items()}))

    def _take_cut(self, path: str) -> tuple[int, bool] | None:
        with self._lock:
            queue = self._cuts.get(path)
            return queue.pop(0) if queue else None

    def _lookup(self, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo | None, str | None]:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None:
                return None, None
            commit = repo.refs.get(revision) or (revision if revision in repo.commits else None)
            return repo, commit


def _split_repo(prefix: str) -> tuple[str, str]:
    """'datasets/org/name' -> ('dataset', 'org/name'); 'org/name' -> ('model', 'org/name')."""
    head, _, rest = prefix.partition("/")
    if head in ("datasets", "spaces") and rest:
        return _PLURAL[head], rest
    return "model", prefix


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        # -- helpers --

        def _send(self, status: int, headers: Mapping[str, str], data: bytes = b"", body: bool = True) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body and data:
                self.wfile.write(data)

        def _error(self, status: int, code: str | None, message: str, body: bool, **extra: str) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message, **extra}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, headers, json.dumps({"error": message}).encode(), body)

        def _answer(self, body: bool) -> None:
            raw = urlsplit(self.path).path
            hub._log(self.command, raw, dict(self.headers.items()))
            if raw.startswith("/api/"):
                return self._api(raw[len("/api/"):], body)
            if "/resolve/" not in raw:
                return self._error(404, None, "Not Found", body)
            prefix, _, rest = raw.lstrip("/").partition("/resolve/")
            rev_raw, _, file_raw = rest.partition("/")
            repo_type, repo_id = _split_repo(unquote(prefix))
            self._file(repo_type, repo_id, unquote(rev_raw), unquote(file_raw), body)

        def _api(self, rest: str, body: bool) -> None:
            kind, _, rest = rest.partition("/")
            if kind not in _PLURAL:
                return self._error(404, None, "Not Found", body)
            repo_part, _, rev_raw = rest.partition("/revision/")
            repo_type, repo_id = _PLURAL[kind], unquote(repo_part)
            revision = unquote(rev_raw) or "main"
            repo, commit = hub._lookup(repo_type, repo_id, revision)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", body)
            if repo.deny:
                return self._deny(repo, repo_id, body)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
            files = repo.commits[commit]
            info = {"id": repo_id, "sha": commit, "private": False, "gated": False, "disabled": False,
                    "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(files.items())]}
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body)

        def _deny(self, repo: _Repo, repo_id: str, body: bool) -> None:
            if repo.deny == 401:
                return self._error(401, "GatedRepo", f"Access to {repo_id} is restricted: you must accept its "
                                   "conditions and be authenticated", body)
            return self._error(repo.deny or 403, None, f"Access to {repo_id} is forbidden", body)

        def _file(self, repo_type: str, repo_id: str, revision: str, path: str, body: bool) -> None:
            repo, commit = hub._lookup(repo_type, repo_id, revision)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", body)
            if repo.deny:
                return self._deny(repo, repo_id, body)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
            data = repo.commits[commit].get(path)
            if data is None:
                return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}", body,
                                   **{"X-Repo-Commit": commit})
            headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if repo.lfs:
                sha256 = hashlib.sha256(data).hexdigest()
                headers |= {"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))}
            else:
                headers["ETag"] = f'"{git_blob_sha1(data)}"'
            if repo.opaque_etag:
                headers["ETag"] = f'"{git_blob_sha1(b"proxy:" + data)}"'
                headers.pop("X-Linked-Etag", None)
            start, end, status = 0, len(data) - 1, 200
            wanted = self.headers.get("Range") if body else None
            if wanted:
                m = _RANGE.match(wanted.strip())
                if m is None or int(m.group(1)) >= len(data):
                    return self._error(416, None, "Range Not Satisfiable", body,
                                       **{"Content-Range": f"bytes */{len(data)}"})
                start = int(m.group(1))
                end = min(int(m.group(2)), end) if m.group(2) else end
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            part = data[start:end + 1]
            cut = hub._take_cut(path) if body else None
            if cut is None:
                return self._send(status, {**headers, "Content-Length": str(len(part))}, part, body)
            after, drop = cut
            if not drop:  # a short body whose Content-Length matches it
                return self._send(status, {**headers, "Content-Length": str(len(part[:after]))}, part[:after])
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(part))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(part[:after])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    return Handler


# --------------------------------------------------------------------------------------------------------------------
# Fixture repositories


def repos_from_folder(root: Path) -> dict[str, tuple[str, dict[str, bytes]]]:
    """``root/{datasets|spaces|models}/<org>/<name>/<files...>`` -> ``{"org/name": (repo_type, {path: bytes})}``."""
    out: dict[str, tuple[str, dict[str, bytes]]] = {}
    for kind, repo_type in _PLURAL.items():
        for repo_dir in sorted(p for p in (root / kind).glob("*/*") if p.is_dir()):
            files = {f.relative_to(repo_dir).as_posix(): f.read_bytes()
                     for f in sorted(repo_dir.rglob("*")) if f.is_file()}
            out[repo_dir.relative_to(root / kind).as_posix()] = (repo_type, files)
    return out


def official_repos() -> dict[str, tuple[str, dict[str, bytes]]]:
    """Tiny repositories in the official layouts (lmsys/mt-bench, lmarena-ai/arena-hard-auto, tatsu-lab/alpaca_eval),
    written for lioneval."""
    return repos_from_folder(HUB_FIXTURES)


def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started HubServer with the environment pointing at it: ``HF_ENDPOINT`` its url, ``HF_HOME`` a fresh folder
    (``hub.cache_dir`` is its ``hub/``), ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` unset. Subprocesses inherit it."""
    home = tmp_path / "hf_home"
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(home))
        for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                     "HF_HUB_ETAG_TIMEOUT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        _no_proxy(monkeypatch)
        server.cache_dir = home / "hub"
        yield server
