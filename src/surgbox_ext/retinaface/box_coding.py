"""Decoding RetinaFace's regression outputs against priors (SSD-style encoding with variances).

Boxes: ``cx = pcx + dx * v0 * pw``, ``cy = pcy + dy * v0 * ph``, ``w = pw * exp(dw * v1)``,
``h = ph * exp(dh * v1)``, then converted to corners. Landmarks: each point
``(x, y) = (pcx + lx * v0 * pw, pcy + ly * v0 * ph)``. All in the priors' normalised units;
multiply by ``(W, H)`` for pixels. Inputs may carry leading batch dimensions.
"""

from __future__ import annotations

import torch

VARIANCES: tuple[float, float] = (0.1, 0.2)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """``loc`` ``(..., P, 4)`` and ``priors`` ``(P, 4)`` -> boxes ``(..., P, 4)`` ``(x1, y1, x2, y2)``."""
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]  # (..., P, 2)
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])  # (..., P, 2)
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def encode_boxes(boxes: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Inverse of :func:`decode_boxes`: corner boxes ``(..., P, 4)`` -> offsets ``(..., P, 4)``
    (used to build training targets)."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (..., P, 2)
    size = boxes[..., 2:] - boxes[..., :2]  # (..., P, 2)
    d_centre = (centre - priors[..., :2]) / (variances[0] * priors[..., 2:])
    d_size = torch.log(size / priors[..., 2:]) / variances[1]
    return torch.cat([d_centre, d_size], dim=-1)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """``pre`` ``(..., P, 10)`` and ``priors`` ``(P, 4)`` -> points ``(..., P, 5, 2)`` ``(x, y)``."""
    pts = pre.unflatten(-1, (5, 2))  # (..., P, 5, 2)
    return priors[..., None, :2] + pts * variances[0] * priors[..., None, 2:]
