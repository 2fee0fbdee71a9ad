"""The live recorder: sources -> sync -> compositor -> encoder, on one master clock.

>>> with Recorder(sources, layout=layouts.paper(), output="case.mp4", duration=60) as rec:  # doctest: +SKIP
...     rec.snapshot("room")
...     rec.wait()

Threads: every source captures on its own thread into its bounded queue; one pipeline thread
runs the output ticks (``fps``, default 30): it drains the queues, picks each slot's newest
frame at or before the tick (:mod:`surgbox.sync`), composes, encodes, aligns audio by capture
time, writes data readings to the data track and serves snapshot requests. PNG snapshots are
written by a helper thread so the pipeline never waits on PNG compression. Memory is bounded by
the queue sizes; nothing grows with the recording's length.

Where the files go is a :class:`RecordingSink`. Beside an output path ``case.mp4``
(:class:`FileSink`): ``case.mp4.json`` (the sidecar: metadata, layout, sources, snapshots, final
stats; rewritten atomically), ``case.mp4.data.jsonl`` (data track, when there are data sources)
and ``case.mp4.snapshots/`` (PNG snapshots). :class:`StoreSink` encrypts the same files into a
store as they are recorded (no plaintext on disk; crash recovery by ``store.recover()``), and
:class:`EventSink` does that for a catalog event, which it starts, fills and stops.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import contextlib
import hashlib
import inspect
import io
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import attrs

from ._fs import atomic_write
from .clock import NS_PER_S, Clock
from .errors import ConfigError, SourceError, SurgboxError
from .interfaces import Compositor, Encoder, Source
from .sync import AudioAligner, FrameSelector, TickClock
from .types import AudioChunk, Layout, Reading, RecordingInfo, SegmentInfo, Trigger, VideoFrame, parse_rate

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "surgbox-recording"
SIDECAR_VERSION = 1
DEFAULT_AUDIO_RATE = 48000
DEFAULT_AUDIO_CHANNELS = 2


def _config_rate(value: Any, what: str) -> Fraction:
    try:
        return parse_rate(value, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _positive_int(value: Any, default: int) -> int:
    """``value`` as an int when it is a positive number, else ``default`` (an unset option)."""
    if isinstance(value, (int, float, Fraction)) and not isinstance(value, bool) and value > 0:
        return int(value)
    return default


def sidecar_path(output: str | os.PathLike) -> Path:
    """The sidecar JSON of a recording: ``case.mp4`` -> ``case.mp4.json``."""
    p = Path(output)
    return p.with_name(p.name + ".json")


def snapshot_dir(output: str | os.PathLike) -> Path:
    """The snapshot folder of a recording: ``case.mp4`` -> ``case.mp4.snapshots/``."""
    p = Path(output)
    return p.with_name(p.name + ".snapshots")


# -- recording sinks -----------------------------------------------------------------------------

RECORDING_SEGMENT_SIZE = 32 * 1024
"""Ciphertext segment size of a recording's video in a store. A crash loses the open segment:
32 KiB is ~0.5 s of the demo (~0.5 Mbit/s; 1 MiB would be ~15 s) and 0.03 s at 8 Mbit/s, for 16
bytes of tag per segment (0.05 %)."""

SMALL_SEGMENT_SIZE = 4096
"""Segment size of a recording's data track and sidecar in a store: a data track grows by a few
hundred bytes a second, so a crash loses at most ~4 KiB of it (seconds, not minutes)."""

FILE_KINDS = ("segment", "snapshot", "data", "sidecar")


@attrs.frozen
class RecordedFile:
    """A file a recording wrote: ``kind`` (``segment`` the video, ``snapshot`` a PNG, ``data`` the
    data track, ``sidecar`` the JSON sidecar), ``name`` (a path, or a store key), ``size`` in bytes
    and ``sha256`` of the plaintext (hex; ``None`` when the sink did not hash it)."""

    kind: str = attrs.field(validator=attrs.validators.in_(FILE_KINDS))
    name: str
    size: int
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class RecordingSink(abc.ABC):
    """Where a recording's files go: the video stream, the JSON sidecar, the data track and the
    PNG snapshots. :class:`FileSink` writes plain files beside an output path; :class:`StoreSink`
    encrypts everything into a :class:`~surgbox.interfaces.Store` (nothing in plaintext on disk);
    :class:`EventSink` does that for an event of the catalog.

    The recorder calls, in order: :meth:`open` (before the sources start; fail here on a bad
    destination), :meth:`write_sidecar` (at start, after each snapshot and at the end),
    :meth:`video_target` once, :meth:`data_track_target` once when there are data sources,
    :meth:`sync` about once a second (pipeline thread), :meth:`write_snapshot` (snapshot thread),
    :meth:`finish_video` after the encoder closed, and :meth:`close` last; :meth:`abort` instead
    when the recording could not start. Names in the sidecar are relative to the sidecar.
    """

    label: str = ""
    #: name of the data track in the sidecar (``None``: this sink keeps no data track)
    data_track_name: str | None = None
    #: whether :meth:`write_snapshot` can store snapshots
    can_snapshot: bool = True

    def open(self) -> None:
        """Prepare the destination (before any source starts)."""

    @abc.abstractmethod
    def video_target(self) -> str | os.PathLike | IO[bytes]:
        """The encoder's output: a path or a writable, non-seekable binary file object."""

    def sync(self) -> None:
        """Make what was written so far durable (called about once a second)."""

    def finish_video(self) -> None:
        """The encoder closed: make the video durable (and commit it)."""

    @abc.abstractmethod
    def write_sidecar(self, meta: Mapping[str, Any]) -> None:
        """Store (replace) the sidecar JSON."""

    def data_track_target(self) -> str | os.PathLike | IO[bytes]:
        """Where :class:`~surgbox.readings.DataTrackWriter` writes (it closes a file object)."""
        raise ConfigError(f"{type(self).__name__} keeps no data track")

    @abc.abstractmethod
    def snapshot_name(self, index: int, what: str) -> str:
        """The sidecar's name for snapshot ``index`` of ``what`` (``composite`` or a source name)."""

    @abc.abstractmethod
    def write_snapshot(self, name: str, png: bytes) -> None:
        """Store one PNG under the name :meth:`snapshot_name` gave."""

    def files(self) -> list[RecordedFile]:
        """What was written so far."""
        return []

    def close(self, error: BaseException | None = None) -> None:
        """The recording ended (``error``: why it ended early, if it did)."""

    def abort(self) -> None:
        """The recording did not start: discard what was begun."""


SIDECAR_FILE_MODE = 0o666
"""Mode of a plain-file sidecar before the umask: the same as the MP4 and PNGs beside it (which
FFmpeg and Pillow create with ``0o666 & ~umask``), so the files of one recording share one
permission; a recording that must not be readable by others goes to a store (encrypted)."""


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Replace the sidecar atomically and durably (temporary file, fsync, rename, folder fsync)."""
    atomic_write(path, _sidecar_bytes(data), mode=SIDECAR_FILE_MODE)


def _sidecar_bytes(meta: Mapping[str, Any]) -> bytes:
    return (json.dumps(meta, indent=2, default=str) + "\n").encode("utf-8")


def _png(picture: Any) -> bytes:
    """PNG bytes of an ``av.VideoFrame`` (fast compression: snapshots must not lag)."""
    buf = io.BytesIO()
    picture.to_image().save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@attrs.define(eq=False)
class FileSink(RecordingSink):
    """Plain files: the video at ``video`` (a path, or a binary file object such as a pipe),
    the sidecar at ``sidecar``, PNGs in the folder ``snapshots`` and the data track at
    ``data_track`` (``None`` disables each; for a path video they default to ``case.mp4.json``,
    ``case.mp4.snapshots/`` and ``case.mp4.data.jsonl`` beside it)."""

    video: str | os.PathLike | IO[bytes]
    sidecar: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    snapshots: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    data_track: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    def __attrs_post_init__(self) -> None:
        from .readings import data_track_path

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

    def video_target(self) -> str | os.PathLike | IO[bytes]:
        return self.video

    def finish_video(self) -> None:
        if isinstance(self.video, (str, os.PathLike)) and os.path.exists(self.video):
            fd = os.open(self.video, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_sidecar(self, meta: Mapping[str, Any]) -> None:
        if self.sidecar is not None:
            with self._lock:
                _write_json_atomic(self.sidecar, meta)

    def data_track_target(self) -> Path:
        if self.data_track is None:
            raise ConfigError("no data track path: give FileSink(data_track=PATH)")
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


class _HashingWriter:
    """Write-through wrapper of a store writer that hashes (SHA-256) and counts the plaintext;
    ``on_close(self)`` runs after the inner writer committed."""

    def __init__(self, inner: Any, name: str, on_close: Any = None):
        self.inner, self.name, self.on_close = inner, name, on_close
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        n = self.inner.write(data)
        n = len(data) if n is None else n
        self.sha.update(memoryview(data)[:n])
        self.size += n
        return n

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        flush = getattr(self.inner, "flush", None)
        if callable(flush):
            flush()

    def sync(self) -> None:
        sync = getattr(self.inner, "sync", None)
        if callable(sync):
            sync()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inner.close()
        if self.on_close is not None:
            self.on_close(self)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            abort = getattr(self.inner, "abort", None)
            if callable(abort):
                abort()


@attrs.define(eq=False)
class StoreSink(RecordingSink):
    """Everything encrypted into ``store`` (an opened :class:`~surgbox.interfaces.Store`), nothing
    in plaintext on disk. Objects: the video at ``key`` (e.g. ``recordings/demo-1/recording.mp4``),
    the sidecar ``KEY.json``, the data track ``KEY.data.jsonl`` and snapshots
    ``KEY.snapshot-0001-composite.png`` (flat names: they are valid event file names too).

    ``segment_size`` / ``small_segment_size``: ciphertext segment sizes of the video and of the
    data track and sidecar (passed to ``store.writer(..., segment_size=)`` when the store takes
    it; see :data:`RECORDING_SEGMENT_SIZE`). Crash safety: the video writer is synced about once
    a second; after a ``kill -9``, ``store.recover()`` (``surgbox store recover``) commits every
    complete segment. The sidecar is replaced (delete + write) at start, after each snapshot and
    at the end, so after a crash it may be missing: the video's container metadata holds the
    layout, sources, event and start time. ``close_store``: close ``store`` in :meth:`close`.
    Object metadata (unencrypted) holds only ``kind``.
    """

    store: Any = None
    key: str = ""
    segment_size: int | None = RECORDING_SEGMENT_SIZE
    small_segment_size: int | None = SMALL_SEGMENT_SIZE
    close_store: bool = False
    _video: _HashingWriter | None = attrs.field(default=None, init=False, alias="_video")
    _files: dict[str, RecordedFile] = attrs.field(factory=dict, init=False, alias="_files")
    _open: list[_HashingWriter] = attrs.field(factory=list, init=False, alias="_open")
    _sidecar_written: bool = attrs.field(default=False, init=False, alias="_sidecar_written")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")
    _takes_segment_size: bool | None = attrs.field(default=None, init=False, alias="_takes_segment_size")

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"store:{self.key}"

    @property
    def base(self) -> str:
        """The video key's last part (names in the sidecar are relative to its folder)."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def prefix(self) -> str:
        return self.key[: len(self.key) - len(self.base)]

    @property
    def sidecar_key(self) -> str:
        return self.key + ".json"

    @property
    def data_track_name(self) -> str:  # type: ignore[override]
        return self.base + ".data.jsonl"

    def open(self) -> None:
        if self.store is None or not self.key:
            raise ConfigError("StoreSink needs an opened store and the video's object key")

    def _writer(self, key: str, kind: str, segment_size: int | None) -> Any:
        if self._takes_segment_size is None:
            try:
                params = inspect.signature(self.store.writer).parameters
                self._takes_segment_size = "segment_size" in params or any(
                    p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            except (TypeError, ValueError):  # pragma: no cover
                self._takes_segment_size = False
        if segment_size is not None and self._takes_segment_size:
            return self.store.writer(key, {"kind": kind}, segment_size=segment_size)
        return self.store.writer(key, {"kind": kind})

    def _committed(self, kind: str) -> Any:
        def done(w: _HashingWriter) -> None:
            with self._lock:
                self._files[w.name] = RecordedFile(kind, w.name, w.size, w.sha.hexdigest())
                if w in self._open:
                    self._open.remove(w)
        return done

    def _track(self, w: _HashingWriter) -> _HashingWriter:
        with self._lock:
            self._open.append(w)
        return w

    def video_target(self) -> IO[bytes]:
        if self._video is None:
            self._video = self._track(_HashingWriter(self._writer(self.key, "segment", self.segment_size), self.key,
                                                     self._committed("segment")))
        return self._video  # type: ignore[return-value]

    def sync(self) -> None:
        if self._video is not None and not self._video.closed:
            self._video.sync()

    def finish_video(self) -> None:
        if self._video is not None:
            self._video.close()

    def write_sidecar(self, meta: Mapping[str, Any]) -> None:
        data = _sidecar_bytes(meta)
        with self._lock:
            if self._sidecar_written:
                self.store.delete(self.sidecar_key)
                self._sidecar_written = False
            w = self._writer(self.sidecar_key, "sidecar", self.small_segment_size)
            with w:
                w.write(data)
            self._sidecar_written = True
            self._files[self.sidecar_key] = RecordedFile("sidecar", self.sidecar_key, len(data), hashlib.sha256(data).hexdigest())

    def data_track_target(self) -> IO[bytes]:
        key = self.prefix + self.data_track_name
        return self._track(_HashingWriter(self._writer(key, "data", self.small_segment_size), key,
                                          self._committed("data")))  # type: ignore[return-value]

    def snapshot_name(self, index: int, what: str) -> str:
        return f"{self.base}.snapshot-{index:04d}-{what}.png"

    def write_snapshot(self, name: str, png: bytes) -> None:
        key = self.prefix + name
        w = _HashingWriter(self._writer(key, "snapshot", None), key, self._committed("snapshot"))
        try:
            w.write(png)
        except BaseException:
            w.abort()
            raise
        w.close()

    def files(self) -> list[RecordedFile]:
        with self._lock:
            return sorted(self._files.values(), key=lambda f: (FILE_KINDS.index(f.kind), f.name))

    def abort(self) -> None:
        with self._lock:
            pending = list(self._open)
        for w in pending:
            w.abort()
        if self._sidecar_written:
            with contextlib.suppress(Exception):
                self.store.delete(self.sidecar_key)
        self._close_store()

    def close(self, error: BaseException | None = None) -> None:
        with self._lock:
            pending = list(self._open)
        for w in pending:  # normally none: the recorder closed them
            try:
                w.close()
            except Exception as exc:  # pragma: no cover
                log.error("store object %s could not be committed: %s", w.name, exc)
        self._close_store()

    def _close_store(self) -> None:
        if self.close_store and self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()


@attrs.define(eq=False)
class EventSink(StoreSink):
    """Records an event of the catalog (issue 8's life cycle around a recording).

    ``events``: an :class:`~surgbox.catalog.events.EventManager` (its session needs the
    ``record`` permission for the event). :meth:`open` checks access, marks the event
    ``recording`` (when it is ``created``; one still ``recording`` after a crash gets another
    segment) and opens :meth:`~surgbox.catalog.events.EventManager.store_for`: objects are
    encrypted with the event's data key, named ``segment-NNNN.mp4`` (next free number),
    ``segment-NNNN.mp4.json`` / ``.data.jsonl`` / ``.snapshot-0001-composite.png``. :meth:`close`
    adds every file with its size and SHA-256 (the sidecar as kind ``data``), then, with
    ``stop_event``, stops the event, which makes its PDF report (``report``). ``registered``
    holds the catalog's file records afterwards.
    """

    events: Any = None
    event_id: str = ""
    stop_event: bool = True
    report: bool = True
    registered: list[Any] = attrs.field(factory=list, init=False)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"event {self.event_id}: {self.key or 'segment'}"

    def open(self) -> None:
        from .catalog.errors import CatalogError

        if self.events is None or not self.event_id:
            raise ConfigError("EventSink needs events= (an EventManager) and event_id=")
        ev = self.events.get(self.event_id)
        if ev.status == "stopped":
            raise CatalogError(f"event {self.event_id} is stopped; create a new event to record again")
        taken = {f.name for f in ev.files}
        n = 1
        while f"segment-{n:04d}.mp4" in taken:
            n += 1
        self.key = f"segment-{n:04d}.mp4"
        self.store = self.events.store_for(self.event_id)  # checks the record permission
        self.close_store = True
        if ev.status == "created":
            try:
                self.events.start_event(self.event_id)
            except BaseException:
                self._close_store()
                raise

    def close(self, error: BaseException | None = None) -> None:
        super().close(error)
        kinds = {"segment": "segment", "snapshot": "snapshot", "data": "data", "sidecar": "data"}
        problems = []
        for f in self.files():
            try:
                self.registered.append(self.events.add_file(self.event_id, kinds[f.kind], f.name, size=f.size, sha256=f.sha256))
            except Exception as exc:
                problems.append(f"{f.name}: {exc}")
                log.error("event %s: file %s could not be added to the catalog: %s", self.event_id, f.name, exc)
        if self.stop_event:
            self.events.stop_event(self.event_id, report=self.report)
        if problems:
            raise SurgboxError(f"event {self.event_id}: files not added to the catalog: {'; '.join(problems)}")


@attrs.define(eq=False)
class _SnapshotRequest:
    trigger: str
    source: str | None
    at_ns: int  # master-clock time asked for: served by the first tick at or after it
    done: concurrent.futures.Future = attrs.field(factory=concurrent.futures.Future)


@attrs.define(eq=False)
class Recorder:
    """Records ``sources`` into one composite video at ``output``: a path (plain files beside
    it), a binary file object, or a :class:`RecordingSink` (e.g. :class:`StoreSink`: everything
    encrypted into a store; :class:`EventSink`: into an event of the catalog).

    Options: ``layout`` (slots name the sources they show); ``encoder`` / ``compositor``
    (instances; default the ``libx264`` / ``default`` plugins); ``fps`` output rate;
    ``stale_timeout_s`` after which a silent source shows NO SIGNAL; ``event`` fields for the
    panel and metadata (``id``/``place``/``procedure`` ...); ``event_id`` (default ``event['id']``
    or a new id); ``optional`` source names that may fail at start (slate instead of an error);
    ``audio`` name of the audio source to record (default the first audio source); ``duration``
    seconds after which the recording ends by itself (exactly ``ceil(duration * fps)`` frames);
    ``latency_s`` how long after a tick its frames are collected; ``audio_lag_s`` how far audio
    writing trails the clock (late chunks land in place); ``max_behind_s`` how far the pipeline
    may fall behind the clock (a CPU hiccup: it catches up, every tick written) before it skips
    ticks to stay live (frames of up to ``latency_s + max_behind_s`` per source are buffered); ``sidecar``/``snapshots`` paths
    (default beside a path output; ``None`` for a file object output disables them; a sink
    decides itself); ``sync_interval_s`` how often the sink makes the video durable;
    ``plugins`` for creating default components and calling lifecycle hooks.
    """

    sources: Sequence[Source] = attrs.field(converter=tuple)
    layout: Layout
    output: str | os.PathLike | IO[bytes] | RecordingSink
    encoder: Encoder | None = None
    compositor: Compositor | None = None
    fps: Fraction = attrs.field(default=Fraction(30), converter=lambda v: _config_rate(v, "fps"))
    stale_timeout_s: float = 1.0
    event: Mapping[str, Any] = attrs.field(factory=dict)
    event_id: str | None = None
    optional: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset)
    audio: str | None = None
    duration: float | None = None
    latency_s: float = 0.25
    audio_lag_s: float = 0.05
    data_timeout_s: float = 10.0
    max_behind_s: float = 3.0
    sidecar: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    snapshots: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    plugins: Any = None
    clock: Clock | None = None
    source_info: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    sync_interval_s: float = 1.0

    _sink: RecordingSink = attrs.field(default=None, init=False, alias="_sink")
    _last_sync: float = attrs.field(default=0.0, init=False, alias="_last_sync")
    _pending_readings: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_pending_readings")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _stop_evt: threading.Event = attrs.field(factory=threading.Event, init=False, alias="_stop_evt")
    _done_evt: threading.Event = attrs.field(factory=threading.Event, init=False, alias="_done_evt")
    _error: BaseException | None = attrs.field(default=None, init=False, alias="_error")
    _ticks: TickClock | None = attrs.field(default=None, init=False, alias="_ticks")
    _selectors: dict[str, FrameSelector] = attrs.field(factory=dict, init=False, alias="_selectors")
    _aligner: AudioAligner | None = attrs.field(default=None, init=False, alias="_aligner")
    _readings: dict[str, Reading] = attrs.field(factory=dict, init=False, alias="_readings")
    _failed_sources: dict[str, str] = attrs.field(factory=dict, init=False, alias="_failed_sources")
    _started: list[Source] = attrs.field(factory=list, init=False, alias="_started")
    _snap_q: queue.Queue = attrs.field(factory=lambda: queue.Queue(maxsize=16), init=False, alias="_snap_q")
    _snap_pool: concurrent.futures.ThreadPoolExecutor | None = attrs.field(default=None, init=False, alias="_snap_pool")
    _snapshots: list[dict[str, Any]] = attrs.field(factory=list, init=False, alias="_snapshots")
    _snap_wait: list[_SnapshotRequest] = attrs.field(factory=list, init=False, alias="_snap_wait")
    _data_track: Any = attrs.field(default=None, init=False, alias="_data_track")
    _info: RecordingInfo | None = attrs.field(default=None, init=False, alias="_info")
    _meta: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_meta")
    _frames_out: int = attrs.field(default=0, init=False, alias="_frames_out")
    _skipped: int = attrs.field(default=0, init=False, alias="_skipped")
    _end_tick: int = attrs.field(default=0, init=False, alias="_end_tick")
    _rates: dict[str, float] = attrs.field(factory=dict, init=False, alias="_rates")
    _rate_mark: tuple[int, dict[str, int], int] | None = attrs.field(default=None, init=False, alias="_rate_mark")
    _source_errors: dict[str, str] = attrs.field(factory=dict, init=False, alias="_source_errors")
    _stopped_stats: dict[str, Any] | None = attrs.field(default=None, init=False, alias="_stopped_stats")
    _sink_closed: bool = attrs.field(default=False, init=False, alias="_sink_closed")
    _next_tick: int = attrs.field(default=0, init=False, alias="_next_tick")
    _audio_rejected: int = attrs.field(default=0, init=False, alias="_audio_rejected")
    _audio_error: str | None = attrs.field(default=None, init=False, alias="_audio_error")

    # -- construction ---------------------------------------------------------------------------
    def __attrs_post_init__(self) -> None:
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"source name(s) {', '.join(sorted(dup))} used twice; give every source its own name")
        for slot in self.layout.slots:
            if slot.kind == "video" and (slot.source or slot.name) not in names:
                raise ConfigError(
                    f"layout {self.layout.name!r} slot {slot.name!r} shows source {slot.source or slot.name!r}, "
                    f"but no source has that name; sources: {', '.join(names) or '(none)'}"
                )
        unknown = sorted(self.optional - set(names))
        if unknown:
            raise ConfigError(f"optional source(s) {', '.join(unknown)} are not declared; sources: {', '.join(names)}")
        audio = [s for s in self.sources if s.media == "audio"]
        if self.audio is not None and self.audio not in {s.name for s in audio}:
            raise ConfigError(f"audio source {self.audio!r} is not an audio source; audio sources: {', '.join(s.name for s in audio) or '(none)'}")
        if self.fps <= 0 or self.fps > 240:
            raise ConfigError(f"fps {self.fps} is out of range; use 1..240 (default 30)")
        if self.stale_timeout_s <= 0:
            raise ConfigError(f"stale_timeout_s must be > 0, got {self.stale_timeout_s}")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"duration must be > 0 seconds, got {self.duration}")
        if isinstance(self.output, RecordingSink):
            if self.sidecar is not None or self.snapshots is not None:
                raise ConfigError("sidecar=/snapshots= apply to a path or file output; a RecordingSink names its own files")
            self._sink = self.output
        else:
            if isinstance(self.output, (str, os.PathLike)):
                if self.sidecar is None:
                    self.sidecar = sidecar_path(self.output)
                if self.snapshots is None:
                    self.snapshots = snapshot_dir(self.output)
            self._sink = FileSink(self.output, self.sidecar, self.snapshots)

    @property
    def sink(self) -> RecordingSink:
        """Where the files go (a :class:`FileSink` for a path or file object output)."""
        return self._sink

    @property
    def audio_source(self) -> Source | None:
        audio = [s for s in self.sources if s.media == "audio"]
        if self.audio is not None:
            return next(s for s in audio if s.name == self.audio)
        return audio[0] if audio else None

    def _plugins(self) -> Any:
        if self.plugins is None:
            from .plugins import get_plugins

            self.plugins = get_plugins()
        return self.plugins

    def _label(self) -> str:
        return self._sink.label

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.stop()
        except SurgboxError:
            if exc_type is None:
                raise

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done_evt.is_set()

    @property
    def error(self) -> BaseException | None:
        """The error that ended the recording early (full disk ...), if any."""
        return self._error

    def start(self) -> None:
        """Start the sources, open the output and begin recording.

        Raises :class:`SourceError` when a non-optional source cannot open (every source that
        did start is stopped again), :class:`EncoderError` when the output cannot be created.
        """
        if self._thread is not None:
            raise SurgboxError("this recorder was already started; create a new Recorder for a new recording")
        if self.encoder is None:
            self.encoder = self._plugins().create("encoder", "libx264")
        if self.compositor is None:
            self.compositor = self._plugins().create("compositor", "default")
        self.compositor.configure(self.layout)
        clock = self.clock = self.clock or Clock()
        self._sink.open()  # a bad destination fails before any device opens
        for src in self.sources:
            try:
                src.start(clock)
            except Exception as exc:
                if src.name in self.optional:
                    self._failed_sources[src.name] = str(exc)
                    log.warning("optional source %r did not start (%s); it shows NO SIGNAL", src.name, exc)
                    continue
                self._stop_sources()
                self._sink.abort()
                if isinstance(exc, SourceError):
                    raise SourceError(f"{exc} (mark source {src.name!r} optional to record without it)") from exc
                raise SourceError(
                    f"source {src.name!r} could not start: {type(exc).__name__}: {exc}; fix its options or mark it optional"
                ) from exc
            self._started.append(src)
        try:
            self._open_output(clock)
        except BaseException:
            self._stop_sources()
            if self.encoder is not None:
                with contextlib.suppress(Exception):
                    self.encoder.close()
            self._sink.abort()  # discards what a store sink began (the data track's writer too)
            if self._data_track is not None:
                self._data_track.close()
            raise
        self._thread = threading.Thread(target=self._run, name="surgbox-recorder", daemon=True)
        self._thread.start()

    def _open_output(self, clock: Clock) -> None:
        period = Fraction(NS_PER_S) / self.fps
        now = clock.now_ns() + round(0.1 * NS_PER_S)
        # Ticks on the clock's grid of 1/fps from its origin: sources that also run on that grid
        # (and markers at whole seconds) fall exactly on ticks.
        n = -(-(now - clock.origin_ns) // period)
        start_ns = clock.origin_ns + round(n * period)
        self._ticks = TickClock(self.fps, start_ns)
        self._end_tick = self._ticks.ticks_for(self.duration) if self.duration else 0
        timeout = round(self.stale_timeout_s * NS_PER_S)
        for slot in self.layout.slots:
            if slot.kind == "video":
                name = slot.source or slot.name
                # room for a 64 fps source's frames over the latency plus the allowed lag
                pending = max(16, round((self.latency_s + self.max_behind_s) * 64) + 8)
                self._selectors.setdefault(name, FrameSelector(name, timeout, pending))
        asrc = self.audio_source
        audio_rate = audio_channels = None
        if asrc is not None:
            # the source's configured format (a file source's default None: the file's own,
            # unknown here) else 48 kHz stereo; chunks in another format are resampled/mixed
            audio_rate = _positive_int(getattr(asrc, "sample_rate", None), DEFAULT_AUDIO_RATE)
            audio_channels = _positive_int(getattr(asrc, "channels", None), DEFAULT_AUDIO_CHANNELS)
            self._aligner = AudioAligner(audio_rate, audio_channels, start_ns)
        started_at = clock.wall_time(start_ns)
        self.event_id = self.event_id or str(self.event.get("id") or self.event.get("event_id") or f"rec-{started_at:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}")
        sources = [self._describe_source(s) for s in self.sources]
        data_track = self._sink.data_track_name if any(s.media == "data" for s in self._started) else None
        enc_name = getattr(self.encoder, "codec", None) or type(self.encoder).__name__
        self._meta = {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "event_id": self.event_id,
            "event": {str(k): v for k, v in self.event.items()},
            "output": self._label(),
            "started_at": started_at.isoformat(),
            "start_ns": start_ns,
            "fps": str(self.fps),
            "layout": self.layout.to_dict(),
            "sources": sources,
            "audio": None if asrc is None else {"source": asrc.name, "sample_rate": audio_rate, "channels": audio_channels},
            "encoder": {"name": enc_name, **self._encoder_settings()},
            "data_track": data_track,
            "snapshots": self._snapshots,
            "status": "recording",
        }
        metadata = {
            "title": self.event_id,
            "comment": "surgbox recording",
            "surgbox_event_id": self.event_id,
            "surgbox_started_at": started_at.isoformat(),
            "surgbox_layout": json.dumps(self.layout.to_dict(), separators=(",", ":")),
            "surgbox_sources": json.dumps(sources, separators=(",", ":"), default=str),
            "surgbox_event": json.dumps(self._meta["event"], separators=(",", ":"), default=str),
        }
        self._sink.write_sidecar(self._meta)  # fails early on an unwritable folder
        assert self.encoder is not None
        self.encoder.open_output(
            self._sink.video_target(),
            width=self.layout.width,
            height=self.layout.height,
            fps=self.fps,
            audio_rate=audio_rate,
            audio_channels=audio_channels or 1,
            metadata=metadata,
        )
        if data_track is not None:
            from .readings import DataTrackWriter

            self._data_track = DataTrackWriter.open(self._sink.data_track_target(), start_ns, name=data_track)
        self._snap_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="surgbox-snapshot")
        self._info = RecordingInfo(
            id=self.event_id,
            path=self._label(),
            layout=self.layout,
            sources=tuple(s.name for s in self.sources),
            started_at=started_at,
            metadata=dict(self._meta),
        )
        self._call_hook("recording_started", recording=self._info)

    def _describe_source(self, src: Source) -> dict[str, Any]:
        d: dict[str, Any] = {"name": src.name, "media": src.media, "optional": src.name in self.optional}
        d.update(self.source_info.get(src.name, {}))
        describe = getattr(src, "describe", None)
        if callable(describe):
            try:
                d["device"] = str(describe())
            except Exception:  # a description is optional
                pass
        for attr in ("width", "height", "fps", "sample_rate", "channels"):
            v = getattr(src, attr, None)
            if isinstance(v, (int, float, Fraction)) and not isinstance(v, bool):
                d.setdefault(attr, str(v) if isinstance(v, Fraction) else v)
        if src.name in self._failed_sources:
            d["start_error"] = self._failed_sources[src.name]
        return d

    def _encoder_settings(self) -> dict[str, Any]:
        out = {}
        for k in ("preset", "crf", "bitrate", "profile", "gop_seconds", "tune", "threads", "cq"):
            v = getattr(self.encoder, k, None)
            if v is not None:
                out[k] = v
        return out

    def _call_hook(self, name: str, **kwargs: Any) -> None:
        try:
            getattr(self._plugins().hook, name)(**kwargs)
        except Exception:  # an integrator's hook must not break the recording
            log.exception("lifecycle hook %s failed", name)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the recording ends (``duration`` reached or an error); True if it ended."""
        if self._thread is None:
            return True
        return self._done_evt.wait(timeout)

    def stop(self) -> dict[str, Any]:
        """End the recording: the last tick is written, the file finalized, sources stopped.

        Returns :meth:`stats`. Raises the error that ended the recording early (e.g.
        :class:`EncoderError` for a full disk, after everything was closed). Idempotent.
        """
        if self._thread is None:
            self._stop_sources()
            return self.stats()
        self._stop_evt.set()
        self._thread.join()
        self._stop_sources()
        if self._snap_pool is not None:
            self._snap_pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error
        return self.stats()

    def _stop_sources(self) -> None:
        for src in self._started:
            try:
                src.stop()
            except Exception as exc:  # pragma: no cover - best effort
                log.warning("source %r: stop failed: %s", src.name, exc)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self, source: str | None = None, *, timeout: float | None = 10.0, trigger: str = "api") -> dict[str, Any]:
        """Save a PNG of the next composite and, if ``source`` is given, of that source's current
        frame at its native resolution. Blocks until written (at most ``timeout`` s) and returns
        the sidecar entry (``t`` seconds on the output time line, file names ...)."""
        if not self.running:
            raise SurgboxError("snapshot: the recorder is not running; call start() first")
        if source is not None and source not in {s.name for s in self.sources if s.media == "video"}:
            names = ", ".join(s.name for s in self.sources if s.media == "video")
            raise ConfigError(f"snapshot: no video source named {source!r}; video sources: {names}")
        if not self._sink.can_snapshot:
            raise ConfigError("snapshot: no snapshot folder; give Recorder(snapshots=DIR) when the output is a file object")
        assert self.clock is not None
        req = _SnapshotRequest(trigger, source, self.clock.now_ns())
        try:
            self._snap_q.put_nowait(req)
        except queue.Full:
            raise SurgboxError("snapshot: too many snapshots pending; try again in a moment") from None
        try:
            return req.done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise SurgboxError(f"snapshot: not served within {timeout:g} s (recorder {self.ticks_behind()} ticks behind); "
                               "try again") from None

    def ticks_behind(self) -> int:
        """How many output ticks are due (their ``latency_s`` included) but not yet written."""
        if self._ticks is None or self.clock is None or not self.running:
            return 0
        due = self._ticks.ticks_before(self.clock.now_ns() - round(self.latency_s * NS_PER_S))
        return max(0, due - self._next_tick)

    def _serve_snapshots(self, k: int, picture: Any, frames: Mapping[str, VideoFrame | None]) -> None:
        assert self._ticks is not None
        while True:
            try:
                self._snap_wait.append(self._snap_q.get_nowait())
            except queue.Empty:
                break
        due, self._snap_wait = [r for r in self._snap_wait if r.at_ns <= self._ticks.due_ns(k)], [r for r in self._snap_wait if r.at_ns > self._ticks.due_ns(k)]
        for req in due:
            assert self._ticks is not None and self.clock is not None
            n = len(self._snapshots) + 1
            t = self._ticks.output_ns(k) / NS_PER_S
            entry: dict[str, Any] = {
                "index": n,
                "t": round(t, 6),
                "wall": self.clock.wall_time(self._ticks.due_ns(k)).isoformat(),
                "trigger": req.trigger,
                "composite": self._sink.snapshot_name(n, "composite"),
            }
            src_frame = None
            if req.source is not None:
                sel = self._selectors.get(req.source)
                src_frame = frames.get(req.source) if sel is not None else None
                entry["source"] = req.source
                if src_frame is None:
                    entry["source_image"] = None
                    entry["source_error"] = "no current frame (source stale or not in the layout)"
                else:
                    entry["source_image"] = self._sink.snapshot_name(n, req.source)
                    entry["source_size"] = [src_frame.width, src_frame.height]
            self._snapshots.append(entry)
            assert self._snap_pool is not None
            self._snap_pool.submit(self._write_snapshot, req, entry, picture, None if src_frame is None else src_frame.image)

    def _write_snapshot(self, req: _SnapshotRequest, entry: dict[str, Any], picture: Any, source_image: Any) -> None:
        try:
            self._sink.write_snapshot(entry["composite"], _png(picture))
            if source_image is not None:
                self._sink.write_snapshot(entry["source_image"], _png(source_image))
            self._sink.write_sidecar(self._meta)
            req.done.set_result(dict(entry))
        except Exception as exc:
            log.error("snapshot %s failed: %s", entry.get("index"), exc)
            entry["error"] = str(exc)
            req.done.set_exception(SurgboxError(f"snapshot could not be written to {self._label()}: {exc}"))

    # -- pipeline thread ------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._ticks is not None and self.clock is not None
        ticks, clock = self._ticks, self.clock
        latency = round(self.latency_s * NS_PER_S)
        max_behind = max(1, round(self.max_behind_s * float(self.fps)))
        k = 0
        try:
            while not self._stop_evt.is_set() and (not self._end_tick or k < self._end_tick):
                due = ticks.due_ns(k) + latency
                delay = (due - clock.now_ns()) / NS_PER_S
                if delay > 0 and self._stop_evt.wait(delay):
                    break
                behind = ticks.ticks_before(clock.now_ns() - latency) - 1 - k
                if behind > max_behind:  # starved of CPU: skip ticks to stay live (timestamps stay exact)
                    skip = behind - 1
                    if self._end_tick:
                        skip = min(skip, self._end_tick - 1 - k)
                    k += skip
                    self._skipped += skip
                    log.warning("recorder fell %d ticks behind; skipped them", skip)
                self._drain()
                self._tick(k)
                k += 1
                self._next_tick = k
                self._maybe_sync()
            self._drain()
            self._finish_audio(ticks.output_ns(k))
        except BaseException as exc:
            self._error = exc
            log.error("recording %s stopped: %s", self._label(), exc)
        finally:
            try:
                self._finalize(k)
            except BaseException as exc:  # a bug or an unexpected error while finishing: never hang, never "complete"
                self._note_error("finishing", exc)
                self._finalize_failed()
            finally:
                self._done_evt.set()

    def _drain(self) -> None:
        for src in self._started:
            for _ in range(256):
                item = src.get(0)
                if item is None:
                    break
                self._dispatch(src, item)
            err = src.error
            if err is not None and src.name not in self._source_errors:
                self._source_errors[src.name] = f"{type(err).__name__}: {err}"
                log.warning("source %r failed during the recording (%s); it shows NO SIGNAL", src.name, err)

    def _dispatch(self, src: Source, item: Any) -> None:
        if isinstance(item, VideoFrame):
            sel = self._selectors.get(src.name)
            if sel is not None:
                sel.push(item)
        elif isinstance(item, AudioChunk):
            if self._aligner is not None and src is self.audio_source:
                try:
                    self._aligner.push(item)
                except Exception as exc:  # a chunk that cannot be placed: counted, the first error kept
                    self._audio_rejected += 1
                    if self._audio_error is None:
                        self._audio_error = f"audio source {src.name!r}: chunk of {item.sample_rate} Hz x {item.channels} rejected: {type(exc).__name__}: {exc}"
                        log.error("recording %s: %s", self._label(), self._audio_error)
        elif isinstance(item, Reading):
            pending = self._pending_readings.setdefault(src.name, collections.deque(maxlen=256))
            pending.append(item)
            if self._data_track is not None:
                self._data_track.write(item)
        elif isinstance(item, Trigger):
            if item.action == "snapshot":
                req = _SnapshotRequest(f"trigger:{src.name}", item.detail.get("source"), item.capture_ns)
                try:
                    self._snap_q.put_nowait(req)
                except queue.Full:
                    log.warning("snapshot trigger from %r dropped: too many pending", src.name)

    def _tick(self, k: int) -> None:
        assert self._ticks is not None and self.clock is not None and self.compositor is not None and self.encoder is not None
        tick_ns = self._ticks.due_ns(k)
        out_ns = self._ticks.output_ns(k)
        frames = {name: sel.select(tick_ns) for name, sel in self._selectors.items()}
        for name, pending in self._pending_readings.items():  # newest reading captured at or before the tick
            while pending and pending[0].capture_ns <= tick_ns:
                self._readings[name] = pending.popleft()
        data_timeout = round(self.data_timeout_s * NS_PER_S)
        readings = {n: r for n, r in self._readings.items() if tick_ns - r.capture_ns <= data_timeout}
        event = {**self._meta["event"], "time": f"{self.clock.wall_time(tick_ns).astimezone():%Y-%m-%d %H:%M:%S}"}
        event.setdefault("id", self.event_id)
        picture = self.compositor.compose(frames, readings, event, out_ns)
        self.encoder.write_video(picture, out_ns)
        self._frames_out += 1
        if self._aligner is not None:
            block, t = self._aligner.pull(out_ns - round(self.audio_lag_s * NS_PER_S))
            if block.shape[1]:
                self.encoder.write_audio(block, t)
        if self._snap_wait or not self._snap_q.empty():
            self._serve_snapshots(k, picture, frames)
        self._update_rates(k)

    def _finish_audio(self, end_ns: int) -> None:
        if self._aligner is not None and self.encoder is not None and self._frames_out:
            block, t = self._aligner.pull(end_ns)
            if block.shape[1]:
                self.encoder.write_audio(block, t)

    def _update_rates(self, k: int) -> None:
        assert self._ticks is not None
        if k % max(1, round(float(self.fps))):
            return
        now = time.monotonic_ns()
        counts = {n: s.received for n, s in self._selectors.items()}
        if self._aligner is not None:
            counts["_audio"] = self._aligner.chunks
        if self._rate_mark is not None:
            t0, c0, f0 = self._rate_mark
            dt = (now - t0) / NS_PER_S
            if dt > 0:
                self._rates = {n: (counts[n] - c0.get(n, 0)) / dt for n in counts}
                self._rates["_out"] = (self._frames_out - f0) / dt
        self._rate_mark = (now, counts, self._frames_out)

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now - self._last_sync < self.sync_interval_s:
            return
        self._last_sync = now
        try:
            self._sink.sync()
        except Exception as exc:  # a failing disk: the next write reports it if nothing is left
            log.error("recording %s: sync failed: %s", self._label(), exc)

    def _note_error(self, what: str, exc: BaseException) -> None:
        """An error while finishing: logged; the first one ends the recording as failed."""
        if isinstance(exc, SurgboxError):
            log.error("recording %s: %s failed: %s", self._label(), what, exc)
        else:  # not one of ours (FFmpeg, a bug): keep the traceback
            log.error("recording %s: %s failed", self._label(), what, exc_info=exc)
        if self._error is None:
            if isinstance(exc, SurgboxError):
                self._error = exc
            else:
                self._error = SurgboxError(f"recording {self._label()}: {what} failed: {type(exc).__name__}: {exc}")
                self._error.__cause__ = exc

    def _finalize(self, k: int) -> None:
        try:
            if self.encoder is not None:
                self.encoder.close()
        except Exception as exc:
            self._note_error("closing the encoder", exc)
        try:
            self._sink.finish_video()  # fsync / commit what was written, even after an error
        except Exception as exc:
            self._note_error("finishing the video", exc)
        if self._data_track is not None:
            try:
                self._data_track.close()
            except Exception as exc:
                self._note_error("closing the data track", exc)
        assert self._ticks is not None
        duration_ns = self._ticks.output_ns(k)
        if self._snap_pool is not None:
            self._snap_pool.shutdown(wait=True)
        while True:  # requests that arrived after the last tick
            try:
                self._snap_wait.append(self._snap_q.get_nowait())
            except queue.Empty:
                break
        for req in self._snap_wait:
            req.done.set_exception(SurgboxError("snapshot: the recording ended first"))
        self._snap_wait = []
        stats = self.stats()
        stats["duration_s"] = duration_ns / NS_PER_S
        self._stopped_stats = stats
        assert self.clock is not None
        if self._meta.get("audio") is not None and stats.get("audio") is not None:
            self._meta["audio"] = {**self._meta["audio"], "resampled_from": stats["audio"]["resampled_from"],
                                   "error": stats["audio"]["error"]}
        self._meta.update(
            status="failed" if self._error else "complete",
            error=None if self._error is None else str(self._error),
            stopped_at=datetime.now(timezone.utc).isoformat(),
            duration_s=duration_ns / NS_PER_S,
            frames=self._frames_out,
            stats=stats,
        )
        try:
            self._sink.write_sidecar(self._meta)
        except Exception as exc:
            log.error("cannot write the sidecar of %s: %s", self._label(), exc)
        assert self._info is not None
        size = stats["encoder"].get("size_bytes") or 0
        info = attrs.evolve(self._info, metadata=dict(self._meta))
        if self._frames_out:
            self._call_hook("segment_finalized", recording=info, segment=SegmentInfo(self.event_id or "", 0, self._label(), 0, duration_ns, int(size)))
        self._sink_closed = True
        try:
            self._sink.close(self._error)
        except Exception as exc:
            log.error("recording %s: closing the destination failed: %s", self._label(), exc)
            if self._error is None:
                self._error = exc
        stats["files"] = [f.to_dict() for f in self._sink.files()]
        stats["error"] = None if self._error is None else str(self._error)
        self._stopped_stats = stats
        self._call_hook("recording_stopped", recording=info, stats=stats)

    def _finalize_failed(self) -> None:
        """After :meth:`_finalize` itself raised: best effort to leave a ``failed`` sidecar and a
        closed destination (each step guarded), so nothing reports the recording complete."""
        steps = [self._write_failed_sidecar]
        if not self._sink_closed:
            self._sink_closed = True
            steps.append(lambda: self._sink.close(self._error))
        for step in steps:
            try:
                step()
            except Exception as exc:
                log.error("recording %s: cleaning up after the failure: %s", self._label(), exc)
        if self._stopped_stats is None:
            with contextlib.suppress(Exception):
                self._stopped_stats = self.stats()
        if self._stopped_stats is not None:
            self._stopped_stats["error"] = str(self._error)
        if self._snap_pool is not None:
            self._snap_pool.shutdown(wait=True)
        for req in self._snap_wait:
            if not req.done.done():
                req.done.set_exception(SurgboxError("snapshot: the recording ended first"))

    def _write_failed_sidecar(self) -> None:
        self._meta.update(status="failed", error=str(self._error), stopped_at=datetime.now(timezone.utc).isoformat(),
                          frames=self._frames_out)
        self._sink.write_sidecar(self._meta)

    # -- stats ----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters (safe to call from any thread while recording).

        ``frames``: output frames written; ``fps_out``; ``skipped_ticks``; ``sources``: per
        source ``fps_in``, ``received``/``shown``/``dropped``/``duplicated`` (video), ``stale``,
        ``error``; ``audio``: ``av_offset_ms``, gap/trimmed samples; ``encoder``: its stats incl.
        ``size_bytes``; ``snapshots``; ``error``.
        """
        if self._stopped_stats is not None and not self.running:
            return dict(self._stopped_stats)
        srcs: dict[str, Any] = {}
        for src in self.sources:
            d: dict[str, Any] = {"media": src.media}
            sel = self._selectors.get(src.name)
            if sel is not None:
                d.update(sel.stats())
            if src.name in self._rates:
                d["fps_in"] = round(self._rates[src.name], 2)
            try:
                ss = dict(src.stats())
                d["captured"], d["queue_dropped"] = ss.get("captured"), ss.get("dropped")
                d["source"] = ss
            except Exception:  # pragma: no cover
                pass
            err = self._failed_sources.get(src.name) or self._source_errors.get(src.name)
            d["error"] = err
            srcs[src.name] = d
        audio = None if self._aligner is None else self._aligner.stats()
        if audio is not None:
            audio.update(source=getattr(self.audio_source, "name", None), rejected_chunks=self._audio_rejected, error=self._audio_error)
            if "_audio" in self._rates:
                audio["chunks_per_s"] = round(self._rates["_audio"], 2)
        enc = self.encoder.stats() if self.encoder is not None and hasattr(self.encoder, "stats") else {}
        return {
            "event_id": self.event_id,
            "frames": self._frames_out,
            "fps_out": round(self._rates.get("_out", 0.0), 2),
            "skipped_ticks": self._skipped,
            "elapsed_s": self._frames_out / float(self.fps),
            "sources": srcs,
            "audio": audio,
            "encoder": enc,
            "snapshots": len(self._snapshots),
            "error": None if self._error is None else str(self._error),
        }
