"""Where a recording's files go: the :class:`RecordingSink` contract and :class:`FileSink` (plain files).

Beside an output path ``case.mp4`` a :class:`FileSink` writes ``case.mp4.json`` (the sidecar:
metadata, layout, sources, snapshots, final stats; rewritten atomically), ``case.mp4.data.jsonl``
(the data track, when there are data sources) and ``case.mp4.snapshots/`` (PNG snapshots). An
existing recording is never replaced unless ``overwrite=True``. The encrypted sinks are
:class:`~surgbox.recording.store_sink.StoreSink` and, for an event of the catalog,
:class:`surgbox.catalog.recording_sink.EventSink`.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from .._fs import atomic_write
from ..errors import ConfigError
from ..readings import data_track_path

SIDECAR_FORMAT = "surgbox-recording"
SIDECAR_VERSION = 1
FILE_KINDS = ("segment", "snapshot", "data", "sidecar", "raw")

SIDECAR_FILE_MODE = 0o666
"""Mode of a plain-file sidecar before the umask: the same as the MP4 and PNGs beside it (which
are created with ``0o666 & ~umask``), so the files of one recording share one permission; a
recording that must not be readable by others goes to a store (encrypted)."""


def sidecar_path(output: str | os.PathLike) -> Path:
    """The sidecar JSON of a recording: ``case.mp4`` -> ``case.mp4.json``."""
    p = Path(output)
    return p.with_name(p.name + ".json")


def snapshot_dir(output: str | os.PathLike) -> Path:
    """The snapshot folder of a recording: ``case.mp4`` -> ``case.mp4.snapshots/``."""
    p = Path(output)
    return p.with_name(p.name + ".snapshots")


def sidecar_bytes(meta: Mapping[str, Any]) -> bytes:
    """The sidecar JSON as written (indented UTF-8, trailing newline)."""
    return (json.dumps(meta, indent=2, default=str) + "\n").encode("utf-8")


@attrs.frozen
class RecordedFile:
    """A file a recording wrote: ``kind`` (``segment`` the video, ``snapshot`` a PNG, ``data`` the
    data track, ``sidecar`` the JSON sidecar, ``raw`` the encrypted raw copy of a source hidden live), ``name`` (a path, or a store key), ``size`` in bytes
    and ``sha256`` of the plaintext (hex; ``None`` when the sink did not hash it)."""

    kind: str = attrs.field(validator=attrs.validators.in_(FILE_KINDS))
    name: str
    size: int
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class RecordingSink(abc.ABC):
    """Where a recording's files go: the video stream, the JSON sidecar, the data track and the
    PNG snapshots. :class:`FileSink` writes plain files beside an output path;
    :class:`~surgbox.recording.store_sink.StoreSink` encrypts everything into a
    :class:`~surgbox.interfaces.Store` (nothing in plaintext on disk);
    :class:`surgbox.catalog.recording_sink.EventSink` does that for an event of the catalog.

    The recorder calls, in order: :meth:`open` (before the sources start; fail here on a bad
    destination), :meth:`write_sidecar` (at start, after each snapshot and at the end; caller,
    snapshot and pipeline threads), :meth:`video_target` once, :meth:`data_track_target` once
    when there are data sources, :meth:`sync` after each finished fragment and at least every
    ``sync_interval_s`` (**writer thread**: never the real-time pipeline thread),
    :meth:`write_snapshot` (snapshot thread), :meth:`finish_video` after the video was finished,
    and :meth:`close` last; :meth:`abort` instead when the recording could not start. Names in the
    sidecar are relative to the sidecar.
    """

    label: str = ""
    #: name of the data track in the sidecar (``None``: this sink keeps no data track)
    data_track_name: str | None = None
    #: whether :meth:`write_snapshot` can store snapshots
    can_snapshot: bool = True

    def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare the destination (before any source starts)."""

    @abc.abstractmethod
    def video_target(self) -> str | os.PathLike | IO[bytes]:
        """The muxer's output: a path or a writable, non-seekable binary file object."""

    def sync(self) -> None:  # noqa: B027 - optional hook
        """Make what was written so far durable (writer thread)."""

    def finish_video(self) -> None:  # noqa: B027 - optional hook
        """The video is complete: make it durable (and commit it)."""

    @abc.abstractmethod
    def write_sidecar(self, meta: Mapping[str, Any]) -> None:
        """Store (replace) the sidecar JSON."""

    def data_track_target(self) -> str | os.PathLike | IO[bytes]:
        """Where :class:`~surgbox.readings.DataTrackWriter` writes (it closes a file object)."""
        raise ConfigError(f"{type(self).__name__} keeps no data track")

    def raw_target(self, source: str) -> tuple[str, IO[bytes]]:
        """``(name, writer)`` for the encrypted raw copy of ``source`` (``keep_raw``, see
        :mod:`surgbox.recording.raw_copy`); only encrypted sinks keep one."""
        raise ConfigError(f"source {source!r}: keep_raw needs an encrypted destination (record into an event with "
                          f"--event, or into a store); {type(self).__name__} would leave the raw video in plaintext on disk")

    @abc.abstractmethod
    def snapshot_name(self, index: int, what: str) -> str:
        """The sidecar's name for snapshot ``index`` of ``what`` (``composite`` or a source name)."""

    @abc.abstractmethod
    def write_snapshot(self, name: str, png: bytes) -> None:
        """Store one PNG under the name :meth:`snapshot_name` gave."""

    def files(self) -> list[RecordedFile]:
        """What was written so far."""
        return []

    def close(self, error: BaseException | None = None) -> None:  # noqa: B027 - optional hook
        """The recording ended (``error``: why it ended early, if it did)."""

    def abort(self) -> None:  # noqa: B027 - optional hook
        """The recording did not start: discard what was begun."""


def source_paths(sources: Any) -> dict[str, str]:
    """``{path: "source 'NAME' (option)"}`` for the files the sources read: each source's
    ``path_options`` (a ``file`` source's ``path``, a serial ``port``...), wrappers (live
    de-identification) unwrapped through ``inner``; URLs (``://``) left out."""
    out: dict[str, str] = {}
    for src in sources:
        name = getattr(src, "name", "?")
        while src is not None:
            for option in getattr(type(src), "path_options", ()):
                value = getattr(src, option, None)
                if isinstance(value, (str, os.PathLike)) and value and "://" not in os.fspath(value):
                    out.setdefault(os.fspath(value), f"source {name!r} ({option})")
            src = getattr(src, "inner", None)
    return out


def _remove(path: Path) -> None:
    """Remove a file or a folder of files (snapshots); nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _same_file(a: Any, b: Any) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be read): not the same file
        return False


@attrs.define(eq=False)
class FileSink(RecordingSink):
    """Plain files: the video at ``video`` (a path, or a binary file object such as a pipe),
    the sidecar at ``sidecar``, PNGs in the folder ``snapshots`` and the data track at
    ``data_track`` (``None`` disables each; for a path video they default to ``case.mp4.json``,
    ``case.mp4.snapshots/`` and ``case.mp4.data.jsonl`` beside it).

    :meth:`open` refuses a missing folder and, unless ``overwrite``, an existing video, sidecar
    or data track (``overwrite=True`` replaces them and the old recording's snapshots: set aside
    as ``.NAME.replaced`` at :meth:`open`, removed once the new video's first fragment is on disk,
    put back by :meth:`abort` when the new recording never started);
    a file the sources read (``inputs``: :func:`source_paths`) is refused even then.
    The video file is fsynced at every :meth:`sync` (writer thread), so each reported fragment
    is on disk."""

    video: str | os.PathLike | IO[bytes]
    sidecar: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    snapshots: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    data_track: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    overwrite: bool = False
    inputs: Mapping[str, str] = attrs.field(factory=dict)  # path -> what reads it (never written)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")
    _file: Any = attrs.field(default=None, init=False, alias="_file")  # the video file this sink opened
    _created: list[Path] = attrs.field(factory=list, init=False, alias="_created")
    _replaced: list[tuple[Path, Path]] = attrs.field(factory=list, init=False, alias="_replaced")  # (aside, original)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.video, (str, os.PathLike)):
            self.sidecar = self.sidecar or sidecar_path(self.video)
            self.snapshots = self.snapshots or snapshot_dir(self.video)
            self.data_track = self.data_track or data_track_path(self.video)
        elif self.data_track is None and self.sidecar is not None:
            self.data_track = data_track_path(self.sidecar.with_suffix(""))

    @property
    def label(self) -> str:  # type: ignore[override]
        v = self.video
        return os.fspath(v) if isinstance(v, (str, os.PathLike)) else getattr(v, "name", None) or f"<{type(v).__name__}>"

    @property
    def data_track_name(self) -> str | None:  # type: ignore[override]
        return None if self.data_track is None else self.data_track.name

    @property
    def can_snapshot(self) -> bool:  # type: ignore[override]
        return self.snapshots is not None

    def _paths(self) -> list[Path]:
        video = [Path(self.video)] if isinstance(self.video, (str, os.PathLike)) else []
        return video + [p for p in (self.sidecar, self.data_track) if p is not None]

    def open(self) -> None:
        for p in self._paths():
            if not p.parent.is_dir():
                raise ConfigError(f"output folder {p.parent} does not exist; create it or choose another output path")
            if p.is_dir():
                raise ConfigError(f"output {p} is a folder; give a file name such as {p / 'case.mp4'}")
        existing = [p for p in self._paths() if p.exists()]
        for p in existing:
            reader = next((what for path, what in self.inputs.items() if _same_file(p, path)), None)
            if reader is not None:
                raise ConfigError(f"output {p} is the file that {reader} reads; a recording never replaces its own input "
                                  f"(not even with --overwrite): choose another output path")
        if existing and not self.overwrite:
            raise ConfigError(f"{existing[0]} already exists; choose a new output name, or pass --overwrite "
                              "(library: overwrite=True) to replace that recording")
        if self.overwrite:  # set aside, not removed: the old recording stays until the new one has a fragment
            olds = existing + ([self.snapshots] if self.snapshots is not None and self.snapshots.is_dir() else [])
            for p in olds:
                aside = p.with_name(f".{p.name}.replaced")
                _remove(aside)  # one a crashed run left: the recording it replaced was already made
                os.replace(p, aside)
                self._replaced.append((aside, p))
        if isinstance(self.video, (str, os.PathLike)):
            path = Path(self.video)
            try:
                self._file = open(path, "wb" if self.overwrite else "xb")
            except FileExistsError:
                raise ConfigError(f"{path} already exists; choose a new output name, or pass --overwrite") from None
            except OSError as exc:
                raise ConfigError(f"cannot create {path}: {exc.strerror or exc}; check the folder is writable") from None
            self._created.append(path)

    def video_target(self) -> str | os.PathLike | IO[bytes]:
        return self._file if self._file is not None else self.video

    def sync(self) -> None:
        f = self._file
        if f is not None and not f.closed:
            f.flush()
            os.fsync(f.fileno())
            self._drop_replaced()

    def finish_video(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.flush()
                os.fsync(f.fileno())
            finally:
                f.close()
        self._drop_replaced()

    def _drop_replaced(self) -> None:
        """The new recording is on disk: remove the one ``overwrite`` set aside."""
        replaced, self._replaced = self._replaced, []
        for aside, _ in replaced:
            with contextlib.suppress(OSError):
                _remove(aside)

    def write_sidecar(self, meta: Mapping[str, Any]) -> None:
        if self.sidecar is not None:
            with self._lock:
                new = not self.sidecar.exists()
                atomic_write(self.sidecar, sidecar_bytes(meta), mode=SIDECAR_FILE_MODE)
                if new:
                    self._created.append(self.sidecar)

    def data_track_target(self) -> Path:
        if self.data_track is None:
            raise ConfigError("no data track path: give FileSink(data_track=PATH)")
        self._created.append(self.data_track)
        return self.data_track

    def snapshot_name(self, index: int, what: str) -> str:
        if self.snapshots is None:
            raise ConfigError("snapshot: no snapshot folder; give Recorder(snapshots=DIR) when the output is a file object")
        return f"{self.snapshots.name}/snapshot-{index:04d}-{what}.png"

    def write_snapshot(self, name: str, png: bytes) -> None:
        assert self.snapshots is not None
        self.snapshots.mkdir(parents=True, exist_ok=True)
        (self.snapshots.parent / name).write_bytes(png)

    def files(self) -> list[RecordedFile]:
        out = []
        cands: list[tuple[str, Any]] = [("segment", self.video), ("sidecar", self.sidecar), ("data", self.data_track)]
        if self.snapshots is not None and self.snapshots.is_dir():
            cands += [("snapshot", p) for p in sorted(self.snapshots.glob("snapshot-*.png"))]
        for kind, p in cands:
            if isinstance(p, (str, os.PathLike)) and os.path.isfile(p):
                out.append(RecordedFile(kind, os.fspath(p), os.path.getsize(p)))
        return out

    def abort(self) -> None:
        """Close and remove what this sink created (the recording never started)."""
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
        for p in self._created:
            with contextlib.suppress(OSError):
                p.unlink()
        self._created = []
        replaced, self._replaced = self._replaced, []
        for aside, original in replaced:  # the new recording never started: the old one comes back
            with contextlib.suppress(OSError):
                os.replace(aside, original)
