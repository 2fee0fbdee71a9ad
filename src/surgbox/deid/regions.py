"""Which parts of the picture the detector looks at.

A region spec is ``"auto"``, ``"full"`` or one or more ``X,Y,W,H`` rectangles separated by
``;`` (integer pixels of the decoded picture, origin top-left)::

    >>> parse_region_spec("1280,0,640,360")
    RegionSpec(kind='rects', rects=(Rect(x=1280, y=0, width=640, height=360),))

``auto`` means: the slots whose role is ``"room_camera"`` in the surgbox layout stored with a
recording (container metadata key ``surgbox_layout``, or the sidecar ``<file>.json``), and the
whole frame when the input carries no layout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError
from ..types import Layout, Rect

log = logging.getLogger(__name__)

ROOM_CAMERA_ROLE = "room_camera"
# Container metadata keys that may hold the layout JSON (the recorder writes the first one).
LAYOUT_METADATA_KEYS = ("surgbox_layout", "surgbox.layout", "layout")


@attrs.frozen
class RegionSpec:
    """A parsed ``--region`` value: ``kind`` is ``"auto"``, ``"full"`` or ``"rects"``."""

    kind: str = attrs.field(validator=attrs.validators.in_(("auto", "full", "rects")))
    rects: tuple[Rect, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        if (self.kind == "rects") != bool(self.rects):
            raise ValueError("a 'rects' region spec needs at least one rectangle, the others none")


def parse_region_spec(text: str | RegionSpec | Rect | list[Rect] | tuple[Rect, ...]) -> RegionSpec:
    """Parse ``auto``, ``full`` or ``X,Y,W,H[;X,Y,W,H...]`` (also accepts Rect objects).

    Raises :class:`~surgbox.errors.ConfigError` naming the bad text and the expected form.
    """
    if isinstance(text, RegionSpec):
        return text
    if isinstance(text, Rect):
        return RegionSpec("rects", (text,))
    if isinstance(text, (list, tuple)):
        if not text or not all(isinstance(r, Rect) for r in text):
            raise ConfigError(f"region {text!r}: expected a non-empty list of Rect")
        return RegionSpec("rects", tuple(text))
    s = str(text).strip()
    if s.lower() in ("auto", "full"):
        return RegionSpec(s.lower())
    parts = [p.strip() for p in s.split(";") if p.strip()]
    if not parts:
        raise ConfigError(f"region {text!r} is empty; use auto, full or X,Y,W,H[;X,Y,W,H...] (e.g. 1280,0,640,360)")
    rects = []
    for p in parts:
        try:
            rects.append(Rect.parse(p))
        except ValueError as exc:
            raise ConfigError(
                f"region {text!r}: {exc}; use auto, full or X,Y,W,H[;X,Y,W,H...] with W,H > 0"
            ) from None
    return RegionSpec("rects", tuple(rects))


def layout_from_metadata(metadata: Mapping[str, str]) -> Layout | None:
    """The :class:`Layout` stored in container metadata, or ``None`` when there is none.

    Looks at the keys in :data:`LAYOUT_METADATA_KEYS` (JSON of :meth:`Layout.to_dict`, or of a
    mapping with a ``"layout"`` entry). A present but malformed value is logged and ignored.
    """
    lowered = {str(k).lower(): v for k, v in metadata.items()}
    for key in LAYOUT_METADATA_KEYS:
        if key in lowered:
            layout = _layout_from_json(lowered[key], f"container metadata {key!r}")
            if layout is not None:
                return layout
    return None


def layout_from_sidecar(path: str | Path) -> Layout | None:
    """The layout in the sidecar ``<path>.json`` (key ``"layout"``, or ``metadata.layout``)."""
    side = Path(f"{path}.json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable sidecar %s: %s", side, exc)
        return None
    for cand in (data.get("layout") if isinstance(data, dict) else None,
                 (data.get("metadata") or {}).get("layout") if isinstance(data, dict) else None):
        if cand is not None:
            layout = _layout_from_json(cand, f"sidecar {side}")
            if layout is not None:
                return layout
    return None


def _layout_from_json(value: Any, where: str) -> Layout | None:
    try:
        data = json.loads(value) if isinstance(value, (str, bytes)) else value
        if isinstance(data, dict) and "slots" not in data and isinstance(data.get("layout"), dict):
            data = data["layout"]
        return Layout.from_mapping(data)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring malformed layout in %s: %s", where, exc)
        return None


def resolve_regions(
    spec: str | RegionSpec,
    width: int,
    height: int,
    *,
    metadata: Mapping[str, str] | None = None,
    path: str | Path | None = None,
) -> tuple[list[Rect], str]:
    """The rectangles to scan in a ``width x height`` picture, and where they came from.

    ``metadata`` is the input's container metadata and ``path`` its file path (for the
    sidecar) when ``spec`` is ``auto``. Rectangles are clipped to the picture; one that lies
    entirely outside raises :class:`~surgbox.errors.ConfigError`. Returns ``(rects, origin)``
    with ``origin`` one of ``"full"``, ``"explicit"``, ``"layout"``, ``"auto-full"``.
    """
    spec = parse_region_spec(spec)
    frame = Rect(0, 0, width, height)
    if spec.kind == "full":
        return [frame], "full"
    if spec.kind == "rects":
        return [_clip(r, width, height, str(r.as_xywh())) for r in spec.rects], "explicit"
    layout = layout_from_metadata(metadata or {})
    if layout is None and path is not None:
        layout = layout_from_sidecar(path)
    if layout is None:
        return [frame], "auto-full"
    rects = slot_rects(layout, ROOM_CAMERA_ROLE, width, height)
    if not rects:
        log.info("layout %r has no %r slot: scanning the whole frame", layout.name, ROOM_CAMERA_ROLE)
        return [frame], "auto-full"
    return rects, "layout"


def slot_rects(layout: Layout, role: str, width: int, height: int) -> list[Rect]:
    """The rectangles of ``layout``'s slots with ``role`` in a ``width x height`` picture (the
    layout scaled to it when its size differs; clipped), ``[]`` when no slot has that role."""
    slots = layout.slots_with_role(role)
    if (layout.width, layout.height) != (width, height):
        sx, sy = width / layout.width, height / layout.height
        rects = [Rect(round(s.rect.x * sx), round(s.rect.y * sy), max(1, round(s.rect.width * sx)),
                      max(1, round(s.rect.height * sy))) for s in slots]
    else:
        rects = [s.rect for s in slots]
    return [_clip(r, width, height, f"layout slot {r.as_xywh()}") for r in rects]


def _clip(r: Rect, width: int, height: int, what: str) -> Rect:
    x1, y1 = min(r.x, width), min(r.y, height)
    x2, y2 = min(r.x2, width), min(r.y2, height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ConfigError(
            f"region {what} lies outside the {width}x{height} picture; give X,Y,W,H inside it "
            f"(or --region full)"
        )
    return Rect(x1, y1, x2 - x1, y2 - y1)
