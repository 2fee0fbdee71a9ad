"""GStreamer video sources: ``<capture> -> convert to I420 -> appsink``, frames on the master clock.

Each source builds :func:`~surgbox_ext.gst.pipelines.source_tail` behind its capture element
(``videotestsrc``, ``v4l2src``, ``nvarguscamerasrc``, ``uridecodebin`` or a description of your
own) and hands out :class:`~surgbox.types.VideoFrame` s holding ``yuv420p`` ``av.VideoFrame`` s.

Time: a frame's ``capture_ns`` is the instant GStreamer stamped the buffer (the driver's capture
time for ``v4l2src``, the production time of a live test source, the presentation instant of a
file played as live), moved onto the surgbox clock: ``capture_ns = clock.now_ns() - age`` where
``age`` is how long ago, on the pipeline clock, the buffer's running time was. Never counted
from the frame number, so a pause or a dropped frame shows as a gap.

Queues: the ``appsink`` keeps at most two buffers (dropping the oldest) and the capture thread
moves frames into the bounded queue of :class:`~surgbox.capture.ThreadedSource` (drop-oldest,
counted in ``stats()['dropped']``), so a slow consumer never stalls the pipeline.

Errors: ``start`` raises :class:`~surgbox.errors.SourceError` naming the source and the fix when
an element is missing (with its package), the device does not exist, or the pipeline gives no
first frame within ``open_timeout_s`` (with GStreamer's own error). Later, an error, the end of
the stream or no frame for ``read_timeout_s`` stops the source with ``error`` set -- except
``gst_uri``, which reconnects with backoff (like the ``url`` source).
"""

from __future__ import annotations

import logging
import os
import time
from fractions import Fraction
from typing import Any, ClassVar

import attrs

from surgbox.capture import ThreadedSource
from surgbox.errors import SourceError
from surgbox.types import VideoFrame, parse_rate
from surgbox_ext.sources._common import positive as _positive, reconnect
from surgbox_ext.sources.url import redact

from . import frames, pipelines, profiles, runtime

log = logging.getLogger(__name__)

PULL_NS = 100_000_000


def _even_size(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (value < 2 or value % 2):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be an even number of pixels, got {value!r}")


_optional_int = attrs.converters.optional(int)


@attrs.define(eq=False)
class GstSource(ThreadedSource):
    """Base of the GStreamer sources: a subclass gives the capture part (:meth:`head`).

    Options: ``profile`` (``cpu``, ``jetson``, ``nvidia``: which elements convert),
    ``width``/``height`` (scale the output; default: the capture's size), ``open_timeout_s``
    (default 10: the first frame must arrive by then), ``read_timeout_s`` (default 3: a longer
    silence is a failure), ``queue_size`` (default 16).
    """

    media: ClassVar[str] = "video"
    sync: ClassVar[bool] = False  # appsink releases frames at their presentation time (files)
    kind_label: ClassVar[str] = "GStreamer source"

    profile: str = attrs.field(default="cpu", kw_only=True, validator=attrs.validators.in_(profiles.PROFILES))
    width: int | None = attrs.field(default=None, kw_only=True, converter=_optional_int, validator=_even_size)
    height: int | None = attrs.field(default=None, kw_only=True, converter=_optional_int, validator=_even_size)
    open_timeout_s: float = attrs.field(default=10.0, kw_only=True, converter=float, validator=_positive)
    read_timeout_s: float = attrs.field(default=3.0, kw_only=True, converter=float, validator=_positive)
    queue_size: int = attrs.field(default=16, kw_only=True)

    pipeline: Any = attrs.field(default=None, init=False)
    _sink: Any = attrs.field(default=None, init=False, alias="_sink")
    _pending: Any = attrs.field(default=None, init=False, alias="_pending")
    _last_ns: int = attrs.field(default=0, init=False, alias="_last_ns")
    _seq: int = attrs.field(default=0, init=False, alias="_seq")
    _late_stamps: int = attrs.field(default=0, init=False, alias="_late_stamps")

    # -- subclass API ---------------------------------------------------------------------------
    def head(self) -> str:
        """The capture part of the description (everything before the conversion)."""
        raise NotImplementedError

    def head_elements(self) -> tuple[str, ...]:
        """Elements :meth:`head` uses (checked, with their packages, before the pipeline is built)."""
        return ()

    def precheck(self) -> None:
        """Checks before building (a device node exists ...); raise :class:`SourceError`."""

    def describe(self) -> str:
        return f"source {self.name!r} ({self.kind_label})"

    def scrub(self, text: str) -> str:
        """``text`` made safe for messages and logs (``gst_uri`` removes credentials)."""
        return text

    def description(self) -> str:
        """The whole ``gst-launch`` description: :meth:`head` ``!`` the profile's conversion ``!`` appsink."""
        return f"{self.head()} ! {pipelines.source_tail(self.profile, width=self.width, height=self.height, sync=self.sync)}"

    def on_failure(self, why: str) -> None:
        """The pipeline failed after start (``why``: GStreamer's error, end of stream, stall): by
        default the source stops with ``error`` set."""
        raise SourceError(self.scrub(f"{self.describe()} failed: {why}"))

    # -- pipeline -------------------------------------------------------------------------------
    def open_pipeline(self) -> None:
        """Build and start the pipeline and wait for its first frame; :class:`SourceError` otherwise."""
        why = profiles.check(self.profile, "source", self.head_elements())
        if why is not None:
            raise SourceError(f"{self.describe()} cannot start: {why}")
        self.precheck()
        Gst = runtime.load()
        try:
            pipeline = runtime.parse(self.description(), self.describe())
        except runtime.GstUnavailable as exc:
            raise SourceError(str(exc)) from None
        sink = pipeline.get_by_name("sink")
        ret = pipeline.set_state(Gst.State.PLAYING)
        deadline = time.monotonic() + self.open_timeout_s
        try:
            if ret == Gst.StateChangeReturn.FAILURE:
                why = self._bus_text(pipeline) or "the pipeline refused to play"
                raise SourceError(self.scrub(f"{self.describe()} could not start: {why}; {self.fix()}"))
            while True:
                sample = sink.try_pull_sample(PULL_NS)
                if sample is not None:
                    break
                msg = runtime.poll_bus(pipeline)
                if msg is not None:
                    why = runtime.error_text(msg) if msg.type == Gst.MessageType.ERROR else "the stream ended before its first frame"
                    raise SourceError(self.scrub(f"{self.describe()} could not start: {why}; {self.fix()}"))
                if time.monotonic() > deadline:
                    raise SourceError(f"{self.describe()} gave no frame within {self.open_timeout_s:g} s (the pipeline did "
                                      f"not preroll); {self.fix()} (or raise open_timeout_s)")
        except BaseException:
            runtime.stop(pipeline)
            raise
        self.pipeline, self._sink, self._pending = pipeline, sink, sample
        self._last_ns = time.monotonic_ns()

    def close_pipeline(self) -> None:
        p, self.pipeline, self._sink, self._pending = self.pipeline, None, None, None
        runtime.stop(p)

    def fix(self) -> str:
        """What to check when the pipeline does not start (subclasses know their devices)."""
        return f"check the pipeline with `gst-launch-1.0 {self.head()} ! fakesink`"

    def _bus_text(self, pipeline: Any) -> str | None:
        msg = runtime.poll_bus(pipeline)
        return None if msg is None else runtime.error_text(msg)

    # -- ThreadedSource -------------------------------------------------------------------------
    def _open(self) -> None:
        self.open_pipeline()

    def _close(self) -> None:
        self.close_pipeline()

    def _capture(self) -> VideoFrame | None:
        Gst = runtime.load()
        if self.pipeline is None:  # a reconnect is under way
            return None
        sample, self._pending = self._pending, None
        if sample is None:
            sample = self._sink.try_pull_sample(PULL_NS)
        if sample is None:
            msg = runtime.poll_bus(self.pipeline)
            if msg is not None:
                return self.on_failure(runtime.error_text(msg) if msg.type == Gst.MessageType.ERROR else "the stream ended")
            if (time.monotonic_ns() - self._last_ns) / 1e9 > self.read_timeout_s:
                return self.on_failure(f"no frame for {self.read_timeout_s:g} s")
            return None
        self._last_ns = time.monotonic_ns()
        return self.wrap(sample)

    def wrap(self, sample: Any) -> VideoFrame:
        """The sample as a :class:`VideoFrame` stamped on the master clock (see the module doc)."""
        assert self.clock is not None
        item = VideoFrame(self.name, self.stamp(sample), frames.from_sample(sample), self._seq)
        self._seq += 1
        return item

    def stamp(self, sample: Any) -> int:
        """``capture_ns`` of ``sample``: its running time on the pipeline clock, mapped to ``clock``."""
        Gst = runtime.load()
        assert self.clock is not None
        now = self.clock.now_ns()
        buf, gst_clock = sample.get_buffer(), self.pipeline.get_clock() if self.pipeline is not None else None
        if gst_clock is None or buf.pts == Gst.CLOCK_TIME_NONE:
            return now
        running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
        if running == Gst.CLOCK_TIME_NONE:
            return now
        age = gst_clock.get_time() - (self.pipeline.get_base_time() + running)
        if age < 0:  # stamped ahead of the clock (a non-live source without sync): arrival time
            self._late_stamps += 1
            return now
        return now - age

    def stats(self) -> dict[str, Any]:
        s = dict(super().stats())
        s.update(pipeline=self.description(), profile=self.profile, unstamped=self._late_stamps)
        return s


@attrs.define(eq=False)
class GstTestSource(GstSource):
    """``gst_testsrc``: GStreamer's ``videotestsrc`` as a live camera. Options: ``width``/``height``
    (default 1280x720), ``fps`` (30), ``pattern`` (``smpte``, ``ball``, ``snow``... see
    ``gst-inspect-1.0 videotestsrc``), plus :class:`GstSource`'s."""

    kind_label: ClassVar[str] = "videotestsrc"

    width: int | None = attrs.field(default=1280, kw_only=True, converter=_optional_int, validator=_even_size)
    height: int | None = attrs.field(default=720, kw_only=True, converter=_optional_int, validator=_even_size)
    fps: Fraction = attrs.field(default=30, kw_only=True, converter=lambda v: parse_rate(v, "fps"))
    pattern: str = attrs.field(default="smpte", kw_only=True, converter=str)

    def head(self) -> str:
        return pipelines.testsrc_head(width=self.width or 1280, height=self.height or 720, fps=self.fps, pattern=self.pattern)

    def head_elements(self) -> tuple[str, ...]:
        return ("videotestsrc",)

    def description(self) -> str:  # already at the wanted size: convert only
        return f"{self.head()} ! {pipelines.source_tail(self.profile, sync=False)}"


@attrs.define(eq=False)
class GstV4L2Source(GstSource):
    """``gst_v4l2``: a capture card or USB camera through ``v4l2src``. Options: ``device``
    (``/dev/video0``), ``width``/``height``/``fps`` (the mode to ask for; default the device's),
    ``mjpeg`` (the device sends MJPEG: decoded by ``jpegdec``), plus :class:`GstSource`'s."""

    path_options: ClassVar[tuple[str, ...]] = ("device",)
    kind_label: ClassVar[str] = "v4l2src"

    device: str = attrs.field(default="/dev/video0", kw_only=True, converter=str)
    fps: Fraction | None = attrs.field(default=None, kw_only=True, converter=attrs.converters.optional(lambda v: parse_rate(v, "fps")))
    mjpeg: bool = attrs.field(default=False, kw_only=True, converter=bool)

    def describe(self) -> str:
        return f"source {self.name!r} (v4l2src {self.device})"

    def head(self) -> str:
        return pipelines.v4l2_head(device=self.device, width=self.width, height=self.height, fps=self.fps, mjpeg=self.mjpeg,
                                   profile=self.profile)

    def head_elements(self) -> tuple[str, ...]:
        if self.mjpeg:
            return ("v4l2src", "nvv4l2decoder" if self.profile == "jetson" else "jpegdec")
        return ("v4l2src",)

    def description(self) -> str:  # the mode is asked of the device: no scaling after it
        return f"{self.head()} ! {pipelines.source_tail(self.profile)}"

    def precheck(self) -> None:
        if not os.path.exists(self.device):
            raise SourceError(f"{self.describe()}: {self.device} does not exist; connect the capture card or camera, list "
                              f"devices with `v4l2-ctl --list-devices` and set device= to one of them")

    def fix(self) -> str:
        return (f"does {self.device} support that mode? List its modes with `v4l2-ctl -d {self.device} --list-formats-ext`; "
                f"is it in use by another program, or not readable by this user (group 'video')?")


@attrs.define(eq=False)
class GstArgusSource(GstSource):
    """``gst_argus``: a Jetson CSI camera through ``nvarguscamerasrc`` (profile ``jetson``).
    Options: ``sensor_id`` (0), ``width``/``height`` (1920x1080), ``fps`` (30). Not hardware-tested."""

    kind_label: ClassVar[str] = "nvarguscamerasrc"

    profile: str = attrs.field(default="jetson", kw_only=True, validator=attrs.validators.in_(profiles.PROFILES))
    width: int | None = attrs.field(default=1920, kw_only=True, converter=_optional_int, validator=_even_size)
    height: int | None = attrs.field(default=1080, kw_only=True, converter=_optional_int, validator=_even_size)
    fps: Fraction = attrs.field(default=30, kw_only=True, converter=lambda v: parse_rate(v, "fps"))
    sensor_id: int = attrs.field(default=0, kw_only=True, converter=int)

    def head(self) -> str:
        return pipelines.argus_head(sensor_id=self.sensor_id, width=self.width or 1920, height=self.height or 1080, fps=self.fps)

    def head_elements(self) -> tuple[str, ...]:
        return ("nvarguscamerasrc",)

    def description(self) -> str:
        return f"{self.head()} ! {pipelines.source_tail(self.profile)}"

    def fix(self) -> str:
        return f"is a CSI camera connected as sensor {self.sensor_id}, and is nvargus-daemon running?"


@attrs.define(eq=False)
class GstUriSource(GstSource):
    """``gst_uri``: anything ``uridecodebin`` opens (``file:///...``, ``rtsp://``, ``http://``),
    its video decoded (by the profile's hardware decoder where installed: decoders are chosen by
    rank) and played as live. Options: ``uri``, ``backoff_initial_s`` (0.5), ``backoff_max_s``
    (10), ``max_retries`` (``None``: never give up), plus :class:`GstSource`'s. After the first
    frame, an error, the end of the stream or a stall reconnects, waiting ``backoff_initial_s``
    and twice as long after each failed attempt up to ``backoff_max_s``."""

    sync: ClassVar[bool] = True
    kind_label: ClassVar[str] = "uridecodebin"

    uri: str = attrs.field(kw_only=True, converter=str)
    backoff_initial_s: float = attrs.field(default=0.5, kw_only=True, converter=float, validator=_positive)
    backoff_max_s: float = attrs.field(default=10.0, kw_only=True, converter=float, validator=_positive)
    max_retries: int | None = attrs.field(default=None, kw_only=True, converter=_optional_int)

    _reconnects: int = attrs.field(default=0, init=False, alias="_reconnects")
    _attempts: int = attrs.field(default=0, init=False, alias="_attempts")
    _last_error: str | None = attrs.field(default=None, init=False, alias="_last_error")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if "://" not in self.uri:
            raise ValueError(f"gst_uri source {self.name!r}: uri {self.uri!r} is not a URI like file:///path/video.mp4 or rtsp://host/stream")

    def describe(self) -> str:
        return f"source {self.name!r} (uridecodebin {redact(self.uri)})"

    def scrub(self, text: str) -> str:
        return redact(text)

    def head(self) -> str:
        return pipelines.uri_head(uri=self.uri)

    def head_elements(self) -> tuple[str, ...]:
        return ("uridecodebin",)

    def fix(self) -> str:
        return "check that the URI exists and is reachable (camera on, credentials, firewall) and has a video stream"

    def on_failure(self, why: str) -> None:
        self._last_error = why = self.scrub(why)
        log.info("%s lost (%s); reconnecting", self.describe(), why)
        self.close_pipeline()
        if reconnect(self, self.open_pipeline, log):
            self._attempts = 0  # up again: the next failure starts the backoff afresh
        return None

    def stats(self) -> dict[str, Any]:
        s = super().stats()
        s.update(reconnects=self._reconnects, failed_attempts=self._attempts, last_error=self._last_error)
        return s


@attrs.define(eq=False)
class GstPipelineSource(GstSource):
    """``gst_pipeline``: your own capture description (``launch``, e.g. ``"rtspsrc location=rtsp://cam
    latency=100 ! rtph264depay ! h264parse ! avdec_h264"``); surgbox adds the profile's conversion
    to I420 and the appsink. ``sync`` (default False): release frames at their presentation time
    (True for files). Plus :class:`GstSource`'s options."""

    kind_label: ClassVar[str] = "gst-launch description"

    launch: str = attrs.field(kw_only=True, converter=str)
    play_in_time: bool = attrs.field(default=False, kw_only=True, converter=bool, alias="sync")

    def head(self) -> str:
        return self.launch

    def describe(self) -> str:
        return f"source {self.name!r} (GStreamer: {self.launch})"

    def description(self) -> str:
        tail = pipelines.source_tail(self.profile, width=self.width, height=self.height, sync=self.play_in_time)
        return f"{self.head()} ! {tail}"
