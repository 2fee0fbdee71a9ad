"""Durable file writes: the one implementation every part of surgbox uses.

A file written with :func:`atomic_write` or :class:`AtomicFile` is, after a crash or power loss
at any moment, either the complete old file or the complete new one, never a mixture or a
truncated file, and once the call returns the new file survives a power loss:

1. the data goes to a new temporary file ``.NAME.XXXXXXXX.partial`` in the same folder (or in
   ``tmp_dir``, which must be on the same file system), created exclusively with ``mode``
   (never through a symbolic link), and ``flock``-ed while it is written;
2. the data is ``fsync``-ed, then ``os.replace`` renames the temporary file over ``NAME``
   (atomic on POSIX file systems);
3. the folder is ``fsync``-ed so the rename itself is on disk (:func:`fsync_dir`).

If any step fails (or the body of ``with AtomicFile(...)`` raises: the caller's *verify, then
rename*), the temporary file is removed and the old file is left untouched. A process killed
with ``SIGKILL`` cannot remove it: the next :class:`AtomicFile` for the same name removes such
stale ``.NAME.*.partial`` files (:func:`remove_stale_partials`: only regular files of this user
whose lock is free, so a live writer's file is never touched).

The pieces, for code that needs them separately:

* :func:`write_all` -- write every byte to a file descriptor or a binary file object (short
  writes are retried, errors such as ``ENOSPC`` raised);
* :func:`fsync_dir` -- make a folder's entries durable;
* :func:`make_dirs` -- create missing folders durably;
* :func:`replace` -- rename into place and make the rename durable;
* :func:`rename_new` -- rename into place, never over a file (``exclusive`` commits use it);
* :func:`create_new` -- write a new file that must not exist yet (key files), durably.

Example::

    from surgbox._fs import AtomicFile, atomic_write

    atomic_write("config.toml", b"[store]\\n")            # small files: all at once
    with AtomicFile("out.mp4") as f:                      # streams: 0600 temp file, renamed on success
        for chunk in decrypted_chunks():                  # an exception here leaves out.mp4 as it was
            f.write(chunk)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "atomic_write", "create_new", "fsync_dir", "make_dirs", "remove_stale_partials", "rename_new",
           "replace", "write_all"]

PARTIAL_SUFFIX = ".partial"
_NAME_ROOM = 200  # bytes of the final name kept in a temporary name (NAME_MAX is 255)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_all(target: int | Any, data: Any) -> None:
    """Write all of ``data`` (bytes-like) to ``target``: a file descriptor (``os.write``) or an
    object with ``write`` returning the count written. Short writes are continued; errors
    (``ENOSPC``, ``EIO``, ``EFBIG``) are raised as :class:`OSError`."""
    view = memoryview(data).cast("B")
    if isinstance(target, int):
        while view:
            view = view[os.write(target, view):]
        return
    while view:
        n = target.write(view)
        if n is None:  # a non-blocking raw stream that took nothing
            raise OSError(errno.EAGAIN, "the output would block; give a blocking file object")
        view = view[n:]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to disk.

    File systems that cannot sync a folder (``EINVAL``/``ENOTSUP``, e.g. some FUSE or network
    file systems) are tolerated: there is nothing more a program can do there. Other errors
    (``EIO``) are raised as :class:`OSError`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike[str], stop: str | os.PathLike[str]) -> None:
    """Create ``path`` and its missing parents below ``stop`` (which must exist), fsyncing the
    parent of every folder created, so the new folders survive a power loss."""
    path, stop = Path(path), Path(stop)
    missing = []
    p = path
    while not p.exists() and p != stop and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_dir(d.parent)


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename the (already fsynced) file ``src`` over ``dst`` and fsync ``dst``'s folder."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def create_new(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> Path:
    """Create ``path`` (which must not exist: :class:`FileExistsError`) with ``data`` and ``mode``
    exactly (not widened or narrowed by the umask), fsync it and its folder. A half-written file
    is removed. For files that are never replaced, such as key files."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    fsync_dir(path.parent)
    return path


def _partial_prefix(path: Path) -> str:
    return "." + path.name.encode("utf-8", "surrogateescape")[:_NAME_ROOM].decode("utf-8", "ignore") + "."


def remove_stale_partials(path: str | os.PathLike[str], tmp_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the temporary files that earlier, killed writers of ``path`` left (``.NAME.*.partial``
    in ``tmp_dir`` or ``path``'s folder): regular files owned by this user whose ``flock`` is free
    (a live writer holds its lock). Returns what was removed; errors are ignored."""
    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir is not None else path.parent
    prefix, removed = _partial_prefix(path), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(PARTIAL_SUFFIX)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer
            if os.stat(entry.path, follow_symlinks=False).st_ino == st.st_ino:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def rename_new(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Give the (already fsynced) file ``tmp`` the name ``path``, which must not exist (:class:`FileExistsError` naming
    ``path``): a hard link (then ``tmp`` is unlinked), or where the file system has none (FAT on
    a USB stick) a check and a rename."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except OSError as exc:
        linkless = exc.errno in _NO_HARD_LINKS
        if isinstance(exc, FileExistsError) or (linkless and os.path.lexists(path)):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        if not linkless:
            raise
        os.replace(tmp, path)
        return
    os.unlink(tmp)


class AtomicFile:
    """Streaming atomic replacement of ``path`` (see the module doc): ``with AtomicFile(p) as f``
    gives a buffered binary file (``write``, ``fileno``, ``tell``...) on a new temporary file with
    ``mode`` (less the umask; default ``0o600``, owner only), locked while open. A clean exit of
    the block commits (flush, fsync, rename over ``path``, fsync the folder); an exception aborts
    (the temporary file is removed, ``path`` keeps its old content). So the caller verifies inside
    the block (e.g. every segment authenticates) and the rename happens only after.

    ``open()``/``commit()``/``abort()`` do the same without ``with``. Creating the object does no
    I/O; ``open()`` first removes stale partial files of ``path`` (:func:`remove_stale_partials`).
    Errors are :class:`OSError` (``ENOSPC``...), raised after the temporary file was removed.

    ``exclusive=True``: never replace a file: the commit is a hard link to ``path`` (then the
    temporary name is removed), which fails with :class:`FileExistsError` if ``path`` exists,
    also when it appeared while the data was written. For outputs that must not replace anything.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o600, *,
                 tmp_dir: str | os.PathLike[str] | None = None, exclusive: bool = False):
        self.path = Path(path)
        self.mode = mode
        self.exclusive = exclusive
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else None
        self.tmp: Path | None = None
        self.file: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        """Create the temporary file (after removing stale ones); returns the file to write."""
        folder = self.tmp_dir if self.tmp_dir is not None else self.path.parent
        remove_stale_partials(self.path, self.tmp_dir)
        tmp = folder / f"{_partial_prefix(self.path)}{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # tells remove_stale_partials we are alive
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self.tmp = tmp
        return self.file

    def write(self, data: Any) -> int:
        """Write all of ``data``; returns its length."""
        assert self.file is not None, "AtomicFile.open() first"
        write_all(self.file, data)
        return len(memoryview(data).cast("B"))

    def commit(self) -> Path:
        """Make the written data durable under ``path``; returns ``path``."""
        f, tmp = self.file, self.tmp
        assert f is not None and tmp is not None, "AtomicFile.open() first"
        try:
            f.flush()
            os.fsync(f.fileno())
            if self.exclusive:
                rename_new(tmp, self.path)
            else:
                os.replace(tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.tmp = None
        f.close()  # releases the lock: the file now has its final name
        self.file = None
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file (idempotent); ``path`` is not touched."""
        f, tmp = self.file, self.tmp
        self.file = self.tmp = None
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # unlink first, while the lock is still held
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()

    def __enter__(self) -> IO[bytes]:
        return self.open()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, *,
                 tmp_dir: str | os.PathLike[str] | None = None, exclusive: bool = False) -> Path:
    """Replace ``path`` with ``data`` atomically and durably (see the module doc); returns the path.

    The new file gets ``mode`` (less the process umask; default ``0o600``: owner only). The folder
    must exist. Raises :class:`OSError` (``ENOSPC``, ``EACCES`` ...) with the old file intact.
    ``exclusive``: as :class:`AtomicFile`'s (:class:`FileExistsError` if ``path`` exists)."""
    with AtomicFile(path, mode, tmp_dir=tmp_dir, exclusive=exclusive) as f:
        write_all(f, data)
    return Path(path)
