"""The store's write path: :class:`StoreWriter` encrypts once and tees the ciphertext to every
healthy root (``tmp/ID.part``), then commits each copy (fsync, rename into ``objects/``, sidecar).

A root that fails while writing or committing is dropped (marked failed through the store) and
the write continues on the others; only when every root failed does the write raise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import attrs

from surgbox._fs import fsync_dir, write_all
from surgbox.crypto.format import DEFAULT_SEGMENT_SIZE
from surgbox.crypto.keys import MasterKey
from surgbox.crypto.writer import EncryptingWriter
from surgbox.errors import StoreError

from .layout import Replica, object_aad
from .metadata import ObjectMeta

logger = logging.getLogger(__name__)

__all__ = ["StoreWriter"]

_KEY_CONFLICT = (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST)


@attrs.define(eq=False)
class _Session:
    """One root's part of a write: the locked descriptor ``tmp/ID.json`` and ``tmp/ID.part``."""

    replica: Replica
    desc_fd: int
    desc: Path
    part_fd: int
    part: Path


class _Tee:
    """The ciphertext sink of a :class:`StoreWriter`: hashes, and writes to every live session (a
    root that fails is dropped and marked failed). Holds no reference to the writer, so a dropped
    writer is finalized (and discarded) at once."""

    def __init__(self, store: Any, key: str):
        self.store, self.key = store, key
        self.sessions: list[_Session] = []
        self.errors: list[str] = []
        self.sha = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha.update(data)
        for s in list(self.sessions):
            try:
                write_all(s.part_fd, data)
            except OSError as exc:
                self.drop(s, exc, "writing")
        if not self.sessions:
            raise StoreError(f"cannot write object {self.key!r}: every store root failed "
                             f"({'; '.join(self.errors)}); fix the disks and retry (see `surgbox store status`)")
        return len(data)

    def drop(self, s: _Session, exc: BaseException, what: str, *, fail_root: bool = True) -> None:
        self.errors.append(f"{s.replica.root}: {exc}")
        if s in self.sessions:
            self.sessions.remove(s)
        if fail_root:
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
    by SIGKILL loses at most the open segment. One thread at a time. ``committed_roots`` after
    ``close()``: the roots holding the object (fewer than the store has: it is noted as
    under-replicated until ``scrub`` restores the copies).
    """

    store: Any  # the EncryptedStore
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

    def begin(self, replicas: list[Replica], wid: str, desc: bytes) -> None:
        """Open a session (locked descriptor + part file) on each of ``replicas`` and start the
        stream; :class:`StoreError` when none could be opened."""
        for r in replicas:
            fds: list[int] = []
            paths = (r.tmp / f"{wid}.desc-new", r.tmp / f"{wid}.json", r.tmp / f"{wid}.part")
            try:
                dfd = os.open(paths[0], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                fds.append(dfd)
                fcntl.flock(dfd, fcntl.LOCK_EX)  # held until commit/abort: `recover` skips live writes
                write_all(dfd, desc)
                os.fsync(dfd)
                os.replace(paths[0], paths[1])
                pfd = os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                fds.append(pfd)
                fsync_dir(r.tmp)
                self._sessions.append(_Session(r, dfd, paths[1], pfd, paths[2]))
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                for p in paths:
                    with contextlib.suppress(OSError):
                        p.unlink()
                self.store._fail(r, exc, f"starting {self.key!r}")
        if not self._sessions:
            raise StoreError(f"cannot write object {self.key!r}: every store root failed ("
                             + "; ".join(f"{r.root}: {r.error}" for r in self.store.roots if not r.ok)
                             + "); see `surgbox store status`")
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

    def sync(self) -> None:
        """fsync every complete segment written so far on every root."""
        for s in list(self._sessions):
            try:
                os.fsync(s.part_fd)
            except OSError as exc:
                self._tee.drop(s, exc, "syncing")
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
                              self.recovered).signed(self.store._mac_keys())
            conflicts = []
            for s in list(self._sessions):
                r = s.replica
                installed = False
                try:
                    os.fsync(s.part_fd)
                    r.install(s.part, r.data_path(self.key))
                    installed = True
                    r.write_meta(meta)
                    r.tombstone_path(self.key).unlink(missing_ok=True)  # superseded by this newer object
                except OSError as exc:
                    conflict = exc.errno in _KEY_CONFLICT  # a folder/file in the way: the key's fault, not the disk's
                    if conflict:
                        conflicts.append(exc)
                        if installed:  # no sidecar: take the data back out, nothing unlisted stays behind
                            with contextlib.suppress(OSError):
                                r.data_path(self.key).unlink()
                    self._tee.drop(s, exc, "committing", fail_root=not conflict)
                    continue
                os.close(s.part_fd)
                s.desc.unlink(missing_ok=True)
                os.close(s.desc_fd)
                self._sessions.remove(s)
                self.committed_roots.append(str(r.root))
            if not self.committed_roots:
                if conflicts:
                    raise StoreError(f"object {self.key!r} was not stored: it collides with another object's "
                                     f"folder or file ({conflicts[0]}); choose another key")
                raise StoreError(f"object {self.key!r} was not stored: every root failed ({'; '.join(self._tee.errors)}); "
                                 f"fix the disks (see `surgbox store status`)")
            self._note_copies()
        except BaseException:
            self.abort()
            raise
        finally:
            self._release()
            io.RawIOBase.close(self)

    def _note_copies(self) -> None:
        """With fewer copies than roots, persist that on the roots holding it (``store status``
        says DEGRADED until a scrub restores the copies; an error here only logs)."""
        total = len(self.store.roots)
        if len(self.committed_roots) >= total:
            return
        for r in self.store.roots:
            if str(r.root) in self.committed_roots:
                try:
                    r.add_pending(self.key, len(self.committed_roots), total)
                except OSError as exc:
                    logger.error("object %r: cannot note on %s that it has %d of %d copies: %s", self.key, r.root,
                                 len(self.committed_roots), total, exc)
        logger.warning("object %r was stored on %d of %d roots: run `surgbox store scrub` once the store is whole",
                     self.key, len(self.committed_roots), total)

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
