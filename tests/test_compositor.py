"""The default compositor: YUV 4:2:0 composition, aspect-preserving fit, slates, cached panel."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from surgbox import layouts
from surgbox.types import Layout, Reading, Rect, Slot, VideoFrame
from surgbox_ext.compositor import DefaultCompositor, render_panel, render_slate


def solid(name: str, w: int, h: int, yuv: tuple[int, int, int], seq: int = 0) -> VideoFrame:
    f = av.VideoFrame(w, h, "yuv420p")
    for p, v in zip(f.planes, yuv):
        np.frombuffer(p, np.uint8)[:] = v
    return VideoFrame(name, seq, f, seq)


def luma(frame) -> np.ndarray:
    return frame.to_ndarray(format="yuv420p")[: frame.height]


@pytest.fixture
def comp():
    c = DefaultCompositor()
    c.configure(layouts.paper())
    return c


def test_output_is_1080p_yuv420p_with_sources_in_their_slots(comp):
    frames = {
        "endoscope": solid("endoscope", 1280, 720, (180, 128, 128)),
        "room": solid("room", 1920, 1080, (100, 90, 200)),
        "vitals": solid("vitals", 640, 360, (60, 200, 90)),
    }
    out = comp.compose(frames, {}, {"id": "ev-1"}, 0)
    assert (out.width, out.height, out.format.name) == (1920, 1080, "yuv420p")
    y = luma(out)
    assert np.all(y[:720, :1280] == 180)
    assert np.all(y[:360, 1280:] == 100)  # 1920x1080 scaled to 640x360 by swscale
    assert np.all(y[360:720, 1280:] == 60)
    u = out.to_ndarray(format="yuv420p")[1080:1080 + 270].reshape(540, 960)
    assert np.all(u[:180, 640:] == 90)


def test_aspect_is_preserved_with_black_bars(comp):
    # 4:3 into the 16:9 room slot (640x360): 480x360 centred, 80-pixel black bars each side
    out = comp.compose({"room": solid("room", 800, 600, (200, 128, 128))}, {}, {}, 0)
    y = luma(out)[:360, 1280:1920]
    assert np.all(y[:, 80:560] == 200)
    assert np.all(y[:, :80] == 16) and np.all(y[:, 560:] == 16)
    # the same slot then gets a 16:9 source: bars disappear
    out = comp.compose({"room": solid("room", 1280, 720, (150, 128, 128), seq=1)}, {}, {}, 33_000_000)
    assert np.all(luma(out)[:360, 1280:1920] == 150)


def slate_luma(name: str, w: int, h: int) -> np.ndarray:
    return av.VideoFrame.from_image(render_slate(name, w, h)).reformat(format="yuv420p").to_ndarray()[:h]


def test_no_signal_slate_for_stale_source_and_recovery(comp):
    live = {"endoscope": solid("endoscope", 1280, 720, (180, 128, 128), 1)}
    comp.compose(live, {}, {}, 0)
    out = comp.compose({"endoscope": None}, {}, {}, 33_000_000)
    y = luma(out)[:720, :1280]
    expected = slate_luma("endoscope", 1280, 720)
    assert np.abs(y.astype(int) - expected).mean() < 1.0
    assert (y > 200).mean() > 0.01  # white "NO SIGNAL" text is there
    out = comp.compose({"endoscope": solid("endoscope", 1280, 720, (90, 128, 128), 2)}, {}, {}, 66_000_000)
    assert np.all(luma(out)[:720, :1280] == 90)  # recovered


def test_slate_names_the_source():
    a = np.asarray(render_slate("room", 640, 360))
    b = np.asarray(render_slate("endoscope", 640, 360))
    assert a.shape == (360, 640, 3) and (a != b).any()


def test_panel_shows_readings_and_is_rendered_only_on_change(comp):
    bis = Reading("bis", 0, "bis", {"BIS": 45.0, "SQI": 90.0, "EMG": 30.0, "SR": 0.0})
    ev = {"id": "ev-7", "place": "OR 3", "procedure": "lap chole"}
    a = comp.compose({}, {"bis": bis}, ev, 0)
    for k in range(1, 29):  # same second, same values: no re-render
        comp.compose({}, {"bis": bis}, ev, k * 33_333_333)
    assert comp.renders == 1
    b = comp.compose({}, {"bis": Reading("bis", 1, "bis", {"BIS": 62.0, "SQI": 90.0, "EMG": 30.0, "SR": 0.0})}, ev, 999_000_000)
    assert comp.renders == 2
    panel = (slice(720, 1080), slice(0, 1920))
    assert (luma(a)[panel] != luma(b)[panel]).any()
    comp.compose({}, {"bis": bis}, ev, 1_000_000_000)  # next second: the REC clock changes
    assert comp.renders == 3


def _panel_pixels() -> np.ndarray:
    img = render_panel(1920, 360, {"bis": Reading("bis", 0, "bis", {"BIS": 45.0, "SR": None})}, {"id": "ev-1"}, 5_000_000_000)
    return np.asarray(img.convert("L"))


def test_panel_text_uses_the_bundled_dejavu_font(monkeypatch):
    from surgbox import fonts
    from surgbox_ext.compositor import load_font

    for bold, name in ((False, "DejaVuSans.ttf"), (True, "DejaVuSans-Bold.ttf")):
        font = load_font(40, bold=bold)
        assert Path(font.path) == fonts.BUNDLED_DIR / name and font.getname()[0] == "DejaVu Sans"
    a = _panel_pixels()
    assert len(np.unique(a[a > 40])) > 20  # anti-aliased FreeType text
    try:
        monkeypatch.setattr(fonts, "FONT_DIRS", (fonts.BUNDLED_DIR,))  # nothing but the bundled files
        fonts.load.cache_clear()
        bundled = _panel_pixels()
        monkeypatch.setattr(fonts, "FONT_DIRS", ())  # no DejaVu at all: Pillow's own FreeType font
        fonts.load.cache_clear()
        fallback = _panel_pixels()
    finally:
        fonts.load.cache_clear()
    assert np.array_equal(a, bundled)
    assert not np.array_equal(a, fallback)  # so the comparison above can tell the fonts apart


def test_explicit_layout_with_odd_rect_is_handled():
    lay = Layout(640, 360, (Slot("a", Rect(1, 1, 319, 179), "video", "a"), Slot("p", Rect(320, 0, 320, 360), "panel")))
    c = DefaultCompositor()
    c.configure(lay)
    out = c.compose({"a": solid("a", 320, 180, (200, 128, 128))}, {}, {}, 0)
    assert (out.width, out.height) == (640, 360)
    with pytest.raises(ValueError, match="even"):
        DefaultCompositor().configure(Layout(641, 360, ()))


def test_registered_as_default(default_plugins):
    c = default_plugins.create("compositor", "default")
    assert isinstance(c, DefaultCompositor)
