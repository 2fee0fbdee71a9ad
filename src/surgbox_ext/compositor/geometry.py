"""Where everything goes in the data panel: :func:`panel_layout` (pure geometry, panel pixels).

A wide panel (``width >= 1.6 * height``) has the event column on the left (a third of the width,
at most 620 px; 45 % in a panel under 250 px high) and the data blocks side by side on the right;
a tall one has the event rows on top and the blocks stacked below. Event rows that would be lower
than 34 px go in two columns. A BIS block has the big BIS tile, SQI / EMG / SR tiles beside it and the BIS trend
to the right (wide blocks) or below (tall ones); other kinds get a grid of tiles. Event rows come
in :data:`EVENT_ORDER`, then the other event fields, then ``time``, in every layout; rows that do
not fit a very short panel are left out from the end. Every rectangle has even coordinates and
sizes (clean 4:2:0 blits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from surgbox.types import Reading, Rect

from .fields import FieldSpec, fields_for
from .text import load_font

EVENT_ORDER: tuple[tuple[str, str], ...] = (
    ("id", "EVENT"),
    ("place", "PLACE"),
    ("procedure", "PROCEDURE"),
    ("physicians", "PHYSICIANS"),
    ("surgeon", "SURGEON"),
    ("anaesthetist", "ANAESTHETIST"),
    ("anesthetist", "ANESTHETIST"),
)
"""Event fields shown first, in this order, with their labels; other fields follow in the
mapping's order (label: the key in capitals), and ``time`` (the wall clock) comes last."""


@attrs.frozen
class Tile:
    """Where one field goes: the tile, its label, value and unit boxes (panel pixels)."""

    spec: FieldSpec
    rect: Rect
    label: Rect
    value: Rect
    unit: Rect | None
    big: bool = False


@attrs.frozen
class BlockLayout:
    """One data source's block: ``header``, ``tiles`` in field order, ``trend`` (or ``None``)
    and ``body`` (everything under the header: the placeholder while there is no data)."""

    source: str
    kind: str | None
    rect: Rect
    header: Rect
    body: Rect
    tiles: tuple[Tile, ...]
    trend: Rect | None


@attrs.frozen
class PanelLayout:
    """Everything's place in a ``width x height`` panel (see the module doc)."""

    width: int
    height: int
    rec: Rect
    rows: tuple[tuple[str, str, Rect, Rect], ...]  # (event key, label, label box, value box)
    blocks: tuple[BlockLayout, ...]
    data: Rect
    divider: tuple[int, int, int, int] | None


def even_rect(x: float, y: float, w: float, h: float) -> Rect:
    """The rectangle (x, y, w, h) shrunk to even coordinates and sizes (at least 2x2)."""
    x0, y0 = (int(x) + 1) & ~1, (int(y) + 1) & ~1
    return Rect(x0, y0, max(2, (int(x + w) - x0) & ~1), max(2, (int(y + h) - y0) & ~1))


def clamp(v: float, lo: float, hi: float) -> int:
    """``v`` limited to ``lo..hi``, as an integer number of pixels."""
    return int(min(hi, max(lo, v)))


def event_rows(event: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(key, label, text)`` of the event fields shown, in panel order (:data:`EVENT_ORDER`);
    empty fields are left out; a list (``physicians``) is joined with commas."""

    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return ", ".join(str(x) for x in v if x not in (None, ""))
        return str(v)

    known = dict(EVENT_ORDER)
    keys = [k for k, _ in EVENT_ORDER if k in event]
    keys += [k for k in event if k not in known and k != "time"]
    if "time" in event:
        keys.append("time")
    rows = []
    for k in keys:
        v = event[k]
        if v is None or text(v) == "":
            continue
        rows.append((str(k), known.get(k) or str(k).replace("_", " ").upper(), text(v)))
    return rows


def _block_layout(source: str, kind: str | None, fields: Sequence[FieldSpec], r: Rect) -> BlockLayout:
    hh = clamp(r.height * 0.11, 16, 36)
    header = even_rect(r.x, r.y, r.width, hh)
    body = even_rect(r.x, header.y2 + 4, r.width, r.y2 - header.y2 - 4)
    if kind is None or not fields:
        return BlockLayout(source, kind, r, header, body, (), None)
    gap = max(4, r.height // 45)
    trend = None
    values = body
    if kind in ("bis", "bis-history"):  # the BIS block: trend beside or below the values
        if body.width >= 2.6 * body.height and body.width >= 560:
            vw = clamp(body.height * 2.4, body.width * 0.36, body.width * 0.56)
            values = even_rect(body.x, body.y, vw, body.height)
            trend = even_rect(values.x2 + gap, body.y, body.x2 - values.x2 - gap, body.height)
        elif body.height >= 220:
            vh = body.height * 0.56
            values = even_rect(body.x, body.y, body.width, vh)
            trend = even_rect(body.x, values.y2 + gap, body.width, body.y2 - values.y2 - gap)
        tiles = _bis_tiles(fields, values, gap)
    else:
        tiles = _grid_tiles(fields, values, gap)
    return BlockLayout(source, kind, r, header, body, tiles, trend)


def _bis_tiles(fields: Sequence[FieldSpec], v: Rect, gap: int) -> tuple[Tile, ...]:
    main = even_rect(v.x, v.y, (v.width - gap) * 0.46, v.height)
    ip = max(4, main.height // 24)
    lab_h = clamp(main.height * 0.15, 12, 34)
    tiles = [Tile(fields[0], main, even_rect(main.x + ip * 2, main.y + ip, main.width - 4 * ip, lab_h),
                  even_rect(main.x + ip * 2, main.y + ip + lab_h, main.width - 4 * ip, main.height - 2 * ip - lab_h), None, big=True)]
    rest = list(fields[1:])
    if rest:
        x0 = main.x2 + gap
        th = (v.height - gap * (len(rest) - 1)) / len(rest)
        for i, spec in enumerate(rest):
            t = even_rect(x0, v.y + i * (th + gap), v.x2 - x0, th)
            ip = max(4, t.height // 10)
            inner = even_rect(t.x + 2 * ip, t.y + ip, t.width - 4 * ip, t.height - 2 * ip)
            lw, uw = inner.width * 0.28, inner.width * 0.2
            tiles.append(Tile(spec, t, even_rect(inner.x, inner.y, lw, inner.height),
                              even_rect(inner.x + lw, inner.y, inner.width - lw - uw, inner.height),
                              even_rect(inner.x2 - uw + ip, inner.y, uw - ip, inner.height)))
    return tuple(tiles)


def _grid_tiles(fields: Sequence[FieldSpec], v: Rect, gap: int) -> tuple[Tile, ...]:
    cols = max(1, min(len(fields), 4, v.width // 120))
    rows = max(1, min(-(-len(fields) // cols), v.height // 48))
    tw, th = (v.width - gap * (cols - 1)) / cols, (v.height - gap * (rows - 1)) / rows
    tiles = []
    for j, spec in enumerate(fields[: cols * rows]):  # values beyond the grid are not shown
        t = even_rect(v.x + (j % cols) * (tw + gap), v.y + (j // cols) * (th + gap), tw, th)
        ip = max(4, t.height // 12)
        lab_h = clamp(t.height * 0.26, 10, 28)
        tiles.append(Tile(spec, t, even_rect(t.x + 2 * ip, t.y + ip, t.width - 4 * ip, lab_h),
                          even_rect(t.x + 2 * ip, t.y + ip + lab_h, t.width - 4 * ip, t.height - 2 * ip - lab_h), None))
    return tuple(tiles)


def panel_layout(width: int, height: int, rows: Sequence[tuple[str, str]], blocks: Sequence[tuple[str, str | None, Sequence[FieldSpec]]]) -> PanelLayout:
    """Geometry of a ``width x height`` panel with event ``rows`` (``(key, label)`` in order) and
    data ``blocks`` (``(source, kind or None before the first reading, fields)``). The data side
    does not depend on the rows, so value boxes are the same whatever the event."""
    pad = max(6, round(height * 0.035)) & ~1
    gap = pad
    wide = width >= 1.6 * height
    if wide:
        ew = min(width // 3, 620) if height >= 250 else min(width * 9 // 20, 880)  # short: event rows in 2 columns
        e = even_rect(pad, pad, ew - pad, height - 2 * pad)
        data = even_rect(e.x2 + 2 * gap, pad, width - e.x2 - 2 * gap - pad, height - 2 * pad)
        divider = (e.x2 + gap, pad, e.x2 + gap, height - pad)
    else:
        eh = height * 0.4
        e = even_rect(pad, pad, width - 2 * pad, eh)
        data = even_rect(pad, e.y2 + 2 * gap, width - 2 * pad, height - e.y2 - 2 * gap - pad)
        divider = (pad, e.y2 + gap, width - pad, e.y2 + gap)
    rec_h = clamp(e.height * 0.2, 18, 64)
    rec = even_rect(e.x, e.y, e.width, rec_h)
    placed = _row_boxes(rows, even_rect(e.x, rec.y2 + gap // 2, e.width, e.y2 - rec.y2 - gap // 2), gap)
    n = len(blocks)
    out = []
    for i, (src, kind, fields) in enumerate(blocks):
        if wide:
            bw = (data.width - gap * (n - 1)) / n
            r = even_rect(data.x + i * (bw + gap), data.y, bw, data.height)
        else:
            bh = (data.height - gap * (n - 1)) / n
            r = even_rect(data.x, data.y + i * (bh + gap), data.width, bh)
        out.append(_block_layout(src, kind, fields, r))
    return PanelLayout(width, height, rec, placed, tuple(out), data, divider)


def _row_boxes(rows: Sequence[tuple[str, str]], area: Rect, gap: int) -> tuple[tuple[str, str, Rect, Rect], ...]:
    if not rows:
        return ()
    n = len(rows)
    cols = 1
    row_h = area.height / n
    if row_h < 34 and area.width >= 500:
        cols = 2
        row_h = area.height / -(-n // cols)
    row_h = min(row_h, 58.0)
    per_col = max(1, int(area.height / max(1.0, row_h) + 1e-6))
    col_w = (area.width - gap * (cols - 1)) / cols
    label_px = clamp(row_h * 0.42, 9, 22)
    font = load_font(label_px)
    shown = rows[: per_col * cols]
    out = []
    for c in range(cols):  # each column as wide a label column as its own labels need
        column = shown[c * per_col : (c + 1) * per_col]
        if not column:
            break
        key_w = min(col_w * 0.42, max(font.getlength(label) for _, label in column) + 2 * gap)
        for j, (key, label) in enumerate(column):
            x, y = area.x + c * (col_w + gap), area.y + j * row_h
            out.append((key, label, even_rect(x, y, key_w - gap // 2, row_h), even_rect(x + key_w, y, col_w - key_w, row_h)))
    return tuple(out)


def blocks_for(readings: Mapping[str, Reading], sources: Sequence[str] | None = None,
               kinds: Mapping[str, str] | None = None) -> list[tuple[str, str | None, tuple[FieldSpec, ...]]]:
    """The data blocks, in order: ``sources`` (default: the readings' order) with the kind and
    fields of their reading (or of ``kinds``, the last kind seen per source; ``None``: no reading yet)."""
    out = []
    for src in (list(readings) if sources is None else sources):
        r = readings.get(src)
        kind = r.kind if r is not None else (kinds or {}).get(src)
        fields = fields_for(kind, r.values if r is not None else {}) if kind is not None else ()
        out.append((str(src), kind, fields))
    return out
