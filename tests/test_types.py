"""Value types: validation, geometry, detections arrays, layout round trips."""

from __future__ import annotations

import numpy as np
import pytest

from surgbox.types import AudioChunk, Detection, Detections, Layout, Rect, Slot, VideoFrame


def test_rect_geometry_and_parse():
    r = Rect.parse("1280, 0, 640, 360")
    assert r.as_xyxy() == (1280, 0, 1920, 360) and r.area == 640 * 360
    assert Rect(0, 0, 1920, 1080).contains(r) and not r.contains(Rect(0, 0, 1920, 1080))
    assert Rect(0, 0, 640, 360).fit_inside(1280, 720) == Rect(0, 0, 640, 360)
    assert Rect(0, 0, 640, 480).fit_inside(1920, 1080) == Rect(0, 60, 640, 360)
    for bad in ["1,2,3", "a,b,c,d", "1,2,3,4,5"]:
        with pytest.raises(ValueError, match="X,Y,W,H"):
            Rect.parse(bad)
    with pytest.raises(ValueError, match="width must be > 0"):
        Rect(0, 0, 0, 10)
    with pytest.raises(ValueError, match="x must be >= 0"):
        Rect(-1, 0, 1, 1)


def test_layout_validates_and_round_trips():
    layout = Layout(
        1920,
        1080,
        [Slot("endo", Rect(0, 0, 1280, 720), source="endo"), Slot("room", Rect(1280, 0, 640, 360), source="cam", role="room_camera"),
         Slot("panel", Rect(0, 720, 1920, 360), kind="panel")],
        name="paper",
    )
    again = Layout.from_mapping(layout.to_dict())
    assert again == layout
    assert [s.name for s in layout.slots_with_role("room_camera")] == ["room"]
    with pytest.raises(KeyError, match="slots: endo, room, panel"):
        layout.slot("nope")
    with pytest.raises(ValueError, match="outside the 1920x1080 canvas"):
        Layout(1920, 1080, [Slot("x", Rect(1800, 0, 200, 100))])
    with pytest.raises(ValueError, match="used twice"):
        Layout(100, 100, [Slot("a", Rect(0, 0, 10, 10)), Slot("a", Rect(0, 0, 10, 10))])
    with pytest.raises(ValueError, match="must be in"):
        Slot("a", Rect(0, 0, 1, 1), kind="hologram")


def test_detections_arrays_shift_scale_and_json():
    d = Detections.from_list([Detection((10, 20, 30, 40), 0.9, tuple((float(i), float(i)) for i in range(5))), Detection((0, 0, 5, 5), 0.5, tuple((0.0, 0.0) for _ in range(5)))])
    assert len(d) == 2 and d.boxes.dtype == np.float32 and d.landmarks.shape == (2, 5, 2)
    moved = d.shifted(100, 200).scaled(0.5)
    np.testing.assert_allclose(moved.boxes[0], [55, 110, 65, 120])
    np.testing.assert_allclose(moved.landmarks[0, 1], [50.5, 100.5])
    js = d.to_list()
    assert js[0]["box"] == [10.0, 20.0, 30.0, 40.0] and js[0]["score"] == pytest.approx(0.9) and len(js[0]["landmarks"]) == 5
    assert len(Detections.empty()) == 0 and list(Detections.empty()) == []
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        Detections([[0, 0, 1, 1], [0, 0, 2, 2]], [0.1])


def test_video_frame_from_ndarray_round_trip():
    rgb = np.zeros((36, 64, 3), np.uint8)
    rgb[..., 0] = 200
    f = VideoFrame.from_ndarray("cam", 123, rgb, seq=7)
    assert (f.width, f.height, f.seq, f.capture_ns) == (64, 36, 7, 123)
    np.testing.assert_array_equal(f.to_ndarray(), rgb)


def test_audio_chunk_duration_and_shape_check():
    a = AudioChunk("mic", 1_000, np.zeros((2, 480), np.float32), 48000)
    assert a.channels == 2 and a.duration_ns == 10_000_000 and a.end_ns == 10_001_000
    with pytest.raises(ValueError, match=r"\(channels, n\)"):
        AudioChunk("mic", 0, np.zeros(10, np.float32), 48000)
