"""The GStreamer sources for real (profile cpu): frames, clock stamps, drop-oldest, errors, reconnect."""

from __future__ import annotations

import time

import numpy as np
import pytest
from gst_support import needs_elements

from surgbox.clock import Clock
from surgbox.errors import SourceError
from surgbox.types import VideoFrame
from surgbox_ext.gst.source import GstPipelineSource, GstTestSource, GstUriSource, GstV4L2Source

pytestmark = needs_elements("videotestsrc", "videoconvert", "videoscale", "appsink")


class ShiftedClock(Clock):
    """A master clock whose readings are 1000 s ahead of time.monotonic_ns: stamps must be on it."""

    def now_ns(self) -> int:
        return time.monotonic_ns() + 1000 * 1_000_000_000


def frames_of(src, n, timeout=10.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        item = src.get(0.5)
        if item is not None:
            out.append((item, src.clock.now_ns()))
    assert len(out) == n, f"got {len(out)} of {n} frames; stats {src.stats()}, error {src.error}"
    return out


def test_frames_are_yuv420p_video_frames_stamped_on_the_master_clock_at_capture():
    clock = ShiftedClock()
    src = GstTestSource(name="cam", width=320, height=240, fps=20)
    src.start(clock)
    try:
        got = frames_of(src, 12)
    finally:
        src.stop()
    for item, taken in got:
        assert isinstance(item, VideoFrame) and item.source == "cam"
        assert (item.image.format.name, item.width, item.height) == ("yuv420p", 320, 240)
        assert 0 <= taken - item.capture_ns < 2_000_000_000  # on the shifted clock, at or before hand-over
    times = [i.capture_ns for i, _ in got]
    steps = np.diff(times[2:]) / 1e6  # ms; the first frames are the pipeline starting up
    assert np.all(np.abs(steps - 50) < 15), steps  # 20 fps as the pipeline clock produced them
    assert [i.seq for i, _ in got] == list(range(12))
    y = got[-1][0].image.to_ndarray()[:240]
    assert y.std() > 20  # colour bars, not an empty picture


def test_timestamps_come_from_the_clock_not_from_counting_frames():
    """A 0.6 s pause of the pipeline shows as a 0.6 s gap between two consecutive frames."""
    Gst = pytest.importorskip("gi.repository.Gst")
    src = GstTestSource(name="cam", width=160, height=120, fps=25)
    src.start(Clock())
    try:
        before = frames_of(src, 5)
        src.pipeline.set_state(Gst.State.PAUSED)
        time.sleep(0.6)
        while src.get(0) is not None:  # what was queued before the pause
            pass
        src.pipeline.set_state(Gst.State.PLAYING)
        after = frames_of(src, 3)
    finally:
        src.stop()
    gap = (after[0][0].capture_ns - before[-1][0].capture_ns) / 1e9
    assert gap > 0.5, gap  # counting would give 0.04 s
    assert after[0][0].seq - before[-1][0].seq <= 3


def test_a_slow_consumer_drops_the_oldest_frames_and_keeps_the_newest():
    src = GstTestSource(name="cam", width=160, height=120, fps=30, queue_size=3)
    src.start(Clock())
    try:
        time.sleep(1.5)  # nobody consumes: about 45 frames arrive, the queue holds 3
        stats = src.stats()
        newest = [src.get(0) for _ in range(3)]
        now = src.clock.now_ns()
    finally:
        src.stop()
    assert stats["queued"] == 3 and stats["dropped"] >= 20 and stats["captured"] == stats["dropped"] + 3
    seqs = [f.seq for f in newest]
    assert seqs == sorted(seqs) and seqs[-1] - seqs[0] == 2  # the three newest, in order
    assert now - newest[-1].capture_ns < 500_000_000  # recent, not the frames of the first second


def test_missing_device_and_a_pipeline_that_will_not_start_give_one_clear_line(tmp_path):
    with pytest.raises(SourceError, match=r"source 'endo' \(v4l2src /dev/video97\): /dev/video97 does not exist; connect"):
        GstV4L2Source(name="endo", device="/dev/video97").start(Clock())
    with pytest.raises(SourceError, match=r"could not start: .*(Resource not found|No such file).*check that the URI exists"):
        GstUriSource(name="room", uri=(tmp_path / "missing.mp4").as_uri()).start(Clock())
    with pytest.raises(SourceError, match="no element \"nosuchsrc\""):
        GstPipelineSource(name="x", launch="nosuchsrc ! videoconvert").start(Clock())
    with pytest.raises(ValueError, match="is not a URI"):
        GstUriSource(name="room", uri="case.mp4")


def test_a_pipeline_that_gives_no_frame_times_out_at_start():
    src = GstPipelineSource(name="x", launch="videotestsrc is-live=true ! video/x-raw,framerate=1/1 ! identity sleep-time=3000000",
                            open_timeout_s=0.5)
    with pytest.raises(SourceError, match=r"gave no frame within 0.5 s \(the pipeline did not preroll\)"):
        src.start(Clock())


@needs_elements("uridecodebin", "qtdemux", "avdec_h264")
def test_uri_source_plays_a_file_as_live_and_reconnects_at_its_end(tmp_path):
    from surgbox_ext.encoders import X264Encoder

    clip = tmp_path / "clip.mp4"
    enc = X264Encoder(preset="ultrafast")
    enc.open_output(str(clip), width=160, height=120, fps=10)
    for k in range(5):  # 0.5 s
        enc.write_video(np.full((120, 160, 3), 40 * k, np.uint8), k * 100_000_000)
    enc.close()
    src = GstUriSource(name="room", uri=clip.as_uri(), backoff_initial_s=0.2)
    src.start(Clock())
    try:
        got = frames_of(src, 12, timeout=20)
    finally:
        src.stop()
    assert src.stats()["reconnects"] >= 2 and src.error is None
    assert all((i.width, i.height, i.image.format.name) == (160, 120, "yuv420p") for i, _ in got)
    first_pass = [i.capture_ns for i, _ in got[:5]]
    assert np.all(np.abs(np.diff(first_pass) / 1e6 - 100) < 40)  # paced at the file's 10 fps, not decoded at once


def test_uri_credentials_never_reach_an_error_message():
    src = GstUriSource(name="room", uri="rtsp://admin:s3cret@127.0.0.1:9/stream", open_timeout_s=3)
    with pytest.raises(SourceError) as err:
        src.start(Clock())
    assert "s3cret" not in str(err.value) and "***@" in str(err.value)
