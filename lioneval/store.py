"""RunStore: the only code that touches the database.

SQLite in WAL mode is the embedded default: one writer and any number of readers at once (a training callback writes
while the dashboard reads). PostgreSQL, chosen by a ``postgresql://`` URL, is the store that trainers and evaluators on
many machines share, with the same contract. Every record is stored under its content hash, so writes are idempotent
and a rerun finds what an earlier, possibly crashed, run already paid for. Each ``put_*`` call is one transaction: a
batch is stored whole or not at all. The SQL is kept in this module and written once for both databases; what differs
between them (types, locks, JSON reads, the PostgreSQL connection) is in :mod:`lioneval.store_sql`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from lioneval.errors import DataError, LionEvalError, StoreError
from lioneval.store_sql import POSTGRES, SQLITE, connect_postgres, is_url, redact
from lioneval.types import (
    SCHEMA_VERSION,
    Answer,
    CheckResult,
    EarlyStop,
    Judgment,
    Promotion,
    Question,
    Record,
    Report,
    RunSpec,
)

__all__ = ["RunStore", "DEFAULT_STORE", "STORE_VERSION", "jsonl_lines", "is_url"]

DEFAULT_STORE = "lioneval.db"

# Each entry upgrades the schema from version i to i + 1. Append, never edit: stores in the field depend on them.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (key TEXT PRIMARY KEY, model TEXT NOT NULL, stage TEXT, step INTEGER,
               created_at REAL NOT NULL, record TEXT NOT NULL)""",
        """CREATE TABLE questions (key TEXT PRIMARY KEY, benchmark TEXT NOT NULL, id TEXT NOT NULL,
               record TEXT NOT NULL)""",
        "CREATE INDEX questions_bench ON questions (benchmark, id)",
        """CREATE TABLE answers (key TEXT PRIMARY KEY, benchmark TEXT NOT NULL, question_id TEXT NOT NULL,
               model TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL)""",
        "CREATE INDEX answers_model ON answers (benchmark, model)",
        """CREATE TABLE judgments (key TEXT PRIMARY KEY, benchmark TEXT NOT NULL, question_id TEXT NOT NULL,
               model TEXT NOT NULL, judge TEXT NOT NULL, kind TEXT NOT NULL, turn INTEGER, failed INTEGER NOT NULL,
               created_at REAL NOT NULL, record TEXT NOT NULL)""",
        "CREATE INDEX judgments_model ON judgments (benchmark, judge, model)",
        """CREATE TABLE reports (key TEXT PRIMARY KEY, run TEXT NOT NULL, benchmark TEXT NOT NULL,
               model TEXT NOT NULL, judge TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL)""",
        "CREATE INDEX reports_run ON reports (run)",
        """CREATE TABLE checks (key TEXT PRIMARY KEY, run TEXT, scope TEXT NOT NULL, name TEXT NOT NULL,
               status TEXT NOT NULL, model TEXT, question_id TEXT, judge TEXT, created_at REAL NOT NULL,
               record TEXT NOT NULL)""",
        "CREATE INDEX checks_run ON checks (run, status)",
    ],
    [
        # Which records belong to a run: its selected questions, its answers (and the baseline's), the judgments of
        # every judge that judged it. Reports read exactly these, never everything stored for the model.
        """CREATE TABLE run_records (run TEXT NOT NULL, tbl TEXT NOT NULL, key TEXT NOT NULL,
               PRIMARY KEY (run, tbl, key))""",
        """CREATE TABLE promotions (key TEXT PRIMARY KEY, stage TEXT NOT NULL, run TEXT, model TEXT NOT NULL,
               created_at REAL NOT NULL, record TEXT NOT NULL)""",
        "CREATE INDEX promotions_stage ON promotions (stage)",
        """CREATE TABLE early_stops (key TEXT PRIMARY KEY, stage TEXT, run TEXT, model TEXT NOT NULL,
               created_at REAL NOT NULL, record TEXT NOT NULL)""",
        "ALTER TABLE checks ADD COLUMN benchmark TEXT",
        # A check is keyed by what was checked, not by its outcome: see _rekey_checks.
        "python:_rekey_checks",
    ],
    [
        # Every paid judge call (one game of a judgment), stored the moment it is answered: a judgment whose other
        # game failed is finished on the next run without paying for this one again.
        """CREATE TABLE game_results (key TEXT PRIMARY KEY, judge TEXT NOT NULL, created_at REAL NOT NULL,
               record TEXT NOT NULL)""",
        # What a run is doing: running (with a lease its process renews), complete, incomplete or failed.
        """CREATE TABLE run_state (run TEXT PRIMARY KEY, status TEXT NOT NULL, owner TEXT, lease_until REAL,
               updated_at REAL NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
    ],
    [
        # How far a running run is, per stage ("generate mt-bench": done, total, tokens, rate), for dashboards.
        "ALTER TABLE run_state ADD COLUMN progress TEXT NOT NULL DEFAULT '{}'",
    ],
]
STORE_VERSION = len(_MIGRATIONS)

# table -> (record type, extra indexed columns taken from the record)
_TABLES: dict[str, tuple[type[Record], tuple[str, ...]]] = {
    "runs": (RunSpec, ("model", "stage", "step")),
    "questions": (Question, ("benchmark", "id")),
    "answers": (Answer, ("benchmark", "question_id", "model")),
    "judgments": (Judgment, ("benchmark", "question_id", "model", "judge", "kind", "turn")),
    "reports": (Report, ("run", "benchmark", "model", "judge")),
    "checks": (CheckResult, ("run", "scope", "name", "status", "benchmark", "model", "question_id", "judge")),
    "promotions": (Promotion, ("stage", "run", "model")),
    "early_stops": (EarlyStop, ("stage", "run", "model")),
}
_HAS_CREATED = {"runs", "answers", "judgments", "reports", "checks", "promotions", "early_stops"}
LINKED = ("questions", "answers", "judgments")  # the tables whose records a run links to
RUN_STATUSES = ("running", "complete", "incomplete", "failed", "killed")
LEASE_S = 60.0  # a running run renews its lease well within this; one not renewed for longer was killed
# The WAL is checkpointed and truncated once it grows past this, even while readers poll (they use short reads).
WAL_LIMIT_BYTES = 16 * 1024 * 1024


def owner_id() -> str:
    """This process, as a lease owner: host and pid (a lease of a dead pid on this host is released at once)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only the lease's expiry tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rekey_checks(db: Any) -> None:
    """Re-store every check under its new key (run, name, scope, benchmark, subject); the newest result wins."""
    rows = db.execute("SELECT key, created_at, record FROM checks ORDER BY created_at, rowid").fetchall()
    db.execute("DELETE FROM checks")
    _, cols = _TABLES["checks"]
    latest: dict[str, tuple] = {}
    for _, created, rec in rows:
        c = CheckResult.model_validate_json(rec)
        latest[c.key] = (c.key, *(getattr(c, n) for n in cols), created, c.to_json())
    names = ["key", *cols, "created_at", "record"]
    db.executemany(f"INSERT INTO checks ({','.join(names)}) VALUES ({','.join('?' * len(names))})", latest.values())


# -- errors ----------------------------------------------------------------------------------------------------------
# SQLite's primary result codes that say something about the file, the disk or another process, not about our SQL
# (those stay sqlite3 errors: they are bugs). Each becomes a StoreError that says what to do.
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26
_ENVIRONMENT = {_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB}
_BY_MESSAGE = {  # Python < 3.11 has no sqlite_errorcode
    "database or disk is full": _FULL, "readonly database": _READONLY, "unable to open database file": _CANTOPEN,
    "disk i/o error": _IOERR, "file is not a database": _NOTADB, "malformed": _CORRUPT,
    "database is locked": _BUSY, "table is locked": _LOCKED,
}


def _code(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    msg = str(e).lower()
    return next((c for text, c in _BY_MESSAGE.items() if text in msg), None)


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def store_failure(path: Path, e: sqlite3.Error | OSError, *, readonly: bool) -> StoreError:
    """The StoreError for a failure of the store's file, disk or lock: what failed, why, and the fix."""
    code = _code(e) if isinstance(e, sqlite3.Error) else None
    folder = path.parent if str(path.parent) else Path(".")
    copy = "copy the store to a writable folder and pass --store with the copy"
    if code == _FULL or getattr(e, "errno", None) == 28:  # ENOSPC
        return StoreError(f"cannot write store {path}: the disk is full",
                          fix="free space on that disk (or pass --store with a path on another disk), then rerun the "
                              "same command; everything stored before is kept")
    if path.is_dir():
        return StoreError(f"{path} is a folder, not a store file",
                          fix=f"pass --store with a file path, e.g. --store {path / DEFAULT_STORE}")
    if code == _NOTADB:
        return StoreError(f"{path} is not a lioneval store (not an SQLite database)",
                          fix="pass --store with a lioneval store file (default lioneval.db), or move this file away")
    if code == _CORRUPT:
        return StoreError(f"store {path} is damaged ({e})",
                          fix=f"restore it from a backup; `sqlite3 {path} .recover` can salvage the readable rows")
    if code in (_BUSY, _LOCKED):
        return StoreError(f"store {path} is locked by another process ({e})",
                          fix="wait for the other lioneval process writing to it to finish, then rerun")
    exists = path.exists()
    if exists and not os.access(path, os.R_OK):
        return StoreError(f"no permission to read store {path}",
                          fix=f"chmod u+r {path} (or run as the user who owns it)")
    elsewhere = "pass --store with a path in a folder you can write to"
    if _read_only_fs(folder):
        if not exists:
            return StoreError(f"cannot create store {path}: {folder} is on a read-only file system", fix=elsewhere)
        return StoreError(f"store {path} is on a read-only file system", fix=copy)
    if not readonly and exists and not os.access(path, os.W_OK):
        still = "; verbs that only read (info, runs, report) work on it as is" if os.access(folder, os.W_OK) else ""
        return StoreError(f"store {path} is read-only: no permission to write it",
                          fix=f"chmod u+w {path}, or {copy}{still}")
    if not os.access(folder, os.W_OK | os.X_OK):
        if not exists:
            return StoreError(f"cannot create store {path}: no permission to write in the folder {folder}",
                              fix=elsewhere)
        return StoreError(
            f"no permission to write in the folder {folder} of store {path} (SQLite keeps its -wal and -shm files "
            "beside the store, and readers need them too)",
            fix=f"chmod u+w {folder}, or {copy}")
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    if not exists and not readonly:
        return StoreError(f"cannot create store {path}: {why}", fix=elsewhere)
    if code == _READONLY:
        return StoreError(f"store {path} cannot be written: {why}", fix=copy)
    return StoreError(f"cannot {'read' if readonly else 'write'} store {path}: {why}",
                      fix="check the path, its permissions and the disk it is on")


class _Cursor(sqlite3.Cursor):
    """Rows are fetched lazily: a failure of the file while iterating is a StoreError too."""

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.Error as e:
            raise self.connection._failure(e) from e  # type: ignore[attr-defined]

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.Error as e:
            raise self.connection._failure(e) from e  # type: ignore[attr-defined]

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.Error as e:
            raise self.connection._failure(e) from e  # type: ignore[attr-defined]


class _Connection(sqlite3.Connection):
    """The store's connection: a full disk, a read-only or missing file, a lock held too long or a file that is not
    SQLite raise a StoreError saying so (in this one place), whichever statement met it."""

    store_path: Path = Path(DEFAULT_STORE)
    store_readonly: bool = False

    def _failure(self, e: sqlite3.Error) -> Exception:
        if _code(e) in _ENVIRONMENT:
            return store_failure(self.store_path, e, readonly=self.store_readonly)
        return e

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return self.cursor(_Cursor).execute(sql, parameters)
        except sqlite3.Error as e:
            failure = self._failure(e)
            if failure is e:
                raise
            raise failure from e

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            return self.cursor(_Cursor).executemany(sql, parameters)
        except sqlite3.Error as e:
            failure = self._failure(e)
            if failure is e:
                raise
            raise failure from e

    def stream(self, sql: str, parameters: Any = ()) -> Iterator[Any]:
        """The rows of a big read one by one (an SQLite cursor fetches lazily already)."""
        return iter(self.execute(sql, parameters))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def jsonl_lines(path: str | Path, what: str = "file") -> Iterator[tuple[int, str | None]]:
    """(line number, text) of each non-blank line of a JSONL file; text is None for a line that is not UTF-8 (the
    caller counts it as malformed). A UTF-8 byte-order mark is dropped; a file that cannot be opened, or is UTF-16 or
    UTF-32, raises DataError."""
    path = Path(path)
    try:
        fh = path.open("rb")
    except IsADirectoryError as e:
        raise DataError(f"{what} {path} is a folder", fix="pass the file itself") from e
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror}", fix="check the path and its permissions") from e
    with fh:
        try:
            for n, raw in enumerate(fh, 1):
                if n == 1:
                    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                        raise DataError(f"{what} {path} is UTF-16 (or UTF-32) text, not UTF-8",
                                        fix="save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8")
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield n, None
                    continue
                if text.strip():
                    yield n, text
        except OSError as e:
            raise DataError(f"cannot read {what} {path}: {e.strerror}", fix="check the file and the disk") from e


_T = TypeVar("_T")


class RunStore:
    """Records of runs on SQLite (``path`` a file) or PostgreSQL (``path`` a ``postgresql://`` URL). ``readonly=True``
    never writes and never blocks a writer."""

    path: Path | str  # the file, or the URL as given (pass it to RunStore again for a connection of one's own)
    where: str  # how messages name the store (a URL's password masked)

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False, timeout: float = 30.0):
        self._timeout = timeout
        self.readonly = readonly
        self._lock = threading.RLock()
        self._db: Any = None
        if is_url(path):
            self._open_server(str(path))
            return
        self._dialect = SQLITE
        file = Path(path)
        self.path, self.where = file, str(file)
        if file.is_dir():
            raise store_failure(file, IsADirectoryError(21, "Is a directory"), readonly=readonly)
        if readonly:
            if not file.exists():
                raise StoreError(
                    f"no store at {file}",
                    fix="run an evaluation or `lioneval import` first, or pass --store with the right path",
                )
        else:
            self._create_file(file)
        db: _Connection | None = None
        try:
            if readonly:
                uri = f"file:{file.resolve()}?mode=ro"
                db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False,
                                     factory=_Connection)
            else:
                db = sqlite3.connect(str(file), timeout=timeout, isolation_level=None, check_same_thread=False,
                                     factory=_Connection)
            db.store_path, db.store_readonly = file, readonly
            self._db = db
            self.version  # noqa: B018 - a file that is not a store fails here, before a pragma could change it
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL loses nothing on a process crash (only on power loss) and keeps commits cheap.
                self._db.execute("PRAGMA synchronous=NORMAL")
                # After a checkpoint resets the WAL, the file is cut back to this size instead of staying large.
                self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._migrate()
        except (sqlite3.Error, OSError, LionEvalError) as e:
            if db is not None:
                db.close()
            if isinstance(e, LionEvalError):
                raise
            failure = store_failure(file, e, readonly=readonly)
            raise failure from e

    def _open_server(self, url: str) -> None:
        """Connect to a PostgreSQL store and bring its schema up to date (a reader needs one already there)."""
        self.path, self.where, self._dialect = url, redact(url), POSTGRES
        self._db = connect_postgres(url, readonly=self.readonly, timeout=self._timeout)
        try:
            if self.readonly and self.version == 0:
                raise StoreError(f"no store at {self.where} (the database holds no lioneval tables yet)",
                                 fix="run an evaluation or `lioneval import` with this --store first, or pass --store "
                                     "with the right URL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @staticmethod
    def _create_file(file: Path) -> None:
        """Create the store's folder and (empty) file here, so a path SQLite cannot use fails with the reason the
        operating system gives (no such folder, permission denied, read-only file system), not "unable to open"."""
        if file.exists():
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder {file.parent} of store {file}: {e.strerror}",
                             fix="pass --store with a path in a folder you can write to") from e
        try:
            os.close(os.open(file, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            pass  # another process created it meanwhile
        except OSError as e:
            raise store_failure(file, e, readonly=False) from e

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    @staticmethod
    def remove_if_empty(path: str | Path) -> bool:
        """Delete the store at ``path`` (and its WAL files) when it holds no row at all: what a command that failed
        before storing anything leaves behind. True when it was removed. A database server's store is never
        removed: its database was there before."""
        if is_url(path):
            return False
        path = Path(path)
        if not path.is_file():
            return False
        try:
            db = sqlite3.connect(str(path), timeout=1.0)
            try:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                if any(db.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables if t != "meta"):
                    return False
            finally:
                db.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        except (sqlite3.Error, OSError):
            return False
        return True

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def version(self) -> int:
        try:
            tables = self._dialect.tables(self._db)
            if "meta" not in tables:
                if not tables:
                    return 0
                if self._dialect is SQLITE:
                    raise StoreError(f"{self.where} is not a lioneval store (an SQLite database of something else)",
                                     fix="pass --store with a lioneval store file (default lioneval.db)")
                raise StoreError(f"{self.where} is not a lioneval store (the database holds other tables)",
                                 fix="give lioneval a database of its own (createdb lioneval) and pass its URL")
            row = self._db.execute("SELECT value FROM meta WHERE key='store_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.where} is not a lioneval store: {e}", fix="pass --store with a store file") from e
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        current = self.version
        if current > STORE_VERSION:
            raise StoreError(
                f"store {self.where} has schema version {current}, newer than this lioneval ({STORE_VERSION})",
                fix="upgrade lioneval (pip install -U lioneval)",
            )
        if current == STORE_VERSION:
            return
        if self.readonly:
            raise StoreError(
                f"store {self.where} has schema version {current}, older than this lioneval ({STORE_VERSION})",
                fix="open it once for writing (any `lioneval` command that writes, e.g. `lioneval migrate`)",
            )
        self._write(self._upgrade)

    def _upgrade(self, db: Any) -> None:
        self._dialect.lock(db, "lioneval:migrate")  # one process migrates; the others then find it done
        current = self.version  # another process may have migrated meanwhile
        if current == 0:
            db.execute(self._dialect.ddl("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"))
        for statements in _MIGRATIONS[current:]:
            for sql in statements:
                if sql.startswith("python:"):
                    globals()[sql.removeprefix("python:")](db)
                else:
                    db.execute(self._dialect.ddl(sql))
        upsert = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        db.execute(upsert, ("store_version", str(STORE_VERSION)))
        db.execute(upsert, ("schema_version", str(SCHEMA_VERSION)))

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        if self.readonly:
            raise StoreError(f"store {self.where} is open read-only", fix="open it without readonly to write")
        with self._lock:
            self._db.execute(self._dialect.begin)
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            if self._dialect is SQLITE:
                try:
                    self._bound_wal()
                except (sqlite3.Error, StoreError):
                    pass  # the batch is committed; the next commit tries the checkpoint again

    def _write(self, work: Callable[[Any], _T]) -> _T:
        """``work(db)`` in one write transaction. On PostgreSQL, a transaction that lost a deadlock or a
        serialization conflict to another writer was rolled back whole by the server: it runs again, after a short
        random wait, so concurrent writers lose nothing and store nothing twice."""
        for attempt in range(10):
            try:
                with self._tx() as db:
                    return work(db)
            except Exception as e:
                if attempt == 9 or not self._dialect.retryable(e):
                    raise
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
        raise AssertionError("unreachable")

    def _rollback(self) -> None:
        """Undo the open transaction, if SQLite has not already (it rolls back by itself on a full disk or an I/O
        error, and a second ROLLBACK would hide the real error behind "no transaction is active")."""
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except Exception:
            pass  # the error being raised says what went wrong; an unfinished transaction is never committed

    def _bound_wal(self) -> None:
        """Checkpoint and truncate the WAL once it passes WAL_LIMIT_BYTES.

        SQLite's automatic checkpoint copies pages back but can only restart the WAL when no reader is using it; with
        readers polling all the time (a dashboard, a callback) that moment rarely comes and the file grows without
        bound. A PASSIVE checkpoint every few commits keeps the backfill complete, so readers that start afterwards
        read from the database file and the next writer can restart the WAL from its beginning (the file is then cut
        to ``journal_size_limit``). Past the limit, one TRUNCATE is tried with a short wait, never the busy timeout:
        the writer must not stall behind the readers.
        """
        self._commits = getattr(self, "_commits", 0) + 1
        if self._commits % 16:
            return
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        try:
            size = os.path.getsize(f"{self.path}-wal")
        except OSError:
            return
        if size > WAL_LIMIT_BYTES:
            self._db.execute("PRAGMA busy_timeout=100")
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")

    # -- writes ----------------------------------------------------------------------------------------------
    def _put(self, table: str, records: Iterable[Record], conflict: str = "IGNORE") -> int:
        rtype, cols = _TABLES[table]
        rows = []
        for r in records:
            if not isinstance(r, rtype):
                raise TypeError(f"{table} takes {rtype.__name__} records, got {type(r).__name__}")
            rows.append(self._row(table, r, cols))
        if not rows:
            return 0
        names = ["key", *cols, *(["failed"] if table == "judgments" else [])]
        names += (["created_at"] if table in _HAS_CREATED else []) + ["record"]
        marks = ",".join("?" * len(names))
        sql = f"INSERT INTO {table} ({','.join(names)}) VALUES ({marks})"
        if conflict == "REPLACE":
            sql += " ON CONFLICT(key) DO UPDATE SET " + ",".join(f"{n}=excluded.{n}" for n in names[1:])
        elif table == "judgments":
            # A successful judgment replaces a stored failure of the same request (--retry-failed); nothing else
            # is ever overwritten, so a paid verdict is never lost.
            sql += " ON CONFLICT(key) DO UPDATE SET " + ",".join(f"{n}=excluded.{n}" for n in names[1:])
            sql += " WHERE judgments.failed = 1 AND excluded.failed = 0"
        else:
            sql += " ON CONFLICT(key) DO NOTHING"

        def put(db: Any) -> int:
            before = db.total_changes
            db.executemany(sql, rows)
            return db.total_changes - before

        return self._write(put)

    @staticmethod
    def _row(table: str, r: Record, cols: tuple[str, ...]) -> tuple:
        values = [r.key, *(getattr(r, c) for c in cols)]
        if table == "judgments":
            values.append(int(r.failed))  # type: ignore[attr-defined]
        if table in _HAS_CREATED:
            values.append(time.time())
        values.append(r.to_json())
        return tuple(values)

    def put_run(self, spec: RunSpec) -> str:
        self._put("runs", [spec])
        return spec.key

    def put_questions(self, questions: Iterable[Question]) -> int:
        return self._put("questions", questions)

    def put_answers(self, answers: Iterable[Answer]) -> int:
        return self._put("answers", answers)

    def put_judgments(self, judgments: Iterable[Judgment]) -> int:
        return self._put("judgments", judgments)

    def put_report(self, report: Report) -> str:
        # A report is derived data: recomputing it (more rounds, another seed) replaces the stored one.
        self._put("reports", [report], conflict="REPLACE")
        return report.key

    def put_checks(self, checks: Iterable[CheckResult]) -> int:
        return self._put("checks", checks, conflict="REPLACE")

    def replace_checks(self, run: str, benchmark: str, judge: str | None, checks: Sequence[CheckResult]) -> int:
        """Store a fresh checking of one run on one benchmark: its earlier results (those that do not depend on a
        judge, and those of ``judge``) are dropped first, in the same transaction, so a result the
        new checking no longer produces (an answer that now passes) does not linger."""
        _, cols = _TABLES["checks"]
        names = ["key", *cols, "created_at", "record"]
        rows = [self._row("checks", c, cols) for c in checks]
        sql = (f"INSERT INTO checks ({','.join(names)}) VALUES ({','.join('?' * len(names))}) ON CONFLICT(key) DO "
               "UPDATE SET " + ",".join(f"{n}=excluded.{n}" for n in names[1:]))

        def replace(db: Any) -> None:
            self._dialect.lock(db, f"checks:{run}:{benchmark}")
            db.execute("DELETE FROM checks WHERE run = ? AND benchmark = ? AND (judge IS NULL OR judge = ?)",
                       (run, benchmark, judge))
            if rows:
                db.executemany(sql, rows)

        self._write(replace)
        return len(rows)

    # -- paid judge calls ---------------------------------------------------------------------------------------
    def put_game(self, key: str, judge: str, result: dict[str, Any]) -> None:
        """Store one answered judge call (a game) under its request key, as soon as it is paid for."""
        row = (key, judge, time.time(), json.dumps(result, ensure_ascii=False))
        self._write(lambda db: db.execute("INSERT INTO game_results (key, judge, created_at, record) VALUES "
                                          "(?, ?, ?, ?) ON CONFLICT(key) DO NOTHING", row))

    def games(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored game results among ``keys``: key -> result."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            sql = f"SELECT key, record FROM game_results WHERE key IN ({','.join('?' * len(chunk))})"
            out.update((k, json.loads(r)) for k, r in self._db.execute(sql, chunk))
        return out

    # -- run state ------------------------------------------------------------------------------------------------
    def claim_run(self, run: str, owner: str | None = None, *, lease_s: float = LEASE_S) -> tuple[bool, str | None]:
        """Take the lease of ``run`` for ``owner`` (this process by default). Returns (True, None), or (False, the
        live owner) when another process holds a lease that has not expired and whose process is alive."""
        owner = owner or owner_id()

        def claim(db: Any) -> tuple[bool, str | None]:
            self._dialect.lock(db, f"run:{run}")  # two processes claiming at once: the second sees the first's lease
            now = time.time()
            row = db.execute("SELECT status, owner, lease_until FROM run_state WHERE run = ?", (run,)).fetchone()
            if row is not None and row[0] == "running" and row[1] != owner and (row[2] or 0) > now \
                    and _owner_alive(row[1]):
                return False, row[1]
            db.execute("INSERT INTO run_state (run, status, owner, lease_until, updated_at, detail) VALUES "
                       "(?, 'running', ?, ?, ?, '') ON CONFLICT(run) DO UPDATE SET status='running', "
                       "owner=excluded.owner, lease_until=excluded.lease_until, updated_at=excluded.updated_at, "
                       "detail=''", (run, owner, now + lease_s, now))
            return True, None

        return self._write(claim)

    def renew_run(self, run: str, owner: str | None = None, *, lease_s: float = LEASE_S) -> None:
        owner = owner or owner_id()
        self._write(lambda db: db.execute("UPDATE run_state SET lease_until = ?, updated_at = ? WHERE run = ? AND "
                                          "owner = ? AND status = 'running'",
                                          (time.time() + lease_s, time.time(), run, owner)))

    def finish_run(self, run: str, status: str, detail: str = "", owner: str | None = None) -> None:
        """Record how a run ended (complete, incomplete, failed) and release its lease."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        owner = owner or owner_id()
        self._write(lambda db: db.execute(
            "INSERT INTO run_state (run, status, owner, lease_until, updated_at, detail) VALUES "
            "(?, ?, ?, NULL, ?, ?) ON CONFLICT(run) DO UPDATE SET status=excluded.status, "
            "lease_until=NULL, updated_at=excluded.updated_at, detail=excluded.detail",
            (run, status, owner, time.time(), detail)))

    def set_progress(self, run: str, stage: str, **figures: Any) -> None:
        """Record how far ``stage`` of a running run is (done, total, tokens, ...), merged into its progress."""
        def merge(db: Any) -> None:
            self._dialect.lock(db, f"run:{run}")  # another stage's figures, merged meanwhile, are kept
            row = db.execute("SELECT progress FROM run_state WHERE run = ?", (run,)).fetchone()
            if row is None:
                return
            progress = json.loads(row[0] or "{}")
            progress[stage] = {**figures, "updated_at": time.time()}
            db.execute("UPDATE run_state SET progress = ? WHERE run = ?", (json.dumps(progress), run))

        self._write(merge)

    def run_progress(self, run: str) -> dict[str, dict[str, Any]]:
        """Per stage, the figures a run last recorded with :meth:`set_progress` ({} when none)."""
        row = self._db.execute("SELECT progress FROM run_state WHERE run = ?", (run,)).fetchone()
        return json.loads(row[0] or "{}") if row is not None else {}

    def run_status(self, run: str) -> tuple[str, str]:
        """(status, detail) of a run; a running run whose lease expired or whose process died is "killed";
        a run written before statuses were kept is "unknown"."""
        row = self._db.execute("SELECT status, owner, lease_until, detail FROM run_state WHERE run = ?",
                               (run,)).fetchone()
        if row is None:
            return "unknown", ""
        status, owner, until, detail = row
        if status == "running" and ((until or 0) < time.time() or not _owner_alive(owner)):
            return "killed", f"its process ({owner}) stopped without finishing; rerun the same command to resume"
        return status, detail

    def put_promotions(self, promotions: Iterable[Promotion]) -> int:
        return self._put("promotions", promotions)

    def put_early_stop(self, stop: EarlyStop) -> str:
        self._put("early_stops", [stop])
        return stop.key

    def link(self, run: str, table: str, keys: Iterable[str]) -> int:
        """Record that these records belong to ``run`` (idempotent)."""
        if table not in LINKED:
            raise ValueError(f"runs link {LINKED}, not {table!r}")
        rows = [(run, table, k) for k in dict.fromkeys(keys)]
        if not rows:
            return 0
        def put(db: Any) -> int:
            before = db.total_changes
            db.executemany("INSERT INTO run_records (run, tbl, key) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", rows)
            return db.total_changes - before

        return self._write(put)

    def linked(self, run: str, table: str, **where: Any) -> list[Record]:
        """The records of ``table`` that belong to ``run``, in the order they were stored (``where`` filters on
        the table's indexed columns, e.g. ``benchmark=``, ``judge=``, ``model=``)."""
        if table not in LINKED:
            raise ValueError(f"runs link {LINKED}, not {table!r}")
        rtype, cols = _TABLES[table]
        clauses, params = ["r.run = ?", "r.tbl = ?"], [run, table]
        for col, val in where.items():
            if col not in cols:
                raise ValueError(f"cannot filter {table} on {col!r}")
            if val is not None:
                clauses.append(f"t.{col} = ?")
                params.append(val)
        sql = (f"SELECT t.record FROM run_records r JOIN {table} t ON t.key = r.key WHERE "
               + " AND ".join(clauses) + " ORDER BY t.rowid")
        return [self._parse(table, row[0]) for row in self._db.execute(sql, params)]

    def promotions(self, stage: str | None = None) -> list[Promotion]:
        """Promotion decisions, oldest first (by the order they were stored, not by a clock)."""
        return self._select("promotions", {"stage": stage})  # type: ignore[return-value]

    def early_stops(self, stage: str | None = None, model: str | None = None) -> list[EarlyStop]:
        return self._select("early_stops", {"stage": stage, "model": model})  # type: ignore[return-value]

    # -- reads -----------------------------------------------------------------------------------------------
    def _select(self, table: str, where: dict[str, Any], order: str = "rowid") -> list[Record]:
        rtype, _ = _TABLES[table]
        clauses, params = [], []
        for col, val in where.items():
            if val is None:
                continue
            if isinstance(val, (list, tuple, set, frozenset)):
                val = list(val)
                clauses.append(f"{col} IN ({','.join('?' * len(val))})")
                params += val
            else:
                clauses.append(f"{col} = ?")
                params.append(val)
        sql = f"SELECT record FROM {table}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = self._db.execute(sql + f" ORDER BY {order}", params).fetchall()
        return [self._parse(table, r[0]) for r in rows]

    def _parse(self, table: str, text: str) -> Record:
        """A stored record; a damaged one (edited by hand, written by a broken tool) is an error that says so."""
        rtype, _ = _TABLES[table]
        try:
            return rtype.model_validate_json(text)
        except ValidationError as e:
            raise StoreError(
                f"a stored {table} record in {self.where} is damaged ({e.error_count()} invalid field(s), e.g. "
                f"{' '.join(str(e.errors()[0].get('msg', '')).split())})",
                fix="`lioneval export FILE` leaves damaged records out: export, then `lioneval import jsonl FILE` "
                    "into a new store",
            ) from e

    def runs(self, model: str | None = None) -> list[RunSpec]:
        return self._select("runs", {"model": model})  # type: ignore[return-value]

    def run(self, key: str) -> RunSpec:
        found = self._select("runs", {"key": key})
        if not found:
            found = [r for r in self.runs() if r.key.startswith(key)] if len(key) >= 4 else []
        if len(found) != 1:
            raise StoreError(
                f"no run {key!r} in {self.where}" if not found else f"run prefix {key!r} is ambiguous",
                fix="list runs with `lioneval runs` and pass a full run id",
            )
        return found[0]  # type: ignore[return-value]

    def questions(self, benchmark: str | None = None) -> list[Question]:
        return self._select("questions", {"benchmark": benchmark})  # type: ignore[return-value]

    def answers(self, benchmark: str | None = None, model: str | Sequence[str] | None = None) -> list[Answer]:
        return self._select("answers", {"benchmark": benchmark, "model": model})  # type: ignore[return-value]

    def judgments(
        self,
        benchmark: str | None = None,
        judge: str | Sequence[str] | None = None,
        model: str | Sequence[str] | None = None,
    ) -> list[Judgment]:
        where = {"benchmark": benchmark, "judge": judge, "model": model}
        return self._select("judgments", where)  # type: ignore[return-value]

    def reports(
        self, run: str | None = None, benchmark: str | None = None, model: str | None = None
    ) -> list[Report]:
        where = {"run": run, "benchmark": benchmark, "model": model}
        return self._select("reports", where, order="created_at")  # type: ignore[return-value]

    def checks(self, run: str | None = None, model: str | None = None, status: str | None = None, *,
               scope: str | None = None, judge: str | None = None, benchmark: str | None = None) -> list[CheckResult]:
        where = {"run": run, "model": model, "status": status, "scope": scope, "judge": judge, "benchmark": benchmark}
        return self._select("checks", where)  # type: ignore[return-value]

    def get(self, table: str, keys: Iterable[str]) -> list[Record]:
        """The stored records with these keys, in the order of ``keys`` (missing ones left out)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Record] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            sql = f"SELECT key, record FROM {table} WHERE key IN ({','.join('?' * len(chunk))})"
            found.update((k, self._parse(table, r)) for k, r in self._db.execute(sql, chunk))
        return [found[k] for k in keys if k in found]

    def existing(self, table: str, keys: Iterable[str], *, ok_only: bool = False) -> set[str]:
        """Which of ``keys`` are already stored (for judgments, ``ok_only`` ignores stored failures)."""
        keys = list(keys)
        found: set[str] = set()
        extra = " AND failed = 0" if ok_only and table == "judgments" else ""
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            sql = f"SELECT key FROM {table} WHERE key IN ({','.join('?' * len(chunk))}){extra}"
            found.update(r[0] for r in self._db.execute(sql, chunk))
        return found

    def distinct(self, table: str, column: str, **where: Any) -> list[Any]:
        if table not in _TABLES or column not in (*_TABLES[table][1], "key"):
            raise ValueError(f"cannot list {table}.{column}")
        clauses = [f"{column} IS NOT NULL"] + [f"{k} = ?" for k, v in where.items() if v is not None]
        params = [v for v in where.values() if v is not None]
        sql = f"SELECT DISTINCT {column} FROM {table} WHERE " + " AND ".join(clauses)
        return sorted(r[0] for r in self._db.execute(sql, params))

    def counts(self) -> dict[str, int]:
        return {t: self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in _TABLES}

    # -- interchange -----------------------------------------------------------------------------------------
    def export_jsonl(self, path: str | Path, tables: Sequence[str] | None = None) -> dict[str, Any]:
        """Write every record as ``{"table": ..., "record": {...}}`` lines; returns counts per table, plus
        ``"skipped": {table: n}`` when stored records did not validate (they are left out, never half-written).

        The file appears whole or not at all: it is written beside ``path`` under a temporary name and renamed."""
        known = [*_TABLES, "run_records"]
        tables = list(tables or known)
        unknown = set(tables) - set(known)
        if unknown:
            raise StoreError(f"unknown table(s) {sorted(unknown)}", fix=f"choose from {sorted(known)}")
        path = Path(path)
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise LionEvalError(f"cannot export to {path}: the folder {folder} does not exist",
                                fix=f"create it first (mkdir -p {folder}) or pass another path")
        if path.exists() and not os.access(path, os.W_OK):  # a rename would replace it regardless
            raise LionEvalError(f"cannot export to {path}: the file is read-only",
                                fix=f"chmod u+w {path}, or pass another path")
        counts: Counter = Counter()
        skipped: Counter = Counter()
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        except OSError as e:
            raise LionEvalError(f"cannot export to {path}: {e.strerror}",
                                fix="pass a path in a folder you can write to, on a disk with free space") from e
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for t in tables:
                    if t == "run_records":
                        rows = self._db.stream("SELECT run, tbl, key FROM run_records ORDER BY rowid")
                        recs: Iterable[dict | None] = ({"run": r, "tbl": tb, "key": k} for r, tb, k in rows)
                    else:
                        rows = self._db.stream(f"SELECT record FROM {t} ORDER BY rowid")
                        recs = (self._valid(t, rec) for (rec,) in rows)
                    for rec in recs:
                        if rec is None:
                            skipped[t] += 1
                            continue
                        fh.write(json.dumps({"table": t, "record": rec}, ensure_ascii=False) + "\n")
                        counts[t] += 1
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.errno == 28:
                raise LionEvalError(f"cannot export to {path}: the disk is full",
                                    fix="free space on that disk or export to another one") from e
            raise LionEvalError(f"cannot export to {path}: {e.strerror}", fix="pass a path you can write to") from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        out: dict[str, Any] = dict(counts)
        if skipped:
            out["skipped"] = dict(skipped)
        return out

    @staticmethod
    def _valid(table: str, text: str) -> dict | None:
        """A stored record as JSON when it still validates as its type, else None (a damaged row)."""
        try:
            obj = json.loads(text)
            _TABLES[table][0].model_validate(obj)
        except (ValueError, TypeError):  # JSONDecodeError and ValidationError are ValueErrors
            return None
        return obj if isinstance(obj, dict) else None

    def import_jsonl(self, path: str | Path) -> dict[str, Any]:
        """Read an export; bad lines are skipped and counted. Returns {"read": n, "added": {...}, "skipped": {...}}."""
        batches: dict[str, list[Record]] = {t: [] for t in _TABLES}
        links: dict[tuple[str, str], list[str]] = {}
        skipped: Counter = Counter()
        for _, line in jsonl_lines(path, "export file"):
            if line is None:
                skipped["not UTF-8 text"] += 1
                continue
            try:
                obj = json.loads(line)
                if obj["table"] == "run_records":
                    rec = obj["record"]
                    if rec["tbl"] not in LINKED or not all(isinstance(rec[k], str) for k in ("run", "key")):
                        raise TypeError("not a run link")
                    links.setdefault((rec["run"], rec["tbl"]), []).append(rec["key"])
                    continue
                rtype, _ = _TABLES[obj["table"]]
                record = rtype.model_validate(obj["record"])
                record.key  # noqa: B018 - a record whose key cannot be computed (a NaN in it) is malformed too
                batches[obj["table"]].append(record)
            except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError and ValidationError are ValueErrors
                skipped[type(e).__name__] += 1
        added = {}
        for t, recs in batches.items():
            added[t] = self._put(t, recs, conflict="REPLACE" if t in ("reports", "checks") else "IGNORE")
        added["run_records"] = sum(self.link(run, tbl, keys) for (run, tbl), keys in links.items())
        read = sum(len(recs) for recs in batches.values()) + sum(len(keys) for keys in links.values())
        return {"read": read, "added": added, "skipped": dict(skipped)}

    # -- dashboard reads ---------------------------------------------------------------------------------------
    # Column reads for views over many records (a training run leaves ~225k judgments): tuples of the few fields a
    # page needs, without validating each record; full records only for the rows a page shows. JSON fields are read
    # through the dialect (SQLite's json_extract, PostgreSQL's #>>). Read-only: none of these writes.

    def judgment_inventory(self) -> list[tuple[str, str, str, int]]:
        """(benchmark, judge, kind, judgments) per benchmark and judge, sorted; counted on the index, no record read."""
        rows = self._db.execute(
            "SELECT benchmark, judge, COUNT(*) FROM judgments GROUP BY benchmark, judge ORDER BY benchmark, judge"
        ).fetchall()
        return [(b, j, self._judge_kind(b, j) or "", n) for b, j, n in rows]

    def judge_kinds(self, benchmark: str, judges: Iterable[str] | None = None) -> dict[str, str]:
        """judge -> kind ("rating" | "pairwise") of a benchmark's judges (``judges``: only these, if stored)."""
        if judges is None:
            judges = [r[0] for r in self._db.execute("SELECT DISTINCT judge FROM judgments WHERE benchmark = ?",
                                                     (benchmark,))]
        kinds = {j: self._judge_kind(benchmark, j) for j in dict.fromkeys(judges)}
        return {j: k for j, k in kinds.items() if k is not None}

    def _judge_kind(self, benchmark: str, judge: str) -> str | None:
        row = self._db.execute("SELECT kind FROM judgments WHERE benchmark = ? AND judge = ? LIMIT 1",
                               (benchmark, judge)).fetchone()
        return row[0] if row else None

    def _game_columns(self) -> str:
        """Per game: its value, and where the judged model stood as a number (A -> 1, B -> 0, single -> NULL): a
        string per row is what makes a big fetch slow."""
        d = self._dialect
        return "".join(f", {d.json_number(('games', i, 'value'))}"
                       f", CASE {d.json_text(('games', i, 'model_position'))} WHEN 'A' THEN 1 WHEN 'B' THEN 0 END"
                       for i in range(2))

    def judgment_columns(
        self, benchmark: str, *, judges: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[tuple]:
        """The light fields of a benchmark's judgments (no texts), one tuple per judgment, in stored order:

        (rowid, question_id, model, judge, turn, failed, baseline, value, n_games, g1_value, g1_a, g2_value, g2_a)

        ``turn``, ``baseline`` and ``value`` are None where the judgment has none; ``g<i>_value`` / ``g<i>_a`` are
        the first two games' values and positions (1 when the judged model was shown as A, 0 as B, None for a
        single rating or a missing game). ``rowid`` fetches the full record again with :meth:`judgments_at`.
        """
        d = self._dialect
        if self.readonly and d is SQLITE:
            # reading through a memory map skips a copy per page: a third off the time of a big fetch
            self._db.execute("PRAGMA mmap_size=1073741824")
        sql = (f"SELECT rowid, question_id, model, judge, turn, failed, {d.json_text(('baseline',))},"
               f" {d.json_number(('value',))}, {d.json_length(('games',))}" + self._game_columns()
               + f" FROM judgments{d.json_source} WHERE benchmark = ?")
        params: list[Any] = [benchmark]
        for col, values in (("judge", judges), ("model", models)):
            if values is not None:
                values = list(values)
                sql += f" AND {col} IN ({','.join('?' * len(values))})" if values else " AND 0 = 1"
                params += values
        return self._db.execute(sql + " ORDER BY rowid", params).fetchall()

    def _by_chunks(self, table: str, column: str, values: Iterable[Any], extra: str = "",
                   params: Sequence[Any] = ()) -> list[Record]:
        """Records whose ``column`` is one of ``values`` (chunked under SQLite's variable limit), in stored order
        within each chunk; ``extra`` adds conditions with their ``params``."""
        rtype, _ = _TABLES[table]
        values = sorted(set(values))
        out: list[Record] = []
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            sql = (f"SELECT record FROM {table} WHERE {column} IN ({','.join('?' * len(chunk))}){extra}"
                   " ORDER BY rowid")
            out += [rtype.model_validate_json(r[0]) for r in self._db.execute(sql, [*chunk, *params])]
        return out

    def judgments_at(self, rowids: Iterable[int]) -> list[Judgment]:
        """The judgments at these row ids (from :meth:`judgment_columns`), in stored order."""
        return self._by_chunks("judgments", "rowid", (int(r) for r in rowids))  # type: ignore[return-value]

    def find_questions(self, benchmark: str, ids: Iterable[str]) -> list[Question]:
        """The questions of ``benchmark`` with these ids."""
        return self._by_chunks("questions", "id", ids, " AND benchmark = ?", [benchmark])  # type: ignore[return-value]

    def find_answers(
        self, question_ids: Iterable[str], models: Iterable[str] | None = None, *, benchmark: str | None = None
    ) -> list[Answer]:
        """The answers to these questions (of these models, of this benchmark), in stored order per question: when a
        (question, model) was answered twice, the later answer comes last."""
        extra, params = "", []
        if models is not None:
            models = sorted(set(models))
            extra += f" AND model IN ({','.join('?' * len(models))})" if models else " AND 0 = 1"
            params += models
        if benchmark is not None:
            extra += " AND benchmark = ?"
            params.append(benchmark)
        return self._by_chunks("answers", "question_id", question_ids, extra, params)  # type: ignore[return-value]

    def stamped(self, table: str, **where: Any) -> list[tuple[str, float, Record]]:
        """(key, created_at, record) of a table's records, oldest write first (a replaced report or check counts
        from its last write; ties in stored order). ``where`` filters on the table's indexed columns, each with
        one value or a list of them (None: no filter)."""
        if table not in _HAS_CREATED:
            raise ValueError(f"{table} records carry no write time; stamped() reads {sorted(_HAS_CREATED)}")
        rtype = _TABLES[table][0]
        clause, params = self._filter(table, where)
        sql = f"SELECT key, created_at, record FROM {table}" + clause
        rows = self._db.execute(sql + " ORDER BY created_at, rowid", params).fetchall()
        return [(k, t, rtype.model_validate_json(r)) for k, t, r in rows]

    def content_stamp(self, tables: Sequence[str] | None = None, benchmark: str | None = None) -> tuple:
        """A cheap stamp of what the tables hold: (table, records, highest rowid, latest write) per table, for
        ``benchmark`` only where the table has that column. It changes when a record is added or replaced, so a
        reader can key cached computations by it (a progress update of a running job leaves it as it was)."""
        out = []
        for table in tables or sorted(_TABLES):
            if table not in _TABLES:
                raise ValueError(f"no table {table!r}")
            created = "MAX(created_at)" if table in _HAS_CREATED else "NULL"
            sql = f"SELECT COUNT(*), MAX(rowid), {created} FROM {table}"
            params: list[Any] = []
            if benchmark is not None and "benchmark" in _TABLES[table][1]:
                sql += " WHERE benchmark = ?"
                params.append(benchmark)
            out.append((table, *self._db.execute(sql, params).fetchone()))
        return tuple(out)

    def record_dicts(self, table: str, **where: Any) -> Iterator[dict[str, Any]]:
        """A table's records as parsed JSON objects, in stored order, one at a time: for reads over many records that
        use a few fields of each (a leaderboard over 100k judgments and their answers' lengths). They are not
        validated again as their type (each was validated when stored): the caller checks the fields it reads.
        ``where`` filters on the table's indexed columns, each with one value or a list of them (None: no filter)."""
        clause, params = self._filter(table, where)
        for (text,) in self._db.execute(f"SELECT record FROM {table}{clause} ORDER BY rowid", params):
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                raise StoreError(f"a stored {table} record in {self.where} is damaged (not a JSON object)",
                                 fix="`lioneval export FILE` leaves damaged records out: export, then `lioneval "
                                     "import jsonl FILE` into a new store")
            yield obj

    def record_fields(self, table: str, columns: Sequence[str], fields: Sequence[tuple[str, Sequence[str | int]]],
                      **where: Any) -> list[tuple]:
        """Per record, in stored order: its indexed ``columns``, then one value per JSON field of ``fields``, read by
        the database (no record is parsed here: the fastest read of a few fields of many records). Each field is
        (how, path), a path a sequence of keys and list indexes: "text" (a string; a number may come back as a number
        or as its text, depending on the database), "number", "length" (of a list) or "chars" (characters of a
        string); None where the record has no such value. ``where`` filters as in :meth:`record_dicts`."""
        cols = _TABLES[table][1] if table in _TABLES else ()
        unknown = [c for c in columns if c not in (*cols, "key")]
        if table not in _TABLES or unknown:
            raise ValueError(f"cannot read {table}.{unknown[0] if unknown else ''}")
        d = self._dialect
        read = {"text": d.json_text, "number": d.json_number, "length": d.json_length,
                "chars": lambda path: f"length({d.json_text(path)})"}
        exprs = [*columns, *(read[how](path) for how, path in fields)]
        clause, params = self._filter(table, where)
        sql = f"SELECT {', '.join(exprs)} FROM {table}{d.json_source}{clause} ORDER BY rowid"
        try:
            return self._db.execute(sql, params).fetchall()
        except StoreError:
            raise
        except Exception:
            # A record the database cannot parse as JSON: record_dicts names it (else the error is another one)
            for _ in self.record_dicts(table, **where):
                pass
            raise

    @staticmethod
    def _filter(table: str, where: dict[str, Any]) -> tuple[str, list[Any]]:
        """A WHERE clause on the table's indexed columns, each with one value or a list of them (None: no filter)."""
        if table not in _TABLES:
            raise ValueError(f"no table {table!r}")
        cols = _TABLES[table][1]
        clauses, params = [], []
        for col, val in where.items():
            if col not in cols:
                raise ValueError(f"cannot filter {table} on {col!r}")
            if val is None:
                continue
            if isinstance(val, (list, tuple, set, frozenset)):
                val = sorted(set(val))
                clauses.append(f"{col} IN ({','.join('?' * len(val))})" if val else "0 = 1")
                params += val
            else:
                clauses.append(f"{col} = ?")
                params.append(val)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def judge_usage(self, benchmark: str) -> list[tuple[str, int, int, Any, Any, Any]]:
        """(judge, judgments, judgments that recorded their usage, prompt tokens, completion tokens, calls) per judge
        of a benchmark, summed from each judgment's ``meta["usage"]``; sorted by judge."""
        d = self._dialect
        usage = {k: d.json_number(("meta", "usage", k)) for k in ("prompt_tokens", "completion_tokens", "calls")}
        sql = (f"SELECT judge, COUNT(*), COUNT({usage['prompt_tokens']}), SUM({usage['prompt_tokens']}),"
               f" SUM({usage['completion_tokens']}), SUM({usage['calls']}) FROM judgments{d.json_source}"
               " WHERE benchmark = ? GROUP BY judge ORDER BY judge")
        return self._db.execute(sql, (benchmark,)).fetchall()
