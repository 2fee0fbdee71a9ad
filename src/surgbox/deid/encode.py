"""The encode stage: feed the Encoder plugin in order, copy the audio, write the audit lines
and report progress (runs on the calling thread).

The output is opened at the first picture (``open_output(rotation=...)``) so the input's
display rotation reaches the header; audio demuxed before it waits (a few packets). Every
picture is encoded at its input time: ``time_ns = pts * time_base`` (the nominal frame rate
only for a stream without timestamps).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import attrs

from .audit import AuditWriter
from .handoff import END, Failure, get
from .result import RATE_MIN_FRAMES, RATE_MIN_SECONDS, Progress, RunStats
from .timing import StageTimes

WAIT = "queue wait (encode)"
PROGRESS_EVERY_S = 0.25


@attrs.define(eq=False)
class EncodeStage:
    """Writes what the hide stage hands over; ``open_output(rotation)`` opens the encoder."""

    enc: Any
    open_output: Callable[[float], None]
    audit: AuditWriter | None
    time_base: Fraction
    fps: Fraction
    total: int | None
    t_start: float
    progress: Callable[[Progress], None] | None
    stop: threading.Event
    times: StageTimes
    stats: RunStats
    keep: tuple[int, int] | None = None  # write only frames numbered [start, stop) (and no audio)
    _early_audio: list[Any] | None = attrs.field(factory=list, alias="_early_audio")  # None once open
    _t_first: float | None = attrs.field(default=None, alias="_t_first")

    def run(self, q: queue.Queue) -> int:
        """Encode until the end; returns the frames written. Re-raises a stage's failure."""
        stats = self.stats
        last_report = 0.0
        while True:
            item = get(q, self.stop, self.times, WAIT)
            if item is END:
                if self._early_audio is not None:
                    self._open(0.0)
                self._report(time.perf_counter(), done=True)
                return stats.written
            if isinstance(item, Failure):
                raise item.exc
            if item.audio and self.keep is None:
                if self._early_audio is not None:
                    self._early_audio.extend(item.audio)
                else:
                    with self.times.stage("write", count=0):
                        for p in item.audio:
                            self.enc.copy_audio(p)
                stats.audio_packets += len(item.audio)
            if item.frame is None:
                continue
            if self.keep is not None and not self.keep[0] <= item.index < self.keep[1]:
                continue  # context of a segment: decoded and scanned, written by its neighbour
            frame = item.frame
            if self._early_audio is not None:
                self._open(float(getattr(frame, "rotation", 0) or 0))
            if item.regions:
                stats.frames_with_regions += 1
                stats.regions += len(item.regions)
                stats.tracks.update(r.track for r in item.regions)
            pts = frame.pts
            if pts is None:  # a stream without timestamps (raw formats): the nominal frame rate
                time_ns = round(stats.written * 1_000_000_000 / float(self.fps))
            else:
                time_ns = int(round(Fraction(pts) * self.time_base * 1_000_000_000))
            with self.times.stage("write"):
                self.enc.write_video(frame, time_ns)
            if self.audit is not None:
                self.audit.frame(item.index, pts, self.time_base, item.regions, hidden=item.hidden, out_of_body=item.out_of_body)
            stats.written += 1
            now = time.perf_counter()
            if self._t_first is None:
                self._t_first = now
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                self._report(now)

    def _open(self, rotation: float) -> None:
        with self.times.stage("setup", count=0):
            self.open_output(rotation)
        pending, self._early_audio = self._early_audio or [], None
        for p in pending:
            self.enc.copy_audio(p)

    def _report(self, now: float, done: bool = False) -> None:
        if self.progress is None:
            return
        n = self.stats.written
        rate = None
        if self._t_first is not None and n - 1 >= RATE_MIN_FRAMES and now - self._t_first >= RATE_MIN_SECONDS:
            rate = (n - 1) / (now - self._t_first)
        self.progress(Progress(n, self.total, now - self.t_start, done=done, rate=rate))
