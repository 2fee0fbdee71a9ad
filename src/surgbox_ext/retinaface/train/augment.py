"""Training augmentation: synthetic surgical masks and caps, random square crops, photometric
jitter, mirror, pad-to-square and resize. Pure numpy/Pillow on ``HxWx3 uint8`` RGB; every
random choice comes from the ``numpy.random.Generator`` passed in (reproducible with a seed).

Masks and caps are drawn in a face frame built from five landmarks (eyes, nose, mouth corners;
the shipped model's own predictions, see :mod:`.data`): origin between the eyes, "down" towards
the mouth, unit ``d`` = eye-to-mouth distance, half-width = half the face box. A mask covers the
nose bridge to below the chin, ear to ear, with pleats and ear loops; a cap covers the head above
the brows. The face box itself does not change (the box convention is forehead or cap rim to chin).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

MASK_COLOURS = ((165, 205, 235), (125, 195, 175), (236, 238, 240), (200, 215, 230), (90, 150, 200))
CAP_COLOURS = ((60, 95, 170), (70, 145, 115), (40, 120, 140), (150, 170, 200), (235, 235, 235), (120, 60, 120))
CROP_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)


@attrs.frozen
class AugmentConfig:
    """``mask_prob``/``cap_prob``: chance per face of a drawn mask / cap; ``crop``: random square
    crops (biubug6's scales of the short side); ``jitter``: brightness/contrast/saturation/hue;
    ``mirror``: horizontal flips; ``min_face``: faces smaller than this (px, after resizing) become
    ``ignore`` (neither positive nor negative)."""

    mask_prob: float = 0.5
    cap_prob: float = 0.5
    crop: bool = True
    jitter: bool = True
    mirror: bool = True
    min_face: float = 6.0

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(mask_prob=0.0, cap_prob=0.0, crop=False, jitter=False, mirror=False)


def canonical_landmarks(box: np.ndarray) -> np.ndarray:
    """``(5, 2)`` landmarks of a frontal face filling ``box`` (when the model finds none)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    rel = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.58], [0.36, 0.76], [0.64, 0.76]])
    return np.stack([x1 + rel[:, 0] * w, y1 + rel[:, 1] * h], axis=1)


def _face_frame(box: np.ndarray, points: np.ndarray):
    eyes = (points[0] + points[1]) / 2
    mouth = (points[3] + points[4]) / 2
    v = mouth - eyes
    d = float(np.hypot(*v))
    if not np.isfinite(d) or d < 1e-3:
        d, v = 0.36 * (box[3] - box[1]), np.array([0.0, 1.0]) * 0.36 * (box[3] - box[1])
    down = v / d
    right = np.array([down[1], -down[0]])
    half = 0.5 * (box[2] - box[0])

    def at(fx: float, fy: float) -> tuple[float, float]:
        p = eyes + right * fx * half + down * fy * d
        return float(p[0]), float(p[1])

    return at, max(1.0, d)


def _paint(im: Image.Image, polygon, colour, rng: np.random.Generator, lines=(), line_colour=None, width=1) -> None:
    """Fill ``polygon`` on ``im`` with a slightly textured ``colour`` and a soft edge."""
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    x0, y0 = max(0, int(min(xs)) - 2), max(0, int(min(ys)) - 2)
    x1, y1 = min(im.width, int(max(xs)) + 3), min(im.height, int(max(ys)) + 3)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    alpha = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(alpha).polygon([(x - x0, y - y0) for x, y in polygon], fill=245)
    alpha = alpha.filter(ImageFilter.GaussianBlur(0.8))
    c = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 10, 3), 0, 255)
    tex = c[None, None, :] + rng.normal(0, 6, (y1 - y0, x1 - x0, 1))
    shade = np.linspace(1.04, 0.9, y1 - y0, dtype=np.float32)[:, None, None]  # light from above
    layer = Image.fromarray(np.clip(tex * shade, 0, 255).astype(np.uint8), "RGB")
    if lines:
        d = ImageDraw.Draw(layer)
        for a, b in lines:
            d.line([(a[0] - x0, a[1] - y0), (b[0] - x0, b[1] - y0)], fill=line_colour, width=width)
    im.paste(layer, (x0, y0), alpha)


def draw_mask(im: Image.Image, box: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a surgical mask on the face ``box`` with landmarks ``points`` ``(5, 2)``, in place."""
    at, d = _face_frame(box, points)
    top = rng.uniform(0.22, 0.4)
    outline = [(-1.0, top + 0.17), (-0.5, top + 0.04), (0, top), (0.5, top + 0.04), (1.0, top + 0.17),
               (0.97, 1.15), (0.62, 1.62), (0, 1.82), (-0.62, 1.62), (-0.97, 1.15)]
    colour = MASK_COLOURS[rng.integers(len(MASK_COLOURS))]
    dark = tuple(int(v * 0.8) for v in colour)
    pleats = [(at(-0.85, y), at(0.85, y)) for y in (0.72, 0.98, 1.24)]
    width = max(1, round(d / 25))
    _paint(im, [at(x, y) for x, y in outline], colour, rng, pleats, dark, width)
    draw = ImageDraw.Draw(im)
    for s in (-1, 1):  # ear loops
        draw.line([at(s * 1.0, top + 0.2), at(s * 1.08, -0.05)], fill=(230, 230, 230), width=width)


def draw_cap(im: Image.Image, box: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a surgical cap over the head above the brows of ``box``, in place."""
    at, d = _face_frame(box, points)
    rim = -rng.uniform(0.45, 0.7)
    height = rng.uniform(1.3, 1.8)
    dome = [at(1.12 * math.cos(t), rim + height * math.sin(t)) for t in np.linspace(math.pi, 2 * math.pi, 24)]
    colour = CAP_COLOURS[rng.integers(len(CAP_COLOURS))]
    _paint(im, dome + [at(1.12, rim + 0.08), at(-1.12, rim + 0.08)], colour, rng)


def add_surgical_gear(image: np.ndarray, boxes: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                      mask_prob: float, cap_prob: float) -> np.ndarray:
    """``image`` with masks/caps drawn on some faces (``boxes`` ``(F, 4)``, ``points`` ``(F, 5, 2)``
    pixels). Returns a new array (the input is untouched) or ``image`` itself when nothing is drawn."""
    draws = [(rng.random() < mask_prob, rng.random() < cap_prob) for _ in range(len(boxes))]
    if not any(m or c for m, c in draws):
        return image
    im = Image.fromarray(image)
    for (m, c), b, p in zip(draws, boxes, points):
        if min(b[2] - b[0], b[3] - b[1]) < 8:
            continue
        if c:
            draw_cap(im, b, p, rng)
        if m:
            draw_mask(im, b, p, rng)
    return np.asarray(im)


def random_crop(image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator, tries: int = 250):
    """A random square crop (side = one of :data:`CROP_SCALES` x the short side) that keeps at least
    one face whose centre it contains (biubug6's rule); faces whose centres fall outside are dropped,
    the rest clipped. Returns ``(image, boxes, ignore)``; the image unchanged when no crop fits."""
    h, w = image.shape[:2]
    for _ in range(tries if len(boxes) else 1):
        side = int(CROP_SCALES[rng.integers(len(CROP_SCALES))] * min(h, w))
        if side < 2:
            break
        left = int(rng.integers(0, w - side + 1))
        top = int(rng.integers(0, h - side + 1))
        roi = np.array([left, top, left + side, top + side], np.float64)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = ((centres > roi[:2]) & (centres < roi[2:])).all(1)
        if len(boxes) and not (inside & ~ignore).any():
            continue
        b = boxes[inside].copy()
        b[:, :2] = np.maximum(b[:, :2], roi[:2]) - roi[:2]
        b[:, 2:] = np.minimum(b[:, 2:], roi[2:]) - roi[:2]
        return image[top : top + side, left : left + side], b, ignore[inside]
    return image, boxes, ignore


def jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation (each with probability 1/2) and hue shift."""
    im = Image.fromarray(image)
    for enhancer, lo, hi in ((ImageEnhance.Brightness, 0.7, 1.3), (ImageEnhance.Contrast, 0.5, 1.5), (ImageEnhance.Color, 0.5, 1.5)):
        if rng.random() < 0.5:
            im = enhancer(im).enhance(float(rng.uniform(lo, hi)))
    if rng.random() < 0.5:
        hsv = np.asarray(im.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.integers(-13, 14))) % 256
        im = Image.fromarray(hsv, "HSV").convert("RGB")
    return np.asarray(im)


def to_square(image: np.ndarray, boxes: np.ndarray, size: int, fill=(123, 117, 104)) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``image`` right/bottom to a square (mean colour) and resize to ``size x size``; boxes
    are returned normalised to ``[0, 1]`` of the square."""
    h, w = image.shape[:2]
    side = max(h, w)
    if h != w:
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = fill
        canvas[:h, :w] = image
        image = canvas
    if side != size:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image, boxes / side


def augment(image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, points: np.ndarray, size: int,
            config: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training view: ``(size x size x 3 uint8, boxes (F', 4) normalised, ignore (F',))``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ignore = np.asarray(ignore, bool).reshape(-1)
    if config.mask_prob > 0 or config.cap_prob > 0:
        counted = ~ignore
        image = add_surgical_gear(image, boxes[counted], points[counted], rng, config.mask_prob, config.cap_prob)
    if config.crop:
        image, boxes, ignore = random_crop(image, boxes, ignore, rng)
    if config.jitter:
        image = jitter(image, rng)
    if config.mirror and rng.random() < 0.5:
        image = image[:, ::-1]
        w = image.shape[1]
        boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
    image, boxes = to_square(np.ascontiguousarray(image), boxes, size)
    small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * size < config.min_face
    return image, boxes.astype(np.float32), ignore | small
