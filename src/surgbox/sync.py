"""Synchronization on the master clock: output ticks, newest-frame selection, audio alignment.

The output runs at a fixed rate. Tick ``k`` is due at clock time ``start_ns + k/fps`` and is
stamped ``k/fps`` on the output time line (exact rational arithmetic, rounded once to ns), so
the timestamps of hour-long recordings do not drift and never depend on how many frames a
source delivered. Each tick shows, per source, the newest frame captured at or before the tick
(:class:`FrameSelector`); a source with no such frame for ``timeout`` is stale (``None``: the
compositor draws a NO SIGNAL slate) and returns by itself when frames come back. Audio is placed
on the same time line by its capture time (:class:`AudioAligner`).
"""

from __future__ import annotations

import collections
from fractions import Fraction
from typing import Any

import attrs
import numpy as np

from .clock import NS_PER_S
from .types import AudioChunk, VideoFrame, channel_layout, parse_rate


def _fps(value: Any) -> Fraction:
    return parse_rate(value, "fps")


@attrs.frozen
class TickClock:
    """Output ticks at ``fps`` starting at master-clock time ``start_ns``.

    >>> t = TickClock(Fraction(30), start_ns=1_000)
    >>> t.output_ns(30), t.due_ns(3)
    (1000000000, 100001000)
    """

    fps: Fraction = attrs.field(converter=_fps)
    start_ns: int = attrs.field(converter=int)

    @property
    def period_ns(self) -> Fraction:
        return Fraction(NS_PER_S) / self.fps

    def output_ns(self, k: int) -> int:
        """Output-time-line stamp of tick ``k``: ``k/fps`` s in ns (0 for the first tick)."""
        return round(k * self.period_ns)

    def due_ns(self, k: int) -> int:
        """Master-clock time of tick ``k`` (frames captured up to here may be shown)."""
        return self.start_ns + self.output_ns(k)

    def ticks_before(self, clock_ns: int) -> int:
        """Number of ticks due at or before master-clock time ``clock_ns``."""
        if clock_ns < self.start_ns:
            return 0
        return int((clock_ns - self.start_ns) * self.fps // NS_PER_S) + 1

    def ticks_for(self, seconds: float) -> int:
        """Number of ticks in a recording of ``seconds`` (``ceil(seconds * fps)``)."""
        return -(-Fraction(seconds).limit_denominator(1_000_000) * self.fps // 1)


@attrs.define(eq=False)
class FrameSelector:
    """Per-source newest-frame-at-or-before-the-tick selection with staleness.

    ``push`` frames in arrival order (from the source's queue); ``select(tick_ns)`` returns the
    frame to show at master-clock time ``tick_ns`` or ``None`` when the newest frame at or
    before the tick is older than ``timeout_ns`` (or there is none yet). At most
    ``max_pending`` future frames are buffered (oldest dropped).

    Counters: ``received``; ``dropped`` frames never shown (replaced by a newer frame before any
    tick, out of order, or overflow); ``duplicated`` ticks that showed an already shown frame;
    ``stale_ticks`` ticks that got ``None``; ``stale`` whether the last tick was stale.
    """

    name: str
    timeout_ns: int
    max_pending: int = 16
    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    shown: int = 0
    stale_ticks: int = 0
    stale: bool = True
    _pending: collections.deque = attrs.field(factory=collections.deque, alias="_pending")
    _current: VideoFrame | None = attrs.field(default=None, alias="_current")
    _current_shown: bool = attrs.field(default=False, alias="_current_shown")

    def push(self, frame: VideoFrame) -> None:
        self.received += 1
        last = self._pending[-1] if self._pending else self._current
        if last is not None and frame.capture_ns < last.capture_ns:
            self.dropped += 1  # out of order: a capture time going back is never shown
            return
        self._pending.append(frame)
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped += 1

    def select(self, tick_ns: int) -> VideoFrame | None:
        while self._pending and self._pending[0].capture_ns <= tick_ns:
            if self._current is not None and not self._current_shown:
                self.dropped += 1
            self._current, self._current_shown = self._pending.popleft(), False
        cur = self._current
        if cur is None or tick_ns - cur.capture_ns > self.timeout_ns:
            self.stale_ticks += 1
            self.stale = True
            return None
        self.stale = False
        if self._current_shown:
            self.duplicated += 1
        else:
            self._current_shown = True
            self.shown += 1
        return cur

    @property
    def last_capture_ns(self) -> int | None:
        return None if self._current is None else self._current.capture_ns

    def stats(self) -> dict[str, Any]:
        return {"received": self.received, "shown": self.shown, "dropped": self.dropped, "duplicated": self.duplicated, "stale_ticks": self.stale_ticks, "stale": self.stale}


@attrs.define(eq=False)
class AudioAligner:
    """Places audio chunks on the output time line by their capture time.

    A chunk whose ``capture_ns`` maps to output sample ``i = round((capture_ns - start_ns) *
    rate / 1e9)`` is treated as continuing the previous chunk when ``i`` is within
    ``tolerance_ns`` of where that chunk ended (capture-time jitter does not click); beyond
    it the chunk is placed at ``i``: a gap before it becomes silence, an overlap is trimmed.
    So audio can never drift from video by more than ``tolerance_ns``.

    ``pull(until_ns)`` returns the contiguous float32 ``(channels, n)`` block from the last
    pulled sample up to output time ``until_ns`` and the output time of its first sample.
    Buffered audio is bounded by ``max_buffer_s`` (oldest dropped, counted).

    Chunks at another sample rate (a device that does not run at the rate asked for, a file)
    are resampled to ``sample_rate`` (FFmpeg's swresample through ``av.AudioResampler``, one
    per input rate; capture times carried through the resampler's timestamps); other channel
    counts are mixed (mono is copied to every channel, more channels are averaged).
    ``resampled_from`` lists the input rates that were resampled.
    """

    sample_rate: int
    channels: int
    start_ns: int
    tolerance_ns: int = 20_000_000
    max_buffer_s: float = 10.0
    gap_samples: int = 0
    trimmed_samples: int = 0
    chunks: int = 0
    offset_ns: int = 0  # placement minus capture time of the newest chunk (A/V offset)
    _queue: collections.deque = attrs.field(factory=collections.deque, alias="_queue")  # (index, samples)
    _expect: int | None = attrs.field(default=None, alias="_expect")
    _next: int = attrs.field(default=0, alias="_next")
    _buffered: int = attrs.field(default=0, alias="_buffered")
    _resamplers: dict[int, _Resampler] = attrs.field(factory=dict, alias="_resamplers")

    @property
    def resampled_from(self) -> list[int]:
        return sorted(self._resamplers)

    def index_of(self, capture_ns: int) -> int:
        return round((capture_ns - self.start_ns) * self.sample_rate / NS_PER_S)

    def push(self, chunk: AudioChunk) -> None:
        """Place ``chunk`` (any rate, any channel count) by its capture time."""
        if chunk.sample_rate != self.sample_rate:
            for part in self._resample(chunk):
                self._place(part.capture_ns, part.samples)
            return
        self._place(chunk.capture_ns, self._conform(chunk.samples))

    def _resample(self, chunk: AudioChunk) -> list[AudioChunk]:
        rs = self._resamplers.get(chunk.sample_rate)
        if rs is None:
            rs = self._resamplers[chunk.sample_rate] = _Resampler(chunk.sample_rate, self.sample_rate, self.channels)
        return rs.push(chunk.source, chunk.capture_ns, self._conform(chunk.samples))

    def _place(self, capture_ns: int, samples: np.ndarray) -> None:
        if not samples.shape[1]:
            return
        i = self.index_of(capture_ns)
        tol = self.tolerance_ns * self.sample_rate // NS_PER_S
        if self._expect is not None and abs(i - self._expect) <= tol:
            placed = self._expect
        else:
            placed = i
        self.offset_ns = (placed - i) * NS_PER_S // self.sample_rate
        self.chunks += 1
        if self._expect is not None and placed < self._expect:  # overlaps the previous chunk
            cut = min(self._expect - placed, samples.shape[1])
            samples, placed = samples[:, cut:], placed + cut
            self.trimmed_samples += cut
            if not samples.shape[1]:
                return
        self._expect = placed + samples.shape[1]
        self._queue.append((placed, samples))
        self._buffered += samples.shape[1]
        limit = int(self.max_buffer_s * self.sample_rate)
        while self._buffered > limit and len(self._queue) > 1:
            _, old = self._queue.popleft()
            self._buffered -= old.shape[1]
            self.trimmed_samples += old.shape[1]

    def _conform(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` as float32 with this aligner's channel count."""
        s = np.asarray(samples, dtype=np.float32)
        if s.shape[0] == self.channels:
            return s
        if s.shape[0] == 1:
            return np.repeat(s, self.channels, axis=0)
        mono = s.mean(axis=0, keepdims=True)
        return mono if self.channels == 1 else np.repeat(mono, self.channels, axis=0)

    @property
    def next_ns(self) -> int:
        """Output time of the next sample ``pull`` will return."""
        return self._next * NS_PER_S // self.sample_rate

    def pull(self, until_ns: int) -> tuple[np.ndarray, int]:
        end = round(until_ns * self.sample_rate / NS_PER_S)
        start = self._next
        n = max(0, end - start)
        out = np.zeros((self.channels, n), np.float32)
        covered = 0
        while self._queue and n:
            idx, s = self._queue[0]
            s_end = idx + s.shape[1]
            if s_end <= start:  # entirely before what is still to be written: too late
                self._queue.popleft()
                self._buffered -= s.shape[1]
                self.trimmed_samples += s.shape[1]
                continue
            if idx >= end:
                break
            a, b = max(idx, start), min(s_end, end)
            out[:, a - start : b - start] = s[:, a - idx : b - idx]
            covered += b - a
            if idx < start:
                self.trimmed_samples += start - idx
            if s_end <= end:
                self._queue.popleft()
                self._buffered -= s.shape[1]
            else:
                self._queue[0] = (end, s[:, end - idx :])
                self._buffered -= end - max(idx, start) + max(0, start - idx)
                break
        self.gap_samples += n - covered
        self._next = max(self._next, end)
        return out, start * NS_PER_S // self.sample_rate

    def stats(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "gap_samples": self.gap_samples, "trimmed_samples": self.trimmed_samples,
                "av_offset_ms": self.offset_ns / 1e6, "resampled_from": self.resampled_from}


@attrs.define(eq=False)
class _Resampler:
    """One input rate resampled to ``out_rate`` (``av.AudioResampler``). Input samples get pts
    counted at ``in_rate`` from the first chunk's capture time, so the resampler's output pts (at
    ``out_rate``) give each output block's capture time, delay and gaps included."""

    in_rate: int
    out_rate: int
    channels: int
    _rs: Any = attrs.field(default=None, alias="_rs")
    _origin_ns: int | None = attrs.field(default=None, alias="_origin_ns")

    def push(self, source: str, capture_ns: int, samples: np.ndarray) -> list[AudioChunk]:
        import av

        layout = channel_layout(self.channels)
        if self._rs is None:
            self._rs = av.AudioResampler(format="fltp", layout=layout, rate=self.out_rate)
            self._origin_ns = capture_ns
        assert self._origin_ns is not None
        pts = round((capture_ns - self._origin_ns) * self.in_rate / NS_PER_S)
        if pts < 0:  # captured before the first chunk: out of order, nothing to place it by
            return []
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = self.in_rate, pts, Fraction(1, self.in_rate)
        out = []
        for f in self._rs.resample(frame):
            t = self._origin_ns + round(Fraction(f.pts * NS_PER_S, self.out_rate))
            out.append(AudioChunk(source, t, f.to_ndarray().astype(np.float32, copy=False), self.out_rate))
        return out
