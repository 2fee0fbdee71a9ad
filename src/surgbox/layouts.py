"""Layout presets: where each source and the data panel go in the composite picture.

Every preset is a function ``preset(sources=None) -> Layout``; ``sources`` maps slot names to
source names (a slot shows the source of the same name by default). Coordinates are pixels of
the 1920x1080 composite, origin top-left.

>>> paper().slot("room").rect.as_xywh()
(1280, 0, 640, 360)
>>> paper({"endoscope": "cam1"}).slot("endoscope").source
'cam1'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .errors import ConfigError
from .types import Layout, Rect, Slot

WIDTH, HEIGHT = 1920, 1080


def _video(name: str, rect: tuple[int, int, int, int], role: str | None, sources: Mapping[str, str] | None) -> Slot:
    return Slot(name, Rect(*rect), "video", (sources or {}).get(name, name), role)


def _check(name: str, slots: set[str], sources: Mapping[str, str] | None) -> None:
    unknown = sorted(set(sources or {}) - slots)
    if unknown:
        raise ConfigError(f"layout preset {name!r} has no slot(s) {', '.join(unknown)}; its slots are {', '.join(sorted(slots))}")


def paper(sources: Mapping[str, str] | None = None) -> Layout:
    """The Life Surgery Box picture: large ``endoscope`` view (0,0,1280,720), ``room`` camera
    (1280,0,640,360, role ``room_camera``), ``vitals`` monitor (1280,360,640,360) and the data
    ``panel`` strip below (0,720,1920,360: vitals/BIS readings and event fields)."""
    _check("paper", {"endoscope", "room", "vitals"}, sources)
    return Layout(
        WIDTH,
        HEIGHT,
        (
            _video("endoscope", (0, 0, 1280, 720), "endoscope", sources),
            _video("room", (1280, 0, 640, 360), "room_camera", sources),
            _video("vitals", (1280, 360, 640, 360), "vitals", sources),
            Slot("panel", Rect(0, 720, 1920, 360), "panel", None, "data"),
        ),
        name="paper",
    )


def single(sources: Mapping[str, str] | None = None) -> Layout:
    """One ``main`` source over 1920x900 with a 180-pixel data ``panel`` below."""
    _check("single", {"main"}, sources)
    return Layout(
        WIDTH,
        HEIGHT,
        (_video("main", (0, 0, 1920, 900), "endoscope", sources), Slot("panel", Rect(0, 900, 1920, 180), "panel", None, "data")),
        name="single",
    )


def side_by_side(sources: Mapping[str, str] | None = None) -> Layout:
    """``left`` (role ``endoscope``) and ``right`` (role ``room_camera``) at 960x540 each, the
    data ``panel`` below (0,540,1920,540)."""
    _check("side_by_side", {"left", "right"}, sources)
    return Layout(
        WIDTH,
        HEIGHT,
        (
            _video("left", (0, 0, 960, 540), "endoscope", sources),
            _video("right", (960, 0, 960, 540), "room_camera", sources),
            Slot("panel", Rect(0, 540, 1920, 540), "panel", None, "data"),
        ),
        name="side_by_side",
    )


def quad(sources: Mapping[str, str] | None = None) -> Layout:
    """Four 960x540 views ``q1`` (top-left, role ``endoscope``), ``q2`` (top-right, role
    ``room_camera``), ``q3``, ``q4``; no panel."""
    _check("quad", {"q1", "q2", "q3", "q4"}, sources)
    roles = {"q1": "endoscope", "q2": "room_camera"}
    rects = {"q1": (0, 0, 960, 540), "q2": (960, 0, 960, 540), "q3": (0, 540, 960, 540), "q4": (960, 540, 960, 540)}
    return Layout(WIDTH, HEIGHT, tuple(_video(n, r, roles.get(n), sources) for n, r in rects.items()), name="quad")


PRESETS: Mapping[str, Callable[..., Layout]] = {"paper": paper, "single": single, "side_by_side": side_by_side, "quad": quad}


def preset(name: str, sources: Mapping[str, str] | None = None) -> Layout:
    """The preset called ``name`` with slot->source mapping ``sources``; :class:`ConfigError`
    lists the presets when the name is unknown."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown layout preset {name!r}; presets: {', '.join(PRESETS)} (or give explicit slots)") from None
    return factory(sources)
