"""Streaming AES-256-GCM in Tink's AES-GCM-HKDF streaming format (byte-compatible with Tink).

Ciphertext layout (all integers big-endian)::

    header    = 0x28 (header length, 40) || salt (32 random bytes) || nonce_prefix (7 random bytes)
    segment i = AES-256-GCM(derived_key, nonce_i, plaintext_i) (ciphertext || 16-byte tag), no GCM AAD
    nonce_i   = nonce_prefix || uint32(i) || (0x01 if i is the last segment else 0x00)
    derived_key = HKDF-SHA256(ikm=master key, salt=salt, info=associated data, length=32)

    file = header || segment 0 || segment 1 || ... || segment n-1

Every ciphertext segment is ``segment_size`` bytes (default 1 MiB, 1048576) except the first, which is
shorter by the 40-byte header (so segment boundaries stay aligned on ``segment_size`` in the file),
and the last, which may be shorter. Plaintext per segment: ``segment_size - 56`` bytes for segment 0,
``segment_size - 16`` for the others. An empty message is one empty last segment (the header plus a
16-byte tag).

Authentication: each segment's tag covers its position (counter in the nonce) and whether it is the
last one, and the key is bound to the associated data, so modified, reordered, truncated or extended
ciphertexts and wrong associated data or keys all fail with :class:`DecryptionError`; a decrypting
reader never returns plaintext from a segment that did not authenticate.

Crash recovery trade-off: a writer killed before :meth:`EncryptingWriter.close` leaves a stream without
a last-flagged segment, which strict (Tink) decryption refuses as truncated. :func:`salvage`
authenticates the complete segments in order and returns that prefix, reporting ``complete=False``:
such a prefix is authentic, but a crash cannot be told from an attacker cutting the file at a segment
boundary, so salvaged data must be treated as "at least this much was written", never as the whole.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import queue
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError, SurgboxError

KEY_SIZE = 32  # AES-256 derived key and salt size, bytes
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
HEADER_SIZE = 1 + KEY_SIZE + NONCE_PREFIX_SIZE  # 40
DEFAULT_SEGMENT_SIZE = 1 << 20  # ciphertext segment size, bytes (Tink's AES256_GCM_HKDF_1MB)
MAX_SEGMENTS = 1 << 32  # the segment counter is 4 bytes

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SEGMENT_SIZE", "HEADER_SIZE", "TAG_SIZE", "DecryptionError", "DecryptingReader",
    "EncryptingWriter", "SalvageResult", "StreamFormat", "decrypt_file", "derive_key", "encrypt_file", "salvage",
]


class DecryptionError(IntegrityError):
    """Ciphertext failed authentication (tampered, truncated, reordered, wrong key or associated data)."""


def _check_segment_size(inst: Any, attr: Any, value: int) -> None:
    if not HEADER_SIZE + TAG_SIZE < value < 1 << 31:
        raise ValueError(f"segment_size must be in ({HEADER_SIZE + TAG_SIZE}, 2**31), got {value}")


@attrs.frozen
class StreamFormat:
    """Segment geometry of an AES256-GCM-HKDF stream; ``segment_size`` is the ciphertext segment size in bytes."""

    segment_size: int = attrs.field(default=DEFAULT_SEGMENT_SIZE, validator=_check_segment_size)

    @property
    def first_plain(self) -> int:
        """Plaintext bytes in segment 0."""
        return self.segment_size - HEADER_SIZE - TAG_SIZE

    @property
    def plain(self) -> int:
        """Plaintext bytes in every other full segment."""
        return self.segment_size - TAG_SIZE

    def segment_count(self, plaintext_size: int) -> int:
        """Segments used for ``plaintext_size`` bytes (at least 1)."""
        if plaintext_size <= self.first_plain:
            return 1
        return 1 + -(-(plaintext_size - self.first_plain) // self.plain)

    def ciphertext_size(self, plaintext_size: int) -> int:
        """Total file size in bytes for ``plaintext_size`` bytes of plaintext."""
        return HEADER_SIZE + plaintext_size + TAG_SIZE * self.segment_count(plaintext_size)

    def layout(self, ciphertext_size: int) -> tuple[int, int]:
        """``(segments, plaintext_size)`` of a complete stream of ``ciphertext_size`` bytes.

        Raises :class:`DecryptionError` when no complete stream has that size (cut inside a tag).
        """
        body = ciphertext_size - HEADER_SIZE
        if body < TAG_SIZE:
            raise DecryptionError(f"ciphertext of {ciphertext_size} bytes is too short (truncated)")
        first_ct = self.segment_size - HEADER_SIZE
        if body <= first_ct:
            return 1, body - TAG_SIZE
        rest = body - first_ct
        full, tail = divmod(rest, self.segment_size)
        if tail == 0:
            n = 1 + full
        elif tail < TAG_SIZE:
            raise DecryptionError(f"ciphertext of {ciphertext_size} bytes ends inside a segment tag (truncated)")
        else:
            n = 2 + full
        return n, body - TAG_SIZE * n

    def segment_offset(self, index: int) -> int:
        """File offset of ciphertext segment ``index``."""
        return HEADER_SIZE if index == 0 else index * self.segment_size

    def plain_offset(self, index: int) -> int:
        """Plaintext offset of the first byte of segment ``index``."""
        return 0 if index == 0 else self.first_plain + (index - 1) * self.plain

    def segment_at(self, plain_pos: int) -> int:
        """Index of the segment holding plaintext byte ``plain_pos``."""
        if plain_pos < self.first_plain:
            return 0
        return 1 + (plain_pos - self.first_plain) // self.plain


def derive_key(master_key: bytes, salt: bytes, associated_data: bytes) -> bytes:
    """The per-file AES-256 key: HKDF-SHA256(ikm=master_key, salt=salt, info=associated_data), 32 bytes."""
    if len(master_key) < KEY_SIZE:
        raise ValueError(f"master key must be at least {KEY_SIZE} bytes, got {len(master_key)}")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=associated_data).derive(master_key)


_HAS_INTO = hasattr(AESGCM, "encrypt_into")  # recent cryptography releases encrypt into a caller's buffer


def _encrypt_into(aead: AESGCM, nonce: bytes, plain: memoryview, out: memoryview) -> None:
    if _HAS_INTO:
        aead.encrypt_into(nonce, plain, None, out)
    else:  # older cryptography: one extra copy
        out[:] = aead.encrypt(nonce, bytes(plain), None)


def _decrypt_into(aead: AESGCM, nonce: bytes, ct: memoryview, out: memoryview) -> None:
    if _HAS_INTO:
        aead.decrypt_into(nonce, ct, None, out)
    else:
        out[:] = aead.decrypt(nonce, bytes(ct), None)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise SurgboxError(f"stream exceeds {MAX_SEGMENTS} segments; use a larger segment_size")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _parse_header(header: bytes, name: str) -> tuple[bytes, bytes]:
    if len(header) < HEADER_SIZE:
        raise DecryptionError(f"{name}: {len(header)} bytes is shorter than the {HEADER_SIZE}-byte header (truncated or not encrypted)")
    if header[0] != HEADER_SIZE:
        raise DecryptionError(
            f"{name}: header length byte is {header[0]}, expected {HEADER_SIZE}: not an AES256-GCM-HKDF "
            f"stream (or the header was modified)"
        )
    return bytes(header[1 : 1 + KEY_SIZE]), bytes(header[1 + KEY_SIZE : HEADER_SIZE])


def _write_all(sink: Any, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        n = sink.write(view)
        if n is None:  # non-blocking raw stream with nothing written: not supported here
            raise OSError("sink would block; give a blocking file object")
        view = view[n:]


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
                        _write_all(self.sink, memoryview(buf)[:n])
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
    _aead: AESGCM = attrs.field(alias="_aead", repr=False)
    _prefix: bytes = attrs.field(alias="_prefix", repr=False)
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
        salt = os.urandom(KEY_SIZE) if salt is None else salt
        prefix = os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
        if len(salt) != KEY_SIZE or len(prefix) != NONCE_PREFIX_SIZE:
            raise ValueError(f"salt must be {KEY_SIZE} bytes and nonce_prefix {NONCE_PREFIX_SIZE} bytes")
        self = cls(sink, AESGCM(derive_key(key, salt, associated_data)), prefix, fmt, close_sink)
        header = bytes([HEADER_SIZE]) + salt + prefix
        _write_all(sink, header)
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
        nonce = _nonce(self._prefix, self._index, last)
        if self._bg is not None:
            buf = self._bg.buffer()
            _encrypt_into(self._aead, nonce, plain, memoryview(buf)[: n + TAG_SIZE])
            self._bg.submit(buf, n + TAG_SIZE)
        else:
            out = memoryview(self._out)[: n + TAG_SIZE]
            _encrypt_into(self._aead, nonce, plain, out)
            _write_all(self.sink, out)
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


def _read_exact(src: Any, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of ``src`` (shorter only at end of file)."""
    fileno = getattr(src, "_surgbox_fd", None)
    if fileno is not None:
        return os.pread(fileno, size, offset)
    src.seek(offset)
    chunks, got = [], 0
    while got < size:
        chunk = src.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_into(src: Any, offset: int, view: memoryview) -> int:
    """Fill ``view`` from ``offset`` of ``src``; returns bytes read (fewer only at end of file)."""
    fileno = getattr(src, "_surgbox_fd", None)
    got = 0
    if fileno is not None:
        while got < len(view):
            n = os.preadv(fileno, [view[got:]], offset + got)
            if n == 0:
                break
            got += n
        return got
    src.seek(offset)
    return _fill_from(src, view)


def _source_size(src: Any) -> int:
    fileno = getattr(src, "_surgbox_fd", None)
    if fileno is not None:
        return os.fstat(fileno).st_size
    return src.seek(0, io.SEEK_END)


class _FdSource:
    """A positional-read view of an OS file descriptor (owned: closed by :meth:`close`)."""

    def __init__(self, fd: int, name: str):
        self._surgbox_fd, self.name = fd, name

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> _FdSource:
        return cls(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), os.fspath(path))

    def close(self) -> None:
        if self._surgbox_fd is not None:
            os.close(self._surgbox_fd)
            self._surgbox_fd = None


@attrs.define(eq=False, slots=False, weakref_slot=False)
class DecryptingReader(io.RawIOBase):
    """A seekable, read-only binary file object over an encrypted stream (plaintext view).

    Random access decrypts only the segments touched, keeping at most ``cache_segments`` decrypted
    segments in memory (an LRU). ``av.open(reader)`` works directly. :meth:`open` authenticates the
    first and the last segment, so a wrong key or associated data and a truncated file fail at open,
    before any byte is returned; every other segment is authenticated when first read.

    ``sources`` are one or more readable, seekable copies of the same ciphertext (a mirror): a
    segment that fails to read or authenticate from one is taken from the next, and ``on_bad_copy(i,
    segment, error)`` is called for the copy that failed. Each copy is decrypted with the key of its
    own header; a copy whose header is damaged is decrypted with another copy's header (one derived
    key per distinct header), so one damaged header or segment per copy never makes the object
    unreadable while another copy holds it intact. Not thread-safe.
    """

    sources: list[Any]
    _keys: list[tuple[AESGCM, bytes]] = attrs.field(alias="_keys", repr=False)  # (aead, nonce prefix) per distinct header
    _own: list[int | BaseException] = attrs.field(alias="_own", repr=False)  # per source: index into _keys, or why its header is unusable
    format: StreamFormat
    ciphertext_size: int
    name: str = "<stream>"
    cache_segments: int = 4
    on_bad_copy: Callable[[int, int, BaseException], None] | None = None
    owned: list[Any] = attrs.field(factory=list, repr=False)
    segments: int = attrs.field(init=False, default=0)
    size: int = attrs.field(init=False, default=0)
    _pos: int = attrs.field(init=False, default=0)
    _cache: OrderedDict[int, bytes] = attrs.field(init=False, factory=OrderedDict, repr=False)
    _ct: bytearray = attrs.field(init=False, factory=bytearray, repr=False)
    _header_reported: set[int] = attrs.field(init=False, factory=set, repr=False)

    def __attrs_post_init__(self) -> None:
        io.RawIOBase.__init__(self)
        self.segments, self.size = self.format.layout(self.ciphertext_size)

    @classmethod
    def open(cls, source: Any | Sequence[Any] | str | os.PathLike[str], key: bytes, associated_data: bytes = b"", *,
             segment_size: int = DEFAULT_SEGMENT_SIZE, cache_segments: int = 4,
             on_bad_copy: Callable[[int, int, BaseException], None] | None = None,
             name: str | None = None) -> DecryptingReader:
        """Open ``source`` (a path, a seekable binary file object, or a list of identical copies).

        Paths are opened (and closed by ``close()``); file objects stay the caller's. Raises
        :class:`DecryptionError` if the header, first or last segment does not authenticate.
        """
        raw = list(source) if isinstance(source, (list, tuple)) else [source]
        owned = []
        srcs = []
        for s in raw:
            if isinstance(s, (str, os.PathLike)):
                s = _FdSource.open(s)
                owned.append(s)
            srcs.append(s)
        if not srcs:
            raise ValueError("DecryptingReader.open needs at least one source")
        label = str(name or getattr(srcs[0], "name", None) or "<stream>")
        try:
            fmt = StreamFormat(segment_size)
            keys: list[tuple[AESGCM, bytes]] = []
            by_header: dict[tuple[bytes, bytes], int] = {}
            own: list[int | BaseException] = []
            sizes: list[int | None] = []
            for i, s in enumerate(srcs):  # one derived key per distinct header
                try:
                    sizes.append(_source_size(s))
                except OSError as exc:
                    sizes.append(None)
                    own.append(exc)
                    continue
                try:
                    hdr = _parse_header(_read_exact(s, 0, HEADER_SIZE), f"{label} (copy {i})")
                except (OSError, DecryptionError) as exc:
                    own.append(exc)
                    continue
                if hdr not in by_header:
                    by_header[hdr] = len(keys)
                    keys.append((AESGCM(derive_key(key, hdr[0], associated_data)), hdr[1]))
                own.append(by_header[hdr])
            if not keys:
                err = next(e for e in own if isinstance(e, BaseException))
                raise err if isinstance(err, DecryptionError) else DecryptionError(f"{label}: cannot read the header: {err}")
            # Copies may differ in size (one truncated or extended): try each size, most common first,
            # until the first and last segments authenticate; copy failures seen while trying a wrong
            # size are not reported (they would blame good copies).
            counts: dict[int, int] = {}
            for z in sizes:
                if z is not None:
                    counts[z] = counts.get(z, 0) + 1
            candidates = sorted(counts, key=lambda z: (-counts[z], sizes.index(z)))
            first_error: BaseException | None = None
            for size in candidates:
                reports: list[tuple[int, int, BaseException]] = []
                try:
                    self = cls(srcs, keys, own, fmt, size, label, max(1, cache_segments),
                               lambda i, seg, exc: reports.append((i, seg, exc)), owned)
                    self._segment(0)
                    self._segment(self.segments - 1)
                except DecryptionError as exc:
                    first_error = first_error or exc
                    continue
                self.on_bad_copy = on_bad_copy
                self._header_reported.clear()
                if on_bad_copy is not None:
                    for i, z in enumerate(sizes):
                        if z != size and not any(r[0] == i for r in reports):
                            reports.append((i, self.segments - 1, DecryptionError(
                                f"{label}: copy {i} is {z} bytes, the stream is {size} bytes")))
                    for i, seg, exc in reports:
                        on_bad_copy(i, seg, exc)
                return self
            assert first_error is not None
            raise first_error
        except BaseException:
            for s in owned:
                s.close()
            raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _plain_len(self, index: int) -> int:
        if index == self.segments - 1:
            return self.size - self.format.plain_offset(index)
        return self.format.first_plain if index == 0 else self.format.plain

    def _segment(self, index: int) -> bytes:
        """Plaintext of segment ``index`` (authenticated), through the LRU cache."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        plain = self._fetch(index, None)
        self._cache[index] = plain
        if len(self._cache) > self.cache_segments:
            self._cache.popitem(last=False)
        return plain

    def _fetch(self, index: int, out: memoryview | None) -> bytes:
        """Read and authenticate segment ``index`` (trying each copy); returns its plaintext, or
        decrypts it into ``out`` (exactly its length) and returns ``b""``. On failure ``out`` is zeroed."""
        fmt, last = self.format, index == self.segments - 1
        start = fmt.segment_offset(index)
        length = (self.ciphertext_size - start) if last else (fmt.segment_size - (HEADER_SIZE if index == 0 else 0))
        if len(self._ct) < length:
            self._ct = bytearray(fmt.segment_size)
        ct = memoryview(self._ct)[:length]
        errors = []
        for i, src in enumerate(self.sources):
            try:
                if _read_into(src, start, ct) != length:
                    raise DecryptionError(f"segment {index}: copy {i} is shorter than expected (truncated)")
                mine = self._own[i]
                order = list(range(len(self._keys)))
                if isinstance(mine, int):  # this copy's own header first, then the other copies' headers
                    order.remove(mine)
                    order.insert(0, mine)
                for k in order:
                    aead, prefix = self._keys[k]
                    nonce = _nonce(prefix, index, last)
                    try:
                        if out is None:
                            plain = aead.decrypt(nonce, bytes(ct) if not _HAS_INTO else ct, None)
                        else:
                            _decrypt_into(aead, nonce, ct, out)
                            plain = b""
                    except InvalidTag as exc:
                        if k == order[-1]:
                            raise exc
                        continue
                    if k != mine and i not in self._header_reported and self.on_bad_copy is not None:
                        self._header_reported.add(i)  # the copy's data is fine, its header is not
                        why = mine if isinstance(mine, BaseException) else DecryptionError("its header differs")
                        self.on_bad_copy(i, 0, DecryptionError(
                            f"copy {i}: damaged header ({why}); decrypted with another copy's header"))
                    return plain
            except (OSError, InvalidTag, DecryptionError) as exc:
                if out is not None:
                    out[:] = bytes(len(out))  # never leave unauthenticated plaintext in the caller's buffer
                errors.append(exc)
                if self.on_bad_copy is not None:
                    self.on_bad_copy(i, index, exc)
        what = ("wrong key or associated data, or the header was modified" if index == 0
                else "the data was modified, truncated, extended or reordered")
        detail = "; ".join(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__ for e in errors)
        raise DecryptionError(f"{self.name}: segment {index} of {self.segments} failed authentication "
                              f"({what}) [{detail}]")

    def iter_segments(self) -> Iterator[bytes]:
        """Every segment's plaintext in order (each authenticated); does not move the position."""
        for i in range(self.segments):
            yield self._segment(i)

    def readinto(self, buffer: Any) -> int:
        """Copy plaintext at the current position into ``buffer``; returns bytes copied (0 at end)."""
        if self.closed:
            raise ValueError("read from a closed DecryptingReader")
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self.size:
            index = self.format.segment_at(self._pos)
            off = self._pos - self.format.plain_offset(index)
            plen = self._plain_len(index)
            if off == 0 and len(out) - done >= plen and index not in self._cache:
                self._fetch(index, out[done : done + plen])  # whole segment: decrypt in place, no copy
                n = plen
            else:
                seg = self._segment(index)
                n = min(len(seg) - off, len(out) - done)
                out[done : done + n] = seg[off : off + n]
            done += n
            self._pos += n
        return done

    def readall(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(max(self.format.plain, 1))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to a plaintext position (``SEEK_SET``/``SEEK_CUR``/``SEEK_END``); returns it."""
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self.closed:
            return
        self._cache.clear()
        for s in self.owned:
            s.close()
        io.RawIOBase.close(self)

    def __repr__(self) -> str:
        return f"<DecryptingReader {self.name} size={self.size} segments={self.segments}>"


@attrs.frozen
class SalvageResult:
    """What :func:`salvage` recovered: ``segments`` authenticated, ``plaintext_size`` bytes; ``complete``
    is True only if the last-flagged segment was found (the stream was closed properly)."""

    segments: int
    plaintext_size: int
    complete: bool
    stopped: str


def salvage(source: Any | str | os.PathLike[str], key: bytes, associated_data: bytes = b"",
            write: Callable[[bytes], Any] | None = None, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> SalvageResult:
    """Recover the authentic prefix of a stream whose writer may have been killed.

    Authenticates segments in order, passing each plaintext to ``write``, and stops at the first
    segment that is incomplete or fails authentication. A complete stream yields ``complete=True``
    and exactly the plaintext strict decryption gives. Memory: one segment.
    """
    own = isinstance(source, (str, os.PathLike))
    src = _FdSource.open(source) if own else source
    try:
        fmt = StreamFormat(segment_size)
        name = str(getattr(src, "name", "<stream>"))
        total = _source_size(src)
        try:
            salt, prefix = _parse_header(_read_exact(src, 0, HEADER_SIZE), name)
        except DecryptionError as exc:
            return SalvageResult(0, 0, False, str(exc))
        aead = AESGCM(derive_key(key, salt, associated_data))
        index, pos, plain_size = 0, HEADER_SIZE, 0
        while True:
            full = fmt.segment_size - (HEADER_SIZE if index == 0 else 0)
            remaining = total - pos
            if remaining < TAG_SIZE:
                reason = "end of data" if remaining == 0 else f"incomplete segment {index} ({remaining} bytes)"
                return SalvageResult(index, plain_size, False, reason)
            ct = _read_exact(src, pos, min(full, remaining))
            plain = None
            if remaining <= full:  # could be the last segment of a closed stream
                try:
                    plain = aead.decrypt(_nonce(prefix, index, True), ct, None)
                except InvalidTag:
                    plain = None
                if plain is not None:
                    if write is not None:
                        write(plain)
                    return SalvageResult(index + 1, plain_size + len(plain), True, "last segment")
            if len(ct) < full:
                return SalvageResult(index, plain_size, False, f"incomplete segment {index} ({len(ct)} of {full} bytes)")
            try:
                plain = aead.decrypt(_nonce(prefix, index, False), ct, None)
            except InvalidTag:
                return SalvageResult(index, plain_size, False, f"segment {index} failed authentication")
            if write is not None:
                write(plain)
            plain_size += len(plain)
            pos += full
            index += 1
    finally:
        if own:
            src.close()


def encrypt_file(src: IO[bytes], dst: IO[bytes], key: bytes, associated_data: bytes = b"", *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE, background: bool = True, workers: int | None = None) -> int:
    """Encrypt the rest of ``src`` (from its position) into ``dst`` (at its position); returns the
    plaintext size in bytes.

    When both are regular files (with ``fileno()``; ``dst`` not in append mode), ``workers`` threads
    (default: the usable CPUs, at most 4) each read, encrypt and write whole segments at their own
    offsets (``pread``/``pwrite``; the AES-GCM and I/O calls release the GIL), so encryption runs on
    every core; memory is 2 segments per worker; ``src`` must not change size meanwhile (an error
    otherwise). Other streams go through :class:`EncryptingWriter` (``background``: write from a
    helper thread), 4 segments of memory. Either way ``dst`` holds the same format; on an error it may
    hold part of the output (write to a temporary file and rename on success, as the CLI does).
    """
    fmt = StreamFormat(segment_size)
    fds = _regular_fds(src, dst)
    if fds is not None:
        return _encrypt_parallel(src, dst, *fds, key, associated_data, fmt, workers)
    w = EncryptingWriter.open(dst, key, associated_data, segment_size=segment_size, background=background)
    # Read each segment's plaintext straight into one of two buffers and encrypt it from there (no copy,
    # cache-sized); the next segment is read first, to know whether this one is the last.
    bufs = (memoryview(bytearray(fmt.plain)), memoryview(bytearray(fmt.plain)))
    try:
        cap, k = fmt.first_plain, 0
        cur = bufs[0][: _fill_from(src, bufs[0][:cap])]
        while True:
            if len(cur) < cap:
                w.write_segment(cur, last=True)
                break
            nxt = bufs[1 - k]
            n = _fill_from(src, nxt[: fmt.plain])
            if n == 0:
                w.write_segment(cur, last=True)
                break
            w.write_segment(cur, last=False)
            cur, cap, k = nxt[:n], fmt.plain, 1 - k
    except BaseException:
        w.abort()
        raise
    w.close()
    return w.plaintext_size


def _regular_fds(src: Any, dst: Any) -> tuple[int, int] | None:
    """``(src_fd, dst_fd)`` when both are regular files usable with pread/pwrite, else ``None``."""
    try:
        sfd, dfd = src.fileno(), dst.fileno()
        import fcntl
        import stat

        if not (stat.S_ISREG(os.fstat(sfd).st_mode) and stat.S_ISREG(os.fstat(dfd).st_mode)):
            return None
        if fcntl.fcntl(dfd, fcntl.F_GETFL) & os.O_APPEND:  # pwrite ignores the offset in append mode
            return None
        return sfd, dfd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation, ImportError):
        return None


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _encrypt_parallel(src: Any, dst: Any, sfd: int, dfd: int, key: bytes, associated_data: bytes,
                      fmt: StreamFormat, workers: int | None) -> int:
    """:func:`encrypt_file` for two regular files: segment ``i`` is read at plaintext offset
    ``plain_offset(i)`` and written at ``segment_offset(i)``, by worker ``i mod workers``."""
    start = src.tell()  # accounts for a buffered reader's read-ahead
    size = os.fstat(sfd).st_size - start
    if size < 0:
        raise SurgboxError(f"{getattr(src, 'name', 'input')}: position {start} is past the end of the file")
    dst.flush()
    base = dst.tell()
    salt, prefix = os.urandom(KEY_SIZE), os.urandom(NONCE_PREFIX_SIZE)
    aead = AESGCM(derive_key(key, salt, associated_data))
    n_seg = fmt.segment_count(size)
    if n_seg > MAX_SEGMENTS:
        raise SurgboxError(f"stream exceeds {MAX_SEGMENTS} segments; use a larger segment_size")
    total = fmt.ciphertext_size(size)
    if hasattr(os, "posix_fallocate") and os.fstat(dfd).st_size < base + total:
        # Allocate the output's blocks at once: cheaper than block by block as writes arrive, and a
        # full disk fails here, before any work. Not all file systems support it.
        try:
            os.posix_fallocate(dfd, base, total)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
    header = bytes([HEADER_SIZE]) + salt + prefix
    if os.pwrite(dfd, header, base) != HEADER_SIZE:
        raise OSError(f"short write of the header to {getattr(dst, 'name', 'output')}")
    n_workers = max(1, min(workers or _default_workers(), n_seg))
    errors: list[BaseException] = []

    def work(first: int) -> None:
        plain, out = bytearray(fmt.plain), bytearray(fmt.segment_size)
        try:
            for i in range(first, n_seg, n_workers):
                if errors:
                    return
                last = i == n_seg - 1
                off = fmt.plain_offset(i)
                n = size - off if last else (fmt.first_plain if i == 0 else fmt.plain)
                view = memoryview(plain)[:n]
                got = 0
                while got < n:
                    k = os.preadv(sfd, [view[got:]], start + off + got)
                    if k == 0:
                        raise SurgboxError(f"{getattr(src, 'name', 'input')} shrank while being encrypted "
                                           f"(segment {i}); encrypt a file that is not being written")
                    got += k
                ct = memoryview(out)[: n + TAG_SIZE]
                _encrypt_into(aead, _nonce(prefix, i, last), view, ct)
                pos = base + fmt.segment_offset(i)
                while ct:
                    k = os.pwrite(dfd, ct, pos)
                    ct, pos = ct[k:], pos + k
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,), name=f"surgbox-encrypt-{k}", daemon=True)
               for k in range(1, n_workers)]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    src.seek(start + size)
    dst.seek(base + total)
    return size


def _fill_from(src: Any, view: memoryview) -> int:
    """Read from ``src`` until ``view`` is full or end of file; returns the bytes read."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def decrypt_file(src: Any, dst: IO[bytes], key: bytes, associated_data: bytes = b"", *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Decrypt all of ``src`` into ``dst``; returns the plaintext size. Raises :class:`DecryptionError`
    (possibly after writing part of the plaintext: write to a temporary file and rename on success)."""
    with DecryptingReader.open(src, key, associated_data, segment_size=segment_size, cache_segments=2) as r:
        for plain in r.iter_segments():
            dst.write(plain)
        return r.size
