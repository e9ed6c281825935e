"""The two databases behind RunStore: SQLite (the embedded default, one file) and PostgreSQL (a server that trainers
and evaluators on many machines share), chosen by the store's location: a ``postgresql://`` URL, else a file path.

RunStore writes its SQL once, in the dialect both accept: ``?`` placeholders, ``INSERT ... ON CONFLICT``, a ``rowid``
column for the order records were stored in. What differs lives here: column types and that ``rowid`` column in the
schema, how a write transaction starts, named locks for the few read-then-write transactions, JSON field reads, which
errors mean "another writer won, run the transaction again", and PostgreSQL's connection and its errors.
"""

from __future__ import annotations

import functools
import re
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lioneval.errors import MissingExtraError, StoreError

__all__ = ["POSTGRES_SCHEMES", "SQLITE", "POSTGRES", "Dialect", "is_url", "redact", "connect_postgres"]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_url(location: Any) -> bool:
    """Whether a store location is a database URL (else it is a file path). Only strings can be URLs: a ``Path``
    collapses the ``//`` of one."""
    return isinstance(location, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", location) is not None


def redact(url: str) -> str:
    """The URL with its password (if any) masked, for messages and listings."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class Dialect:
    """SQLite's way; PostgreSQL overrides what differs."""

    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # takes the write lock up front, so two writers queue instead of failing midway

    def ddl(self, sql: str) -> str:
        """A schema statement of the migrations (written for SQLite) in this database's terms."""
        return sql

    def lock(self, db: Any, name: str) -> None:
        """Serialise, until the end of the open transaction, the transactions that take the lock ``name`` (for a
        read-then-write such as claiming a run). SQLite's write transactions are serial already."""

    def tables(self, db: Any) -> list[str]:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def retryable(self, error: BaseException) -> bool:
        """Whether a failed transaction lost a conflict with another writer and can simply run again."""
        return False

    # JSON fields of the ``record`` column; a path is a sequence of keys and list indexes.
    json_source = ""  # what a query that reads JSON fields adds to its FROM clause

    def json_text(self, path: Sequence[str | int]) -> str:
        return f"json_extract(record, '{self._path(path)}')"

    def json_number(self, path: Sequence[str | int]) -> str:
        return self.json_text(path)

    def json_length(self, path: Sequence[str | int]) -> str:
        return f"json_array_length(record, '{self._path(path)}')"

    @staticmethod
    def _path(path: Sequence[str | int]) -> str:
        return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


class _Postgres(Dialect):
    name = "postgresql"
    begin = "BEGIN"  # READ COMMITTED: ON CONFLICT makes each upsert atomic; read-then-writes take a lock()

    _TYPES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT"}  # PostgreSQL's REAL is 4 bytes: too few for a time

    def ddl(self, sql: str) -> str:
        sql = re.sub(r"\b(REAL|INTEGER)\b", lambda m: self._TYPES[m.group(1)], sql)
        # SQLite gives every table a rowid (the order rows were first stored in, kept by an upsert); here it is a
        # column of its own, indexed for ordering and for fetching rows again by it.
        return re.sub(r"^(\s*CREATE TABLE (?:IF NOT EXISTS )?\w+ \()", r"\1rowid BIGSERIAL UNIQUE, ", sql)

    def lock(self, db: Any, name: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (zlib.crc32(name.encode()) - 2**31,))

    def tables(self, db: Any) -> list[str]:
        return [r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]

    def retryable(self, error: BaseException) -> bool:
        # serialization_failure, deadlock_detected: the server rolled the whole transaction back
        return getattr(error, "sqlstate", None) in ("40001", "40P01")

    # The record is parsed once per row. PostgreSQL's JSON parser refuses the escape \u0000 (a judge's output may
    # hold one); it becomes U+FFFD first, which leaves every field read here as it was.
    json_source = r" CROSS JOIN LATERAL (SELECT replace(record, '\u0000', '\ufffd')::json AS j OFFSET 0) AS x"

    def json_text(self, path: Sequence[str | int]) -> str:
        return f"(x.j #>> '{self._pg_path(path)}')"

    def json_number(self, path: Sequence[str | int]) -> str:
        return f"CAST(x.j #>> '{self._pg_path(path)}' AS DOUBLE PRECISION)"

    def json_length(self, path: Sequence[str | int]) -> str:
        node = f"(x.j #> '{self._pg_path(path)}')"
        return f"CASE json_typeof({node}) WHEN 'array' THEN json_array_length({node}) END"

    @staticmethod
    def _pg_path(path: Sequence[str | int]) -> str:
        return "{" + ",".join(str(p) for p in path) + "}"


SQLITE = Dialect()
POSTGRES = _Postgres()


# -- PostgreSQL connection -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def _pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (outside string literals), a literal ``%`` as ``%%``."""
    out, quoted = [], False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        out.append("%%" if ch == "%" else "%s" if ch == "?" and not quoted else ch)
    return "".join(out)


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise MissingExtraError("a PostgreSQL store needs the psycopg driver, which is not installed",
                                fix="pip install 'lioneval[postgres]'") from e
    return psycopg


def postgres_failure(where: str, e: Exception, *, readonly: bool = False) -> Exception:
    """The StoreError for a failure of the server, the network, the database or a permission (what failed, why, the
    fix); any other error (a bug in our SQL) is returned as it is."""
    state = getattr(e, "sqlstate", None) or ""
    text = str(e).strip()
    msg = " ".join(text.split("FATAL:")[-1].split()) if "FATAL:" in text else " ".join(text.split())
    rerun = "rerun the same command: everything committed before is kept"
    if state == "3D000" or re.search(r'database ".*" does not exist', msg):
        name = urlsplit(where).path.lstrip("/") or "NAME"
        return StoreError(f"cannot open PostgreSQL store {where}: {msg}",
                          fix=f"create the database first (createdb {name}, as a user allowed to), then rerun")
    if state.startswith("28") or "authentication failed" in msg or re.search(r'role ".*" does not exist', msg):
        return StoreError(f"PostgreSQL refused the connection to store {where}: {msg}",
                          fix="check the user in the URL; give a password through ~/.pgpass or PGPASSWORD rather "
                              "than in the URL")
    if state == "53100":
        return StoreError(f"cannot write PostgreSQL store {where}: the server's disk is full ({msg})",
                          fix=f"free space on the database server, then {rerun}")
    if state == "53300" or "too many clients" in msg:
        return StoreError(f"PostgreSQL store {where} has no free connection: {msg}",
                          fix="raise max_connections on the server, put a pooler (pgbouncer) in front, or run "
                              "fewer processes at once")
    if state == "42501":
        return StoreError(f"no permission on PostgreSQL store {where}: {msg}",
                          fix="GRANT the user the right to create tables in the database (or to write them), or "
                              "use a database the user owns" + ("" if readonly else "; readers need only SELECT"))
    if state == "25006":
        return StoreError(f"PostgreSQL store {where} accepts no writes here: {msg}",
                          fix="point --store at the primary server, not a read-only standby")
    if state == "55P03":
        return StoreError(f"PostgreSQL store {where} is locked by another process ({msg})",
                          fix="wait for the other lioneval process writing to it to finish, then rerun")
    if state.startswith(("08", "57")) or (not state and type(e).__name__ == "OperationalError"):
        return StoreError(f"cannot reach PostgreSQL store {where}: {msg}",
                          fix=f"check that the server is running and the URL's host, port and database; then {rerun}")
    return e


class PostgresConnection:
    """A psycopg connection that speaks to RunStore as its SQLite connection does: ``execute`` and ``executemany``
    with ``?`` placeholders, ``total_changes``, ``in_transaction``, ``close``. It runs in autocommit mode: RunStore
    opens and ends its transactions itself (a reader's statements each see the latest commits). Failures of the
    server, network or permissions raise a StoreError saying so."""

    def __init__(self, url: str, *, readonly: bool, timeout: float):
        psycopg = _import_psycopg()
        self.where = redact(url)
        self.readonly = readonly
        self.total_changes = 0
        self._count_lock = threading.Lock()
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=max(2, int(timeout)))
        except psycopg.Error as e:
            raise self._failure(e) from e
        except ValueError as e:  # a URL psycopg cannot parse
            raise StoreError(f"cannot use store URL {self.where}: {e}",
                             fix="write it as postgresql://USER@HOST[:PORT]/DATABASE") from e
        try:
            # a statement waiting on another process's lock fails after the store's timeout instead of hanging
            self.execute(f"SET lock_timeout = {int(timeout * 1000)}")
            if readonly:
                self.execute("SET default_transaction_read_only = on")
        except BaseException:
            self._conn.close()
            raise

    def _failure(self, e: Exception) -> Exception:
        return postgres_failure(self.where, e, readonly=self.readonly)

    def _count(self, cur: Any) -> None:
        if cur.rowcount > 0 and cur.statusmessage and cur.statusmessage.split()[0] in ("INSERT", "UPDATE", "DELETE"):
            with self._count_lock:
                self.total_changes += cur.rowcount

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        try:
            cur = self._conn.execute(_pyformat(sql), tuple(parameters))
        except Exception as e:
            failure = self._failure(e)
            if failure is e:
                raise
            raise failure from e
        self._count(cur)
        return cur

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        cur = self._conn.cursor()
        try:
            cur.executemany(_pyformat(sql), [tuple(p) for p in parameters])
        except Exception as e:
            failure = self._failure(e)
            if failure is e:
                raise
            raise failure from e
        if cur.rowcount > 0:
            with self._count_lock:
                self.total_changes += cur.rowcount
        return cur

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a big read (an export) in batches as the server sends them, not all in memory at once."""
        cur = self._conn.cursor()
        try:
            yield from cur.stream(_pyformat(sql), tuple(parameters), size=1000)
        except Exception as e:
            failure = self._failure(e)
            if failure is e:
                raise
            raise failure from e

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != 0  # IDLE

    def close(self) -> None:
        self._conn.close()


def connect_postgres(url: str, *, readonly: bool, timeout: float) -> PostgresConnection:
    scheme = url.split("://", 1)[0].lower()
    if scheme not in POSTGRES_SCHEMES:
        raise StoreError(f"unsupported store URL {redact(url)}: lioneval stores runs in SQLite or PostgreSQL",
                         fix="pass --store with a file path (SQLite) or postgresql://USER@HOST[:PORT]/DATABASE")
    return PostgresConnection(url, readonly=readonly, timeout=timeout)
