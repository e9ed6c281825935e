"""A throwaway PostgreSQL cluster for the store tests: initdb into a temporary folder, trust authentication, listening
on a free port of 127.0.0.1 (and a socket in that folder), stopped and deleted at the end of the session.

The server refuses to run as root: when the tests run as root, the cluster belongs to the ``postgres`` user (Debian's
package creates it) and its programs run through ``runuser``. ``find_bin()`` looks for initdb on PATH, then in
Debian's /usr/lib/postgresql/<version>/bin. The ``pg_server`` fixture of conftest.py loads this file by path (tests/
is not a package) and starts one cluster per session; a cluster left by a killed session is stopped by the next.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

SERVER_USER = "postgres"


def find_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def unavailable() -> str | None:
    """Why a throwaway cluster cannot be started here (None when it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is not installed (pip install 'lioneval[postgres]')"
    if find_bin() is None:
        return "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not installed"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_orphans(server: PgServer) -> None:
    """Stop and delete the clusters of earlier test sessions that were killed before they could stop theirs."""
    for root in Path(tempfile.gettempdir()).glob("lioneval-pg-*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if root == server.root or _alive(owner):
            continue
        if (root / "data" / "postmaster.pid").exists():
            try:
                server._run("pg_ctl", "-D", str(root / "data"), "-m", "immediate", "-w", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One cluster; ``new_database()`` gives each test an empty database of its own."""

    def __init__(self) -> None:
        self.bin = find_bin()
        assert self.bin is not None
        self.root = Path(tempfile.mkdtemp(prefix="lioneval-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.user = SERVER_USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stdout}\n{res.stderr}")

    def start(self) -> PgServer:
        _stop_orphans(self)
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--locale=C",
                  "--no-sync")
        # small and fast: a test server, not a durable one (durability across a server crash is not under test;
        # a killed client is, and needs no fsync)
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=60 "
                   "-c deadlock_timeout=100ms")  # writers that deadlock find out (and retry) sooner
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # never started, or already gone: the folder is removed all the same
        shutil.rmtree(self.root, ignore_errors=True)
