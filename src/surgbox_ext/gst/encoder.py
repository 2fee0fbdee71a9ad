"""H.264 through a GStreamer encoder element, AAC through PyAV: the ``gst_*`` encoder plugins.

Video: ``appsrc -> x264enc | nvvidconv ! nvv4l2h264enc | nvh264enc -> h264parse -> appsink``
(:func:`~surgbox_ext.gst.pipelines.encoder_pipeline`), handing out
:class:`~surgbox.packets.Packet` s (Annex B access units, a keyframe every GOP) and a
:class:`~surgbox.packets.StreamSpec` whose ``extradata`` is the encoder's SPS/PPS, so the
recorder's crash-safe muxer (:class:`surgbox.mux.Mp4Muxer`) writes the file and its fragments
exactly as for the PyAV encoders. The SPS/PPS are known before the first frame because
``open_codecs`` encodes one black frame through a throw-away copy of the pipeline (which also
makes a missing element, a bad option or missing hardware fail there, as the contract asks);
every IDR repeats them in-band too, so each fragment decodes on its own.

Audio: FFmpeg's AAC through PyAV, the same code as the ``libx264`` plugin (these classes extend
:class:`~surgbox_ext.encoders.pyav.PyAVEncoder` and replace only its video codec). None of the
three targets has an AAC encoder in hardware (a Jetson's ``voaacenc``/``avenc_aac`` run on its
CPU too), and reusing the PyAV path keeps the sample-exact A/V alignment (priming compensated,
gaps filled, overlaps trimmed) identical between encoders.

Timing: a frame's ``time_ns`` becomes the buffer's PTS; packets come back with the running
time of their buffer (x264enc shifts its output segment by 1000 h; the running time undoes
it), converted to ``time_base`` with the same rounding as PyAV, so both encoders give the same
timestamps. The encoder element runs on GStreamer's threads: ``encode`` queues the picture
(waiting while ``queue_frames`` pictures are already queued: bounded memory, and a stalled
pipeline fails after ``stall_timeout_s``) and returns whatever packets are ready.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from typing import Any, ClassVar

import attrs

from surgbox.errors import EncoderError
from surgbox.mux import describe_os_error
from surgbox.packets import StreamSpec
from surgbox.types import channel_layout, parse_rate
from surgbox_ext.encoders.pyav import DEFAULT_TIME_BASE, NS, PyAVEncoder, _positive_number

from . import frames, h264, pipelines, profiles, runtime

log = logging.getLogger(__name__)

POLL_S = 0.002


class GstFailure(Exception):
    """The pipeline reported an error (the message names the element)."""


@attrs.frozen
class _RawPacket:
    """What ``PyAVEncoder._packets`` reads from an encoded packet (PyAV's attribute names)."""

    data: bytes
    pts: int
    dts: int | None
    duration: int
    time_base: Fraction
    is_keyframe: bool

    def __bytes__(self) -> bytes:
        return self.data


@attrs.define(eq=False)
class EncoderPipeline:
    """A running encoder pipeline: pictures in (``encode(frame)``), access units out.

    ``encode(None)`` ends the stream and returns the rest (the flush). Raises
    :class:`GstFailure` with the element's error, or when nothing moves for ``stall_timeout_s``.
    """

    description: str
    width: int
    height: int
    time_base: Fraction
    queue_frames: int = 4
    stall_timeout_s: float = 10.0
    pipeline: Any = attrs.field(default=None, init=False)
    _src: Any = attrs.field(default=None, init=False, alias="_src")
    _sink: Any = attrs.field(default=None, init=False, alias="_sink")
    _info: Any = attrs.field(default=None, init=False, alias="_info")
    _frame_ns: int = attrs.field(default=0, init=False, alias="_frame_ns")

    def start(self, frame_ns: int) -> None:
        Gst = runtime.load()
        self._frame_ns = frame_ns
        self.pipeline = runtime.parse(self.description, "encoder")
        self._src, self._sink = self.pipeline.get_by_name("src"), self.pipeline.get_by_name("sink")
        self._info = frames.i420_info(self.width, self.height)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise GstFailure(self._bus_error() or "the pipeline refused to start (state change to PLAYING failed)")

    def stop(self) -> None:
        p, self.pipeline = self.pipeline, None
        runtime.stop(p)

    def encode(self, frame: Any) -> list[_RawPacket]:
        if frame is None:
            return self._finish()
        Gst = runtime.load()
        buf = frames.to_buffer(frame, self._info)
        buf.pts = round(Fraction(frame.pts) * self.time_base * NS)
        buf.duration = self._frame_ns
        deadline = time.monotonic() + self.stall_timeout_s
        while self._src.get_property("current-level-buffers") >= self.queue_frames:
            self._raise_bus_error()
            if time.monotonic() > deadline:
                raise GstFailure(f"the encoder took no picture for {self.stall_timeout_s:g} s (stalled pipeline)")
            time.sleep(POLL_S)
        flow = self._src.push_buffer(buf)
        if flow != Gst.FlowReturn.OK:
            raise GstFailure(self._bus_error() or f"appsrc refused the picture ({flow.value_nick})")
        out = self._pull(0)
        self._raise_bus_error()
        return out

    def _finish(self) -> list[_RawPacket]:
        self._src.end_of_stream()
        out: list[_RawPacket] = []
        deadline = time.monotonic() + self.stall_timeout_s
        while not self._sink.is_eos():
            got = self._pull(100_000_000)
            out += got
            self._raise_bus_error()
            if got:
                deadline = time.monotonic() + self.stall_timeout_s
            elif time.monotonic() > deadline:
                raise GstFailure(f"the encoder did not finish within {self.stall_timeout_s:g} s of the end of the stream")
        return out + self._pull(0)

    def _pull(self, timeout_ns: int) -> list[_RawPacket]:
        Gst = runtime.load()
        out = []
        while True:
            sample = self._sink.try_pull_sample(timeout_ns)
            if sample is None:
                return out
            timeout_ns = 0
            buf = sample.get_buffer()
            running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
            pts = round(Fraction(running, NS) / self.time_base)
            dur = round(Fraction(buf.duration, NS) / self.time_base) if buf.duration != Gst.CLOCK_TIME_NONE else 0
            out.append(_RawPacket(buf.extract_dup(0, buf.get_size()), pts, None, dur, self.time_base,
                                  not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)))

    def _bus_error(self) -> str | None:
        Gst = runtime.load()
        msg = runtime.poll_bus(self.pipeline)
        if msg is not None and msg.type == Gst.MessageType.ERROR:
            return runtime.error_text(msg)
        return None

    def _raise_bus_error(self) -> None:
        err = self._bus_error()
        if err is not None:
            raise GstFailure(err)


def probe_parameter_sets(description: str, width: int, height: int, fps: Fraction, timeout_s: float) -> bytes:
    """Encode one black picture through a copy of the pipeline and return its SPS/PPS (Annex B).
    Raises :class:`GstFailure` when the pipeline cannot run or gives no parameter sets."""
    import av

    black = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(black.planes, (16, 128, 128)):
        plane.update(bytes([value]) * plane.buffer_size)
    black.pts = 0
    tb = Fraction(1, NS)
    probe = EncoderPipeline(description, width, height, tb, stall_timeout_s=timeout_s)
    try:
        probe.start(round(NS / fps))
        units = probe.encode(black) + probe.encode(None)
    finally:
        probe.stop()
    for unit in units:
        sets = h264.parameter_sets(unit.data)
        if sets:
            return sets
    raise GstFailure(f"the encoder gave {len(units)} access unit(s) for a test picture but no SPS/PPS")


@attrs.define(eq=False)
class GstEncoder(PyAVEncoder):
    """Base of the GStreamer H.264 encoders (``gst_x264``, ``gst_nvv4l2h264``, ``gst_nvh264``).

    Options shared with the PyAV encoders: ``gop_seconds`` (keyframe interval = fragment length,
    default 1 s), ``bitrate`` (bits/s; ``None``: constant quality), ``threads``, ``audio_bitrate``,
    ``fragmented`` (one-call path), ``codec_options`` (extra properties of the encoder element,
    ``{"rc-lookahead": 5}``); ``profile`` the H.264 profile (``high``, ``main``, ``baseline``);
    ``preset``; ``open_timeout_s`` (the test picture of ``open_codecs``), ``stall_timeout_s``
    and ``queue_frames`` (pictures queued in front of the encoder before ``encode`` waits).
    """

    gst_profile: ClassVar[str] = "cpu"
    codec: ClassVar[str] = "gstreamer"

    profile: str = attrs.field(default="high", kw_only=True, validator=attrs.validators.in_(pipelines.H264_PROFILES))
    preset: str | None = attrs.field(default=None, kw_only=True)
    open_timeout_s: float = attrs.field(default=20.0, kw_only=True, converter=float, validator=_positive_number)
    stall_timeout_s: float = attrs.field(default=10.0, kw_only=True, converter=float, validator=_positive_number)
    queue_frames: int = attrs.field(default=4, kw_only=True, converter=int, validator=_positive_number)

    _pipe: EncoderPipeline | None = attrs.field(default=None, init=False, alias="_pipe")

    # -- subclass API ---------------------------------------------------------------------------
    def pipeline_description(self, width: int, height: int, fps: Fraction) -> str:
        """The ``gst-launch`` description of the video pipeline for this size and rate."""
        return pipelines.encoder_pipeline(self.gst_profile, width=width, height=height, fps=fps, gop=self.gop(fps),
                                          bitrate=self.bitrate, quality=self._quality(), preset=self.preset,
                                          h264_profile=self.profile, extra=self.codec_options, **self._profile_options())

    def _quality(self) -> float:
        return 23.0

    def _profile_options(self) -> dict[str, Any]:
        return {}

    def gop(self, fps: Fraction) -> int:
        """Frames between keyframes: ``round(fps * gop_seconds)``, at least 1 (as the PyAV encoders)."""
        return max(1, round(float(fps) * self.gop_seconds))

    # -- packet API -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.codec

    def open_codecs(
        self,
        *,
        width: int = 1920,
        height: int = 1080,
        fps: float | Fraction = 30,
        time_base: Fraction | None = None,
        audio_rate: int | None = None,
        audio_channels: int = 1,
        label: str | None = None,
    ) -> tuple[StreamSpec, ...]:
        """Build and start the video pipeline (after a test picture that yields the SPS/PPS) and
        open AAC when ``audio_rate`` is given; returns their specs. Fails here, naming the element
        and its package, when the profile's elements are missing or the encoder cannot run."""
        import av

        if self._video is not None:
            raise EncoderError(f"{self.codec} encoder: already open on {self._label()}")
        if label is not None:
            self._label_text = label
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EncoderError(f"{self.codec} encoder: size {width}x{height} must be positive and even (yuv420p)")
        try:
            rate = parse_rate(fps, "fps")
        except ValueError as exc:
            raise EncoderError(f"{self.codec} encoder: {exc}") from None
        why = profiles.check(self.gst_profile, "encoder")
        if why is not None:
            raise EncoderError(f"{self.codec} encoder: cannot open for {self._label()}: {why}")
        self._width, self._height = int(width), int(height)
        self._time_base = Fraction(time_base) if time_base is not None else DEFAULT_TIME_BASE
        self._frame_units = max(1, round(1 / (rate * self._time_base)))
        description = self.pipeline_description(self._width, self._height, rate)
        pipe = EncoderPipeline(description, self._width, self._height, self._time_base, self.queue_frames, self.stall_timeout_s)
        actx = None
        try:
            extradata = probe_parameter_sets(description, self._width, self._height, rate, self.open_timeout_s)
            pipe.start(round(NS / rate))
            specs = [StreamSpec("video", "h264", self._time_base, extradata, self._width, self._height, "yuv420p", rate,
                                bit_rate=int(self.bitrate or 0))]
            if audio_rate:
                self._audio_rate, self._audio_layout = int(audio_rate), channel_layout(audio_channels)
                actx = av.CodecContext.create("aac", "w")
                actx.sample_rate, actx.layout, actx.format = self._audio_rate, self._audio_layout, "fltp"
                actx.bit_rate, actx.time_base = self.audio_bitrate, Fraction(1, self._audio_rate)
                actx.flags |= av.codec.context.Flags.global_header
                actx.open()
                specs.append(StreamSpec("audio", "aac", Fraction(1, self._audio_rate), bytes(actx.extradata or b""),
                                        sample_rate=self._audio_rate, channels=int(audio_channels), frame_size=actx.frame_size,
                                        bit_rate=self.audio_bitrate))
        except (GstFailure, runtime.GstUnavailable) as exc:
            pipe.stop()
            raise EncoderError(f"{self.codec} encoder: cannot open for {self._label()}: {exc}") from None
        except (OSError, ValueError, av.FFmpegError) as exc:
            pipe.stop()
            raise EncoderError(f"{self.codec} encoder: cannot open AAC for {self._label()}: {describe_os_error(exc)}") from exc
        self._pipe = pipe
        self._video, self._audio, self._streams = pipe, actx, tuple(specs)
        self._counts = {"video_frames": 0, "audio_samples": 0, "audio_packets_copied": 0, "audio_gap_samples": 0,
                        "audio_trimmed_samples": 0, "keyframes": 0}
        log.debug("%s: %s for %s", self.codec, description, self._label())
        return self._streams

    # -- PyAVEncoder internals: the video "codec context" is the pipeline ------------------------------
    def _encode(self, ctx: Any, frame: Any, doing: str) -> list[Any]:
        if ctx is not self._pipe:
            return super()._encode(ctx, frame, doing)  # AAC
        try:
            return ctx.encode(frame)
        except (GstFailure, runtime.GstUnavailable) as exc:
            self._failed = EncoderError(
                f"{self.codec} encoder ({self._label()}): GStreamer failed while {doing}: {exc}. The recording was "
                "stopped; everything written before is playable. Check the encoder options and `gst-inspect-1.0`.")
            log.error("%s", self._failed)
            raise self._failed from None

    def _release(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.stop()
        super()._release()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "gst_profile": self.gst_profile}


@attrs.define(eq=False)
class GstX264Encoder(GstEncoder):
    """``gst_x264`` (profile ``cpu``): ``x264enc``, the libx264 plugin's options and defaults.

    ``preset`` x264 speed preset (default ``veryfast``); ``crf`` constant quality 0-50 (x264enc's
    ``pass=qual``; ignored when ``bitrate`` is set: ABR capped at the bitrate, 2 s buffer);
    ``tune`` (``zerolatency``/``fastdecode``/``stillimage`` or a psy tune such as ``film``);
    ``x264_params`` raw ``key=value:...`` x264 options. Scene-cut keyframes are off.
    """

    gst_profile: ClassVar[str] = "cpu"
    codec: ClassVar[str] = "x264enc"

    preset: str | None = attrs.field(default="veryfast", kw_only=True)
    crf: float = attrs.field(default=23, kw_only=True, validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(50)))
    tune: str | None = attrs.field(default=None, kw_only=True)
    x264_params: str | None = attrs.field(default=None, kw_only=True)

    def _quality(self) -> float:
        return float(self.crf)

    def _profile_options(self) -> dict[str, Any]:
        return {"threads": self.threads, "tune": self.tune, "options": self.x264_params}


@attrs.define(eq=False)
class GstJetsonEncoder(GstEncoder):
    """``gst_nvv4l2h264`` (profile ``jetson``): ``nvvidconv`` + ``nvv4l2h264enc`` on a Jetson.

    ``bitrate`` bits/s (default 8 Mbit/s VBR: the element has no constant-quality mode; set it
    for CBR); ``preset`` the ``preset-level`` 0-4 (default 1, UltraFast). Not hardware-tested.
    """

    gst_profile: ClassVar[str] = "jetson"
    codec: ClassVar[str] = "nvv4l2h264enc"

    preset: str | None = attrs.field(default=None, kw_only=True, converter=attrs.converters.optional(str),
                                     validator=attrs.validators.optional(attrs.validators.in_(("0", "1", "2", "3", "4"))))


@attrs.define(eq=False)
class GstNvidiaEncoder(GstEncoder):
    """``gst_nvh264`` (profile ``nvidia``): ``nvh264enc`` (NVENC through the nvcodec plugin).

    ``cq`` constant quality (VBR ``const-quality``; ignored when ``bitrate`` is set: CBR);
    ``preset`` NVENC preset of the element (default ``hq``). Not hardware-tested.
    """

    gst_profile: ClassVar[str] = "nvidia"
    codec: ClassVar[str] = "nvh264enc"

    cq: float = attrs.field(default=23, kw_only=True, validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(51)))

    def _quality(self) -> float:
        return float(self.cq)
