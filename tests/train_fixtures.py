"""Small synthetic face datasets for training tests: drawn faces, some with drawn masks and caps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from surgbox.datasets import Box, Dataset, Item, Sample


def draw_face(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float) -> None:
    d.ellipse([cx - s * 0.8, cy - s, cx + s * 0.8, cy + s], fill=(224, 172, 140))
    d.ellipse([cx - s * 0.85, cy - s * 1.15, cx + s * 0.85, cy - s * 0.45], fill=(60, 40, 30))
    for ex in (-0.33, 0.33):
        ox = cx + ex * s
        d.ellipse([ox - s * 0.13, cy - s * 0.22, ox + s * 0.13, cy - s * 0.08], fill=(255, 255, 255))
        d.ellipse([ox - s * 0.06, cy - s * 0.21, ox + s * 0.06, cy - s * 0.09], fill=(40, 30, 20))
    d.polygon([(cx, cy - s * 0.05), (cx - s * 0.1, cy + s * 0.2), (cx + s * 0.1, cy + s * 0.2)], fill=(200, 140, 115))
    d.chord([cx - s * 0.3, cy + s * 0.25, cx + s * 0.3, cy + s * 0.55], 0, 180, fill=(150, 60, 60))


def masked_scene(size: int, faces, rng: np.random.Generator) -> np.ndarray:
    """Drawn faces wearing a mask and a cap (drawn by the training augmentation itself), on a
    noisy background. ``faces``: ``(cx, cy, s)``; the true box is ``[cx-0.8s, cy-1.1s, cx+0.8s, cy+1.1s]``."""
    from surgbox_ext.retinaface.train.augment import canonical_landmarks, draw_cap, draw_mask

    bg = rng.integers(60, 120, (size, size, 3)).astype(np.uint8)
    im = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(2))
    d = ImageDraw.Draw(im)
    for cx, cy, s in faces:
        draw_face(d, cx, cy, s)
    for cx, cy, s in faces:
        box = np.array(face_box(cx, cy, s))
        pts = canonical_landmarks(box)
        draw_cap(im, box, pts, rng)
        draw_mask(im, box, pts, rng)
    return np.asarray(im)


def face_box(cx, cy, s):
    return (cx - 0.8 * s, cy - 1.1 * s, cx + 0.8 * s, cy + 1.1 * s)


def write_dataset(root: Path, scenes, *, video_of=lambda i: f"v{i}") -> Dataset:
    """A dataset folder from ``scenes`` = ``[(image, [box, ...]), ...]``."""
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i, (img, boxes) in enumerate(scenes):
        name = f"img{i:03d}.png"
        Image.fromarray(img).save(root / name)
        item = Item(i, name, [Box(b, "face_mask") for b in boxes], img.shape[1], img.shape[0], video_of(i))
        samples.append(Sample(item, name))
    ds = Dataset(root, samples)
    ds.save()
    return ds


def overfit_scenes(n: int = 4, size: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        faces = [(rng.uniform(35, 93), rng.uniform(40, 88), rng.uniform(18, 26))]
        if i % 2:
            faces.append((min(size - 20, faces[0][0] + 55), max(25, faces[0][1] - 20), 14))
            if abs(faces[1][0] - faces[0][0]) < 40:
                faces.pop()
        img = masked_scene(size, faces, rng)
        scenes.append((img, [face_box(*f) for f in faces]))
    return scenes
