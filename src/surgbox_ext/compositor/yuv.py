"""Default compositor: builds the composite directly in YUV 4:2:0 planes.

Per tick, each video slot whose source delivered a new frame is scaled by swscale (PyAV
``VideoFrame.reformat``) to the largest even-sized rectangle of the source's aspect that fits
the slot (letterbox bars are black) and copied into the planes of one reused canvas with numpy.
A slot whose source is stale (``None``) shows a cached ``NO SIGNAL <name>`` slate. The data
panel is drawn with Pillow and DejaVu Sans (bundled with surgbox, :mod:`surgbox.fonts`) only when its
content changes (about once per second, for the clock), so per-frame cost is a few plane copies.
No full-frame RGB conversion happens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from surgbox import fonts
from surgbox.interfaces import Compositor
from surgbox.types import Layout, Reading, Rect, Slot, VideoFrame

log = logging.getLogger(__name__)

BLACK_YUV = (16, 128, 128)
SLATE_BG = (24, 32, 72)
PANEL_BG = (12, 12, 16)


def load_font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans (bold) of ``size`` px as a Pillow font (:func:`surgbox.fonts.load`)."""
    return fonts.load(size, bold=bold)


def render_slate(name: str, width: int, height: int) -> Any:
    """The ``NO SIGNAL <name>`` picture (Pillow RGB image, ``width x height``)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), SLATE_BG)
    d = ImageDraw.Draw(img)
    border = max(2, min(width, height) // 60)
    d.rectangle((0, 0, width - 1, height - 1), outline=(230, 60, 60), width=border)
    big = load_font(max(10, min(height // 5, width // 7)), bold=True)
    small = load_font(max(8, min(height // 10, width // 14)))
    cx, cy = width / 2, height / 2
    d.text((cx, cy - height * 0.06), "NO SIGNAL", font=big, fill=(255, 255, 255), anchor="mb")
    d.text((cx, cy + height * 0.06), name, font=small, fill=(255, 220, 120), anchor="mt")
    return img


PANEL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "bis": (("BIS", "BIS"), ("SQI", "SQI"), ("EMGLOW", "EMG"), ("SR", "SR")),
    "bis-history": (("AVGBIS", "BIS"), ("AVGSQI", "SQI"), ("AVGEMG", "EMG"), ("AVGSR", "SR")),
}
"""What the panel shows of a reading, by ``Reading.kind``: ``(value name, label)`` in order. A BIS
monitor shows BIS, SQI, EMG (``EMGLOW``) and SR; other kinds show every value of the reading."""


def format_value(v: float | None) -> str:
    """A panel value as shown: ``--`` for missing/invalid, integers without decimals, else one decimal."""
    if v is None:
        return "--"
    return f"{v:.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:.1f}"


_fmt = format_value


@attrs.frozen
class PanelCell:
    """One value shown in the data panel: ``source`` / ``name`` of the reading value, its ``label``,
    the ``text`` drawn, and ``box``, the rectangle (panel pixels) that holds the value text (and
    nothing else), so a decoded recording can be checked against :func:`render_panel`."""

    source: str
    name: str
    label: str
    text: str
    label_xy: tuple[int, int]
    box: Rect


def _panel_geometry(width: int, height: int) -> tuple[int, int]:
    pad = max(6, height // 24)
    return pad, min(width // 3, 640)


def panel_cells(width: int, height: int, readings: Mapping[str, Reading]) -> list[PanelCell]:
    """The value cells :func:`render_panel` draws for ``readings`` in a ``width x height`` panel:
    one block per data source (in the mapping's order), its values per :data:`PANEL_FIELDS`."""
    if not readings:
        return []
    pad, left_w = _panel_geometry(width, height)
    block_w = (width - left_w - pad) // len(readings)
    big_px = max(10, height // 5)
    cells = []
    for i, (src, r) in enumerate(readings.items()):
        x0 = left_w + pad + i * block_w
        fields = PANEL_FIELDS.get(r.kind)
        items = [(n, lab, r.values.get(n)) for n, lab in fields] if fields else [(n, n, v) for n, v in r.values.items()]
        cols = max(1, min(len(items), 4))
        cell_w = (block_w - 2 * pad) // cols
        for j, (name, lab, v) in enumerate(items):
            cx = x0 + pad + (j % cols) * cell_w
            cy = pad + height // 8 + (j // cols) * (height * 3 // 8)
            if cy + height // 4 > height:
                break
            vy = cy + height // 12
            box = Rect(cx, vy, max(1, min(cell_w - pad, width - cx)), max(1, min(round(big_px * 1.25), height - vy)))
            cells.append(PanelCell(str(src), str(name), str(lab), format_value(v), (cx, cy), box))
    return cells


def render_panel(width: int, height: int, readings: Mapping[str, Reading], event: Mapping[str, Any], time_ns: int) -> Any:
    """The data panel (Pillow RGB image): event fields on the left (``id``, ``place``,
    ``procedure``, ``time`` ... in the mapping's order) and the recording time; on the right one
    block per data source with the values of its newest reading (:func:`panel_cells`; ``--`` for
    invalid/missing)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), PANEL_BG)
    d = ImageDraw.Draw(img)
    pad, left_w = _panel_geometry(width, height)
    line = max(12, height // 10)
    label = load_font(max(9, line * 3 // 4))
    value = load_font(max(9, line * 3 // 4), bold=True)
    y = pad
    secs = max(0, time_ns) // 1_000_000_000
    rows = [(str(k).upper(), str(v)) for k, v in event.items() if v not in (None, "")]
    rows.append(("REC", f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"))
    key_w = max((d.textlength(k, font=label) for k, _ in rows), default=0) + pad
    for k, v in rows:
        if y + line > height:
            break
        d.text((pad, y), k, font=label, fill=(150, 160, 175))
        d.text((pad + key_w, y), v, font=value, fill=(240, 240, 240))
        y += line
    d.line((left_w, pad, left_w, height - pad), fill=(60, 60, 70), width=2)
    if not readings:
        d.text((left_w + 2 * pad, pad), "no data sources", font=label, fill=(110, 110, 120))
        return img
    block_w = (width - left_w - pad) // len(readings)
    big = load_font(max(10, height // 5), bold=True)
    small = load_font(max(8, height // 14))
    for i, (src, r) in enumerate(readings.items()):
        x0 = left_w + pad + i * block_w
        d.text((x0 + pad, pad), f"{src} ({r.kind})" if r.kind and r.kind != src else src, font=small, fill=(120, 200, 255))
    for c in panel_cells(width, height, readings):
        d.text(c.label_xy, c.label, font=small, fill=(160, 170, 180))
        d.text((c.box.x, c.box.y), c.text, font=big, fill=(120, 120, 120) if c.text == "--" else (120, 255, 140))
    return img


def plane_array(plane: Any) -> np.ndarray:
    """A writable ``(height, width)`` uint8 view (no copy) of one ``av`` video plane, the line
    padding excluded."""
    buf = np.frombuffer(plane, np.uint8)
    return buf[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)[:, : plane.width]


def plane_views(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V views (:func:`plane_array`, no copy) of a ``yuv420p`` ``av.VideoFrame``."""
    y, u, v = (plane_array(p) for p in frame.planes)
    return y, u, v


def _even_fit(slot: Rect, width: int, height: int) -> Rect:
    r = slot.fit_inside(width, height)
    x = (r.x + 1) & ~1
    y = (r.y + 1) & ~1
    w = min(r.width & ~1, (slot.x2 - x) & ~1)
    h = min(r.height & ~1, (slot.y2 - y) & ~1)
    return Rect(x, y, max(2, w), max(2, h))


@attrs.define(eq=False)
class DefaultCompositor(Compositor):
    """``surgbox.interfaces.Compositor`` on YUV 4:2:0 numpy planes.

    ``interpolation``: swscale filter name for scaling (``BILINEAR``, ``AREA``, ``BICUBIC``,
    ``FAST_BILINEAR`` ...). Slot rectangles should have even coordinates (4:2:0 chroma); odd
    ones are rounded inward.
    """

    interpolation: str = "BILINEAR"
    layout: Layout | None = attrs.field(default=None, init=False)
    renders: int = attrs.field(default=0, init=False)  # panel renders (cache misses)
    _canvas: np.ndarray | None = attrs.field(default=None, init=False, alias="_canvas")
    _y: np.ndarray | None = attrs.field(default=None, init=False, alias="_y")
    _u: np.ndarray | None = attrs.field(default=None, init=False, alias="_u")
    _v: np.ndarray | None = attrs.field(default=None, init=False, alias="_v")
    _state: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_state")
    _slates: dict[str, tuple[np.ndarray, ...]] = attrs.field(factory=dict, init=False, alias="_slates")

    def configure(self, layout: Layout) -> None:
        if layout.width % 2 or layout.height % 2:
            raise ValueError(f"layout {layout.name!r}: size {layout.width}x{layout.height} must be even for yuv420p")
        self.layout = layout
        w, h = layout.width, layout.height
        self._canvas = np.empty((h * 3 // 2, w), np.uint8)
        self._y = self._canvas[:h]
        self._u = self._canvas[h : h + h // 4].reshape(h // 2, w // 2)
        self._v = self._canvas[h + h // 4 :].reshape(h // 2, w // 2)
        self._fill(Rect(0, 0, w, h), BLACK_YUV)
        self._state.clear()
        self._slates.clear()

    # -- drawing ----------------------------------------------------------------------------------
    def _fill(self, r: Rect, yuv: tuple[int, int, int]) -> None:
        self._y[r.y : r.y2, r.x : r.x2] = yuv[0]
        self._u[r.y // 2 : r.y2 // 2, r.x // 2 : r.x2 // 2] = yuv[1]
        self._v[r.y // 2 : r.y2 // 2, r.x // 2 : r.x2 // 2] = yuv[2]

    def _blit(self, r: Rect, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        y, u, v = planes
        self._y[r.y : r.y + y.shape[0], r.x : r.x + y.shape[1]] = y
        self._u[r.y // 2 : r.y // 2 + u.shape[0], r.x // 2 : r.x // 2 + u.shape[1]] = u
        self._v[r.y // 2 : r.y // 2 + v.shape[0], r.x // 2 : r.x // 2 + v.shape[1]] = v

    def _blit_image(self, r: Rect, image: Any) -> None:
        import av

        f = av.VideoFrame.from_image(image).reformat(r.width, r.height, format="yuv420p")
        self._blit(r, plane_views(f))

    def _even_slot(self, slot: Slot) -> Rect:
        r = slot.rect
        x, y = (r.x + 1) & ~1, (r.y + 1) & ~1
        return Rect(x, y, max(2, (r.x2 - x) & ~1), max(2, (r.y2 - y) & ~1))

    def _draw_video(self, slot: Slot, frame: VideoFrame) -> None:
        area = self._even_slot(slot)
        fit = _even_fit(area, frame.width, frame.height)
        geometry = (fit.as_xywh(),)
        state = self._state.get(slot.name)
        if state is None or state[0] != "video" or state[2] != geometry:
            self._fill(area, BLACK_YUV)  # letterbox bars
        scaled = frame.image.reformat(fit.width, fit.height, format="yuv420p", interpolation=self.interpolation)
        self._blit(fit, plane_views(scaled))
        self._state[slot.name] = ("video", (frame.source, frame.seq, frame.capture_ns), geometry)

    def _draw_slate(self, slot: Slot) -> None:
        if self._state.get(slot.name, ("",))[0] == "slate":
            return
        area = self._even_slot(slot)
        name = slot.source or slot.name
        if slot.name not in self._slates:
            import av

            f = av.VideoFrame.from_image(render_slate(name, area.width, area.height)).reformat(format="yuv420p")
            self._slates[slot.name] = tuple(p.copy() for p in plane_views(f))
        self._blit(area, self._slates[slot.name])  # type: ignore[arg-type]
        self._state[slot.name] = ("slate",)

    def _draw_panel(self, slot: Slot, readings: Mapping[str, Reading], event: Mapping[str, Any], time_ns: int) -> None:
        key = (
            tuple((str(k), str(v)) for k, v in event.items()),
            tuple((s, r.kind, tuple(r.values.items())) for s, r in readings.items()),
            max(0, time_ns) // 1_000_000_000,
        )
        if self._state.get(slot.name) == ("panel", key):
            return
        area = self._even_slot(slot)
        self._blit_image(area, render_panel(area.width, area.height, readings, event, time_ns))
        self._state[slot.name] = ("panel", key)
        self.renders += 1

    # -- Compositor API -----------------------------------------------------------------------------
    def compose(
        self,
        frames: Mapping[str, VideoFrame | None],
        readings: Mapping[str, Reading],
        event: Mapping[str, Any],
        time_ns: int,
    ) -> Any:
        """The ``yuv420p`` composite for output time ``time_ns`` (a new ``av.VideoFrame``)."""
        import av

        if self.layout is None:
            raise RuntimeError("compositor: call configure(layout) before compose()")
        for slot in self.layout.slots:
            if slot.kind == "panel":
                self._draw_panel(slot, readings, event, time_ns)
                continue
            frame = frames.get(slot.source or slot.name)
            if frame is None:
                self._draw_slate(slot)
                continue
            state = self._state.get(slot.name)
            if state is not None and state[0] == "video" and state[1] == (frame.source, frame.seq, frame.capture_ns):
                continue  # same picture as the last tick: the canvas already holds it
            self._draw_video(slot, frame)
        return av.VideoFrame.from_ndarray(self._canvas, format="yuv420p")

    def close(self) -> None:
        self._state.clear()
        self._slates.clear()
