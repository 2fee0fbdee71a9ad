"""The BIS trend chart of the event page: a server-rendered SVG (no script, no chart library).

>>> c = trend_chart([(0.0, 50.0), (1.0, 48.0), (2.0, None), (3.0, 45.0)])
>>> c.points, c.gaps
(3, 1)

:func:`event_series` reads the event's data tracks (``kind="data"`` files ``*.data.jsonl``, see
:mod:`surgbox.readings`) through the user's catalog session (``view``, audited like any file
read) and joins them in recording order: each later recording starts where the one before
ended, after a gap. :func:`trend_chart` lays the series out in SVG user units: x in minutes
(seconds for less than two minutes) since the first recording started, y the BIS index (0-100, no unit), the 40-60 band of general
anaesthesia shaded. A line breaks (a gap) where the monitor sent no value (``None``) and where
no reading came for longer than :data:`GAP_S` seconds or three typical intervals, so a pause is
never drawn as a straight line. More readings than :data:`MAX_POINTS` are averaged per bucket
of equal time, so the page stays small whatever the recording's length.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import attrs

from ..readings import SUFFIX, read_data_track
from ..report import _nice_step as nice_step  # one tick rule for the PDF report's chart and this one

GAP_S = 10.0
MAX_POINTS = 1200
WIDTH, HEIGHT = 1000.0, 300.0
#: the plot area inside the SVG (left, top, right, bottom margins for the axes' labels)
MARGIN = (56.0, 30.0, 16.0, 40.0)
BAND = (40.0, 60.0)

Series = Sequence[tuple[float, float | None]]


@attrs.frozen
class Chart:
    """A laid-out chart: ``lines`` (each a list of ``(x, y)`` in SVG units, drawn as one polyline;
    single points as dots), ``x_ticks`` / ``y_ticks`` (``(position, label)``), the shaded band's
    ``band_y`` (top, bottom), the plot ``area`` (x0, y0, x1, y1); ``points`` plotted, ``gaps``
    between lines, ``minutes`` covered, ``x_unit`` of the x labels (``"min"`` or ``"s"``)."""

    lines: tuple[tuple[tuple[float, float], ...], ...]
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]
    band_y: tuple[float, float]
    area: tuple[float, float, float, float]
    points: int
    gaps: int
    minutes: float
    x_unit: str = "min"
    width: float = WIDTH
    height: float = HEIGHT

    def polyline(self, line: Sequence[tuple[float, float]]) -> str:
        """``points`` attribute text of one line."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in line)


def event_series(session: Any, event: Any, name: str = "BIS") -> list[tuple[float, float | None]]:
    """``[(t seconds, value)]`` of ``name`` over the event's data tracks, in recording order (each
    later track shifted to start after the previous one's end, a ``None`` marking the break)."""
    out: list[tuple[float, float | None]] = []
    for f in sorted((f for f in event.files if f.kind == "data" and f.name.endswith(SUFFIX)), key=lambda f: f.id):
        with session.events.open_file(event.id, f.name) as r:
            series = read_data_track(r).series(name)
        if not series:
            continue
        shift = 0.0
        if out:
            shift = out[-1][0] + GAP_S - min(t for t, _ in series)
            out.append((out[-1][0], None))
        out += [(t + shift, v) for t, v in series]
    return out


def _bucketed(series: Series, t0: float, t1: float, n: int) -> list[tuple[float, float | None]]:
    """At most ``n`` points: the mean of each equal-time bucket (``None`` for an empty one)."""
    sums, counts = [0.0] * n, [0] * n
    for t, v in series:
        if v is not None and math.isfinite(v):
            i = min(n - 1, int((t - t0) / (t1 - t0) * n))
            sums[i] += v
            counts[i] += 1
    step = (t1 - t0) / n
    return [(t0 + (i + 0.5) * step, sums[i] / counts[i] if counts[i] else None) for i in range(n)]


def _runs(series: Series, max_gap: float) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    last_t = None
    for t, v in series:
        if v is None or not math.isfinite(v):
            runs.append([])
            continue
        if last_t is not None and t - last_t > max_gap:
            runs.append([])
        runs[-1].append((t, v))
        last_t = t
    return [r for r in runs if r]


def trend_chart(series: Series, *, max_points: int = MAX_POINTS) -> Chart | None:
    """The chart of ``series`` (``[(t seconds, BIS or None)]``, any order); ``None`` when it
    holds no valid value (the page shows an empty state)."""
    series = sorted(((float(t), v) for t, v in series if math.isfinite(t)), key=lambda p: p[0])
    valid = [t for t, v in series if v is not None and math.isfinite(v)]
    if not valid:
        return None
    t0, t1 = min(series[0][0], 0.0), series[-1][0]  # the axis starts at the recording's start
    if t1 - t0 < 1e-6:
        t1 = t0 + 60.0
    steps = [b - a for a, b in zip(valid, valid[1:]) if b > a]
    typical = statistics.median(steps) if steps else GAP_S
    max_gap = max(GAP_S, 3 * typical)
    if len(valid) > max_points:
        series = _bucketed(series, t0, t1, max_points)
        max_gap = max(max_gap, 3 * (t1 - t0) / max_points)
    left, top, right, bottom = MARGIN
    x0, y0, x1, y1 = left, top, WIDTH - right, HEIGHT - bottom
    unit, per = ("min", 60.0) if t1 - t0 >= 120 else ("s", 1.0)
    m0, m1 = t0 / per, t1 / per
    X = lambda m: x0 + (m - m0) / (m1 - m0) * (x1 - x0)  # noqa: E731
    Y = lambda v: y1 - max(0.0, min(100.0, v)) / 100 * (y1 - y0)  # noqa: E731
    runs = _runs(series, max_gap)
    lines = tuple(tuple((round(X(t / per), 1), round(Y(v), 1)) for t, v in r) for r in runs)
    step = nice_step(m1 - m0)
    first = math.ceil(m0 / step - 1e-9) * step
    count = int(math.floor((m1 - first) / step + 1e-9)) + 1
    x_ticks = tuple((round(X(first + i * step), 1), f"{first + i * step:g}") for i in range(max(count, 0)))
    y_ticks = tuple((round(Y(v), 1), str(v)) for v in range(0, 101, 20))
    return Chart(lines, x_ticks, y_ticks, (round(Y(BAND[1]), 1), round(Y(BAND[0]), 1)), (x0, y0, x1, y1),
                 sum(len(r) for r in lines), max(len(lines) - 1, 0), round((t1 - t0) / 60, 2), unit)


__all__ = ["GAP_S", "MAX_POINTS", "Chart", "event_series", "trend_chart"]
