"""testsrc and tone: pacing on the master clock, white frames and beeps at the 2 s multiples.

One real-time run (~4.6 s, both sources together) checks the live behaviour; a manual clock
checks the schedule over minutes of capture time without waiting for it.
"""

from __future__ import annotations

import time
from fractions import Fraction

import attrs
import av
import numpy as np
import pytest

from surgbox.clock import NS_PER_S, Clock
from surgbox_ext.sources.testsrc import TestSource
from surgbox_ext.sources.tone import ToneSource

PERIOD = 2 * NS_PER_S


@attrs.define(eq=False)
class ManualClock(Clock):
    """A clock whose time moves only when someone sleeps on it (deterministic schedules)."""

    t: int = 0

    def now_ns(self) -> int:
        return self.t

    def sleep_until(self, ns: int) -> None:
        self.t = max(self.t, ns)


def is_white(frame, y_min: int = 235) -> bool:
    """Every luma sample >= ``y_min`` (235 = limited-range white) and neutral chroma."""
    y = frame.to_ndarray("yuv420p")  # (h * 3 / 2, w): Y then U, V
    h = frame.height
    return bool(y[:h].min() >= y_min and np.all(np.abs(y[h:].astype(int) - 128) <= 2))


def expected_flashes(clock: Clock, times: list[int]) -> list[bool]:
    """The first frame whose capture time is >= each 2 s multiple at or after the start is white."""
    prev = [times[0] - 1, *times[:-1]]
    return [clock.elapsed_ns(t) // PERIOD > clock.elapsed_ns(p) // PERIOD for p, t in zip(prev, times)]


@pytest.fixture(scope="module")
def live_run():
    """testsrc (30 fps) and tone run together in real time for ~4.6 s, every item kept with its
    arrival time; beside them a reference thread that just sleeps on the same 1/30 s grid (what
    this machine's scheduler allows right now: the baseline for lateness)."""
    import threading

    clock = Clock()
    video = TestSource("cam", width=320, height=240, fps=30, queue_size=400)
    audio = ToneSource("mic", queue_size=400)
    reference: list[int] = []
    stop = threading.Event()

    def sleeper() -> None:
        k = -(-clock.elapsed_ns() * 30 // NS_PER_S)
        while not stop.is_set():
            due = clock.origin_ns + k * NS_PER_S // 30
            clock.sleep_until(due)
            reference.append(clock.now_ns() - due)
            k += 1

    ref = threading.Thread(target=sleeper, daemon=True)
    ref.start()
    video.start(clock)
    audio.start(clock)
    frames, chunks = [], []
    deadline = time.monotonic() + 4.6
    while time.monotonic() < deadline:
        item = video.get(timeout=0.005)
        if item is not None:
            frames.append((clock.now_ns(), item))
        while (chunk := audio.get()) is not None:
            chunks.append((clock.now_ns(), chunk))
    video.stop()
    audio.stop()
    stop.set()
    ref.join(2)
    return clock, video, audio, frames, chunks, np.array(reference, dtype=np.int64)


def test_testsrc_paces_on_exact_capture_times_without_drift(live_run):
    clock, video, _, frames, _, reference = live_run
    assert video.error is None and video.stats()["dropped"] == 0
    seqs = [f.seq for _, f in frames]
    assert seqs == sorted(set(seqs)), "frames reordered or repeated"
    # every grid point of the run was either delivered or counted as skipped (a starved thread
    # skips ahead to the newest due frame, and says so)
    assert seqs[-1] - seqs[0] + 1 == len(frames) + video.stats()["skipped"]
    assert len(frames) >= 0.5 * (seqs[-1] - seqs[0] + 1) and seqs[-1] - seqs[0] >= 60  # >= 2 s of the run delivered
    for _, f in frames:
        # exact schedule on the clock's own 1/fps grid, integer ns
        assert f.capture_ns == clock.origin_ns + f.seq * NS_PER_S // 30
    arrivals = np.array([a for a, _ in frames], dtype=np.int64)
    captures = np.array([f.capture_ns for _, f in frames], dtype=np.int64)
    lateness = arrivals - captures
    assert lateness.min() >= 0, "a frame was released before its capture time"
    # No drift: lateness (release after the capture time) does not grow over the run more than
    # the scheduler's own (a thread sleeping on the same grid, measured meanwhile) does; medians
    # of the first and last quarter, so one frame delayed by a busy machine does not count.
    def drift(x):
        q = max(1, len(x) // 4)
        return abs(float(np.median(x[-q:]) - np.median(x[:q])))

    assert len(reference) >= 30
    assert drift(lateness) <= 2 * drift(reference) + 20_000_000
    # released on time: no later than the scheduler allows a plain sleeper, plus the frame's drawing
    assert np.percentile(lateness, 75) <= 2 * np.percentile(reference, 75) + 30_000_000


def test_testsrc_white_frames_exactly_at_the_2s_multiples(live_run):
    clock, video, _, frames, _, _ = live_run
    times = [f.capture_ns for _, f in frames]
    want = expected_flashes(clock, times)
    got = [is_white(f.image) for _, f in frames]
    assert sum(want) >= 2
    assert got == want
    assert video.stats()["flashes"] == sum(want)
    for (_, f), white in zip(frames, got):
        if white:
            e = clock.elapsed_ns(f.capture_ns)
            assert 0 <= e % PERIOD < NS_PER_S // 30  # first frame at/after the multiple


def test_testsrc_picture_is_yuv420p_with_motion_and_changing_text(live_run):
    _, _, _, frames, _, _ = live_run
    normal = [f for _, f in frames if not is_white(f.image)]
    a, b = normal[0], normal[15]  # half a second apart
    assert a.image.format.name == "yuv420p" and (a.width, a.height) == (320, 240)
    ya, yb = (f.to_ndarray("yuv420p")[:240] for f in (a, b))
    # The time text patch (top-left, below the name) changes; the bars do not.
    assert not np.array_equal(ya[:60, :160], yb[:60, :160])
    assert np.array_equal(ya[:150, 200:], yb[:150, 200:])
    # The moving box (lower third) moved.
    assert not np.array_equal(ya[170:, :], yb[170:, :])
    patch = ya[20:45, 8:150]
    assert patch.min() <= 20 and patch.max() >= 220  # white text on black


def test_testsrc_frames_survive_h264_round_trip(live_run, tmp_path):
    """Encode the captured frames with libx264 and decode: white frames are still the flashes."""
    clock, _, _, frames, _, _ = live_run
    path = tmp_path / "testsrc.mp4"
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        st.width, st.height, st.pix_fmt = 320, 240, "yuv420p"
        for i, (_, f) in enumerate(frames):
            f.image.pts = i
            out.mux(st.encode(f.image))
        out.mux(st.encode())
    with av.open(str(path)) as inp:
        decoded = [is_white(fr, y_min=230) for fr in inp.decode(video=0)]  # lossy: 234..236
    assert decoded == expected_flashes(clock, [f.capture_ns for _, f in frames])


def test_tone_chunks_are_sample_continuous_on_the_clock(live_run):
    _, _, audio, _, chunks, _ = live_run
    assert audio.error is None and len(chunks) >= 4 * 48000 // 1024
    t0 = chunks[0][1].capture_ns
    for k, (arrival, c) in enumerate(chunks):
        assert c.samples.dtype == np.float32 and c.samples.shape == (1, 1024) and c.sample_rate == 48000
        assert c.capture_ns == t0 + k * 1024 * NS_PER_S // 48000
        assert arrival >= c.capture_ns + 1024 * NS_PER_S // 48000 - 1_000  # released after its last sample


def test_tone_beeps_start_at_the_sample_of_each_2s_multiple(live_run):
    clock, _, audio, _, chunks, _ = live_run
    t0 = chunks[0][1].capture_ns
    x = np.concatenate([c.samples[0] for _, c in chunks])
    onsets = [i for i in range(1, len(x)) if x[i] != 0 and x[i - 1] == 0 and (i < 2 or not x[i - 2])]
    # sin starts at phase 0: the beep's first sample is 0, the next one is sin(2*pi*1000/48000).
    starts = [i - 1 for i in onsets]
    first = t0 - clock.origin_ns
    multiples = range(-(-first // PERIOD), (first + len(x) * NS_PER_S // 48000) // PERIOD + 1)
    expected = [-(-(m * PERIOD - first) * 48000 // NS_PER_S) for m in multiples]
    expected = [i for i in expected if i + 2400 <= len(x)]
    assert len(expected) >= 2 and starts[: len(expected)] == expected
    for s in expected:
        beep = x[s : s + 2400]
        assert np.count_nonzero(x[s + 2400 : s + 4800]) == 0  # 50 ms long, then quiet
        assert abs(np.abs(beep).max() - 0.5) < 1e-3
        spectrum = np.abs(np.fft.rfft(beep))
        assert abs(np.argmax(spectrum) * 48000 / len(beep) - 1000) <= 20
    assert audio.stats()["beeps"] >= len(expected)


def test_flash_and_beep_share_the_clock(live_run):
    """At the source, each flash frame is captured at its beep's instant (both on the clock's grid)."""
    clock, _, _, frames, chunks, _ = live_run
    flashes = [f.capture_ns for _, f in frames if is_white(f.image)]
    t0 = chunks[0][1].capture_ns
    x = np.concatenate([c.samples[0] for _, c in chunks])
    beeps = [t0 + (i - 1) * NS_PER_S // 48000 for i in range(2, len(x)) if x[i] != 0 and x[i - 1] == 0 and x[i - 2] == 0]
    assert flashes and beeps
    for f in flashes:
        nearest = min(beeps, key=lambda b: abs(b - f))
        assert -1 <= nearest - f <= NS_PER_S // 48000  # same instant, to within one audio sample


@pytest.mark.parametrize("fps", [25, 30, Fraction(30000, 1001), 60])
def test_testsrc_schedule_over_minutes_on_a_manual_clock(fps):
    clock = ManualClock(origin_ns=0, t=123_456_789)
    src = TestSource("cam", width=64, height=64, fps=fps)
    src.clock = clock
    src._open()
    frames = [src._capture() for _ in range(int(130 * fps))]  # ~130 s of capture time
    times = [f.capture_ns for f in frames]
    k0 = frames[0].seq
    assert [f.seq for f in frames] == list(range(k0, k0 + len(frames)))
    period = Fraction(NS_PER_S) / Fraction(fps)
    assert times[0] >= 123_456_789 and times[0] - period < 123_456_789  # first grid point at/after start
    assert times[-1] == (k0 + len(frames) - 1) * NS_PER_S * Fraction(fps).denominator // Fraction(fps).numerator
    got = [is_white(f.image) for f in frames]
    assert got == expected_flashes(clock, times) and sum(got) == 65


def test_testsrc_skips_ahead_when_starved_and_still_flashes():
    clock = ManualClock(origin_ns=0, t=5)
    src = TestSource("cam", width=64, height=64, fps=30)
    src.clock = clock
    src._open()
    first = src._capture()
    clock.t = 1_990_000_005  # the thread was starved for ~2 s
    late = [src._capture() for _ in range(3)]
    assert src.stats()["skipped"] > 50
    assert [f.seq for f in late] == [59, 60, 61]  # resumes at the newest due frame of the clock grid
    assert [is_white(f.image) for f in late] == [False, True, False]  # 2.0 s marker still flashes once
    assert not is_white(first.image)


def test_testsrc_starting_exactly_on_a_multiple_flashes_first():
    clock = ManualClock(origin_ns=0, t=4 * NS_PER_S)
    src = TestSource("cam", width=64, height=64, fps=30)
    src.clock = clock
    src._open()
    assert [is_white(src._capture().image) for _ in range(3)] == [True, False, False]


def test_tone_over_minutes_on_a_manual_clock_has_one_beep_per_marker():
    clock = ManualClock(origin_ns=0, t=777)
    src = ToneSource("mic", sample_rate=44100, channels=2, chunk=441, noise=0.0)
    src.clock = clock
    src._open()
    x = np.concatenate([src._capture().samples for _ in range(6100)], axis=1)  # 61 s
    assert x.shape[0] == 2 and np.array_equal(x[0], x[1])
    starts = np.flatnonzero((x[0, 1:] != 0) & (x[0, :-1] == 0)) - 0  # index of the 2nd beep sample - 1
    assert len(starts) == 30  # markers at 2, 4, ..., 60 s
    for m, s in zip(range(1, 31), starts):
        expected = -(-(m * PERIOD - 777) * 44100 // NS_PER_S)
        assert s == expected  # flatnonzero index i means x[i+1] is the first non-zero: i is the beep's sample 0


def test_tone_noise_is_low_and_seeded():
    clock = ManualClock(origin_ns=0, t=10)
    a, b = (ToneSource("mic", noise=0.01, seed=3, beep_period_s=0) for _ in range(2))
    for s in (a, b):
        s.clock = clock
        s._open()
    xa, xb = a._capture().samples, b._capture().samples
    assert np.array_equal(xa, xb) and 0.005 < xa.std() < 0.02


@pytest.mark.parametrize(
    "cls, options, message",
    [
        (TestSource, {"width": 63}, "even number >= 64"),
        (TestSource, {"fps": 0}, "fps must be > 0"),
        (TestSource, {"fps": "abc"}, "fps must be a number like 30"),
        (ToneSource, {"amplitude": 2}, "within [0, 1]"),
        (ToneSource, {"sample_rate": 0}, "must be > 0"),
    ],
)
def test_bad_options_name_the_option(cls, options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cls("x", **options)
