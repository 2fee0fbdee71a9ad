"""The de-identification decoder through GStreamer: ``filesrc -> qtdemux -> h264parse ->
avdec_h264 | nvv4l2decoder | nvh264dec -> I420 -> appsink`` (:func:`~.pipelines.decoder_pipeline`).

:class:`GstVideoReader` yields the first video track of an MP4/MOV file as ``yuv420p``
``av.VideoFrame`` s in presentation order, each with the **same pts and time base as PyAV gives
for that file**: ``qtdemux`` turns track times into nanoseconds and puts the edit list into the
segment, so a buffer's *stream time* (``segment.to_stream_time(pts)``) is the track time PyAV
reports, and ``pts = round(stream_time / time_base)`` recovers it exactly (a track time base of
1/15360 or 1/90000 is far coarser than a nanosecond). Pictures before the edit list's start are
clipped by the segment, as FFmpeg drops them. Audio is not decoded here: the de-identification
copies it through PyAV's demuxer (:mod:`surgbox.deid.decode`).

Memory: the ``appsink`` holds at most four pictures and never drops; the reader pulls one at a
time, so GStreamer waits while the caller's bounded queue is full.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import attrs

from surgbox.errors import DeidError

from . import frames, pipelines, profiles, runtime

PULL_NS = 200_000_000


def check(profile: str) -> str | None:
    """``None`` when ``profile`` can decode here, else the missing elements and their packages."""
    return profiles.check(profile, "decoder")


@attrs.frozen
class GstDecoder:
    """The ``gstreamer`` decoder plugin (kind ``decoder``): GStreamer's ``profile`` (``cpu``,
    ``jetson``, ``nvidia``). :meth:`check` says whether it can decode here; :meth:`open` starts
    a :class:`GstVideoReader` on a file.

    >>> from surgbox.plugins import get_plugins
    >>> dec = get_plugins().create("decoder", "gstreamer", profile="cpu")   # doctest: +SKIP
    >>> dec.check() or [f.pts for f in dec.open("in.mp4", Fraction(1, 15360)).frames()]   # doctest: +SKIP
    """

    profile: str = attrs.field(default="cpu", validator=attrs.validators.in_(profiles.PROFILES))

    def check(self) -> str | None:
        """``None`` when this profile can decode here, else what is missing."""
        return check(self.profile)

    def open(self, path: str, time_base: Any, name: str = "") -> GstVideoReader:
        """An opened :class:`GstVideoReader` of ``path`` (pts in ``time_base``; ``name`` labels errors)."""
        return GstVideoReader(path, time_base, self.profile, name).open()


@attrs.define(eq=False)
class GstVideoReader:
    """Decodes the video track of ``path`` (MP4/MOV, H.264) with GStreamer's ``profile``
    (``cpu``, ``jetson``, ``nvidia``); frames get pts in ``time_base`` (the track's, seconds per
    unit). ``name`` labels errors; ``stall_timeout_s``: no picture and no end for that long is
    an error. Use :meth:`open`, iterate :meth:`frames`, :meth:`close` (or ``with``)."""

    path: str
    time_base: Fraction = attrs.field(converter=Fraction)
    profile: str = attrs.field(default="cpu", validator=attrs.validators.in_(profiles.PROFILES))
    name: str = ""
    stall_timeout_s: float = 30.0
    frames_out: int = attrs.field(default=0, init=False)
    _pipeline: Any = attrs.field(default=None, init=False, alias="_pipeline")
    _sink: Any = attrs.field(default=None, init=False, alias="_sink")

    @property
    def description(self) -> str:
        return pipelines.decoder_pipeline(self.profile)

    def _what(self) -> str:
        return f"input {self.name or self.path!r} (GStreamer decoder, profile {self.profile!r})"

    def open(self) -> GstVideoReader:
        """Build and start the pipeline; :class:`DeidError` naming the missing element and its
        package, or GStreamer's own error (not an MP4, no H.264 track ...)."""
        why = check(self.profile)
        if why is not None:
            raise DeidError(f"{self._what()} cannot run: {why}; use --decoder pyav")
        Gst = runtime.load()
        try:
            pipeline = runtime.parse(self.description, self._what())
        except runtime.GstUnavailable as exc:
            raise DeidError(str(exc)) from None
        pipeline.get_by_name("file").set_property("location", self.path)
        self._pipeline, self._sink = pipeline, pipeline.get_by_name("sink")
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._fail("the pipeline refused to play")
        return self

    def frames(self) -> Iterator[Any]:
        """The pictures in presentation order until the end of the track; raises :class:`DeidError`
        on a GStreamer error or a stall."""
        Gst = runtime.load()
        sink, tb = self._sink, self.time_base
        assert sink is not None, "GstVideoReader.open() first"
        last = time.monotonic()
        while True:
            sample = sink.try_pull_sample(PULL_NS)
            if sample is None:
                msg = runtime.poll_bus(self._pipeline)
                if msg is not None and msg.type == Gst.MessageType.ERROR:
                    self._fail(runtime.error_text(msg))
                if sink.is_eos() or (msg is not None and msg.type == Gst.MessageType.EOS):
                    return
                if time.monotonic() - last > self.stall_timeout_s:
                    self._fail(f"no picture for {self.stall_timeout_s:g} s")
                continue
            last = time.monotonic()
            buf = sample.get_buffer()
            frame = frames.from_sample(sample)
            if buf.pts != Gst.CLOCK_TIME_NONE:
                stream_ns = sample.get_segment().to_stream_time(Gst.Format.TIME, buf.pts)
                if stream_ns != Gst.CLOCK_TIME_NONE and stream_ns >= 0:
                    frame.pts = round(Fraction(stream_ns, 1_000_000_000) / tb)
            frame.time_base = tb
            if buf.duration != Gst.CLOCK_TIME_NONE:
                frame.duration = round(Fraction(buf.duration, 1_000_000_000) / tb)
            self.frames_out += 1
            yield frame

    def _fail(self, why: str) -> None:
        raise DeidError(f"{self._what()} could not be decoded at picture {self.frames_out}: {why}; check the file "
                        f"with ffprobe, or use --decoder pyav")

    def close(self) -> None:
        """Stop the pipeline (safe twice)."""
        p, self._pipeline, self._sink = self._pipeline, None, None
        runtime.stop(p)

    def __enter__(self) -> GstVideoReader:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()
