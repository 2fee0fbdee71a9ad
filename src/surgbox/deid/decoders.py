"""Which decoder de-identifies an input, and why: PyAV in software, PyAV on NVDEC, or GStreamer.

``decoder`` (``surgbox deid --decoder``, ``DeidOptions.decoder``) is one of :data:`DECODERS`:

* ``auto`` (default): GStreamer's ``jetson`` profile on an NVIDIA Jetson (its hardware decoder
  has no FFmpeg path), else PyAV on NVDEC when an NVIDIA GPU is present, else PyAV in software.
* ``pyav``: PyAV (FFmpeg), on NVDEC (``hwaccel`` ``cuda``) when an NVIDIA GPU is present, else
  in software; ``pyav:software`` / ``pyav:nvdec`` force one (``pyav:nvdec`` still falls back
  to software, with the reason, when NVDEC cannot start on this input).
* ``gstreamer``: GStreamer, the first profile of ``jetson``, ``nvidia``, ``cpu`` whose decoder
  elements are here; ``gstreamer:cpu`` / ``gstreamer:jetson`` / ``gstreamer:nvidia`` force one
  (an error naming the missing elements when it cannot run). MP4/MOV files given by path only.

:func:`choose` decides from what the machine has (:mod:`surgbox.nvidia`, the GStreamer
profiles) and returns a :class:`DecoderChoice` whose ``reason`` is the report line;
:func:`open_container` opens the input with PyAV, on NVDEC when chosen, and falls back to
software (saying why) when the hardware decoder does not start. GStreamer decoding is a plugin
of kind ``decoder`` named ``gstreamer`` (:data:`GST_PLUGIN`; surgbox's default plugins register
``surgbox_ext.gst.decoder.GstDecoder``), built with the profile and asked ``check()`` first, so
a vendor's registration of the same name replaces it.

    >>> choose("pyav:software", path="in.mp4").label
    'pyav software'
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from .. import nvidia
from ..errors import ConfigError, DeidError
from ..plugins import get_plugins

DECODERS = ("auto", "pyav", "pyav:software", "pyav:nvdec", "gstreamer", "gstreamer:cpu", "gstreamer:jetson",
            "gstreamer:nvidia")
GST_ORDER = ("jetson", "nvidia", "cpu")  # "gstreamer": the first profile available here
NVDEC_FORMATS = ("nv12", "p010le", "p016le", "yuv444p16le", "cuda")  # what frames downloaded from NVDEC look like
JETSON_MARKER = "/etc/nv_tegra_release"  # present on every JetPack (L4T) system
GST_PLUGIN = "gstreamer"  # the decoder plugin (kind "decoder") behind --decoder gstreamer[:PROFILE]


def check_decoder(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: ``value`` is one of :data:`DECODERS`."""
    if value not in DECODERS:
        raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}; got {value!r}")


@attrs.frozen
class DecoderChoice:
    """``backend`` ``pyav`` or ``gstreamer``; ``mode`` ``software``/``nvdec`` (PyAV) or the
    GStreamer profile; ``reason``: why, in words (the report line)."""

    backend: str
    mode: str
    reason: str

    @property
    def label(self) -> str:
        return f"{self.backend} {self.mode}"

    def uses_nvdec(self) -> bool:
        """PyAV decoding on NVDEC."""
        return self.backend == "pyav" and self.mode == "nvdec"

    def line(self) -> str:
        """``decoder: pyav software (no NVIDIA driver: ...)`` -- what the CLI prints."""
        return f"decoder: {self.label} ({self.reason})"

    def to_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "mode": self.mode, "label": self.label, "reason": self.reason}

    def fallback(self, why: str) -> DecoderChoice:
        """The software decoder, after NVDEC failed with ``why``."""
        return DecoderChoice("pyav", "software", f"{why}; decoded in software")


def gst_check(profile: str) -> str | None:
    """``None`` when GStreamer's ``profile`` can decode here, else why not (elements, packages,
    or no ``gstreamer`` decoder plugin installed)."""
    return get_plugins().create_checked("decoder", GST_PLUGIN, profile=profile)[1]


def nvdec_absence(gpu: nvidia.GpuInfo) -> str | None:
    """Why PyAV cannot decode on NVDEC here (``None``: it can try)."""
    if not gpu.present:
        return gpu.reason or "no NVIDIA GPU"
    import av.codec.hwaccel

    if "cuda" not in av.codec.hwaccel.hwdevices_available():
        return "this PyAV's FFmpeg has no CUDA hwaccel; install a PyAV/FFmpeg built with NVDEC (ffnvcodec)"
    return None


def choose(spec: str, *, path: str | None, gpu: nvidia.GpuInfo | None = None, jetson: bool | None = None) -> DecoderChoice:
    """The decoder ``spec`` (one of :data:`DECODERS`) picks here for an input at ``path``
    (``None``: a file object, which only PyAV reads). ``gpu`` / ``jetson``: what the machine has
    (default: probed). Raises :class:`ConfigError` when a forced GStreamer decoder cannot run."""
    if spec not in DECODERS:
        check_decoder(None, None, spec)
    backend, _, mode = spec.partition(":")
    if spec == "pyav:software":
        return DecoderChoice("pyav", "software", "asked for with --decoder pyav:software")
    if backend == "gstreamer":
        return _gstreamer(mode or None, path)
    if jetson is None:
        jetson = os.path.exists(JETSON_MARKER)
    if spec == "auto" and jetson and path is not None and gst_check("jetson") is None:
        return DecoderChoice("gstreamer", "jetson", "an NVIDIA Jetson: nvv4l2decoder on its hardware decoder")
    gpu = nvidia.probe() if gpu is None else gpu
    why = nvdec_absence(gpu)
    if why is None:
        return DecoderChoice("pyav", "nvdec", f"NVDEC on {gpu.describe()}")
    if spec == "pyav:nvdec":
        return DecoderChoice("pyav", "software", f"NVDEC asked for but unavailable: {why}; decoded in software")
    return DecoderChoice("pyav", "software", why)


def _gstreamer(profile: str | None, path: str | None) -> DecoderChoice:
    if path is None:
        raise ConfigError("the GStreamer decoder reads files by path; this input is a file object: use --decoder pyav")
    if profile is not None:
        why = gst_check(profile)
        if why is not None:
            raise ConfigError(f"--decoder gstreamer:{profile} cannot run here: {why}; use --decoder pyav or another profile")
        return DecoderChoice("gstreamer", profile, f"asked for with --decoder gstreamer:{profile}")
    reasons = {}
    for p in GST_ORDER:
        reasons[p] = gst_check(p)
        if reasons[p] is None:
            skipped = [q for q in GST_ORDER[: GST_ORDER.index(p)]]
            return DecoderChoice("gstreamer", p, "asked for with --decoder gstreamer" +
                                 (f"; no {'/'.join(skipped)} decoder here" if skipped else ""))
    raise ConfigError(f"--decoder gstreamer cannot run here: {reasons['cpu']}; use --decoder pyav")


def open_container(src: Any, choice: DecoderChoice) -> tuple[Any, DecoderChoice]:
    """``av.open(src)`` for reading, on NVDEC when ``choice`` says so; when the hardware decoder
    does not start, the input is opened again in software and the choice says why. Errors of the
    software open propagate (the caller names them)."""
    import av

    if choice.uses_nvdec():
        from av.codec.hwaccel import HWAccel

        try:
            return av.open(src, mode="r", hwaccel=HWAccel(device_type="cuda", allow_software_fallback=True)), choice
        except (av.FFmpegError, OSError, ValueError) as exc:
            choice = choice.fallback(f"NVDEC did not start ({type(exc).__name__}: {exc})")
            if hasattr(src, "seek"):
                src.seek(0)
    return av.open(src, mode="r"), choice


def confirm(choice: DecoderChoice, frame: Any) -> DecoderChoice:
    """After the first picture: a PyAV NVDEC choice whose picture came out of the software
    decoder (FFmpeg falls back for streams NVDEC cannot decode) says so."""
    if choice.uses_nvdec() and frame.format.name not in NVDEC_FORMATS:
        return choice.fallback(f"NVDEC declined this stream (its first picture came out as {frame.format.name})")
    return choice


def gst_reader(path: str, time_base: Any, profile: str, name: str) -> Any:
    """An opened reader of ``path`` from the ``gstreamer`` decoder plugin's ``profile``
    (:class:`~surgbox.errors.DeidError` naming what is missing when it cannot run)."""
    decoder, why = get_plugins().create_checked("decoder", GST_PLUGIN, profile=profile)
    if decoder is None or why is not None:
        raise DeidError(f"input {name!r} (GStreamer decoder, profile {profile!r}) cannot run: {why}; use --decoder pyav")
    return decoder.open(path, time_base, name)
