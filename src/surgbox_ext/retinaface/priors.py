"""Anchor boxes ("priors") of RetinaFace, in the order the network emits its predictions.

A prior is ``(cx, cy, w, h)`` normalised by the input size (``cx = x / W``). For each pyramid
level (stride ``s``, anchor sizes ``(a1, a2)``) and each cell ``(row i, column j)`` of the
``ceil(H/s) x ceil(W/s)`` grid there is one prior per anchor size, centred at
``((j + 0.5) * s, (i + 0.5) * s)`` pixels. Order: level, then row, then column, then anchor size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
STEPS: tuple[int, ...] = (8, 16, 32)


def prior_count(height: int, width: int, steps: Sequence[int] = STEPS, min_sizes: Sequence[Sequence[int]] = MIN_SIZES) -> int:
    """Number of priors ``P`` for an ``height x width`` input."""
    return sum(math.ceil(height / s) * math.ceil(width / s) * len(m) for s, m in zip(steps, min_sizes))


def make_priors(
    height: int,
    width: int,
    *,
    steps: Sequence[int] = STEPS,
    min_sizes: Sequence[Sequence[int]] = MIN_SIZES,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Priors for an ``height x width`` network input: ``(P, 4)`` ``(cx, cy, w, h)`` in [0, 1] units."""
    if height <= 0 or width <= 0:
        raise ValueError(f"priors need a positive input size, got {width}x{height}")
    levels = []
    for step, sizes in zip(steps, min_sizes):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, device=device, dtype=torch.float64) + 0.5) * step / height  # (rows,)
        cx = (torch.arange(cols, device=device, dtype=torch.float64) + 0.5) * step / width  # (cols,)
        k = len(sizes)
        sw = torch.tensor([m / width for m in sizes], device=device, dtype=torch.float64)  # (k,)
        sh = torch.tensor([m / height for m in sizes], device=device, dtype=torch.float64)  # (k,)
        grid = torch.stack(
            [
                cx.view(1, cols, 1).expand(rows, cols, k),
                cy.view(rows, 1, 1).expand(rows, cols, k),
                sw.view(1, 1, k).expand(rows, cols, k),
                sh.view(1, 1, k).expand(rows, cols, k),
            ],
            dim=-1,
        )  # (rows, cols, k, 4)
        levels.append(grid.reshape(-1, 4))
    return torch.cat(levels).to(dtype)
