"""Anonymizers: hide faces inside feathered masks, in place, on YUV 4:2:0 planes.

An anonymizer gets the three planes of one picture (``Y`` full resolution, ``U``/``V`` half
resolution, each an ``HxW uint8`` array, writable, any row stride) and face boxes
``[x1, y1, x2, y2]`` in luma pixels. It replaces the pixels inside each box's mask
(:class:`~surgbox.deid.masks.MaskShape`) by a blurred, pixelated or filled version, blended by
the mask's alpha with the Cython kernel :func:`surgbox._kernels.blend_masked`. Pixels outside
every mask are never written (bit-exact). Strength scales with face size (the longer side of
the box before expansion), so a large face is blurred as hard, relative to its size, as a
small one.

    >>> blur = make_anonymizer("blur")
    >>> blur.apply(frame_planes(frame), [(100, 80, 160, 150)])      # doctest: +SKIP
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
from PIL import Image, ImageFilter

from .._kernels import blend_masked
from ..errors import ConfigError
from . import defaults
from .masks import MaskShape


def frame_planes(frame: Any, writable: bool = True) -> list[np.ndarray]:
    """Numpy views ``[Y, U, V]`` of a ``yuv420p``/``yuvj420p`` ``av.VideoFrame`` (no copy).

    With ``writable`` (default) the frame's buffers are made private first (``make_writable``:
    a decoder may still reference them as reference pictures), so writing into the views
    changes only this frame. With ``writable=False`` the views must only be read.
    """
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        raise ValueError(f"frame_planes needs a yuv420p frame, got {frame.format.name}")
    if writable:
        frame.make_writable()
    w, h = frame.width, frame.height
    sizes = [(w, h), ((w + 1) // 2, (h + 1) // 2), ((w + 1) // 2, (h + 1) // 2)]
    out = []
    for plane, (pw, ph) in zip(frame.planes, sizes):
        arr = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        out.append(arr[:ph, :pw])
    return out


def _positive(instance, attribute, value) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.define(eq=False)
class Anonymizer(abc.ABC):
    """Base class: per box and plane, build the hidden version of the mask's window and blend it."""

    name: ClassVar[str] = "anonymizer"
    shape: MaskShape = attrs.field(factory=MaskShape, kw_only=True)

    def apply(self, planes: Sequence[np.ndarray], boxes: Iterable[Sequence[float]]) -> int:
        """Hide every box in ``planes`` (``[Y, U, V]``) in place; returns pixels changed."""
        y = planes[0]
        touched = 0
        for box in boxes:
            if max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1])) <= 0:
                continue
            size = self.shape.face_size(box)
            m = key = None
            for p, plane in enumerate(planes):
                scale = 1 if p == 0 else max(1, round(y.shape[1] / plane.shape[1]))
                if key != (plane.shape, scale):  # U and V share one mask
                    key = (plane.shape, scale)
                    m = self.shape.alpha(box, plane.shape[1], plane.shape[0], scale)
                if m is None:
                    continue
                x0, y0, alpha = m
                h, w = alpha.shape
                hidden = self._hidden(plane, x0, y0, w, h, size / scale, p)
                window = np.ascontiguousarray(plane[y0:y0 + h, x0:x0 + w])
                touched += blend_masked(window, hidden, alpha)
                plane[y0:y0 + h, x0:x0 + w] = window
        return touched

    def hide_all(self, planes: Sequence[np.ndarray]) -> int:
        """Hide every pixel of ``planes`` (``[Y, U, V]`` of one picture or one scan region) in
        place, as if one face filled it: what the pipeline does to a region the detector could
        not score (fail closed). Returns pixels changed."""
        y = planes[0]
        size = float(max(y.shape))
        touched = 0
        for p, plane in enumerate(planes):
            h, w = plane.shape
            scale = 1 if p == 0 else max(1, round(y.shape[1] / max(w, 1)))
            plane[:, :] = self._hidden(plane, 0, 0, w, h, size / scale, p)
            touched += h * w
        return touched

    @abc.abstractmethod
    def _hidden(self, plane: np.ndarray, x0: int, y0: int, w: int, h: int, size: float, index: int) -> np.ndarray:
        """The anonymized ``h x w`` window at ``(x0, y0)`` of ``plane`` (C-contiguous uint8);
        ``size`` is the face size in this plane's pixels, ``index`` 0 for Y, 1/2 for U/V."""

    def settings(self) -> dict[str, Any]:
        d = {k: v for k, v in attrs.asdict(self, recurse=False).items() if k != "shape"}
        return {"anonymizer": self.name, **d, "expand": self.shape.expand, "feather": self.shape.feather, "square": self.shape.square,
                "margin": self.shape.margin, "min_size": self.shape.min_size}


@attrs.define(eq=False)
class GaussianBlur(Anonymizer):
    """Gaussian blur with ``sigma = max(min_sigma, strength * face_size)`` (luma pixels; half on
    chroma). The blur sees ``3 sigma`` of context around the window, so the edge is not darkened;
    wide blurs (sigma >= 6 pixels) run on a reduced copy and are scaled back up."""

    name: ClassVar[str] = "blur"
    strength: float = attrs.field(default=0.2, converter=float, validator=_positive)
    min_sigma: float = attrs.field(default=4.0, converter=float, validator=_positive)

    def sigma(self, size: float, scale: int = 1) -> float:
        return max(self.min_sigma / scale, self.strength * size)

    def _hidden(self, plane, x0, y0, w, h, size, index):
        sigma = self.sigma(size, 1 if index == 0 else 2)
        pad = int(math.ceil(3 * sigma))
        ph, pw = plane.shape
        ax0, ay0 = max(0, x0 - pad), max(0, y0 - pad)
        ax1, ay1 = min(pw, x0 + w + pad), min(ph, y0 + h + pad)
        ctx = Image.fromarray(np.ascontiguousarray(plane[ay0:ay1, ax0:ax1]))
        k = int(sigma // 3)
        if k < 2:
            blurred = np.asarray(ctx.filter(ImageFilter.GaussianBlur(sigma)))
            return np.ascontiguousarray(blurred[y0 - ay0:y0 - ay0 + h, x0 - ax0:x0 - ax0 + w])
        # A wide blur keeps no detail finer than sigma: blur a k-times reduced copy (box filter,
        # then sigma / k) and scale the window back up (bilinear): same look, k^2 less work.
        small = ctx.reduce(k).filter(ImageFilter.GaussianBlur(sigma / k))
        fx, fy = small.width / ctx.width, small.height / ctx.height
        box = ((x0 - ax0) * fx, (y0 - ay0) * fy, (x0 - ax0 + w) * fx, (y0 - ay0 + h) * fy)
        return np.ascontiguousarray(np.asarray(small.resize((w, h), Image.BILINEAR, box=box)))


@attrs.define(eq=False)
class Pixelate(Anonymizer):
    """Mosaic of square cells ``max(min_cell, face_size / cells)`` pixels wide (cell means)."""

    name: ClassVar[str] = "pixelate"
    cells: float = attrs.field(default=5.0, converter=float, validator=_positive)
    min_cell: float = attrs.field(default=4.0, converter=float, validator=_positive)

    def _hidden(self, plane, x0, y0, w, h, size, index):
        scale = 1 if index == 0 else 2
        cell = max(self.min_cell / scale, size / self.cells)
        small = (max(1, round(w / cell)), max(1, round(h / cell)))
        im = Image.fromarray(np.ascontiguousarray(plane[y0:y0 + h, x0:x0 + w]))
        return np.ascontiguousarray(np.asarray(im.resize(small, Image.BOX).resize((w, h), Image.NEAREST)))


@attrs.define(eq=False)
class SolidFill(Anonymizer):
    """A flat colour given as limited-range YUV (default black: ``(16, 128, 128)``)."""

    name: ClassVar[str] = "fill"
    yuv: tuple[int, int, int] = attrs.field(default=(16, 128, 128), converter=lambda v: tuple(int(c) for c in v))

    @yuv.validator
    def _check(self, attribute, value) -> None:
        if len(value) != 3 or not all(0 <= c <= 255 for c in value):
            raise ValueError(f"fill yuv must be three values 0..255, got {value}")

    def _hidden(self, plane, x0, y0, w, h, size, index):
        return np.full((h, w), self.yuv[index], np.uint8)


ANONYMIZERS: dict[str, type[Anonymizer]] = {"blur": GaussianBlur, "pixelate": Pixelate, "fill": SolidFill}


def make_anonymizer(name: str | Anonymizer = "blur", *, expand: float = 1.3, feather: float = 0.25, square: bool = True,
                    margin: float = defaults.MASK_MARGIN, min_size: float = defaults.MIN_MASK, **options: Any) -> Anonymizer:
    """Build an anonymizer by name (``blur``, ``pixelate``, ``fill``) with its mask shape
    (:class:`MaskShape`; ``margin`` and ``min_size`` default to :data:`surgbox.deid.defaults.MASK_MARGIN`
    and :data:`~surgbox.deid.defaults.MIN_MASK`) and options."""
    if isinstance(name, Anonymizer):
        return name
    cls = ANONYMIZERS.get(name)
    if cls is None:
        raise ConfigError(f"unknown anonymizer {name!r}; choose one of: {', '.join(ANONYMIZERS)}")
    try:
        return cls(shape=MaskShape(expand, feather, square, margin=margin, min_size=min_size), **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"anonymizer {name!r}: {exc}") from None
