"""Synthetic in-body (laparoscopic-like) frames for the out-of-body classifier's tests and benchmark:
smooth red/pink/dark-red tissue with yellow fat, a dark circular vignette (sometimes none),
specular highlights, sometimes a grey metal instrument, at random brightness. Deterministic per seed."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TISSUE = [(165, 40, 40), (200, 90, 95), (120, 20, 25), (185, 70, 50), (210, 120, 120), (95, 15, 20)]
FAT = (205, 175, 95)


def inbody_frame(seed: int, width: int = 640, height: int = 360) -> np.ndarray:
    """One ``HxWx3 uint8`` RGB in-body-like frame."""
    rng = np.random.default_rng(seed)
    small = (max(4, width // 40), max(3, height // 40))
    base = np.zeros((small[1], small[0], 3), np.float32)
    picks = rng.integers(0, len(TISSUE), size=(small[1], small[0]))
    for k, c in enumerate(TISSUE):
        base[picks == k] = c
    fat = rng.random((small[1], small[0])) < rng.uniform(0.0, 0.15)
    base[fat] = FAT
    img = Image.fromarray(base.astype(np.uint8)).resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(6))
    a = np.asarray(img, np.float32)
    a *= rng.uniform(0.5, 1.15)
    a += rng.normal(0, 4, a.shape)  # sensor noise / fine texture
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    if rng.random() < 0.6:  # an instrument: grey shaft with a metallic highlight
        x0, y0 = rng.uniform(0, width), height
        x1, y1 = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.6) * height
        g = int(rng.uniform(90, 170))
        d.line([(x0, y0), (x1, y1)], fill=(g, g, g + 5), width=int(rng.uniform(0.04, 0.09) * height))
        d.line([(x0 + 6, y0), (x1 + 6, y1)], fill=(min(255, g + 60),) * 3, width=3)
    for _ in range(rng.integers(3, 15)):  # specular highlights
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(1.5, 8)
        d.ellipse([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=(255, 250, 245))
    out = np.asarray(im.filter(ImageFilter.GaussianBlur(0.7)), np.float32)
    if rng.random() < 0.7:  # the scope's circular field of view
        yy, xx = np.mgrid[0:height, 0:width]
        r = np.hypot((xx - width / 2) / (width / 2), (yy - height / 2) / (height / 2) * height / width * 1.0)
        rad = rng.uniform(0.75, 1.0)
        out *= np.clip((rad - r) / 0.05, 0, 1)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)
