"""An example third-party Store plugin: every object's ciphertext in ONE SQLite file.

It is deliberately unlike ``local``/``mirror`` (no directories, no sidecar files, no flock): a
vendor's store built only on the public pieces -- :class:`surgbox.interfaces.Store`, the
streaming format of :mod:`surgbox.crypto` and :func:`surgbox.crypto.salvage.salvage` -- that
passes :mod:`surgbox.testing.store_conformance` and works with ``surgbox store`` through the
plugin registry. Layout of ``ROOT/objects.sqlite3`` (WAL mode):

* ``writes(id, key, key_id, segment_size, metadata, started_ns, pid, committed)``: one row per
  write; ``pid`` tells a live writer (process alive) from a crashed one;
* ``chunks(write_id, n, data)``: the ciphertext as the encrypter emitted it (header, then one row
  per segment), each row committed at once, so a killed writer leaves every complete segment;
* ``objects(key, write_id, key_id, segment_size, plaintext_size, ciphertext_size, sha256,
  created_ns, metadata, recovered)``: the committed objects; a write is committed by one
  transaction that inserts this row.

Limits of an example: liveness by pid (a reused pid looks alive), one file (no mirror).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from surgbox import hookimpl
from surgbox.crypto.format import DEFAULT_SEGMENT_SIZE, StreamFormat
from surgbox.crypto.keys import KeyRing
from surgbox.crypto.reader import DecryptingReader
from surgbox.crypto.salvage import salvage
from surgbox.crypto.writer import EncryptingWriter
from surgbox.errors import ConfigError, IntegrityError, StoreError
from surgbox.interfaces import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS writes(id TEXT PRIMARY KEY, key TEXT NOT NULL, key_id TEXT, segment_size INTEGER,
    metadata TEXT, started_ns INTEGER, pid INTEGER, committed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS chunks(write_id TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(write_id, n));
CREATE TABLE IF NOT EXISTS objects(key TEXT PRIMARY KEY, write_id TEXT NOT NULL, key_id TEXT, segment_size INTEGER,
    plaintext_size INTEGER, ciphertext_size INTEGER, sha256 TEXT, created_ns INTEGER, metadata TEXT, recovered INTEGER);
"""


def _check_key(key: Any) -> str:
    if (not isinstance(key, str) or not key or key.startswith("/") or len(key.encode("utf-8", "replace")) > 1024
            or any(p in ("", ".", "..") for p in key.split("/")) or any(ord(c) < 32 or ord(c) == 127 for c in key)):
        raise StoreError(f"example-sqlite: key {key[:40]!r} is not a relative path of printable text (<= 1024 bytes)")
    return key


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _aad(key: str) -> bytes:
    return b"example-sqlite/v1:" + key.encode("utf-8")


@attrs.frozen
class Info:
    """What :meth:`ExampleSqliteStore.info` returns (the :class:`~surgbox.interfaces.DescribedStore` record)."""

    key: str
    key_id: str
    segment_size: int
    plaintext_size: int
    ciphertext_size: int
    sha256: str
    created_ns: int
    metadata: Mapping[str, str]
    recovered: bool


@attrs.frozen
class Result:
    key: str
    plaintext_size: int
    segments: int
    complete: bool
    action: str
    error: str = ""


@attrs.frozen
class Report:
    objects: int
    problems: tuple[Any, ...] = ()
    lost: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "ok": self.ok, "lost": list(self.lost),
                "problems": [attrs.asdict(p) for p in self.problems]}


@attrs.frozen
class Problem:
    key: str
    root: str
    kind: str
    detail: str
    repaired: bool = False


class _Chunks:
    """The encrypter's sink: each write is one committed row (and is hashed)."""

    def __init__(self, db: sqlite3.Connection, write_id: str):
        self.db, self.write_id, self.n, self.size, self.sha = db, write_id, 0, 0, hashlib.sha256()

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.db.execute("INSERT INTO chunks(write_id, n, data) VALUES (?, ?, ?)", (self.write_id, self.n, b))
        self.n, self.size = self.n + 1, self.size + len(b)
        self.sha.update(b)
        return len(b)


class _Writer(io.RawIOBase):
    def __init__(self, store: ExampleSqliteStore, key: str, write_id: str, enc: EncryptingWriter, sink: _Chunks,
                 meta: dict[str, str], segment_size: int, recovered: bool):
        super().__init__()
        self.store, self.key, self.write_id, self.enc, self.sink = store, key, write_id, enc, sink
        self.meta, self.segment_size, self.recovered = meta, segment_size, recovered

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.enc.write(data)

    def sync(self) -> None:
        """Every emitted segment is already a committed row."""

    @property
    def plaintext_size(self) -> int:
        return self.enc.plaintext_size

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.enc.close()
            db = self.store.db
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE writes SET committed = 1 WHERE id = ?", (self.write_id,))
                db.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (self.key, self.write_id, self.store.keyring.primary.key_id, self.segment_size,
                            self.enc.plaintext_size, self.sink.size, self.sink.sha.hexdigest(), time.time_ns(),
                            json.dumps(self.meta), int(self.recovered)))
        except sqlite3.IntegrityError:
            self.abort()
            raise StoreError(f"example-sqlite: object {self.key!r} already exists") from None
        finally:
            super().close()

    def abort(self) -> None:
        if not self.enc.closed:
            self.enc.abort()
        self.store._drop_write(self.write_id)
        super().close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:  # a writer dropped without close() is discarded, never committed
        if not self.closed:
            self.abort()


@attrs.define(eq=False)
class ExampleSqliteStore(Store):
    """Encrypted objects in ``root/objects.sqlite3``. Options: ``root`` (a folder), ``keyring``,
    ``init`` (create the file), ``segment_size``."""

    root: Path = attrs.field(converter=Path)
    keyring: KeyRing | None = None
    init: bool = False
    segment_size: int = DEFAULT_SEGMENT_SIZE
    _db: sqlite3.Connection | None = attrs.field(init=False, default=None)

    @property
    def path(self) -> Path:
        return self.root / "objects.sqlite3"

    def open(self) -> None:
        if self._db is not None:
            return
        if not self.path.exists() and not self.init:
            raise StoreError(f"example-sqlite: {self.path} does not exist; create it with init=True")
        self.root.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("example-sqlite: the store is not open")
        return self._db

    def _drop_write(self, write_id: str) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM chunks WHERE write_id = ?", (write_id,))
            self.db.execute("DELETE FROM writes WHERE id = ?", (write_id,))

    # ---- the Store contract ---------------------------------------------------------------
    def writer(self, key: str, metadata: Mapping[str, str] | None = None, *, segment_size: int | None = None,
               recovered: bool = False) -> _Writer:
        key = _check_key(key)
        if self.keyring is None:
            raise ConfigError("example-sqlite: no keyring given")
        seg = StreamFormat(segment_size or self.segment_size).segment_size
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        wid = uuid.uuid4().hex
        db = self.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            if self._has(key):
                raise StoreError(f"example-sqlite: object {key!r} already exists; delete it first")
            busy = [pid for (pid,) in db.execute("SELECT pid FROM writes WHERE key = ? AND committed = 0", (key,))
                    if _alive(pid)]
            if busy:
                raise StoreError(f"example-sqlite: object {key!r} is being written by process {busy[0]}")
            db.execute("INSERT INTO writes VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                       (wid, key, self.keyring.primary.key_id, seg, json.dumps(meta), time.time_ns(), os.getpid()))
        sink = _Chunks(db, wid)
        enc = EncryptingWriter.open(sink, self.keyring.primary.material, _aad(key), segment_size=seg)
        return _Writer(self, key, wid, enc, sink, meta, seg, recovered)

    def _ciphertext(self, write_id: str) -> bytes:
        return b"".join(d for (d,) in self.db.execute("SELECT data FROM chunks WHERE write_id = ? ORDER BY n", (write_id,)))

    def reader(self, key: str) -> DecryptingReader:
        m = self._info(key)
        if self.keyring is None:
            raise ConfigError("example-sqlite: no keyring given")
        wid = self.db.execute("SELECT write_id FROM objects WHERE key = ?", (key,)).fetchone()[0]
        try:
            master = self.keyring.get(m.key_id, f"object {key!r}")
        except Exception as exc:
            raise IntegrityError(str(exc)) from None
        return DecryptingReader.open(io.BytesIO(self._ciphertext(wid)), master.material, _aad(key),
                                     segment_size=m.segment_size, name=key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        rows = self.db.execute("SELECT key FROM objects ORDER BY key")
        return iter([k for (k,) in rows if k.startswith(prefix)])

    def delete(self, key: str) -> None:
        key = _check_key(key)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT write_id FROM objects WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise StoreError(f"example-sqlite: no object {key!r} to delete")
            self.db.execute("DELETE FROM objects WHERE key = ?", (key,))
            self.db.execute("DELETE FROM chunks WHERE write_id = ?", (row[0],))
            self.db.execute("DELETE FROM writes WHERE id = ?", (row[0],))

    def status(self) -> dict[str, Any]:
        n = self.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        return {"healthy": True, "degraded": False, "store_id": str(self.path),
                "roots": [{"path": str(self.path), "state": "ok", "error": None, "objects": n}]}

    # ---- capabilities: info, recovery, scrub ----------------------------------------------
    def _has(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM objects WHERE key = ?", (_check_key(key),)).fetchone() is not None

    def exists(self, key: str) -> bool:
        return self._has(key)

    def info(self, key: str) -> Info:
        return self._info(key)

    def _info(self, key: str) -> Info:
        row = self.db.execute("SELECT key_id, segment_size, plaintext_size, ciphertext_size, sha256, created_ns, "
                              "metadata, recovered FROM objects WHERE key = ?", (_check_key(key),)).fetchone()
        if row is None:
            raise StoreError(f"example-sqlite: no object {key!r}")
        return Info(key, row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), bool(row[7]))

    def partials(self, *, live: bool = False) -> list[dict[str, Any]]:
        out = []
        for wid, key, pid in self.db.execute("SELECT id, key, pid FROM writes WHERE committed = 0"):
            running = _alive(pid)
            if running and not live:
                continue
            size = self.db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM chunks WHERE write_id = ?", (wid,)).fetchone()[0]
            out.append({"root": str(self.path), "id": wid, "key": key, "bytes": size, "live": running})
        return out

    def recover(self) -> list[Result]:
        results = []
        for p in self.partials():
            wid, key = p["id"], p["key"]
            key_id, seg, meta = self.db.execute("SELECT key_id, segment_size, metadata FROM writes WHERE id = ?",
                                                (wid,)).fetchone()
            try:
                master = (self.keyring or KeyRing(())).get(key_id, f"unfinished write of {key!r}")
            except Exception as exc:
                results.append(Result(key, 0, 0, False, "no-key", str(exc)))
                continue
            data = self._ciphertext(wid)
            res = salvage(io.BytesIO(data), master.material, _aad(key), segment_size=seg)
            if res.segments == 0:
                self._drop_write(wid)
                results.append(Result(key, 0, 0, False, "discarded"))
                continue
            target, n = key, 1
            while self._has(target):  # the name was taken meanwhile: keep this one under another
                target, n = f"{key}.recovered-{n}", n + 1
            with self.writer(target, {**json.loads(meta), "recovered": "prefix"}, segment_size=seg,
                             recovered=not res.complete) as w:
                salvage(io.BytesIO(data), master.material, _aad(key), w.write, segment_size=seg)
            self._drop_write(wid)
            results.append(Result(target, res.plaintext_size, res.segments, res.complete, "recovered"))
        return results

    def verify(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> Report:
        todo = list(keys) if keys else list(self.keys())
        problems: list[Problem] = []
        for key in todo:
            m = self._info(key)
            wid = self.db.execute("SELECT write_id FROM objects WHERE key = ?", (key,)).fetchone()[0]
            data = self._ciphertext(wid)
            if hashlib.sha256(data).hexdigest() != m.sha256:
                problems.append(Problem(key, str(self.path), "checksum", "SHA-256 differs"))
            elif decrypt:
                try:
                    with self.reader(key) as r:
                        for _ in r.iter_segments():
                            pass
                except IntegrityError as exc:
                    problems.append(Problem(key, str(self.path), "auth", str(exc)))
        return Report(len(todo), tuple(problems), tuple(p.key for p in problems))

    def scrub(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> Report:
        """One file, one copy: nothing to repair from; the same report as :meth:`verify`."""
        return self.verify(keys, decrypt=decrypt)


class MinimalStore(ExampleSqliteStore):
    """The same store without any optional capability's methods (for the capability checks)."""

    exists = info = partials = recover = verify = scrub = None  # type: ignore[assignment]


@hookimpl
def register_stores(register: Any) -> None:
    register("example-sqlite", ExampleSqliteStore, description="example third-party store: one SQLite file")
    register("example-minimal", MinimalStore, description="a store with no optional capability")
