"""Streaming decryption: :class:`DecryptingReader`, a seekable plaintext view of a stream.

The reader asks a :class:`SegmentSource` for the authenticated plaintext of each segment it needs
and keeps a few in an LRU cache. :class:`SingleCopy` is the source for one ciphertext (a path or a
file object); other sources (e.g. the store's mirror, which reads each segment from whichever disk
holds it intact) implement the same two methods.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import attrs

from .format import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, DecryptionError, SegmentCipher, StreamFormat
from .sources import FdSource, read_exact, read_into, source_size

__all__ = ["DecryptingReader", "SegmentSource", "SingleCopy"]


@runtime_checkable
class SegmentSource(Protocol):
    """Where a :class:`DecryptingReader` gets authenticated segments.

    ``ciphertext_size`` is the stream's size in bytes. ``decrypt_segment(index, last, out)``
    returns segment ``index``'s plaintext after authenticating it (``last``: it is the final
    segment), or with ``out`` (a buffer of exactly the plaintext length) decrypts into it and
    returns ``b""``; it raises :class:`~surgbox.crypto.format.DecryptionError` naming the stream
    and the segment when no authentic copy exists, leaving ``out`` zeroed. ``close()`` releases
    what the source opened.
    """

    ciphertext_size: int

    def decrypt_segment(self, index: int, last: bool, out: memoryview | None) -> bytes: ...

    def close(self) -> None: ...


def failure(name: str, index: int, segments: int, detail: str = "") -> DecryptionError:
    """The error for segment ``index`` of ``name`` failing authentication."""
    what = ("wrong key or associated data, or the header was modified" if index == 0
            else "the data was modified, truncated, extended or reordered")
    return DecryptionError(f"{name}: segment {index} of {segments} failed authentication ({what})"
                           + (f" [{detail}]" if detail else ""))


@attrs.define(eq=False)
class SingleCopy:
    """The :class:`SegmentSource` of one ciphertext ``source`` (an :class:`FdSource` or a seekable
    binary file object) whose header gave ``cipher``. ``owned`` sources are closed by :meth:`close`."""

    source: Any
    cipher: SegmentCipher
    format: StreamFormat
    ciphertext_size: int
    name: str = "<stream>"
    owned: bool = False
    _ct: bytearray = attrs.field(init=False, factory=bytearray, repr=False)

    @classmethod
    def open(cls, source: Any, key: bytes, associated_data: bytes, fmt: StreamFormat, name: str,
             owned: bool = False) -> SingleCopy:
        """Read ``source``'s size and header; :class:`DecryptionError` when it is not a stream."""
        size = source_size(source)
        cipher = SegmentCipher.from_header(key, associated_data, read_exact(source, 0, HEADER_SIZE), name)
        return cls(source, cipher, fmt, size, name, owned)

    def decrypt_segment(self, index: int, last: bool, out: memoryview | None) -> bytes:
        fmt = self.format
        start = fmt.segment_offset(index)
        length = (self.ciphertext_size - start) if last else fmt.segment_length(index)
        if len(self._ct) < length:
            self._ct = bytearray(fmt.segment_size)
        ct = memoryview(self._ct)[:length]
        segments = fmt.layout(self.ciphertext_size)[0]
        if read_into(self.source, start, ct) != length:
            if out is not None:
                out[:] = bytes(len(out))
            raise failure(self.name, index, segments, "DecryptionError: the copy is shorter than expected (truncated)")
        try:
            return self.cipher.decrypt(index, last, ct, out)
        except DecryptionError:
            raise failure(self.name, index, segments, "InvalidTag") from None

    def close(self) -> None:
        if self.owned:
            self.source.close()


@attrs.define(eq=False, slots=False, weakref_slot=False)
class DecryptingReader(io.RawIOBase):
    """A seekable, read-only binary file object over an encrypted stream (plaintext view).

    Random access decrypts only the segments touched, keeping at most ``cache_segments`` decrypted
    segments in memory (an LRU). ``av.open(reader)`` works directly. :meth:`open` (one copy) and
    :meth:`over` (any :class:`SegmentSource`) authenticate the first and the last segment, so a
    wrong key or associated data and a truncated file fail there, before any byte is returned;
    every other segment is authenticated when first read. Not thread-safe.
    """

    source: Any  # a SegmentSource
    format: StreamFormat
    name: str = "<stream>"
    cache_segments: int = 4
    owned: list[Any] = attrs.field(factory=list, repr=False)  # more things closed by close()
    segments: int = attrs.field(init=False, default=0)
    size: int = attrs.field(init=False, default=0)
    _pos: int = attrs.field(init=False, default=0)
    _cache: OrderedDict[int, bytes] = attrs.field(init=False, factory=OrderedDict, repr=False)

    def __attrs_post_init__(self) -> None:
        io.RawIOBase.__init__(self)
        self.segments, self.size = self.format.layout(self.source.ciphertext_size)

    @property
    def ciphertext_size(self) -> int:
        return self.source.ciphertext_size

    @classmethod
    def open(cls, source: Any | str | os.PathLike[str], key: bytes, associated_data: bytes = b"", *,
             segment_size: int = DEFAULT_SEGMENT_SIZE, cache_segments: int = 4,
             name: str | None = None) -> DecryptingReader:
        """Open ``source``: a path (opened here, closed by ``close()``) or a seekable binary file
        object (stays the caller's). Raises :class:`DecryptionError` if the header, first or last
        segment does not authenticate. Several copies of one object (a mirror) are the store's
        business: ``surgbox_ext.store.failover.open_copies``."""
        if isinstance(source, (list, tuple)):
            raise TypeError("DecryptingReader.open reads one ciphertext; read several copies of a mirror with "
                            "surgbox_ext.store.failover.open_copies (or through the store's reader())")
        owned = isinstance(source, (str, os.PathLike))
        src = FdSource.open(source) if owned else source
        label = str(name or getattr(src, "name", None) or "<stream>")
        try:
            copy = SingleCopy.open(src, key, associated_data, StreamFormat(segment_size), label, owned)
        except BaseException:
            if owned:
                src.close()
            raise
        return cls.over(copy, copy.format, name=label, cache_segments=cache_segments)

    @classmethod
    def over(cls, source: SegmentSource, fmt: StreamFormat, *, name: str = "<stream>",
             cache_segments: int = 4) -> DecryptingReader:
        """A reader of any :class:`SegmentSource`, after authenticating its first and last segment
        (the source is closed if that fails)."""
        try:
            self = cls(source, fmt, name, max(1, cache_segments))
            self._segment(0)
            self._segment(self.segments - 1)
        except BaseException:
            source.close()
            raise
        return self

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
        plain = self.source.decrypt_segment(index, index == self.segments - 1, None)
        self._cache[index] = plain
        if len(self._cache) > self.cache_segments:
            self._cache.popitem(last=False)
        return plain

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
                target = out[done : done + plen]  # whole segment: decrypt in place, no copy
                try:
                    self.source.decrypt_segment(index, index == self.segments - 1, target)
                except BaseException:
                    target[:] = bytes(plen)  # whatever the source did, no unauthenticated plaintext
                    raise
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
        self.source.close()
        for s in self.owned:
            s.close()
        io.RawIOBase.close(self)

    def __repr__(self) -> str:
        return f"<DecryptingReader {self.name} size={self.size} segments={self.segments}>"
