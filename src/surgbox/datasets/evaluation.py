"""Scoring detections against a dataset's faces: the numbers ``surgbox eval`` prints.

:func:`score` takes one detection list per item (``Detections`` or ``(boxes, scores)``) and the
items, and returns a JSON-ready report: dataset-level VOC AP at ``iou`` (all-point) and COCO
AP@[.5:.95] (101-point), the per-frame mean AP, recall/precision at ``threshold``, and tables by
face size (short side of the true box, px), by video and by label. Boxes flagged ``ignore``
count neither way (VOC) and act as COCO ``iscrowd`` regions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import coco_evaluate, evaluate, iou_matrix, per_frame_ap
from .annotations import Item, label_matches

SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<20", 0, 20), ("20-40", 20, 40), ("40-80", 40, 80), (">=80", 80, math.inf))
MASK_LABELS = ("*mask*",)


def _arrays(items: Sequence[Item]):
    gts = [np.array([b.box for b in it.boxes], np.float64).reshape(-1, 4) for it in items]
    ign = [np.array([b.ignore for b in it.boxes], bool) for it in items]
    return gts, ign


def _pairs(detections: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for d in detections:
        if hasattr(d, "boxes"):
            out.append((np.asarray(d.boxes, np.float64).reshape(-1, 4), np.asarray(d.scores, np.float64).reshape(-1)))
        else:
            out.append((np.asarray(d[0], np.float64).reshape(-1, 4), np.asarray(d[1], np.float64).reshape(-1)))
    return out


def _found(pairs, gts, ign, iou: float, threshold: float) -> list[np.ndarray]:
    """Per item, which true boxes some detection scoring ``> threshold`` overlaps by ``>= iou``."""
    out = []
    for (b, s), g in zip(pairs, gts):
        keep = b[s > threshold]
        out.append((iou_matrix(g, keep) >= iou).any(1) if len(keep) and len(g) else np.zeros(len(g), bool))
    return out


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _recall_row(found, gts, ign, select) -> tuple[int, float | None]:
    n = hit = 0
    for f, g, i, sel in zip(found, gts, ign, select):
        m = sel & ~i
        n += int(m.sum())
        hit += int((f & m).sum())
    return n, (hit / n if n else None)


def score(detections: Sequence[Any], items: Sequence[Item], *, iou: float = 0.5, threshold: float = 0.3) -> dict[str, Any]:
    """The evaluation report (see the module doc); ``threshold`` is the score above which a
    detection counts for the recall/precision figures and tables (the deid working point)."""
    if len(detections) != len(items):
        raise ValueError(f"{len(detections)} detection lists for {len(items)} items")
    pairs = _pairs(detections)
    gts, ign = _arrays(items)
    voc = evaluate(pairs, gts, iou, ign)
    coco = coco_evaluate(pairs, gts, ign)
    pf, pf_n = per_frame_ap(pairs, gts, iou, ign)
    precision, recall = voc.at_threshold(threshold) if voc.num_gt else (None, None)
    found = _found(pairs, gts, ign, iou, threshold)
    sizes = [np.minimum(g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]) for g in gts]
    per_size = []
    for name, lo, hi in SIZE_BUCKETS:
        n, r = _recall_row(found, gts, ign, [(s >= lo) & (s < hi) for s in sizes])
        ap = coco_evaluate(pairs, gts, ign, iou_thresholds=[iou], size_range=(lo, hi - 1e-9), size_measure="short_side").ap
        per_size.append({"size": name, "faces": n, "recall": _num(r), "ap50": _num(ap)})
    per_video = []
    for video in dict.fromkeys(it.video for it in items):
        idx = [k for k, it in enumerate(items) if it.video == video]
        sub = evaluate([pairs[k] for k in idx], [gts[k] for k in idx], iou, [ign[k] for k in idx])
        n, r = _recall_row([found[k] for k in idx], [gts[k] for k in idx], [ign[k] for k in idx],
                           [np.ones(len(gts[k]), bool) for k in idx])
        per_video.append({"video": video, "images": len(idx), "faces": n, "ap50": _num(sub.ap), "recall": _num(r)})
    labels = sorted({b.label for it in items for b in it.boxes})
    per_label = []
    for lab in labels:
        n, r = _recall_row(found, gts, ign, [np.array([b.label == lab for b in it.boxes], bool) for it in items])
        per_label.append({"label": lab, "faces": n, "recall": _num(r)})
    masked_sel = [np.array([label_matches(b.label, MASK_LABELS) for b in it.boxes], bool) for it in items]
    m_n, m_r = _recall_row(found, gts, ign, masked_sel)
    return {
        "iou": iou, "threshold": threshold,
        "ap50": _num(voc.ap), "coco_ap": _num(coco.ap), "coco_ap50": _num(coco.ap_at(0.5)), "coco_ap75": _num(coco.ap_at(0.75)),
        "per_frame_map": _num(pf), "per_frame_frames": pf_n,
        "images": len(items), "faces": voc.num_gt, "ignored": int(sum(i.sum() for i in ign)),
        "detections": int(sum(len(s) for _, s in pairs)),
        "recall": _num(recall), "precision": _num(precision),
        "masked_faces": m_n, "masked_recall": _num(m_r),
        "per_size": per_size, "per_video": per_video, "per_label": per_label,
    }


def pr_curve(detections: Sequence[Any], items: Sequence[Item], iou: float = 0.5):
    """``(recall, precision, scores)`` arrays of the dataset-level VOC curve (for plotting)."""
    gts, ign = _arrays(items)
    r = evaluate(_pairs(detections), gts, iou, ign)
    return r.recall, r.precision, r.scores
