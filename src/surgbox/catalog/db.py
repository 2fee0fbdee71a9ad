"""The catalog's SQLite database: connection settings, versioned migrations, transactions.

Crash safety: the database runs in WAL mode with ``synchronous=FULL`` (every commit is fsynced
to the WAL before ``COMMIT`` returns, so a committed change survives a power loss as well as a
``kill -9``; NORMAL would only survive process death and could lose the last commits of the
audit trail or a key destruction on power loss), ``foreign_keys=ON``, ``secure_delete=ON``
(deleted rows are overwritten with zeros, so a destroyed event key does not linger in free
pages), and ``temp_store=MEMORY`` (no temporary files outside the database). Every change
runs in one ``BEGIN IMMEDIATE`` transaction that either commits whole or not at all.

Schema versions are recorded in the ``schema_migrations`` table; :data:`MIGRATIONS` lists them
in order and :meth:`Database.open` applies the missing ones, each in its own transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from .._fs import fsync_dir
from .errors import CatalogError

log = logging.getLogger(__name__)


@attrs.frozen
class Migration:
    """One schema step: ``version`` (1, 2, ...), a short ``name`` and its SQL ``statements``."""

    version: int
    name: str
    statements: tuple[str, ...]


_V1 = (
    """CREATE TABLE meta(
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE users(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'surgeon', 'operator', 'viewer', 'auditor')),
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
        failed_logins INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
        locked_until TEXT,
        physician_enc BLOB,
        physician_hash BLOB,
        created_at TEXT NOT NULL,
        last_login TEXT
    )""",
    """CREATE TABLE events(
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('created', 'recording', 'stopped')),
        created_at TEXT NOT NULL,
        created_by INTEGER REFERENCES users(id),
        started_at TEXT,
        finished_at TEXT,
        place TEXT NOT NULL DEFAULT '',
        procedure TEXT NOT NULL DEFAULT '',
        patient_enc BLOB NOT NULL,
        patient_hash BLOB NOT NULL,
        mrn_enc BLOB NOT NULL,
        mrn_hash BLOB NOT NULL,
        notes_enc BLOB,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX events_created_at ON events(created_at)",
    "CREATE INDEX events_started_at ON events(started_at)",
    "CREATE INDEX events_patient_hash ON events(patient_hash)",
    "CREATE INDEX events_mrn_hash ON events(mrn_hash)",
    """CREATE TABLE event_physicians(
        event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        position INTEGER NOT NULL CHECK (position >= 0),
        name_enc BLOB NOT NULL,
        name_hash BLOB NOT NULL,
        PRIMARY KEY (event_id, position)
    ) WITHOUT ROWID""",
    "CREATE INDEX event_physicians_hash ON event_physicians(name_hash)",
    """CREATE TABLE event_tokens(
        token BLOB NOT NULL,
        field TEXT NOT NULL,
        event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        PRIMARY KEY (token, field, event_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX event_tokens_event ON event_tokens(event_id)",
    """CREATE TABLE event_keys(
        event_id TEXT PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
        key_id TEXT NOT NULL,
        wrapped BLOB NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE files(
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('segment', 'snapshot', 'data', 'report', 'deid')),
        name TEXT NOT NULL,
        store_key TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL CHECK (size >= 0),
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        key_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (event_id, name)
    )""",
    "CREATE INDEX files_event ON files(event_id)",
    """CREATE TABLE audit(
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        result TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        mac BLOB NOT NULL
    )""",
    # Guards against accidental edits; deliberate tampering (dropping these) is caught by verify().
    """CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
    """CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
)

# File names hold whatever a user typed (a patient's name, too): from version 2 they are stored
# encrypted (``name_enc``, see :mod:`.phi`), and objects get generated store keys. Rows of version 1
# keep their name in ``legacy_name`` until the catalog, which has the key, encrypts it on open.
_V2 = (
    """CREATE TABLE files_v2(
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('segment', 'snapshot', 'data', 'report', 'deid')),
        name_enc BLOB,
        legacy_name TEXT,
        store_key TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL CHECK (size >= 0),
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        key_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        CHECK (name_enc IS NOT NULL OR legacy_name IS NOT NULL)
    )""",
    "INSERT INTO files_v2(id, event_id, kind, legacy_name, store_key, size, sha256, key_id, created_at)"
    " SELECT id, event_id, kind, name, store_key, size, sha256, key_id, created_at FROM files",
    "DROP TABLE files",
    "ALTER TABLE files_v2 RENAME TO files",
    "CREATE INDEX files_event ON files(event_id)",
    "ALTER TABLE events ADD COLUMN report_error TEXT",
)

# Upload (src/surgbox/upload/, docs/upload.md): remotes with their password encrypted like PHI
# (``password_enc``, context ``remotes.password:<name>``), the persistent job queue and, per job,
# every remote file with its size, SHA-256 and (Nextcloud) chunked-upload id, for resuming;
# ``deidentified`` jobs send decrypted de-identified copies for sharing instead of ciphertext.
_V3 = (
    """CREATE TABLE remotes(
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('webdav', 'nextcloud')),
        url TEXT NOT NULL,
        username TEXT NOT NULL,
        password_enc BLOB NOT NULL,
        ca_file TEXT,
        insecure INTEGER NOT NULL DEFAULT 0 CHECK (insecure IN (0, 1)),
        bandwidth REAL CHECK (bandwidth IS NULL OR bandwidth > 0),
        chunk_size INTEGER NOT NULL CHECK (chunk_size > 0),
        created_at TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE upload_jobs(
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        remote TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'done', 'cancelled')),
        deidentified INTEGER NOT NULL DEFAULT 0 CHECK (deidentified IN (0, 1)),
        created_at TEXT NOT NULL,
        created_by INTEGER REFERENCES users(id),
        updated_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_try_at TEXT,
        last_error TEXT,
        finished_at TEXT
    )""",
    "CREATE INDEX upload_jobs_event ON upload_jobs(event_id)",
    "CREATE INDEX upload_jobs_status ON upload_jobs(status)",
    """CREATE TABLE upload_files(
        job_id INTEGER NOT NULL REFERENCES upload_jobs(id) ON DELETE CASCADE,
        remote_path TEXT NOT NULL,
        part TEXT NOT NULL CHECK (part IN ('object', 'sidecar', 'manifest', 'deidentified')),
        store_key TEXT,
        size INTEGER NOT NULL CHECK (size >= 0),
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        transfer_id TEXT,
        uploaded_at TEXT,
        PRIMARY KEY (job_id, remote_path)
    ) WITHOUT ROWID""",
)

# surgbox deid-batch: the state of each task (one segment of one recording) of a batch, so a
# rerun resumes and `surgbox deid-batch --status` can tell what happened (no PHI: ids only).
_V4_DEID_TASKS = (
    """CREATE TABLE deid_tasks(
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        source_file_id INTEGER NOT NULL,
        segment INTEGER NOT NULL CHECK (segment >= 0),
        frames INTEGER NOT NULL CHECK (frames >= 0),
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        seconds REAL,
        result_file_id INTEGER,
        updated_at TEXT NOT NULL,
        UNIQUE (batch_id, source_file_id, segment))""",
    "CREATE INDEX deid_tasks_source ON deid_tasks(source_file_id)",
)

# Raw copies of live-hidden sources (file kind raw, read with view_raw): version 2's files table, rebuilt with the kind.
_V5_RAW_FILES = (
    _V2[0].replace("files_v2", "files_v5").replace("'deid')", "'deid', 'raw')"),
    "INSERT INTO files_v5 SELECT id, event_id, kind, name_enc, legacy_name, store_key, size, sha256, key_id, created_at FROM files",
    "DROP TABLE files", "ALTER TABLE files_v5 RENAME TO files", "CREATE INDEX files_event ON files(event_id)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, files, users, audit", _V1),
    Migration(2, "encrypted file names, report errors", _V2),
    Migration(3, "upload remotes, jobs and uploaded files", _V3),
    Migration(4, "deid-batch task state", _V4_DEID_TASKS),
    Migration(5, "raw copies of sources hidden live (file kind raw)", _V5_RAW_FILES),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def utcnow() -> datetime:
    """The current UTC time (aware)."""
    return datetime.now(timezone.utc)


def to_text(when: datetime | None) -> str | None:
    """Store a time as ISO-8601 UTC with microseconds (sorts as text)."""
    if when is None:
        return None
    if when.tzinfo is None:
        raise ValueError(f"time {when!r} has no time zone; pass an aware datetime (UTC)")
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")


def from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def database_error(path: Path, exc: sqlite3.Error) -> CatalogError | None:
    """The one-line :class:`CatalogError` for an SQLite failure that is about the file or its disk
    (full, damaged, unreadable, read-only, locked), or ``None`` for other errors (constraints, SQL)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or "database or disk is full" in str(exc) or (
            name.startswith("SQLITE_IOERR") and _nearly_full(path)):
        return CatalogError(f"the disk holding the catalog {path} is full; free space on it and retry "
                            f"(the change was not made)")
    if name.startswith(_DAMAGED) or "malformed" in str(exc) or "not a database" in str(exc):
        return CatalogError(f"catalog database {path} is damaged ({exc}); restore it from a backup together "
                            f"with keys/audit-anchor, or check the disk")
    if name.startswith("SQLITE_IOERR"):
        return CatalogError(f"cannot read or write the catalog {path} ({exc}); check the disk (dmesg) and free space")
    if name.startswith("SQLITE_READONLY"):
        return CatalogError(f"catalog {path} is read-only ({exc}); make SURGBOX_HOME writable for this user")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return CatalogError(f"catalog {path} is locked by another process ({exc}); retry")
    if name.startswith("SQLITE_CANTOPEN"):
        return CatalogError(f"cannot open the catalog {path} ({exc}); check that the folder exists and is writable")
    return None


def _nearly_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no space left: what an SQLite I/O
    error on a write usually means (a full disk can fail the WAL index as an I/O error)."""
    try:
        return shutil.disk_usage(path.parent).free < (1 << 20)
    except OSError:
        return False


def _create_private(path: Path) -> None:
    """Create an empty database file with mode 0600 (SQLite gives -wal/-shm the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@attrs.define(eq=False)
class Database:
    """One SQLite catalog file. ``open()`` connects and migrates; ``close()`` checkpoints and closes.

    The connection is shared by the threads of one process under a lock (the recorder may call
    the event manager from its own thread); other processes coordinate through SQLite's locks
    (``busy_timeout_ms``).
    """

    path: Path = attrs.field(converter=Path)
    busy_timeout_ms: int = 10_000
    #: held from ``BEGIN`` until the after-commit hooks ran (the catalog's cross-process writer lock)
    writer_lock: Callable[[], AbstractContextManager[Any]] | None = None
    _conn: sqlite3.Connection | None = attrs.field(default=None, init=False)
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _after_commit: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    _after_rollback: list[Callable[[], None]] = attrs.field(factory=list, init=False)

    def after_commit(self, hook: Callable[[], None], rollback: Callable[[], None] | None = None) -> None:
        """Run ``hook()`` after every committed transaction, still inside :attr:`writer_lock`
        (and ``rollback()``, if given, after every transaction that rolled back)."""
        self._after_commit.append(hook)
        if rollback is not None:
            self._after_rollback.append(rollback)

    def _mapped(self, exc: sqlite3.Error) -> BaseException:
        return database_error(self.path, exc) or exc

    def _writers(self) -> AbstractContextManager[Any]:
        return self.writer_lock() if self.writer_lock is not None else contextlib.nullcontext()

    def open(self, *, create: bool = False) -> Database:
        if self._conn is not None:
            return self
        if not self.path.exists():
            if not create:
                raise CatalogError(f"catalog database {self.path} does not exist; run `surgbox init` first")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            fsync_dir(self.path.parent)  # the new file's name is on disk before anything is committed
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CatalogError(f"catalog {self.path}: cannot switch to WAL mode (got {mode}); "
                                   f"put SURGBOX_HOME on a local file system")
            for pragma in ("synchronous=FULL", "foreign_keys=ON", "secure_delete=ON", "temp_store=MEMORY",
                           f"busy_timeout={int(self.busy_timeout_ms)}"):
                conn.execute(f"PRAGMA {pragma}")
        except sqlite3.DatabaseError as exc:
            raise database_error(self.path, exc) or CatalogError(
                f"cannot open catalog database {self.path}: {exc}; check the file "
                f"(restore it from a backup if it is damaged)") from exc
        self._conn = conn
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:  # another process holds it; the WAL stays valid
                pass
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Database:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CatalogError(f"catalog database {self.path} is not open; call open() first")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``with db.transaction() as c:`` runs the block in ``BEGIN IMMEDIATE`` … ``COMMIT``
        (``ROLLBACK`` on any exception). Not re-entrant."""
        with self._lock:
            conn = self.conn
            if conn.in_transaction:
                raise CatalogError("nested catalog transaction; finish the current one first")
            with self._writers():
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise database_error(self.path, exc) or CatalogError(
                        f"catalog {self.path} is locked by another process ({exc}); retry") from exc
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException as exc:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    for hook in self._after_rollback:
                        hook()
                    if isinstance(exc, sqlite3.Error) and (mapped := database_error(self.path, exc)) is not None:
                        raise mapped from exc
                    raise
                for hook in self._after_commit:
                    hook()

    @contextmanager
    def snapshot(self, started: Callable[[sqlite3.Connection], Any] | None = None) -> Iterator[sqlite3.Connection]:
        """``with db.snapshot() as c:`` a separate read-only connection inside one read
        transaction: every query in the block sees the same committed state (WAL gives the
        reader one snapshot), while other connections and processes keep writing. Does not take
        this object's lock, so long reads (``AuditLog.verify``) do not stall the writers.
        ``started(conn)`` runs right after the snapshot is taken, inside :attr:`writer_lock`, so
        what it reads beside the database (the audit anchor) belongs to the same moment."""
        if self._conn is None:
            raise CatalogError(f"catalog database {self.path} is not open; call open() first")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_ms / 1000)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            with self._writers():
                conn.execute("BEGIN")  # deferred: the snapshot is taken at the first read below
                conn.execute("SELECT count(*) FROM meta").fetchone()
                if started is not None:
                    started(conn)
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._mapped(exc) from exc
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only statement and return all rows."""
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._mapped(exc) from exc

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise self._mapped(exc) from exc

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (used after deletions so that
        destroyed keys leave the WAL too)."""
        with self._lock:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                log.warning("catalog %s: WAL checkpoint blocked by a reader; it completes on a later checkpoint", self.path)

    def schema_version(self) -> int:
        row = self.query_one("SELECT max(version) FROM schema_migrations")
        return int(row[0] or 0)

    def check(self) -> list[str]:
        """Problems found by ``PRAGMA integrity_check`` and ``foreign_key_check`` (empty: healthy)."""
        problems = [r[0] for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key violation: {tuple(r)}" for r in self.query("PRAGMA foreign_key_check")]
        return problems

    def _migrate(self) -> None:
        with self.transaction() as c:
            c.execute("""CREATE TABLE IF NOT EXISTS schema_migrations(
                             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)""")
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise CatalogError(f"catalog {self.path} has schema version {current}, newer than this surgbox "
                               f"understands ({SCHEMA_VERSION}); upgrade surgbox")
        for m in MIGRATIONS:
            if m.version <= current:
                continue
            with self.transaction() as c:
                for stmt in m.statements:
                    c.execute(stmt)
                c.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                          (m.version, m.name, to_text(utcnow())))
            log.info("catalog %s: applied migration %d (%s)", self.path, m.version, m.name)
