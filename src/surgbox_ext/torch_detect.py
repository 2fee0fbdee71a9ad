"""Pieces shared by the torch face detectors (:mod:`surgbox_ext.retinaface`,
:mod:`surgbox_ext.centerface`): input checks, device choice, torch's thread count, grouping a
batch by image size, an onnxruntime or OpenVINO session made from a loaded ``nn.Module``, and
:class:`TorchDetectorParts` (their option checks, ``is_open`` and stage clock).

Importing this module imports torch (the plugin registrations never do).
"""

from __future__ import annotations

import functools
import io
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from surgbox.errors import DetectorError


def check_image(i: int, image: Any, what: str) -> np.ndarray:
    """``image`` (number ``i`` of a batch) if it is a non-empty ``HxWx3 uint8`` array, else
    ``ValueError`` naming it, what it is and the conversion to use."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}".strip()
        raise ValueError(
            f"image {i} is {desc}; {what} needs HxWx3 uint8 RGB arrays "
            "(convert grey with np.stack([g] * 3, -1), drop alpha with img[..., :3])"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image {i} is empty ({image.shape})")
    return image


def resolve_device(want: str, what: str) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` -> a torch device;
    :class:`DetectorError` naming the fix when it is not one or CUDA is missing."""
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(want)
    except RuntimeError as exc:
        raise DetectorError(f"{what} device {want!r} is not a torch device; use auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DetectorError(f"{what} device {want!r} asked for, but this torch build sees no CUDA GPU; "
                            "install a CUDA build of torch or use device='cpu'")
    return dev


def set_torch_threads(threads: int | None) -> int | None:
    """Set torch's (process-wide) intra-op thread count; returns the count to restore with
    :func:`restore_torch_threads` (``None`` when ``threads`` is ``None``: nothing changed)."""
    if threads is None:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    return before


def restore_torch_threads(before: int | None, threads: int | None) -> None:
    """Put back ``before`` unless someone changed the count from ``threads`` since."""
    if before is not None and torch.get_num_threads() == threads:
        torch.set_num_threads(before)


def group_by_size(arrays: Sequence[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Indices of ``arrays`` grouped by ``(height, width)``, in first-seen order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(arrays):
        groups.setdefault(im.shape[:2], []).append(i)
    return groups


def resize_nchw(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` resized to ``size`` ``(h, w)``: bilinear, ``align_corners=False``,
    antialiased when shrinking. On the CPU a uint8 ``x`` stays uint8 (rounded to the nearest
    level; best in channels-last memory, e.g. the ``permute(0, 3, 1, 2)`` view of an NHWC
    batch): torch's vectorised uint8 kernel, about 20x faster than resizing a float copy of a
    640x360 view. Anything else is resized as float32."""
    shrink = size[0] < x.shape[2] or size[1] < x.shape[3]
    if not (x.dtype == torch.uint8 and x.device.type == "cpu"):
        x = x.float()
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


def images_per_pass(batch_size: int, cpu_batch_pixels: int | None, pixels: int, on_cpu: bool) -> int:
    """Images per forward pass: ``batch_size``, capped on CPU to ``cpu_batch_pixels`` input
    pixels (at least one image)."""
    if on_cpu and cpu_batch_pixels is not None:
        return max(1, min(batch_size, cpu_batch_pixels // max(1, pixels)))
    return batch_size


def onnx_export(model: torch.nn.Module, example: torch.Tensor, outputs: Sequence[str], output_axes: dict[int, str], *,
                what: str, runtime: str) -> bytes:
    """``model`` as ONNX bytes (opset 17) with a dynamic batch and size: input ``"input"``
    ``(batch, 3, height, width)``, outputs named ``outputs`` whose ``output_axes`` ``{dim:
    name}`` vary. :class:`DetectorError` naming ``runtime`` when the export fails."""
    buf = io.BytesIO()
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, **{name: dict(output_axes) for name in outputs}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), buf, dynamo=False, input_names=["input"], output_names=list(outputs),
                              opset_version=17, dynamic_axes=axes)
    except Exception as exc:
        raise DetectorError(f"{what}: exporting the model to ONNX for {runtime} failed ({type(exc).__name__}: {exc}); "
                            "use backend='torch'") from exc
    return buf.getvalue()


def ort_session(model: torch.nn.Module, example: torch.Tensor, outputs: Sequence[str], output_axes: dict[int, str], *,
                device: torch.device, threads: int | None, what: str, streams: int = 1) -> Any:
    """An onnxruntime session running ``model`` (:func:`onnx_export`), on CUDA when ``device``
    is CUDA and onnxruntime has it, with ``threads`` intra-op threads (``None``: onnxruntime's
    choice); on the CPU with ``streams`` > 1, a :class:`ParallelOrtSession` that runs that many
    parts of a pass at once. Called as ``session.run(None, {"input": x})`` -> one array per output."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DetectorError(f"{what} backend 'onnxruntime' needs the onnxruntime package: "
                            "pip install onnxruntime (or backend='torch')") from exc
    onnx = onnx_export(model, example, outputs, output_axes, what=what, runtime="onnxruntime")
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx, opts, providers=providers)
    if streams > 1 and session.get_providers()[0] == "CPUExecutionProvider":
        return ParallelOrtSession(session, streams)
    return session


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported here."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


PRECISIONS = ("f32", "bf16")


def openvino_bf16() -> bool:
    """Whether OpenVINO is installed and this CPU computes bfloat16 in hardware (AVX512-BF16 or
    AMX: OpenVINO lists ``BF16`` among the CPU's optimization capabilities)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return _cpu_computes_bf16()


@functools.cache
def _cpu_computes_bf16() -> bool:
    """OpenVINO's answer for this CPU, asked once per process (loading its CPU plugin to ask
    takes about 0.1 s, and every CenterFace ``open()`` needs it)."""
    import openvino as ov

    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a CPU plugin that cannot answer: no bf16
        return False


def split_pass(x: np.ndarray, streams: int) -> list[np.ndarray]:
    """A pass of images ``x`` (first axis: images) in ``min(len(x), streams)`` consecutive,
    contiguous parts of near-equal size (one part: ``[x]``), for parallel infer requests."""
    if streams <= 1 or len(x) <= 1:
        return [x]
    return [np.ascontiguousarray(p) for p in np.array_split(x, min(streams, len(x)))]


def join_parts(parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Per output, the parts' results joined along the first axis in order (always copies:
    a runtime may reuse its output buffers)."""
    if len(parts) == 1:
        return [np.array(o) for o in parts[0]]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


@attrs.define(eq=False)
class ParallelOrtSession:
    """An onnxruntime session called from ``streams`` threads at once (onnxruntime's ``run`` is
    thread-safe and releases the GIL): a pass of B >= 2 images is split like
    :class:`OpenVINOSession`'s, the first part on the calling thread, the others on short-lived
    threads; same interface as the session (``run(None, {"input": x})``). ``session``: the
    wrapped ``InferenceSession`` (one intra-op thread per call is the intended use)."""

    session: Any
    streams: int

    def get_session_options(self) -> Any:
        return self.session.get_session_options()

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        parts = split_pass(feeds["input"], self.streams)
        if len(parts) == 1:
            return self.session.run(names, feeds)
        results: list[Any] = [None] * len(parts)

        def work(k: int) -> None:
            try:
                results[k] = self.session.run(names, {"input": parts[k]})
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread below
                results[k] = exc

        helpers = [threading.Thread(target=work, args=(k,), name=f"ort-stream-{k}", daemon=True) for k in range(1, len(parts))]
        for t in helpers:
            t.start()
        work(0)
        for t in helpers:
            t.join()
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return join_parts(results)


@attrs.define(eq=False)
class OpenVINOSession:
    """An OpenVINO model compiled for the CPU, called like an onnxruntime session:
    ``run(None, {"input": x})`` -> one array per output (copies). ``precision``: what the
    compiled model computes in (``"f32"`` or ``"bf16"``). ``streams``: infer requests run at
    once; a batch of ``B >= 2`` images is split along its first axis into ``min(B, streams)``
    parts, run in parallel and joined in order (each image's result is the same as alone:
    the network has no cross-image terms). One caller thread at a time."""

    compiled: Any
    precision: str
    streams: int = 1
    _requests: list[Any] = attrs.field(init=False, alias="_requests")

    def __attrs_post_init__(self) -> None:
        self._requests = [self.compiled.create_infer_request() for _ in range(max(1, self.streams))]

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feeds["input"]
        outputs = range(len(self.compiled.outputs))
        parts = split_pass(x, len(self._requests))
        used = self._requests[: len(parts)]
        if len(parts) == 1:
            used[0].infer({0: x})
        else:
            for req, part in zip(used, parts):
                req.start_async({0: part})
            for req in used:
                req.wait()
        return join_parts([[req.get_output_tensor(i).data for i in outputs] for req in used])


def openvino_session(model: torch.nn.Module, example: torch.Tensor, outputs: Sequence[str], output_axes: dict[int, str], *,
                     threads: int | None, precision: str, what: str, streams: int = 1) -> OpenVINOSession:
    """``model`` (:func:`onnx_export`) compiled by OpenVINO for the CPU with ``threads``
    inference threads per stream (``None``: OpenVINO's choice) and ``streams`` parallel infer
    requests (:class:`OpenVINOSession`), computing in ``precision`` (``"bf16"`` only where
    :func:`openvino_bf16`, else ``"f32"``). No CPU pinning: decoding and encoding share the
    cores."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise DetectorError(f"{what} backend 'openvino' needs the openvino package: "
                            "pip install openvino (or backend='onnxruntime')") from exc
    onnx = onnx_export(model, example, outputs, output_axes, what=what, runtime="OpenVINO")
    precision = "bf16" if precision == "bf16" and openvino_bf16() else "f32"
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": streams, "ENABLE_CPU_PINNING": False,
                              "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads * streams
    core = ov.Core()
    try:
        compiled = core.compile_model(core.read_model(onnx, b""), "CPU", config)
    except Exception as exc:
        raise DetectorError(f"{what}: OpenVINO could not compile the model ({type(exc).__name__}: {exc}); "
                            "use backend='onnxruntime'") from exc
    return OpenVINOSession(compiled, precision, streams)


def scale_option(value: Any) -> float | str:
    """The ``scale`` option: ``"auto"`` or a float."""
    return "auto" if value == "auto" else float(value)


def effective_scale(height: int, width: int, *, scale: float | str, detector_min_face: float, min_face: float,
                    pixel_budget: int | None, max_size: int | None) -> float:
    """Resize factor for a ``height x width`` image: the small-face rule (docs/detectors.md).

    ``scale="auto"``: ``detector_min_face / min_face``, the factor that brings a face of
    ``min_face`` image pixels to the smallest face the network finds reliably (upscaling when
    the network needs bigger faces than asked for); else the given factor. Then capped so the
    scaled picture holds at most ``pixel_budget`` pixels and its longer side at most
    ``max_size`` (``None``: no cap). The smallest face found is then about
    ``detector_min_face / factor`` image pixels.
    """
    s = detector_min_face / min_face if scale == "auto" else float(scale)
    if pixel_budget is not None and height * width * s * s > pixel_budget:
        s = (pixel_budget / (height * width)) ** 0.5
    if max_size is not None and max(height, width) * s > max_size:
        s = max_size / max(height, width)
    return s


class TorchDetectorParts:
    """Mixed into the torch detector plugins: the checks of the options they share and the
    per-stage clock. Expects the attributes ``scale``, ``min_face``, ``pixel_budget``,
    ``max_size``, ``batch_size``, ``threshold``, ``nms_iou``, ``threads``, ``pre_nms_top_k``,
    ``max_detections``, ``stage_seconds`` (dict), ``_model``, ``_torch_device`` and ``_session``."""

    __slots__ = ()

    @property
    def is_open(self) -> bool:
        """Whether the network is loaded (a torch module, or an onnxruntime or OpenVINO session)."""
        return self._model is not None or self._session is not None

    def _check_shared_options(self, multiple: int, threshold_example: float, iou_example: float) -> None:
        """Raise ``ValueError`` naming the first shared option out of range; ``multiple`` is the
        network's input multiple (pixels), the examples are printed in the threshold/IoU errors."""
        if self.scale != "auto" and self.scale <= 0:
            raise ValueError(f"scale must be > 0 or 'auto', got {self.scale}")
        if self.min_face <= 0:
            raise ValueError(f"min_face must be > 0 pixels, got {self.min_face}")
        if self.pixel_budget is not None and self.pixel_budget < multiple * multiple:
            raise ValueError(f"pixel_budget must be >= {multiple * multiple} pixels, got {self.pixel_budget}")
        if self.max_size is not None and self.max_size < multiple:
            raise ValueError(f"max_size must be >= {multiple} pixels, got {self.max_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold} (e.g. {threshold_example})")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou} (e.g. {iou_example})")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if self.pre_nms_top_k < 1 or self.max_detections < 1:
            raise ValueError(f"pre_nms_top_k and max_detections must be >= 1, got {self.pre_nms_top_k}, {self.max_detections}")

    def _clock(self) -> float:
        """``time.perf_counter()``, after waiting for queued GPU work (CUDA with torch only)."""
        dev = self._torch_device
        if dev is not None and dev.type == "cuda" and self._session is None:
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    def _add(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` to the cumulative time of ``stage`` in ``stage_seconds``."""
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
