"""From CenterFace's four heads to per-image detections: sigmoid, threshold, top-k, decode, NMS.

Every cell of the stride-4 heatmap whose face probability exceeds the threshold is a candidate
(as CenterFace does; no peak extraction), decoded to a box centred at the cell centre plus its
offset, of the predicted size; overlapping candidates are merged by exact greedy NMS
(:func:`surgbox_ext.retinaface.postprocess.nms_keep`), all on the tensors' device.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import torch

from surgbox_ext.retinaface.postprocess import nms_keep

from .model import STRIDE


@attrs.frozen
class PostprocessConfig:
    """``score_threshold``: minimum face probability (strictly greater); ``iou_threshold``: NMS
    overlap that suppresses a lower-scored box (CenterFace uses 0.3); ``pre_nms_top_k``:
    candidates per image entering NMS; ``max_detections``: results kept per image."""

    score_threshold: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    iou_threshold: float = attrs.field(default=0.3, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    pre_nms_top_k: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    max_detections: int = attrs.field(default=750, validator=attrs.validators.gt(0))


def decode(cells: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and points of selected cells, in network-input pixels.

    ``cells`` ``(..., 2)`` float ``(row, col)``; ``size``/``offset`` ``(..., 2)`` ``(y, x)``
    head values at those cells; ``landmarks`` ``(..., 10)``. Returns ``boxes (..., 4)``
    ``[x1, y1, x2, y2]`` and ``points (..., 5, 2)`` ``(x, y)``: the box is centred at
    ``(cell + offset + 0.5) * 4`` with sides ``exp(size) * 4``; point ``j`` is at
    ``top-left + (landmarks[2j + 1] * width, landmarks[2j] * height)``.
    """
    hw = torch.exp(size) * STRIDE  # (..., 2) height, width
    centre = (cells + offset + 0.5) * STRIDE  # (..., 2) y, x
    top_left = centre - hw / 2
    boxes = torch.cat([top_left.flip(-1), (top_left + hw).flip(-1)], dim=-1)  # (..., 4) x1 y1 x2 y2
    lm = landmarks.unflatten(-1, (5, 2))  # (..., 5, 2) y, x
    points = (top_left[..., None, :] + lm * hw[..., None, :]).flip(-1)  # (..., 5, 2) x, y
    return boxes, points


def postprocess(
    heat: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    landmarks: torch.Tensor,
    config: PostprocessConfig = PostprocessConfig(),
    *,
    stages: dict[str, float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Detections per image from the raw heads (``heat`` ``(B, 1, h, w)`` logits, ``size`` and
    ``offset`` ``(B, 2, h, w)``, ``landmarks`` ``(B, 10, h, w)``). Returns, per image, ``(boxes
    (N, 4), scores (N,), points (N, 5, 2))`` float32 in network-input pixels (not clipped),
    sorted by descending score. ``stages``/``clock``: as in
    :func:`surgbox_ext.retinaface.postprocess.postprocess` (``score filter``, ``sort``,
    ``output decoding``, ``NMS``)."""
    t0 = clock() if stages is not None else 0.0
    bsz, _, h, w = heat.shape
    scores = torch.sigmoid(heat.float()).flatten(1)  # (B, h*w)
    k = min(config.pre_nms_top_k, int((scores > config.score_threshold).sum(dim=1).max())) if bsz and h * w else 0
    t1 = clock() if stages is not None else 0.0
    top, idx = scores.topk(k, dim=1, sorted=True)  # (B, K)
    valid = top > config.score_threshold  # a prefix of each row
    t2 = clock() if stages is not None else 0.0

    def pick(t: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, K, C)
        return torch.gather(t.flatten(2).float(), 2, idx[:, None, :].expand(-1, t.shape[1], -1)).transpose(1, 2)

    cells = torch.stack([torch.div(idx, w, rounding_mode="floor"), idx % w], dim=-1).float()  # (B, K, 2) row, col
    boxes, points = decode(cells, pick(size), pick(offset), pick(landmarks))
    t3 = clock() if stages is not None else 0.0
    keep = nms_keep(boxes, valid, config.iou_threshold)  # (B, K)
    t4 = clock() if stages is not None else 0.0
    out = []
    for i in range(bsz):
        sel = keep[i].nonzero().squeeze(1)[: config.max_detections]
        out.append((boxes[i, sel], top[i, sel], points[i, sel]))
    if stages is not None:
        t5 = clock()
        for name, dt in (("score filter", t1 - t0), ("sort", t2 - t1), ("output decoding", t3 - t2 + t5 - t4), ("NMS", t4 - t3)):
            stages[name] = stages.get(name, 0.0) + dt
    return out
