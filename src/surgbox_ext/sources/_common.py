"""Helpers shared by the source modules: option converters, pacing, fonts, plane access."""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from surgbox.clock import NS_PER_S

if TYPE_CHECKING:  # pragma: no cover
    from surgbox.capture import ThreadedSource

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSansMono-Bold.ttf",
)


def to_fraction(value: Any) -> Fraction:
    """A rate as an exact fraction: ``30``, ``29.97``, ``"30000/1001"`` or a ``Fraction``."""
    try:
        rate = Fraction(str(value)) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"rate {value!r} is not a number like 30, 29.97 or '30000/1001'") from exc
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {value!r}")
    return rate


def positive(instance: Any, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: Any, value: float) -> None:
    if value < 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be >= 0, got {value!r}")


def pace(source: ThreadedSource, t_ns: int) -> bool:
    """Wait on the source's clock until ``t_ns``; False if the source was stopped meanwhile.

    Long waits are cut into stop-aware slices; the last 50 ms use ``clock.sleep_until`` so the
    release instant is as exact as the clock allows.
    """
    clock = source.clock
    assert clock is not None
    while True:
        delay = t_ns - clock.now_ns()
        if delay <= 50_000_000:
            break
        if source.wait(min(delay - 50_000_000, 250_000_000) / NS_PER_S):
            return False
    clock.sleep_until(t_ns)
    return not source.stopping


def markers_between(a_ns: int, b_ns: int, period_ns: int) -> range:
    """Indices ``m`` of the multiples ``m * period_ns`` that lie in ``(a_ns, b_ns]``."""
    return range(a_ns // period_ns + 1, b_ns // period_ns + 1)


@functools.lru_cache(maxsize=16)
def load_font(size: int) -> Any:
    """A real TrueType font of ``size`` pixels: DejaVu Sans Mono Bold when installed, else the
    FreeType font that ships inside Pillow (``ImageFont.load_default(size=...)``)."""
    from PIL import ImageFont

    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def plane_array(plane: Any) -> np.ndarray:
    """A writable ``(height, width)`` uint8 view of an ``av`` video plane (padding excluded)."""
    buf = np.frombuffer(plane, np.uint8)
    return buf[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)[:, : plane.width]
