"""GOP-aligned split and lossless join of a recording (``surgbox deid-batch``).

:func:`plan` reads the video packets' timestamps and keyframe flags (demux only, nothing is
decoded but the first picture) and cuts the recording into :class:`Segment` s at keyframes,
about ``seconds`` long. Each segment is de-identified with a context of whole GOPs on either
side (:func:`context_frames` frames at least) that is decoded and scanned but not written, so
the detector's cadence, the tracks and the carried boxes at a boundary are those of a single
pass (see :class:`surgbox.deid.FrameWindow`).

:func:`split` stream-copies a segment's packets (keyframe to keyframe, video only) into an
in-memory MP4: no re-encoding, nothing on disk. :func:`join` stream-copies the de-identified
segments, in order, into one MP4 whose codec configuration (SPS/PPS) is that of the first
segment (all are encoded with identical settings; a differing one is an error) and stamps the
frames with the recording's own presentation times; the recording's audio is copied once,
interleaved by time. Frame numbers are in presentation order from 0, as the pipeline counts.
"""

from __future__ import annotations

import bisect
import io
import os
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import IO, Any

import attrs

from ..errors import DeidError

Source = str | os.PathLike | IO[bytes]


@attrs.frozen
class Segment:
    """Segment ``index`` of a recording: frames ``[start, stop)`` are its own; frames
    ``[first, end)`` (whole GOPs, ``first`` a keyframe) are copied for it, the rest being context."""

    index: int
    first: int
    start: int
    stop: int
    end: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


@attrs.frozen(eq=False)
class Plan:
    """What :func:`plan` learned: every frame's ``pts`` in presentation order (``time_base``
    units), the frame numbers of the keyframes that start closed groups (``keyframes``), the
    ``segments``, the nominal ``fps``, the first picture's display ``rotation``, the container
    ``metadata``, the picture size, the duration of the last frame (``last_duration``) and
    ``cut_tail``: the frames at the end whose packets are cut off or corrupt (a recording that
    ended in a crash), which may not decode — de-identification then writes the frames before
    them, as ``surgbox deid`` does (with a warning; ``--strict`` refuses such an input)."""

    pts: tuple[int, ...]
    time_base: Fraction
    fps: Fraction
    keyframes: tuple[int, ...]  # frame numbers of keyframes (presentation order)
    segments: tuple[Segment, ...]
    rotation: float
    metadata: dict[str, str]
    has_audio: bool
    last_duration: int
    width: int = 0
    height: int = 0
    cut_tail: int = 0

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def duration_s(self) -> float:
        return self.seconds(0, self.frames)

    def seconds(self, start: int, stop: int) -> float:
        """Seconds of video of frames ``[start, stop)``."""
        if stop <= start:
            return 0.0
        end = self.pts[stop] if stop < self.frames else self.pts[-1] + self.last_duration
        return float((end - self.pts[start]) * self.time_base)


def context_frames(options: Any) -> int:
    """Frames of context a segment needs on each side for the temporal stage (its look-ahead,
    carry and interpolation gap) and the detector cadence to see what a single pass sees."""
    tf = options.make_temporal()
    return int(tf.lookahead) + options.carry + options.max_gap + 2 * options.every + 2


def _open(src: Source) -> Any:
    import av

    if not isinstance(src, (str, os.PathLike)):
        src.seek(0)
    try:
        return av.open(src if not isinstance(src, os.PathLike) else os.fspath(src), mode="r")
    except FileNotFoundError:
        raise DeidError(f"input {str(src)!r} does not exist; check the path") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DeidError(f"input {_name(src)!r} is not a readable video ({exc}); check it with ffprobe") from None


def _name(src: Source) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return str(getattr(src, "name", None) or f"<{type(src).__name__}>")


def plan(src: Source, *, seconds: float, context: int) -> Plan:
    """Cut ``src`` (a path or a seekable binary file object) into segments of about ``seconds``
    at keyframes, each with at least ``context`` frames of context on both sides.
    ``seconds <= 0`` gives one segment. Raises :class:`DeidError` for an input without
    timestamps or keyframes that cannot be split."""
    name = _name(src)
    with _open(src) as c:
        if not c.streams.video:
            raise DeidError(f"input {name!r} has no video stream; give a video file")
        vs = c.streams.video[0]
        tb = vs.time_base
        fps = vs.average_rate or vs.guessed_rate or Fraction(30)
        metadata = {str(k): str(v) for k, v in c.metadata.items()}
        has_audio = bool(c.streams.audio)
        width, height = vs.codec_context.width, vs.codec_context.height
        packets: list[tuple[int, bool, int]] = []  # (pts, keyframe, duration) in decode order
        corrupt_tail = 0  # packets flagged corrupt at the end (decode order): the cut-off end of a crash
        for p in c.demux(vs):
            if p.size == 0:
                continue
            if p.pts is None:
                raise DeidError(f"input {name!r} has video packets without timestamps; it cannot be split: "
                                f"use --segment-seconds 0 (one task per recording)")
            packets.append((int(p.pts), bool(p.is_keyframe), int(p.duration or 0)))
            corrupt_tail = corrupt_tail + 1 if p.is_corrupt else 0
        rotation = _first_rotation(src)
    if not packets:
        raise DeidError(f"input {name!r} has no video packet; check it with ffprobe")
    pts_sorted = sorted(p for p, _, _ in packets)
    if len(set(pts_sorted)) != len(pts_sorted):
        raise DeidError(f"input {name!r} has repeated video timestamps; it cannot be split: use --segment-seconds 0")
    rank = {p: i for i, p in enumerate(pts_sorted)}
    # a keyframe starts a closed group when every packet after it in decode order is displayed after it
    keys = []
    min_after = [0] * (len(packets) + 1)
    min_after[len(packets)] = 1 << 62
    for i in range(len(packets) - 1, -1, -1):
        min_after[i] = min(packets[i][0], min_after[i + 1])
    for i, (pts, key, _) in enumerate(packets):
        if key and min_after[i] == pts and rank[pts] == i:
            keys.append(rank[pts])
    if not keys or keys[0] != 0:
        raise DeidError(f"input {name!r} does not start with a keyframe; it cannot be split: use --segment-seconds 0")
    n = len(pts_sorted)
    segs = _cut(pts_sorted, tb, keys, seconds, context)
    last_dur = packets[max(range(len(packets)), key=lambda i: packets[i][0])][2] or max(1, round(1 / (fps * tb)))
    # only a cut-off end that is also the last in presentation order can be left out at the end
    tail = {p for p, _, _ in packets[len(packets) - corrupt_tail:]}
    cut_tail = corrupt_tail if tail == set(pts_sorted[n - corrupt_tail:]) else 0
    return Plan(tuple(pts_sorted), tb, Fraction(fps), tuple(keys), tuple(segs), rotation, metadata, has_audio,
                int(last_dur), width, height, cut_tail)


def _cut(pts: list[int], tb: Fraction, keys: list[int], seconds: float, context: int) -> list[Segment]:
    n = len(pts)
    bounds = [0]
    if seconds > 0:
        step = seconds / float(tb)
        target = pts[0] + step
        for k in keys[1:]:
            if pts[k] >= target:
                bounds.append(k)
                target = pts[k] + step
    bounds.append(n)
    segs = []
    for i in range(len(bounds) - 1):
        start, stop = bounds[i], bounds[i + 1]
        j = bisect.bisect_right(keys, max(0, start - context)) - 1
        first = keys[j]
        j = bisect.bisect_left(keys, min(n, stop + context))
        end = keys[j] if j < len(keys) else n
        segs.append(Segment(i, first, start, stop, end))
    return segs


def _first_rotation(src: Source) -> float:
    with _open(src) as c:
        vs = c.streams.video[0]
        for frame in c.decode(vs):
            return float(getattr(frame, "rotation", 0) or 0)
    return 0.0


def split(src: Source, seg: Segment, plan_: Plan) -> bytes:
    """Segment ``seg`` of ``src`` (video packets of frames ``[seg.first, seg.end)``, stream
    copy, from a seek to its first keyframe) as the bytes of an MP4 that keeps the input's
    time base and timestamps."""
    import av

    lo = plan_.pts[seg.first]
    hi = plan_.pts[seg.end] if seg.end < plan_.frames else None
    buf = io.BytesIO()
    copied = 0
    with _open(src) as c:
        vs = c.streams.video[0]
        if seg.first > 0:
            c.seek(lo, backward=True, any_frame=False, stream=vs)
        with av.open(buf, "w", format="mp4") as out:
            for k, v in plan_.metadata.items():
                out.metadata[k] = v
            os_ = out.add_stream_from_template(vs)
            os_.time_base = vs.time_base
            for p in c.demux(vs):
                if p.size == 0 or p.pts is None or p.pts < lo:
                    continue
                if hi is not None and p.pts >= hi:
                    break  # the next segment's keyframe (groups are closed: nothing of this one follows it)
                p.stream = os_
                out.mux(p)
                copied += 1
    if copied != seg.end - seg.first:
        raise DeidError(f"input {_name(src)!r}: segment {seg.index} should hold {seg.end - seg.first} frames, "
                        f"{copied} could be copied; the file changed or is damaged")
    return buf.getvalue()


def join(plan_: Plan, parts: Iterable[tuple[Segment, Callable[[], IO[bytes]]]], dst: Any, *, fragmented: bool,
         audio_src: Source | None) -> int:
    """Stream-copy the de-identified ``parts`` (``(segment, open)`` in segment order; ``open()``
    gives a readable MP4 of exactly the segment's frames) into ``dst`` (a path, or a writable
    file object with ``fragmented``), each frame at the recording's presentation time, with
    the audio of ``audio_src`` copied once. Returns the frames written: all of the plan's, or
    up to ``plan_.cut_tail`` fewer when the last segment's cut-off end did not decode."""
    from ..mux import Mp4Muxer
    from ..packets import Packet, StreamSpec

    parts = iter(parts)
    audio_c = _open(audio_src) if audio_src is not None and plan_.has_audio else None
    try:
        audio_stream = audio_c.streams.audio[0] if audio_c is not None else None
        audio = _audio_packets(audio_c, audio_stream) if audio_c is not None else iter(())
        pending_audio = next(audio, None)
        muxer = None
        written = 0
        tb = plan_.time_base
        spec0 = None
        try:
            for seg, open_part in parts:
                with open_part() as f, _open(f) as c:
                    vs = c.streams.video[0]
                    extradata = bytes(vs.codec_context.extradata or b"")
                    if muxer is None:
                        ctx = vs.codec_context
                        spec0 = StreamSpec("video", ctx.name, tb, extradata, ctx.width, ctx.height, rate=plan_.fps)
                        muxer = Mp4Muxer(dst, fragmented=fragmented, metadata=plan_.metadata, rotation=plan_.rotation,
                                         audio_template=audio_stream, name="segment join")
                        muxer.open([spec0])
                    elif extradata != spec0.extradata:
                        raise DeidError(f"segment {seg.index} was encoded with another codec configuration than "
                                        f"segment 0; segments must use identical encoder settings")
                    count, last = 0, None
                    for p in c.demux(vs):
                        if p.size == 0:
                            continue
                        if last is not None and p.pts is not None and p.pts <= last:
                            raise DeidError(f"segment {seg.index} reorders frames (B-frames); the join needs an "
                                            f"encoder without frame reordering")
                        last = p.pts
                        n = seg.start + count
                        if n >= seg.stop:
                            raise DeidError(f"segment {seg.index} holds more than its {seg.frames} frames")
                        pts = plan_.pts[n]
                        dur = (plan_.pts[n + 1] - pts) if n + 1 < plan_.frames else plan_.last_duration
                        t = pts * tb
                        while pending_audio is not None and pending_audio.pts is not None and \
                                pending_audio.pts * pending_audio.time_base <= t:
                            muxer.mux_copied(pending_audio)
                            pending_audio = next(audio, None)
                        muxer.mux([Packet("video", bytes(p), pts, pts, dur, tb, bool(p.is_keyframe))])
                        count += 1
                    short = plan_.cut_tail if seg.stop == plan_.frames else 0  # the cut-off end may not decode
                    if not seg.frames - short <= count <= seg.frames:
                        raise DeidError(f"segment {seg.index} holds {count} frames, not its {seg.frames}")
                    written += count
            if muxer is None:
                raise DeidError("nothing to join: no segment")
            while pending_audio is not None:
                muxer.mux_copied(pending_audio)
                pending_audio = next(audio, None)
            muxer.close()
        except BaseException:
            if muxer is not None:
                try:
                    muxer.close()
                except Exception:
                    pass
            raise
        if not plan_.frames - plan_.cut_tail <= written <= plan_.frames:
            raise DeidError(f"the joined segments hold {written} frames, the recording {plan_.frames}")
        return written
    finally:
        if audio_c is not None:
            audio_c.close()


def _audio_packets(c: Any, stream: Any) -> Iterator[Any]:
    for p in c.demux(stream):
        if p.size:
            yield p
