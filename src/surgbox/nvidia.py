"""What this machine's NVIDIA GPUs can do for video: the driver, the devices, NVENC/NVDEC.

Used to choose the de-identification decoder (NVDEC through PyAV, :mod:`surgbox.deid.decoders`)
and to explain why the ``h264_nvenc`` encoder plugin is unavailable. The probe asks the CUDA
driver itself (``libcuda.so.1``: ``cuInit``, ``cuDeviceGetCount``, ``cuDeviceGetName``) through
:mod:`ctypes` -- no CUDA toolkit, no torch, nothing imported at module import -- and caches the
answer per process. It works in containers that have no ``/proc/driver/nvidia``.

    >>> from surgbox import nvidia
    >>> info = nvidia.probe()            # doctest: +SKIP
    >>> info.gpus, info.reason           # doctest: +SKIP
    (('NVIDIA H200',), None)

Data centre GPUs without a video encoder (NVIDIA's "Video Encode and Decode GPU Support
Matrix": NVDEC engines but no NVENC) are listed in :data:`NO_NVENC`.
"""

from __future__ import annotations

import ctypes
import threading

import attrs

NO_NVENC = ("A100", "A30", "A800", "H100", "H200", "H800")
"""Model names (as in ``NVIDIA H200``) of GPUs that decode on NVDEC but have no NVENC encoder."""

DRIVER_LIBRARY = "libcuda.so.1"


@attrs.frozen
class GpuInfo:
    """``gpus``: the device names the CUDA driver reports (empty without a usable GPU);
    ``reason``: why there is none (``None`` when there is at least one)."""

    gpus: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def present(self) -> bool:
        return bool(self.gpus)

    def without_nvenc(self) -> tuple[str, ...]:
        """The GPUs here whose model has no NVENC (:data:`NO_NVENC`)."""
        return tuple(g for g in self.gpus if any(_model_is(g, m) for m in NO_NVENC))

    def describe(self) -> str:
        """``"NVIDIA H200"`` / ``"2 GPUs: NVIDIA A2, NVIDIA A2"`` / the reason there is none."""
        if not self.gpus:
            return self.reason or "no NVIDIA GPU"
        return self.gpus[0] if len(self.gpus) == 1 else f"{len(self.gpus)} GPUs: {', '.join(self.gpus)}"


def _model_is(name: str, model: str) -> bool:
    words = name.upper().replace("-", " ").split()
    return model in words or any(w.startswith(model) and not w[len(model):].isdigit() for w in words)


_lock = threading.Lock()
_cached: list[GpuInfo] = []


def probe(library: str = DRIVER_LIBRARY) -> GpuInfo:
    """The NVIDIA GPUs the CUDA driver ``library`` sees (cached per process for the default
    library); never raises: what went wrong is the ``reason``."""
    if library != DRIVER_LIBRARY:
        return _probe(library)
    with _lock:
        if not _cached:
            _cached.append(_probe(library))
        return _cached[0]


def _probe(library: str) -> GpuInfo:
    try:
        cuda = ctypes.CDLL(library)
    except OSError:
        return GpuInfo(reason=f"no NVIDIA driver: {library} (the CUDA driver library) is not installed; install the "
                              "NVIDIA driver (in a container: run it with the GPU passed through, e.g. --gpus all)")
    try:
        err = cuda.cuInit(0)
    except AttributeError:
        return GpuInfo(reason=f"{library} is not the CUDA driver library (it has no cuInit)")
    if err != 0:
        return GpuInfo(reason=f"the NVIDIA driver is installed but cuInit failed (CUDA error {err}{_CU_ERRORS.get(err, '')}): "
                              "no usable GPU; check `nvidia-smi`")
    count = ctypes.c_int(0)
    err = cuda.cuDeviceGetCount(ctypes.byref(count))
    if err != 0 or count.value < 1:
        return GpuInfo(reason="the NVIDIA driver is installed but reports no GPU; check `nvidia-smi`")
    names = []
    for i in range(count.value):
        dev, buf = ctypes.c_int(0), ctypes.create_string_buffer(256)
        if cuda.cuDeviceGet(ctypes.byref(dev), i) == 0 and cuda.cuDeviceGetName(buf, 256, dev) == 0:
            names.append(buf.value.decode(errors="replace"))
        else:
            names.append(f"GPU {i}")
    return GpuInfo(gpus=tuple(names))


_CU_ERRORS = {100: ": no CUDA-capable device", 999: ": unknown", 3: ": not initialized", 35: ": driver older than the runtime"}


def nvenc_absence(info: GpuInfo) -> str | None:
    """Why NVENC cannot exist here judging by the GPUs alone (``None``: it may): no driver or
    GPU, or every GPU is a model without an encoder."""
    if not info.present:
        return info.reason
    lacking = info.without_nvenc()
    if len(lacking) == len(info.gpus):
        return (f"the GPU ({info.describe()}) has no NVENC video encoder ({', '.join(NO_NVENC)} have NVDEC decoders "
                "but no encoder)")
    return None
