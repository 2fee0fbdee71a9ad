"""Encrypted object store over one or more root directories (the engine of ``local`` and ``mirror``).

On-disk layout of each root (see docs/storage.md)::

    ROOT/surgbox-store.json     marker: {"format": "surgbox-store", "version": 1, "store_id": UUID}
    ROOT/objects/KEY            ciphertext (Tink AES256-GCM-HKDF stream, AAD = b"surgbox-store/v1:" + KEY)
    ROOT/meta/KEY.json          sidecar: key id, sizes, SHA-256 of the ciphertext; present <=> committed
    ROOT/tmp/ID.json            an open (or crashed) write: target key, key id; flock-ed while live
    ROOT/tmp/ID.part            its ciphertext so far (every complete segment; see ``recover``)

Every byte is encrypted once and written to every healthy root, so all copies are identical.
Commit per root: fsync the data, rename it into ``objects/``, fsync the directory, then write the
sidecar the same way (temp + fsync + rename + directory fsync). An object is listed only when its
sidecar exists, so a crash at any point never shows a half-written object.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from surgbox._fs import fsync_dir
from surgbox.crypto.keys import KeyRing, MasterKey, WrongKeyError, load_keyring
from surgbox.crypto.streaming import (
    DEFAULT_SEGMENT_SIZE,
    DecryptingReader,
    DecryptionError,
    EncryptingWriter,
    StreamFormat,
    _FdSource,
    salvage,
)
from surgbox.errors import ConfigError, IntegrityError, StoreError
from surgbox.interfaces import Store

logger = logging.getLogger(__name__)

MARKER = "surgbox-store.json"
FORMAT = "surgbox-store"
VERSION = 1
AAD_PREFIX = b"surgbox-store/v1:"
TOMBSTONE = "surgbox-tombstone"
_COPY_CHUNK = 1 << 20


class ObjectNotFoundError(StoreError, LookupError):
    """No committed object has that key."""


def validate_key(key: str) -> str:
    """Check an object key: a relative POSIX path of non-empty parts, none ``.``/``..``; returns it."""
    bad = (not isinstance(key, str) or not key or "\\" in key or "\0" in key or key.startswith("/")
           or any(part in ("", ".", "..") for part in key.split("/")))
    if bad:
        raise StoreError(f"object key {key!r} is not a relative POSIX path without '.', '..' or empty parts "
                         f"(example: '2026/11/ev-123/segment-0001.mp4')")
    return key


def object_aad(key: str) -> bytes:
    """Associated data binding a ciphertext to its object key (so copies cannot be swapped between keys)."""
    return AAD_PREFIX + key.encode("utf-8")


def _makedirs(path: Path, stop: Path) -> None:
    """Create ``path`` (under ``stop``) and fsync the parent of every directory created."""
    missing = []
    p = path
    while not p.exists() and p != stop and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_dir(d.parent)


def _write_fd(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_COPY_CHUNK)
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
    return h.hexdigest()


@attrs.frozen
class ObjectMeta:
    """The sidecar of a committed object (``meta/KEY.json``). ``metadata`` is the caller's, unencrypted:
    never put patient data there. Sizes in bytes; ``created_ns`` is wall-clock ns since the epoch."""

    key: str
    key_id: str
    segment_size: int
    plaintext_size: int
    ciphertext_size: int
    sha256: str
    created_ns: int
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=lambda m: dict(m or {}))
    recovered: bool = False

    def to_json(self) -> bytes:
        d = {"format": "surgbox-object", "version": VERSION, **attrs.asdict(self)}
        return (json.dumps(d, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> ObjectMeta:
        """Parse a sidecar; ``ValueError`` when it is not one."""
        try:
            d = json.loads(data)
            if d.pop("format", None) != "surgbox-object":
                raise ValueError("not a surgbox object sidecar")
            d.pop("version", None)
            meta = cls(**d)
            if not isinstance(meta.sha256, str) or len(meta.sha256) != 64:
                raise ValueError("bad sha256")
            return meta
        except (TypeError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ValueError(f"corrupt sidecar: {exc}") from None


@attrs.define(eq=False)
class Replica:
    """One root directory of a store, with its health: ``state`` is ``"ok"``, ``"failed"`` or ``"unchecked"``."""

    root: Path = attrs.field(converter=lambda p: Path(p).absolute())
    state: str = "unchecked"
    error: str | None = None
    store_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def data_path(self, key: str) -> Path:
        return self.root / "objects" / key

    def meta_path(self, key: str) -> Path:
        return self.root / "meta" / (key + ".json")

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def probe(self, *, init: bool, store_id: str | None) -> str:
        """Check the root (and create its layout if ``init``); returns its store id. Raises OSError/StoreError."""
        if not self.root.is_dir():
            raise StoreError(f"store root {self.root} is missing (disk not mounted?)")
        marker = self.root / MARKER
        if marker.exists():
            try:
                d = json.loads(marker.read_bytes())
                if d.get("format") != FORMAT:
                    raise ValueError(d.get("format"))
                found = str(d["store_id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"store root {self.root}: {MARKER} is corrupt ({exc})") from None
            if store_id is not None and found != store_id:
                raise StoreError(f"store root {self.root} belongs to another store ({found}, expected {store_id}); "
                                 f"give the roots of one store")
        elif init:
            found = store_id or str(uuid.uuid4())
            self._atomic_write(marker, json.dumps({"format": FORMAT, "version": VERSION, "store_id": found}).encode())
        else:
            raise StoreError(f"{self.root} is not a surgbox store root (no {MARKER}); "
                             f"initialize it with `surgbox store init --root {self.root}`")
        for sub in ("objects", "meta", "tmp"):
            d = self.root / sub
            if not d.is_dir():
                d.mkdir()
                fsync_dir(self.root)
        probe = self.tmp / f"probe-{uuid.uuid4().hex}"  # writable? (read-only mount, EIO)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
        self.store_id = found
        return found

    def _atomic_write(self, final: Path, data: bytes) -> None:
        """Write ``final`` atomically: temp file in ``tmp/`` (or beside), fsync, rename, fsync dir."""
        tmp_dir = self.tmp if self.tmp.is_dir() else final.parent
        tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_fd(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.install(tmp, final)

    def install(self, tmp: Path, final: Path) -> None:
        """Rename a synced temp file into place and make the rename durable."""
        _makedirs(final.parent, self.root)
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def read_meta(self, key: str) -> ObjectMeta | None:
        """The sidecar of ``key`` (``None`` if absent); ``ValueError`` if corrupt."""
        try:
            data = self.meta_path(key).read_bytes()
        except FileNotFoundError:
            return None
        meta = ObjectMeta.from_json(data)
        if meta.key != key:
            raise ValueError(f"sidecar names key {meta.key!r}")
        return meta

    def iter_keys(self, suffix: str = ".json") -> Iterator[str]:
        """Keys with a sidecar here (``suffix=".deleted"``: keys with a tombstone)."""
        base = self.root / "meta"
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            for f in files:
                if f.endswith(suffix):
                    name = f[: -len(suffix)]
                    yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")

    def write_meta(self, meta: ObjectMeta) -> None:
        self._atomic_write(self.meta_path(meta.key), meta.to_json())

    def tombstone_path(self, key: str) -> Path:
        return self.root / "meta" / (key + ".deleted")

    def read_tombstone(self, key: str) -> int | None:
        """When ``key`` was deleted (wall-clock ns), from its tombstone here; ``None`` if none (or unreadable)."""
        try:
            d = json.loads(self.tombstone_path(key).read_bytes())
            return int(d["deleted_ns"]) if d.get("format") == TOMBSTONE and d.get("key") == key else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def write_tombstone(self, key: str, deleted_ns: int) -> None:
        """Record that ``key`` was deleted at ``deleted_ns`` (atomic, durable)."""
        data = json.dumps({"format": TOMBSTONE, "version": VERSION, "key": key, "deleted_ns": deleted_ns})
        self._atomic_write(self.tombstone_path(key), (data + "\n").encode())

    def remove_copy(self, key: str) -> None:
        """Delete this root's copy of ``key``: sidecar first (never a listed object without data), then data."""
        meta = self.meta_path(key)
        if meta.exists():
            meta.unlink()
            fsync_dir(meta.parent)
        self.data_path(key).unlink(missing_ok=True)


@attrs.frozen
class Problem:
    """A damaged copy found by verify/scrub: ``kind`` is missing, bad-meta, size, checksum, stale, auth,
    lost or deleted (a copy of an object deleted while its disk was away: removed by scrub)."""

    key: str
    root: str
    kind: str
    detail: str = ""
    repaired: bool = False


@attrs.frozen
class ScrubReport:
    """Result of :meth:`EncryptedStore.verify` / :meth:`EncryptedStore.scrub`."""

    objects: int
    problems: tuple[Problem, ...]
    lost: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is left damaged (every problem repaired, nothing lost)."""
        return not self.lost and all(p.repaired for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "ok": self.ok, "lost": list(self.lost),
                "problems": [attrs.asdict(p) for p in self.problems]}


@attrs.frozen
class Recovered:
    """One crashed write handled by :meth:`EncryptedStore.recover`."""

    key: str
    plaintext_size: int
    segments: int
    complete: bool
    action: str  # "recovered", "already-committed", "discarded", "no-key" (another key's write: left untouched),
    #              "failed" (an error, in ``error``: the temporary files are kept for a retry)
    error: str = ""


@attrs.define(eq=False)
class _Session:
    replica: Replica
    desc_fd: int
    desc: Path
    part_fd: int
    part: Path


class _Tee:
    """The ciphertext sink of a :class:`StoreWriter`: hashes, and writes to every live session (a
    root that fails is dropped and marked failed). Holds no reference to the writer, so a dropped
    writer is finalized (and discarded) at once."""

    def __init__(self, store: EncryptedStore, key: str):
        self.store, self.key = store, key
        self.sessions: list[_Session] = []
        self.errors: list[str] = []
        self.sha = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha.update(data)
        for s in list(self.sessions):
            try:
                _write_fd(s.part_fd, data)
            except OSError as exc:
                self.drop(s, exc, "writing")
        if not self.sessions:
            raise StoreError(f"cannot write object {self.key!r}: every store root failed "
                             f"({'; '.join(self.errors)}); fix the disks and retry (see `surgbox store status`)")
        return len(data)

    def drop(self, s: _Session, exc: BaseException, what: str) -> None:
        self.errors.append(f"{s.replica.root}: {exc}")
        if s in self.sessions:
            self.sessions.remove(s)
        self.store._fail(s.replica, exc, f"{what} {self.key!r}")
        _discard(s)


def _discard(s: _Session) -> None:
    for fd in (s.part_fd, s.desc_fd):
        with contextlib.suppress(OSError):
            os.close(fd)
    for p in (s.part, s.desc):
        with contextlib.suppress(OSError):
            p.unlink()


@attrs.define(eq=False, slots=False, weakref_slot=False)
class StoreWriter(io.RawIOBase):
    """Writable stream of a new object: plaintext in, encrypted copies on every healthy root.

    ``close()`` commits (final segment, fsync, rename, sidecar) and raises :class:`StoreError` only
    if no root could commit; ``abort()`` (or an exception inside ``with``) discards everything.
    ``sync()`` makes every complete segment so far durable (fsync), for crash recovery by
    :meth:`EncryptedStore.recover`. Written bytes reach the OS in whole segments, so a writer killed
    by SIGKILL loses at most the open segment. One thread at a time.
    """

    store: EncryptedStore
    key: str
    master: MasterKey
    metadata: dict[str, str]
    recovered: bool = False
    segment_size: int = DEFAULT_SEGMENT_SIZE
    _tee: _Tee = attrs.field(init=False)
    _enc: EncryptingWriter | None = attrs.field(init=False, default=None)
    committed_roots: list[str] = attrs.field(init=False, factory=list)
    _key_locks: list[tuple[int, Path]] = attrs.field(init=False, factory=list)  # per-key lock on each root

    def __attrs_post_init__(self) -> None:
        io.RawIOBase.__init__(self)
        self._tee = _Tee(self.store, self.key)

    @property
    def _sessions(self) -> list[_Session]:
        return self._tee.sessions

    def _start(self) -> None:
        self._enc = EncryptingWriter.open(self._tee, self.master.material, object_aad(self.key),
                                          segment_size=self.segment_size)

    @property
    def plaintext_size(self) -> int:
        return self._enc.plaintext_size if self._enc else 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError(f"write to closed writer of {self.key!r}")
        return self._enc.write(data)

    def _drop(self, s: _Session, exc: BaseException, what: str) -> None:
        self._tee.drop(s, exc, what)

    def sync(self) -> None:
        """fsync every complete segment written so far on every root."""
        for s in list(self._sessions):
            try:
                os.fsync(s.part_fd)
            except OSError as exc:
                self._drop(s, exc, "syncing")
        if not self._sessions:
            raise StoreError(f"cannot sync object {self.key!r}: every store root failed ({'; '.join(self._tee.errors)}); "
                             f"fix the disks (see `surgbox store status`)")

    def close(self) -> None:
        """Commit the object on every root still healthy."""
        if self.closed:
            return
        try:
            self._enc.close()
            meta = ObjectMeta(self.key, self.master.key_id, self.segment_size, self._enc.plaintext_size,
                              self._enc.ciphertext_size, self._tee.sha.hexdigest(), time.time_ns(), self.metadata,
                              self.recovered)
            for s in list(self._sessions):
                r = s.replica
                try:
                    os.fsync(s.part_fd)
                    r.install(s.part, r.data_path(self.key))
                    r.write_meta(meta)
                    r.tombstone_path(self.key).unlink(missing_ok=True)  # superseded by this newer object
                except OSError as exc:
                    self._drop(s, exc, "committing")
                    continue
                os.close(s.part_fd)
                s.desc.unlink(missing_ok=True)
                os.close(s.desc_fd)
                self._sessions.remove(s)
                self.committed_roots.append(str(r.root))
            if not self.committed_roots:
                raise StoreError(f"object {self.key!r} was not stored: every root failed ({'; '.join(self._tee.errors)}); "
                                 f"fix the disks (see `surgbox store status`)")
        except BaseException:
            self.abort()
            raise
        finally:
            self._release()
            io.RawIOBase.close(self)

    def abort(self) -> None:
        """Discard the object: close and delete its temporary files."""
        if self._enc is not None and not self._enc.closed:
            self._enc.abort()
        for s in list(self._sessions):
            self._sessions.remove(s)
            _discard(s)
        self._release()
        io.RawIOBase.close(self)

    def _release(self) -> None:
        """Give up the per-key locks (remove each lock file while still holding it, then unlock)."""
        while self._key_locks:
            fd, path = self._key_locks.pop()
            with contextlib.suppress(OSError):
                path.unlink()
            with contextlib.suppress(OSError):
                os.close(fd)

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        if not self.closed:
            if self._sessions:
                logger.warning("writer of %r was dropped without close(); the object was discarded", self.key)
            self.abort()


@attrs.define(eq=False)
class EncryptedStore(Store):
    """Encrypted, checksummed object store over ``roots`` (one: ``local``; several: ``mirror``).

    Options: ``key_file`` (path or list, newest first; or ``keyring``), ``passphrase`` for passphrase
    key files, ``init`` to create the layout in empty roots, ``segment_size`` (ciphertext bytes per
    segment, default 1 MiB: the crash-loss granularity of a recording). ``open()`` checks every root;
    a root that fails then (or later, on an I/O error or a full disk) is marked failed, the store
    reports itself degraded, and work continues on the others. Thread-safe for one writer per key.
    """

    roots: list[Replica] = attrs.field(converter=lambda rs: [r if isinstance(r, Replica) else Replica(r) for r in rs])
    key_file: Any = None
    keyring: KeyRing | None = None
    passphrase: str | None = attrs.field(default=None, repr=False)
    init: bool = False
    segment_size: int = DEFAULT_SEGMENT_SIZE
    cache_segments: int = 4
    store_id: str | None = attrs.field(init=False, default=None)
    suspect: set[tuple[str, str]] = attrs.field(init=False, factory=set)
    _lock: threading.RLock = attrs.field(init=False, factory=threading.RLock)
    _opened: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        StreamFormat(self.segment_size)  # validates
        if not self.roots:
            raise ConfigError("a store needs at least one root directory (--root DIR)")
        paths = [r.root for r in self.roots]
        if len(set(paths)) != len(paths):
            raise ConfigError(f"store roots must be distinct directories, got {[str(p) for p in paths]}")

    # ---- lifecycle and health -------------------------------------------------------------
    def open(self) -> None:
        """Load keys (if configured) and check every root; raises :class:`StoreError` if none is usable."""
        if self.keyring is None and self.key_file:
            self.keyring = load_keyring(self.key_file, self.passphrase)
        ids = []
        for r in self.roots:  # the store id comes from the first root that has a marker
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                ids.append(str(json.loads((r.root / MARKER).read_bytes())["store_id"]))
        store_id = ids[0] if ids else None
        for r in self.roots:
            try:
                store_id = r.probe(init=self.init, store_id=store_id)
                r.state, r.error = "ok", None
            except (OSError, StoreError) as exc:
                self._fail(r, exc, "opening")
        self.store_id = store_id
        healthy = [r for r in self.roots if r.ok]
        if not healthy:
            raise StoreError("no usable store root: " + "; ".join(f"{r.root}: {r.error}" for r in self.roots))
        self._opened = True

    def close(self) -> None:
        self._opened = False

    def _fail(self, replica: Replica, exc: BaseException, context: str) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            reason = "disk full (ENOSPC)"
        with self._lock:
            first = replica.state != "failed"
            replica.state, replica.error = "failed", f"{context}: {reason}"
            left = sum(r.ok for r in self.roots)
        if first:
            logger.error("STORE DEGRADED: root %s failed while %s: %s; %d healthy root(s) left. Fix the disk, "
                         "then run `surgbox store scrub`.", replica.root, context, reason, left)

    def _healthy(self) -> list[Replica]:
        if not self._opened:
            raise StoreError("the store is not open; call open() (or use `with store:`) first")
        healthy = [r for r in self.roots if r.ok]
        if not healthy:
            raise StoreError("every store root has failed: " + "; ".join(f"{r.root}: {r.error}" for r in self.roots)
                             + "; fix or remount the disks (see `surgbox store status`)")
        return healthy

    @property
    def degraded(self) -> bool:
        return any(not r.ok for r in self.roots)

    def status(self) -> dict[str, Any]:
        """``{"healthy", "degraded", "store_id", "roots": [{path, state, error, objects, partials, free_bytes}], "suspect"}``."""
        roots = []
        for r in self.roots:
            info: dict[str, Any] = {"path": str(r.root), "state": r.state, "error": r.error}
            if r.ok:
                try:
                    info["objects"] = sum(1 for _ in r.iter_keys())
                    info["partials"] = sum(1 for _ in r.tmp.glob("*.json"))
                    info["free_bytes"] = shutil.disk_usage(r.root).free
                except OSError as exc:
                    self._fail(r, exc, "reading status")
                    info.update(state=r.state, error=r.error)
            roots.append(info)
        healthy = all(r.ok for r in self.roots)
        return {"healthy": healthy and not self.suspect, "degraded": not healthy and any(r.ok for r in self.roots),
                "store_id": self.store_id, "roots": roots,
                "suspect": sorted(f"{k} @ {root}" for k, root in self.suspect)}

    # ---- objects --------------------------------------------------------------------------
    def _master(self) -> KeyRing:
        if self.keyring is None:
            raise ConfigError("this store has no key: give key_file= (CLI: --key-file KEY)")
        return self.keyring

    def _find_meta(self, key: str) -> tuple[ObjectMeta, list[Replica]]:
        """The newest valid sidecar of ``key`` and the healthy roots holding a matching, full-size copy."""
        found: list[tuple[Replica, ObjectMeta]] = []
        for r in self._healthy():
            try:
                m = r.read_meta(key)
            except (OSError, ValueError):
                continue
            if m is not None:
                found.append((r, m))
        if not found:
            raise ObjectNotFoundError(f"no object {key!r} in the store ({', '.join(str(r.root) for r in self.roots)})")
        meta = max((m for _, m in found), key=lambda m: m.created_ns)
        deleted = self._deleted_ns(key)
        if deleted is not None and deleted > meta.created_ns:  # copies left on a disk that missed the delete
            raise ObjectNotFoundError(f"no object {key!r} in the store (deleted; stale copies are removed by "
                                      f"`surgbox store scrub`)")
        copies = []
        for r, m in found:
            try:
                if m.sha256 == meta.sha256 and r.data_path(key).stat().st_size == meta.ciphertext_size:
                    copies.append(r)
            except OSError:
                pass
        return meta, copies

    def _deleted_ns(self, key: str) -> int | None:
        """The newest tombstone of ``key`` on the healthy roots (wall-clock ns), or ``None``."""
        times = [t for r in self._healthy() if (t := r.read_tombstone(key)) is not None]
        return max(times, default=None)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is committed: a sidecar exists (even a corrupt one) and no newer tombstone."""
        validate_key(key)
        roots = [r for r in self._healthy() if r.meta_path(key).exists()]
        if not roots:
            return False
        deleted = self._deleted_ns(key)
        if deleted is None:
            return True
        created = []
        for r in roots:
            with contextlib.suppress(OSError, ValueError):
                if (m := r.read_meta(key)) is not None:
                    created.append(m.created_ns)
        return any(c > deleted for c in created)

    def info(self, key: str) -> ObjectMeta:
        """The sidecar of a committed object."""
        return self._find_meta(validate_key(key))[0]

    def writer(self, key: str, metadata: Mapping[str, str] | None = None, *, recovered: bool = False,
               segment_size: int | None = None) -> StoreWriter:
        """A new object's stream (refuses an existing key: delete it first). Committed by ``close()``.
        ``segment_size``: ciphertext bytes per segment of this object (default the store's); smaller
        segments lose less on a crash (a recording uses 256 KiB, its data track 4 KiB)."""
        validate_key(key)
        master = self._master().primary
        seg = self.segment_size if segment_size is None else int(segment_size)
        StreamFormat(seg)  # validates
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        w = StoreWriter(self, key, master, meta, recovered, segment_size=seg)
        self._lock_key(w)  # one writer per key at a time (this process or another): no lost commit
        try:
            if self.exists(key):
                raise StoreError(f"object {key!r} already exists; delete it first (objects are never overwritten)")
        except BaseException:
            w.abort()
            raise
        wid = uuid.uuid4().hex
        desc = json.dumps({"key": key, "key_id": master.key_id, "segment_size": seg,
                           "metadata": meta, "started_ns": time.time_ns()}).encode()
        for r in self._healthy():
            fds: list[int] = []
            try:
                staging = r.tmp / f"{wid}.desc-new"
                dfd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                fds.append(dfd)
                fcntl.flock(dfd, fcntl.LOCK_EX)  # held until commit/abort: `recover` skips live writes
                _write_fd(dfd, desc)
                os.fsync(dfd)
                os.replace(staging, r.tmp / f"{wid}.json")
                pfd = os.open(r.tmp / f"{wid}.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                fds.append(pfd)
                fsync_dir(r.tmp)
                w._sessions.append(_Session(r, dfd, r.tmp / f"{wid}.json", pfd, r.tmp / f"{wid}.part"))
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                for p in (r.tmp / f"{wid}.desc-new", r.tmp / f"{wid}.json", r.tmp / f"{wid}.part"):
                    with contextlib.suppress(OSError):
                        p.unlink()
                self._fail(r, exc, f"starting {key!r}")
        if not w._sessions:
            w.abort()
            raise StoreError(f"cannot write object {key!r}: every store root failed ("
                             + "; ".join(f"{r.root}: {r.error}" for r in self.roots if not r.ok)
                             + "); see `surgbox store status`")
        try:
            w._start()
        except BaseException:
            w.abort()
            raise
        return w

    def _lock_key(self, w: StoreWriter) -> None:
        """Lock ``w.key`` on every healthy root (``tmp/KEYHASH.lock``, ``flock``: released by the kernel
        if the process dies); :class:`StoreError` naming the key when another writer holds it."""
        name = hashlib.sha256(w.key.encode("utf-8")).hexdigest()[:32] + ".lock"
        for r in self._healthy():
            path = r.tmp / name
            try:
                fd = _lock_file(path)
            except OSError as exc:
                self._fail(r, exc, f"locking {w.key!r}")
                continue
            if fd is None:
                w.abort()
                raise StoreError(f"object {w.key!r} is being written by another writer (lock {path} is held); "
                                 f"wait until it is closed, or write another key")
            w._key_locks.append((fd, path))

    def reader(self, key: str) -> DecryptingReader:
        """Seekable plaintext of ``key``, reading any healthy copy (a damaged segment is read from another copy)."""
        validate_key(key)
        meta, copies = self._find_meta(key)
        if not copies:
            raise IntegrityError(f"object {key!r}: no copy matches its sidecar (size/checksum); run `surgbox store scrub`")
        master = self._master().get(meta.key_id, f"object {key!r}")
        sources = []
        for r in copies:
            try:
                src = _FdSource.open(r.data_path(key))
                src.root = r.root
                sources.append(src)
            except OSError as exc:
                self._fail(r, exc, f"reading {key!r}")
        if not sources:
            raise StoreError(f"object {key!r}: no copy could be opened; see `surgbox store status`")

        def bad_copy(i: int, segment: int, exc: BaseException) -> None:
            root = str(sources[i].root)
            with self._lock:
                self.suspect.add((key, root))
            logger.error("object %r: copy on %s is damaged at segment %d (%s); run `surgbox store scrub`",
                         key, root, segment, exc)

        try:
            r = DecryptingReader.open(sources, master.material, object_aad(key), segment_size=meta.segment_size,
                                      cache_segments=self.cache_segments, on_bad_copy=bad_copy, name=key)
        except BaseException:
            for s in sources:
                s.close()
            raise
        r.owned = sources
        return r

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Committed keys starting with ``prefix`` (union over healthy roots), sorted."""
        found: set[str] = set()
        tombs: set[str] = set()
        for r in self._healthy():
            try:
                found.update(k for k in r.iter_keys() if k.startswith(prefix))
                tombs.update(k for k in r.iter_keys(".deleted") if k.startswith(prefix))
            except OSError as exc:
                self._fail(r, exc, "listing")
        found -= {k for k in found & tombs if not self.exists(k)}  # deleted while a disk was away
        return iter(sorted(found))

    def delete(self, key: str) -> None:
        """Remove ``key``: write a tombstone (``meta/KEY.deleted``) on every healthy root, then remove
        the sidecar and the data there. A root that missed the delete (offline) keeps its copy until
        ``scrub`` removes it; until then reads and listings honour the newer tombstone."""
        validate_key(key)
        if not self.exists(key):
            raise ObjectNotFoundError(f"no object {key!r} to delete")
        created = 0
        for r in self._healthy():
            with contextlib.suppress(OSError, ValueError):
                if (m := r.read_meta(key)) is not None:
                    created = max(created, m.created_ns)
        deleted_ns = max(time.time_ns(), created + 1)  # newer than every copy even if the clock stepped back
        for r in self._healthy():
            try:
                r.write_tombstone(key, deleted_ns)
                r.remove_copy(key)
            except OSError as exc:
                self._fail(r, exc, f"deleting {key!r}")

    # ---- integrity ------------------------------------------------------------------------
    def verify(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> ScrubReport:
        """Check every copy of ``keys`` (default: all) against its sidecar's size and SHA-256; with
        ``decrypt`` also authenticate every segment of one good copy (needs the key). Read-only."""
        return self._check(keys, decrypt=decrypt, repair=False)

    def scrub(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> ScrubReport:
        """:meth:`verify`, then rewrite every missing or damaged copy from a good one (temp + fsync + rename)."""
        return self._check(keys, decrypt=decrypt, repair=True)

    def _check(self, keys: Sequence[str] | None, *, decrypt: bool, repair: bool) -> ScrubReport:
        healthy = self._healthy()
        if keys is None:  # every key with a sidecar anywhere, including stale copies of deleted objects
            found: set[str] = set()
            for r in healthy:
                with contextlib.suppress(OSError):
                    found.update(r.iter_keys())
            keys = found
        todo = sorted(set(keys))
        problems: list[Problem] = []
        lost: list[str] = []
        for key in todo:
            validate_key(key)
            state: dict[Replica, tuple[ObjectMeta | None, str | None, str]] = {}
            for r in healthy:
                try:
                    m = r.read_meta(key)
                except (OSError, ValueError) as exc:
                    state[r] = (None, None, f"bad-meta: {exc}")
                    continue
                if m is None:
                    state[r] = (None, None, "missing: no sidecar")
                    continue
                try:
                    size = r.data_path(key).stat().st_size
                except FileNotFoundError:
                    state[r] = (m, None, "missing: no data file")
                    continue
                except OSError as exc:
                    state[r] = (m, None, f"missing: {exc}")
                    continue
                if size != m.ciphertext_size:
                    state[r] = (m, None, f"size: {size} bytes, sidecar says {m.ciphertext_size}")
                    continue
                try:
                    digest = _sha256_file(r.data_path(key))
                except OSError as exc:
                    state[r] = (m, None, f"missing: unreadable ({exc})")
                    continue
                state[r] = (m, digest, "" if digest == m.sha256 else "checksum: SHA-256 differs from the sidecar")
            deleted = self._deleted_ns(key)
            if deleted is not None and not any(m is not None and m.created_ns > deleted for m, _d, _w in state.values()):
                self._check_deleted(key, deleted, state, problems, repair)  # a newer tombstone wins
                continue
            valid = {r: m for r, (m, d, why) in state.items()
                     if not why and m is not None and (deleted is None or m.created_ns > deleted)}
            if not valid:  # no copy left that matches its sidecar: nothing to repair from
                lost.append(key)
                for r, (_, _, why) in state.items():
                    problems.append(Problem(key, str(r.root), why.split(":")[0], why))
                continue
            best = max(valid.values(), key=lambda m: m.created_ns)
            good = [r for r, m in valid.items() if m.sha256 == best.sha256]
            if decrypt:
                err = self._authenticate(key, best, good)
                if err is not None:
                    lost.append(key)
                    problems.append(Problem(key, ",".join(str(r.root) for r in good), "auth", err))
                    continue
            for r, (m, _d, why) in state.items():
                if r in good:
                    continue
                if not why:
                    why = f"stale: an older version (checksum {m.sha256[:12]}...)" if m else "stale"
                fixed = False
                if repair:
                    fixed = self._repair(key, best, good[0], r)
                problems.append(Problem(key, str(r.root), why.split(":")[0], why, fixed))
                if fixed:
                    with self._lock:
                        self.suspect.discard((key, str(r.root)))
        return ScrubReport(len(todo), tuple(problems), tuple(lost))

    def _check_deleted(self, key: str, deleted_ns: int, state: dict[Replica, Any], problems: list[Problem],
                       repair: bool) -> None:
        """``key`` was deleted after every copy left: report (and with ``repair`` remove) those copies."""
        for r in state:
            if not (r.meta_path(key).exists() or r.data_path(key).exists()):
                continue
            fixed = False
            if repair:
                try:
                    r.write_tombstone(key, deleted_ns)
                    r.remove_copy(key)
                    fixed = True
                    logger.warning("object %r: removed the stale copy on %s (the object was deleted)", key, r.root)
                except OSError as exc:
                    self._fail(r, exc, f"removing the deleted {key!r}")
            problems.append(Problem(key, str(r.root), "deleted",
                                    f"deleted: a copy of an object deleted at {deleted_ns} ns (tombstone)", fixed))
            with self._lock:
                self.suspect.discard((key, str(r.root)))

    def _authenticate(self, key: str, meta: ObjectMeta, good: list[Replica]) -> str | None:
        master = self._master().get(meta.key_id, f"object {key!r}")
        try:
            with DecryptingReader.open(str(good[0].data_path(key)), master.material, object_aad(key),
                                       segment_size=meta.segment_size, cache_segments=1) as rd:
                for _ in rd.iter_segments():
                    pass
        except DecryptionError as exc:
            return str(exc)
        return None

    def _repair(self, key: str, meta: ObjectMeta, src: Replica, dst: Replica) -> bool:
        tmp = dst.tmp / f"{uuid.uuid4().hex}.repair"
        try:
            h = hashlib.sha256()
            with open(src.data_path(key), "rb", buffering=0) as fin:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    buf = bytearray(_COPY_CHUNK)
                    while n := fin.readinto(buf):
                        chunk = memoryview(buf)[:n]
                        h.update(chunk)
                        _write_fd(fd, chunk)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if h.hexdigest() != meta.sha256:
                raise IntegrityError(f"source copy on {src.root} changed while copying")
            dst.meta_path(key).unlink(missing_ok=True)  # uncommit first: never a listed object with bad data
            dst.install(tmp, dst.data_path(key))
            dst.write_meta(meta)
            logger.warning("object %r: repaired the copy on %s from %s", key, dst.root, src.root)
            return True
        except (OSError, IntegrityError) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            logger.error("object %r: could not repair the copy on %s: %s", key, dst.root, exc)
            if isinstance(exc, OSError):
                self._fail(dst, exc, f"repairing {key!r}")
            return False

    # ---- crash recovery -------------------------------------------------------------------
    def partials(self) -> list[dict[str, Any]]:
        """Unfinished writes left in ``tmp/`` by crashed writers (live writes, whose lock is held, are skipped)."""
        out = []
        for r in self._healthy():
            for desc in sorted(r.tmp.glob("*.json")):
                lock = _try_lock(desc)
                if lock is None:
                    continue
                os.close(lock)
                try:
                    d = json.loads(desc.read_bytes())
                except (OSError, ValueError):
                    d = {}
                part = desc.with_suffix(".part")
                out.append({"root": str(r.root), "id": desc.stem, "key": d.get("key"), "key_id": d.get("key_id"),
                            "bytes": part.stat().st_size if part.exists() else 0})
        return out

    def recover(self) -> list[Recovered]:
        """Turn every crashed write into a committed object holding the longest authentic prefix.

        For each write whose writer died (its lock is free), the complete segments of the longest
        copy are authenticated in order (:func:`~surgbox.crypto.streaming.salvage`) and re-encrypted
        into the object under its key with ``recovered=True`` in the sidecar (the prefix cannot prove
        it is the whole recording). Needs the key that wrote them. The temporary files are removed
        only once the object is committed (or when the write held no segment, or its key is already
        committed); a write that cannot be recovered keeps its files and its result says why:
        ``action="no-key"`` (written with a key this store was not given) or ``"failed"`` with
        ``error`` (e.g. a full disk); run ``recover`` again once fixed.
        """
        groups: dict[str, list[tuple[Replica, Path, int]]] = {}
        results: list[Recovered] = []
        for r in self._healthy():
            for desc in sorted(r.tmp.glob("*.json")):
                lock = _try_lock(desc)
                if lock is not None:
                    groups.setdefault(desc.stem, []).append((r, desc, lock))
        for wid, items in groups.items():
            try:
                results.append(self._recover_one(items))
            except WrongKeyError as exc:  # another key's write (e.g. an event's data key): keep it for its owner
                logger.warning("unfinished write %s is encrypted with a key this store was not given (%s); left "
                               "as it is: recover it with that key", wid, exc)
                results.append(Recovered(self._partial_key(items), 0, 0, False, "no-key", str(exc)))
                for _r, _desc, lock in items:
                    os.close(lock)
                continue
            except Exception as exc:  # e.g. a full disk: keep the crashed write's files for a retry
                logger.error("could not recover unfinished write %s (%s: %s); its files are kept in tmp/: fix the "
                             "cause and run `surgbox store recover` again", wid, type(exc).__name__, exc)
                results.append(Recovered(self._partial_key(items), 0, 0, False, "failed", f"{type(exc).__name__}: {exc}"))
                for _r, _desc, lock in items:
                    os.close(lock)
                continue
            except BaseException:
                for _r, desc, lock in items:
                    os.close(lock)
                raise
            else:
                for _r, desc, lock in items:
                    with contextlib.suppress(OSError):
                        desc.with_suffix(".part").unlink()
                    with contextlib.suppress(OSError):
                        desc.unlink()
                    os.close(lock)
        return results

    @staticmethod
    def _partial_key(items: list[tuple[Replica, Path, int]]) -> str:
        for _r, path, _ in items:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                key = json.loads(path.read_bytes()).get("key")
                if isinstance(key, str):
                    return key
        return "?"

    def _recover_one(self, items: list[tuple[Replica, Path, int]]) -> Recovered:
        desc: dict[str, Any] = {}
        for _r, path, _ in items:
            with contextlib.suppress(OSError, ValueError):
                desc = json.loads(path.read_bytes())
                break
        key = desc.get("key")
        if not isinstance(key, str):
            return Recovered("?", 0, 0, False, "discarded")
        if self.exists(key):
            return Recovered(key, 0, 0, True, "already-committed")
        master = self._master().get(desc.get("key_id", "?"), f"unfinished write of {key!r}")
        seg = int(desc.get("segment_size", self.segment_size))
        best, best_res = None, None
        for r, path, _ in items:
            part = path.with_suffix(".part")
            if not part.exists():
                orphan = r.data_path(key)  # crashed between data rename and sidecar: move it back
                if orphan.exists() and not r.meta_path(key).exists():
                    os.replace(orphan, part)
                else:
                    continue
            res = salvage(str(part), master.material, object_aad(key), segment_size=seg)
            if best_res is None or res.segments > best_res.segments:
                best, best_res = part, res
        if best is None or best_res is None or best_res.segments == 0:
            return Recovered(key, 0, 0, False, "discarded")
        meta = {**desc.get("metadata", {}), "surgbox.recovered": "complete" if best_res.complete else "prefix"}
        w = self.writer(key, meta, recovered=not best_res.complete, segment_size=seg)
        with w:
            res = salvage(str(best), master.material, object_aad(key), w.write, segment_size=seg)
        logger.warning("recovered %r: %d bytes in %d segments (%s)", key, res.plaintext_size, res.segments,
                       "complete" if res.complete else "prefix of a killed write")
        return Recovered(key, res.plaintext_size, res.segments, res.complete, "recovered")


def _lock_file(path: Path) -> int | None:
    """Create/open ``path`` and ``flock`` it exclusively: the fd, or ``None`` if another holder has it.
    Checks that the locked file is still the one at ``path`` (a holder deletes it on release)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed it between our open and lock: try again


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path``, or ``None`` if a live writer holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def open_store(roots: Sequence[str | os.PathLike[str]], **options: Any) -> EncryptedStore:
    """A ``local`` store for one root or a ``mirror`` for several (not opened)."""
    from .local import LocalStore
    from .mirror import MirrorStore

    if len(roots) == 1:
        return LocalStore(root=roots[0], **options)
    return MirrorStore(roots=list(roots), **options)


__all__ = ["EncryptedStore", "ObjectMeta", "ObjectNotFoundError", "Problem", "Recovered", "Replica", "ScrubReport",
           "StoreWriter", "object_aad", "open_store", "validate_key"]
