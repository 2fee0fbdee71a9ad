"""The ``retinaface`` detector plugin: batched RetinaFace face detection with torch or onnxruntime.

>>> from surgbox_ext.retinaface import RetinaFaceDetector
>>> with RetinaFaceDetector(threshold=0.5) as det:           # doctest: +SKIP
...     [faces] = det.detect([rgb_image])                    # HxWx3 uint8 RGB
...     faces.boxes, faces.scores, faces.landmarks           # (N,4) x1y1x2y2, (N,), (N,5,2) pixels

Pipeline per batch: group images by size, upload ``uint8`` to the device, resize (optional),
RGB->BGR and mean subtraction (:func:`preprocess`), network, softmax/top-k/decode/NMS on the
device (:mod:`.postprocess`), map back to each image's pixels.
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
    TorchDetectorParts,
    check_image,
    effective_scale,
    group_by_size,
    images_per_pass,
    ort_session,
    resize_nchw,
    resolve_device,
    restore_torch_threads,
    scale_option,
    set_torch_threads,
)

from .checkpoint import build_model
from .model import RetinaFace, fold_batchnorm
from .postprocess import PostprocessConfig, postprocess
from .priors import make_priors

log = logging.getLogger(__name__)

MEAN_BGR = (104.0, 117.0, 123.0)
# Smallest face (short side, network-input pixels) RetinaFace finds reliably: where its
# single-frame recall reaches 70 % of its 48-pixel value (measured, docs/detectors.md).
MIN_FACE = 16
BACKENDS = ("torch", "onnxruntime")


def preprocess(
    batch: torch.Tensor,
    size: tuple[int, int] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """Network input from ``batch`` ``(B, H, W, 3)`` uint8 RGB (any device).

    ``size``: ``(height, width)`` to resize to (:func:`~surgbox_ext.torch_detect.resize_nchw`:
    bilinear, antialiased when shrinking, in uint8 on the CPU); ``None`` keeps ``H x W``. Returns ``(B, 3, h, w)`` ``dtype`` BGR minus :data:`MEAN_BGR`, in
    channels-last memory format when asked.
    """
    x = batch.permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last memory: no copy yet
    if size is not None and tuple(size) != tuple(x.shape[2:]):
        x = resize_nchw(x, tuple(size))  # uint8 on the CPU: the fast kernel, before any float copy
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.flip(1).to(dtype=torch.float32, memory_format=fmt)  # BGR, one float copy
    x -= torch.tensor(MEAN_BGR, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.to(dtype=dtype)


@attrs.define(eq=False)
class RetinaFaceDetector(TorchDetectorParts, Detector):
    """RetinaFace (MobileNet-0.25 by default, shipped weights; ResNet-50 with your checkpoint).

    Options (all keyword):

    * ``weights``: checkpoint path (surgbox, biubug6 ``*_Final.pth``, fine-tuned); ``None``: shipped.
    * ``backbone``: ``"mobilenet0.25"``/``"resnet50"``; ``None``: from the checkpoint.
    * ``threshold``: minimum face probability (default 0.5, recall-leaning for privacy).
    * ``nms_iou``: IoU above which a lower-scored overlapping box is dropped (0.4).
    * ``scale``: resize factor applied before the network (1.0 = native pixels), or
      ``"auto"``: the small-face rule, ``scale = 16 / min_face`` so faces of ``min_face`` image
      pixels (default 16) reach the 16 pixels RetinaFace finds reliably; ``pixel_budget``: cap
      on the scaled picture's pixels; ``max_size``: cap on its longer side (``None``: no cap;
      :func:`surgbox_ext.torch_detect.effective_scale`). Results are always in the original
      image's pixels.
    * ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    * ``fp16``: half precision on CUDA (ignored on CPU). ``channels_last``: NHWC memory format
      (default on: about 2x faster than NCHW on CPU in ``benchmarks/bench_retinaface.py``).
    * ``fold_bn``: fold BatchNorm into the convolutions at ``open()`` (same results, faster).
    * ``backend``: ``"torch"`` or ``"onnxruntime"`` (exports the loaded model at ``open()``).
    * ``compile``: ``torch.compile`` the model (slow first call per input size).
    * ``batch_size``: images per forward pass; ``pre_nms_top_k``/``max_detections``: per image.
    * ``cpu_batch_pixels``: on CPU (torch backend) a forward pass holds at most this many input
      pixels (at least one image; ``None``: no cap). Big CPU batches thrash the caches: at
      1920x1080 one image per pass ran about 1.7x faster than 16 in ``benchmarks/``.
    * ``threads``: CPU math threads (``None``: leave the library's setting). For the torch
      backend this is torch's intra-op thread count, which is **process-wide**: ``open()`` sets
      it with ``torch.set_num_threads`` and ``close()`` puts back the count found at ``open()``
      (unless something else changed it in between), so every torch user in the process runs
      with it while the detector is open. For ``onnxruntime`` it is the session's own
      ``intra_op_num_threads`` (nothing global).

    ``detect`` opens the detector on first use if ``open()`` was not called.

    ``stage_seconds`` holds cumulative seconds per stage of all ``detect`` calls:
    ``preprocessing`` (stacking, upload, resize, mean subtraction), ``inference`` (the
    network), ``score filter`` (softmax, threshold), ``sort`` (top-k), ``output decoding`` (box
    and landmark decoding, scaling back to image pixels, download) and ``NMS``. On CUDA the
    device is synchronized before each reading, so the split is exact (and costs a little
    overlap); on CPU it costs a few clock reads per batch.
    """

    name: ClassVar[str] = "retinaface"
    version: ClassVar[str] = "1"

    weights: str | None = attrs.field(default=None, converter=attrs.converters.optional(str))
    backbone: str | None = None
    threshold: float = attrs.field(default=0.5, converter=float)
    nms_iou: float = attrs.field(default=0.4, converter=float)
    scale: float | str = attrs.field(default=1.0, converter=scale_option)
    max_size: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    min_face: float = attrs.field(default=16.0, converter=float)
    pixel_budget: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    device: str = "auto"
    fp16: bool = True
    channels_last: bool = True
    fold_bn: bool = True
    backend: str = attrs.field(default="torch", validator=attrs.validators.in_(BACKENDS))
    compile: bool = False
    batch_size: int = attrs.field(default=16, converter=int)
    pre_nms_top_k: int = 1000
    max_detections: int = 750
    cpu_batch_pixels: int | None = 1 << 20
    threads: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    stage_seconds: dict[str, float] = attrs.field(factory=dict, init=False)

    _model: Any = attrs.field(default=None, init=False, alias="_model")
    _session: Any = attrs.field(default=None, init=False, alias="_session")
    _torch_device: Any = attrs.field(default=None, init=False, alias="_torch_device")
    _meta: dict = attrs.field(factory=dict, init=False, alias="_meta")
    _post: Any = attrs.field(default=None, init=False, alias="_post")
    _priors: dict = attrs.field(factory=dict, init=False, alias="_priors")
    _threads_before: int | None = attrs.field(default=None, init=False, alias="_threads_before")

    def __attrs_post_init__(self) -> None:
        self._check_shared_options(32, 0.5, 0.4)
        self._post = PostprocessConfig(self.threshold, self.nms_iou, self.pre_nms_top_k, self.max_detections)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def _half(self) -> bool:
        return bool(self.fp16 and self._torch_device is not None and self._torch_device.type == "cuda")

    @property
    def _nhwc(self) -> bool:
        return bool(self.channels_last)

    def open(self) -> None:
        """Load the weights and prepare the model on the device (idempotent)."""
        if self.is_open:
            return
        self._torch_device = resolve_device(self.device, "RetinaFace")
        model, meta = build_model(self.weights, self.backbone)
        if self.fold_bn:
            fold_batchnorm(model)
        self._meta = meta
        if self.backend == "onnxruntime":
            self._session = self._make_ort_session(model)
            return
        self._threads_before = set_torch_threads(self.threads)
        model = model.to(self._torch_device)
        if self._half:
            model = model.half()
        if self._nhwc:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model = torch.compile(model)
        self._model = model

    def _make_ort_session(self, model: RetinaFace) -> Any:
        return ort_session(model, torch.zeros(1, 3, 64, 64), ["loc", "logits", "landmarks"], {0: "batch", 1: "priors"},
                           device=self._torch_device, threads=self.threads, what="RetinaFace")

    def close(self) -> None:
        """Release the model; restores torch's thread count if ``threads`` changed it (idempotent)."""
        restore_torch_threads(self._threads_before, self.threads)  # unless someone else changed it since open()
        self._threads_before = None
        self._model = None
        self._session = None
        self._priors.clear()

    def settings(self) -> Mapping[str, Any]:
        """Options that change results, plus the weights' identity, for audit records."""
        return {
            "detector": self.name,
            "weights": self._meta.get("path", self.weights or "shipped"),
            "weights_sha256": self._meta.get("sha256"),
            "backbone": self._meta.get("backbone", self.backbone),
            "threshold": self.threshold,
            "nms_iou": self.nms_iou,
            "scale": self.scale,
            "min_face": self.min_face,
            "pixel_budget": self.pixel_budget,
            "max_size": self.max_size,
            "device": str(self._torch_device) if self._torch_device is not None else self.device,
            "fp16": self._half,
            "backend": self.backend,
            "threads": self.threads,
        }

    # -- inference -------------------------------------------------------------------------

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input ``(height, width)`` for an image of ``height x width`` pixels."""
        s = effective_scale(height, width, scale=self.scale, detector_min_face=MIN_FACE, min_face=self.min_face,
                            pixel_budget=self.pixel_budget, max_size=self.max_size)
        return max(1, round(height * s)), max(1, round(width * s))

    def smallest_face(self, height: int, width: int) -> float:
        """Smallest face (short side, pixels of a ``height x width`` image) found reliably."""
        return MIN_FACE * height / self.input_size(height, width)[0]

    def _step(self, height: int, width: int) -> int:
        """Images per forward pass for ``height x width`` images."""
        h, w = self.input_size(height, width)
        on_cpu = self._session is None and self._torch_device.type == "cpu"
        return images_per_pass(self.batch_size, self.cpu_batch_pixels or None, h * w, on_cpu)

    def _priors_for(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._priors:
            if len(self._priors) > 16:  # bounded cache
                self._priors.clear()
            self._priors[key] = make_priors(h, w, device=device)
        return self._priors[key]

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor, t_start: float) -> list[Detections]:
        """``batch`` ``(B, H, W, 3)`` uint8 RGB of one size -> detections in its pixels.
        ``t_start``: clock reading when this batch's preprocessing began."""
        _, height, width, _ = batch.shape
        h, w = self.input_size(height, width)
        if self._session is not None:
            x = preprocess(batch.cpu(), (h, w))
            t1 = self._clock()
            loc, logits, lms = (torch.from_numpy(o) for o in self._session.run(None, {"input": x.numpy()}))
            dev = torch.device("cpu")
        else:
            dev = self._torch_device
            x = preprocess(batch.to(dev, non_blocking=True), (h, w),
                           dtype=torch.float16 if self._half else torch.float32, channels_last=self._nhwc)
            t1 = self._clock()
            loc, logits, lms = self._model(x)
        t2 = self._clock()
        self._add("preprocessing", t1 - t_start)
        self._add("inference", t2 - t1)
        results = postprocess(loc, logits, lms, self._priors_for(h, w, dev), w, h, self._post,
                              stages=self.stage_seconds, clock=self._clock)
        t3 = self._clock()
        sx, sy = width / w, height / h
        limit = torch.tensor([width, height, width, height], dtype=torch.float32, device=dev)
        factor = torch.tensor([sx, sy], dtype=torch.float32, device=dev)
        out = []
        for boxes, scores, points in results:
            boxes = torch.minimum((boxes * factor.repeat(2)).clamp(min=0), limit)
            points = points * factor
            out.append(Detections(boxes.cpu().numpy(), scores.cpu().numpy(), points.cpu().numpy()))
        self._add("output decoding", self._clock() - t3)  # .cpu() above synchronized
        return out

    def detect(self, images: Sequence[np.ndarray] | torch.Tensor) -> list[Detections]:
        """Faces in each image: ``images`` is a sequence of ``HxWx3 uint8`` RGB arrays (sizes may
        differ) or a ``(B, H, W, 3)`` uint8 tensor (any device). Returns one :class:`Detections`
        per image, in order: boxes ``[x1, y1, x2, y2]`` clipped to the image, scores in
        ``(threshold, 1]`` sorted descending, landmarks ``(N, 5, 2)`` (eyes, nose, mouth corners)."""
        if not self.is_open:
            self.open()
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"tensor input must be (B, H, W, 3) uint8 RGB, got {tuple(images.shape)} {images.dtype}")
            step = self._step(images.shape[1], images.shape[2])
            return [d for s in range(0, len(images), step) for d in self._run(images[s : s + step], self._clock())]
        arrays = [check_image(i, im, "RetinaFace") for i, im in enumerate(images)]
        out: list[Detections | None] = [None] * len(arrays)
        for (height, width), idx in group_by_size(arrays).items():
            step = self._step(height, width)
            for s in range(0, len(idx), step):
                chunk = idx[s : s + step]
                t0 = self._clock()
                batch = torch.from_numpy(np.stack([arrays[i] for i in chunk]))
                if self._torch_device.type == "cuda" and self._session is None:
                    batch = batch.pin_memory()
                for i, det in zip(chunk, self._run(batch, t0)):
                    out[i] = det
        return out  # type: ignore[return-value]
