"""The real-time pipeline thread: drain the sources, compose and encode each output tick.

Tick ``k`` is due at master-clock time ``start_ns + k/fps`` and processed ``latency_s`` later so
frames captured before it have arrived. Each tick: drain every source's queue (frames to their
:class:`~surgbox.sync.FrameSelector`, audio to the :class:`~surgbox.sync.AudioAligner`, readings
to the panel and the data track, triggers to the snapshot service), compose the newest frame at
or before the tick of each slot, encode it, pull the audio up to the tick, hand the packets to
the writer thread, serve due snapshots, announce fragments that became durable. No disk I/O and
no sync happen here: a disk stall never delays a tick (see :mod:`surgbox.recording.writer`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import attrs

from ..clock import NS_PER_S, Clock
from ..interfaces import Compositor, Encoder, Source
from ..packets import FragmentInfo
from ..sync import AudioAligner, FrameSelector, TickClock
from ..types import AudioChunk, Layout, Reading, Trigger, VideoFrame
from .options import FALLBACK_ITEM_RATE, RecorderOptions
from .snapshots import SnapshotRequest, SnapshotService
from .writer import OutputWriter

log = logging.getLogger(__name__)

DRAIN_MAX = 256  # items taken from one source per tick
DEFAULT_AUDIO_RATE = 48000
DEFAULT_AUDIO_CHANNELS = 2


def first_tick(clock: Clock, fps: Fraction) -> TickClock:
    """Output ticks starting about 0.1 s from now, on the clock's grid of ``1/fps`` from its
    origin: sources that also run on that grid (and markers at whole seconds) fall exactly on ticks."""
    period = Fraction(NS_PER_S) / fps
    now = clock.now_ns() + round(0.1 * NS_PER_S)
    n = -(-(now - clock.origin_ns) // period)
    return TickClock(fps, clock.origin_ns + round(n * period))


def make_selectors(layout: Layout, options: RecorderOptions) -> dict[str, FrameSelector]:
    """One :class:`FrameSelector` per source shown in a video slot, with room for a 64 fps
    source's frames over the latency plus the allowed lag."""
    timeout = round(options.stale_timeout_s * NS_PER_S)
    pending = max(16, round((options.latency_s + options.max_behind_s) * FALLBACK_ITEM_RATE) + 8)
    out: dict[str, FrameSelector] = {}
    for slot in layout.slots:
        if slot.kind == "video":
            name = slot.source or slot.name
            out.setdefault(name, FrameSelector(name, timeout, pending))
    return out


def _positive_int(value: Any, default: int) -> int:
    """``value`` as an int when it is a positive number, else ``default`` (an unset option)."""
    if isinstance(value, (int, float, Fraction)) and not isinstance(value, bool) and value > 0:
        return int(value)
    return default


def make_aligner(source: Source | None, start_ns: int) -> tuple[AudioAligner | None, dict[str, Any] | None]:
    """The aligner of the recorded audio source and the sidecar's ``audio`` entry: the source's
    configured format (a file source's default None: the file's own, unknown here) else 48 kHz
    stereo; chunks in another format are resampled/mixed."""
    if source is None:
        return None, None
    rate = _positive_int(getattr(source, "sample_rate", None), DEFAULT_AUDIO_RATE)
    channels = _positive_int(getattr(source, "channels", None), DEFAULT_AUDIO_CHANNELS)
    return AudioAligner(rate, channels, start_ns), {"source": source.name, "sample_rate": rate, "channels": channels}


@attrs.define(eq=False)
class TickLoop:
    """The running state of one recording's pipeline (created at start, used by one thread)."""

    options: RecorderOptions
    ticks: TickClock
    clock: Clock
    compositor: Compositor
    encoder: Encoder
    writer: OutputWriter
    snapshots: SnapshotService
    sources: Sequence[Source]  # the ones that started
    selectors: dict[str, FrameSelector]
    aligner: AudioAligner | None
    audio_source: Source | None
    event: Mapping[str, Any]
    announce: Callable[[FragmentInfo], None]
    label: Callable[[], str]
    preview: Any = None  # a PreviewTap (recording.preview): offered each composite, never blocks
    frames_out: int = 0
    skipped: int = 0
    most_behind: int = 0  # the most ticks the loop has been behind the clock (before any skip)
    next_tick: int = 0
    rates: dict[str, float] = attrs.field(factory=dict)
    source_errors: dict[str, str] = attrs.field(factory=dict)
    audio_rejected: int = 0
    audio_error: str | None = None
    end_ns: int | None = None  # master-clock end of the recording's time span (known from the start with a duration)
    _rate_mark: tuple[int, dict[str, int], int] | None = attrs.field(default=None, alias="_rate_mark")
    _readings: dict[str, Reading] = attrs.field(factory=dict, alias="_readings")
    _pending_readings: dict[str, collections.deque] = attrs.field(factory=dict, alias="_pending_readings")

    def run(self, stopping: Callable[[float], bool]) -> int:
        """Run ticks until ``stopping(delay)`` (a wait that returns True when asked to stop) or
        the end tick; returns the number of ticks processed. Raises what ended the recording."""
        ticks, clock, opts = self.ticks, self.clock, self.options
        latency = round(opts.latency_s * NS_PER_S)
        max_behind = max(1, round(opts.max_behind_s * float(opts.fps)))
        end = opts.end_tick
        if end:
            self.end_ns = ticks.due_ns(end)
        k = 0
        while not stopping(0) and (not end or k < end):
            due = ticks.due_ns(k) + latency
            delay = (due - clock.now_ns()) / NS_PER_S
            if delay > 0 and stopping(delay):
                break
            behind = ticks.ticks_before(clock.now_ns() - latency) - 1 - k
            if behind > self.most_behind:
                self.most_behind = behind
            if behind > max_behind:  # starved of CPU: skip ticks to stay live (timestamps stay exact)
                skip = behind - 1
                if end:
                    skip = min(skip, end - 1 - k)
                k += skip
                self.skipped += skip
                log.warning("recorder fell %d ticks behind; skipped them", skip)
            self.drain()
            self.tick(k)
            k += 1
            self.next_tick = k
        self.end_ns = ticks.due_ns(k)  # readings captured after the recording's time span are not part of it
        self.drain()
        self.finish_audio(ticks.output_ns(k))
        return k

    def drain(self) -> None:
        for src in self.sources:
            for _ in range(DRAIN_MAX):
                item = src.get(0)
                if item is None:
                    break
                self.dispatch(src, item)
            err = src.error
            if err is not None and src.name not in self.source_errors:
                self.source_errors[src.name] = f"{type(err).__name__}: {err}"
                log.warning("source %r failed during the recording (%s); it shows NO SIGNAL", src.name, err)

    def dispatch(self, src: Source, item: Any) -> None:
        if isinstance(item, VideoFrame):
            sel = self.selectors.get(src.name)
            if sel is not None:
                sel.push(item)
        elif isinstance(item, AudioChunk):
            if self.aligner is not None and src is self.audio_source:
                try:
                    self.aligner.push(item)
                except Exception as exc:  # a chunk that cannot be placed: counted, the first error kept
                    self.audio_rejected += 1
                    if self.audio_error is None:
                        self.audio_error = (f"audio source {src.name!r}: chunk of {item.sample_rate} Hz x {item.channels} "
                                            f"rejected: {type(exc).__name__}: {exc}")
                        log.error("recording %s: %s", self.label(), self.audio_error)
        elif isinstance(item, Reading):
            if self.end_ns is not None and item.capture_ns >= self.end_ns:
                return
            if src.media != "data":  # a video source's status (live de-identification): data track only, not the panel
                self.writer.put_reading(item)
                return
            self._pending_readings.setdefault(src.name, collections.deque(maxlen=256)).append(item)
            self.writer.put_reading(item)
        elif isinstance(item, Trigger) and item.action == "snapshot":
            req = SnapshotRequest(f"trigger:{src.name}", item.detail.get("source"), item.capture_ns)
            if not self.snapshots.request(req):
                log.warning("snapshot trigger from %r dropped: too many pending", src.name)

    def tick(self, k: int) -> None:
        if self.writer.error is not None:
            raise self.writer.error  # the disk failed: end the recording with that error
        tick_ns = self.ticks.due_ns(k)
        out_ns = self.ticks.output_ns(k)
        frames = {name: sel.select(tick_ns) for name, sel in self.selectors.items()}
        for name, pending in self._pending_readings.items():  # newest reading captured at or before the tick
            while pending and pending[0].capture_ns <= tick_ns:
                self._readings[name] = pending.popleft()
        data_timeout = round(self.options.data_timeout_s * NS_PER_S)
        readings = {n: r for n, r in self._readings.items() if tick_ns - r.capture_ns <= data_timeout}
        event = {**self.event, "time": f"{self.clock.wall_time(tick_ns).astimezone():%Y-%m-%d %H:%M:%S}"}
        picture = self.compositor.compose(frames, readings, event, out_ns)
        if self.preview is not None:
            self.offer_preview(picture, readings, out_ns)
        packets = self.encoder.encode(picture, out_ns)
        self.frames_out += 1
        if self.aligner is not None:
            block, t = self.aligner.pull(out_ns - round(self.options.audio_lag_s * NS_PER_S))
            if block.shape[1]:
                packets = packets + self.encoder.encode_audio(block, t)
        self.writer.put_packets(packets)
        if self.snapshots.pending:
            self.snapshots.serve(k, self.ticks, self.clock, picture, frames)
        for frag in self.writer.take_durable():
            self.announce(frag)
        self.update_rates(k)

    def offer_preview(self, picture: Any, readings: Mapping[str, Reading], out_ns: int) -> None:
        """Hand the composite to the live preview; a preview that fails is detached (logged),
        the recording goes on."""
        try:
            self.preview.offer(picture, readings, out_ns)
        except Exception as exc:
            log.error("recording %s: live preview detached: %s: %s", self.label(), type(exc).__name__, exc)
            self.preview = None

    def finish_audio(self, end_ns: int) -> None:
        if self.aligner is not None and self.frames_out:
            block, t = self.aligner.pull(end_ns)
            if block.shape[1]:
                self.writer.put_packets(self.encoder.encode_audio(block, t))

    def update_rates(self, k: int) -> None:
        if k % max(1, round(float(self.options.fps))):
            return
        now = time.monotonic_ns()
        counts = {n: s.received for n, s in self.selectors.items()}
        if self.aligner is not None:
            counts["_audio"] = self.aligner.chunks
        if self._rate_mark is not None:
            t0, c0, f0 = self._rate_mark
            dt = (now - t0) / NS_PER_S
            if dt > 0:
                self.rates = {n: (counts[n] - c0.get(n, 0)) / dt for n in counts}
                self.rates["_out"] = (self.frames_out - f0) / dt
        self._rate_mark = (now, counts, self.frames_out)

    def selector_stats(self, name: str) -> dict[str, Any]:
        """A video source's selection counters and input rate (empty for other sources)."""
        sel = self.selectors.get(name)
        d: dict[str, Any] = {} if sel is None else sel.stats()
        if name in self.rates:
            d["fps_in"] = round(self.rates[name], 2)
        return d

    def audio_stats(self) -> dict[str, Any] | None:
        if self.aligner is None:
            return None
        audio = self.aligner.stats()
        audio.update(source=getattr(self.audio_source, "name", None), rejected_chunks=self.audio_rejected, error=self.audio_error)
        if "_audio" in self.rates:
            audio["chunks_per_s"] = round(self.rates["_audio"], 2)
        return audio

    def ticks_behind(self) -> int:
        due = self.ticks.ticks_before(self.clock.now_ns() - round(self.options.latency_s * NS_PER_S))
        return max(0, due - self.next_tick)
