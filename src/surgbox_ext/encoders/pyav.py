"""H.264 + AAC encoders on PyAV in PyAV's shape: ``encode(frame) -> packets``, explicit ``flush()``.

The packet API (what the recorder uses): ``open_codecs(width=, height=, fps=, ...)`` opens the
video codec (and AAC when ``audio_rate`` is given) and returns their
:class:`~surgbox.packets.StreamSpec` s; ``encode(frame, time_ns)`` and
``encode_audio(samples, time_ns)`` return :class:`~surgbox.packets.Packet` s; ``flush()``
returns what the codecs still hold; ``close()``. Packets are plain values: the recorder muxes
them into its crash-safe file (:class:`surgbox.mux.Mp4Muxer`) on a writer thread and can tee
them to a preview or an upload without encoding twice.

The one-call path (de-identification uses it): ``open_output(target, ...)``, ``write_video`` /
``write_audio`` / ``copy_audio``, ``close()`` -- the same codecs feeding an
:class:`~surgbox.mux.Mp4Muxer` (:class:`~surgbox.mux.EncodedOutput`). Fragmented (the default)
the file is ``movflags=frag_keyframe+empty_moov+default_base_moof``: header first, then one
self-contained fragment per keyframe; with a GOP of ``gop_seconds`` (1 s by default, scene-cut
keyframes off, so every fragment is one GOP) a ``kill -9`` or power loss loses at most the
fragment being written. It never seeks, so the target may be a path or any writable binary file
object (a pipe, an encrypting writer).

Time: ``time_ns`` is nanoseconds on the output time line (0 = first frame). A fragmented MP4
has no edit list, so each track plays from its first packet: the first video frame must be at
``time_ns=0`` (later ones keep their exact times), B-frames are off, and audio always starts
at 0 (silence fills up to the first chunk; the AAC priming delay is compensated so input sample
``s`` decodes as file sample ``s``). Video ``pts = round(time_ns * time_base_hz / 1e9)``, i.e.
``round(time_ns / 1e9 / time_base)`` with ``time_base`` in seconds per unit (default
``1/90000``); audio pts count samples at ``audio_rate``.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from fractions import Fraction
from typing import IO, Any, ClassVar

import attrs
import numpy as np

from surgbox.errors import EncoderError
from surgbox.interfaces import Encoder
from surgbox.mux import EncodedOutput, Mp4Muxer, describe_os_error, target_label
from surgbox.packets import Packet, StreamSpec
from surgbox.types import channel_layout, parse_rate

log = logging.getLogger(__name__)

DEFAULT_TIME_BASE = Fraction(1, 90000)
AAC_PRIMING = 1024  # FFmpeg's AAC encoder delay (initial_padding), in samples
NS = 1_000_000_000


def _positive_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"encoder option {attribute.name} must be > 0, got {value!r}")


def _need_bool(name: str, value: Any) -> None:
    """A boolean option: a string such as ``"no"`` would otherwise read as true."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


@attrs.define(eq=False)
class PyAVEncoder(Encoder):
    """Base of the PyAV video encoders: video codec ``codec`` + AAC, packets out.

    Options (all optional): ``gop_seconds`` keyframe interval (= fragment length, s);
    ``bitrate`` video bits/s (``None``: codec's quality mode); ``threads`` encoder threads
    (0 = codec default); ``audio_bitrate`` AAC bits/s; ``codec_options`` extra FFmpeg codec
    options as strings; ``fragmented`` (default True; the one-call path only) writes crash-safe
    fragmented MP4 -- False writes a plain MP4 with its index at the front (``faststart``) and
    edit lists, for outputs that are written under a temporary name anyway (de-identification):
    tracks that start before 0 (AAC priming in copied audio) then keep every timestamp exactly.
    A plain MP4 needs a file path. Thread safety: one thread encodes; ``stats()`` from any.
    """

    codec: ClassVar[str] = ""

    gop_seconds: float = attrs.field(default=1.0, converter=float, validator=_positive_number)
    bitrate: int | None = attrs.field(default=None, validator=_positive_number)
    threads: int = attrs.field(default=0, converter=int)
    audio_bitrate: int = attrs.field(default=128_000, converter=int, validator=_positive_number)
    codec_options: Mapping[str, str] = attrs.field(factory=dict)
    fragmented: bool = attrs.field(default=True, validator=lambda _, a, v: _need_bool(a.name, v))

    target: Any = attrs.field(default=None, init=False)
    _label_text: str = attrs.field(default="<no output>", init=False, alias="_label_text")
    _video: Any = attrs.field(default=None, init=False, alias="_video")  # av.CodecContext
    _audio: Any = attrs.field(default=None, init=False, alias="_audio")  # av.CodecContext (AAC)
    _streams: tuple[StreamSpec, ...] = attrs.field(default=(), init=False, alias="_streams")
    _output: EncodedOutput | None = attrs.field(default=None, init=False, alias="_output")
    _time_base: Fraction = attrs.field(default=DEFAULT_TIME_BASE, init=False, alias="_time_base")
    _frame_units: int = attrs.field(default=1, init=False, alias="_frame_units")
    _width: int = attrs.field(default=0, init=False, alias="_width")
    _height: int = attrs.field(default=0, init=False, alias="_height")
    _audio_rate: int = attrs.field(default=0, init=False, alias="_audio_rate")
    _audio_layout: str = attrs.field(default="mono", init=False, alias="_audio_layout")
    _audio_next: int | None = attrs.field(default=None, init=False, alias="_audio_next")
    _last_pts: int | None = attrs.field(default=None, init=False, alias="_last_pts")
    _failed: EncoderError | None = attrs.field(default=None, init=False, alias="_failed")
    _flushed: bool = attrs.field(default=False, init=False, alias="_flushed")
    _closed: bool = attrs.field(default=False, init=False, alias="_closed")
    _counts: dict[str, int] = attrs.field(factory=dict, init=False, alias="_counts")

    # -- subclass API ---------------------------------------------------------------------------
    def _video_options(self) -> dict[str, str]:
        """FFmpeg codec options of the video encoder (strings).

        B-frames are off (``bf=0``): in fragmented MP4 (no edit list) each track starts at its
        first decode time, so reordering delay would shift the picture against the sound.
        """
        return {"bf": "0", **{str(k): str(v) for k, v in self.codec_options.items()}}

    def _configure_video(self, ctx: Any) -> None:
        """Set codec-context fields (profile ...) before the encoder opens."""

    # -- packet API -----------------------------------------------------------------------------
    @property
    def time_base(self) -> Fraction:
        """Video time base in seconds per pts unit."""
        return self._time_base

    @property
    def name(self) -> str:
        return self.codec

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        """The open codecs' streams (video first), empty before :meth:`open_codecs`."""
        return self._streams

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
        """Open the video codec (and AAC when ``audio_rate`` is given); returns their specs.
        ``label`` names the output in error messages."""
        import av

        if self._video is not None:
            raise EncoderError(f"{self.codec} encoder: already open on {self._label()}")
        if label is not None:
            self._label_text = label
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EncoderError(f"{self.codec} encoder: size {width}x{height} must be positive and even (yuv420p)")
        self._width, self._height = int(width), int(height)
        try:
            rate = parse_rate(fps, "fps")
        except ValueError as exc:
            raise EncoderError(f"{self.codec} encoder: {exc}") from None
        self._time_base = Fraction(time_base) if time_base is not None else DEFAULT_TIME_BASE
        self._frame_units = max(1, round(1 / (rate * self._time_base)))
        global_header = av.codec.context.Flags.global_header  # headers in the StreamSpec (MP4 wants them there)
        try:
            ctx = av.CodecContext.create(self.codec, "w")
            ctx.width, ctx.height, ctx.pix_fmt = self._width, self._height, "yuv420p"
            ctx.time_base = self._time_base
            ctx.framerate = rate
            ctx.gop_size = max(1, round(float(rate) * self.gop_seconds))
            ctx.flags |= global_header
            if self.bitrate:
                ctx.bit_rate = int(self.bitrate)
            if self.threads:
                ctx.thread_count = self.threads
            self._configure_video(ctx)
            ctx.options = self._video_options()
            ctx.open()  # fail now (bad option, no hardware), not at the first frame
            specs = [StreamSpec("video", self.codec, self._time_base, bytes(ctx.extradata or b""), self._width, self._height,
                                "yuv420p", rate, bit_rate=int(self.bitrate or 0))]
            actx = None
            if audio_rate:
                self._audio_rate = int(audio_rate)
                self._audio_layout = channel_layout(audio_channels)
                actx = av.CodecContext.create("aac", "w")
                actx.sample_rate, actx.layout, actx.format = self._audio_rate, self._audio_layout, "fltp"
                actx.bit_rate = self.audio_bitrate
                actx.time_base = Fraction(1, self._audio_rate)
                actx.flags |= global_header
                actx.open()
                specs.append(StreamSpec("audio", "aac", Fraction(1, self._audio_rate), bytes(actx.extradata or b""),
                                        sample_rate=self._audio_rate, channels=int(audio_channels), frame_size=actx.frame_size,
                                        bit_rate=self.audio_bitrate))
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise EncoderError(f"{self.codec} encoder: cannot open for {self._label()}: {describe_os_error(exc)}") from exc
        self._video, self._audio, self._streams = ctx, actx, tuple(specs)
        self._counts = {"video_frames": 0, "audio_samples": 0, "audio_packets_copied": 0, "audio_gap_samples": 0,
                        "audio_trimmed_samples": 0, "keyframes": 0}
        log.debug("%s: encoding %dx%d @ %s fps for %s", self.codec, width, height, rate, self._label())
        return self._streams

    def encode(self, frame: Any, time_ns: int) -> list[Packet]:
        """Encode a picture (``av.VideoFrame`` any format/size, or ``HxWx3 uint8`` RGB) shown at
        ``time_ns``; returns the packets the codec released (possibly none yet).

        Raises :class:`EncoderError` when ``time_ns`` does not increase (after conversion to
        ``time_base``) or the codec fails (which stops the encoder)."""
        import av

        self._check_codecs()
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if frame.format.name != "yuv420p" or frame.width != self._width or frame.height != self._height:
            frame = frame.reformat(self._width, self._height, format="yuv420p")
        pts = round(Fraction(int(time_ns), NS) / self._time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            raise EncoderError(
                f"{self.codec} encoder ({self._label()}): video time {time_ns} ns gives pts {pts}, not after the previous pts "
                f"{self._last_pts} in time base {self._time_base}; pass increasing timestamps or a finer time_base"
            )
        if self._last_pts is None and pts != 0:
            log.warning("%s: first video frame at %d ns, not 0: the MP4 track will start at 0 (shifted)", self.codec, time_ns)
        frame.pts, frame.time_base = pts, self._time_base
        self._last_pts = pts
        out = self._packets("video", self._encode(self._video, frame, "encoding video"))
        self._counts["video_frames"] += 1
        return out

    def encode_audio(self, samples: np.ndarray, time_ns: int) -> list[Packet]:
        """Encode float32 planar audio ``(channels, n)`` whose first sample plays at ``time_ns``.

        Audio is kept contiguous from time 0: a chunk that starts after the expected position is
        preceded by silence; one that overlaps what was written loses its overlapping samples
        (both counted in ``stats()``).
        """
        import av

        self._check_codecs()
        if self._audio is None:
            raise EncoderError(f"{self.codec} encoder ({self._label()}): no audio encoder; open with audio_rate=... first")
        samples = np.asarray(samples, dtype=np.float32)
        channels = self._audio.channels
        if samples.ndim != 2 or samples.shape[0] != channels:
            raise EncoderError(f"{self.codec} encoder: audio must be float32 shaped ({channels}, n), got {samples.shape}")
        start = round(int(time_ns) * self._audio_rate / NS)
        if self._audio_next is None:
            # The track plays from its first packet, which holds the AAC encoder's priming
            # samples; feeding from sample AAC_PRIMING puts input sample s at file sample s.
            self._audio_next = AAC_PRIMING
            if start < AAC_PRIMING:  # the priming span plays as silence; not counted as trimmed
                cut = min(AAC_PRIMING - start, samples.shape[1])
                samples, start = samples[:, cut:], start + cut
        offset = start - self._audio_next
        if offset > 0:
            samples = np.concatenate([np.zeros((channels, offset), np.float32), samples], axis=1)
            self._counts["audio_gap_samples"] += offset
        elif offset < 0:
            cut = min(-offset, samples.shape[1])
            samples = samples[:, cut:]
            self._counts["audio_trimmed_samples"] += cut
        if samples.shape[1] == 0:
            return []
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self._audio_layout)
        af.sample_rate = self._audio_rate
        af.pts, af.time_base = self._audio_next, Fraction(1, self._audio_rate)
        self._audio_next += samples.shape[1]
        out = self._packets("audio", self._encode(self._audio, af, "encoding audio"))
        self._counts["audio_samples"] += samples.shape[1]
        return out

    def flush(self) -> list[Packet]:
        """The packets the codecs still hold (call once, after the last frame); afterwards
        ``encode`` is refused. Raises :class:`EncoderError` naming the output on a codec error."""
        self._check_codecs()
        self._flushed = True
        out = self._packets("video", self._encode(self._video, None, "flushing the video encoder"))
        if self._audio is not None:
            out += self._packets("audio", self._encode(self._audio, None, "flushing the audio encoder"))
        return out

    # -- one-call path (open_output ... close) ----------------------------------------------------
    def open_output(
        self,
        target: str | os.PathLike | IO[bytes],
        *,
        width: int = 1920,
        height: int = 1080,
        fps: float | Fraction = 30,
        time_base: Fraction | None = None,
        audio_rate: int | None = None,
        audio_channels: int = 1,
        audio_template: Any = None,
        metadata: Mapping[str, str] | None = None,
        rotation: float = 0.0,
    ) -> None:
        if self._output is not None or self._video is not None:
            raise EncoderError(f"{self.codec} encoder: already open on {self._label()}")
        self.target = target
        label = target_label(target)
        self.open_codecs(width=width, height=height, fps=fps, time_base=time_base,
                         audio_rate=None if audio_template is not None else audio_rate, audio_channels=audio_channels, label=label)
        out = EncodedOutput(self, Mp4Muxer(target, fragmented=self.fragmented, metadata=dict(metadata or {}), rotation=rotation,
                                           audio_template=audio_template, name=f"{self.codec} encoder"))
        try:
            out.open()
        except BaseException:
            self._release()
            raise
        self._output = out

    def write_video(self, frame: Any, time_ns: int) -> None:
        """Encode and write a picture shown at ``time_ns`` (see :meth:`encode`). A write error
        (a full disk) stops the encoder; what was written before stays playable."""
        self._out().write_video(frame, time_ns)

    def write_audio(self, samples: np.ndarray, time_ns: int) -> None:
        """Encode and write float32 planar audio ``(channels, n)`` (see :meth:`encode_audio`)."""
        self._out().write_audio(samples, time_ns)

    def copy_audio(self, packet: Any) -> None:
        """Write an ``av.Packet`` of ``audio_template``'s stream unchanged (its own time base is kept)."""
        out = self._out()
        if self._audio is not None or out.muxer.audio_template is None:
            raise EncoderError(f"{self.codec} encoder ({self._label()}): copy_audio needs open_output(audio_template=stream)")
        out.copy_audio(packet)
        if not (packet.dts is None and packet.size == 0):
            self._counts["audio_packets_copied"] += 1

    def close(self) -> None:
        """Flush the codecs, finish the one-call output (if open) and release everything. Safe
        to call twice and after an error. Raises :class:`EncoderError` naming the output when
        flushing or finishing fails (the output is closed in any case)."""
        if self._closed:
            return
        self._closed = True
        out = self._output  # kept: size_bytes and failed stay readable
        try:
            if out is not None:
                out.close()
        finally:
            self._release()

    # -- introspection --------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int | None:
        """Bytes the one-call output wrote so far (``None`` on the packet path)."""
        out = self._output
        return None if out is None else out.muxer.size_bytes

    def stats(self) -> dict[str, Any]:
        err = self.failed
        return {**self._counts, "size_bytes": self.size_bytes, "error": str(err) if err else None}

    @property
    def failed(self) -> EncoderError | None:
        """The error that stopped the encoder (a codec error, a full disk ...), if any."""
        if self._failed is not None:
            return self._failed
        return None if self._output is None else self._output.failed

    # -- internals ------------------------------------------------------------------------------
    def _label(self) -> str:
        return self._label_text

    def _out(self) -> EncodedOutput:
        if self.failed is not None:
            raise self.failed
        if self._output is None or self._closed:
            raise EncoderError(f"{self.codec} encoder ({self._label()}) is closed" if self._closed
                               else f"{self.codec} encoder: not open; call open_output(...) first")
        return self._output

    def _check_codecs(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._video is None or self._flushed:
            raise EncoderError(f"{self.codec} encoder ({self._label()}) is closed" if (self._closed or self._flushed)
                               else f"{self.codec} encoder: not open; call open_codecs(...) or open_output(...) first")

    def _packets(self, stream: str, raw: list[Any]) -> list[Packet]:
        out = []
        for p in raw:
            key = bool(p.is_keyframe)
            if stream == "video" and key:
                self._counts["keyframes"] = self._counts.get("keyframes", 0) + 1
            duration = p.duration or (self._frame_units if stream == "video" else 0)
            out.append(Packet(stream, bytes(p), int(p.pts), None if p.dts is None else int(p.dts), int(duration or 0),
                              Fraction(p.time_base), key))
        return out

    def _error(self, doing: str, exc: BaseException) -> EncoderError:
        full = getattr(exc, "errno", None) == errno.ENOSPC
        err = EncoderError(
            f"{self.codec} encoder: writing {self._label()} failed while {doing}: {describe_os_error(exc)}. "
            "The recording was stopped; everything written before is playable. "
            + ("Free space or choose another output." if full else "Check the output's disk and the encoder options.")
        )
        err.__cause__ = exc
        return err

    def _encode(self, ctx: Any, frame: Any, doing: str) -> list[Any]:
        """``ctx.encode(frame)``; an FFmpeg error stops the encoder as an :class:`EncoderError`."""
        import av

        try:
            return ctx.encode(frame)
        except (OSError, av.FFmpegError) as exc:
            self._failed = self._error(doing, exc)
            log.error("%s", self._failed)
            raise self._failed from exc

    def _release(self) -> None:
        self._video = self._audio = None
        self._closed = True


@attrs.define(eq=False)
class X264Encoder(PyAVEncoder):
    """``libx264`` H.264 + AAC in fragmented MP4 (``surgbox.interfaces.Encoder``).

    ``preset`` x264 speed preset; ``crf`` constant quality (0-51, lower is better; ignored when
    ``bitrate`` is set, which selects ABR with ``maxrate = bitrate`` and a 2 s buffer);
    ``profile`` H.264 profile (``high``, ``main``, ``baseline``); ``tune`` optional x264 tune;
    ``x264_params`` raw ``key=value:...`` string; ``sliced_threads`` encode each frame whole inside
    ``encode()`` with slice threads (no frame delay, but the recorder's tick thread waits for it);
    the default, frame threads, overlaps a frame's encoding with the next ticks: packets come out
    a few frames later and, called at 30 fps, ``encode()`` waits about 0.4x as long per 1080p
    frame (``surgbox demo``'s tick: 13 ms instead of 20 ms; ``benchmarks/bench_record.py``), which
    keeps a 2-core recorder live beside other busy processes.
    """

    codec: ClassVar[str] = "libx264"

    preset: str = attrs.field(default="veryfast", kw_only=True)
    crf: float = attrs.field(default=23, kw_only=True, validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(51)))
    profile: str = attrs.field(default="high", kw_only=True)
    tune: str | None = attrs.field(default=None, kw_only=True)
    x264_params: str | None = attrs.field(default=None, kw_only=True)
    sliced_threads: bool = attrs.field(default=False, kw_only=True, validator=lambda _, a, v: _need_bool(a.name, v))

    def _configure_video(self, ctx: Any) -> None:
        ctx.thread_type = "SLICE" if self.sliced_threads else "FRAME"  # PyAV's default is SLICE

    def _video_options(self) -> dict[str, str]:
        # sc_threshold 0: no scene-cut keyframes, so every fragment is exactly one GOP
        opts = {"preset": self.preset, "profile": self.profile, "sc_threshold": "0"}
        if self.bitrate:
            opts["maxrate"] = str(int(self.bitrate))
            opts["bufsize"] = str(int(self.bitrate) * 2)
        else:
            opts["crf"] = f"{self.crf:g}"
        if self.tune:
            opts["tune"] = self.tune
        if self.x264_params:
            opts["x264-params"] = self.x264_params
        opts.update(super()._video_options())
        return opts
