"""The recorder's live preview tap (surgbox.recording.preview) with the real recorder and encoder."""

from __future__ import annotations

import io
import time

import av
import numpy as np
import pytest
from PIL import Image

from surgbox.config import RecordConfig
from surgbox.recording import PreviewTap

CONFIG = {"fps": 10, "encoder": {"plugin": "libx264", "preset": "ultrafast"}, "layout": {"preset": "single", "sources": {"main": "cam"}},
          "sources": {"cam": {"plugin": "testsrc", "width": 320, "height": 180, "fps": 10}}}


def frame(value: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((180, 320, 3), value, np.uint8), format="rgb24")


def test_no_picture_is_made_while_nobody_watches():
    tap = PreviewTap(max_fps=100, width=160, idle_s=0.3)
    try:
        tap.offer(frame(10), {"bis": 1}, 0)
        time.sleep(0.2)
        assert tap.encoded == 0 and tap.peek() is None and not tap.watched
        assert tap.readings == {"bis": 1}  # the newest values are kept even unwatched
        assert tap.latest() is None and tap.watched  # asking counts as demand
        tap.offer(frame(200), {}, 100)
        got = tap.wait(after=0, timeout=5)
        assert got is not None and got.seq == 1 and got.time_ns == 100 and (got.width, got.height) == (160, 90)
        pixel = Image.open(io.BytesIO(got.jpeg)).convert("L").getpixel((80, 45))
        assert abs(pixel - 200) < 8
        time.sleep(0.4)  # demand expired
        tap.offer(frame(50), {}, 200)
        time.sleep(0.2)
        assert tap.encoded == 1
    finally:
        tap.close()


def test_max_fps_bounds_the_pictures_made():
    tap = PreviewTap(max_fps=4, width=64)
    try:
        tap.want()
        end = time.monotonic() + 1.0
        n = 0
        while time.monotonic() < end:
            tap.offer(frame(n % 255), {}, n)
            n += 1
            tap.want()
            time.sleep(0.005)
        time.sleep(0.3)
        assert n > 50 and 3 <= tap.encoded <= 6, (n, tap.encoded)
    finally:
        tap.close()


@pytest.mark.parametrize("bad", ["width", "max_fps"])
def test_bad_options(bad):
    with pytest.raises(ValueError, match=bad):
        PreviewTap(**{bad: 0})


def test_recorder_feeds_the_tap_and_a_failing_preview_never_stops_the_recording(tmp_path):
    cfg = RecordConfig.from_mapping(CONFIG)
    tap = PreviewTap(max_fps=5, width=320)
    rec = cfg.build_recorder(output=str(tmp_path / "a.mp4"), duration=2.0, preview=tap)
    rec.start()
    try:
        got = tap.wait(after=0, timeout=20)
        assert got is not None and got.width == 320
        later = tap.wait(after=got.seq, timeout=20)
        assert later is not None and later.time_ns > got.time_ns
    finally:
        rec.wait(30)
        stats = rec.stop()
        tap.close()
    assert stats["frames"] >= 15

    class Broken(PreviewTap):
        def offer(self, *a, **k):
            raise RuntimeError("preview broke")

    broken = Broken()
    rec = cfg.build_recorder(output=str(tmp_path / "b.mp4"), duration=1.5, preview=broken)
    rec.start()
    rec.wait(30)
    stats = rec.stop()
    assert stats["frames"] >= 12  # recorded to the end
