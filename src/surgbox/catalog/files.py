"""An event's files in the store: writing, reading back with checksums, and the store handle
given to the recorder (:meth:`EventManager.store_for`).

Objects are encrypted with the event's data key (:mod:`.keys`) under generated keys
(``events/<event id>/<token>``, :class:`~.keys.FileNames`): no file name, and so no patient data
typed into one, reaches the store's paths, sidecars, tombstones or partial files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import attrs

from ..errors import IntegrityError
from ..interfaces import Store, check_store
from .keys import FileNames
from .model import FileRecord, check_file_name

CHUNK = 1 << 20


def hash_stream(stream: IO[bytes], sink: Callable[[bytes], Any] | None = None) -> tuple[int, str]:
    """``(size, sha256 hex)`` of what ``stream`` reads until EOF, each chunk also given to ``sink``."""
    h, n = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
        if sink is not None:
            sink(chunk)
    return n, h.hexdigest()


@attrs.define(eq=False)
class EventFiles:
    """The objects of one event in an opened store ``inner`` (whose keyring holds the event's data
    key, ``key_id``). Closing it closes ``inner``."""

    inner: Any
    names: FileNames
    key_id: str

    @property
    def event_id(self) -> str:
        return self.names.event_id

    def writer(self, name: str, kind: str, metadata: Mapping[str, str] | None = None, **options: Any) -> IO[bytes]:
        """A new object for file ``name`` (its key generated, its name sealed in the metadata)."""
        key = self.names.object_key(check_file_name(name))
        meta = {**dict(metadata or {}), "kind": kind, "name": self.names.seal(key, name)}
        return self.inner.writer(key, meta, **options)

    def write(self, name: str, kind: str, data: bytes | IO[bytes]) -> tuple[str, int, str]:
        """Store ``data`` (bytes or a readable binary stream) as file ``name``: ``(store key, size, sha256)``."""
        h, size = hashlib.sha256(), 0
        with self.writer(name, kind) as w:
            if isinstance(data, (bytes, bytearray, memoryview)):
                w.write(data)
                h.update(data)
                size = len(data)
            else:
                while chunk := data.read(CHUNK):
                    w.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
        return self.names.object_key(name), size, h.hexdigest()

    def reader(self, store_key: str) -> IO[bytes]:
        return self.inner.reader(store_key)

    def digest(self, store_key: str) -> tuple[int, str]:
        """``(size, sha256)`` of an object's plaintext, read back (which also authenticates it)."""
        with self.inner.reader(store_key) as r:
            return hash_stream(r)

    def copy_verified(self, rec: FileRecord, sink: Callable[[bytes], Any]) -> None:
        """Stream one file into ``sink`` and check its SHA-256 and size against the catalog."""
        with self.inner.reader(rec.store_key) as r:
            n, digest = hash_stream(r, sink)
        if digest != rec.sha256 or n != rec.size:
            raise IntegrityError(f"event {rec.event_id} file {rec.name}: SHA-256/size of the decrypted data "
                                 f"({digest[:16]}..., {n} bytes) differ from the catalog "
                                 f"({rec.sha256[:16]}..., {rec.size} bytes); run `surgbox store scrub`")

    def stored(self) -> dict[str, tuple[str, str]]:
        """``{store key: (file name, kind)}`` of the event's objects in the store (needs the store's
        ``info`` capability: the sealed name and the kind are in its metadata)."""
        check_store(self.inner, "info", purpose="listing an event's objects")
        out = {}
        for k in self.inner.keys(self.names.prefix):
            meta = self.inner.info(k).metadata
            name = self.names.name_of(k, meta)
            if name is not None:
                out[k] = (name, str(meta.get("kind", "")))
        return out

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> EventFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class Guard:
    """What the recorder's store handle may do, decided by the catalog session that made it:
    ``authorize(action, operation)`` raises :class:`~.errors.AccessDenied` (audited);
    ``listed(store_key)`` tells whether the catalog lists the object as a file of the event;
    ``forget(store_key)`` removes that file record (after a permitted delete)."""

    authorize: Callable[[str, str], Any]
    listed: Callable[[str], FileRecord | None]
    forget: Callable[[FileRecord], Any]


class EventStore(Store):
    """A :class:`~surgbox.interfaces.Store` whose keys are the file names of one event, encrypting
    with the event's data key (what :meth:`EventManager.store_for` returns; closing it closes the
    underlying store).

    Permissions: it was opened with ``record``; reading needs ``view``. ``delete(name)`` of an
    object this handle wrote itself and that the catalog does not list yet (a recording replacing
    its sidecar) needs nothing more; deleting anything else needs ``delete`` (and also removes the
    file from the catalog, audited as ``file.delete``)."""

    def __init__(self, files: EventFiles, guard: Guard):
        self.files, self.guard = files, guard
        self.event_id, self.key_id = files.event_id, files.key_id
        self._written: set[str] = set()

    @property
    def inner(self) -> Any:
        return self.files.inner

    @property
    def segment_size(self) -> int:
        """The underlying store's segment size; ``writer(..., segment_size=N)`` passes through
        (so this handle is a :class:`~surgbox.interfaces.SegmentedStore` when that store is)."""
        return self.inner.segment_size

    def writer(self, key: str, metadata: Mapping[str, str] | None = None, **options: Any) -> IO[bytes]:
        """``options`` go to the underlying store's writer (e.g. ``segment_size``)."""
        kind = str((metadata or {}).get("kind", ""))
        w = self.files.writer(key, kind, metadata, **options)
        self._written.add(key)
        return w

    def _key(self, name: str) -> str:
        rec = self.guard.listed(self.files.names.object_key(check_file_name(name)))
        if rec is None:
            rec = self.guard.listed(self.files.names.prefix + name)  # stored before names were sealed
        return rec.store_key if rec is not None else self.files.names.object_key(name)

    def reader(self, key: str) -> IO[bytes]:
        self.guard.authorize("view", "file.read")
        return self.files.reader(self._key(key))

    def info(self, key: str) -> Any:
        return self.inner.info(self._key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(n for n, _ in self.files.stored().values() if n.startswith(prefix)))

    def delete(self, key: str) -> None:
        store_key = self._key(key)
        rec = self.guard.listed(store_key)
        if rec is not None or key not in self._written:
            self.guard.authorize("delete", "file.delete")
        self.inner.delete(store_key)
        self._written.discard(key)
        if rec is not None:
            self.guard.forget(rec)

    def status(self) -> Mapping[str, Any]:
        return self.inner.status()

    def open(self) -> None:
        pass  # opened by EventManager.store_for

    def close(self) -> None:
        self.files.close()
