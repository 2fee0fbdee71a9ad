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


# -- the data panel: formatting, alarm colours, fitting, field order, trend, start-up -------------------
from surgbox_ext.compositor import PANEL_FIELDS, event_rows, fit_text, format_field, panel_cells, panel_layout, severity  # noqa: E402
from surgbox_ext.compositor.geometry import blocks_for  # noqa: E402
from surgbox_ext.compositor.panel import PALETTE, chart_box  # noqa: E402
from surgbox_ext.compositor.text import draw_fitted  # noqa: E402
from surgbox_ext.compositor.trend import plot_area, time_x, value_y  # noqa: E402

BIS = {f.label: f for f in PANEL_FIELDS["bis"]}
LONG_EVENT = {"time": "2026-12-01 10:27:24", "procedure": "Laparoscopic cholecystectomy with intraoperative cholangiography",
              "id": "ev-2026-0001", "place": "OR 3", "surgeon": "Dr. A. Example", "anaesthetist": "Dr. B. Example"}
PANELS = {name: layouts.preset(name).slot("panel").rect for name in ("paper", "single", "side_by_side")}


def bis_reading(capture_ns: int = 0, **values) -> Reading:
    base = {"BIS": 45.0, "SQI": 92.0, "EMGLOW": 28.0, "SR": 0.0}
    base.update(values)
    return Reading("bis", capture_ns, "bis", base)


def rgb(img) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(int)


def colour_pixels(a: np.ndarray, box: Rect, colour, tol: int = 40) -> int:
    crop = a[box.y : box.y2, box.x : box.x2]
    return int((np.abs(crop - np.array(colour)).max(axis=2) < tol).sum())


def hue_pixels(a: np.ndarray, box: Rect, colour) -> int:
    """Pixels nearer to ``colour`` than to any other value colour and far from grey (survives 4:2:0)."""
    crop = a[box.y : box.y2, box.x : box.x2]
    palette = np.array([PALETTE.colours[k] for k in ("normal", "caution", "alarm")] + [PALETTE.card, PALETTE.band, PALETTE.bg])
    nearest = np.abs(crop[:, :, None, :] - palette[None, None]).sum(axis=3).argmin(axis=2)
    chroma = crop.max(axis=2) - crop.min(axis=2)
    return int(((palette[nearest] == np.array(colour)).all(axis=2) & (chroma > 80)).sum())


@pytest.mark.parametrize(("label", "value", "text", "unit"), [
    ("BIS", 45.4, "45", ""), ("BIS", 45.6, "46", ""), ("SQI", 92.6, "93", "%"), ("EMG", 36.2, "36", "dB"),
    ("SR", 0.0, "0", "%"), ("SR", 12.5, "12", "%"), ("EMG", None, "--", "dB"),
])
def test_values_are_written_as_the_monitor_shows_them(label, value, text, unit):
    spec = BIS[label]
    assert format_field(spec, {spec.name: value, "SQI": 92.0} if label != "SQI" else {spec.name: value}) == (text, unit)


def test_panel_cells_carry_units_in_bis_field_order():
    cells = panel_cells(1920, 360, {"bis": bis_reading(BIS=47.4, SQI=88.8, EMGLOW=31.2, SR=3.0)})
    assert [(c.label, c.text, c.unit) for c in cells] == [("BIS", "47", ""), ("SQI", "89", "%"), ("EMG", "31", "dB"), ("SR", "3", "%")]


@pytest.mark.parametrize(("values", "label", "expected"), [
    ({"BIS": 40.0}, "BIS", "normal"), ({"BIS": 60.4}, "BIS", "normal"),  # judged on the shown "60"
    ({"BIS": 39.4}, "BIS", "caution"), ({"BIS": 60.6}, "BIS", "caution"), ({"BIS": 95.0}, "BIS", "caution"),
    ({"SQI": 50.0}, "SQI", "normal"), ({"SQI": 49.0}, "SQI", "caution"), ({"SQI": 14.0}, "SQI", "alarm"),
    ({"EMGLOW": 30.0}, "EMG", "normal"), ({"EMGLOW": 31.0}, "EMG", "caution"), ({"EMGLOW": 56.0}, "EMG", "alarm"),
    ({"SR": 0.0}, "SR", "normal"), ({"SR": 1.0}, "SR", "caution"),
    ({"BIS": 50.0, "SQI": 40.0}, "BIS", "unreliable"), ({"SR": 5.0, "SQI": 40.0}, "SR", "unreliable"),
    ({"BIS": 50.0, "SQI": 10.0}, "BIS", "invalid"),  # the monitor blanks BIS below SQI 15
    ({"BIS": None}, "BIS", "invalid"),
])
def test_alarm_rule(values, label, expected):
    v = {"BIS": 50.0, "SQI": 90.0, "EMGLOW": 28.0, "SR": 0.0, **values}
    assert severity(BIS[label], v) == expected
    if expected == "invalid":
        assert format_field(BIS[label], v)[0] == "--"


def test_out_of_range_values_are_drawn_in_the_alarm_colours():
    calm = bis_reading(BIS=50.0, SQI=95.0, EMGLOW=28.0, SR=0.0)
    bad = bis_reading(BIS=72.0, SQI=95.0, EMGLOW=58.0, SR=4.0)
    boxes = {c.label: c.box for c in panel_cells(1920, 360, {"bis": calm})}
    a, b = (rgb(render_panel(1920, 360, {"bis": r}, {}, 0)) for r in (calm, bad))
    green, amber, red = PALETTE.colours["normal"], PALETTE.colours["caution"], PALETTE.colours["alarm"]
    for label in ("BIS", "EMG", "SR"):
        assert colour_pixels(a, boxes[label], green) > 50 and colour_pixels(a, boxes[label], amber) == 0
    assert colour_pixels(b, boxes["BIS"], amber) > 200 and colour_pixels(b, boxes["BIS"], green) == 0
    assert colour_pixels(b, boxes["SR"], amber) > 50
    assert colour_pixels(b, boxes["EMG"], red) > 50 and colour_pixels(b, boxes["EMG"], amber) == 0
    assert colour_pixels(b, boxes["SQI"], green) > 50  # SQI 95 stays normal


@pytest.mark.parametrize("text", ["Laparoscopic cholecystectomy", "Laparoscopic cholecystectomy with intraoperative cholangiography",
                                  "W" * 80, "ev-2026-0001", "Żółć — Ääkkönen"])
@pytest.mark.parametrize(("width", "height", "size"), [(540, 40, 30), (300, 26, 18), (120, 60, 40), (40, 20, 14)])
def test_fitted_text_ink_never_crosses_its_box(text, width, height, size):
    from PIL import Image, ImageDraw

    img = Image.new("L", (width + 40, height + 40), 0)
    box = Rect(20, 20, width, height)
    for align in ("left", "center", "right"):
        img.paste(0, (0, 0, img.width, img.height))
        font, shown = draw_fitted(ImageDraw.Draw(img), box, text, size=size, fill=255, bold=True, align=align)
        ink = img.getbbox()
        if shown:
            assert ink is not None
            x0, y0, x1, y1 = ink
            assert box.x <= x0 and x1 <= box.x2 and box.y <= y0 and y1 <= box.y2, (align, shown, ink, box)
        assert shown == text or shown.endswith("\u2026") or shown == ""


def test_long_event_text_shrinks_then_ellipsizes_short_of_the_divider():
    for name, rect in PANELS.items():
        rows = [(k, lab) for k, lab, _ in event_rows(LONG_EVENT)]
        lay = panel_layout(rect.width, rect.height, rows, blocks_for({"bis": bis_reading()}))
        a = rgb(render_panel(rect.width, rect.height, {"bis": bis_reading()}, LONG_EVENT, 0))
        proc = next(v for k, _, _, v in lay.rows if k == "procedure")
        # between the value box and the next column (or the divider line): nothing but background
        right = min([lb.x for _, _, lb, _ in lay.rows if lb.x > proc.x and lb.y < proc.y2 and proc.y < lb.y2] + [lay.divider[0] - 1])
        assert right - proc.x2 >= 2, name
        gap = a[proc.y : proc.y2, proc.x2 : right]
        assert (np.abs(gap - np.array(PALETTE.bg)).max(axis=2) < 8).all(), name
        inside = a[proc.y : proc.y2, proc.x : proc.x2]
        assert (np.abs(inside - np.array(PALETTE.bg)).max(axis=2) > 60).sum() > 100, f"{name}: no text drawn"
    font, shown = fit_text(LONG_EVENT["procedure"], 400, 40, size=30, bold=True)
    assert shown.endswith("\u2026") and font.size < 30 and shown.startswith("Laparoscopic chol")


def test_the_same_fields_in_the_same_order_in_every_layout():
    shuffled = dict(reversed(list(LONG_EVENT.items())))
    orders = set()
    for name, rect in {**PANELS, "explicit-tall": Rect(0, 0, 320, 360)}.items():
        for event in (LONG_EVENT, shuffled):
            lay = panel_layout(rect.width, rect.height, [(k, lab) for k, lab, _ in event_rows(event)], blocks_for({"bis": bis_reading()}))
            keys = [k for k, *_ in lay.rows]
            assert keys, name
            orders.add(tuple(keys))
        cells = panel_cells(rect.width, rect.height, {"bis": bis_reading()})
        assert [c.name for c in cells] == ["BIS", "SQI", "EMGLOW", "SR"], name
    full = ("id", "place", "procedure", "surgeon", "anaesthetist", "time")
    assert all(o == full[: len(o)] for o in orders), orders  # a short panel shows a prefix of the same order
    assert full in orders


def test_rec_indicator_shows_the_elapsed_time():
    lay = panel_layout(1920, 360, [], blocks_for({}))
    a, b = (rgb(render_panel(1920, 360, {}, {}, t)) for t in (12 * NS + 5, 13 * NS))
    assert colour_pixels(a, lay.rec, PALETTE.rec, tol=30) > 200  # the red dot and "REC"
    assert (a[lay.rec.y : lay.rec.y2, lay.rec.x : lay.rec.x2] != b[lay.rec.y : lay.rec.y2, lay.rec.x : lay.rec.x2]).any()
    assert (a == rgb(render_panel(1920, 360, {}, {}, 12 * NS + 900_000_000))).all()  # whole seconds


NS = 1_000_000_000


def slot_luma(out, rect: Rect) -> np.ndarray:
    return luma(out)[rect.y : rect.y2, rect.x : rect.x2].astype(int)


def slate_ref(name: str, w: int, h: int, connecting: bool) -> np.ndarray:
    img = render_slate(name, w, h, connecting=connecting)
    return av.VideoFrame.from_image(img).reformat(format="yuv420p").to_ndarray()[:h].astype(int)


def is_slate_of(y: np.ndarray, name: str, connecting: bool) -> bool:
    return float(np.abs(y - slate_ref(name, y.shape[1], y.shape[0], connecting)).mean()) < 1.0


def test_connecting_until_the_first_frame_or_the_stale_timeout_then_no_signal():
    c = DefaultCompositor()
    c.configure(layouts.paper())
    c.set_context(stale_timeout_s=0.5, failed_sources=["vitals"])
    room, endo, vitals = (layouts.paper().slot(n).rect for n in ("room", "endoscope", "vitals"))
    none = {"endoscope": None, "room": None, "vitals": None}
    t0 = 5 * NS  # the first compose is the reference, whatever its time
    out = c.compose(none, {}, {}, t0)
    assert is_slate_of(slot_luma(out, room), "room", True) and is_slate_of(slot_luma(out, endo), "endoscope", True)
    assert is_slate_of(slot_luma(out, vitals), "vitals", False)  # could not start: NO SIGNAL at once
    out = c.compose({**none, "endoscope": solid("endoscope", 1280, 720, (180, 128, 128), 1)}, {}, {}, t0 + NS // 3)
    assert is_slate_of(slot_luma(out, room), "room", True) and (slot_luma(out, endo) == 180).all()
    out = c.compose(none, {}, {}, t0 + NS * 6 // 10)  # past the timeout
    assert is_slate_of(slot_luma(out, room), "room", False)  # never came: NO SIGNAL
    assert is_slate_of(slot_luma(out, endo), "endoscope", False)  # came, then stale: NO SIGNAL
    assert not np.array_equal(slate_ref("room", 640, 360, True), slate_ref("room", 640, 360, False))


def test_without_a_context_or_option_the_slate_is_no_signal_at_once_and_the_option_wins():
    c = DefaultCompositor()
    c.configure(layouts.paper())
    room = layouts.paper().slot("room").rect
    assert is_slate_of(slot_luma(c.compose({"room": None}, {}, {}, 0), room), "room", False)
    c = DefaultCompositor(connect_timeout_s=3.0)
    c.configure(layouts.paper())
    c.set_context(stale_timeout_s=0.5)
    assert is_slate_of(slot_luma(c.compose({"room": None}, {}, {}, 0), room), "room", True)
    assert is_slate_of(slot_luma(c.compose({"room": None}, {}, {}, 2 * NS), room), "room", True)
    assert is_slate_of(slot_luma(c.compose({"room": None}, {}, {}, 3 * NS), room), "room", False)
    with pytest.raises(ValueError, match="connect_timeout_s"):
        DefaultCompositor(connect_timeout_s=-1)


def panel_luma(out) -> np.ndarray:
    return luma(out)[720:1080].astype(int)


def ref_luma(img) -> np.ndarray:
    return av.VideoFrame.from_image(img).reformat(format="yuv420p").to_ndarray()[:360].astype(int)


def test_data_block_connecting_then_live_then_no_data():
    c = DefaultCompositor()
    c.configure(layouts.paper())
    c.set_context(stale_timeout_s=1.0, data_sources=["bis"], data_timeout_s=4.0)
    out = c.compose({}, {}, {"id": "ev-1"}, 0)
    want = render_panel(1920, 360, {}, {"id": "ev-1"}, 0, sources=["bis"], status={"bis": "connecting"})
    assert np.array_equal(panel_luma(out), ref_luma(want))
    assert not np.array_equal(ref_luma(want), ref_luma(render_panel(1920, 360, {}, {"id": "ev-1"}, 0, sources=["bis"], status={"bis": "no-data"})))
    out = c.compose({}, {}, {"id": "ev-1"}, 5 * NS)  # nothing within data_timeout_s
    assert np.array_equal(panel_luma(out), ref_luma(render_panel(1920, 360, {}, {"id": "ev-1"}, 5 * NS, sources=["bis"], status={"bis": "no-data"})))
    r = bis_reading(5 * NS)
    out = c.compose({}, {"bis": r}, {"id": "ev-1"}, 6 * NS)
    box = next(x.box for x in panel_cells(1920, 360, {"bis": r}) if x.name == "BIS")
    crop = (slice(box.y, box.y2), slice(box.x, box.x2))
    assert np.array_equal(panel_luma(out)[crop], ref_luma(render_panel(1920, 360, {"bis": r}, {}, 0))[crop])
    out = c.compose({}, {}, {"id": "ev-1"}, 20 * NS)  # the source went quiet: its block stays, values blank
    blank = ref_luma(render_panel(1920, 360, {"bis": bis_reading(BIS=None, SQI=None, EMGLOW=None, SR=None)}, {}, 0))
    assert np.array_equal(panel_luma(out)[crop], blank[crop])


def test_trend_is_drawn_from_the_readings_given_over_time():
    c = DefaultCompositor(trend_minutes=5)
    c.configure(layouts.paper())
    for s in range(240):  # 4 minutes, one reading a second: BIS 50 then 80
        c.compose({}, {"bis": bis_reading(s * NS, BIS=50.0 if s < 120 else 80.0)}, {}, s * NS)
    out = c.compose({}, {"bis": bis_reading(239 * NS, BIS=80.0)}, {}, 240 * NS)
    lay = panel_layout(1920, 360, [], blocks_for({"bis": bis_reading()}))
    trend = lay.blocks[0].trend
    assert trend is not None
    plot = plot_area(chart_box(trend))
    a = rgb(out.to_image())[720:1080]
    green, amber = PALETTE.colours["normal"], PALETTE.colours["caution"]

    def around(t_s: float, v: float) -> Rect:
        x, y = round(time_x(plot, t_s, 240, 300)), round(value_y(plot, v))
        return Rect(x - 3, y - 4, 7, 9)

    assert hue_pixels(a, around(60, 50), green) > 5  # three minutes ago, long after that reading was current
    assert hue_pixels(a, around(200, 80), amber) > 5  # out of the 40-60 band: caution colour
    assert hue_pixels(a, around(60, 80), amber) == 0 and hue_pixels(a, around(200, 50), green) == 0
    before = Rect(plot.x, plot.y, max(1, round(time_x(plot, -5, 240, 300)) - plot.x), plot.height)  # before t = 0
    assert hue_pixels(a, before, green) == 0 and hue_pixels(a, before, amber) == 0
    # the compositor's panel is exactly render_panel with the trend it accumulated
    pts = list(c._trends["bis"].points)
    assert len(pts) == 240 and pts[0] == (0.0, 50.0) and pts[-1] == (239.0, 80.0)
    ref = render_panel(1920, 360, {"bis": bis_reading(239 * NS, BIS=80.0)}, {}, 240 * NS, trends={"bis": pts}, window_s=300)
    assert np.array_equal(panel_luma(out), ref_luma(ref))


def test_trend_memory_is_bounded():
    from surgbox_ext.compositor import Trend

    t = Trend(window_s=60, max_points=100)
    for i in range(10_000):
        t.add(i * 0.1, 50.0)
    assert len(t.points) == 100 and t.points[-1][0] == pytest.approx(999.9)
    t = Trend(window_s=60)
    for i in range(1000):
        t.add(float(i), 50.0)
    assert t.points[0][0] >= 999 - 60 - 10


def test_panel_repaints_only_changed_cells():
    c = DefaultCompositor()
    c.configure(layouts.paper())
    ev = {"id": "ev-1", "place": "OR 3"}
    c.compose({}, {"bis": bis_reading(0)}, {**ev, "time": "10:00:00"}, 0)
    first = c.cell_renders
    c.compose({}, {"bis": bis_reading(0)}, {**ev, "time": "10:00:01"}, NS)  # the clocks change
    assert c.cell_renders - first == 3  # REC, the time row, the trend's time axis
    n = c.cell_renders
    c.compose({}, {"bis": bis_reading(NS, BIS=47.0)}, {**ev, "time": "10:00:01"}, NS + NS // 2)
    assert c.cell_renders - n == 2  # the BIS tile and the trend (a new point)


# -- the example configuration with the BIS simulator (the two-terminal recipe of docs/recording.md) --
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_example_config_records_the_simulated_bis_monitor(tmp_path):
    import json
    import subprocess
    import sys

    from surgbox.readings import read_data_track

    text = (REPO / "examples" / "record.toml").read_text()
    assert 'url = "socket://127.0.0.1:4001"' in text and "surgbox simulate bis --port tcp://127.0.0.1:4001" in text
    port = _free_port()  # the recipe's port 4001 may be taken on a shared machine: only the port changes
    config = tmp_path / "record.toml"
    config.write_text(text.replace("4001", str(port)))
    out = tmp_path / "case.mp4"
    sim = subprocess.Popen([sys.executable, "-m", "surgbox", "simulate", "bis", "--port", f"tcp://127.0.0.1:{port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in sim.stdout.readline()  # terminal 1 is ready
        rec = subprocess.run([sys.executable, "-m", "surgbox", "record", "--config", str(config), "--duration", "5",
                              "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    finally:
        sim.terminate()
        sim.communicate(timeout=30)
    assert rec.returncode == 0, rec.stderr
    track = read_data_track(out.with_name("case.mp4.data.jsonl"))
    points = sorted((p for p in track.points if p.source == "bis" and p.values.get("BIS") is not None), key=lambda p: p.t)
    assert len(points) >= 2, "the BIS simulator's readings did not reach the data track"
    assert json.loads(out.with_name("case.mp4.json").read_text())["data_track"] == "case.mp4.data.jsonl"
    # the panel of the last frame shows the newest reading, as render_panel draws it
    panel = layouts.paper().slot("panel").rect
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        last = None
        for f in c.decode(s):
            last = f
        t = float(last.pts * s.time_base)
    shown = [p for p in points if p.t <= t][-1]
    reading = Reading("bis", 0, "bis", dict(shown.values))
    y = last.to_ndarray()[: last.height][panel.y : panel.y2, panel.x : panel.x2].astype(int)
    want = ref_luma(render_panel(panel.width, panel.height, {"bis": reading}, {}, 0))
    for cell in panel_cells(panel.width, panel.height, {"bis": reading}):
        b = cell.box
        diff = float(np.abs(y[b.y : b.y2, b.x : b.x2] - want[b.y : b.y2, b.x : b.x2]).mean())
        assert diff < 4.0, f"{cell.label} box shows something else than {cell.text} {cell.unit} (mean diff {diff:.1f})"
