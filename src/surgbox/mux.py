"""MP4 muxing of encoded :class:`~surgbox.packets.Packet` s, with a report per finished fragment.

:class:`Mp4Muxer` is a :class:`~surgbox.packets.PacketConsumer`. Fragmented (the default) it
writes ``movflags=frag_keyframe+empty_moov+default_base_moof``: the header (``ftyp`` +
``moov``) first, then one self-contained fragment (``moof`` + ``mdat``) per video keyframe,
handed to the OS as soon as it is complete. It watches the bytes it writes (top-level MP4
boxes) and calls ``on_fragment(FragmentInfo)`` for every finished fragment with its byte range
and its video time range, so a crash loses at most the fragment being written and an upload or
a live preview can take fragments as they finish. ``fragmented=False`` writes a plain MP4 with
its index in front (``faststart``) and edit lists, for outputs written under a temporary name
(de-identification); it needs a path and reports no fragments.

:class:`EncodedOutput` is the one-call path on top of it -- an encoder's packet API plus a
muxer -- that gives an :class:`~surgbox.interfaces.Encoder` its ``open_output`` /
``write_video`` / ``write_audio`` / ``copy_audio`` / ``close``.

PyAV (FFmpeg) is imported when a muxer opens, not when this module is imported.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import attrs

from .errors import EncoderError
from .packets import NS_PER_S, FragmentInfo, Packet, StreamSpec

log = logging.getLogger(__name__)

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+use_metadata_tags"
PLAIN_MOVFLAGS = "faststart+use_metadata_tags"


def describe_os_error(exc: BaseException) -> str:
    """``the disk is full (...)`` for ENOSPC, else ``Type: message``."""
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return "the disk is full (No space left on device)"
    return f"{type(exc).__name__}: {exc}"


def target_label(target: Any) -> str:
    """A path's repr, a file object's name, or ``<Type file object>``."""
    if isinstance(target, (str, os.PathLike)):
        return repr(os.fspath(target))
    name = getattr(target, "name", None)
    return repr(name) if isinstance(name, str) and name else f"<{type(target).__name__} file object>"


class _BoxWriter(io.RawIOBase):
    """Non-seekable writer around ``raw`` that counts bytes and follows the top-level MP4 boxes
    written through it: ``on_box(type, start, end)`` runs when a box's last byte has passed."""

    def __init__(self, raw: IO[bytes], on_box: Callable[[bytes, int, int], None]):
        self.raw, self.on_box = raw, on_box
        self.written = 0
        self._start = 0  # offset of the box being written
        self._end: int | None = None  # its end, once its header was seen
        self._head = bytearray()
        self._type = b""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: Any) -> int:
        n = self.raw.write(b)
        n = len(b) if n is None else n
        self._follow(memoryview(b)[:n])
        return n

    def flush(self) -> None:
        self.raw.flush()

    def _follow(self, view: memoryview) -> None:
        while view:
            if self._end is None:  # collecting a box header (8 bytes, 16 with a 64-bit size)
                need = (16 if len(self._head) >= 8 and struct.unpack(">I", self._head[:4])[0] == 1 else 8) - len(self._head)
                take = min(need, len(view))
                self._head += view[:take]
                view = view[take:]
                self.written += take
                if len(self._head) == 8 and struct.unpack(">I", self._head[:4])[0] == 1:
                    continue
                if len(self._head) in (8, 16):
                    size, self._type = struct.unpack(">I4s", self._head[:8])
                    if size == 1:
                        size = struct.unpack(">Q", self._head[8:16])[0]
                    self._end = self._start + size if size >= len(self._head) else -1  # 0: to the end of the file
                    self._head.clear()
                    self._check_done()
                continue
            if self._end < 0:
                self.written += len(view)
                return
            take = min(self._end - self.written, len(view))
            view = view[take:]
            self.written += take
            self._check_done()

    def _check_done(self) -> None:
        if self._end is not None and self._end >= 0 and self.written >= self._end:
            start, end, kind = self._start, self._end, self._type
            self._start, self._end = end, None
            self.on_box(kind, start, end)


@attrs.define(eq=False)
class Mp4Muxer:
    """Writes packets into an MP4 at ``target`` (a path, or a writable binary file object:
    never seeked when fragmented). ``metadata``: container tags; ``rotation``: display rotation
    (degrees counter-clockwise) stored in the header; ``audio_template``: an input ``av`` audio
    stream whose packets :meth:`mux_copied` passes through unchanged (stream copy);
    ``on_fragment``: called with each finished :class:`~surgbox.packets.FragmentInfo` (on the
    thread that muxes); ``name`` starts error messages. Errors are
    :class:`~surgbox.errors.EncoderError` naming the output; after one the muxer is closed and
    everything written before stays playable."""

    target: str | os.PathLike | IO[bytes]
    fragmented: bool = True
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    rotation: float = 0.0
    audio_template: Any = None
    on_fragment: Callable[[FragmentInfo], None] | None = None
    name: str = "MP4 muxer"
    init_size: int = attrs.field(default=0, init=False)
    fragments: int = attrs.field(default=0, init=False)
    failed: EncoderError | None = attrs.field(default=None, init=False)
    _container: Any = attrs.field(default=None, init=False, alias="_container")
    _streams: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_streams")
    _specs: dict[str, StreamSpec] = attrs.field(factory=dict, init=False, alias="_specs")
    _file: Any = attrs.field(default=None, init=False, alias="_file")  # a file this muxer opened
    _writer: _BoxWriter | None = attrs.field(default=None, init=False, alias="_writer")
    _keyframes: deque = attrs.field(factory=deque, init=False, alias="_keyframes")  # video keyframe times (ns) of unreported fragments
    _video_end_ns: int = attrs.field(default=0, init=False, alias="_video_end_ns")
    _moof_at: int | None = attrs.field(default=None, init=False, alias="_moof_at")
    _closed: bool = attrs.field(default=False, init=False, alias="_closed")

    @property
    def label(self) -> str:
        return target_label(self.target)

    @property
    def size_bytes(self) -> int | None:
        """Bytes written so far (the file size for a plain MP4)."""
        if self._writer is not None:
            return self._writer.written
        if isinstance(self.target, (str, os.PathLike)):
            try:
                return os.path.getsize(self.target)
            except OSError:
                return None
        return None

    # -- PacketConsumer -------------------------------------------------------------------------
    def open(self, streams: Sequence[StreamSpec]) -> None:
        """Create the output and write its header (one stream per spec, plus ``audio_template``)."""
        import av

        if self._container is not None or self._closed:
            raise EncoderError(f"{self.name}: {self.label} is already open; use a new muxer per output")
        if self.fragmented:
            options = {"movflags": MOVFLAGS, "flush_packets": "1"}
            raw: Any = self.target
            if isinstance(self.target, (str, os.PathLike)):
                try:
                    raw = self._file = open(self.target, "wb")
                except OSError as exc:
                    raise self._create_error(exc) from exc
            self._writer = _BoxWriter(raw, self._box)
            dest: Any = self._writer
        else:
            if not isinstance(self.target, (str, os.PathLike)):
                raise EncoderError(f"{self.name}: a plain (fragmented=False) MP4 is finished by seeking back; give a file path, not {self.label}")
            options, dest = {"movflags": PLAIN_MOVFLAGS}, os.fspath(self.target)
        try:
            container = av.open(dest, "w", format="mp4", options=options)
        except (OSError, av.FFmpegError) as exc:
            self._close_file()
            raise self._create_error(exc) from exc
        try:
            for k, v in self.metadata.items():
                container.metadata[str(k)] = str(v)
            for spec in streams:
                self._streams[spec.kind] = _add_stream(container, spec)
                self._specs[spec.kind] = spec
            if self.audio_template is not None:
                if "audio" in self._streams:
                    raise EncoderError(f"{self.name}: give either an encoded audio stream or audio_template, not both")
                self._streams["audio"] = container.add_stream_from_template(self.audio_template)
            if self.rotation and "video" in self._streams:
                self._streams["video"].set_display_rotation(float(self.rotation))
            container.start_encoding()  # the header (moov) goes out now
        except (OSError, ValueError, av.FFmpegError) as exc:
            self._abort(container)
            raise self._create_error(exc) from exc
        except BaseException:
            self._abort(container)
            raise
        self._container = container

    def mux(self, packets: Sequence[Packet]) -> None:
        """Write encoded packets (in time order per stream)."""
        import av

        c = self._check_open()
        for p in packets:
            stream = self._streams.get(p.stream)
            if stream is None:
                raise EncoderError(f"{self.name} ({self.label}): no {p.stream} stream was opened for this packet")
            ap = av.Packet(p.data)
            ap.stream = stream
            ap.time_base = p.time_base
            ap.pts = p.pts
            ap.dts = p.pts if p.dts is None else p.dts
            ap.duration = p.duration or self._default_duration(p)
            ap.is_keyframe = p.keyframe
            if p.stream == "video":
                if p.keyframe:
                    self._keyframes.append(p.time_ns)  # before muxing: this keyframe closes the previous fragment
                self._video_end_ns = max(self._video_end_ns, _units_ns(p.pts + ap.duration, p.time_base))
            self._mux_one(c, ap)

    def mux_copied(self, packet: Any) -> None:
        """Write an ``av.Packet`` of ``audio_template``'s stream unchanged (its time base kept)."""
        c = self._check_open()
        if self.audio_template is None:
            raise EncoderError(f"{self.name} ({self.label}): stream copy needs audio_template=stream")
        if packet.dts is None and packet.size == 0:
            return  # a demuxer's flush packet
        packet.stream = self._streams["audio"]
        self._mux_one(c, packet)

    def close(self) -> None:
        """Finish the file (the trailer; the last fragment is reported). Idempotent; raises
        :class:`~surgbox.errors.EncoderError` when finishing fails (the file is closed anyway)."""
        if self._closed:
            return
        self._closed = True
        c, self._container = self._container, None
        err: EncoderError | None = None
        if c is not None:
            try:
                c.close()
            except Exception as exc:  # trailer on a full disk: the fragments before stay playable
                if self.failed is None:
                    err = self._error("finishing the file", exc)
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError as exc:
                if err is None and self.failed is None:
                    err = self._error("flushing the file", exc)
        self._close_file()
        if err is not None:
            self.failed = err
            raise err

    # -- internals ------------------------------------------------------------------------------
    def _default_duration(self, p: Packet) -> int:
        spec = self._specs.get(p.stream)
        if spec is not None and spec.kind == "video" and spec.rate:
            return max(1, round(1 / (spec.rate * p.time_base)))
        if spec is not None and spec.frame_size:
            return spec.frame_size
        return 0

    def _mux_one(self, c: Any, packet: Any) -> None:
        import av

        try:
            c.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            self.failed = self._error("writing", exc)
            log.error("%s", self.failed)
            self._abort(c)
            raise self.failed from exc

    def _check_open(self) -> Any:
        if self.failed is not None:
            raise self.failed
        if self._container is None:
            raise EncoderError(f"{self.name} ({self.label}) is {'closed' if self._closed else 'not open; call open(streams) first'}")
        return self._container

    def _box(self, kind: bytes, start: int, end: int) -> None:
        if kind == b"moov":
            self.init_size = end
        elif kind == b"moof":
            self._moof_at = start
        elif kind == b"mdat" and self._moof_at is not None:
            offset, self._moof_at = self._moof_at, None
            t0 = self._keyframes.popleft() if self._keyframes else self._video_end_ns
            t1 = self._keyframes[0] if self._keyframes else self._video_end_ns
            info = FragmentInfo(self.fragments, offset, end - offset, t0, max(t0, t1), self.init_size)
            self.fragments += 1
            if self.on_fragment is not None:
                self.on_fragment(info)

    def _create_error(self, exc: BaseException) -> EncoderError:
        return EncoderError(f"cannot create output {self.label}: {describe_os_error(exc)}; check the directory exists and is writable")

    def _error(self, doing: str, exc: BaseException) -> EncoderError:
        full = getattr(exc, "errno", None) == errno.ENOSPC
        err = EncoderError(
            f"{self.name}: writing {self.label} failed while {doing}: {describe_os_error(exc)}. "
            "The recording was stopped; everything written before is playable. "
            + ("Free space or choose another output." if full else "Check the output's disk and the encoder options.")
        )
        err.__cause__ = exc
        return err

    def _abort(self, c: Any) -> None:
        """Close after a write error without writing more."""
        self._container = None
        self._closed = True
        if c is not None:
            try:
                c.close()
            except Exception:  # the disk is still full; the fragments before stay playable
                pass
        self._close_file()

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:  # pragma: no cover - reported by the write that failed
                pass


def _units_ns(units: int, time_base: Any) -> int:
    return round(units * time_base * NS_PER_S)


_TEMPLATES: dict[tuple[str, str], Any] = {}


def _template(spec: StreamSpec) -> Any:
    """A never-written stream of ``spec.codec``: ``add_stream_from_template`` copies its codec
    into a mux stream whose parameters come from ``spec`` (no second encoder is opened)."""
    import av

    key = (spec.kind, spec.codec)
    t = _TEMPLATES.get(key)
    if t is None:
        scratch = av.open(io.BytesIO(), "w", format="mp4")
        stream = scratch.add_stream(spec.codec, rate=spec.sample_rate or 48000) if spec.kind == "audio" else scratch.add_stream(spec.codec)
        t = _TEMPLATES[key] = (scratch, stream)  # kept: the stream lives as long as its container
    return t[1]


def _add_stream(container: Any, spec: StreamSpec) -> Any:
    """A stream of ``container`` for packets described by ``spec``."""
    from .types import channel_layout

    stream = container.add_stream_from_template(_template(spec))
    ctx = stream.codec_context
    if spec.kind == "video":
        ctx.width, ctx.height, ctx.pix_fmt = spec.width, spec.height, spec.pix_fmt
        if spec.rate:
            ctx.framerate = spec.rate
    else:
        ctx.sample_rate = spec.sample_rate
        ctx.layout = channel_layout(spec.channels)
    ctx.time_base = spec.time_base
    if spec.bit_rate:
        ctx.bit_rate = spec.bit_rate
    if spec.extradata:
        ctx.extradata = spec.extradata
    stream.time_base = spec.time_base
    return stream


@attrs.define(eq=False)
class EncodedOutput:
    """An encoder's packet API feeding an :class:`Mp4Muxer`: the one-call output of an
    :class:`~surgbox.interfaces.Encoder` (``open_output`` ... ``close``).

    ``encoder`` must be opened with ``open_codecs`` before :meth:`open`; :meth:`close` flushes
    the codecs into the file and finishes it. ``failed``: the error that stopped the output.
    """

    encoder: Any
    muxer: Mp4Muxer
    failed: EncoderError | None = attrs.field(default=None, init=False)
    _open: bool = attrs.field(default=False, init=False, alias="_open")

    def open(self) -> None:
        self.muxer.open(self.encoder.streams)
        self._open = True

    def write_video(self, frame: Any, time_ns: int) -> None:
        self._send(lambda: self.encoder.encode(frame, time_ns))

    def write_audio(self, samples: Any, time_ns: int) -> None:
        self._send(lambda: self.encoder.encode_audio(samples, time_ns))

    def copy_audio(self, packet: Any) -> None:
        self._check()
        self._guard(lambda: self.muxer.mux_copied(packet))

    def close(self) -> None:
        """Flush the codecs into the file and finish it; raises the first error (the file is
        closed in any case)."""
        if not self._open:
            return
        self._open = False
        err: EncoderError | None = None
        if self.failed is None:
            try:
                self.muxer.mux(self.encoder.flush())
            except EncoderError as exc:
                err = self.failed = exc
        try:
            self.muxer.close()
        except EncoderError as exc:
            if err is None and self.failed is None:
                err = self.failed = exc
        if err is not None:
            raise err

    def _check(self) -> None:
        if self.failed is not None:
            raise self.failed
        if not self._open:
            raise EncoderError(f"{self.muxer.name} ({self.muxer.label}) is closed")

    def _send(self, encode: Callable[[], Sequence[Packet]]) -> None:
        self._check()
        self._guard(lambda: self.muxer.mux(encode()))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except EncoderError as exc:
            # the codec or the file failed: the output ends (a caller's bad timestamp does not)
            if self.muxer.failed is not None or getattr(self.encoder, "failed", None) is not None:
                self.failed = exc
                self._open = False
                try:
                    self.muxer.close()
                except EncoderError:
                    pass
            raise
