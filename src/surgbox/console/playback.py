"""Playback in the browser: an event's encrypted files decrypted on the fly, served with HTTP range requests.

A ``<video>`` element asks for byte ranges (``Range: bytes=START-END``) as it plays and seeks.
:class:`PlaybackReaders` keeps one decrypting reader per (browser session, file), opened through
:meth:`surgbox.catalog.events.EventManager.open_file` (the ``view`` permission, audited once as
``file.read``): a seekable plaintext stream of the store's segmented AES-GCM objects, so a seek
decrypts only the segments it needs and nothing decrypted is written to disk. Every request
re-checks ``view`` with the catalog (a disabled user loses playback at once); the readers of a
session close when it ends (logout, idle) and after ``idle_s`` seconds unused.

>>> rng = parse_range("bytes=100-", size=1000)
>>> (rng.start, rng.stop)
(100, 1000)
>>> parse_range("bytes=-10", size=1000)
range(990, 1000)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import attrs

CHUNK = 256 * 1024
_MAX_READERS = 8  # per session: a few files open at once (a segment, its snapshots)


class RangeError(ValueError):
    """A ``Range`` header that does not fit the file (answered with 416)."""


def parse_range(header: str | None, size: int) -> range | None:
    """The byte range of a single-range ``Range`` header (``None``: no header, send it all).
    Raises :class:`RangeError` for a range outside ``size`` or more than one range."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        raise RangeError(f"unsupported range {header!r}")
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise RangeError(f"empty suffix range {header!r}")
            return range(max(0, size - n), size)
        start = int(first)
        stop = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        raise RangeError(f"bad range {header!r}") from None
    if start < 0 or start >= size or stop <= start:
        raise RangeError(f"range {header!r} outside a file of {size} bytes")
    return range(start, stop)


@attrs.define(eq=False)
class _Reader:
    stream: IO[bytes]
    stack: contextlib.ExitStack
    size: int
    event: Any
    used: float
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def close(self) -> None:
        with self.lock, contextlib.suppress(Exception):
            self.stack.close()


@attrs.define(eq=False)
class PlaybackReaders:
    """Open decrypting readers, keyed by (session token, event id, file name). Thread-safe."""

    idle_s: float = 300.0
    _open: dict[tuple[str, str, str], _Reader] = attrs.field(factory=dict, init=False, alias="_open")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    def reader(self, token: str, catalog_session: Any, event_id: str, name: str) -> _Reader:
        """The reader of ``name`` in ``event_id`` for this session (opened and audited once)."""
        key = (token, event_id, name)
        self.sweep()
        with self._lock:
            r = self._open.get(key)
        if r is not None:
            catalog_session.authorize("view", r.event, operation="file.read")  # still allowed?
            r.used = time.monotonic()
            return r
        events = catalog_session.events
        stack = contextlib.ExitStack()
        try:
            ev = events.get(event_id)
            rec = ev.file(name)
            stream = stack.enter_context(events.open_file(event_id, name))
        except BaseException:
            stack.close()
            raise
        r = _Reader(stream, stack, rec.size, ev, time.monotonic())
        with self._lock:
            old = self._open.pop(key, None)
            mine = sorted((k for k in self._open if k[0] == token), key=lambda k: self._open[k].used)
            evicted = [self._open.pop(k) for k in mine[: max(0, len(mine) - _MAX_READERS + 1)]]
            self._open[key] = r
        for x in ([old] if old else []) + evicted:
            x.close()
        return r

    def chunks(self, r: _Reader, rng: range) -> Iterator[bytes]:
        """The plaintext bytes of ``rng``, in chunks of at most :data:`CHUNK` bytes."""
        pos = rng.start
        while pos < rng.stop:
            with r.lock:
                r.stream.seek(pos)
                data = r.stream.read(min(CHUNK, rng.stop - pos))
            if not data:
                return
            pos += len(data)
            r.used = time.monotonic()
            yield data

    def close_session(self, token: str) -> None:
        """Close every reader of a session (it ended)."""
        with self._lock:
            gone = [self._open.pop(k) for k in list(self._open) if k[0] == token]
        for r in gone:
            r.close()

    def sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [self._open.pop(k) for k, r in list(self._open.items()) if now - r.used > self.idle_s]
        for r in gone:
            r.close()

    def close(self) -> None:
        with self._lock:
            gone = list(self._open.values())
            self._open.clear()
        for r in gone:
            r.close()

    def __len__(self) -> int:
        return len(self._open)
