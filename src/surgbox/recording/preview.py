"""A live preview of a running recording: the newest composite as a small JPEG, made off the tick thread.

>>> tap = PreviewTap(max_fps=5, width=640)                                 # doctest: +SKIP
>>> with Recorder(sources, layout, "case.mp4", preview=tap) as rec:        # doctest: +SKIP
...     frame = tap.wait(after=0, timeout=2.0)      # PreviewFrame: .jpeg bytes, .seq, .time_ns, .readings

The recorder's pipeline thread calls :meth:`PreviewTap.offer` once per output tick with the
composite it just made. ``offer`` never blocks and never copies: when nobody has asked for a
picture in the last :attr:`PreviewTap.idle_s` seconds, or the last picture was taken less than
``1 / max_fps`` ago, it returns at once; otherwise it keeps a reference to the frame in a
one-slot mailbox (a newer frame replaces an older one not yet encoded) and wakes the tap's own
thread, which scales the frame with swscale and compresses the JPEG (Pillow). So the preview
costs the pipeline a few attribute reads per tick, costs nothing at all while no one watches,
and at most ``max_fps`` scale-and-compress runs per second on another thread while someone does
(``benchmarks/bench_console.py`` measures it). Memory: one pending frame and one JPEG.

Readers (a web console's preview) call :meth:`PreviewTap.wait` or :meth:`PreviewTap.latest`;
each call counts as demand (:meth:`PreviewTap.peek` does not). A frame's ``readings`` are the data
the panel showed at that tick (``{source: Reading}``); :attr:`PreviewTap.readings` holds the
newest ones whether anybody watches or not, for a status display next to the picture.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs

log = logging.getLogger(__name__)


@attrs.frozen
class PreviewFrame:
    """One preview picture: ``jpeg`` bytes, ``seq`` (1, 2, ... per tap), ``time_ns`` the output
    time of its tick (0 = first frame of the recording), ``width`` x ``height`` of the JPEG and the
    ``readings`` shown in the panel at that tick."""

    jpeg: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    seq: int
    time_ns: int
    width: int
    height: int
    readings: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"PreviewTap {attribute.name} must be a number > 0, got {value!r}")


@attrs.define(eq=False)
class PreviewTap:
    """The newest composite of a recording as a JPEG of ``width`` pixels (height kept in
    proportion, even), at most ``max_fps`` pictures per second, JPEG ``quality`` 1-95; pictures
    are made only while a reader asked within the last ``idle_s`` seconds. Thread-safe.
    :meth:`close` stops its thread (a closed tap ignores offers)."""

    max_fps: float = attrs.field(default=5.0, validator=_positive)
    width: int = attrs.field(default=640, validator=_positive)
    quality: int = attrs.field(default=70, validator=attrs.validators.and_(attrs.validators.ge(1), attrs.validators.le(95)))
    idle_s: float = attrs.field(default=2.0, validator=_positive)
    encoded: int = attrs.field(default=0, init=False)
    encode_s: float = attrs.field(default=0.0, init=False)
    error: str | None = attrs.field(default=None, init=False)
    readings: Mapping[str, Any] = attrs.field(factory=dict, init=False)
    _cond: threading.Condition = attrs.field(factory=threading.Condition, init=False, alias="_cond")
    _slot: tuple[Any, Mapping[str, Any], int] | None = attrs.field(default=None, init=False, alias="_slot")
    _frame: PreviewFrame | None = attrs.field(default=None, init=False, alias="_frame")
    _demand_until: float = attrs.field(default=0.0, init=False, alias="_demand_until")
    _next_take: float = attrs.field(default=0.0, init=False, alias="_next_take")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _closed: bool = attrs.field(default=False, init=False, alias="_closed")

    # -- the pipeline side -----------------------------------------------------------------------
    def offer(self, picture: Any, readings: Mapping[str, Any], time_ns: int) -> None:
        """The pipeline's newest composite (an ``av.VideoFrame`` it no longer changes): kept for
        encoding when someone watches and a picture is due, else ignored. Never blocks."""
        self.readings = readings  # the newest values, for a status display (a reference, no copy)
        now = time.monotonic()
        if self._closed or now >= self._demand_until or now < self._next_take:
            return
        self._next_take = now + 1.0 / self.max_fps
        self._slot = (picture, dict(readings), time_ns)  # replaces an older frame not yet encoded
        if self._thread is None:
            self._start()
        with self._cond:
            self._cond.notify_all()

    def _start(self) -> None:
        t = threading.Thread(target=self._run, name="surgbox-preview", daemon=True)
        self._thread = t
        t.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._closed:
                    self._cond.wait(1.0)
                if self._closed:
                    return
                picture, readings, t_ns = self._slot
                self._slot = None
            started = time.perf_counter()
            try:
                jpeg, w, h = self._encode(picture)
            except Exception as exc:  # a frame the scaler cannot take: keep the last picture, note why
                if self.error is None:
                    log.error("live preview: cannot encode a picture (%s: %s)", type(exc).__name__, exc)
                self.error = f"{type(exc).__name__}: {exc}"
                continue
            with self._cond:
                seq = (self._frame.seq + 1) if self._frame is not None else 1
                self._frame = PreviewFrame(jpeg, seq, t_ns, w, h, readings)
                self.encoded += 1
                self.encode_s += time.perf_counter() - started
                self._cond.notify_all()

    def _encode(self, picture: Any) -> tuple[bytes, int, int]:
        w = min(int(self.width), picture.width) // 2 * 2
        h = max(2, round(picture.height * w / picture.width) // 2 * 2)
        image = picture.reformat(width=w, height=h, format="rgb24").to_image()
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=int(self.quality))
        return buf.getvalue(), w, h

    # -- the reader side -------------------------------------------------------------------------
    def want(self) -> None:
        """Count as a reader for the next ``idle_s`` seconds (pictures are made meanwhile)."""
        self._demand_until = time.monotonic() + self.idle_s

    def latest(self) -> PreviewFrame | None:
        """The newest picture (``None`` before the first); counts as demand."""
        self.want()
        return self._frame

    def peek(self) -> PreviewFrame | None:
        """The newest picture without counting as demand (a status poll)."""
        return self._frame

    def wait(self, after: int = 0, timeout: float = 1.0) -> PreviewFrame | None:
        """The first picture newer than sequence number ``after``, waiting at most ``timeout``
        seconds (``None`` when none came, or the tap closed); counts as demand."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                self.want()
                if self._frame is not None and self._frame.seq > after:
                    return self._frame
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, self.idle_s / 2))
        return None

    @property
    def watched(self) -> bool:
        """Whether a reader asked within the last ``idle_s`` seconds."""
        return time.monotonic() < self._demand_until

    def stats(self) -> dict[str, Any]:
        """``encoded`` pictures, ``encode_ms`` mean time per picture (scale + JPEG), ``watched``, ``error``."""
        n = self.encoded
        return {"encoded": n, "encode_ms": round(1000 * self.encode_s / n, 2) if n else None,
                "watched": self.watched, "error": self.error}

    def close(self) -> None:
        """Stop the encoding thread and wake every waiting reader. Idempotent."""
        with self._cond:
            self._closed = True
            self._slot = None
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)


__all__ = ["PreviewFrame", "PreviewTap"]
