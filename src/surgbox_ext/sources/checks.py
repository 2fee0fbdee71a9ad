"""Availability checks for the source plugins (``check=`` in :mod:`surgbox_ext.plugin`).

Each returns ``None`` when the plugin can run on this machine, else the reason and the fix.
They look at the system only (device nodes, ``/proc``, sockets, importable modules): they never
open a device, so ``surgbox plugins`` stays quick and side-effect free.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path


def pyav_has(fmt: str) -> bool:
    """True when PyAV's FFmpeg has the (de)muxer ``fmt`` (names like ``"video4linux2,v4l2"`` count for each alias)."""
    import av

    return any(fmt in name.split(",") for name in av.formats_available)


def v4l2() -> str | None:
    """``v4l2``: needs PyAV's v4l2 input and at least one ``/dev/video*`` node."""
    if not pyav_has("v4l2"):
        return "this PyAV build has no v4l2 input (install PyAV built against a system FFmpeg with libv4l2)"
    if not glob.glob("/dev/video*"):
        return "no video device (/dev/video*) on this machine: connect a capture card or USB camera (in a container, pass --device /dev/videoN)"
    return None


def alsa_capture_devices() -> list[str]:
    """ALSA capture PCM nodes (``/dev/snd/pcmC<card>D<device>c``)."""
    return sorted(glob.glob("/dev/snd/pcmC*D*c"))


def alsa() -> str | None:
    """``alsa``: needs PyAV's alsa input and an ALSA capture device."""
    if not pyav_has("alsa"):
        return "this PyAV build has no alsa input (install PyAV built against a system FFmpeg with ALSA)"
    cards = Path("/proc/asound/cards")
    if not cards.is_file() or "no soundcards" in cards.read_text(errors="replace"):
        return "no sound card on this machine (/proc/asound/cards lists none): connect a microphone or USB audio interface"
    if not alsa_capture_devices():
        return "no ALSA capture device (/dev/snd/pcmC*D*c): the sound card has no input, or the container lacks --device /dev/snd"
    return None


def pulse_server() -> str | None:
    """The PulseAudio (or PipeWire-pulse) server address, if one is reachable by convention."""
    if os.environ.get("PULSE_SERVER"):
        return os.environ["PULSE_SERVER"]
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    for sock in (Path(runtime) / "pulse" / "native", Path("/run/pulse/native"), Path("/var/run/pulse/native")):
        if sock.exists():
            return f"unix:{sock}"
    return None


def pulse() -> str | None:
    """``pulse``: needs PyAV's pulse input and a running PulseAudio/PipeWire server."""
    if not pyav_has("pulse"):
        return ("this PyAV build has no pulse input (the PyPI wheels leave it out): use the 'alsa' source "
                "(PulseAudio/PipeWire provide an ALSA 'pulse' device) or install PyAV built against a system "
                "FFmpeg with libpulse (pip install av --no-binary av)")
    if pulse_server() is None:
        return "no PulseAudio/PipeWire server socket found (start one, or set PULSE_SERVER)"
    return None


def evdev() -> str | None:
    """``footswitch_evdev``: needs the ``evdev`` package and an input event device."""
    if importlib.util.find_spec("evdev") is None:
        return "needs the Python package evdev: pip install evdev"
    if not glob.glob("/dev/input/event*"):
        return "no input event device (/dev/input/event*) on this machine: connect the foot switch (in a container, pass --device)"
    return None
