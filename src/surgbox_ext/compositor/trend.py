"""The BIS trend of the data panel: a bounded series accumulated from the readings the compositor
is given, and its chart (Pillow).

Time base: seconds on the recording's output time line (``compose``'s ``time_ns / 1e9``); a
reading is placed at the output time of the first tick that showed it (within one frame of its
capture, :mod:`surgbox.recorder`). Memory is bounded: points older than the window are dropped and
at most ``max_points`` are kept whatever the reading rate.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import attrs

from surgbox.types import Rect

from .fields import BIS_LIMITS, CAUTION, NORMAL
from .text import draw_fitted, load_font

GAP_S = 10.0
"""Points further apart than this are not joined: the chart shows a gap (no data)."""


@attrs.define(eq=False)
class Trend:
    """``(t_s, value | None)`` points of one trended value, oldest first, covering the last
    ``window_s`` seconds (``None``: the value was invalid). ``version`` counts changes."""

    window_s: float = 600.0
    max_points: int = 4096
    points: collections.deque = attrs.field(init=False)
    version: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.window_s > 0 or self.max_points < 2:
            raise ValueError(f"trend: window_s ({self.window_s}) must be > 0 and max_points ({self.max_points}) >= 2")
        self.points = collections.deque(maxlen=self.max_points)

    def add(self, t_s: float, value: float | None) -> None:
        """Append a point (``t_s`` not before the last one; an earlier one is ignored)."""
        if self.points and t_s < self.points[-1][0]:
            return
        self.points.append((float(t_s), None if value is None else float(value)))
        while self.points and self.points[0][0] < t_s - self.window_s - GAP_S:
            self.points.popleft()
        self.version += 1


def trend_step_s(window_s: float, width_px: int) -> int:
    """How often (whole seconds) the chart must be redrawn for its time axis to move by one pixel."""
    return max(1, int(window_s // max(1, width_px)))


def _label(window_s: float) -> str:
    minutes = window_s / 60
    return f"{minutes:g} min" if minutes >= 1 else f"{window_s:g} s"


def _label_px(box: Rect) -> int:
    return max(9, min(20, box.height // 9))


def plot_area(box: Rect) -> Rect:
    """The plot of a chart drawn in ``box`` by :func:`draw_trend` (inside it: below the title,
    right of the value axis, above the time axis)."""
    label_px = _label_px(box)
    head = label_px + max(4, label_px * 3 // 4)
    axis_w = round(label_px * 2.0)
    return Rect(box.x + axis_w, box.y + head, max(2, box.width - axis_w - label_px // 2), max(2, box.height - head - label_px - 6))


def value_y(plot: Rect, v: float, lo: float = 0.0, hi: float = 100.0) -> float:
    """Pixel row of value ``v`` in ``plot`` (``lo`` at the bottom, ``hi`` at the top; clamped)."""
    v = min(hi, max(lo, v))
    return plot.y2 - 1 - (v - lo) / (hi - lo) * (plot.height - 1)


def time_x(plot: Rect, t_s: float, now_s: float, window_s: float) -> float:
    """Pixel column of time ``t_s`` in ``plot``: ``now_s`` at the right edge, ``now_s - window_s`` at the left."""
    return plot.x2 - 1 - (now_s - t_s) / window_s * (plot.width - 1)


def draw_trend(draw: Any, box: Rect, points: Sequence[tuple[float, float | None]], now_s: float, *, window_s: float,
               title: str, palette: Any, lo: float = 0.0, hi: float = 100.0) -> Rect:
    """Draw the trend chart of ``points`` (seconds, values; the newest at ``now_s`` is at the right
    edge) in ``box``: title, the 40-60 target band, grid values, the line (in the caution colour
    outside the band) and the time axis. Returns the plot area (:func:`plot_area`)."""
    label_px = _label_px(box)
    plot = plot_area(box)
    head = plot.y - box.y
    axis_w = plot.x - box.x
    draw_fitted(draw, Rect(plot.x, box.y, max(1, box.width * 3 // 5), head), f"{title}  {_label(window_s)}",
                size=label_px, fill=palette.label, valign="top")
    band_lo, band_hi = BIS_LIMITS.caution_low, BIS_LIMITS.caution_high

    def y_of(v: float) -> float:
        return value_y(plot, v, lo, hi)

    def x_of(t: float) -> float:
        return time_x(plot, t, now_s, window_s)

    draw.rectangle((plot.x, y_of(band_hi), plot.x2 - 1, y_of(band_lo)), fill=palette.band)
    for v in (lo, band_lo, band_hi, hi):
        y = round(y_of(v))
        draw.line((plot.x, y, plot.x2 - 1, y), fill=palette.grid, width=1)
        draw_fitted(draw, Rect(box.x, max(box.y, y - label_px), max(1, axis_w - 4), 2 * label_px), f"{v:g}",
                    size=label_px - 1, fill=palette.dim, align="right")
    for frac in (0.0, 0.5):
        x = round(plot.x + frac * (plot.width - 1))
        draw.line((x, plot.y, x, plot.y2 - 1), fill=palette.grid, width=1)
    axis = Rect(plot.x, plot.y2 + 2, plot.width, max(1, box.y2 - plot.y2 - 2))
    draw_fitted(draw, axis, f"-{_label(window_s)}", size=label_px - 1, fill=palette.dim, valign="top")
    draw_fitted(draw, axis, "now", size=label_px - 1, fill=palette.dim, align="right", valign="top")
    mid = f"-{_label(window_s / 2)}"
    if plot.width >= 6 * draw.textlength(mid, font=load_font(label_px - 1)):  # room between the two ends
        draw_fitted(draw, axis, mid, size=label_px - 1, fill=palette.dim, align="center", valign="top")

    width = max(3, min(4, box.height // 80))  # at least one whole 4:2:0 chroma row: the colour survives
    start = now_s - window_s
    runs: list[list[tuple[float, float, bool]]] = []  # joined points: (x, y, in the target band)
    run: list[tuple[float, float, bool]] = []
    last_t: float | None = None
    for t, v in points:
        if t < start - GAP_S or t > now_s:
            continue
        if v is None or (last_t is not None and t - last_t > GAP_S):
            if run:
                runs.append(run)
            run = []
        last_t = None if v is None else t
        if v is None:
            continue
        x, y = x_of(max(t, start)), y_of(v)
        if run and round(x) == round(run[-1][0]) and round(y) == round(run[-1][1]):
            continue  # the same pixel: bounded drawing cost whatever the reading rate
        run.append((x, y, band_lo <= v <= band_hi))
    if run:
        runs.append(run)
    for run in runs:
        if len(run) == 1:
            x, y, ok = run[0]
            draw.ellipse((x - width, y - width, x + width, y + width), fill=palette.colours[NORMAL if ok else CAUTION])
            continue
        colour = run[1][2]  # a segment takes the colour of the point it ends at
        line = [run[0][:2]]
        for x, y, ok in run[1:]:
            if ok != colour:
                draw.line(line, fill=palette.colours[NORMAL if colour else CAUTION], width=width, joint="curve")
                line, colour = [line[-1]], ok
            line.append((x, y))
        draw.line(line, fill=palette.colours[NORMAL if colour else CAUTION], width=width, joint="curve")
    if runs and last_t is not None and now_s - last_t <= GAP_S:
        r = width + 1
        x, y, _ = runs[-1][-1]
        draw.ellipse((x - r, y - r, x + r, y + r), fill=palette.text)
    return plot
