"""Text that never leaves its box: shrink to fit, then ellipsize (Pillow + the bundled DejaVu fonts).

Coordinates are pixels of the image drawn on; a box is a :class:`~surgbox.types.Rect`. The ink of
the text drawn by :func:`draw_fitted` (Pillow's ``font.getbbox`` at the drawing anchor) lies inside
the box: that is the contract the tests measure on rendered pixels.
"""

from __future__ import annotations

import functools
from typing import Any

from surgbox import fonts
from surgbox.types import Rect

ELLIPSIS = "\u2026"


def load_font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans (bold) of ``size`` px as a Pillow font (:func:`surgbox.fonts.load`)."""
    return fonts.load(max(1, int(size)), bold=bold)


def _ink(font: Any, text: str) -> tuple[int, int, int, int]:
    """Ink box of ``text`` drawn at (0, 0) with anchor ``ls`` (left, baseline)."""
    return font.getbbox(text, anchor="ls")


DIGITS = "0123456789"


def line_extent(font: Any, tight: bool = False) -> tuple[int, int]:
    """Pixels above and below the baseline a line of ``font`` needs: its ascent and descent, or
    with ``tight`` the ink of the digits (for numbers: ``0-9``, ``-``, ``.`` stay inside it)."""
    if tight:
        _, top, _, bottom = _ink(font, DIGITS)
        return -top, max(0, bottom)
    return font.getmetrics()


@functools.lru_cache(maxsize=1024)
def fit_text(text: str, width: int, height: int, *, size: int, min_size: int | None = None, bold: bool = False,
             tight: bool = False) -> tuple[Any, str]:
    """The font and text to draw ``text`` inside ``width x height`` pixels: ``size`` px (capped so
    the line, :func:`line_extent`, fits ``height``), shrunk down to ``min_size`` (default 60 % of
    ``size``, at least 8 px) until it fits, then cut with an ellipsis (``"Laparoscopic chol…"``).
    Returns ``(font, text)``; the text may be ``""`` when not even the ellipsis fits. Results are
    cached (the panel fits the same texts again every second)."""
    size = max(1, int(size))
    font = load_font(size, bold)
    while size > 1 and sum(line_extent(font, tight)) > height:  # the line height decides first
        size = max(1, min(size - 1, size * height // max(1, sum(line_extent(font, tight)))))
        font = load_font(size, bold)
    floor = max(1, min(size, int(min_size) if min_size is not None else max(8, size * 3 // 5)))
    while True:
        x0, _, x1, _ = _ink(font, text)
        w = x1 - min(0, x0)
        if w <= width:
            return font, text
        if size <= floor:
            break
        size = max(floor, min(size - 1, size * width // max(1, w)))
        font = load_font(size, bold)
    return font, ellipsize(text, font, width)


def ellipsize(text: str, font: Any, width: int) -> str:
    """The longest prefix of ``text`` (trailing blanks removed) plus ``…`` whose ink fits ``width``
    pixels in ``font``; ``text`` itself when it fits; ``""`` when not even ``…`` fits."""

    def fits(t: str) -> bool:
        x0, _, x1, _ = _ink(font, t)
        return x1 - min(0, x0) <= width

    if fits(text):
        return text
    lo, hi = 0, len(text)  # fits(text[:lo] + …) holds for lo (checked below), not for hi
    if not fits(ELLIPSIS):
        return ""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(text[:mid].rstrip() + ELLIPSIS):
            lo = mid
        else:
            hi = mid
    return text[:lo].rstrip() + ELLIPSIS


def draw_fitted(draw: Any, box: Rect, text: str, *, size: int, fill: Any, bold: bool = False,
                align: str = "left", min_size: int | None = None, valign: str = "middle", tight: bool = False,
                ref: str | None = None) -> tuple[Any, str]:
    """Draw ``text`` inside ``box`` (:func:`fit_text`), aligned ``left``/``center``/``right`` and
    ``top``/``middle``/``bottom`` (by :func:`line_extent`, so texts of one size share a baseline);
    with ``ref`` (``"100"``) the size is the one that fits ``ref``, so every value of a field is
    drawn at one size (a wider text still shrinks). Returns the ``(font, text)`` drawn."""
    if ref is not None:
        size = fit_text(ref, box.width, box.height, size=size, min_size=1, bold=bold, tight=tight)[0].size
    font, shown = fit_text(text, box.width, box.height, size=size, min_size=min_size, bold=bold, tight=tight)
    if not shown:
        return font, shown
    x0, _, x1, _ = _ink(font, shown)
    ink_w = x1 - min(0, x0)
    asc, desc = line_extent(font, tight)
    if align == "center":
        x = box.x + (box.width - ink_w) // 2
    elif align == "right":
        x = box.x2 - ink_w
    else:
        x = box.x
    x -= min(0, x0)
    if valign == "top":
        y = box.y + asc
    elif valign == "bottom":
        y = box.y2 - desc
    else:
        y = box.y + (box.height - asc - desc) // 2 + asc
    draw.text((x, y), shown, font=font, fill=fill, anchor="ls")
    return font, shown
