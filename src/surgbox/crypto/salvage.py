"""Crash recovery of a stream: :func:`salvage` returns the authentic prefix of an unfinished stream.

A writer killed before :meth:`~surgbox.crypto.writer.EncryptingWriter.close` leaves a stream
without a last-flagged segment, which strict (Tink) decryption refuses as truncated. :func:`salvage`
authenticates the complete segments in order and returns that prefix, reporting ``complete=False``:
such a prefix is authentic, but a crash cannot be told from an attacker cutting the file at a segment
boundary, so salvaged data must be treated as "at least this much was written", never as the whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs

from .format import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, TAG_SIZE, DecryptionError, SegmentCipher, StreamFormat
from .sources import FdSource, read_exact, source_size

__all__ = ["SalvageResult", "salvage"]


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
    src = FdSource.open(source) if own else source
    try:
        fmt = StreamFormat(segment_size)
        name = str(getattr(src, "name", "<stream>"))
        total = source_size(src)
        try:
            cipher = SegmentCipher.from_header(key, associated_data, read_exact(src, 0, HEADER_SIZE), name)
        except DecryptionError as exc:
            return SalvageResult(0, 0, False, str(exc))
        index, pos, plain_size = 0, HEADER_SIZE, 0
        while True:
            full = fmt.segment_length(index)
            remaining = total - pos
            if remaining < TAG_SIZE:
                reason = "end of data" if remaining == 0 else f"incomplete segment {index} ({remaining} bytes)"
                return SalvageResult(index, plain_size, False, reason)
            ct = read_exact(src, pos, min(full, remaining))
            if remaining <= full:  # could be the last segment of a closed stream
                try:
                    plain = cipher.decrypt(index, True, ct)
                except DecryptionError:
                    pass
                else:
                    if write is not None:
                        write(plain)
                    return SalvageResult(index + 1, plain_size + len(plain), True, "last segment")
            if len(ct) < full:
                return SalvageResult(index, plain_size, False, f"incomplete segment {index} ({len(ct)} of {full} bytes)")
            try:
                plain = cipher.decrypt(index, False, ct)
            except DecryptionError:
                return SalvageResult(index, plain_size, False, f"segment {index} failed authentication")
            if write is not None:
                write(plain)
            plain_size += len(plain)
            pos += full
            index += 1
    finally:
        if own:
            src.close()
