"""Streaming encryption: :class:`EncryptingWriter`, a write-only file object in Tink's format.

See :mod:`surgbox.crypto.format` for the bytes. A segment goes to the sink as soon as it is known not
to be the last one, so after a crash the sink holds every complete segment; a stream without its
last-flagged segment never decrypts strictly, and :func:`~surgbox.crypto.salvage.salvage` recovers
its authentic prefix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
from typing import IO, Any

import attrs

from .._fs import write_all
from .format import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, TAG_SIZE, SegmentCipher, StreamFormat

logger = logging.getLogger("surgbox.crypto.streaming")

__all__ = ["EncryptingWriter"]


class _BackgroundSink:
    """Writes ciphertext segments to ``sink`` from one thread so file I/O overlaps encryption.

    Holds at most ``depth + 1`` segment buffers (bounded memory); the first write error is raised
    to the producer on its next segment, ``drain()`` or ``stop()``.
    """

    def __init__(self, sink: Any, size: int, depth: int = 2):
        self.sink = sink
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(depth + 1):
            self._free.put(bytearray(size))
        self._todo: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="surgbox-encrypted-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._todo.get()
            try:
                if item is None:
                    return
                buf, n = item
                if self._error is None:
                    try:
                        write_all(self.sink, memoryview(buf)[:n])
                    except BaseException as exc:  # handed to the producer
                        self._error = exc
                self._free.put(buf)
            finally:
                self._todo.task_done()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def buffer(self) -> bytearray:
        buf = self._free.get()
        self._check()
        return buf

    def submit(self, buf: bytearray, n: int) -> None:
        self._todo.put((buf, n))

    def drain(self) -> None:
        self._todo.join()
        self._check()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()



@attrs.define(eq=False, slots=False, weakref_slot=False)
class EncryptingWriter(io.RawIOBase):
    """A write-only binary file object that encrypts into ``sink`` in Tink's streaming format.

    Build one with :meth:`open` (writes the header). Memory is one plaintext and one ciphertext
    segment whatever the stream length. A segment goes to ``sink`` as soon as it is known not to be
    the last one (its plaintext is full and one more byte arrived), so after a crash ``sink`` holds
    every complete segment (see :func:`salvage`). ``close()`` writes the last-flagged segment and
    flushes ``sink``; it closes ``sink`` only if ``close_sink``. ``abort()`` stops without the final
    segment (the stream then never decrypts strictly); so does dropping the writer without
    ``close()`` (garbage collection logs a warning and aborts: an abandoned stream is never marked
    complete). Not thread-safe.

    ``background=True`` writes segments to ``sink`` from a helper thread (at most 3 segments in
    flight), overlapping I/O with encryption for bulk throughput; a crash may then lose up to 3
    segments instead of 1, and ``flush()`` waits for the thread.
    """

    sink: Any
    _cipher: SegmentCipher = attrs.field(alias="_cipher", repr=False)
    format: StreamFormat = StreamFormat()
    close_sink: bool = False
    _buf: bytearray = attrs.field(init=False, repr=False)
    _out: bytearray = attrs.field(init=False, repr=False)
    _fill: int = attrs.field(init=False, default=0)
    _index: int = attrs.field(init=False, default=0)
    plaintext_size: int = attrs.field(init=False, default=0)
    ciphertext_size: int = attrs.field(init=False, default=0)
    _finished: bool = attrs.field(init=False, default=False)
    _bg: _BackgroundSink | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        io.RawIOBase.__init__(self)
        self._buf = bytearray(self.format.plain)
        self._out = bytearray(self.format.plain + TAG_SIZE)

    @classmethod
    def open(cls, sink: IO[bytes] | Any, key: bytes, associated_data: bytes = b"", *,
             segment_size: int = DEFAULT_SEGMENT_SIZE, close_sink: bool = False, background: bool = False,
             salt: bytes | None = None, nonce_prefix: bytes | None = None) -> EncryptingWriter:
        """Start a stream on ``sink`` (anything with ``write``) under the 32-byte master ``key``.

        ``salt``/``nonce_prefix`` are random unless given (given only for test vectors: reusing
        them with the same key and associated data breaks confidentiality).
        """
        fmt = StreamFormat(segment_size)
        cipher = SegmentCipher.new(key, associated_data, salt=salt, nonce_prefix=nonce_prefix)
        self = cls(sink, cipher, fmt, close_sink)
        write_all(sink, cipher.header)
        self.ciphertext_size = HEADER_SIZE
        if background:
            self._bg = _BackgroundSink(sink, fmt.segment_size)
        return self

    @property
    def segments_written(self) -> int:
        """Complete segments handed to the sink so far (the header not counted)."""
        return self._index

    def writable(self) -> bool:
        return True

    def _capacity(self) -> int:
        return self.format.first_plain if self._index == 0 else self.format.plain

    def _emit(self, last: bool, plain: memoryview | None = None) -> None:
        if plain is None:
            plain = memoryview(self._buf)[: self._fill]
        n = len(plain)
        if self._bg is not None:
            buf = self._bg.buffer()
            self._cipher.encrypt_into(self._index, last, plain, memoryview(buf)[: n + TAG_SIZE])
            self._bg.submit(buf, n + TAG_SIZE)
        else:
            out = memoryview(self._out)[: n + TAG_SIZE]
            self._cipher.encrypt_into(self._index, last, plain, out)
            write_all(self.sink, out)
        self.ciphertext_size += n + TAG_SIZE
        self._index += 1
        self._fill = 0

    def write(self, data: Any) -> int:
        """Buffer and encrypt ``data`` (bytes-like); returns ``len(data)`` in bytes."""
        if self.closed or self._finished:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        n, pos = len(view), 0
        while pos < n:
            cap = self._capacity()
            if self._fill == cap:  # more data follows, so the full buffer is not the last segment
                self._emit(last=False)
                cap = self._capacity()
            if self._fill == 0 and n - pos > cap:  # a whole non-last segment in hand: no copy
                self._emit(last=False, plain=view[pos : pos + cap])
                pos += cap
                continue
            take = min(cap - self._fill, n - pos)
            self._buf[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
        self.plaintext_size += n
        return n

    def write_segment(self, plain: Any, *, last: bool) -> None:
        """Encrypt ``plain`` as the next whole segment, without copying it (bulk encryption, see
        :func:`encrypt_file`). Allowed only while :meth:`write` has nothing buffered. ``plain`` must be
        exactly the segment's plaintext capacity (``format.first_plain`` for segment 0, ``format.plain``
        after) unless ``last``, which ends the stream like :meth:`finish` (1 .. capacity bytes; 0 only
        for an empty stream)."""
        if self.closed or self._finished:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(plain).cast("B")
        cap = self._capacity()
        if self._fill or len(view) > cap or (not last and len(view) != cap):
            raise ValueError(f"write_segment needs exactly {cap} bytes (or up to {cap} for the last segment) "
                             f"and nothing buffered by write(); got {len(view)} with {self._fill} buffered")
        if not last:
            self._emit(last=False, plain=view)
            self.plaintext_size += len(view)
            return
        self._end(view)
        self.plaintext_size += len(view)

    def flush(self) -> None:
        """Hand every complete segment to the sink and flush it (the open segment stays buffered)."""
        if self.closed:
            return
        if self._bg is not None:
            self._bg.drain()
        if hasattr(self.sink, "flush"):
            self.sink.flush()

    def finish(self) -> None:
        """Write the last segment and flush the sink; idempotent. ``close()`` calls it."""
        if self._finished:
            return
        self._end()

    def _end(self, plain: memoryview | None = None) -> None:
        """Encrypt the last segment (``plain``, or what ``write`` buffered), wait for the
        background writer, and flush the sink."""
        self._finished = True
        try:
            self._emit(last=True, plain=plain)
            if self._bg is not None:
                self._bg.drain()
        finally:
            if self._bg is not None:
                self._bg.stop()
        if hasattr(self.sink, "flush"):
            self.sink.flush()

    def abort(self) -> None:
        """Stop without writing the last segment (and close the sink if ``close_sink``)."""
        self._finished = True
        if self._bg is not None:
            self._bg.stop()
        self._close_sink()
        io.RawIOBase.close(self)

    def _close_sink(self) -> None:
        if self.close_sink and hasattr(self.sink, "close"):
            self.sink.close()

    def close(self) -> None:
        """Finish the stream (:meth:`finish`: the last-flagged segment) and close."""
        if self.closed:
            return
        try:
            self.finish()
        finally:
            self._close_sink()
            io.RawIOBase.close(self)

    def __del__(self) -> None:
        # io.IOBase's finalizer would call close() and so mark a dropped, unfinished stream as
        # complete. A writer garbage-collected without close() was abandoned (an exception, a bug):
        # leave it without the last segment, so strict decryption refuses it and salvage() reports
        # it as a prefix.
        if not getattr(self, "_finished", True) and not self.closed:
            logger.warning("EncryptingWriter dropped without close() after %d bytes: stream left unfinished "
                           "(no last segment; salvage() recovers its complete segments)", self.plaintext_size)
            try:
                self.abort()
            except Exception as exc:  # noqa: BLE001 - never raise from a finalizer
                logger.warning("aborting a dropped EncryptingWriter failed: %s", exc)
            return
        with contextlib.suppress(Exception):
            io.RawIOBase.__del__(self)

    def __repr__(self) -> str:
        return f"<EncryptingWriter segments={self._index} plaintext={self.plaintext_size}>"
