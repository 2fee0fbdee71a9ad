"""Default compositor: builds the composite directly in YUV 4:2:0 planes.

Per tick, each video slot whose source delivered a new frame is scaled by swscale (PyAV
``VideoFrame.reformat``) to the largest even-sized rectangle of the source's aspect that fits
the slot (letterbox bars are black) and copied into the planes of one reused canvas with numpy.
A slot without a frame shows a cached slate (:mod:`.slates`): ``CONNECTING <name>`` while its
source has not delivered a first frame yet (for at most the connect timeout), ``NO SIGNAL <name>``
otherwise. The data panel (:mod:`.panel`) is drawn with Pillow and DejaVu Sans (bundled with
surgbox, :mod:`surgbox.fonts`) cell by cell, only for the cells whose content changed (the REC
clock once a second, a value when its reading changes, the trend when it gets a point), so the
per-frame cost is a few plane copies. No full-frame RGB conversion happens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from surgbox.interfaces import Compositor
from surgbox.types import Layout, Reading, Rect, Slot, VideoFrame

from .fields import PANEL_FIELDS, TREND_FIELD, format_field
from .geometry import PanelLayout, blocks_for, event_rows, panel_layout
from .panel import CONNECTING, LIVE, NO_DATA, panel_scene, render_cells
from .slates import render_slate
from .text import load_font
from .trend import Trend

log = logging.getLogger(__name__)

BLACK_YUV = (16, 128, 128)
DEFAULT_DATA_TIMEOUT_S = 10.0

__all__ = ["BLACK_YUV", "DefaultCompositor", "load_font", "plane_array", "plane_views", "render_slate"]


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


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"compositor option {attribute.name} must be >= 0 seconds, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"compositor option {attribute.name} must be > 0, got {value!r}")


@attrs.define(eq=False)
class DefaultCompositor(Compositor):
    """``surgbox.interfaces.Compositor`` on YUV 4:2:0 numpy planes.

    Options: ``interpolation``: swscale filter name for scaling (``BILINEAR``, ``AREA``,
    ``BICUBIC``, ``FAST_BILINEAR`` ...); ``connect_timeout_s``: how long after the first tick a
    source that has not delivered a frame yet shows ``CONNECTING`` instead of ``NO SIGNAL``
    (default: the recorder's stale timeout, given by :meth:`set_context`; without one, no
    connecting phase); ``trend_minutes``: the span of the BIS trend chart (default 10).
    Slot rectangles should have even coordinates (4:2:0 chroma); odd ones are rounded inward.

    Counters: ``renders`` ticks that repainted part of the panel, ``cell_renders`` cells repainted.
    """

    interpolation: str = "BILINEAR"
    connect_timeout_s: float | None = attrs.field(default=None, validator=_positive_or_none)
    trend_minutes: float = attrs.field(default=10.0, converter=float, validator=_positive)
    layout: Layout | None = attrs.field(default=None, init=False)
    renders: int = attrs.field(default=0, init=False)
    cell_renders: int = attrs.field(default=0, init=False)
    _canvas: np.ndarray | None = attrs.field(default=None, init=False, alias="_canvas")
    _y: np.ndarray | None = attrs.field(default=None, init=False, alias="_y")
    _u: np.ndarray | None = attrs.field(default=None, init=False, alias="_u")
    _v: np.ndarray | None = attrs.field(default=None, init=False, alias="_v")
    _state: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_state")
    _slates: dict[tuple[str, bool], tuple[np.ndarray, ...]] = attrs.field(factory=dict, init=False, alias="_slates")
    # what the recorder said (set_context) and what this recording has seen so far
    _stale_timeout_s: float | None = attrs.field(default=None, init=False, alias="_stale_timeout_s")
    _data_timeout_s: float = attrs.field(default=DEFAULT_DATA_TIMEOUT_S, init=False, alias="_data_timeout_s")
    _failed: frozenset[str] = attrs.field(factory=frozenset, init=False, alias="_failed")
    _declared_data: tuple[str, ...] | None = attrs.field(default=None, init=False, alias="_declared_data")
    _t0: int | None = attrs.field(default=None, init=False, alias="_t0")
    _seen: set[str] = attrs.field(factory=set, init=False, alias="_seen")
    _data_order: list[str] = attrs.field(factory=list, init=False, alias="_data_order")
    _kinds: dict[str, str] = attrs.field(factory=dict, init=False, alias="_kinds")
    _last_capture: dict[str, int] = attrs.field(factory=dict, init=False, alias="_last_capture")
    _trends: dict[str, Trend] = attrs.field(factory=dict, init=False, alias="_trends")
    _panel: dict[str, Any] = attrs.field(factory=dict, init=False, alias="_panel")
    _reformatters: dict[tuple[int, int], Any] = attrs.field(factory=dict, init=False, alias="_reformatters")

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
        self._panel.clear()
        self._t0 = None
        self._seen.clear()
        self._data_order.clear()
        self._kinds.clear()
        self._last_capture.clear()
        self._trends.clear()

    def set_context(self, **context: Any) -> None:
        """What the recorder knows (:meth:`surgbox.interfaces.Compositor.set_context`):
        ``stale_timeout_s`` (the connect timeout unless ``connect_timeout_s`` is set),
        ``failed_sources`` (they show NO SIGNAL at once), ``data_sources`` (data blocks in this
        order, shown as CONNECTING before their first reading), ``data_timeout_s`` (how long a data
        source may take to send its first reading before its block says NO DATA). Others are ignored."""
        if context.get("stale_timeout_s") is not None:
            self._stale_timeout_s = float(context["stale_timeout_s"])
        if context.get("data_timeout_s") is not None:
            self._data_timeout_s = float(context["data_timeout_s"])
        if context.get("failed_sources") is not None:
            self._failed = frozenset(map(str, context["failed_sources"]))
        if context.get("data_sources") is not None:
            self._declared_data = tuple(map(str, context["data_sources"]))
            self._data_order = [s for s in self._declared_data] + [s for s in self._data_order if s not in self._declared_data]

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
        from av.video.reformatter import VideoReformatter

        # one swscale context per picture size (panel cells repeat their sizes): no set-up per paint
        conv = self._reformatters.get((r.width, r.height))
        if conv is None:
            if len(self._reformatters) >= 64:
                self._reformatters.clear()
            conv = self._reformatters[(r.width, r.height)] = VideoReformatter()
        f = conv.reformat(av.VideoFrame.from_image(image), r.width, r.height, format="yuv420p")
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

    def _draw_slate(self, slot: Slot, connecting: bool) -> None:
        kind = "connecting" if connecting else "slate"
        if self._state.get(slot.name, ("",))[0] == kind:
            return
        area = self._even_slot(slot)
        name = slot.source or slot.name
        if (slot.name, connecting) not in self._slates:
            import av

            f = av.VideoFrame.from_image(render_slate(name, area.width, area.height, connecting=connecting)).reformat(format="yuv420p")
            self._slates[(slot.name, connecting)] = tuple(p.copy() for p in plane_views(f))
        self._blit(area, self._slates[(slot.name, connecting)])  # type: ignore[arg-type]
        self._state[slot.name] = (kind,)

    def _connecting(self, source: str, time_ns: int) -> bool:
        """True while ``source`` has had no frame yet and the connect timeout has not passed."""
        timeout = self.connect_timeout_s if self.connect_timeout_s is not None else self._stale_timeout_s
        if not timeout or source in self._seen or source in self._failed or self._t0 is None:
            return False
        return time_ns - self._t0 < timeout * 1e9

    # -- the data panel -----------------------------------------------------------------------------
    def _track(self, readings: Mapping[str, Reading], time_ns: int) -> None:
        """Remember data sources, their kinds, and the trend points of new readings."""
        window = self.trend_minutes * 60
        for src, r in readings.items():
            if src not in self._data_order:
                self._data_order.append(src)
            self._kinds[src] = r.kind
            if self._last_capture.get(src) == r.capture_ns:
                continue
            self._last_capture[src] = r.capture_ns
            fields = PANEL_FIELDS.get(r.kind)
            if fields is None:
                continue
            trend = self._trends.get(src)
            if trend is None or trend.window_s != window:
                trend = self._trends[src] = Trend(window_s=window)
            text, _ = format_field(fields[TREND_FIELD], r.values)
            trend.add(time_ns / 1e9, None if text == "--" else float(text))

    def _status(self, readings: Mapping[str, Reading], time_ns: int) -> dict[str, str]:
        out = {}
        elapsed = 0 if self._t0 is None else time_ns - self._t0
        for src in self._data_order:
            if src in readings:
                out[src] = LIVE
            elif src in self._kinds or src in self._failed or elapsed >= self._data_timeout_s * 1e9:
                out[src] = NO_DATA
            else:
                out[src] = CONNECTING
        return out

    def _draw_panel(self, slot: Slot, readings: Mapping[str, Reading], event: Mapping[str, Any], time_ns: int) -> None:
        self._track(readings, time_ns)
        status = self._status(readings, time_ns)
        live = {s: r for s, r in readings.items() if status.get(s) == LIVE}
        key = (
            tuple((str(k), str(v)) for k, v in event.items()),
            tuple((s, r.kind, r.capture_ns, tuple(r.values.items())) for s, r in live.items()),
            tuple(status.items()),
            max(0, time_ns) // 1_000_000_000,
        )
        cache = self._panel.setdefault(slot.name, {})
        if cache.get("key") == key:
            return
        cache["key"] = key
        area = self._even_slot(slot)
        rows = [(k, label) for k, label, _ in event_rows(event)]
        blocks = blocks_for(live, self._data_order, self._kinds)
        geometry = (area.width, area.height, tuple(rows), tuple((s, k, tuple(f.name for f in fs)) for s, k, fs in blocks))
        trends = {s: t.points for s, t in self._trends.items()}
        versions = {s: t.version for s, t in self._trends.items()}
        if cache.get("geometry") != geometry:
            layout = panel_layout(area.width, area.height, rows, blocks)
            cache.update(geometry=geometry, layout=layout, cells={})
        layout: PanelLayout = cache["layout"]
        cells, _ = panel_scene(layout, live, event, time_ns, status=status, trends=trends, trend_versions=versions,
                               window_s=self.trend_minutes * 60)
        known: dict[tuple, Any] = cache["cells"]
        if not known:  # first paint of this geometry: all of it
            self._blit_image(area, render_cells(area.width, area.height, layout, cells))
            self.cell_renders += len(cells)
        else:
            from PIL import Image, ImageDraw

            for c in cells:
                if known.get(c.id) == c.key:
                    continue
                img = Image.new("RGB", (c.rect.width, c.rect.height))
                c.paint(ImageDraw.Draw(img), Rect(0, 0, c.rect.width, c.rect.height))
                self._blit_image(Rect(area.x + c.rect.x, area.y + c.rect.y, c.rect.width, c.rect.height), img)
                self.cell_renders += 1
        cache["cells"] = {c.id: c.key for c in cells}
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
        if self._t0 is None:
            self._t0 = time_ns
        for slot in self.layout.slots:
            if slot.kind == "panel":
                self._draw_panel(slot, readings, event, time_ns)
                continue
            source = slot.source or slot.name
            frame = frames.get(source)
            if frame is None:
                self._draw_slate(slot, self._connecting(source, time_ns))
                continue
            self._seen.add(source)
            state = self._state.get(slot.name)
            if state is not None and state[0] == "video" and state[1] == (frame.source, frame.seq, frame.capture_ns):
                continue  # same picture as the last tick: the canvas already holds it
            self._draw_video(slot, frame)
        return av.VideoFrame.from_ndarray(self._canvas, format="yuv420p")

    def close(self) -> None:
        self._state.clear()
        self._slates.clear()
        self._panel.clear()
        self._trends.clear()
