"""Encrypted object store over one or more root directories (the engine of ``local`` and ``mirror``).

Every byte is encrypted once and written to every healthy root, so all copies are identical
(:mod:`.writer`). Commit per root: fsync the data, rename it into ``objects/``, fsync the folder,
then write the sidecar the same way. An object is listed only when its sidecar exists, so a crash at
any point never shows a half-written object. Reads take each segment from any copy that holds it
intact (:mod:`.failover`); :mod:`.scrub` checks and repairs copies, :mod:`.recover` commits what
crashed writers left, :mod:`.layout` is the on-disk layout of a root (see docs/storage.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from surgbox.crypto.format import DEFAULT_SEGMENT_SIZE, check_segment_size
from surgbox.crypto.keys import KeyRing, MasterKey, load_keyring
from surgbox.crypto.reader import DecryptingReader
from surgbox.crypto.sources import FdSource
from surgbox.errors import ConfigError, IntegrityError, StoreError
from surgbox.interfaces import Store

from .failover import open_copies
from .layout import MARKER, Replica, key_hash, object_aad, validate_key
from .locks import lock_file
from .metadata import FORGED, IMPLAUSIBLE, UNSIGNED, UNVERIFIABLE, VERIFIED, MacKeys, ObjectMeta, Tombstone
from .recover import RecoverMixin
from .scrub import ScrubMixin
from .writer import StoreWriter

logger = logging.getLogger(__name__)


class ObjectNotFoundError(StoreError, LookupError):
    """No committed object has that key."""


def _check_store_segment_size(inst: Any, attr: Any, value: Any) -> None:
    try:
        check_segment_size(value)
    except ValueError as exc:
        raise ConfigError(f"store option segment_size: {exc}") from None


@attrs.define(eq=False)
class EncryptedStore(ScrubMixin, RecoverMixin, Store):
    """Encrypted, checksummed object store over ``roots`` (one: ``local``; several: ``mirror``).

    Options: ``key_file`` (path or list, newest first; or ``keyring``), ``passphrase`` for passphrase
    key files, ``metadata_key`` (a :class:`~surgbox.crypto.keys.MasterKey` that signs tombstones and
    sidecars; default the keyring's newest key), ``init`` to create the layout in empty roots,
    ``segment_size`` (ciphertext bytes per segment, default 1 MiB: the crash-loss granularity of a
    recording). ``open()`` checks every root; a root that fails then (or later, on an I/O error or a
    full disk) is marked failed, the store reports itself degraded, and work continues on the
    others. Thread-safe for one writer per key.
    """

    roots: list[Replica] = attrs.field(converter=lambda rs: [r if isinstance(r, Replica) else Replica(r) for r in rs])
    key_file: Any = None
    keyring: KeyRing | None = None
    passphrase: str | None = attrs.field(default=None, repr=False)
    metadata_key: MasterKey | None = attrs.field(default=None, repr=False)
    init: bool = False
    segment_size: int = attrs.field(default=DEFAULT_SEGMENT_SIZE, validator=_check_store_segment_size)
    cache_segments: int = 4
    store_id: str | None = attrs.field(init=False, default=None)
    suspect: set[tuple[str, str]] = attrs.field(init=False, factory=set)
    _lock: threading.RLock = attrs.field(init=False, factory=threading.RLock)
    _opened: bool = attrs.field(init=False, default=False)
    _macs: MacKeys | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.roots:
            raise ConfigError("a store needs at least one root directory (--root DIR)")
        paths = [r.root for r in self.roots]
        if len(set(paths)) != len(paths):
            raise ConfigError(f"store roots must be distinct directories, got {[str(p) for p in paths]}")

    # ---- lifecycle and health -------------------------------------------------------------
    def open(self) -> None:
        """Load keys (if configured) and check every root; raises :class:`ConfigError` when two roots
        are the same directory (by real path or device and inode) and :class:`StoreError` if none is usable."""
        self._check_distinct()
        if self.keyring is None and self.key_file:
            self.keyring = load_keyring(self.key_file, self.passphrase)
        ids = []
        for r in self.roots:  # the store id comes from the first root that has a marker
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                ids.append(str(json.loads((r.root / MARKER).read_bytes())["store_id"]))
        store_id = ids[0] if ids else None
        failed = []
        for r in self.roots:
            try:
                store_id = r.probe(init=self.init, store_id=store_id)
                r.state, r.error = "ok", None
            except (OSError, StoreError) as exc:
                failed.append((r, exc))
        self.store_id = store_id
        self._macs = None
        for r, exc in failed:  # logged as degradation only when the store opens at all; else the error says it
            self._fail(r, exc, "opening", log=len(failed) < len(self.roots))
        healthy = [r for r in self.roots if r.ok]
        if not healthy:
            raise StoreError("no usable store root: " + "; ".join(f"{r.root}: {r.error}" for r in self.roots))
        self._opened = True

    def _check_distinct(self) -> None:
        seen: dict[Any, Replica] = {}
        for r in self.roots:
            real, ident = r.identity()
            for mark in (("path", real), ("inode", ident)):
                if mark[1] is None:
                    continue
                other = seen.get(mark)
                if other is not None:
                    raise ConfigError(f"store roots {other.root} and {r.root} are the same directory ({real}); "
                                      f"give each disk once (a mirror needs roots on different disks)")
                seen[mark] = r

    def close(self) -> None:
        self._opened = False

    def _fail(self, replica: Replica, exc: BaseException, context: str, *, log: bool = True) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            reason = "disk full (ENOSPC)"
        with self._lock:
            first = replica.state != "failed"
            replica.state, replica.error = "failed", f"{context}: {reason}"
            left = sum(r.ok for r in self.roots)
        if first and log:
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

    def under_replicated(self) -> list[str]:
        """Keys committed with fewer copies than roots (persisted on disk until a scrub restores them)."""
        keys: set[str] = set()
        for r in self._healthy():
            try:
                keys.update(r.pending())
            except OSError as exc:
                self._fail(r, exc, "reading the under-replication notes")
        return sorted(keys)

    @property
    def degraded(self) -> bool:
        """A root has failed, or an object has fewer copies than the store has roots."""
        return any(not r.ok for r in self.roots) or bool(self._opened and self.under_replicated())

    def status(self) -> dict[str, Any]:
        """``{"healthy", "degraded", "store_id", "roots": [{path, state, error, objects, partials,
        quarantined, free_bytes}], "suspect", "under_replicated"}``."""
        roots = []
        for r in self.roots:
            info: dict[str, Any] = {"path": str(r.root), "state": r.state, "error": r.error}
            if r.ok:
                try:
                    info["objects"] = sum(1 for _ in r.iter_keys())
                    info["partials"] = sum(1 for _ in r.tmp.glob("*.json"))
                    info["quarantined"] = r.quarantined()
                    info["free_bytes"] = shutil.disk_usage(r.root).free
                except OSError as exc:
                    self._fail(r, exc, "reading status")
                    info.update(state=r.state, error=r.error)
            roots.append(info)
        under = self.under_replicated() if any(r.ok for r in self.roots) else []
        all_ok = all(r.ok for r in self.roots)
        return {"healthy": all_ok and not under and not self.suspect,
                "degraded": (not all_ok or bool(under)) and any(r.ok for r in self.roots),
                "store_id": self.store_id, "roots": roots,
                "suspect": sorted(f"{k} @ {root}" for k, root in self.suspect), "under_replicated": under}

    # ---- keys and metadata trust ----------------------------------------------------------
    def _master(self) -> KeyRing:
        if self.keyring is None:
            raise ConfigError("this store has no key: give key_file= (CLI: --key-file KEY)")
        return self.keyring

    def _mac_keys(self) -> MacKeys:
        """The HMAC keys of this store's metadata (from ``metadata_key`` and the keyring)."""
        if self._macs is None:
            masters = ([self.metadata_key] if self.metadata_key else []) + list(self.keyring.keys if self.keyring else [])
            self._macs = MacKeys.derive(masters, self.store_id or "")
        return self._macs

    def _tombstones(self, key: str, roots: list[Replica]) -> list[tuple[Replica, Tombstone, str]]:
        """Every readable tombstone of ``key`` on ``roots`` with its trust (metadata.VERIFIED ...)."""
        now, macs = time.time_ns(), self._mac_keys()
        return [(r, t, t.trust(macs, now)) for r in roots if (t := r.read_tombstone(key)) is not None]

    def honours(self, trust: str) -> bool:
        """Whether a tombstone of ``trust`` makes its object count as deleted: a verified one always;
        one that cannot be checked (unsigned, another key) only in a store opened without keys, which
        cannot tell a forgery and so keeps a deleted object hidden (but never removes data for it)."""
        if trust == VERIFIED:
            return True
        return trust in (UNVERIFIABLE, UNSIGNED) and not self._mac_keys().keys

    def _deleted_ns(self, key: str) -> int | None:
        """When ``key`` was deleted, by the newest tombstone :meth:`honours` accepts, or ``None``."""
        times = [t.deleted_ns for _r, t, trust in self._tombstones(key, self._healthy()) if self.honours(trust)]
        return max(times, default=None)

    def _sidecars(self, key: str) -> tuple[list[tuple[Replica, ObjectMeta]], list[tuple[Replica, ObjectMeta]]]:
        """``(trusted, distrusted)`` readable sidecars of ``key`` on the healthy roots: distrusted
        ones are forged (MAC) or from the far future (logged)."""
        now, macs = time.time_ns(), self._mac_keys()
        trusted, distrusted = [], []
        for r in self._healthy():
            try:
                m = r.read_meta(key)
            except (OSError, ValueError):
                continue
            if m is None:
                continue
            trust = m.trust(macs, now)
            if trust in (FORGED, IMPLAUSIBLE):
                logger.error("object %r: the sidecar on %s is %s (run `surgbox store scrub`)", key, r.root, trust)
                distrusted.append((r, m))
            else:
                trusted.append((r, m))
        return trusted, distrusted

    # ---- objects --------------------------------------------------------------------------
    def _find_meta(self, key: str) -> tuple[ObjectMeta, list[Replica]]:
        """The newest valid sidecar of ``key`` and the healthy roots holding a matching, full-size copy.
        Distrusted sidecars are used only when there is no other (reading authenticates every
        segment anyway: a forged sidecar can make a read fail, never return other data)."""
        trusted, distrusted = self._sidecars(key)
        found = trusted or distrusted
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

    def exists(self, key: str) -> bool:
        """Whether ``key`` is committed: a sidecar exists (even a corrupt one) and no newer tombstone."""
        validate_key(key)
        roots = [r for r in self._healthy() if r.meta_path(key).is_file()]
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
        """The sidecar of a committed object (``plaintext_size``, ``sha256`` of the ciphertext,
        ``metadata``, ``segment_size``, ``created_ns``, ``recovered``...)."""
        return self._find_meta(validate_key(key))[0]

    def _check_key_shape(self, key: str) -> None:
        """:class:`StoreError` when ``key`` (its data file or its sidecar/tombstone) would be a folder
        of other objects' files, or lie inside another object's file."""
        parts = key.split("/")
        for r in self._healthy():
            for tree, leaves in (("objects", (key,)), ("meta", (key + ".json", key + ".deleted"))):
                base = r.root / tree
                if any((base / leaf).is_dir() for leaf in leaves):
                    raise StoreError(f"object key {key!r} collides with a folder of other objects ({tree}/{leaves[0]}/); "
                                     f"choose another key")
                for i in range(1, len(parts)):
                    above = "/".join(parts[:i])
                    if (base / above).is_file():
                        raise StoreError(f"object key {key!r} would lie inside the file of another object "
                                         f"({tree}/{above}); choose another key")

    def writer(self, key: str, metadata: Mapping[str, str] | None = None, *, recovered: bool = False,
               segment_size: int | None = None) -> StoreWriter:
        """A new object's stream (refuses an existing key: delete it first). Committed by ``close()``.
        ``segment_size``: ciphertext bytes per segment of this object (default the store's); smaller
        segments lose less on a crash (the recorder uses 32 KiB for video, 4 KiB for data tracks)."""
        validate_key(key)
        master = self._master().primary
        seg = self.segment_size if segment_size is None else int(segment_size)
        try:
            check_segment_size(seg)
        except ValueError as exc:
            raise ConfigError(f"object {key!r}: {exc}") from None
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        w = StoreWriter(self, key, master, meta, recovered, segment_size=seg)
        self._lock_key(w)  # one writer per key at a time (this process or another): no lost commit
        try:
            if self.exists(key):
                raise StoreError(f"object {key!r} already exists; delete it first (objects are never overwritten)")
            self._check_key_shape(key)
            desc = json.dumps({"key": key, "key_id": master.key_id, "segment_size": seg,
                               "metadata": meta, "started_ns": time.time_ns()}).encode()
            w.begin(self._healthy(), uuid.uuid4().hex, desc)
        except BaseException:
            w.abort()
            raise
        return w

    def _lock_key(self, w: StoreWriter) -> None:
        """Lock ``w.key`` on every healthy root (``tmp/KEYHASH.lock``, ``flock``: released by the kernel
        if the process dies); :class:`StoreError` naming the key when another writer holds it."""
        name = key_hash(w.key) + ".lock"
        for r in self._healthy():
            path = r.tmp / name
            try:
                fd = lock_file(path)
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
                src = FdSource.open(r.data_path(key))
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

        return open_copies(sources, master.material, object_aad(key), segment_size=meta.segment_size,
                           cache_segments=self.cache_segments, on_bad_copy=bad_copy, name=key, owned=sources)

    def ciphertext(self, key: str) -> tuple[Any, ObjectMeta]:
        """``(binary file, sidecar)``: one copy of ``key``'s ciphertext exactly as stored (a copy not
        suspected of damage first) and its sidecar, whose ``sha256``/``ciphertext_size`` the caller
        checks while reading (upload sends objects encrypted, docs/upload.md). Close the file."""
        meta, copies = self._find_meta(validate_key(key))
        copies.sort(key=lambda r: (key, str(r.root)) in self.suspect)
        for r in copies:
            try:
                return open(r.data_path(key), "rb"), meta
            except OSError as exc:
                self._fail(r, exc, f"reading {key!r}")
        raise IntegrityError(f"object {key!r}: no copy matches its sidecar (size/checksum); run `surgbox store scrub`")

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
        """Remove ``key``: write a signed tombstone (``meta/KEY.deleted``) on every healthy root, then
        remove the sidecar and the data there. A root that missed the delete (offline) keeps its copy
        until ``scrub`` removes it; until then reads and listings honour the newer tombstone."""
        validate_key(key)
        if self._mac_keys().signer is None:
            raise ConfigError(f"deleting {key!r} needs a key: the tombstone is signed with it (give keyring= or "
                              f"key_file=, CLI --key-file KEY)")
        if not self.exists(key):
            raise ObjectNotFoundError(f"no object {key!r} to delete")
        now = time.time_ns()
        created = max((m.created_ns for _r, m in self._sidecars(key)[0]), default=0)
        tomb = Tombstone.create(key, max(now, created + 1), self._mac_keys())  # newer than every copy
        for r in self._healthy():
            try:
                r.write_tombstone(tomb)
                r.remove_copy(key)
                r.remove_pending(key)
            except OSError as exc:
                self._fail(r, exc, f"deleting {key!r}")


__all__ = ["EncryptedStore", "ObjectNotFoundError"]
