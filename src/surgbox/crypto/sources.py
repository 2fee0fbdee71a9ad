"""Positional reads of ciphertext from a file descriptor or a seekable binary file object.

A *source* is either an :class:`FdSource` (an OS file descriptor read with ``pread``: safe to
share between readers, no file position) or any seekable binary file object (``seek`` +
``read``/``readinto``). The reader, salvage and the store's mirror read through these helpers.
"""

from __future__ import annotations

import io
import os
from typing import Any

__all__ = ["FdSource", "fill_from", "read_exact", "read_into", "source_size"]


class FdSource:
    """A positional-read view of an OS file descriptor (owned: closed by :meth:`close`).
    ``root`` is free for the owner's use (the store notes which disk a copy is on)."""

    def __init__(self, fd: int, name: str):
        self._surgbox_fd: int | None = fd
        self.name = name
        self.root: Any = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FdSource:
        return cls(os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), os.fspath(path))

    def close(self) -> None:
        if self._surgbox_fd is not None:
            os.close(self._surgbox_fd)
            self._surgbox_fd = None


def fill_from(src: Any, view: memoryview) -> int:
    """Read from the file object ``src`` until ``view`` is full or end of file; returns the bytes read."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read_exact(src: Any, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of ``src`` (shorter only at end of file)."""
    buf = bytearray(size)
    n = read_into(src, offset, memoryview(buf))
    return bytes(buf[:n])


def read_into(src: Any, offset: int, view: memoryview) -> int:
    """Fill ``view`` from ``offset`` of ``src``; returns bytes read (fewer only at end of file)."""
    fileno = getattr(src, "_surgbox_fd", None)
    if fileno is None:
        src.seek(offset)
        if hasattr(src, "readinto"):
            return fill_from(src, view)
        got = 0
        while got < len(view):
            chunk = src.read(len(view) - got)
            if not chunk:
                break
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
        return got
    got = 0
    while got < len(view):
        n = os.preadv(fileno, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def source_size(src: Any) -> int:
    """Size in bytes of ``src`` (moves a file object's position)."""
    fileno = getattr(src, "_surgbox_fd", None)
    if fileno is not None:
        return os.fstat(fileno).st_size
    return src.seek(0, io.SEEK_END)
