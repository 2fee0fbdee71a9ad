"""Where the de-identified video goes, and how it is committed.

A **path** is written as ``.<name>.<random>.partial<ext>`` in the destination's folder and
renamed into place only when complete (fsync-ed, then the folder), so a crash or an error
leaves no half-written output under the real name; on any error the partial file is removed.
The run holds a lock (``flock``) on its partial file; a later run to the same destination
removes the partial files a killed run left (unlocked, untouched for a while).
The path must end in an MP4-family extension (:data:`MP4_EXTENSIONS`: the encoders write MP4),
must not be the input itself (compared by device and inode, so hard links and symbolic links
count) and must not exist unless ``overwrite``. Without ``overwrite`` the commit is a hard
link, which fails if a file of that name appeared meanwhile, rather than a rename over it.
The sidecars (report, audit, chart: :func:`check_sidecars`) follow the same rule: never the
input, the output or one another, and an existing one only with ``overwrite``.

A **writable binary file object** (an encrypted store's writer, a pipe, a socket) is streamed
to as fragmented MP4: nothing touches the disk, and on an error what was already written
stays in it (every frame written was de-identified), so the caller discards it: a store
writer used as ``with store.writer(key) as f`` does when the run raises.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import time
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not POSIX: partial files are not locked, and stale ones are left alone
    fcntl = None  # type: ignore[assignment]

import attrs

from .._fs import fsync_dir
from ..errors import ConfigError

MP4_EXTENSIONS = (".mp4", ".m4v")
STALE_AFTER_S = 10.0  # an unlocked partial file untouched this long was left by a killed run


def _stat(target: Any) -> os.stat_result | None:
    """``stat`` of a path (following links) or an open file object's descriptor; ``None`` if unknown."""
    try:
        if isinstance(target, (str, os.PathLike)):
            return os.stat(target)
        fileno = getattr(target, "fileno", None)
        return os.fstat(fileno()) if callable(fileno) else None
    except Exception:  # OSError, io.UnsupportedOperation (no descriptor), a closed file's ValueError
        return None


def same_file(a: Any, b: Any) -> bool:
    """Whether paths / file objects ``a`` and ``b`` are one file (device and inode)."""
    sa, sb = _stat(a), _stat(b)
    return sa is not None and sb is not None and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_sidecar(path: str | os.PathLike | None, what: str) -> None:
    """Refuse, before the run, a sidecar path (report, audit, chart) that cannot be written."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a directory; give a file name such as {str(p / ('deid' + ''.join(p.suffixes)))!r}")
    parent = p.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} folder {str(parent)!r} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} folder {str(parent)!r} is not writable; choose another path")


def _one_path(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` name one file: the same inode, or (not there yet) the same resolved path."""
    if not isinstance(a, (str, os.PathLike)) or not isinstance(b, (str, os.PathLike)):
        return same_file(a, b)
    return same_file(a, b) or Path(a).resolve() == Path(b).resolve()


def check_sidecars(sidecars: Any, src: Any, dst: Any, *, overwrite: bool = False, src_name: str = "") -> None:
    """Refuse, before the run, sidecars (``(path, what)`` pairs; ``None`` paths skipped) that
    cannot be written (:func:`check_sidecar`), that are the input (never replaced), the output
    or one another, or that exist without ``overwrite`` (the output's rule)."""
    given = [(path, what) for path, what in sidecars if path is not None]
    for i, (path, what) in enumerate(given):
        check_sidecar(path, what)
        label = str(path)
        if same_file(path, src):
            raise ConfigError(f"{what} {label!r} is the input file {src_name or label!r}; the original is never "
                              f"overwritten: choose another path for the {what}")
        if _one_path(path, dst):
            raise ConfigError(f"{what} {label!r} is the output video; choose another path for the {what}")
        for other, other_what in given[:i]:
            if _one_path(path, other):
                raise ConfigError(f"the {other_what} and the {what} are both {label!r}; give each its own file")
        if os.path.lexists(path) and not overwrite:
            raise ConfigError(f"{what} {label!r} exists; pass --overwrite (overwrite=True) to replace it, "
                              f"or choose another path")


def default_output(src: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """``NAME.deid.mp4`` beside ``src`` (or in ``out_dir``): ``case.mkv`` -> ``case.deid.mp4``."""
    p = Path(src)
    return (Path(out_dir) if out_dir is not None else p.parent) / f"{p.stem}.deid.mp4"


@attrs.define(eq=False)
class Output:
    """The run's destination (see the module doc): build with :meth:`prepare`."""

    dst: Any
    label: str
    streaming: bool
    overwrite: bool = False
    tmp: Path | None = None
    _lock_fd: int | None = attrs.field(default=None, alias="_lock_fd")

    @classmethod
    def prepare(cls, dst: str | os.PathLike | IO[bytes], src: Any, *, overwrite: bool = False, src_name: str = "") -> Output:
        """Check ``dst`` before anything is read or written; raises :class:`ConfigError`
        naming the output and the fix."""
        if not isinstance(dst, (str, os.PathLike)):
            if not callable(getattr(dst, "write", None)):
                raise ConfigError(f"output {dst!r} is neither a path nor a writable binary file object")
            label = str(getattr(dst, "name", None) or f"<{type(dst).__name__}>")
            if same_file(dst, src):
                raise ConfigError(f"output {label!r} is the input file {src_name!r}; write to another file")
            return cls(dst, label, streaming=True)
        path = Path(dst)
        label = str(path)
        if path.is_dir():
            raise ConfigError(f"output {label!r} is a directory; give a file name such as {str(path / 'out.mp4')!r}")
        if path.suffix.lower() not in MP4_EXTENSIONS:
            what = f"has the extension {path.suffix!r}" if path.suffix else "has no extension"
            raise ConfigError(f"output {label!r} {what}; de-identification writes MP4 (H.264 + the input's audio): "
                              f"name it {path.with_suffix('.mp4').name!r}")
        if not path.parent.is_dir():
            raise ConfigError(f"output directory {str(path.parent)!r} does not exist; create it or choose another DST")
        if same_file(path, src):
            raise ConfigError(f"output {label!r} is the input file {src_name or label!r} (the same file, also through "
                              f"a link); the original is never overwritten: choose another DST")
        if os.path.lexists(path) and not overwrite:
            raise ConfigError(f"output {label!r} exists; pass --overwrite (overwrite=True) to replace it, or choose another DST")
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial{path.suffix}"
        return cls(path, label, streaming=False, overwrite=overwrite, tmp=tmp)

    def open(self) -> list[str]:
        """Create the partial file (exclusively) and hold a lock on it while the run lasts;
        first remove the partial files of this destination that a killed run (``kill -9``,
        power loss) left: unlocked and untouched for :data:`STALE_AFTER_S`. Returns their names."""
        if self.tmp is None:
            return []
        removed = self._remove_stale()
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd
        return removed

    def _remove_stale(self) -> list[str]:
        if fcntl is None:
            return []
        path = Path(self.dst)
        removed = []
        for name in glob.glob(f".{glob.escape(path.name)}.*.partial{glob.escape(path.suffix)}", root_dir=path.parent):
            p = path.parent / name
            try:
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            try:
                if time.time() - os.fstat(fd).st_mtime < STALE_AFTER_S:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # locked: another run is writing it
                    continue
                os.unlink(p)
                removed.append(name)
            finally:
                os.close(fd)
        return removed

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def target(self) -> Any:
        """What the encoder writes to: the partial file's path, or the file object."""
        return str(self.tmp) if self.tmp is not None else self.dst

    def commit(self) -> None:
        """Make the written output durable and give it its name (a file object: flush it)."""
        if self.tmp is None:
            flush = getattr(self.dst, "flush", None)
            if callable(flush):
                flush()
            return
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.overwrite:
            os.replace(self.tmp, self.dst)
        else:
            try:
                os.link(self.tmp, self.dst)  # fails if a file of that name appeared meanwhile
            except FileExistsError:
                raise ConfigError(f"output {self.label!r} appeared while de-identifying; pass --overwrite "
                                  f"(overwrite=True) to replace it, or choose another DST") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if os.path.lexists(self.dst):  # no hard links here (FAT, some network file systems)
                    raise ConfigError(f"output {self.label!r} appeared while de-identifying; pass --overwrite "
                                      f"(overwrite=True) to replace it, or choose another DST") from None
                os.replace(self.tmp, self.dst)
            else:
                os.unlink(self.tmp)
        self.tmp = None
        self._unlock()
        fsync_dir(self.dst.parent)

    def abort(self) -> None:
        """Remove the partial file (nothing to undo for a file object)."""
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
        self._unlock()
