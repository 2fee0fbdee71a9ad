"""The live monitor through GStreamer: ``appsrc -> convert -> autovideosink | kmssink |
nveglglessink`` (:func:`~.pipelines.display_pipeline`), used by
:class:`surgbox.recording.display.DisplayOutput` on its own thread.

:meth:`GstDisplaySink.show` never queues more than one picture inside GStreamer: while the
``appsrc`` still holds the previous one (the sink is slower than the recording) the new picture
is refused and counted as dropped by the caller. ``rendered`` counts the pictures that reached
the sink element (a pad probe), which is what the tests compare with what was offered.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import attrs

from surgbox.errors import SurgboxError

from . import frames, pipelines, profiles, runtime


def _sink_element(sink: str | None, profile: str) -> str:
    return (sink or pipelines.DISPLAY_SINKS[profile]).split()[0]


def check(profile: str = "cpu", sink: str | None = None) -> str | None:
    """``None`` when the display pipeline of ``profile`` with ``sink`` can be built here, else the
    missing elements and their packages (or why GStreamer is missing)."""
    why = runtime.reason()
    if why is not None:
        return why
    element = _sink_element(sink, profile)
    convert = "nvvidconv" if element in pipelines.NVMM_SINKS else "videoconvert"
    lacking = profiles.missing(["appsrc", convert, element])
    if not lacking:
        return None
    return f"the display ({element}, GStreamer profile {profile!r}) lacks {profiles.explain_missing(lacking)}"


@attrs.frozen
class GstDisplay:
    """The ``gstreamer`` display plugin (kind ``display``): the ``profile``'s display sink, or
    ``sink`` (a launch fragment such as ``kmssink`` or ``fakesink``). :meth:`check` says whether
    it can be built here; :meth:`open` starts a :class:`GstDisplaySink` of a picture size.

    >>> from surgbox.plugins import get_plugins
    >>> disp = get_plugins().create("display", "gstreamer", profile="cpu", sink="fakesink")   # doctest: +SKIP
    >>> disp.check() or disp.open(1920, 1080, 30).close()                                      # doctest: +SKIP
    """

    profile: str = attrs.field(default="cpu", validator=attrs.validators.in_(profiles.PROFILES))
    sink: str | None = None

    def check(self) -> str | None:
        """``None`` when the pipeline can be built here, else what is missing (and its package)."""
        return check(self.profile, self.sink)

    def open(self, width: int, height: int, fps: Any) -> GstDisplaySink:
        """An opened :class:`GstDisplaySink` for ``width`` x ``height`` pictures at ``fps``."""
        sink = GstDisplaySink(width, height, fps, self.profile, self.sink)
        sink.open()
        return sink


@attrs.define(eq=False)
class GstDisplaySink:
    """Shows ``width`` x ``height`` ``yuv420p`` pictures at nominal ``fps`` on the ``profile``'s
    display sink, or ``sink`` (a launch fragment such as ``kmssink`` or ``fakesink``)."""

    width: int
    height: int
    fps: Fraction = attrs.field(converter=Fraction)
    profile: str = attrs.field(default="cpu", validator=attrs.validators.in_(profiles.PROFILES))
    sink: str | None = None
    rendered: int = attrs.field(default=0, init=False)
    _pipeline: Any = attrs.field(default=None, init=False, alias="_pipeline")
    _src: Any = attrs.field(default=None, init=False, alias="_src")
    _info: Any = attrs.field(default=None, init=False, alias="_info")

    @property
    def description(self) -> str:
        return pipelines.display_pipeline(self.profile, width=self.width, height=self.height, fps=self.fps, sink=self.sink)

    def open(self) -> None:
        """Build and start the pipeline; :class:`SurgboxError` naming what is missing or failed."""
        why = check(self.profile, self.sink)
        if why is not None:
            raise SurgboxError(f"{why}; install it, or choose another display sink")
        Gst = runtime.load()
        pipeline = runtime.parse(self.description, "display")
        self._pipeline, self._src = pipeline, pipeline.get_by_name("src")
        self._info = frames.i420_info(self.width, self.height)
        for element in pipeline.children:  # count what reaches the sink element itself
            if element.flags & Gst.ElementFlags.SINK:
                element.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self._count)
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            msg = runtime.poll_bus(pipeline)
            self.close()
            raise SurgboxError(f"display pipeline would not start: {runtime.error_text(msg) if msg else 'no reason given'}"
                               f" ({self.description})")

    def _count(self, pad: Any, info: Any) -> Any:
        self.rendered += 1
        return runtime.load().PadProbeReturn.OK

    def show(self, frame: Any, time_ns: int) -> bool:
        """Hand ``frame`` (``yuv420p`` ``av.VideoFrame`` of the display's size) to GStreamer, shown
        at ``time_ns``; False (nothing queued) while the previous picture is still waiting.
        Raises :class:`SurgboxError` when the pipeline failed or ended."""
        Gst = runtime.load()
        msg = runtime.poll_bus(self._pipeline)
        if msg is not None:
            why = runtime.error_text(msg) if msg.type == Gst.MessageType.ERROR else "the display sink ended"
            raise SurgboxError(f"display failed: {why}")
        if self._src.get_current_level_bytes() > 0:
            return False
        buf = frames.to_buffer(frame, self._info)
        buf.pts, buf.duration = int(time_ns), int(1_000_000_000 / self.fps)
        ret = self._src.push_buffer(buf)
        if ret != Gst.FlowReturn.OK:
            raise SurgboxError(f"display failed: the pipeline refused a picture ({ret.value_nick})")
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Send end-of-stream, wait up to ``timeout_s`` for the queued picture to be shown, stop."""
        p, self._pipeline = self._pipeline, None
        if p is None:
            return
        try:
            if self._src is not None:
                self._src.end_of_stream()
                runtime.poll_bus(p, int(timeout_s * 1e9))
        finally:
            runtime.stop(p)
