"""Detection metrics: IoU, precision/recall and average precision (PASCAL VOC style).

Boxes are ``[x1, y1, x2, y2]`` float pixels (continuous areas, no +1). Matching follows the
VOC devkit: detections of all images are ranked by score; each is compared with every ground
truth box of its image, takes the one of highest IoU, and is a true positive when that IoU is
``>= iou_threshold`` and that ground truth was not matched before (otherwise a false positive);
a detection whose best match is an *ignored* ground truth box counts as neither. AP is the area
under the precision/recall curve with all-point interpolation (precision made monotone from the
right, summed at each change of recall), as in VOC 2010 and later.

>>> import numpy as np
>>> gt = [np.array([[0, 0, 10, 10]])]
>>> average_precision([(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.9, 0.8]))], gt)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np


def iou_matrix(a: Any, b: Any) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)`` -> ``(N, M)`` float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = np.clip(rb - lt, 0, None).prod(-1)  # (N, M)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)  # (N,)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)  # (M,)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def voc_ap(recall: Any, precision: Any) -> float:
    """All-point interpolated AP from a recall-sorted PR curve (``recall`` non-decreasing)."""
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope, monotone from the right
    changes = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


@attrs.frozen(eq=False)
class PRResult:
    """Outcome of :func:`evaluate`: ``ap``; per ranked detection (descending score) its
    ``scores``, ``tp``/``fp`` flags (ignored ones removed), cumulative ``precision``/``recall``;
    ``num_gt`` counts the non-ignored ground truth boxes."""

    ap: float
    num_gt: int
    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    def at_threshold(self, threshold: float) -> tuple[float, float]:
        """``(precision, recall)`` when only detections scoring ``> threshold`` are kept."""
        keep = self.scores > threshold
        tp, fp = int(self.tp[keep].sum()), int(self.fp[keep].sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / self.num_gt if self.num_gt else 1.0
        return precision, recall


def _as_pair(det: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(det, "boxes") and hasattr(det, "scores"):  # surgbox.types.Detections
        return np.asarray(det.boxes, np.float64).reshape(-1, 4), np.asarray(det.scores, np.float64).reshape(-1)
    boxes, scores = det
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)


def evaluate(
    detections: Sequence[Any],
    ground_truth: Sequence[Any],
    iou_threshold: float = 0.5,
    ignore: Sequence[Any] | None = None,
) -> PRResult:
    """Precision/recall and AP over a set of images.

    ``detections[i]`` is a :class:`~surgbox.types.Detections` or ``(boxes (N, 4), scores (N,))``
    for image ``i``; ``ground_truth[i]`` its true boxes ``(M, 4)``; ``ignore[i]`` an optional
    ``(M,)`` bool mask of ground truth boxes that neither count as misses nor make a match a
    false positive (VOC "difficult", dlib ``ignore``).
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} ground-truth lists")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    records: list[tuple[float, int, int]] = []  # (score, image, detection index)
    pairs = [_as_pair(d) for d in detections]
    gts = [np.asarray(g, np.float64).reshape(-1, 4) for g in ground_truth]
    ign = [np.zeros(len(g), bool) if ignore is None else np.asarray(ignore[i], bool).reshape(-1) for i, g in enumerate(gts)]
    for i, (boxes, scores) in enumerate(pairs):
        if len(boxes) != len(scores):
            raise ValueError(f"image {i}: {len(boxes)} boxes but {len(scores)} scores")
        records.extend((float(s), i, j) for j, s in enumerate(scores))
    records.sort(key=lambda r: -r[0])  # stable: ties keep input order
    ious = [iou_matrix(b, g) for (b, _), g in zip(pairs, gts)]
    matched = [np.zeros(len(g), bool) for g in gts]
    tp, fp, kept_scores = [], [], []
    for score, i, j in records:
        row = ious[i][j] if len(gts[i]) else np.zeros(0)
        best = int(np.argmax(row)) if len(row) else -1
        if best >= 0 and row[best] >= iou_threshold:
            if ign[i][best]:
                continue
            hit = not matched[i][best]
            matched[i][best] = True
        else:
            hit = False
        tp.append(hit)
        fp.append(not hit)
        kept_scores.append(score)
    num_gt = int(sum((~m).sum() for m in ign))
    tp_a, fp_a = np.asarray(tp, bool), np.asarray(fp, bool)
    ctp, cfp = np.cumsum(tp_a), np.cumsum(fp_a)
    recall = ctp / num_gt if num_gt else np.zeros(len(ctp))
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = voc_ap(recall, precision) if num_gt else float("nan")
    return PRResult(ap, num_gt, np.asarray(kept_scores), tp_a, fp_a, precision, recall)


def average_precision(
    detections: Sequence[Any],
    ground_truth: Sequence[Any],
    iou_threshold: float = 0.5,
    ignore: Sequence[Any] | None = None,
) -> float:
    """VOC all-point AP at ``iou_threshold`` (see :func:`evaluate`); ``nan`` without ground truth."""
    return evaluate(detections, ground_truth, iou_threshold, ignore).ap
