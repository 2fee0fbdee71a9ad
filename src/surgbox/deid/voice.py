"""Voice disguise: shift the pitch and formants of speech so it stays intelligible but not recognisable.

Method: FFmpeg's ``asetrate`` + ``atempo`` + ``aresample`` filters through PyAV's filter graph.
``asetrate`` relabels the samples at ``rate * k`` (``k = 2 ** (semitones / 12)``), which plays
them ``k`` times faster: pitch *and* formants (the vocal tract's resonances, much of what makes a
voice recognisable) move by ``semitones``; ``atempo`` (WSOLA time stretching) restores the
duration, ``aresample`` the sample rate. The PyAV wheel's FFmpeg has no ``rubberband`` (checked:
``"rubberband" in av.filter.filters_available`` is False), which would shift pitch while
keeping formants — less disguise for this purpose anyway. Output length equals input length to
the sample (the filters' few extra samples at the end are cut, a shortfall padded with
silence), and the output starts where the input starts: A/V sync is unchanged.

Modes (``surgbox deid --voice`` and the recorder's ``voice`` source option): ``keep`` (audio
untouched), ``disguise`` (the shift above, default :data:`DEFAULT_SEMITONES`), ``mute`` (the
same number of samples, all silent: the track and its timing stay).

    >>> v = VoiceDisguiser(48000, 1, semitones=-4)          # doctest: +SKIP
    >>> out = v.process(samples) ; tail = v.flush()        # doctest: +SKIP
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import attrs
import numpy as np

from ..errors import ConfigError
from ..types import channel_layout

VOICE_MODES = ("keep", "disguise", "mute")
DEFAULT_SEMITONES = -4.0  # a lower voice: at -4 semitones f0 and formants move by 21 %
MAX_SEMITONES = 12.0  # atempo's 0.5..2 range per instance


def check_semitones(value: Any) -> float:
    """``value`` as semitones in ``[-12, -1] or [1, 12]``; else a :class:`ConfigError`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 1.0 <= abs(value) <= MAX_SEMITONES:
        raise ConfigError(f"voice semitones must be a number with 1 <= |semitones| <= {MAX_SEMITONES:g} "
                          f"(default {DEFAULT_SEMITONES:g}: a lower voice), got {value!r}")
    return float(value)


def check_mode(value: Any) -> str:
    if value not in VOICE_MODES:
        raise ConfigError(f"voice must be one of {', '.join(VOICE_MODES)}, got {value!r}")
    return str(value)


@attrs.frozen
class VoiceSettings:
    """``mode`` (keep | disguise | mute) and ``semitones`` of the disguise."""

    mode: str = attrs.field(default="disguise", converter=check_mode)
    semitones: float = attrs.field(default=DEFAULT_SEMITONES, converter=check_semitones)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode}
        if self.mode == "disguise":
            d.update(semitones=self.semitones, method="asetrate+atempo+aresample (FFmpeg via PyAV)")
        return d


@attrs.define(eq=False)
class VoiceDisguiser:
    """A streaming disguise of ``channels`` x ``rate`` Hz float32 planar audio (``(channels, n)``
    blocks): :meth:`process` returns what is ready (the filters hold a few ms), :meth:`flush` the
    rest, cut or padded so the total output equals the total input to the sample.
    ``mode="mute"`` returns silence of the same length."""

    rate: int
    channels: int
    semitones: float = DEFAULT_SEMITONES
    mode: str = "disguise"
    samples_in: int = 0
    samples_out: int = 0
    _graph: Any = attrs.field(default=None, alias="_graph")
    _src: Any = attrs.field(default=None, alias="_src")

    def __attrs_post_init__(self) -> None:
        check_mode(self.mode)
        if self.mode == "disguise":
            check_semitones(self.semitones)

    @property
    def factor(self) -> float:
        """The pitch factor actually applied (``asetrate`` takes an integer rate)."""
        return round(self.rate * 2 ** (self.semitones / 12)) / self.rate

    def _open(self) -> None:
        import av

        layout = channel_layout(self.channels)
        g = av.filter.Graph()
        src = g.add_abuffer(format="fltp", sample_rate=self.rate, layout=layout, time_base=Fraction(1, self.rate))
        shifted = round(self.rate * 2 ** (self.semitones / 12))
        chain = [g.add("asetrate", f"sample_rate={shifted}"), g.add("atempo", f"tempo={self.rate / shifted:.8f}"),
                 g.add("aresample", str(self.rate)), g.add("aformat", f"sample_fmts=fltp:channel_layouts={layout}"),
                 g.add("abuffersink")]
        prev = src
        for f in chain:
            prev.link_to(f)
            prev = f
        g.configure()
        self._graph, self._src = g, src

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Disguise the next block; returns the output that is ready, ``(channels, m)`` float32."""
        block = np.ascontiguousarray(samples, np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"voice: expected ({self.channels}, n) samples, got {block.shape}")
        n = block.shape[1]
        if self.mode == "mute":
            self.samples_in += n
            self.samples_out += n
            return np.zeros_like(block)
        if self.mode == "keep":
            self.samples_in += n
            self.samples_out += n
            return block
        import av

        if self._graph is None:
            self._open()
        if n:
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=channel_layout(self.channels))
            frame.sample_rate = self.rate
            frame.pts = self.samples_in
            frame.time_base = Fraction(1, self.rate)
            self._graph.push(frame)
            self.samples_in += n
        return self._pull()

    def _pull(self) -> np.ndarray:
        import av

        out = []
        while True:
            try:
                f = self._graph.pull()
            except (BlockingIOError, av.error.EOFError):
                break
            out.append(f.to_ndarray().astype(np.float32, copy=False).reshape(self.channels, -1))
        got = np.concatenate(out, 1) if out else np.zeros((self.channels, 0), np.float32)
        room = self.samples_in - self.samples_out  # never more out than in (the end's extra samples are cut)
        got = got[:, :max(0, room)]
        self.samples_out += got.shape[1]
        return got

    def flush(self) -> np.ndarray:
        """The rest: total output = total input, to the sample."""
        tail = np.zeros((self.channels, 0), np.float32)
        if self._graph is not None:
            self._graph.push(None)
            tail = self._pull()
            self._graph = None
        short = self.samples_in - self.samples_out
        if short > 0:
            tail = np.concatenate([tail, np.zeros((self.channels, short), np.float32)], 1)
            self.samples_out += short
        return tail


def disguise_file(src: str | Any, dst: str | Any, settings: VoiceSettings) -> dict[str, Any]:
    """Copy the MP4 ``src`` to ``dst`` with its first audio stream disguised (or muted) and
    re-encoded as AAC at its own rate and layout; every other stream is copied packet by packet
    (no video re-encoding), the container's tags too. The audio keeps its start time and its
    number of samples. Returns ``{"voice": settings, "samples_in", "samples_out", "rate"}``
    (``samples_*`` ``None`` without an audio stream: then ``dst`` is a plain copy of the streams)."""
    import av

    try:
        inp = av.open(str(src))
    except Exception as exc:
        raise ConfigError(f"voice: cannot open {src}: {exc}") from None
    with inp:
        a_in = inp.streams.audio[0] if inp.streams.audio else None
        others = [s for s in inp.streams if s is not a_in and s.type in ("video", "audio")]
        with av.open(str(dst), "w", format="mp4") as out:
            out.metadata.update(dict(inp.metadata))
            smap = {s.index: out.add_stream_from_template(s) for s in others}
            info: dict[str, Any] = {"voice": settings.to_dict(), "samples_in": None, "samples_out": None, "rate": None}
            if a_in is None:
                for packet in inp.demux(*others):
                    if packet.dts is not None:
                        packet.stream = smap[packet.stream.index]
                        out.mux(packet)
                return info
            rate, channels = a_in.codec_context.sample_rate, a_in.codec_context.channels
            layout = channel_layout(channels)
            a_out = out.add_stream("aac", rate=rate, layout=layout)
            a_out.bit_rate = max(int(a_in.bit_rate or 0), 96_000)
            a_out.time_base = Fraction(1, rate)
            disg = VoiceDisguiser(rate, channels, settings.semitones, settings.mode)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            start: list[int] = []

            def encode(block: np.ndarray) -> None:
                if not block.shape[1]:
                    return
                f = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout=layout)
                f.sample_rate = rate
                f.time_base = Fraction(1, rate)
                f.pts = start[0] + disg.samples_out - block.shape[1]
                out.mux(a_out.encode(f))

            def feed(frames: list) -> None:
                for rf in frames:
                    if not start:
                        t = rf.pts * rf.time_base if rf.pts is not None else 0
                        start.append(round(t * rate))
                    encode(disg.process(rf.to_ndarray()))

            for packet in inp.demux(a_in, *others):
                if packet.stream is a_in:
                    for frame in packet.decode():
                        feed(resampler.resample(frame))
                elif packet.dts is not None:
                    packet.stream = smap[packet.stream.index]
                    out.mux(packet)
            feed(resampler.resample(None))
            if start:
                encode(disg.flush())
            out.mux(a_out.encode(None))
            info.update(samples_in=disg.samples_in, samples_out=disg.samples_out, rate=rate)
            return info
