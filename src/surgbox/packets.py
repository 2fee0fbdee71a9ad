"""Encoded media as plain values: what an :class:`~surgbox.interfaces.Encoder` hands out and a muxer takes.

An encoder turns pictures and audio into :class:`Packet` s (``encode(frame) -> packets``, as
PyAV does) and describes each output stream with a :class:`StreamSpec` (codec, time base, size,
the codec's global header). Packets carry their bytes and timestamps and nothing tied to a
container, so one encoded stream can feed several consumers -- the crash-safe MP4 file, a live
preview, an upload -- without encoding twice (:class:`PacketTee`). A muxer that writes
fragments reports each finished one as a :class:`FragmentInfo` (byte range and time range).

Time: ``pts``/``dts``/``duration`` count ``time_base`` units (seconds per unit) on the output
time line (0 = first video frame); :attr:`Packet.time_ns` converts with exact rationals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import attrs

NS_PER_S = 1_000_000_000
STREAM_KINDS = ("video", "audio")

log = logging.getLogger(__name__)


def _ns(units: int, time_base: Fraction) -> int:
    return round(units * time_base * NS_PER_S)


@attrs.frozen
class Packet:
    """One encoded access unit of the ``stream`` (``"video"`` or ``"audio"``) of an encoder.

    ``data``: the codec's bytes (H.264 in Annex B start-code form, AAC raw frames); ``pts`` /
    ``dts`` (``None`` when the codec gives none) / ``duration`` in ``time_base`` units;
    ``keyframe``: decodable without earlier packets (a video fragment starts at one).
    """

    stream: str = attrs.field(validator=attrs.validators.in_(STREAM_KINDS))
    data: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    pts: int
    dts: int | None
    duration: int
    time_base: Fraction
    keyframe: bool = False

    @property
    def time_ns(self) -> int:
        """Presentation time in ns on the output time line."""
        return _ns(self.pts, self.time_base)

    @property
    def end_ns(self) -> int:
        """Presentation time of the end of this packet (``pts + duration``) in ns."""
        return _ns(self.pts + self.duration, self.time_base)

    @property
    def size(self) -> int:
        return len(self.data)


@attrs.frozen
class StreamSpec:
    """What a consumer needs to read (or mux) one encoded stream.

    ``kind`` ``"video"``/``"audio"``; ``codec``: the FFmpeg encoder that made it (``libx264``,
    ``h264_nvenc``, ``aac``); ``time_base`` of the packets; ``extradata``: the codec's global
    header (H.264 SPS/PPS, AAC AudioSpecificConfig; empty when the codec puts it in-band).
    Video: ``width``/``height``/``pix_fmt``/``rate`` (frames per second). Audio:
    ``sample_rate``/``channels``/``frame_size`` (samples per packet). ``bit_rate`` in bits/s
    (0 = not set, quality mode).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(STREAM_KINDS))
    codec: str
    time_base: Fraction
    extradata: bytes = attrs.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")
    width: int = 0
    height: int = 0
    pix_fmt: str = "yuv420p"
    rate: Fraction | None = None
    sample_rate: int = 0
    channels: int = 0
    frame_size: int = 0
    bit_rate: int = 0


@attrs.frozen
class FragmentInfo:
    """A finished fragment (``moof`` + ``mdat``) of a fragmented MP4: ``index`` from 0, bytes
    ``[offset, offset + size)`` of the file, video time ``[start_ns, end_ns)`` on the output time
    line. ``init_size``: bytes ``[0, init_size)`` are the header (``ftyp`` + ``moov``) that makes
    any fragment playable on its own (header + fragment is a valid MP4)."""

    index: int
    offset: int
    size: int
    start_ns: int
    end_ns: int
    init_size: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@runtime_checkable
class PacketConsumer(Protocol):
    """Anything that takes encoded packets: a muxer writing a file, a live preview, an upload.

    ``open(streams)`` once before the first packet (the encoder's :class:`StreamSpec` s, in
    the order of their ``kind``: video first); ``mux(packets)`` in time order (per stream);
    ``close()`` after the last one (idempotent). Called from one thread.
    """

    def open(self, streams: Sequence[StreamSpec]) -> None: ...

    def mux(self, packets: Sequence[Packet]) -> None: ...

    def close(self) -> None: ...


@attrs.define(eq=False)
class PacketTee:
    """Fans packets out to a ``primary`` consumer and ``extras`` (encoded once, consumed many times).

    The primary is the recording: its errors propagate. An extra (a live preview, an upload
    spooler) that raises is logged, detached and named in :attr:`failed`; it never stops the
    primary. Packets are immutable values, so every consumer sees the same bytes.
    """

    primary: PacketConsumer
    extras: Sequence[PacketConsumer] = attrs.field(factory=tuple, converter=tuple)
    failed: dict[str, str] = attrs.field(factory=dict, init=False)
    _live: list[PacketConsumer] = attrs.field(factory=list, init=False, alias="_live")

    def open(self, streams: Sequence[StreamSpec]) -> None:
        self.primary.open(streams)
        for c in self.extras:
            if self._try(c, "open", c.open, streams):
                self._live.append(c)

    def mux(self, packets: Sequence[Packet]) -> None:
        self.primary.mux(packets)
        for c in list(self._live):
            if not self._try(c, "mux", c.mux, packets):
                self._live.remove(c)

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            for c in self._live:
                self._try(c, "close", c.close)
            self._live = []

    def _try(self, consumer: Any, what: str, fn: Any, *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:  # an extra consumer never stops the recording
            name = f"{type(consumer).__name__}@{id(consumer):x}"
            self.failed[name] = f"{what}: {type(exc).__name__}: {exc}"
            log.error("packet consumer %s failed in %s and was detached: %s", name, what, exc)
            if what != "close":
                try:
                    consumer.close()
                except Exception:  # already failed: nothing more to report
                    pass
            return False
