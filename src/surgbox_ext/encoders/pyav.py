"""H.264 + AAC encoders on PyAV, written as crash-safe fragmented MP4.

The container is MP4 with ``movflags=frag_keyframe+empty_moov+default_base_moof``: the header
(``moov``) is written first and every keyframe starts a new self-contained fragment
(``moof`` + ``mdat``). With a GOP of ``gop_seconds`` (1 s by default) a ``kill -9`` or power loss
loses at most the fragment being written; every completed second stays playable. The format
never seeks, so the output may be a path or any writable binary file object (a pipe, an
encrypting writer).

Time: ``write_video(frame, time_ns)`` / ``write_audio(samples, time_ns)`` take nanoseconds on
the output time line (0 = first frame). A fragmented MP4 has no edit list, so each track plays
from its first packet: the first video frame must be at ``time_ns=0`` (later ones keep their
exact times), B-frames are off, and audio always starts at 0 (silence fills up to the first
chunk; the AAC priming delay is compensated so input sample ``s`` decodes as file sample ``s``). Video ``pts = round(time_ns / 1e9 / time_base)`` with
``time_base`` as passed to :meth:`PyAVEncoder.open_output` (default ``1/90000`` s); audio pts
count samples at ``audio_rate``.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import IO, Any, ClassVar

import attrs
import numpy as np

from surgbox.errors import EncoderError
from surgbox.interfaces import Encoder
from surgbox.types import parse_rate

log = logging.getLogger(__name__)

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+use_metadata_tags"
PLAIN_MOVFLAGS = "faststart+use_metadata_tags"
DEFAULT_TIME_BASE = Fraction(1, 90000)
AAC_PRIMING = 1024  # FFmpeg's AAC encoder delay (initial_padding), in samples
NS = 1_000_000_000


def _positive_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"encoder option {attribute.name} must be > 0, got {value!r}")


class _CountingWriter(io.RawIOBase):
    """Non-seekable raw writer around a caller's file object that counts bytes written."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.written = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: Any) -> int:
        n = self.raw.write(b)
        n = len(b) if n is None else n
        self.written += n
        return n

    def flush(self) -> None:
        self.raw.flush()


def _describe(exc: BaseException) -> str:
    err = getattr(exc, "errno", None)
    if err == errno.ENOSPC:
        return "the disk is full (No space left on device)"
    return f"{type(exc).__name__}: {exc}"


@attrs.define(eq=False)
class PyAVEncoder(Encoder):
    """Base of the PyAV video encoders: fragmented MP4, video codec ``codec``, AAC audio.

    Options (all optional): ``gop_seconds`` keyframe interval (= fragment length, s);
    ``bitrate`` video bits/s (``None``: codec's quality mode); ``threads`` encoder threads
    (0 = codec default); ``audio_bitrate`` AAC bits/s; ``codec_options`` extra FFmpeg codec
    options as strings; ``fragmented`` (default True) writes crash-safe fragmented MP4 — False
    writes a plain MP4 with its index at the front (``faststart``) and edit lists, for outputs
    that are written under a temporary name anyway (de-identification): tracks that start before
    0 (AAC priming in copied audio) then keep every timestamp exactly. A plain MP4 needs a file
    path. Thread safety: one writer thread; ``stats()``/``size_bytes`` from any.
    """

    codec: ClassVar[str] = ""

    gop_seconds: float = attrs.field(default=1.0, converter=float, validator=_positive_number)
    bitrate: int | None = attrs.field(default=None, validator=_positive_number)
    threads: int = attrs.field(default=0, converter=int)
    audio_bitrate: int = attrs.field(default=128_000, converter=int, validator=_positive_number)
    codec_options: Mapping[str, str] = attrs.field(factory=dict)
    fragmented: bool = attrs.field(default=True, converter=bool)

    target: Any = attrs.field(default=None, init=False)
    _container: Any = attrs.field(default=None, init=False, alias="_container")
    _video: Any = attrs.field(default=None, init=False, alias="_video")
    _audio: Any = attrs.field(default=None, init=False, alias="_audio")
    _writer: _CountingWriter | None = attrs.field(default=None, init=False, alias="_writer")
    _time_base: Fraction = attrs.field(default=DEFAULT_TIME_BASE, init=False, alias="_time_base")
    _width: int = attrs.field(default=0, init=False, alias="_width")
    _height: int = attrs.field(default=0, init=False, alias="_height")
    _audio_rate: int = attrs.field(default=0, init=False, alias="_audio_rate")
    _audio_layout: str = attrs.field(default="mono", init=False, alias="_audio_layout")
    _audio_next: int | None = attrs.field(default=None, init=False, alias="_audio_next")
    _last_pts: int | None = attrs.field(default=None, init=False, alias="_last_pts")
    _failed: EncoderError | None = attrs.field(default=None, init=False, alias="_failed")
    _closed: bool = attrs.field(default=False, init=False, alias="_closed")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")
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

    # -- Encoder API ----------------------------------------------------------------------------
    @property
    def time_base(self) -> Fraction:
        """Video time base in seconds per pts unit."""
        return self._time_base

    @property
    def name(self) -> str:
        return self.codec

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
        import av

        if self._container is not None:
            raise EncoderError(f"{self.codec} encoder: already open on {self._label()}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EncoderError(f"{self.codec} encoder: size {width}x{height} must be positive and even (yuv420p)")
        self.target = target
        self._width, self._height = int(width), int(height)
        try:
            rate = parse_rate(fps, "fps")
        except ValueError as exc:
            raise EncoderError(f"{self.codec} encoder: {exc}") from None
        self._time_base = Fraction(time_base) if time_base is not None else DEFAULT_TIME_BASE
        # flush_packets: hand each finished fragment to the OS at once (not when a 32 KiB
        # buffer fills, which can take seconds for calm pictures)
        if self.fragmented:
            options = {"movflags": MOVFLAGS, "flush_packets": "1"}
        else:
            if not isinstance(target, (str, os.PathLike)):
                raise EncoderError(f"{self.codec} encoder: a plain (fragmented=False) MP4 is finished by seeking back; give a file path, not {self._label()}")
            options = {"movflags": PLAIN_MOVFLAGS}
        try:
            if isinstance(target, (str, os.PathLike)):
                container = av.open(os.fspath(target), "w", format="mp4", options=options)
            else:
                self._writer = _CountingWriter(target)
                container = av.open(self._writer, "w", format="mp4", options=options)
        except (OSError, av.FFmpegError) as exc:
            raise EncoderError(f"cannot create output {self._label()}: {_describe(exc)}; check the directory exists and is writable") from exc
        try:
            for k, v in (metadata or {}).items():
                container.metadata[str(k)] = str(v)
            vs = container.add_stream(self.codec, rate=rate)
            vs.width, vs.height, vs.pix_fmt = self._width, self._height, "yuv420p"
            ctx = vs.codec_context
            ctx.time_base = self._time_base
            ctx.framerate = rate
            ctx.gop_size = max(1, round(float(rate) * self.gop_seconds))
            if self.bitrate:
                ctx.bit_rate = int(self.bitrate)
            if self.threads:
                ctx.thread_count = self.threads
            self._configure_video(ctx)
            ctx.options = self._video_options()
            if rotation:
                vs.set_display_rotation(float(rotation))  # display matrix in the header (before start_encoding)
            self._video = vs
            if audio_template is not None:
                self._audio = container.add_stream_from_template(audio_template)
            elif audio_rate:
                self._audio_rate = int(audio_rate)
                self._audio_layout = {1: "mono", 2: "stereo"}.get(int(audio_channels), f"{int(audio_channels)}c")
                a = container.add_stream("aac", rate=self._audio_rate, layout=self._audio_layout)
                a.codec_context.bit_rate = self.audio_bitrate
                a.codec_context.time_base = Fraction(1, self._audio_rate)
                self._audio = a
            vs.codec_context.open()  # fail now (bad option, no hardware), not at the first frame
        except (OSError, ValueError, av.FFmpegError) as exc:
            self._abort(container)
            raise EncoderError(f"{self.codec} encoder: cannot open for {self._label()}: {_describe(exc)}") from exc
        try:
            container.start_encoding()  # opens the file and writes the (empty) moov header now
        except (OSError, av.FFmpegError) as exc:
            self._abort(container)
            raise EncoderError(
                f"cannot create output {self._label()}: {_describe(exc)}; check the directory exists and is writable"
            ) from exc
        self._container = container
        self._counts = {"video_frames": 0, "audio_samples": 0, "audio_packets_copied": 0, "audio_gap_samples": 0, "audio_trimmed_samples": 0, "keyframes": 0}
        log.debug("%s: writing %s %dx%d @ %s fps", self.codec, self._label(), width, height, rate)

    def write_video(self, frame: Any, time_ns: int) -> None:
        """Encode a picture (``av.VideoFrame`` any format/size, or ``HxWx3 uint8`` RGB) shown at ``time_ns``.

        Raises :class:`EncoderError` when ``time_ns`` does not increase (after conversion to
        ``time_base``) or the output fails (a full disk stops the encoder; what was written stays playable).
        """
        import av

        self._check_open()
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
        self._mux(self._encode(self._video, frame, "encoding video"))
        self._counts["video_frames"] += 1

    def write_audio(self, samples: np.ndarray, time_ns: int) -> None:
        """Encode float32 planar audio ``(channels, n)`` whose first sample plays at ``time_ns``.

        Audio is kept contiguous from time 0: a chunk that starts after the expected position is preceded
        by silence; one that overlaps what was written loses its overlapping samples (both
        counted in ``stats()``).
        """
        import av

        self._check_open()
        if self._audio is None or not self._audio_rate:
            raise EncoderError(f"{self.codec} encoder ({self._label()}): no audio encoder; open_output(audio_rate=...) first")
        samples = np.asarray(samples, dtype=np.float32)
        channels = self._audio.codec_context.channels
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
            return
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self._audio_layout)
        af.sample_rate = self._audio_rate
        af.pts, af.time_base = self._audio_next, Fraction(1, self._audio_rate)
        self._audio_next += samples.shape[1]
        self._mux(self._encode(self._audio, af, "encoding audio"))
        self._counts["audio_samples"] += samples.shape[1]

    def copy_audio(self, packet: Any) -> None:
        """Mux an ``av.Packet`` of ``audio_template``'s stream unchanged (its own time base is kept)."""
        self._check_open()
        if self._audio is None or self._audio_rate:
            raise EncoderError(f"{self.codec} encoder ({self._label()}): copy_audio needs open_output(audio_template=stream)")
        if packet.dts is None and packet.size == 0:
            return  # demuxer flush packet
        packet.stream = self._audio
        self._mux([packet])
        self._counts["audio_packets_copied"] += 1

    def close(self) -> None:
        """Flush the codecs and finish the container. Safe to call twice and after an error.

        Raises :class:`EncoderError` naming the output when flushing or finishing fails (an
        FFmpeg error of the codec included); the container is closed in any case."""
        if self._closed:
            return
        self._closed = True
        container, self._container = self._container, None
        if container is None:
            return
        err: BaseException | None = None
        if self._failed is None:
            try:
                if self._video is not None:
                    self._mux(self._encode(self._video, None, "flushing the video encoder", container), container)
                if self._audio is not None and self._audio_rate:
                    self._mux(self._encode(self._audio, None, "flushing the audio encoder", container), container)
            except EncoderError as exc:
                err = exc
        try:
            container.close()
        except Exception as exc:  # trailer write on a full disk: the fragments before stay playable
            if err is None and self._failed is None:
                err = self._error("finishing the file", exc)
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError as exc:
                if err is None and self._failed is None:
                    err = self._error("flushing the file", exc)
        if err is not None:
            raise err

    # -- introspection --------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int | None:
        """Bytes written so far (file size for a path target)."""
        if self._writer is not None:
            return self._writer.written
        if isinstance(self.target, (str, os.PathLike)):
            try:
                return os.path.getsize(self.target)
            except OSError:
                return None
        return None

    def stats(self) -> dict[str, Any]:
        return {**self._counts, "size_bytes": self.size_bytes, "error": str(self._failed) if self._failed else None}

    @property
    def failed(self) -> EncoderError | None:
        """The error that stopped the encoder (full disk ...), if any."""
        return self._failed

    # -- internals ------------------------------------------------------------------------------
    def _label(self) -> str:
        t = self.target
        if isinstance(t, (str, os.PathLike)):
            return repr(os.fspath(t))
        return getattr(t, "name", None) and repr(t.name) or f"<{type(t).__name__} file object>"

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._container is None:
            raise EncoderError(f"{self.codec} encoder: not open; call open_output(...) first" if not self._closed else f"{self.codec} encoder ({self._label()}) is closed")

    def _error(self, doing: str, exc: BaseException) -> EncoderError:
        full = getattr(exc, "errno", None) == errno.ENOSPC
        err = EncoderError(
            f"{self.codec} encoder: writing {self._label()} failed while {doing}: {_describe(exc)}. "
            "The recording was stopped; everything written before is playable. "
            + ("Free space or choose another output." if full else "Check the output's disk and the encoder options.")
        )
        err.__cause__ = exc
        return err

    def _encode(self, stream: Any, frame: Any, doing: str, container: Any = None) -> list[Any]:
        """``stream.encode(frame)``; an FFmpeg error stops the encoder as an :class:`EncoderError`."""
        import av

        try:
            return stream.encode(frame)
        except (OSError, av.FFmpegError) as exc:
            self._failed = self._error(doing, exc)
            log.error("%s", self._failed)
            if container is None:
                self._abort()
            raise self._failed from exc

    def _mux(self, packets: Any, container: Any = None) -> None:
        import av

        container = container or self._container
        try:
            for p in packets:
                if p.stream is self._video and p.is_keyframe:
                    self._counts["keyframes"] = self._counts.get("keyframes", 0) + 1
                container.mux(p)
        except (OSError, av.FFmpegError) as exc:
            self._failed = self._error("writing", exc)
            log.error("%s", self._failed)
            self._abort(container)
            raise self._failed from exc

    def _abort(self, container: Any = None) -> None:
        """Close the container after a write error without flushing more data."""
        c = container or self._container
        self._container = None
        self._closed = True
        if c is not None:
            try:
                c.close()
            except Exception:  # the disk is still full; the fragments before stay playable
                pass


@attrs.define(eq=False)
class X264Encoder(PyAVEncoder):
    """``libx264`` H.264 + AAC in fragmented MP4 (``surgbox.interfaces.Encoder``).

    ``preset`` x264 speed preset; ``crf`` constant quality (0-51, lower is better; ignored when
    ``bitrate`` is set, which selects ABR with ``maxrate = bitrate`` and a 2 s buffer);
    ``profile`` H.264 profile (``high``, ``main``, ``baseline``); ``tune`` optional x264 tune;
    ``x264_params`` raw ``key=value:...`` string.
    """

    codec: ClassVar[str] = "libx264"

    preset: str = attrs.field(default="veryfast", kw_only=True)
    crf: float = attrs.field(default=23, kw_only=True, validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(51)))
    profile: str = attrs.field(default="high", kw_only=True)
    tune: str | None = attrs.field(default=None, kw_only=True)
    x264_params: str | None = attrs.field(default=None, kw_only=True)

    def _video_options(self) -> dict[str, str]:
        opts = {"preset": self.preset, "profile": self.profile}
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


@attrs.define(eq=False)
class NvencEncoder(PyAVEncoder):
    """``h264_nvenc``: H.264 on an NVIDIA GPU's NVENC + AAC, same container and contract.

    ``preset`` NVENC preset (``p1`` fastest ... ``p7`` best); ``cq`` constant quality
    (ignored when ``bitrate`` is set); ``profile`` H.264 profile; ``gpu`` device index.
    """

    codec: ClassVar[str] = "h264_nvenc"

    preset: str = attrs.field(default="p4", kw_only=True)
    cq: int = attrs.field(default=23, kw_only=True)
    profile: str = attrs.field(default="high", kw_only=True)
    gpu: int = attrs.field(default=0, kw_only=True)

    def _video_options(self) -> dict[str, str]:
        opts = {"preset": self.preset, "profile": self.profile, "gpu": str(self.gpu)}
        if self.bitrate:
            opts["rc"] = "cbr"
        else:
            opts["rc"] = "vbr"
            opts["cq"] = str(self.cq)
        opts.update(super()._video_options())
        return opts


_nvenc_reason: list[str | None] = []


def nvenc_check() -> str | None:
    """``None`` when an ``h264_nvenc`` encoder opens here, else why not (result cached)."""
    if _nvenc_reason:
        return _nvenc_reason[0]
    reason: str | None = None
    try:
        import av

        if "h264_nvenc" not in av.codecs_available:
            reason = "this FFmpeg build has no h264_nvenc encoder; install an FFmpeg/PyAV built with NVENC"
        else:
            ctx = av.CodecContext.create("h264_nvenc", "w")
            ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
            ctx.time_base = Fraction(1, 30)
            ctx.open()
            del ctx
    except Exception as exc:
        reason = (
            f"NVENC could not open ({type(exc).__name__}: {exc}); it needs an NVIDIA GPU with NVENC "
            "and its driver (libnvidia-encode); use encoder 'libx264' instead"
        )
    _nvenc_reason.append(reason)
    return reason
