"""Recording into a :class:`~surgbox.interfaces.Store`: everything encrypted, no plaintext on disk.

:class:`StoreSink` writes the video, sidecar, data track and snapshots of a recording as store
objects; the catalog's :class:`surgbox.catalog.recording_sink.EventSink` builds on it for an
event. Crash recovery is the store's (``store.recover()``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import IO, Any

import attrs

from ..errors import ConfigError
from ..interfaces import SegmentedStore
from .raw_copy import raw_name
from .sinks import FILE_KINDS, RecordedFile, RecordingSink, sidecar_bytes

log = logging.getLogger(__name__)

RECORDING_SEGMENT_SIZE = 32 * 1024
"""Ciphertext segment size of a recording's video in a store. A crash loses the open segment:
32 KiB is ~0.5 s of the demo (~0.5 Mbit/s; 1 MiB would be ~15 s) and 0.03 s at 8 Mbit/s, for 16
bytes of tag per segment (0.05 %)."""

SMALL_SEGMENT_SIZE = 4096
"""Segment size of a recording's data track and sidecar in a store: a data track grows by a few
hundred bytes a second, so a crash loses at most ~4 KiB of it (seconds, not minutes)."""

class _HashingWriter:
    """Write-through wrapper of a store writer that hashes (SHA-256) and counts the plaintext;
    ``on_close(self)`` runs after the inner writer committed."""

    def __init__(self, inner: Any, name: str, on_close: Any = None):
        self.inner, self.name, self.on_close = inner, name, on_close
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        n = self.inner.write(data)
        n = len(data) if n is None else n
        self.sha.update(memoryview(data)[:n])
        self.size += n
        return n

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if callable(flush):
            flush()

    def sync(self) -> None:
        sync = getattr(self.inner, "sync", None)
        if callable(sync):
            sync()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inner.close()
        if self.on_close is not None:
            self.on_close(self)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            abort = getattr(self.inner, "abort", None)
            if callable(abort):
                abort()


@attrs.define(eq=False)
class StoreSink(RecordingSink):
    """Everything encrypted into ``store`` (an opened :class:`~surgbox.interfaces.Store`), nothing
    in plaintext on disk. Objects: the video at ``key`` (e.g. ``recordings/demo-1/recording.mp4``),
    the sidecar ``KEY.json``, the data track ``KEY.data.jsonl`` and snapshots
    ``KEY.snapshot-0001-composite.png`` (flat names: they are valid event file names too).

    ``segment_size`` / ``small_segment_size``: ciphertext segment sizes of the video and of the
    data track and sidecar (passed to ``store.writer(..., segment_size=)`` when the store takes
    it: a :class:`~surgbox.interfaces.SegmentedStore`; see :data:`RECORDING_SEGMENT_SIZE`). Crash safety: the video writer is synced about once
    a second; after a ``kill -9``, ``store.recover()`` (``surgbox store recover``) commits every
    complete segment. The sidecar is replaced (delete + write) at start, after each snapshot and
    at the end, so after a crash it may be missing: the video's container metadata holds the
    layout, sources, event and start time. ``close_store``: close ``store`` in :meth:`close`.
    Object metadata (unencrypted) holds only ``kind``.
    """

    store: Any = None
    key: str = ""
    segment_size: int | None = RECORDING_SEGMENT_SIZE
    small_segment_size: int | None = SMALL_SEGMENT_SIZE
    close_store: bool = False
    _video: _HashingWriter | None = attrs.field(default=None, init=False, alias="_video")
    _files: dict[str, RecordedFile] = attrs.field(factory=dict, init=False, alias="_files")
    _open: list[_HashingWriter] = attrs.field(factory=list, init=False, alias="_open")
    _sidecar_written: bool = attrs.field(default=False, init=False, alias="_sidecar_written")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"store:{self.key}"

    @property
    def base(self) -> str:
        """The video key's last part (names in the sidecar are relative to its folder)."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def prefix(self) -> str:
        return self.key[: len(self.key) - len(self.base)]

    @property
    def sidecar_key(self) -> str:
        return self.key + ".json"

    @property
    def data_track_name(self) -> str:  # type: ignore[override]
        return self.base + ".data.jsonl"

    def open(self) -> None:
        if self.store is None or not self.key:
            raise ConfigError("StoreSink needs an opened store and the video's object key")

    def _writer(self, key: str, kind: str, segment_size: int | None) -> Any:
        if segment_size is not None and isinstance(self.store, SegmentedStore):  # the store declares it
            return self.store.writer(key, {"kind": kind}, segment_size=segment_size)
        return self.store.writer(key, {"kind": kind})

    def _committed(self, kind: str) -> Any:
        def done(w: _HashingWriter) -> None:
            with self._lock:
                self._files[w.name] = RecordedFile(kind, w.name, w.size, w.sha.hexdigest())
                if w in self._open:
                    self._open.remove(w)
        return done

    def _track(self, w: _HashingWriter) -> _HashingWriter:
        with self._lock:
            self._open.append(w)
        return w

    def video_target(self) -> IO[bytes]:
        if self._video is None:
            self._video = self._track(_HashingWriter(self._writer(self.key, "segment", self.segment_size), self.key,
                                                     self._committed("segment")))
        return self._video  # type: ignore[return-value]

    def sync(self) -> None:
        if self._video is not None and not self._video.closed:
            self._video.sync()

    def finish_video(self) -> None:
        if self._video is not None:
            self._video.close()

    def write_sidecar(self, meta: Mapping[str, Any]) -> None:
        data = sidecar_bytes(meta)
        with self._lock:
            if self._sidecar_written:
                self.store.delete(self.sidecar_key)
                self._sidecar_written = False
            w = self._writer(self.sidecar_key, "sidecar", self.small_segment_size)
            with w:
                w.write(data)
            self._sidecar_written = True
            self._files[self.sidecar_key] = RecordedFile("sidecar", self.sidecar_key, len(data), hashlib.sha256(data).hexdigest())

    def data_track_target(self) -> IO[bytes]:
        key = self.prefix + self.data_track_name
        return self._track(_HashingWriter(self._writer(key, "data", self.small_segment_size), key,
                                          self._committed("data")))  # type: ignore[return-value]

    def raw_target(self, source: str) -> tuple[str, IO[bytes]]:
        name = raw_name(self.base, source)
        key = self.prefix + name
        return name, self._track(_HashingWriter(self._writer(key, "raw", self.segment_size), key,
                                                self._committed("raw")))  # type: ignore[return-value]

    def snapshot_name(self, index: int, what: str) -> str:
        return f"{self.base}.snapshot-{index:04d}-{what}.png"

    def write_snapshot(self, name: str, png: bytes) -> None:
        key = self.prefix + name
        w = _HashingWriter(self._writer(key, "snapshot", None), key, self._committed("snapshot"))
        try:
            w.write(png)
        except BaseException:
            w.abort()
            raise
        w.close()

    def files(self) -> list[RecordedFile]:
        with self._lock:
            return sorted(self._files.values(), key=lambda f: (FILE_KINDS.index(f.kind), f.name))

    def abort(self) -> None:
        with self._lock:
            pending = list(self._open)
        for w in pending:
            w.abort()
        if self._sidecar_written:
            with contextlib.suppress(Exception):
                self.store.delete(self.sidecar_key)
        self._close_store()

    def close(self, error: BaseException | None = None) -> None:
        with self._lock:
            pending = list(self._open)
        for w in pending:  # normally none: the recorder closed them
            try:
                w.close()
            except Exception as exc:  # pragma: no cover
                log.error("store object %s could not be committed: %s", w.name, exc)
        self._close_store()

    def _close_store(self) -> None:
        if self.close_store and self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()
