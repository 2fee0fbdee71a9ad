"""The data panel's cells: what each part shows, :func:`render_panel` and :func:`panel_cells`.

The panel (geometry: :mod:`.geometry`) is split into **cells**, each a rectangle whose pixels
depend only on its ``key``: the ``REC`` clock, one cell per event row, and per data source a
header, one tile per field and the trend chart. :func:`panel_scene` lists the cells for one tick;
:func:`render_panel` paints all of them (a Pillow image), and the compositor repaints only the cells
whose key changed since the last tick, so both give the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from surgbox.types import Reading, Rect

from .fields import CAUTION, INVALID, NORMAL, TREND_FIELD, format_field, severity
from .geometry import BlockLayout, PanelLayout, Tile, blocks_for, clamp, even_rect, event_rows, panel_layout
from .text import draw_fitted
from .trend import draw_trend, trend_step_s

LIVE, CONNECTING, NO_DATA = "live", "connecting", "no-data"
"""Status of a data source's block: readings shown, none yet (start-up), none any more / never."""


@attrs.frozen
class Palette:
    """Panel colours (RGB). ``colours`` maps a :func:`~.fields.severity` to the value colour."""

    bg: tuple[int, int, int] = (10, 12, 18)
    card: tuple[int, int, int] = (20, 24, 33)
    edge: tuple[int, int, int] = (44, 50, 64)
    label: tuple[int, int, int] = (150, 160, 176)
    text: tuple[int, int, int] = (236, 239, 244)
    dim: tuple[int, int, int] = (112, 120, 134)
    accent: tuple[int, int, int] = (110, 190, 255)
    rec: tuple[int, int, int] = (235, 40, 40)
    band: tuple[int, int, int] = (22, 50, 34)
    grid: tuple[int, int, int] = (46, 52, 66)
    colours: Mapping[str, tuple[int, int, int]] = attrs.field(factory=lambda: {
        NORMAL: (110, 240, 150), CAUTION: (255, 196, 0), "alarm": (255, 76, 76),
        "unreliable": (150, 156, 168), INVALID: (112, 120, 134)})


PALETTE = Palette()


@attrs.frozen
class PanelCell:
    """One value shown in the data panel: ``source`` / ``name`` of the reading value, its ``label``,
    the ``text`` drawn, and ``box``, the rectangle (panel pixels) that holds the value text (and
    nothing else), so a decoded recording can be checked against :func:`render_panel`.
    ``severity`` is how it is coloured (:func:`~.fields.severity`), ``unit`` its unit."""

    source: str
    name: str
    label: str
    text: str
    label_xy: tuple[int, int]
    box: Rect
    unit: str = ""
    severity: str = NORMAL


# -- cells ---------------------------------------------------------------------------------------


@attrs.frozen(eq=False)
class Cell:
    """A part of the panel repainted as a whole: ``rect`` (panel pixels, even), ``key`` (same key,
    same pixels) and ``paint(draw, rect)``, which draws it with ``draw`` (a Pillow ``ImageDraw``)
    inside ``rect`` given in the coordinates of the image drawn on."""

    id: tuple
    rect: Rect
    key: Any
    paint: Callable[[Any, Rect], None]


def _rec_text(time_ns: int) -> str:
    secs = max(0, time_ns) // 1_000_000_000
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"


def _rec_cell(rect: Rect, time_ns: int, pal: Palette) -> Cell:
    elapsed = _rec_text(time_ns)

    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        h = r.height
        dot = max(6, h * 9 // 20)
        cy = r.y + h // 2
        d.ellipse((r.x + 2, cy - dot // 2, r.x + 2 + dot, cy - dot // 2 + dot), fill=pal.rec)
        x = r.x + 2 + dot + max(6, h // 4)
        font, _ = draw_fitted(d, Rect(x, r.y, max(1, r.width - (x - r.x)) // 2, h), "REC", size=round(h * 0.62), fill=pal.rec, bold=True)
        x += round(font.getlength("REC ")) + max(6, h // 5)
        draw_fitted(d, Rect(x, r.y, max(1, r.x2 - x), h), elapsed, size=round(h * 0.62), fill=pal.text, bold=True)

    return Cell(("rec",), rect, elapsed, paint)


def _row_cell(i: int, label: str, text: str, lbox: Rect, vbox: Rect, pal: Palette) -> Cell:
    rect = even_rect(lbox.x, lbox.y, vbox.x2 - lbox.x, vbox.height)

    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        lb, vb = _in(lbox, rect, r), _in(vbox, rect, r)
        draw_fitted(d, lb, label, size=clamp(lbox.height * 0.42, 9, 22), fill=pal.label)
        size = clamp(vbox.height * 0.56, 9, 32)
        draw_fitted(d, vb, text, size=size, fill=pal.text, bold=True, min_size=max(9, size * 2 // 3))

    return Cell(("row", i), rect, (label, text), paint)


def _in(box: Rect, cell: Rect, r: Rect) -> Rect:
    """``box`` (panel pixels) in the coordinates where ``cell`` is drawn at ``r``."""
    return Rect(box.x - cell.x + r.x, box.y - cell.y + r.y, box.width, box.height)


def _card(d: Any, r: Rect, pal: Palette) -> None:
    radius = max(2, min(r.width, r.height) // 14)
    d.rounded_rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), radius=radius, fill=pal.card, outline=pal.edge, width=1)


def _header_cell(b: BlockLayout, status: str, pal: Palette) -> Cell:
    title = b.source if not b.kind or b.kind == b.source else f"{b.source}  ({b.kind})"
    note = {CONNECTING: "CONNECTING", NO_DATA: "NO DATA"}.get(status, "")

    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        size = round(r.height * 0.78)
        half = Rect(r.x, r.y, max(1, r.width * 3 // 5), r.height)
        draw_fitted(d, half, title.upper(), size=size, fill=pal.accent, bold=True)
        if note:
            draw_fitted(d, Rect(half.x2, r.y, r.x2 - half.x2, r.height), note, size=size,
                        fill=pal.dim if status == CONNECTING else pal.colours[CAUTION], bold=True, align="right")

    return Cell(("head", b.source), b.header, (title, note), paint)


def _tile_cell(b: BlockLayout, t: Tile, values: Mapping[str, Any] | None, pal: Palette) -> tuple[Cell, PanelCell]:
    text, unit = format_field(t.spec, values or {})
    sev = severity(t.spec, values or {})

    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        _card(d, r, pal)
        lb, vb = _in(t.label, t.rect, r), _in(t.value, t.rect, r)
        label_px = clamp(t.label.height * (0.8 if t.big else 0.5), 9, 30)
        draw_fitted(d, lb, t.spec.label, size=label_px, fill=pal.label, bold=True, valign="top" if t.big else "middle",
                    min_size=min(label_px, 9))
        draw_fitted(d, vb, text, size=t.value.height * 2, fill=pal.colours[sev], bold=True,
                    align="right" if t.unit is not None else "center", tight=True, min_size=8, ref="100" if t.spec.decimals == 0 else "888")
        if t.unit is not None and unit:
            draw_fitted(d, _in(t.unit, t.rect, r), unit, size=label_px, fill=pal.label, valign="middle", min_size=min(label_px, 9))

    cell = Cell(("field", b.source, t.spec.name), t.rect, (t.spec.name, text, unit, sev), paint)
    return cell, PanelCell(b.source, t.spec.name, t.spec.label, text, (t.label.x, t.label.y), t.value, unit, sev)


def _body_cell(b: BlockLayout, status: str, pal: Palette) -> Cell:
    note = {CONNECTING: "waiting for the first reading", NO_DATA: "no readings"}.get(status, "")

    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        _card(d, r, pal)
        if note:
            draw_fitted(d, Rect(r.x + 8, r.y, max(1, r.width - 16), r.height), note, size=clamp(r.height * 0.14, 10, 28),
                        fill=pal.dim, align="center")

    return Cell(("body", b.source), b.body, note, paint)


def chart_box(trend: Rect) -> Rect:
    """Where the chart (:func:`~.trend.draw_trend`) goes inside a block's ``trend`` rectangle."""
    ip = max(6, trend.height // 24)
    return Rect(trend.x + ip, trend.y + ip, trend.width - 2 * ip, trend.height - 2 * ip)


def _trend_cell(b: BlockLayout, points: Sequence[tuple[float, float | None]], version: Any, time_ns: int,
                window_s: float, pal: Palette) -> Cell:
    step = trend_step_s(window_s, b.trend.width)
    now_q = (max(0, time_ns) // 1_000_000_000) // step * step
    spec = b.tiles[TREND_FIELD].spec if b.tiles else None
    label = spec.label if spec is not None else "trend"

    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        _card(d, r, pal)
        draw_trend(d, chart_box(r), points, float(now_q), window_s=window_s, title=f"{label} trend", palette=pal)

    return Cell(("trend", b.source), b.trend, (version, now_q, window_s), paint)


def panel_scene(layout: PanelLayout, readings: Mapping[str, Reading], event: Mapping[str, Any], time_ns: int, *,
                status: Mapping[str, str] | None = None, trends: Mapping[str, Any] | None = None,
                trend_versions: Mapping[str, Any] | None = None, window_s: float = 600.0,
                palette: Palette = PALETTE) -> tuple[list[Cell], list[PanelCell]]:
    """The cells of ``layout`` for one tick and the value cells (:class:`PanelCell`) shown.
    ``status`` per source (default ``live`` when it has a reading, else ``no-data``); ``trends``
    per source: ``(t_s, value)`` points on the output time line; ``trend_versions`` the keys
    that say a trend changed (default: the points themselves)."""
    cells = [_rec_cell(layout.rec, time_ns, palette)]
    text = {k: v for k, _, v in event_rows(event)}
    for i, (key, label, lbox, vbox) in enumerate(layout.rows):
        cells.append(_row_cell(i, label, text.get(key, ""), lbox, vbox, palette))
    shown: list[PanelCell] = []
    for b in layout.blocks:
        r = readings.get(b.source)
        st = (status or {}).get(b.source) or (LIVE if r is not None else NO_DATA)
        cells.append(_header_cell(b, st, palette))
        if not b.tiles:
            cells.append(_body_cell(b, st, palette))
            continue
        values = r.values if (r is not None and st == LIVE) else None
        for t in b.tiles:
            cell, pc = _tile_cell(b, t, values, palette)
            cells.append(cell)
            shown.append(pc)
        if b.trend is not None:
            pts = (trends or {}).get(b.source, ())
            version = (trend_versions or {}).get(b.source, tuple(pts))
            cells.append(_trend_cell(b, pts, version, time_ns, window_s, palette))
    if not layout.blocks:
        cells.append(Cell(("empty",), layout.data, "no data sources", _empty_paint(palette)))
    return cells, shown


def _empty_paint(pal: Palette) -> Callable[[Any, Rect], None]:
    def paint(d: Any, r: Rect) -> None:
        d.rectangle((r.x, r.y, r.x2 - 1, r.y2 - 1), fill=pal.bg)
        draw_fitted(d, Rect(r.x, r.y, r.width, min(r.height, 40)), "no data sources", size=24, fill=pal.dim, valign="top")

    return paint


def paint_base(draw: Any, layout: PanelLayout, palette: Palette = PALETTE) -> None:
    """What lies between the cells: the background and the divider line."""
    draw.rectangle((0, 0, layout.width - 1, layout.height - 1), fill=palette.bg)
    if layout.divider is not None:
        draw.line(layout.divider, fill=palette.edge, width=2)


def render_cells(width: int, height: int, layout: PanelLayout, cells: Sequence[Cell], palette: Palette = PALETTE) -> Any:
    """All of the panel (Pillow RGB image): the base, then every cell."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), palette.bg)
    d = ImageDraw.Draw(img)
    paint_base(d, layout, palette)
    for c in cells:
        c.paint(d, c.rect)
    return img


def panel_cells(width: int, height: int, readings: Mapping[str, Reading], *, sources: Sequence[str] | None = None) -> list[PanelCell]:
    """The value cells :func:`render_panel` draws for ``readings`` in a ``width x height`` panel:
    one block per data source (``sources``, default the mapping's order), its values in
    :data:`~.fields.PANEL_FIELDS` order."""
    layout = panel_layout(width, height, [], blocks_for(readings, sources))
    return panel_scene(layout, readings, {}, 0)[1]


def render_panel(width: int, height: int, readings: Mapping[str, Reading], event: Mapping[str, Any], time_ns: int, *,
                 sources: Sequence[str] | None = None, status: Mapping[str, str] | None = None,
                 trends: Mapping[str, Sequence[tuple[float, float | None]]] | None = None, window_s: float = 600.0,
                 palette: Palette = PALETTE) -> Any:
    """The data panel (Pillow RGB image) for output time ``time_ns``: the ``REC`` clock and the
    event rows (:func:`event_rows`) on one side, one block per data source (``sources``, default
    the readings' order; ``status`` per source) with its values (:func:`panel_cells`) and, for a BIS
    monitor, the trend of ``trends[source]`` over the last ``window_s`` seconds."""
    rows = [(k, label) for k, label, _ in event_rows(event)]
    layout = panel_layout(width, height, rows, blocks_for(readings, sources))
    cells, _ = panel_scene(layout, readings, event, time_ns, status=status, trends=trends, window_s=window_s, palette=palette)
    return render_cells(width, height, layout, cells, palette)
