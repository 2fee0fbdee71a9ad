"""RetinaFace training targets and the multibox loss.

Matching (per image): every prior's IoU with every face box (corners, network-input units);
a face whose best prior overlaps it by less than ``ignore_below`` (0.2) is ignored (too small
or too odd for any anchor); every other face is forced onto its best prior; then each prior takes the
face it overlaps most and is positive when that IoU is at least ``positive_iou`` (0.35).
Box targets are encoded with variances 0.1/0.2 (:mod:`..box_coding`). Priors overlapping an
``ignore`` face by ``ignore_below`` or more are neither positive nor negative.

Loss: smooth-L1 on the box offsets of positives, cross-entropy on positives and the hardest
negatives (``neg_pos`` = 7 negatives per positive, at least ``min_negatives`` per image so
face-less frames still teach "no face here"), smooth-L1 on landmarks only for faces that have
them (CVAT boxes do not), each normalised by its count of positives; the total is
``loc_weight * box + class + landmark``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from ..box_coding import VARIANCES, encode_boxes
from ..postprocess import box_iou


def prior_corners(priors: torch.Tensor) -> torch.Tensor:
    """``(P, 4)`` ``(cx, cy, w, h)`` -> ``(P, 4)`` corners."""
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)


def encode_landmarks(points: torch.Tensor, priors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """``points`` ``(P, 5, 2)`` normalised -> offsets ``(P, 10)`` (inverse of ``decode_landmarks``)."""
    d = (points - priors[:, None, :2]) / (variances[0] * priors[:, None, 2:])
    return d.reshape(len(priors), 10)


@attrs.frozen
class Targets:
    """Per image: ``labels`` ``(P,)`` int64 (1 face, 0 background, -1 neither), ``loc`` ``(P, 4)``,
    ``landmarks`` ``(P, 10)`` and ``has_landmarks`` ``(P,)`` bool."""

    labels: torch.Tensor
    loc: torch.Tensor
    landmarks: torch.Tensor
    has_landmarks: torch.Tensor


def match(
    boxes: torch.Tensor,
    priors: torch.Tensor,
    *,
    ignore: torch.Tensor | None = None,
    landmarks: torch.Tensor | None = None,
    positive_iou: float = 0.35,
    ignore_below: float = 0.2,
) -> Targets:
    """Targets for one image. ``boxes`` ``(F, 4)`` corners normalised to the input size;
    ``priors`` ``(P, 4)`` ``(cx, cy, w, h)``; ``ignore`` ``(F,)`` bool; ``landmarks``
    ``(F, 5, 2)`` normalised, NaN rows for faces without landmarks."""
    p = len(priors)
    dev = priors.device
    labels = torch.zeros(p, dtype=torch.long, device=dev)
    loc = torch.zeros(p, 4, device=dev)
    lms = torch.zeros(p, 10, device=dev)
    has_lm = torch.zeros(p, dtype=torch.bool, device=dev)
    if len(boxes) == 0:
        return Targets(labels, loc, lms, has_lm)
    ign = torch.zeros(len(boxes), dtype=torch.bool, device=dev) if ignore is None else ignore.to(dev)
    corners = prior_corners(priors)
    iou = box_iou(boxes, corners)  # (F, P)
    if ign.any():  # priors on ignored faces: not negatives
        labels[(iou[ign] >= ignore_below).any(0)] = -1
    keep = ~ign
    if not keep.any():
        return Targets(labels, loc, lms, has_lm)
    boxes, iou = boxes[keep], iou[keep]
    if landmarks is not None:
        landmarks = landmarks[keep]
    best_prior_iou, best_prior = iou.max(dim=1)  # (F,)
    valid = best_prior_iou >= ignore_below
    best_face_iou, best_face = iou.max(dim=0)  # (P,)
    for j in torch.nonzero(valid).flatten().tolist():  # force each face onto its best prior
        best_face[best_prior[j]] = j
        best_face_iou[best_prior[j]] = 2.0
    pos = (best_face_iou >= positive_iou) & valid[best_face]
    labels[pos] = 1
    loc[pos] = encode_boxes(boxes[best_face[pos]], priors[pos])
    if landmarks is not None:
        pts = landmarks[best_face[pos]]  # (n, 5, 2)
        ok = ~torch.isnan(pts).flatten(1).any(1)
        idx = torch.nonzero(pos).flatten()
        has_lm[idx[ok]] = True
        lms[idx[ok]] = encode_landmarks(pts[ok], priors[idx[ok]])
    return Targets(labels, loc, lms, has_lm)


@attrs.frozen
class LossParts:
    total: torch.Tensor
    box: torch.Tensor
    cls: torch.Tensor
    landmark: torch.Tensor
    positives: int


def multibox_loss(
    loc: torch.Tensor,
    logits: torch.Tensor,
    landmarks: torch.Tensor,
    targets: list[Targets],
    *,
    neg_pos: int = 7,
    min_negatives: int = 16,
    loc_weight: float = 2.0,
) -> LossParts:
    """The loss of a batch: network outputs ``(B, P, 4)``, ``(B, P, 2)``, ``(B, P, 10)`` and one
    :class:`Targets` per image."""
    labels = torch.stack([t.labels for t in targets])  # (B, P)
    t_loc = torch.stack([t.loc for t in targets])
    t_lm = torch.stack([t.landmarks for t in targets])
    has_lm = torch.stack([t.has_landmarks for t in targets])
    pos = labels == 1
    n_pos = int(pos.sum())
    norm = max(n_pos, 1)
    loss_box = F.smooth_l1_loss(loc[pos].float(), t_loc[pos], reduction="sum") / norm
    n_lm = int(has_lm.sum())
    loss_lm = (F.smooth_l1_loss(landmarks[has_lm].float(), t_lm[has_lm], reduction="sum") / n_lm
               if n_lm else loc.new_zeros(()).float())
    logits = logits.float()
    with torch.no_grad():  # hard negative mining on the per-prior background loss
        bg = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # (B, P)
        bg[labels != 0] = -1.0  # positives and ignored priors are never negatives
        rank = bg.argsort(dim=1, descending=True).argsort(dim=1)
        n_neg = (pos.sum(1, keepdim=True) * neg_pos).clamp(min=min_negatives)
        n_neg = torch.minimum(n_neg, (labels == 0).sum(1, keepdim=True))
        neg = rank < n_neg
    sel = pos | neg
    loss_cls = F.cross_entropy(logits[sel], pos[sel].long(), reduction="sum") / norm
    total = loc_weight * loss_box + loss_cls + loss_lm
    return LossParts(total, loss_box.detach(), loss_cls.detach(), loss_lm.detach(), n_pos)
