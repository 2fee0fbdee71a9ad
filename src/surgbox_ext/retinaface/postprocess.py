"""From raw head outputs to per-image detections: score filter, top-k, decode, batched NMS.

Everything runs on the tensors' device (CPU or CUDA); only the final, small per-image results
leave it. NMS is exact greedy NMS (same result as the classic sequential loop: a box is kept
when no *kept* box of higher score overlaps it by IoU > threshold), computed batched as a
fixed point over an IoU matrix so a GPU does not run a Python loop per box.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import torch

from .box_coding import decode_boxes, decode_landmarks

# Upper bound on elements of one batched (B, K, K) IoU matrix; larger batches are chunked.
_NMS_ELEMENTS = 1 << 24


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes: ``a`` ``(..., N, 4)``, ``b`` ``(..., M, 4)`` -> ``(..., N, M)``.

    Continuous areas (``(x2 - x1) * (y2 - y1)``, no +1); empty boxes give IoU 0.
    """
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (..., N, M, 2)
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # (..., N, M, 2)
    inter = (rb - lt).clamp(min=0).prod(-1)  # (..., N, M)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)  # (..., N)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)  # (..., M)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def nms_keep(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over score-sorted candidates, batched.

    ``boxes``: ``(B, K, 4)`` corners, each row sorted by descending score; ``valid``: ``(B, K)``
    bool (padding is ``False``). Returns ``(B, K)`` bool: which candidates survive.
    """
    b, k = valid.shape
    if k == 0:
        return valid.clone()
    upper = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)  # (K, K): i < j
    keep = valid.clone()
    step = max(1, _NMS_ELEMENTS // (k * k))
    for s in range(0, b, step):
        bx, vd = boxes[s : s + step], valid[s : s + step]
        over = (box_iou(bx, bx) > iou_threshold) & upper & vd[:, :, None] & vd[:, None, :]  # (b, K, K)
        cur = vd.clone()
        # Fixed point of keep[j] = valid[j] and not any(keep[i] and over[i, j] for i < j): unique,
        # equal to the sequential result, reached in at most K rounds (usually 2-4).
        for _ in range(k + 1):
            nxt = vd & ~(over & cur[:, :, None]).any(dim=1)
            if torch.equal(nxt, cur):
                break
            cur = nxt
        keep[s : s + step] = cur
    return keep


@attrs.frozen
class PostprocessConfig:
    """``score_threshold``: minimum face probability (strictly greater); ``iou_threshold``: NMS
    overlap that suppresses a lower-scored box; ``pre_nms_top_k``: candidates per image entering
    NMS; ``max_detections``: results kept per image."""

    score_threshold: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    iou_threshold: float = attrs.field(default=0.4, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    pre_nms_top_k: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    max_detections: int = attrs.field(default=750, validator=attrs.validators.gt(0))


def postprocess(
    loc: torch.Tensor,
    logits: torch.Tensor,
    landmarks: torch.Tensor,
    priors: torch.Tensor,
    width: int,
    height: int,
    config: PostprocessConfig = PostprocessConfig(),
    *,
    stages: dict[str, float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Detections per image from raw outputs of a ``height x width`` network input.

    ``loc`` ``(B, P, 4)``, ``logits`` ``(B, P, 2)``, ``landmarks`` ``(B, P, 10)``, ``priors``
    ``(P, 4)``. Returns, per image, ``(boxes (N, 4), scores (N,), points (N, 5, 2))`` float32 in
    pixels of the network input, sorted by descending score.

    ``stages``: when given, seconds spent in ``"score filter"`` (softmax, threshold),
    ``"sort"`` (top-k of the candidates), ``"output decoding"`` (box and landmark decoding,
    per-image selection) and ``"NMS"`` are added to it; ``clock`` reads the time (pass one
    that synchronizes the device first when the tensors are on a GPU).
    """
    t0 = clock() if stages is not None else 0.0
    bsz, p = logits.shape[:2]
    scores = torch.softmax(logits.float(), dim=-1)[..., 1]  # (B, P)
    # candidates above the threshold; at most pre_nms_top_k of them per image enter NMS
    k = min(config.pre_nms_top_k, int((scores > config.score_threshold).sum(dim=1).max())) if bsz and p else 0
    t1 = clock() if stages is not None else 0.0
    top, idx = scores.topk(k, dim=1, sorted=True)  # (B, K)
    valid = top > config.score_threshold  # (B, K), a prefix of each row
    t2 = clock() if stages is not None else 0.0
    pri = priors.to(loc.device, torch.float32)[idx]  # (B, K, 4)
    sel_loc = torch.gather(loc, 1, idx[..., None].expand(-1, -1, 4)).float()  # (B, K, 4)
    sel_lm = torch.gather(landmarks, 1, idx[..., None].expand(-1, -1, 10)).float()  # (B, K, 10)
    scale = torch.tensor([width, height], dtype=torch.float32, device=loc.device)
    boxes = decode_boxes(sel_loc, pri) * scale.repeat(2)  # (B, K, 4) pixels
    points = decode_landmarks(sel_lm, pri) * scale  # (B, K, 5, 2) pixels
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
