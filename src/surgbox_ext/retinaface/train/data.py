"""Training samples: dataset images, their face boxes, and landmarks from the shipped model.

The synthetic masks and caps of :mod:`.augment` are drawn from five landmarks per face. Boxes
from CVAT/COCO/dlib carry none, so :func:`teacher_landmarks` runs a RetinaFace (the shipped
weights unless told otherwise) once over the training images and gives each annotated face the
landmarks of the detection that overlaps it best (IoU >= 0.3), else a frontal layout fitted to
its box. The result is cached in the run folder, so ``--resume`` does not recompute it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from surgbox.datasets import Dataset, Sample
from surgbox.metrics import iou_matrix

from .augment import canonical_landmarks


def sample_boxes(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (F, 4) float64 pixels, ignore (F,) bool)`` of a sample."""
    boxes = np.array([b.box for b in sample.item.boxes], np.float64).reshape(-1, 4)
    ignore = np.array([b.ignore for b in sample.item.boxes], bool).reshape(-1)
    return boxes, ignore


def teacher_landmarks(
    dataset: Dataset,
    detector,
    *,
    key: bytes | None = None,
    cache: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """Per sample an ``(F, 5, 2)`` array of landmarks in its pixels, one row per annotated box.

    ``detector``: an opened detector returning landmarks (``RetinaFaceDetector``). ``cache``: a
    JSON file read when it matches the dataset (same images and box counts) and written otherwise."""
    names = [s.image for s in dataset]
    counts = [len(s.item.boxes) for s in dataset]
    if cache is not None and cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("images") == names and [len(p) for p in data["points"]] == counts:
            return [np.asarray(p, np.float64).reshape(-1, 5, 2) for p in data["points"]]
    out = []
    for i, s in enumerate(dataset):
        boxes, _ = sample_boxes(s)
        pts = np.stack([canonical_landmarks(b) for b in boxes]) if len(boxes) else np.zeros((0, 5, 2))
        if len(boxes):
            [det] = detector.detect([dataset.read_image(s, key)])
            if len(det) and det.landmarks is not None:
                iou = iou_matrix(boxes, det.boxes)  # (F, D)
                for f in range(len(boxes)):
                    j = int(np.argmax(iou[f]))
                    if iou[f, j] >= 0.3:
                        pts[f] = det.landmarks[j]
        out.append(pts)
        if progress:
            progress(i + 1, len(dataset))
    if cache is not None:
        cache.write_text(json.dumps({"images": names, "points": [p.round(2).tolist() for p in out]}))
    return out


def batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    """``order`` cut into batches of ``batch_size`` (the last one may be shorter)."""
    return [list(order[s : s + batch_size]) for s in range(0, len(order), batch_size)]
