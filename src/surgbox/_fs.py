"""Durable file writes: :func:`atomic_write` and :func:`fsync_dir`.

A file written with :func:`atomic_write` is, after a crash or power loss at any moment, either
the complete old file or the complete new one, never a mixture or a truncated file, and once the
call returns the new file survives a power loss:

1. the data goes to a new temporary file in the same folder (``.NAME.XXXXXXXX.tmp``, created
   exclusively with ``mode``), which is ``fsync``-ed and closed;
2. ``os.replace`` renames it over ``NAME`` (atomic on POSIX file systems);
3. the folder is ``fsync``-ed so the rename itself is on disk (:func:`fsync_dir`).

If any step fails the temporary file is removed and the old file is left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to disk.

    File systems that cannot sync a folder (``EINVAL``/``ENOTSUP``, e.g. some FUSE or network
    file systems) are tolerated: there is nothing more a program can do there. Other errors
    (``EIO``) are raised as :class:`OSError`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` atomically and durably (see the module doc); returns the path.

    The new file gets ``mode`` (less the process umask; default ``0o600``: owner only). The folder
    must exist. Raises :class:`OSError` (``ENOSPC``, ``EACCES`` ...) with the old file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path
