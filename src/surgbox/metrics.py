"""Detection metrics: IoU, precision/recall and average precision (PASCAL VOC and COCO style).

Boxes are ``[x1, y1, x2, y2]`` float pixels (continuous areas, no +1). Matching follows the
VOC devkit: detections of all images are ranked by score; each is compared with every ground
truth box of its image, takes the one of highest IoU, and is a true positive when that IoU is
``>= iou_threshold`` and that ground truth was not matched before (otherwise a false positive);
a detection whose best match is an *ignored* ground truth box counts as neither. AP is the area
under the precision/recall curve with all-point interpolation (precision made monotone from the
right, summed at each change of recall), as in VOC 2010 and later. :func:`coco_evaluate` gives
COCO's AP@[.5:.95] (101 recall points, ``pycocotools`` semantics); :func:`per_frame_ap` the mean
of per-frame APs that the paper reports for video.

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


# -- COCO-style AP ---------------------------------------------------------------------------

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def box_sizes(boxes: Any, measure: str = "area") -> np.ndarray:
    """``(N,)`` size of each ``[x1, y1, x2, y2]`` box: ``"area"`` (``w * h``) or ``"short_side"`` (``min(w, h)``)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    if measure == "area":
        return w * h
    if measure == "short_side":
        return np.minimum(w, h)
    raise ValueError(f"size measure {measure!r} is unknown; use 'area' or 'short_side'")


def _crowd_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU ``(D, G)``; against an ignored ("crowd") box the union is the detection's own area."""
    iou = iou_matrix(d, g)
    if len(d) and len(g) and crowd.any():
        lt = np.maximum(d[:, None, :2], g[None, :, :2])
        rb = np.minimum(d[:, None, 2:], g[None, :, 2:])
        inter = np.clip(rb - lt, 0, None).prod(-1)
        area_d = np.clip(d[:, 2:] - d[:, :2], 0, None).prod(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ciou = np.where(area_d[:, None] > 0, inter / area_d[:, None], 0.0)
        iou = np.where(crowd[None, :], ciou, iou)
    return iou


def _coco_image(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, ign: np.ndarray, thresholds: np.ndarray,
                max_dets: int, size_range: tuple[float, float] | None, measure: str):
    """One image: ``(scores (D,), matched (T, D) bool, det_ignored (T, D) bool, gt_ignored (G,))``,
    detections in descending score order (stable) cut to ``max_dets``."""
    g_ign = ign.copy()
    if size_range is not None:
        s = box_sizes(gt, measure)
        g_ign |= (s < size_range[0]) | (s > size_range[1])
    order_g = np.argsort(g_ign.astype(np.int8), kind="mergesort")  # non-ignored first
    gt, g_ign, crowd = gt[order_g], g_ign[order_g], ign[order_g]
    order_d = np.argsort(-scores, kind="mergesort")[:max_dets]
    boxes, scores = boxes[order_d], scores[order_d]
    ious = _crowd_iou(boxes, gt, crowd)
    t_n, d_n, g_n = len(thresholds), len(boxes), len(gt)
    matched = np.zeros((t_n, d_n), bool)
    d_ign = np.zeros((t_n, d_n), bool)
    for ti, t in enumerate(thresholds):
        g_taken = np.zeros(g_n, bool)
        for di in range(d_n):
            best, m = min(t, 1 - 1e-10), -1
            for gi in range(g_n):
                if g_taken[gi] and not crowd[gi]:
                    continue
                if m > -1 and not g_ign[m] and g_ign[gi]:
                    break  # matched a counted box; ignored ones come after
                if ious[di, gi] < best:
                    continue
                best, m = ious[di, gi], gi
            if m == -1:
                continue
            d_ign[ti, di] = g_ign[m]
            matched[ti, di] = True
            g_taken[m] = True
    if size_range is not None:
        s = box_sizes(boxes, measure)
        outside = (s < size_range[0]) | (s > size_range[1])
        d_ign |= ~matched & outside[None, :]
    return scores, matched, d_ign, g_ign


@attrs.frozen(eq=False)
class CocoResult:
    """Outcome of :func:`coco_evaluate`: ``ap`` (mean over IoU thresholds and the 101 recall
    points, ``nan`` without ground truth), ``ap_per_iou`` ``(T,)``, ``precision`` ``(T, 101)``
    (interpolated precision at each recall point, 0 where that recall is never reached),
    ``recall`` ``(T,)`` (largest recall reached), ``iou_thresholds`` ``(T,)``, ``num_gt``."""

    ap: float
    ap_per_iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    iou_thresholds: np.ndarray
    num_gt: int

    def ap_at(self, iou: float) -> float:
        """101-point AP at one of the evaluated IoU thresholds (``0.5``, ``0.75``...)."""
        i = int(np.argmin(np.abs(self.iou_thresholds - iou)))
        if abs(self.iou_thresholds[i] - iou) > 1e-9:
            raise ValueError(f"IoU {iou} was not evaluated; evaluated: {list(np.round(self.iou_thresholds, 3))}")
        return float(self.ap_per_iou[i])


def coco_evaluate(
    detections: Sequence[Any],
    ground_truth: Sequence[Any],
    ignore: Sequence[Any] | None = None,
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_dets: int = 100,
    size_range: tuple[float, float] | None = None,
    size_measure: str = "area",
) -> CocoResult:
    """COCO detection AP for one class, the way ``pycocotools.cocoeval.COCOeval`` computes it.

    Inputs as for :func:`evaluate`; ``ignore[i]`` marks boxes treated as COCO ``iscrowd``
    (a detection overlapping one, measured as intersection over the detection's area, is neither
    a hit nor a false alarm). Per image the ``max_dets`` best detections are kept; each is
    matched greedily, by descending score, to the unmatched counted box of highest IoU at
    least the threshold. AP@[.5:.95] is the mean over the 10 IoU thresholds of the precision
    (made monotone) sampled at 101 recall points. ``size_range=(lo, hi)`` evaluates only boxes
    whose size (``size_measure``: ``"area"`` as COCO's small/medium/large, or ``"short_side"``)
    lies in ``[lo, hi]``: other ground truth is ignored, unmatched detections outside are dropped.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} ground-truth lists")
    thr = COCO_IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, np.float64).reshape(-1)
    all_scores, all_m, all_di, n_gt = [], [], [], 0
    for i, det in enumerate(detections):
        boxes, scores = _as_pair(det)
        gt = np.asarray(ground_truth[i], np.float64).reshape(-1, 4)
        ign = np.zeros(len(gt), bool) if ignore is None else np.asarray(ignore[i], bool).reshape(-1)
        if not len(gt) and not len(boxes):
            continue
        s, m, di, gi = _coco_image(boxes, scores, gt, ign, thr, max_dets, size_range, size_measure)
        all_scores.append(s)
        all_m.append(m)
        all_di.append(di)
        n_gt += int((~gi).sum())
    t_n, r_n = len(thr), len(COCO_RECALL_POINTS)
    precision = np.zeros((t_n, r_n))
    recall = np.zeros(t_n)
    if n_gt == 0:
        return CocoResult(float("nan"), np.full(t_n, np.nan), precision, recall, thr, 0)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    m = np.concatenate(all_m, axis=1)[:, order] if all_m else np.zeros((t_n, 0), bool)
    di = np.concatenate(all_di, axis=1)[:, order] if all_di else np.zeros((t_n, 0), bool)
    tp_sum = np.cumsum(m & ~di, axis=1).astype(float)
    fp_sum = np.cumsum(~m & ~di, axis=1).astype(float)
    for t in range(t_n):
        tp, fp = tp_sum[t], fp_sum[t]
        rc = tp / n_gt
        pr = tp / (fp + tp + np.spacing(1))
        recall[t] = rc[-1] if len(tp) else 0.0
        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
        idx = np.searchsorted(rc, COCO_RECALL_POINTS, side="left")
        ok = idx < len(pr)
        precision[t, ok] = pr[idx[ok]]
    per_iou = precision.mean(axis=1)
    return CocoResult(float(per_iou.mean()), per_iou, precision, recall, thr, n_gt)


def per_frame_ap(
    detections: Sequence[Any],
    ground_truth: Sequence[Any],
    iou_threshold: float = 0.5,
    ignore: Sequence[Any] | None = None,
) -> tuple[float, int]:
    """VOC AP of each frame on its own, averaged over the frames that have ground truth (as the
    paper reports mAP for video): ``(mean, frames averaged)``; ``(nan, 0)`` when none has any.
    Frames without faces are left out of this mean (their false alarms count in the dataset AP)."""
    aps = []
    for i, (d, g) in enumerate(zip(detections, ground_truth)):
        ig = None if ignore is None else [ignore[i]]
        r = evaluate([d], [g], iou_threshold, ig)
        if r.num_gt:
            aps.append(r.ap)
    return (float(np.mean(aps)), len(aps)) if aps else (float("nan"), 0)
