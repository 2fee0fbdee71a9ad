"""Test helper: drawn faces with surgical masks and caps (no photo needed), for the masked-face
path of the detectors and the ensemble in a fresh clone without ../shared."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SKIN = (222, 178, 150)
CAP = (70, 120, 170)  # surgical cap blue
MASK = (235, 240, 245)  # surgical mask, pale blue-white


def draw_face(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, *, masked: bool = True, capped: bool = True) -> None:
    """A face centred at ``(cx, cy)`` with half-height ``s`` pixels: head, ears, eyes, brows,
    nose; with ``masked`` a pleated surgical mask from the nose bridge to below the chin, with
    ``capped`` a surgical cap down to the brows."""
    d.ellipse([cx - s * 0.78, cy - s, cx + s * 0.78, cy + s], fill=SKIN)
    for ex in (-1, 1):  # ears
        d.ellipse([cx + ex * s * 0.72 - s * 0.12, cy - s * 0.2, cx + ex * s * 0.72 + s * 0.12, cy + s * 0.25], fill=(205, 160, 135))
    if capped:
        d.chord([cx - s * 0.86, cy - s * 1.2, cx + s * 0.86, cy - s * 0.05], 180, 360, fill=CAP)
        d.rectangle([cx - s * 0.86, cy - s * 0.65, cx + s * 0.86, cy - s * 0.45], fill=CAP)
    else:
        d.ellipse([cx - s * 0.85, cy - s * 1.15, cx + s * 0.85, cy - s * 0.45], fill=(60, 40, 30))
    for ex in (-0.33, 0.33):
        ox = cx + ex * s
        d.ellipse([ox - s * 0.14, cy - s * 0.24, ox + s * 0.14, cy - s * 0.06], fill=(255, 255, 255))
        d.ellipse([ox - s * 0.065, cy - s * 0.22, ox + s * 0.065, cy - s * 0.08], fill=(40, 30, 20))
        d.line([ox - s * 0.18, cy - s * 0.34, ox + s * 0.18, cy - s * 0.36], fill=(60, 40, 30), width=max(1, int(s * 0.06)))
    if masked:
        top, bottom = cy + s * 0.02, cy + s * 0.95
        d.polygon([(cx - s * 0.62, top + s * 0.08), (cx, top - s * 0.06), (cx + s * 0.62, top + s * 0.08),
                   (cx + s * 0.55, bottom - s * 0.1), (cx, bottom), (cx - s * 0.55, bottom - s * 0.1)], fill=MASK)
        for k in range(1, 4):  # pleats
            y = top + (bottom - top) * k / 4
            d.line([cx - s * 0.55, y, cx + s * 0.55, y], fill=(120, 170, 190), width=max(1, int(s * 0.03)))
        for ex in (-1, 1):  # ear loops
            d.line([cx + ex * s * 0.6, top + s * 0.1, cx + ex * s * 0.75, cy - s * 0.05], fill=(235, 235, 235), width=max(1, int(s * 0.03)))
    else:
        d.polygon([(cx, cy - s * 0.05), (cx - s * 0.1, cy + s * 0.2), (cx + s * 0.1, cy + s * 0.2)], fill=(200, 140, 115))
        d.chord([cx - s * 0.3, cy + s * 0.25, cx + s * 0.3, cy + s * 0.55], 0, 180, fill=(150, 60, 60))


def masked_scene(height: int, width: int, faces: list[tuple[float, float, float]], *, masked: bool = True,
                 capped: bool = True, background: tuple[int, int, int] = (60, 110, 100)) -> np.ndarray:
    """An ``HxWx3 uint8`` RGB picture (a plain OR-green background) with the given faces
    ``(centre x, centre y, half-height)`` in gowns, slightly blurred like a camera image."""
    im = Image.new("RGB", (width, height), background)
    d = ImageDraw.Draw(im)
    for cx, cy, s in faces:
        d.rectangle([cx - s * 0.3, cy + s * 0.8, cx + s * 0.3, cy + s * 1.3], fill=(205, 160, 135))  # neck
        d.ellipse([cx - s * 1.3, cy + s * 1.1, cx + s * 1.3, cy + s * 3.5], fill=(80, 140, 120))  # gown
        draw_face(d, cx, cy, s, masked=masked, capped=capped)
    return np.asarray(im.filter(ImageFilter.GaussianBlur(0.5)))


def face_box(cx: float, cy: float, s: float) -> tuple[float, float, float, float]:
    """The ground-truth box of a drawn face: brows/cap rim to chin, ear to ear."""
    return cx - s * 0.8, cy - s * 0.6, cx + s * 0.8, cy + s
