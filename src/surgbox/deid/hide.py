"""The hide stage: draw the anonymizer over every region to hide, on the YUV planes, in place.

Runs on its own thread (Pillow and the blend kernel release the GIL). A face box is drawn only
inside the scan regions it overlaps, so a face at a slot's border never blurs the neighbouring
slot. A frame whose detector batch failed (:attr:`Item.hidden <surgbox.deid.handoff.Item.hidden>`)
gets every scan region hidden whole.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import attrs

from ..types import Rect
from .anonymize import Anonymizer, frame_planes
from .handoff import END, Failure, get, put
from .result import RunStats
from .temporal import Region
from .timing import StageTimes

WAIT = "queue wait (anonymize)"


def region_views(planes: list[Any], rect: Rect) -> list[Any]:
    """``[Y, U, V]`` views of ``rect`` (luma pixels) in a 4:2:0 picture's planes."""
    cx0, cy0 = rect.x // 2, rect.y // 2
    cx1, cy1 = (rect.x2 + 1) // 2, (rect.y2 + 1) // 2
    return [planes[0][rect.y:rect.y2, rect.x:rect.x2], planes[1][cy0:cy1, cx0:cx1], planes[2][cy0:cy1, cx0:cx1]]


def hide_regions(anonymizer: Anonymizer, frame: Any, rects: list[Rect], regions: list[Region], whole: bool = False) -> None:
    """Hide ``regions`` (face boxes in frame pixels) of ``frame`` inside the scan ``rects``; with
    ``whole``, hide every scan rect entirely."""
    planes = frame_planes(frame)
    boxes = [r.box for r in regions]
    for rect in rects:
        if whole:
            anonymizer.hide_all(region_views(planes, rect))
            continue
        inside = [b for b in boxes if b[0] < rect.x2 and b[2] > rect.x and b[1] < rect.y2 and b[3] > rect.y]
        if inside:
            shifted = [(b[0] - rect.x, b[1] - rect.y, b[2] - rect.x, b[3] - rect.y) for b in inside]
            anonymizer.apply(region_views(planes, rect), shifted)


@attrs.define(eq=False)
class HideStage:
    """Applies the anonymizer to each frame between the detect and the encode stage."""

    anonymizer: Anonymizer
    rects: list[Rect]
    stop: threading.Event
    times: StageTimes
    stats: RunStats
    outofbody: Any = None  # a surgbox.deid.outofbody.OutOfBodyCheck: frames come out `carry` later

    def run(self, q_in: queue.Queue, q_out: queue.Queue) -> None:
        oob = self.outofbody
        try:
            while True:
                item = get(q_in, self.stop, self.times, WAIT)
                if item is END or isinstance(item, Failure) or item.frame is None:
                    for done in ([] if oob is None or isinstance(item, Failure) else oob.flush()):
                        if not put(q_out, done, self.stop, self.times, WAIT):
                            return
                    if item is END or isinstance(item, Failure):
                        put(q_out, item, self.stop, self.times, WAIT)
                        return
                if item.frame is not None and (item.regions or item.hidden):
                    with self.times.stage("blur"):
                        hide_regions(self.anonymizer, item.frame, self.rects, item.regions, whole=item.hidden is not None)
                    self.stats.frames_region_hidden += item.hidden is not None
                ready = [item]
                if oob is not None and item.frame is not None:
                    with self.times.stage("out-of-body"):
                        ready = oob.push(item)
                for done in ready:
                    self.stats.frames_out_of_body += done.out_of_body
                    if not put(q_out, done, self.stop, self.times, WAIT):
                        return
        except BaseException as exc:
            put(q_out, Failure(exc), self.stop, self.times, WAIT)
