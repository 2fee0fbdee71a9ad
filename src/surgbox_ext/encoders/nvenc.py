"""``h264_nvenc``: H.264 on an NVIDIA GPU's NVENC through PyAV, and the probe that decides
whether it can run here.

:func:`nvenc_check` (the plugin's ``check``, shown by ``surgbox plugins``) opens a tiny
``h264_nvenc`` encoder and encodes one black picture: only that proves NVENC works (a driver
and a GPU are not enough: A100, A30, H100 and H200 have no encoder). When it fails the reason
says why in words -- FFmpeg built without NVENC, no NVIDIA driver, a GPU model without NVENC
(:mod:`surgbox.nvidia`) -- followed by FFmpeg's own error. The answer is cached per process.
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import attrs

from surgbox import nvidia

from .pyav import PyAVEncoder

CODEC = "h264_nvenc"
PROBE_SIZE = (256, 144)  # width, height: above every NVENC generation's minimum picture size
FALLBACK = "use encoder 'libx264' (CPU) instead"


@attrs.define(eq=False)
class NvencEncoder(PyAVEncoder):
    """``h264_nvenc``: H.264 on an NVIDIA GPU's NVENC + AAC, same container and contract.

    ``preset`` NVENC preset (``p1`` fastest ... ``p7`` best); ``cq`` constant quality
    (ignored when ``bitrate`` is set); ``profile`` H.264 profile; ``gpu`` device index.
    """

    codec: ClassVar[str] = CODEC

    preset: str = attrs.field(default="p4", kw_only=True)
    cq: int = attrs.field(default=23, kw_only=True)
    profile: str = attrs.field(default="high", kw_only=True)
    gpu: int = attrs.field(default=0, kw_only=True)

    def _video_options(self) -> dict[str, str]:
        opts = {"preset": self.preset, "profile": self.profile, "gpu": str(self.gpu), "no-scenecut": "1"}
        if self.bitrate:
            opts["rc"] = "cbr"
        else:
            opts["rc"] = "vbr"
            opts["cq"] = str(self.cq)
        opts.update(super()._video_options())
        return opts


def open_probe(codec: str = CODEC) -> str | None:
    """Open ``codec`` for a tiny picture and encode one frame; ``None`` when that worked, else
    FFmpeg's error as ``"Type: message"`` (no interpretation: see :func:`nvenc_check`)."""
    import av

    if codec not in av.codecs_available:
        return f"this FFmpeg build has no {codec} encoder"
    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height = PROBE_SIZE
        ctx.pix_fmt, ctx.time_base = "yuv420p", Fraction(1, 30)
        ctx.open()
        frame = av.VideoFrame(*PROBE_SIZE, "yuv420p")
        frame.pts = 0
        ctx.encode(frame)
        ctx.encode(None)
    except Exception as exc:  # av.FFmpegError subclasses OSError/ValueError variously
        return f"{type(exc).__name__}: {exc}"
    return None


def explain(failure: str, info: nvidia.GpuInfo) -> str:
    """The unavailability line for an NVENC open that failed with ``failure`` on a machine with ``info``."""
    if failure.startswith("this FFmpeg build"):
        return f"{failure}; install a PyAV/FFmpeg built with NVENC, or {FALLBACK}"
    why = nvidia.nvenc_absence(info)
    if why is None:
        why = f"NVENC did not open on {info.describe()} (out of encoder sessions, or a driver too old for this FFmpeg)"
    return f"{why}; {FALLBACK} (FFmpeg: {failure})"


_reason: list[str | None] = []


def nvenc_check() -> str | None:
    """``None`` when an ``h264_nvenc`` encoder opens and encodes here, else why not (cached)."""
    if not _reason:
        failure = open_probe()
        _reason.append(None if failure is None else explain(failure, nvidia.probe()))
    return _reason[0]
