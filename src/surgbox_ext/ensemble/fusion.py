"""Fusing the boxes several detectors found in one image (numpy; no torch).

Three methods, chosen by name (:data:`FUSIONS`):

* ``"nms"``: all boxes together, greedy non-maximum suppression: a box overlapping a kept,
  higher-scored box by IoU > ``iou`` is dropped (its landmarks with it).
* ``"wbf"``: weighted box fusion (Solovyev et al. 2021) by the ``ensemble-boxes`` package:
  clusters of overlapping boxes become one box, the score-weighted mean of the cluster; scores
  are averaged over the members (weighted by each member's ``weight``). No landmarks.
* ``"union"``: every box of every member is kept (the masks then cover the union).

Scores of different detectors are not calibrated against each other; fusion only orders them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surgbox.errors import DetectorError
from surgbox.types import Detections

FUSIONS = ("nms", "wbf", "union")


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


def fuse(parts: Sequence[Detections], method: str = "nms", *, iou: float = 0.5, weights: Sequence[float] | None = None,
         size: tuple[int, int] | None = None) -> Detections:
    """One :class:`Detections` from the members' detections of one image, sorted by score.

    ``parts``: one per member that ran on the image; ``weights``: one per part (``wbf`` only;
    default all 1); ``size``: ``(height, width)`` of the image (``wbf`` works in ``[0, 1]``
    units). ``iou``: overlap that makes boxes one face.
    """
    if method not in FUSIONS:
        raise ValueError(f"fusion {method!r} is not one of {', '.join(FUSIONS)}")
    if method == "wbf":
        return _wbf(parts, iou, weights, size)
    joined = _concat(parts)
    if method == "union" or len(joined) <= 1:
        return _sorted(joined)
    keep = nms_indices(joined.boxes, joined.scores, iou)
    return Detections(joined.boxes[keep], joined.scores[keep], None if joined.landmarks is None else joined.landmarks[keep])


def _wbf(parts: Sequence[Detections], iou: float, weights: Sequence[float] | None, size: tuple[int, int] | None) -> Detections:
    try:
        from ensemble_boxes import weighted_boxes_fusion
    except ImportError as exc:
        raise DetectorError("ensemble fusion 'wbf' needs the ensemble-boxes package: pip install ensemble-boxes "
                            "(or fusion='nms')") from exc
    if size is None:
        raise ValueError("wbf fusion needs the image size")
    if not any(len(p) for p in parts):
        return Detections.empty()
    h, w = size
    norm = np.array([w, h, w, h], np.float64)
    boxes = [np.clip(np.asarray(p.boxes, np.float64) / norm, 0, 1) for p in parts]
    scores = [np.asarray(p.scores, np.float64) for p in parts]
    labels = [np.zeros(len(p)) for p in parts]
    wts = list(weights) if weights is not None else [1.0] * len(parts)
    fb, fs, _ = weighted_boxes_fusion(boxes, scores, labels, weights=wts, iou_thr=iou, skip_box_thr=0.0)
    return _sorted(Detections(np.asarray(fb * norm, np.float32).reshape(-1, 4), np.asarray(fs, np.float32)))
