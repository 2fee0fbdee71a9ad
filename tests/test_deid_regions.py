"""Region specs for de-identification: parsing, clipping, and ``auto`` from recording layout metadata."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from surgbox.deid.regions import RegionSpec, layout_from_metadata, layout_from_sidecar, parse_region_spec, resolve_regions
from surgbox.errors import ConfigError
from surgbox.types import Layout, Rect, Slot

LAYOUT = Layout(1920, 1080, [
    Slot("endo", Rect(0, 0, 1280, 720), source="endo"),
    Slot("room", Rect(1280, 0, 640, 360), source="room", role="room_camera"),
    Slot("panel", Rect(1280, 360, 640, 360), kind="panel"),
], name="paper")


def test_parse_keywords_and_rectangles():
    assert parse_region_spec("auto") == RegionSpec("auto")
    assert parse_region_spec(" FULL ") == RegionSpec("full")
    assert parse_region_spec("1280,0,640,360").rects == (Rect(1280, 0, 640, 360),)
    assert parse_region_spec("0,0,10,10; 20, 20, 5, 6").rects == (Rect(0, 0, 10, 10), Rect(20, 20, 5, 6))
    assert parse_region_spec(Rect(1, 2, 3, 4)).rects == (Rect(1, 2, 3, 4),)


@pytest.mark.parametrize("text", ["", ";", "1,2,3", "a,b,c,d", "0,0,0,10", "0,0,10,-1", "-1,0,10,10", "1,2,3,4;x", "1.5,0,10,10"])
def test_parse_errors_name_the_text_and_the_form(text):
    with pytest.raises(ConfigError) as e:
        parse_region_spec(text)
    assert "X,Y,W,H" in str(e.value)


def test_explicit_rectangles_are_clipped_and_outside_ones_rejected():
    rects, origin = resolve_regions("1800,1000,400,400", 1920, 1080)
    assert origin == "explicit" and rects == [Rect(1800, 1000, 120, 80)]
    with pytest.raises(ConfigError, match="outside the 1920x1080 picture"):
        resolve_regions("2000,0,10,10", 1920, 1080)


def test_full_and_auto_without_layout_scan_the_whole_frame():
    assert resolve_regions("full", 640, 360) == ([Rect(0, 0, 640, 360)], "full")
    assert resolve_regions("auto", 640, 360, metadata={"title": "x"}) == ([Rect(0, 0, 640, 360)], "auto-full")


def test_auto_uses_room_camera_slot_from_metadata_and_scales_it():
    md = {"surgbox_layout": json.dumps(LAYOUT.to_dict())}
    assert layout_from_metadata(md) == LAYOUT
    assert resolve_regions("auto", 1920, 1080, metadata=md) == ([Rect(1280, 0, 640, 360)], "layout")
    # a half-size re-encode of the recording keeps the slot in the same place of the picture
    assert resolve_regions("auto", 960, 540, metadata=md)[0] == [Rect(640, 0, 320, 180)]


def test_auto_without_room_camera_slot_or_with_bad_json_falls_back_to_full():
    no_room = Layout(64, 64, [Slot("a", Rect(0, 0, 32, 32))])
    assert resolve_regions("auto", 64, 64, metadata={"surgbox_layout": json.dumps(no_room.to_dict())})[1] == "auto-full"
    assert layout_from_metadata({"surgbox_layout": "{not json"}) is None
    assert layout_from_metadata({"surgbox_layout": json.dumps({"width": 10})}) is None


def test_auto_reads_the_sidecar(tmp_path):
    video = tmp_path / "rec.mp4"
    (tmp_path / "rec.mp4.json").write_text(json.dumps({"event": "e1", "layout": LAYOUT.to_dict()}))
    assert layout_from_sidecar(video) == LAYOUT
    assert resolve_regions("auto", 1920, 1080, path=video) == ([Rect(1280, 0, 640, 360)], "layout")
    (tmp_path / "other.mp4.json").write_text("garbage")
    assert layout_from_sidecar(tmp_path / "other.mp4") is None


def test_auto_reads_layout_from_real_mp4_container_metadata(tmp_path):
    """The recorder stores the layout as an MP4 metadata tag; read it back through FFmpeg."""
    path = tmp_path / "rec.mp4"
    out = av.open(str(path), "w", options={"movflags": "use_metadata_tags"})
    out.metadata["surgbox_layout"] = json.dumps(LAYOUT.to_dict())
    s = out.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = 192, 108, "yuv420p"
    for i in range(3):
        f = av.VideoFrame.from_ndarray(np.zeros((108, 192, 3), np.uint8), format="rgb24")
        f.pts = i
        out.mux(s.encode(f))
    out.mux(s.encode())
    out.close()
    with av.open(str(path)) as c:
        md = dict(c.metadata)
    rects, origin = resolve_regions("auto", 192, 108, metadata=md)
    assert origin == "layout" and rects == [Rect(128, 0, 64, 36)]
