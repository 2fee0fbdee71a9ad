"""Detector input from a region of a YUV 4:2:0 picture: crop, resize and convert to RGB in one pass.

Only the region is touched: its planes are copied into a small frame (0.1 ms for 640x360),
which FFmpeg's swscale resizes and converts to RGB in one pass, honouring the frame's colour
matrix and range tags. The :class:`~av.video.reformatter.VideoReformatter` is kept between
calls: swscale's set-up is most of the cost of a fresh conversion (640x360 -> 320x180 RGB:
0.33 ms with a kept reformatter, about 1 ms with a fresh one, in this project's profile).

    >>> from av.video.reformatter import VideoReformatter
    >>> reformatter = VideoReformatter()          # one per thread, reused
    >>> crop = crop_rgb(frame, Rect(1280, 0, 640, 360), 0.5, reformatter=reformatter)  # doctest: +SKIP
    >>> crop.image.shape, crop.origin, crop.factor                                       # doctest: +SKIP
    ((180, 320, 3), (1280, 0), (2.0, 2.0))
    >>> dets = crop.to_frame(detector.detect([crop.image])[0])                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from ..types import Detections, Rect
from .anonymize import frame_planes


@attrs.frozen
class Crop:
    """A detector input made from a frame region: ``image`` ``HxWx3 uint8`` RGB; ``origin``
    ``(x, y)`` frame pixel of the region's top-left corner; ``factor`` ``(fx, fy)`` frame pixels
    per image pixel (``1 / scale``)."""

    image: np.ndarray
    origin: tuple[int, int]
    factor: tuple[float, float]

    def to_frame(self, dets: Detections) -> Detections:
        """``dets`` (pixels of :attr:`image`) in frame pixels."""
        fx, fy = self.factor
        ox, oy = self.origin
        if fx == fy == 1.0:
            return dets.shifted(ox, oy) if (ox or oy) else dets
        boxes = dets.boxes * np.float32([fx, fy, fx, fy]) + np.float32([ox, oy, ox, oy])
        lms = None if dets.landmarks is None else dets.landmarks * np.float32([fx, fy]) + np.float32([ox, oy])
        return Detections(boxes, dets.scores.copy(), lms)


def input_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Detector input ``(width, height)`` for a ``width x height`` region at ``scale``."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def crop_rgb(frame: Any, rect: Rect, scale: float = 1.0, *, reformatter: Any = None) -> Crop:
    """``rect`` of a ``yuv420p`` ``av.VideoFrame`` as a :class:`Crop`, resized by ``scale``.

    The region is aligned to even frame coordinates (4:2:0 chroma), so it may start one pixel
    before ``rect``; :attr:`Crop.origin` and :attr:`Crop.factor` map detections back. Shrinking
    averages (swscale ``AREA``), enlarging is bilinear. ``reformatter``: a
    ``VideoReformatter`` to reuse (keep one per thread); ``None`` makes a fresh one. The frame
    is only read.
    """
    import av
    from av.video.reformatter import VideoReformatter

    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    x0, y0 = rect.x & ~1, rect.y & ~1
    x1, y1 = min(rect.x2 + (rect.x2 & 1), frame.width), min(rect.y2 + (rect.y2 & 1), frame.height)
    w, h = (x1 - x0) & ~1, (y1 - y0) & ~1
    if w < 2 or h < 2:
        raise ValueError(f"region {rect} has no pixels in a {frame.width}x{frame.height} frame")
    if (x0, y0, w, h) == (0, 0, frame.width, frame.height):
        src = frame  # the whole picture: no copy
    else:
        y, u, v = frame_planes(frame, writable=False)
        src = av.VideoFrame(w, h, frame.format.name)
        cy, cu, cv = frame_planes(src)
        cy[:] = y[y0:y0 + h, x0:x0 + w]
        cu[:] = u[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2]
        cv[:] = v[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2]
        src.color_range = frame.color_range
        src.colorspace = frame.colorspace
    tw, th = input_size(w, h, scale)
    rf = reformatter if reformatter is not None else VideoReformatter()
    rgb = rf.reformat(src, width=tw, height=th, format="rgb24", interpolation="AREA" if scale < 1 else "BILINEAR")
    return Crop(rgb.to_ndarray(), (x0, y0), (w / tw, h / th))
