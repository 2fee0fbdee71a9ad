"""Output ticks, newest-frame selection with staleness, audio placement by capture time."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from surgbox.sync import AudioAligner, FrameSelector, TickClock
from surgbox.types import AudioChunk, VideoFrame

NS = 1_000_000_000
_IMG = av.VideoFrame(64, 64, "yuv420p")


def frame(t_ns: int, seq: int = 0, name: str = "cam") -> VideoFrame:
    return VideoFrame(name, t_ns, _IMG, seq)


def test_ticks_are_exact_and_do_not_drift():
    t = TickClock(30, start_ns=5_000)
    ten_hours = 30 * 3600 * 10
    assert t.output_ns(0) == 0 and t.output_ns(1) == 33_333_333 and t.output_ns(3) == 100_000_000
    assert t.output_ns(ten_hours) == 36_000 * NS  # exactly 10 h: no accumulated rounding
    assert t.due_ns(ten_hours) == 5_000 + 36_000 * NS
    ntsc = TickClock("30000/1001", start_ns=0)
    assert ntsc.output_ns(30000 * 3600) == round(Fraction(30000 * 3600 * 1001, 30000) * NS)
    assert t.ticks_for(20) == 600 and t.ticks_for(20.01) == 601
    assert t.ticks_before(4_999) == 0 and t.ticks_before(5_000) == 1 and t.ticks_before(5_000 + 33_333_334) == 2


def test_newest_frame_at_or_before_the_tick():
    sel = FrameSelector("cam", timeout_ns=NS)
    for i in range(13):  # 60 fps source, frames at i * 16.67 ms
        sel.push(frame(i * NS // 60, i))
    tick = TickClock(30, 0)
    shown = [sel.select(tick.due_ns(k)).seq for k in range(6)]
    assert shown == [0, 2, 4, 6, 8, 10]  # the frame exactly on the tick counts ("at or before")
    assert sel.dropped == 5 and sel.duplicated == 0 and sel.shown == 6


def test_slower_source_is_duplicated_not_waited_for():
    sel = FrameSelector("cam", timeout_ns=NS)
    for i in range(5):  # 25 fps: 0, 40, 80, 120, 160 ms
        sel.push(frame(i * 40_000_000, i))
    tick = TickClock(30, 0)
    shown = [sel.select(tick.due_ns(k)).seq for k in range(6)]  # ticks 0, 33, 67, 100, 133, 167 ms
    assert shown == [0, 0, 1, 2, 3, 4]
    assert sel.duplicated == 1 and sel.dropped == 0


def test_stale_source_gives_none_then_recovers():
    sel = FrameSelector("cam", timeout_ns=500_000_000)
    assert sel.select(0) is None and sel.stale  # nothing yet
    sel.push(frame(0, 0))
    assert sel.select(100_000_000).seq == 0
    assert sel.select(500_000_000) is not None  # exactly the timeout: still shown
    assert sel.select(600_000_000) is None and sel.stale
    sel.push(frame(900_000_000, 1))
    assert sel.select(800_000_000) is None  # captured after this tick: not yet
    assert sel.select(933_000_000).seq == 1 and not sel.stale
    assert sel.stale_ticks == 3


def test_out_of_order_and_overflow_are_dropped_and_bounded():
    sel = FrameSelector("cam", timeout_ns=NS, max_pending=4)
    sel.push(frame(100, 0))
    sel.push(frame(50, 1))  # capture time going back
    for i in range(2, 10):
        sel.push(frame(100 + i, i))
    assert sel.dropped == 1 + 5 and len(sel._pending) == 4
    assert sel.select(10**6).seq == 9


def chunk(t_ns: int, n: int, value: float = 1.0, rate: int = 48000, ch: int = 1) -> AudioChunk:
    return AudioChunk("mic", t_ns, np.full((ch, n), value, np.float32), rate)


def test_audio_is_placed_by_capture_time():
    al = AudioAligner(48000, 1, start_ns=1 * NS)
    al.push(chunk(1 * NS - 10_000_000, 960, 0.1))  # 10 ms before the start: first 480 samples trimmed
    al.push(chunk(1 * NS + 10_000_000, 960, 0.2))
    block, t = al.pull(20_000_000)
    assert t == 0 and block.shape == (1, 960)
    assert np.all(block[0, :480] == np.float32(0.1)) and np.all(block[0, 480:] == np.float32(0.2))
    assert al.trimmed_samples == 480
    # a 100 ms gap in capture (device hiccup) becomes silence; later audio stays in its place
    al.push(chunk(1 * NS + 120_000_000, 4800, 0.5))
    block, t = al.pull(220_000_000)
    assert t == 20_000_000 and block.shape == (1, 9600)
    assert np.all(block[0, :480] == np.float32(0.2)) and np.all(block[0, 480:4800] == 0)
    assert np.all(block[0, 4800:] == np.float32(0.5))
    assert al.gap_samples == 4320 and al.offset_ns == 0


def test_capture_jitter_within_tolerance_stays_contiguous():
    al = AudioAligner(48000, 1, start_ns=0, tolerance_ns=20_000_000)
    rng = np.random.default_rng(1)
    for k in range(100):  # 1024-sample chunks stamped with +-5 ms jitter
        jitter = int(rng.integers(-5_000_000, 5_000_000)) if k else 0
        al.push(chunk(k * 1024 * NS // 48000 + jitter, 1024, 0.3))
    block, _ = al.pull(100 * 1024 * NS // 48000)
    assert np.all(block == np.float32(0.3)) and al.gap_samples == 0
    assert abs(al.offset_ns) <= 5_000_000


def test_drift_beyond_tolerance_is_corrected():
    al = AudioAligner(48000, 1, start_ns=0, tolerance_ns=20_000_000)
    for k in range(50):  # a device clock 1 % slow: chunks are stamped later and later
        al.push(chunk(round(k * 1024 * NS / 48000 * 1.01), 1024, 0.3))
    block, _ = al.pull(2 * NS)
    assert al.gap_samples > 0  # realigned: silence inserted rather than drifting
    assert abs(al.offset_ns) <= 20_000_000


def test_overlap_is_trimmed():
    al = AudioAligner(48000, 1, start_ns=0, tolerance_ns=1_000_000)
    al.push(chunk(0, 4800, 0.1))
    al.push(chunk(50_000_000, 4800, 0.2))  # starts 50 ms before the first ended
    block, _ = al.pull(200_000_000)
    assert np.all(block[0, :4800] == np.float32(0.1))
    assert np.all(block[0, 4800:7200] == np.float32(0.2))  # overlap samples not played twice
    assert al.trimmed_samples == 2400


def test_channels_and_rate():
    al = AudioAligner(48000, 2, start_ns=0)
    al.push(chunk(0, 480, 0.5, ch=1))  # mono -> both channels
    block, _ = al.pull(10_000_000)
    assert block.shape == (2, 480) and np.all(block == np.float32(0.5))


def test_other_rate_is_resampled_in_place_not_rejected():
    """A 44.1 kHz device in a 48 kHz recording: the 1 kHz tone keeps its pitch and its place."""
    al = AudioAligner(48000, 1, start_ns=0)
    n, rate = 441, 44100
    for k in range(100):  # 1 s in 10 ms chunks, starting 0.5 s into the recording
        i = np.arange(k * n, (k + 1) * n)
        tone = (0.5 * np.sin(2 * np.pi * 1000 * i / rate)).astype(np.float32)[None]
        al.push(AudioChunk("mic", 500_000_000 + k * 10_000_000, tone, rate))
    block, t0 = al.pull(2_000_000_000)
    assert t0 == 0 and block.shape == (1, 96000) and al.resampled_from == [44100]
    loud = np.flatnonzero(np.abs(block[0]) > 0.1)
    assert abs(loud[0] - 24000) <= 48 and abs(loud[-1] - 72000) <= 48  # 0.5 s .. 1.5 s, within 1 ms
    seg = block[0, 24000:72000]
    pitch = np.argmax(np.abs(np.fft.rfft(seg))) * 48000 / len(seg)
    assert abs(pitch - 1000) <= 1, pitch  # mislabelled 44.1 kHz samples would sound at 1088 Hz
    assert al.stats()["resampled_from"] == [44100]
