"""Availability checks of the GStreamer plugins (``check=`` in :mod:`surgbox_ext.plugin`).

Each returns ``None`` when the plugin can run here, else one line: what is missing (PyGObject,
an element and the Debian or JetPack package that provides it, a device). Called lazily by
``surgbox plugins`` and before a plugin is built; registering imports nothing of GStreamer.
"""

from __future__ import annotations

import glob

from . import runtime
from .profiles import check


def gstreamer() -> str | None:
    """The ``gstreamer`` decoder and display: GStreamer and PyGObject load (each profile's
    elements are checked by the plugin object's own ``check()``)."""
    return runtime.reason()


def encoder_cpu() -> str | None:
    """``gst_x264``: the ``cpu`` encoder elements (``x264enc``, ``h264parse``, appsrc/appsink)."""
    return check("cpu", "encoder")


def encoder_jetson() -> str | None:
    """``gst_nvv4l2h264``: ``nvvidconv`` + ``nvv4l2h264enc`` (JetPack)."""
    return check("jetson", "encoder")


def encoder_nvidia() -> str | None:
    """``gst_nvh264``: ``nvh264enc`` (nvcodec, with an NVIDIA GPU's NVENC)."""
    return check("nvidia", "encoder")


def source_testsrc() -> str | None:
    return check("cpu", "source", ("videotestsrc",))


def source_v4l2() -> str | None:
    """``gst_v4l2``: ``v4l2src`` and at least one ``/dev/video*`` node."""
    why = check("cpu", "source", ("v4l2src",))
    if why is None and not glob.glob("/dev/video*"):
        why = "no video device (/dev/video*) on this machine: connect a capture card or USB camera (in a container, pass --device /dev/videoN)"
    return why


def source_argus() -> str | None:
    """``gst_argus``: ``nvarguscamerasrc`` + ``nvvidconv`` (Jetson)."""
    return check("jetson", "source", ("nvarguscamerasrc",))


def source_uri() -> str | None:
    return check("cpu", "source", ("uridecodebin",))


def source_pipeline() -> str | None:
    return check("cpu", "source")
