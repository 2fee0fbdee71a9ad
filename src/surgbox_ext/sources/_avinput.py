"""Base of the live PyAV inputs (``v4l2``, ``url``, ``alsa``, ``pulse``).

A subclass names the FFmpeg input format, builds the demuxer options and says how to explain an
open failure; this base opens the input with open/read timeouts, decodes the first stream of
the source's media kind and stamps each item on the master clock:

* video: ``capture_ns = clock.now_ns()`` when the decoder hands the frame over;
* audio: the time of the chunk's first sample, ``now - duration`` when it arrives, kept
  sample-continuous by :class:`AudioTimeline` (no jitter between consecutive chunks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import attrs
import numpy as np

from surgbox.capture import ThreadedSource
from surgbox.clock import NS_PER_S
from surgbox.errors import SourceError
from surgbox.types import AudioChunk, VideoFrame

from ._common import positive

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class AudioTimeline:
    """Capture times for a live audio stream whose chunks arrive with jitter.

    Chunk times follow on from the previous chunk (sample-continuous) and are steered gently
    (1/``smoothing`` of the error per chunk) toward the measured arrival time minus the chunk
    duration, so a sound card whose clock runs slightly fast or slow never drifts away from the
    master clock. An error over ``resync_ns`` (a gap, an overrun) re-anchors at once.
    """

    smoothing: int = 32
    resync_ns: int = 100_000_000
    _next: int | None = attrs.field(default=None, alias="_next")
    resyncs: int = 0

    def stamp(self, arrival_ns: int, samples: int, rate: int) -> int:
        """Capture time of the first of ``samples`` samples that arrived (complete) at ``arrival_ns``."""
        duration = samples * NS_PER_S // rate
        measured = arrival_ns - duration
        if self._next is None or abs(measured - self._next) > self.resync_ns:
            if self._next is not None:
                self.resyncs += 1
            t = measured
        else:
            t = self._next + (measured - self._next) // self.smoothing
        self._next = t + duration
        return t


@attrs.define(eq=False)
class AVInputSource(ThreadedSource):
    """A live input read through ``av.open(target, format=input_format, options=...)``.

    Common options: ``options`` (extra FFmpeg demuxer options, strings), ``open_timeout_s``
    (default 10), ``read_timeout_s`` (default 3; a stall longer than this is a failure),
    ``queue_size`` (default 16).
    """

    input_format: ClassVar[str | None] = None
    kind_label: ClassVar[str] = "input"

    options: Mapping[str, str] = attrs.field(factory=dict, kw_only=True, converter=lambda m: {str(k): str(v) for k, v in dict(m).items()})
    open_timeout_s: float = attrs.field(default=10.0, kw_only=True, converter=float, validator=positive)
    read_timeout_s: float = attrs.field(default=3.0, kw_only=True, converter=float, validator=positive)
    queue_size: int = attrs.field(default=16, kw_only=True)

    _container: Any = attrs.field(init=False, default=None, alias="_container")
    _frames: Iterator[Any] | None = attrs.field(init=False, default=None, alias="_frames")
    _resampler: Any = attrs.field(init=False, default=None, alias="_resampler")
    _timeline: AudioTimeline = attrs.field(init=False, factory=AudioTimeline, alias="_timeline")
    _seq: int = attrs.field(init=False, default=0, alias="_seq")

    # -- subclass API ---------------------------------------------------------------------------
    @property
    def target(self) -> str:
        """The device path or URL handed to FFmpeg."""
        raise NotImplementedError

    def demuxer_options(self) -> dict[str, str]:
        """FFmpeg demuxer options (subclass fields merged with ``options``)."""
        return dict(self.options)

    def explain(self, exc: BaseException) -> str:
        """Why opening failed and what to do about it (subclasses know their devices)."""
        return f"{exc}"

    def describe(self) -> str:
        return f"source {self.name!r} ({self.kind_label} {self.target})"

    def scrub(self, text: str) -> str:
        """``text`` made safe for messages and logs (the url source removes credentials)."""
        return text

    # -- opening --------------------------------------------------------------------------------
    def open_input(self) -> None:
        """Open the input and pick the stream; raises :class:`SourceError` explaining the fix."""
        import av

        from .checks import pyav_has

        fmt = self.input_format
        if fmt is not None and not pyav_has(fmt):
            raise SourceError(
                f"{self.describe()}: this PyAV build has no {fmt!r} input; install PyAV built against "
                f"an FFmpeg that has it (pip install av --no-binary av, with FFmpeg's dev packages installed)"
            )
        try:
            container = av.open(self.target, mode="r", format=fmt, options=self.demuxer_options(),
                                timeout=(self.open_timeout_s, self.read_timeout_s))
        except Exception as exc:
            raise SourceError(self.scrub(f"{self.describe()} could not open: {self.explain(exc)}")) from exc
        streams = container.streams.video if self.media == "video" else container.streams.audio
        if not streams:
            container.close()
            raise SourceError(f"{self.describe()} has no {self.media} stream; check the device or URL")
        stream = streams[0]
        self._container = container
        self._frames = container.decode(stream)
        self._resampler = av.AudioResampler(format="fltp") if self.media == "audio" else None
        self._timeline = AudioTimeline()

    def close_input(self) -> None:
        container, self._container, self._frames = self._container, None, None
        if container is not None:
            try:
                container.close()
            except Exception as exc:  # pragma: no cover - closing a broken input
                log.debug("%s: close failed: %s", self.describe(), exc)

    # -- ThreadedSource -------------------------------------------------------------------------
    def _open(self) -> None:
        self.open_input()

    def _close(self) -> None:
        self.close_input()

    def _capture(self) -> VideoFrame | AudioChunk | None:
        try:
            assert self._frames is not None
            frame = next(self._frames)
        except StopIteration:
            return self.on_failure(SourceError(f"{self.describe()}: the stream ended"))
        except Exception as exc:
            return self.on_failure(exc)
        return self.wrap(frame)

    def on_failure(self, exc: BaseException) -> None:
        """The input failed mid-run: by default the source stops with ``error`` set."""
        if isinstance(exc, SourceError):
            raise exc
        raise SourceError(self.scrub(f"{self.describe()} failed: {exc}")) from exc

    def wrap(self, frame: Any) -> VideoFrame | AudioChunk | None:
        """Stamp a decoded ``av`` frame on the master clock."""
        assert self.clock is not None
        now = self.clock.now_ns()
        if self.media == "video":
            item = VideoFrame(self.name, now, frame, self._seq)
            self._seq += 1
            return item
        assert self._resampler is not None
        chunks = self._resampler.resample(frame)
        if not chunks:
            return None
        samples = chunks[0].to_ndarray() if len(chunks) == 1 else np.concatenate([c.to_ndarray() for c in chunks], axis=1)
        rate = chunks[0].sample_rate
        return AudioChunk(self.name, self._timeline.stamp(now, samples.shape[1], rate), samples.astype(np.float32, copy=False), rate)

    def stats(self) -> dict[str, Any]:
        s = dict(super().stats())
        s.update(target=self.target)
        if self.media == "audio":
            s.update(resyncs=self._timeline.resyncs)
        return s


@attrs.define(eq=False)
class MicrophoneSource(AVInputSource):
    """Base of the ``alsa`` / ``pulse`` audio inputs.

    Options: ``device`` (``"default"``), ``sample_rate`` (48000), ``channels`` (1), plus the
    common ``options``, ``open_timeout_s``, ``read_timeout_s``, ``queue_size`` (64). Items are
    float32 planar chunks in the size the device delivers.
    """

    media: ClassVar[str] = "audio"
    kind_label: ClassVar[str] = "audio device"

    device: str = attrs.field(default="default", kw_only=True, converter=str)
    sample_rate: int = attrs.field(default=48000, kw_only=True, converter=int, validator=positive)
    channels: int = attrs.field(default=1, kw_only=True, converter=int, validator=positive)
    queue_size: int = attrs.field(default=64, kw_only=True)

    @property
    def target(self) -> str:
        return self.device

    def demuxer_options(self) -> dict[str, str]:
        return {"sample_rate": str(self.sample_rate), "channels": str(self.channels), **self.options}
