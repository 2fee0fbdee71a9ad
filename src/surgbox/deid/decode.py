"""The decode stage: open the input, choose its streams, demux and decode on a thread, and
tell afterwards whether the input was complete.

The first video stream is de-identified and the first audio stream is copied packet by
packet. Any other stream (a second camera angle, a cover picture, a timecode or data track,
more audio) is refused or dropped as ``extra_streams`` says, never dropped silently: a second
picture would leave the run without being de-identified. Pictures come out as yuv420p
``av.VideoFrame`` s of even size (other formats are converted, odd sizes padded).

Which decoder makes the pictures -- PyAV in software, PyAV on NVDEC, or GStreamer -- is
chosen by :mod:`surgbox.deid.decoders` (``decoder`` option). PyAV always demuxes: audio
packets, packet counts and truncation checks are the same whichever decoder runs.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import IO, Any

import attrs

from ..errors import ConfigError, DeidError
from .anonymize import frame_planes
from .bmff import BoxScan, scan_boxes
from .decoders import DecoderChoice, choose, confirm, gst_reader, open_container
from .handoff import END, Failure, Item, put
from .result import RunStats
from .timing import StageTimes

WAIT = "queue wait (decode)"


def source_name(src: Any) -> str:
    """A printable name for a path or file object."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return str(getattr(src, "name", None) or f"<{type(src).__name__}>")


def describe_stream(s: Any) -> str:
    """``"#2 video h264 640x480"`` / ``"#3 data (tmcd)"`` for an ``av`` stream."""
    codec = getattr(getattr(s, "codec_context", None), "name", None) or getattr(s, "codec_tag", "") or "?"
    text = f"#{s.index} {s.type} {codec}"
    if s.type == "video":
        ctx = s.codec_context
        text += f" {ctx.width}x{ctx.height}"
        if "attached_pic" in str(getattr(s, "disposition", "")):
            text += " (attached picture)"
    return text


@attrs.define(eq=False)
class InputVideo:
    """An opened input: the ``container``, its ``video`` stream, the ``audio`` stream copied
    (or ``None``), the streams left out (``dropped``), the box walk of an MP4 (``scan``) and
    the ``decoder`` that decodes its pictures (updated after the first picture)."""

    name: str
    path: str | None
    container: Any
    video: Any
    audio: Any
    dropped: list[str]
    scan: BoxScan | None
    decoder: DecoderChoice = DecoderChoice("pyav", "software", "default")

    @classmethod
    def open(cls, src: str | os.PathLike | IO[bytes], name: str, extra_streams: str = "refuse",
             decoder: str = "auto") -> InputVideo:
        """Open ``src`` (a path or a readable, seekable binary file object) for the ``decoder``
        (one of :data:`~surgbox.deid.decoders.DECODERS`); raises :class:`DeidError` for what
        cannot be read and :class:`ConfigError` for extra streams with
        ``extra_streams="refuse"`` or a GStreamer decoder that cannot run."""
        import av

        path = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
        choice = choose(decoder, path=path)
        scan = _scan(path, src)
        try:
            container, choice = open_container(path if path is not None else src, choice)
        except FileNotFoundError:
            raise DeidError(f"input {name!r} does not exist; check the path") from None
        except PermissionError:
            raise DeidError(f"input {name!r} cannot be read (permission denied); check its permissions") from None
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DeidError(
                f"input {name!r} is not a readable video ({exc}); it may be corrupt, truncated or not a media file "
                f"(check it with ffprobe)"
            ) from None
        try:
            if not container.streams.video:
                raise DeidError(f"input {name!r} has no video stream; give a video file")
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            as_ = container.streams.audio[0] if container.streams.audio else None
            extras = [describe_stream(s) for s in container.streams if s is not vs and s is not as_]
            if extras and extra_streams == "refuse":
                raise ConfigError(
                    f"input {name!r} has {len(extras)} stream(s) besides the video and the audio it de-identifies "
                    f"and copies: {', '.join(extras)}; a second picture would leave without being de-identified, so "
                    f"nothing is dropped silently: pass --extra-streams drop (extra_streams='drop') to leave them out"
                )
            width, height = vs.codec_context.width, vs.codec_context.height
            if width < 1 or height < 1:
                raise DeidError(f"input {name!r}: video stream has no picture size; is the file complete? (check with ffprobe)")
            if choice.backend == "gstreamer" and (vs.codec_context.name != "h264" or not _is_mp4(container)):
                raise ConfigError(f"input {name!r} is {vs.codec_context.name} in {container.format.name}: the GStreamer "
                                  f"decoder reads H.264 in MP4/MOV only; use --decoder pyav")
        except BaseException:
            container.close()
            raise
        return cls(name, path, container, vs, as_, extras, scan, choice)

    @property
    def width(self) -> int:
        return self.video.codec_context.width

    @property
    def height(self) -> int:
        return self.video.codec_context.height

    @property
    def time_base(self) -> Fraction:
        return self.video.time_base

    @property
    def fps(self) -> Fraction:
        vs = self.video
        return vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(30)

    @property
    def claimed_duration(self) -> float | None:
        """Seconds of video the container says it holds (``None`` when it does not say)."""
        vs = self.video
        return float(vs.duration * vs.time_base) if vs.duration else None

    @property
    def total(self) -> int | None:
        """Frames expected (the index's count, else from the claimed duration)."""
        d = self.claimed_duration
        return self.video.frames or (int(d * float(self.fps)) if d else None)

    @property
    def metadata(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.container.metadata.items()}

    def close(self) -> None:
        self.container.close()

    def problem(self, stats: RunStats) -> str | None:
        """Why the input looks incomplete after decoding (``None`` when it does not): the file
        ends inside a box, a fragmented MP4 written by FFmpeg lacks its closing index, packets
        were cut off, or less video was read than the container claims."""
        reasons = []
        if self.scan is not None and self.scan.truncated is not None:
            reasons.append(self.scan.truncated.describe())
        elif self.scan is not None and self.scan.fragmented and not self.scan.has_mfra and self._written_by_ffmpeg():
            reasons.append("this fragmented MP4 lacks the closing fragment index ('mfra') its writer adds when it "
                           "finishes: the recording was not finished (a crash, or a copy cut at a fragment boundary)")
        if stats.corrupt_packets:
            reasons.append(f"{stats.corrupt_packets} video packet(s) were cut off or corrupt")
        claim, read = self.claimed_duration, self.read_duration(stats)
        if claim and read is not None and read + 1.5 / float(self.fps) < claim:
            reasons.append(f"its video stream claims {claim:.2f} s but {read:.2f} s could be read")
        return "; ".join(reasons) or None

    def read_duration(self, stats: RunStats) -> float | None:
        """Seconds of video decoded, measured like the container's claim (from the stream's start)."""
        if stats.last_time is None:
            return None
        start = self.video.start_time
        return stats.last_time - (float(start * self.video.time_base) if start is not None else 0.0)

    def info(self, stats: RunStats) -> dict[str, Any]:
        """What was read against what the container claims (the report's ``input``)."""
        return {"frames_read": stats.decoded, "video_packets": stats.video_packets,
                "frames_declared": self.video.frames or None,
                "duration_read_s": None if self.read_duration(stats) is None else round(self.read_duration(stats), 3),
                "duration_declared_s": None if self.claimed_duration is None else round(self.claimed_duration, 3),
                "corrupt_packets": stats.corrupt_packets, "dropped_streams": list(self.dropped),
                "problem": self.problem(stats)}

    def _written_by_ffmpeg(self) -> bool:
        return str(self.container.metadata.get("encoder", "")).startswith("Lavf")


def _is_mp4(container: Any) -> bool:
    return bool({"mov", "mp4"} & set(container.format.name.split(",")))


def _scan(path: str | None, src: Any) -> BoxScan | None:
    if path is not None:
        try:
            with open(path, "rb") as f:
                return scan_boxes(f)
        except OSError:
            return None  # av.open says what is wrong
    seekable = getattr(src, "seekable", None)
    return scan_boxes(src) if callable(seekable) and seekable() else None


@attrs.define(eq=False)
class DecodeStage:
    """Demux and decode ``inp`` into ``Item`` s on queue ``q`` (run on its own thread)."""

    inp: InputVideo
    stop: threading.Event
    times: StageTimes
    stats: RunStats
    first_index: int = 0  # number of the first decoded picture (a segment of a longer recording)
    _tail_audio: list = attrs.field(factory=list, init=False, alias="_tail_audio")  # audio after the last picture

    def run(self, q: queue.Queue) -> None:
        import av

        inp, stats = self.inp, self.stats
        index = self.first_index
        tb = inp.video.time_base
        gst = inp.decoder.backend == "gstreamer"
        try:
            t0 = time.perf_counter()
            for frame, audio in (self._gst_pictures() if gst else self._pyav_pictures()):
                if self.stop.is_set():
                    return
                if index == self.first_index:
                    inp.decoder = confirm(inp.decoder, frame)
                if frame.format.name not in ("yuv420p", "yuvj420p") or frame.width % 2 or frame.height % 2:
                    frame = to_yuv420p(frame, stats)
                frame.pict_type = 0  # let the encoder choose frame types
                if frame.pts is not None:
                    t = float(frame.pts * tb)
                    dur = float(frame.duration * tb) if getattr(frame, "duration", None) else 1 / float(inp.fps)
                    stats.last_time = t + dur
                item = Item(index, frame, audio)
                index += 1
                stats.decoded += 1
                self.times.add("decode", time.perf_counter() - t0)
                if not put(q, item, self.stop, self.times, WAIT):
                    return
                t0 = time.perf_counter()
            if self.stop.is_set():
                return
            put(q, Item(-1, None, self._tail_audio), self.stop, self.times, WAIT)
            put(q, END, self.stop, self.times, WAIT)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            if isinstance(exc, av.FFmpegError):
                exc = DeidError(f"input {inp.name!r} could not be decoded at frame {index} ({exc}); it may be corrupt or truncated")
            put(q, Failure(exc), self.stop, self.times, WAIT)

    def _packets(self) -> Iterator[Any]:
        """The input's video and audio packets in file order; counts video packets (and corrupt ones)."""
        inp, stats = self.inp, self.stats
        streams = [inp.video] + ([inp.audio] if inp.audio is not None else [])
        for packet in inp.container.demux(streams):
            if packet.stream.type == "video" and packet.size:
                stats.video_packets += 1
                stats.corrupt_packets += bool(packet.is_corrupt)
            yield packet

    def _pyav_pictures(self) -> Iterator[tuple[Any, list]]:
        """``(picture, audio packets before it)`` decoded by PyAV (software or NVDEC)."""
        import av

        inp, stats = self.inp, self.stats
        audio: list = []
        cut_at = inp.scan.truncated.offset if inp.scan is not None and inp.scan.truncated is not None else None
        for packet in self._packets():
            if packet.stream.type == "audio":
                if packet.size:
                    audio.append(packet)
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                if cut_at is not None and (packet.pos is None or packet.pos >= cut_at):
                    stats.corrupt_packets += packet.size > 0  # the cut-off end of a truncated file
                    continue
                raise DeidError(f"input {inp.name!r} is corrupt near frame {self.first_index + stats.decoded} ({exc}); repair or re-copy it") from None
            for frame in frames:
                yield frame, audio
                audio = []
        self._tail_audio = audio

    def _gst_pictures(self) -> Iterator[tuple[Any, list]]:
        """``(picture, audio packets before it)`` with pictures decoded by GStreamer; PyAV's demuxer
        runs alongside, up to the picture's packet, for the audio and the packet counts."""
        inp = self.inp
        assert inp.path is not None
        packets = self._packets()
        audio: list = []
        seen = 0
        reader = gst_reader(inp.path, inp.video.time_base, inp.decoder.mode, inp.name)
        try:
            for n, frame in enumerate(reader.frames()):
                while seen <= n:  # demux up to the n-th video packet: the audio that plays before it
                    packet = next(packets, None)
                    if packet is None:
                        break
                    if packet.stream.type == "audio":
                        if packet.size:
                            audio.append(packet)
                    elif packet.size:
                        seen += 1
                        self._check_shown(packet)
                yield frame, audio
                audio = []
        finally:
            reader.close()
        for packet in packets:
            if packet.stream.type == "audio" and packet.size:
                audio.append(packet)
            elif packet.size:
                self._check_shown(packet)
        held, cut = self.stats.video_packets, self.stats.corrupt_packets  # a cut-off packet may or may not decode
        if not held - cut <= reader.frames_out <= held:
            raise DeidError(f"input {inp.name!r}: GStreamer decoded {reader.frames_out} pictures where the file holds "
                            f"{held}; use --decoder pyav")
        self._tail_audio = audio

    def _check_shown(self, packet: Any) -> None:
        """An edit list that hides pictures (``ffmpeg -ss ... -c copy``) is placed differently by
        GStreamer's ``qtdemux`` than by FFmpeg: refused rather than decoded to other frames."""
        if packet.is_discard:
            raise DeidError(f"input {self.inp.name!r} has an edit list that hides pictures (a copy cut with -c copy), "
                            "which GStreamer's qtdemux places differently from FFmpeg: its frames and times would not "
                            "match; use --decoder pyav")


def to_yuv420p(frame: Any, stats: RunStats) -> Any:
    """A frame in another pixel format converted to yuv420p; an odd size padded to even (last
    row/column repeated, since 4:2:0 H.264 cannot code odd sizes), with a warning."""
    import av

    w, h = frame.width, frame.height
    out = frame.reformat(format="yuv420p") if frame.format.name not in ("yuv420p", "yuvj420p") else frame
    if w % 2 == 0 and h % 2 == 0:
        return out
    ew, eh = w + (w & 1), h + (h & 1)
    stats.warn(f"odd picture size {w}x{h} padded to {ew}x{eh} (4:2:0 needs even sizes; last row/column repeated)")
    src = frame_planes(out, writable=False)
    padded = av.VideoFrame(ew, eh, "yuv420p")
    for s, d in zip(src, frame_planes(padded)):
        d[: s.shape[0], : s.shape[1]] = s
        d[s.shape[0]:, : s.shape[1]] = s[-1:, :]
        d[:, s.shape[1]:] = d[:, s.shape[1] - 1: s.shape[1]]
    padded.pts, padded.time_base = frame.pts, frame.time_base
    padded.color_range, padded.colorspace = out.color_range, out.colorspace
    return padded
