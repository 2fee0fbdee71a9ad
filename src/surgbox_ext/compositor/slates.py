"""The pictures a video slot shows without a live frame: ``CONNECTING <name>`` and ``NO SIGNAL <name>``.

``CONNECTING`` is calm (dark slate, grey frame, no red) and shows while a source has not delivered
its first frame yet; ``NO SIGNAL`` (red frame) when a source that should be there is not: it
stopped sending, it could not start, or it never delivered a frame within its timeout.
"""

from __future__ import annotations

from typing import Any

from surgbox.types import Rect

from .text import draw_fitted

SLATE_BG = (24, 32, 72)
CONNECTING_BG = (26, 32, 42)
NO_SIGNAL_EDGE = (230, 60, 60)
CONNECTING_EDGE = (70, 84, 104)


def render_slate(name: str, width: int, height: int, *, connecting: bool = False) -> Any:
    """The ``NO SIGNAL <name>`` (or, with ``connecting``, ``CONNECTING <name>``) picture: a
    Pillow RGB image of ``width x height``; both words and the name fit inside the frame."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), CONNECTING_BG if connecting else SLATE_BG)
    d = ImageDraw.Draw(img)
    border = max(2, min(width, height) // 60)
    d.rectangle((0, 0, width - 1, height - 1), outline=CONNECTING_EDGE if connecting else NO_SIGNAL_EDGE, width=border)
    big = max(10, min(height // 5, width // 7))
    small = max(8, min(height // 10, width // 14))
    margin = 2 * border
    inner = max(1, width - 2 * margin)
    cy = height // 2
    gap = max(1, round(height * 0.06))
    title, title_fill = ("CONNECTING", (200, 210, 222)) if connecting else ("NO SIGNAL", (255, 255, 255))
    if connecting:
        big = max(10, big * 3 // 4)  # calmer: smaller than NO SIGNAL
    top = max(margin, cy - gap - round(big * 1.2))
    draw_fitted(d, Rect(margin, top, inner, max(1, cy - gap - top)), title, size=big, fill=title_fill, bold=True,
                align="center", valign="bottom")
    bottom = min(height - margin, cy + gap + round(small * 1.3))
    draw_fitted(d, Rect(margin, cy + gap, inner, max(1, bottom - cy - gap)), name, size=small,
                fill=(150, 170, 190) if connecting else (255, 220, 120), align="center", valign="top")
    return img
