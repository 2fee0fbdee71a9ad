"""Feathered elliptical masks over face boxes, per image plane.

Geometry (luma pixels, ``[x1, y1, x2, y2]`` with exclusive right/bottom edges): a face box is
first made square (its shorter side grown to the longer, about the centre, when ``square``:
detectors box the face tightly, while ears, hair and jaw line that identify a person lie
outside that box, mostly at the sides), pushed out across any picture edge it touches
(``edge_extend``: a face cut by the edge continues beyond it, so its box is too short on that
side), grown about its centre to at least ``min_size`` pixels on each side (a detector's box
of a small face is a few pixels off, which is a large part of such a face), then grown ``expand`` times about its centre; the ellipse inscribed in the grown box is
fully opaque (alpha 255) — and at least ``margin`` pixels beyond the box's corners (radii at
least ``sqrt(2) * half side + margin``: a small face's detail must lie well inside the opaque
part, since what surrounds a blurred face stays sharp); alpha then falls linearly to 0 at
``1 + feather`` times the ellipse's radii. For a chroma plane of a 4:2:0 picture pass ``scale=2``: the same shape is
drawn at half resolution, so luma and chroma masks cover the same picture area.
"""

from __future__ import annotations

import math

import attrs
import numpy as np


MAX_EXPAND = 10.0  # a mask ten times the face box: beyond that it hides the picture, not a face


def _check_expand(instance, attribute, value) -> None:
    if not 1.0 <= value <= MAX_EXPAND:
        raise ValueError(f"expand must be >= 1.0 and at most {MAX_EXPAND:g} (1.3 grows boxes by 30 %), got {value}")


def _check_feather(instance, attribute, value) -> None:
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"feather must be within [0, 2] (a fraction of the ellipse radius), got {value}")


@attrs.frozen
class MaskShape:
    """How a face box becomes a mask: ``square`` (grow the shorter side to the longer first,
    default on), ``edge_extend`` (push a box touching the plane's edge out across it by this
    fraction of its size, default 0.5), ``expand`` (>= 1, default 1.3), ``feather`` (fraction of the ellipse radius
    over which alpha falls from 255 to 0, default 0.25), ``margin`` (pixels of opaque mask beyond the box's
    corners, default 0) and ``min_size`` (luma pixels: a smaller box is first grown about its centre to this
    side, default 0: off)."""

    expand: float = attrs.field(default=1.3, converter=float, validator=_check_expand)
    feather: float = attrs.field(default=0.25, converter=float, validator=_check_feather)
    square: bool = attrs.field(default=True, converter=bool)
    edge_extend: float = attrs.field(default=0.5, converter=float, validator=attrs.validators.ge(0))
    margin: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0))
    min_size: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0))

    def face_size(self, box) -> float:
        """The size (luma pixels) a box is hidden as: its longer side, at least ``min_size``."""
        return max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]), self.min_size)

    def _half_sizes(self, box, scale: int = 1, width: int | None = None, height: int | None = None) -> tuple[float, float, float, float]:
        """Centre and opaque-ellipse radii ``(cx, cy, rx, ry)`` in a plane of subsampling ``scale``.

        A box that touches an edge of the ``width x height`` plane (within ``max(2, 10 %)`` of
        its size) belongs to a face cut by that edge, so it is first pushed out across the edge
        by ``edge_extend`` times its size: the mask then covers the face up to the edge.
        """
        x1, y1, x2, y2 = (float(v) / scale for v in box)
        w, h = x2 - x1, y2 - y1
        if self.square:
            cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(w, h)
            x1, x2, y1, y2 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
        least = self.min_size / scale
        if w > 0 and h > 0 and (x2 - x1 < least or y2 - y1 < least):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            hw, hh = max(x2 - x1, least) / 2, max(y2 - y1, least) / 2
            x1, x2, y1, y2 = cx - hw, cx + hw, cy - hh, cy + hh
        if self.edge_extend and width is not None and height is not None:
            size = max(x2 - x1, y2 - y1)
            margin, push = max(2.0 / scale, 0.1 * size), self.edge_extend * size
            if x1 <= margin:
                x1 -= push
            if y1 <= margin:
                y1 -= push
            if width - x2 <= margin:
                x2 += push
            if height - y2 <= margin:
                y2 += push
        hw, hh = (x2 - x1) / 2, (y2 - y1) / 2
        m = self.margin / scale
        rx, ry = hw * self.expand, hh * self.expand
        if m > 0 and hw > 0 and hh > 0:
            rx, ry = max(rx, math.sqrt(2) * hw + m), max(ry, math.sqrt(2) * hh + m)
        return (x1 + x2) / 2, (y1 + y2) / 2, rx, ry

    def outer_box(self, box) -> tuple[float, float, float, float]:
        """The box (luma pixels) that bounds every pixel the mask touches."""
        cx, cy, rx, ry = self._half_sizes(box)
        g = 1.0 + self.feather
        return (cx - rx * g, cy - ry * g, cx + rx * g, cy + ry * g)

    def alpha(self, box, plane_width: int, plane_height: int, scale: int = 1) -> tuple[int, int, np.ndarray] | None:
        """The mask of ``box`` on a plane of ``plane_width x plane_height`` pixels.

        ``box`` is in luma pixels; ``scale`` is the plane's subsampling (1 luma, 2 chroma of
        4:2:0). Returns ``(x0, y0, alpha)`` with ``alpha`` an ``HxW uint8`` array whose top-left
        pixel is plane pixel ``(x0, y0)`` (clipped to the plane), or ``None`` when the mask
        misses the plane.
        """
        cx, cy, rx, ry = self._half_sizes(box, scale, plane_width, plane_height)
        if rx <= 0 or ry <= 0:
            return None
        grow = 1.0 + self.feather
        px0 = max(0, math.floor(cx - rx * grow))
        py0 = max(0, math.floor(cy - ry * grow))
        px1 = min(plane_width, math.ceil(cx + rx * grow))
        py1 = min(plane_height, math.ceil(cy + ry * grow))
        if px1 <= px0 or py1 <= py0:
            return None
        xs = (np.arange(px0, px1, dtype=np.float32) + 0.5 - cx) / rx
        ys = (np.arange(py0, py1, dtype=np.float32) + 0.5 - cy) / ry
        r = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
        if self.feather > 0:
            a = np.clip((grow - r) / self.feather, 0.0, 1.0)
        else:
            a = (r <= 1.0).astype(np.float32)
        return px0, py0, np.ascontiguousarray(np.rint(a * 255).astype(np.uint8))
