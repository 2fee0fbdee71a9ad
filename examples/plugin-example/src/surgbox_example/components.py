"""The example's components. Imported only when a factory is called (never at registration)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from surgbox import Detections, Detector, VideoFrame
from surgbox.capture import ThreadedSource


@attrs.define(eq=False)
class RampSource(ThreadedSource):
    """Video source: a horizontal colour ramp scrolling one pixel per frame.

    Frames are captured every ``1/fps`` s on the master clock (k-th frame at start + k/fps).
    """

    media = "video"
    width: int = attrs.field(default=320, kw_only=True)
    height: int = attrs.field(default=240, kw_only=True)
    fps: float = attrs.field(default=30.0, kw_only=True)
    _start_ns: int = attrs.field(default=0, init=False, alias="_start_ns")
    _seq: int = attrs.field(default=0, init=False, alias="_seq")

    def _open(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"source {self.name!r}: width and height must be even for yuv420p, got {self.width}x{self.height}")
        self._start_ns = self.clock.now_ns()

    def _capture(self) -> VideoFrame | None:
        due = self._start_ns + round(self._seq * 1e9 / self.fps)
        self.clock.sleep_until(due)
        x = (np.arange(self.width, dtype=np.int32) + self._seq) % 256
        rgb = np.empty((self.height, self.width, 3), np.uint8)
        rgb[..., 0] = x
        rgb[..., 1] = 255 - x
        rgb[..., 2] = 128
        frame = VideoFrame.from_ndarray(self.name, due, rgb, seq=self._seq)
        self._seq += 1
        return frame


@attrs.define(eq=False)
class ZoneDetector(Detector):
    """Reports the same boxes in every image: privacy zones that are always anonymized.

    ``zones``: sequence of ``[x1, y1, x2, y2]`` in image pixels; boxes are clipped to each image.
    """

    name = "example-zones"
    version = "1"
    zones: Sequence[Sequence[float]] = ((0, 0, 64, 64),)
    score: float = 1.0

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for img in images:
            h, w = img.shape[:2]
            boxes = np.asarray(self.zones, np.float32).reshape(-1, 4).copy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            out.append(Detections(boxes[keep], np.full(int(keep.sum()), self.score, np.float32)))
        return out

    def settings(self) -> dict:
        return {"zones": [list(map(float, z)) for z in self.zones]}
