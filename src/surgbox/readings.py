"""The reading model for data devices, and the per-recording data track (JSON Lines sidecar).

Reading model
=============

A data device (BIS monitor, vitals monitor, anaesthesia machine) is a :class:`~surgbox.interfaces.Source`
with ``media = "data"`` that emits :class:`~surgbox.types.Reading` items:

* ``source``: the source's configured name (``"bis"``); ``kind``: what device/record type
  produced it (``"bis"``, ``"bis-history"``; a Philips plugin might use ``"intellivue"``).
* ``capture_ns``: the master clock (``clock.now_ns()``) read when the record's **last byte
  arrived** -- not when it was parsed, not the device's clock. This is what aligns data with
  video: the data track stores ``(capture_ns - recording_start_ns) / 1e9``.
* ``values``: ``{name: float | None}`` -- the numbers the panel and trend chart show, by the
  device's own names with version suffixes removed (``"BIS"``, ``"SQI"``, ``"EMGLOW"``, ``"SR"``;
  ``"HR"``, ``"SpO2"``, ``"NBP-SYS"`` for a vitals monitor). ``None`` means the device marked the
  value invalid or did not send it: never substitute a number (0, 255, -1) for a missing value.
* ``channels``: for multi-channel devices, ``{channel_id: {name: float | None}}`` with every
  channel; ``values`` then also holds the main channel's variables (BIS: channel ``"12"``, the
  combined channel the monitor displays), so a consumer that knows nothing of channels still
  shows the right number.
* ``device_time``: the device's own timestamp (naive, device-local), kept for audit; it is
  never used for ordering or alignment (device clocks drift and are set by hand).

Units are the device's units (BIS, SQI, SR in percent/index, EMGLOW and TOTPOW in dB, SEF in
Hz, IMPEDNCE in kOhm). A plugin documents its names and units in its docs page.

Writing a new monitor plugin (Philips IntelliVue, GE): subclass
:class:`surgbox.capture.ThreadedSource`, set ``media = "data"``, read bytes in ``_capture``,
feed them to an incremental parser that never raises on bad input, and return a ``Reading``
stamped with ``self.clock.now_ns()`` taken right after the read that completed the record.
Reconnect on errors inside ``_capture`` (never let an exception escape unless the source
must stop). Register it with ``register("intellivue", lazy("acme.intellivue:Source"), ...)``.

Data track
==========

:class:`DataTrackWriter` appends one JSON object per line to a sidecar next to the recording
(``<recording>.data.jsonl``). The first line is a header::

    {"format": "surgbox-data-track", "version": 1, "start_ns": 123456789000}

then one line per reading::

    {"t": 12.503, "source": "bis", "kind": "bis", "device_time": "2015-07-02T10:27:24",
     "values": {"BIS": 45.0, "SQI": 90.0, ...}, "channels": {"1": {...}, "2": {...}, "12": {...}}}

``t`` is seconds on the recording's output time line: ``(capture_ns - start_ns) / 1e9``, where
``start_ns`` is the master-clock time of the recording's first output frame (t = 0). It may be
slightly negative for a reading captured just before the first frame. Every line goes to the OS in
one unbuffered write, so a crash loses at most the line being written; :func:`read_data_track` ignores
a truncated or corrupt line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import attrs

from ._fs import write_all
from .errors import SurgboxError
from .types import Reading

log = logging.getLogger(__name__)

FORMAT = "surgbox-data-track"
VERSION = 1
SUFFIX = ".data.jsonl"


def data_track_path(recording_path: str | Path) -> Path:
    """The sidecar path for a recording: ``case.mp4`` -> ``case.mp4.data.jsonl``."""
    p = Path(recording_path)
    return p.with_name(p.name + SUFFIX)


def _clean(values: Mapping[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in values.items():
        if v is None:
            out[str(k)] = None
        else:
            f = float(v)
            out[str(k)] = f if math.isfinite(f) else None
    return out


def reading_to_dict(reading: Reading, start_ns: int) -> dict[str, Any]:
    """One data-track line (as a dict) for ``reading`` on a recording that started at ``start_ns``."""
    return {
        "t": round((reading.capture_ns - start_ns) / 1e9, 6),
        "source": reading.source,
        "kind": reading.kind,
        "device_time": reading.device_time.isoformat() if reading.device_time is not None else None,
        "values": _clean(reading.values),
        "channels": {str(ch): _clean(v) for ch, v in reading.channels.items()},
    }


@attrs.define(eq=False)
class DataTrackWriter:
    """Appends readings to a JSON Lines data track; one line per :meth:`write`, in one unbuffered write.

    Use :meth:`open` (or ``with DataTrackWriter.open(path, start_ns) as w``). ``write`` never
    raises on I/O errors (a full disk must not stop the recording): the first error is kept in
    ``error`` and logged, failed lines are counted in ``failed``, and writing resumes when the
    disk accepts data again. ``fsync_interval_s`` bounds what a power loss can take (0 = fsync
    every line). Memory use does not grow with the recording.
    """

    path: Path
    start_ns: int
    fsync_interval_s: float = 1.0
    written: int = 0
    failed: int = 0
    error: Exception | None = None
    _file: Any = attrs.field(default=None, alias="_file")  # unbuffered binary file: no stale buffer after an error
    _broken_line: bool = attrs.field(default=False, alias="_broken_line")
    _last_sync: float = attrs.field(default=0.0, alias="_last_sync")

    @classmethod
    def open(cls, target: str | Path | IO[bytes], start_ns: int, *, fsync_interval_s: float = 1.0,
             name: str | None = None) -> DataTrackWriter:
        """Create the data track and write the header line.

        ``target``: a path (created; it must not exist) or a writable binary file object (e.g. an
        encrypted store writer), which the writer owns from now on: :meth:`close` closes it (for a
        store writer that commits the object). Durability for a file object: its ``sync()`` if it
        has one (the store writer's), else ``os.fsync`` of its ``fileno()``. ``start_ns``:
        master-clock time (``clock.now_ns()``) of the recording's t = 0. ``name`` labels a file
        object in messages. Raises :class:`SurgboxError` naming the path when it cannot be created.
        """
        if isinstance(target, (str, os.PathLike)):
            self = cls(Path(target), int(start_ns), fsync_interval_s)
            try:
                self._file = open(self.path, "xb", buffering=0)
            except FileExistsError:
                raise SurgboxError(f"data track {self.path} already exists; each recording needs its own sidecar (pick a new path)") from None
            except OSError as exc:
                raise SurgboxError(f"cannot create data track {self.path}: {exc.strerror}; check the folder exists and is writable") from exc
        else:
            self = cls(Path(name or getattr(target, "name", None) or "<data track>"), int(start_ns), fsync_interval_s)
            self._file = target
        header = {"format": FORMAT, "version": VERSION, "start_ns": self.start_ns}
        self._write_all((json.dumps(header) + "\n").encode())
        self._last_sync = time.monotonic()
        return self

    def _sync(self) -> None:
        sync = getattr(self._file, "sync", None)
        if callable(sync):
            sync()
            return
        try:
            fd = self._file.fileno()
        except (AttributeError, OSError, ValueError):
            flush = getattr(self._file, "flush", None)
            if callable(flush):
                flush()
            return
        os.fsync(fd)

    def write(self, reading: Reading) -> bool:
        """Append one reading; True when the line reached the OS (see class doc for errors)."""
        if self._file is None:
            raise SurgboxError(f"data track {self.path} is closed; open a new DataTrackWriter")
        line = json.dumps(reading_to_dict(reading, self.start_ns), separators=(",", ":"), allow_nan=False) + "\n"
        if self._broken_line:
            line = "\n" + line  # isolate the partial line a failed write may have left
        try:
            self._write_all(line.encode("utf-8"))
            now = time.monotonic()
            if now - self._last_sync >= self.fsync_interval_s:
                self._sync()
                self._last_sync = now
        except (OSError, SurgboxError) as exc:  # SurgboxError: a store whose every root failed
            self.failed += 1
            self._broken_line = True
            if self.error is None:
                self.error = exc
                log.warning("data track %s: write failed (%s); readings are being lost until it succeeds", self.path, exc)
            return False
        self._broken_line = False
        self.written += 1
        return True

    def _write_all(self, data: bytes) -> None:
        write_all(self._file, data)

    def close(self) -> None:
        """Fsync and close (a store writer commits). Idempotent. Never raises: a failure is kept
        in ``error`` (when none was) and logged."""
        if self._file is None:
            return
        try:
            if not hasattr(self._file, "sync"):  # a store writer makes its data durable when it commits
                self._sync()
        except OSError as exc:  # pragma: no cover - disk gone at close
            log.warning("data track %s: final fsync failed: %s", self.path, exc)
        f, self._file = self._file, None
        try:
            f.close()
        except (OSError, SurgboxError) as exc:
            log.error("data track %s: closing failed: %s", self.path, exc)
            if self.error is None:
                self.error = exc

    def __enter__(self) -> DataTrackWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class DataPoint:
    """One reading read back from a data track; ``t`` in seconds on the recording time line."""

    t: float
    source: str
    kind: str
    values: Mapping[str, float | None]
    channels: Mapping[str, Mapping[str, float | None]] = attrs.field(factory=dict)
    device_time: datetime | None = None


@attrs.frozen
class DataTrack:
    """A data track read by :func:`read_data_track`: ``points`` in file order,
    ``skipped_lines`` that were truncated or not JSON, ``start_ns`` from the header."""

    points: tuple[DataPoint, ...]
    start_ns: int | None = None
    skipped_lines: int = 0

    def sources(self) -> list[str]:
        return sorted({p.source for p in self.points})

    def series(self, name: str, *, source: str | None = None, channel: str | None = None) -> list[tuple[float, float | None]]:
        """``[(t, value)]`` of one variable (``"BIS"``), optionally of one source and channel;
        ``None`` values are kept so a chart can show gaps."""
        out: list[tuple[float, float | None]] = []
        for p in self.points:
            if source is not None and p.source != source:
                continue
            m = p.values if channel is None else p.channels.get(channel, {})
            if name in m:
                out.append((p.t, m[name]))
        return out


def _iter_lines(f: IO[Any]) -> Iterator[str]:
    for raw in f:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        if not raw.endswith(b"\n"):
            # the last line of a crashed writer: never trust it
            yield ""
            return
        yield raw.decode("utf-8", errors="replace")


def read_data_track(source: str | os.PathLike | IO[bytes] | IO[str]) -> DataTrack:
    """Read a data track written by :class:`DataTrackWriter` from a path or an open file object
    (binary or text, read from its current position; e.g. a store reader: nothing touches the disk).

    Lines that are truncated (no final newline: the writer crashed mid-line), not JSON, or not
    readings are skipped and counted. Raises :class:`SurgboxError` when the file is missing or
    is not a data track.
    """
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise SurgboxError(f"data track {p} does not exist; it is written beside the recording as <recording>{SUFFIX}")
        with open(p, "rb") as f:
            return _read_track(f, str(p))
    return _read_track(source, str(getattr(source, "name", None) or "the data track stream"))


def _read_track(f: IO[Any], label: str) -> DataTrack:
    points: list[DataPoint] = []
    skipped = 0
    start_ns = None
    first = True
    for line in _iter_lines(f):
        if not line.strip():
            if line == "":
                skipped += 1
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            if first:
                raise SurgboxError(f"{label} is not a surgbox data track (its first line is not JSON)") from None
            skipped += 1
            continue
        if first:
            first = False
            if isinstance(obj, dict) and obj.get("format") == FORMAT:
                start_ns = obj.get("start_ns")
                continue
            raise SurgboxError(f"{label} is not a surgbox data track (its first line has no \"format\": \"{FORMAT}\")")
        try:
            dt = obj.get("device_time")
            points.append(
                DataPoint(
                    t=float(obj["t"]),
                    source=str(obj["source"]),
                    kind=str(obj["kind"]),
                    values=dict(obj.get("values") or {}),
                    channels={k: dict(v) for k, v in (obj.get("channels") or {}).items()},
                    device_time=datetime.fromisoformat(dt) if dt else None,
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            skipped += 1
    return DataTrack(tuple(points), start_ns, skipped)
