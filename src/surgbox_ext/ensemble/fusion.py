"""Fusing the boxes several detectors found in one image (numpy; no torch).

Two methods, chosen by name (:data:`FUSIONS`):

* ``"nms"``: all boxes together, greedy non-maximum suppression: a box overlapping a kept,
  higher-scored box by IoU > ``iou`` is dropped (its landmarks with it).
* ``"union"``: every box of every member is kept (the masks then cover the union).

(Weighted box fusion was measured too and hid the same faces as NMS with the same collateral,
docs/detectors.md; it is not offered.) Fusion only orders scores; the ensemble puts its
members' scores on one scale first when they declare ``confirm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surgbox.types import Detections

FUSIONS = ("nms", "union")


def _iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x1, y1, x2, y2]`` box with each of ``boxes`` ``(N, 4)`` -> ``(N,)``."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms_indices(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS, by descending score (ties: input order)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(boxes), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= _iou_one(boxes[i], boxes) > iou
    return np.asarray(keep, np.int64)


def _concat(parts: Sequence[Detections]) -> Detections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    landmarks = None
    if all(p.landmarks is not None for p in parts):
        landmarks = np.concatenate([p.landmarks for p in parts])
    return Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]), landmarks)


def _sorted(d: Detections) -> Detections:
    order = np.argsort(-d.scores, kind="stable")
    return Detections(d.boxes[order], d.scores[order], None if d.landmarks is None else d.landmarks[order])


def fuse(parts: Sequence[Detections], method: str = "nms", *, iou: float = 0.5) -> Detections:
    """One :class:`Detections` from the members' detections of one image (``parts``: one per
    member that ran on it), sorted by score. ``iou``: overlap that makes boxes one face."""
    if method not in FUSIONS:
        raise ValueError(f"fusion {method!r} is not one of {', '.join(FUSIONS)}")
    joined = _concat(parts)
    if method == "union" or len(joined) <= 1:
        return _sorted(joined)
    keep = nms_indices(joined.boxes, joined.scores, iou)
    return Detections(joined.boxes[keep], joined.scores[keep], None if joined.landmarks is None else joined.landmarks[keep])
