"""``file``: any media file played as a live source, paced to real time on the master clock.

One source plays one stream of the file: ``stream="video"`` (default) or ``stream="audio"``.
To use a file's video and its sound, declare two sources on the same path; with the default
``anchor="clock"`` both place the file's time 0 at the clock's origin, so they stay in sync
with each other whatever order they start in.

Timing: an item whose presentation time is ``p`` seconds into the file (relative to the
container's start time) in loop pass ``L`` is captured at ``anchor_ns + L * D + p`` where ``D``
is the container duration; the item is released no earlier than that instant and carries it
as ``capture_ns``. With ``anchor="clock"`` the file starts playing at the position the clock
has reached (items before it are skipped); with ``anchor="start"`` it plays from its beginning
at ``start``. Without ``loop`` the source ends normally (``ended``) at the end of the file.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from surgbox.capture import ThreadedSource
from surgbox.clock import NS_PER_S
from surgbox.errors import SourceError
from surgbox.types import AudioChunk, VideoFrame, channel_layout

from ._common import pace

log = logging.getLogger(__name__)

_SEEK_AHEAD_NS = 2 * NS_PER_S  # seek instead of decoding through more than this


@attrs.define(eq=False)
class FileSource(ThreadedSource):
    """A media file as a live source.

    Options: ``path`` (required), ``stream`` (``"video"`` | ``"audio"``), ``loop`` (False),
    ``anchor`` (``"clock"`` | ``"start"``), ``sample_rate`` / ``channels`` (audio: resample to
    these; default the file's), ``queue_size`` (16 for video, 64 for audio).

    Items: video frames in the file's decoded pixel format (usually ``yuv420p``), or float32
    planar audio chunks as the decoder delivers them (sample-continuous within a pass; when
    looping, samples past the container duration, e.g. AAC padding, are cut so that each pass
    starts exactly ``D`` after the previous one).
    """

    path_options: ClassVar[tuple[str, ...]] = ("path",)  # relative to a recording config's folder

    path: str = attrs.field(kw_only=True, converter=str)
    stream: str = attrs.field(default="video", kw_only=True, validator=attrs.validators.in_(("video", "audio")))
    loop: bool = attrs.field(default=False, kw_only=True, converter=bool)
    anchor: str = attrs.field(default="clock", kw_only=True, validator=attrs.validators.in_(("clock", "start")))
    sample_rate: int | None = attrs.field(default=None, kw_only=True)
    channels: int | None = attrs.field(default=None, kw_only=True)
    queue_size: int = attrs.field(default=None, kw_only=True)  # type: ignore[assignment]

    _container: Any = attrs.field(init=False, default=None, alias="_container")
    _frames: Any = attrs.field(init=False, default=None, alias="_frames")
    _resampler: Any = attrs.field(init=False, default=None, alias="_resampler")
    _anchor_ns: int = attrs.field(init=False, default=0, alias="_anchor_ns")
    _duration_ns: int | None = attrs.field(init=False, default=None, alias="_duration_ns")
    _start_pos_ns: int = attrs.field(init=False, default=0, alias="_start_pos_ns")
    _pass: int = attrs.field(init=False, default=0, alias="_pass")
    _end_ns: int = attrs.field(init=False, default=0, alias="_end_ns")
    _audio_next: int | None = attrs.field(init=False, default=None, alias="_audio_next")
    _seq: int = attrs.field(init=False, default=0, alias="_seq")
    _loops: int = attrs.field(init=False, default=0, alias="_loops")

    def __attrs_post_init__(self) -> None:
        if self.queue_size is None:
            self.queue_size = 16 if self.stream == "video" else 64
        super().__attrs_post_init__()

    @property
    def media(self) -> str:  # type: ignore[override]
        """``"video"`` or ``"audio"``, as chosen by ``stream``."""
        return self.stream

    def describe(self) -> str:
        return f"source {self.name!r} (file {self.path})"

    # -- opening --------------------------------------------------------------------------------
    def _open_container(self) -> None:
        import av

        try:
            container = av.open(self.path)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.describe()}: no such file; check the path") from exc
        except Exception as exc:
            raise SourceError(f"{self.describe()} could not open: {exc}; is it a media file FFmpeg can read?") from exc
        streams = container.streams.video if self.stream == "video" else container.streams.audio
        if not streams:
            container.close()
            raise SourceError(f"{self.describe()} has no {self.stream} stream; choose stream='video' or 'audio' to match the file")
        st = streams[0]
        st.thread_type = "AUTO"
        self._container = container
        self._frames = container.decode(st)
        self._audio_next = None
        if self.stream == "audio":
            if self.channels is not None and int(self.channels) not in (1, 2):
                raise SourceError(f"{self.describe()}: channels={self.channels} is not supported; use 1 or 2 (or leave unset)")
            layout = None if self.channels is None else channel_layout(self.channels)
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.sample_rate)

    def _open(self) -> None:
        if not Path(self.path).is_file():
            raise SourceError(f"{self.describe()}: no such file; check the path")
        self._open_container()
        assert self.clock is not None
        c = self._container
        self._duration_ns = c.duration * 1000 if c.duration else None  # av.time_base is microseconds
        now = self.clock.now_ns()
        self._anchor_ns = self.clock.origin_ns if self.anchor == "clock" else now
        position = now - self._anchor_ns
        self._pass = 0
        if position > 0 and self._duration_ns:
            if self.loop:
                self._pass, position = divmod(position, self._duration_ns)
            elif position >= self._duration_ns:
                raise SourceError(
                    f"{self.describe()}: the clock is already {position / NS_PER_S:.1f} s in, past the file's end "
                    f"({self._duration_ns / NS_PER_S:.1f} s); set loop=true or anchor='start'"
                )
        elif position > 0:  # duration unknown: cannot place the clock in the file, play from its start
            self._anchor_ns, position = now, 0
        self._start_pos_ns = position
        if position > _SEEK_AHEAD_NS:
            c.seek(int(position // 1000))  # to the keyframe at or before; earlier frames skipped below

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    # -- playback -------------------------------------------------------------------------------
    def _rel_ns(self, frame: Any) -> int | None:
        """Presentation time of ``frame`` in ns from the container's start time."""
        if frame.pts is None or frame.time_base is None:
            return None
        start = Fraction(self._container.start_time or 0, 1_000_000)
        return int((frame.pts * frame.time_base - start) * NS_PER_S)

    def _next_frame(self) -> Any:
        try:
            return next(self._frames)
        except StopIteration:
            pass
        if not self.loop:
            raise StopIteration
        self._close()
        self._open_container()
        self._pass += 1
        self._loops += 1
        self._start_pos_ns = 0
        return next(self._frames)

    def _capture(self) -> VideoFrame | AudioChunk | None:
        frame = self._next_frame()
        rel = self._rel_ns(frame)
        if self.stream == "audio":
            return self._audio(frame, rel)
        if rel is None:  # raw formats: fall back to frame index x nominal rate
            st = self._container.streams.video[0]
            rate = st.average_rate or st.guessed_rate or 25
            rel = int(frame.index * NS_PER_S / rate) if frame.index is not None else self._end_ns
        dur = int(NS_PER_S / (self._container.streams.video[0].average_rate or 25))
        self._end_ns = max(self._end_ns, rel + dur)
        if self.loop and self._duration_ns and rel >= self._duration_ns:
            return None  # past the container's end: the next pass starts there
        if rel + dur <= self._start_pos_ns:
            return None  # before the position the clock has reached
        t = self._loop_base() + rel
        if not pace(self, t):
            return None
        item = VideoFrame(self.name, t, frame, self._seq)
        self._seq += 1
        return item

    def _audio(self, frame: Any, rel: int | None) -> AudioChunk | None:
        chunks = self._resampler.resample(frame)
        if not chunks:
            return None
        samples = np.concatenate([c.to_ndarray() for c in chunks], axis=1).astype(np.float32, copy=False)
        rate = chunks[0].sample_rate
        n = samples.shape[1]
        if self._audio_next is None or rel is not None and abs(self._loop_base() + rel - self._audio_next) > 50_000_000:
            base = self._loop_base() + (rel if rel is not None else 0)
        else:  # sample-continuous within a pass
            base = self._audio_next
        if self.loop and self._duration_ns:  # codec padding past the container's end: the next pass covers it
            limit = self._loop_base() + self._duration_ns
            if base >= limit:
                return None
            if base + n * NS_PER_S // rate > limit:
                n = (limit - base) * rate // NS_PER_S
                samples = samples[:, :n]
        self._audio_next = base + n * NS_PER_S // rate
        self._end_ns = max(self._end_ns, self._audio_next - self._loop_base())
        if self._audio_next - self._loop_base() <= self._start_pos_ns:
            return None
        if not pace(self, self._audio_next):  # released once its last sample is due
            return None
        return AudioChunk(self.name, base, samples, rate)

    def _loop_base(self) -> int:
        period = self._duration_ns or self._end_ns
        return self._anchor_ns + self._pass * period

    def stats(self) -> dict[str, Any]:
        s = dict(super().stats())
        s.update(loops=self._loops, path=self.path)
        return s
