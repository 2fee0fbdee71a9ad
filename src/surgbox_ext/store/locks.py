"""``flock`` locks of the store: one writer per key (``tmp/HASH.lock``) and the lock every live
write holds on its descriptor (``tmp/ID.json``), so recovery never touches a live write. Locks are
released by the kernel when their process dies, so a crashed writer never blocks anything."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["lock_file", "try_lock"]


def lock_file(path: Path) -> int | None:
    """Create/open ``path`` and ``flock`` it exclusively: the fd, or ``None`` if another holder has it.
    Checks that the locked file is still the one at ``path`` (a holder deletes it on release)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed it between our open and lock: try again


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on the existing file ``path``, or ``None`` if a live writer
    holds it (or it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
