"""Hook specifications of the ``surgbox`` plugin API (pluggy project name ``"surgbox"``).

A plugin is a module or object with functions decorated by :data:`hookimpl`, made known to
surgbox through an entry point in the group ``surgbox``::

    [project.entry-points.surgbox]
    acme = "acme_surgbox.plugin"

Registration hooks (one per interface kind) are called with a ``register`` callback::

    register(name, factory, *, description="", check=None, priority=0)

* ``factory``: a class or callable; ``factory(**options)`` builds a component. Registering
  records it and nothing else: never open hardware or import torch at registration.
* ``check``: optional zero-argument callable returning ``None`` when the plugin can run here,
  or a string saying why not and what to install (called lazily, by ``surgbox plugins`` or
  just before the plugin is built).
* ``priority``: when two packages register the same kind and name, the higher priority wins
  (surgbox's own defaults use -100, so any vendor plugin of the same name replaces them).

Lifecycle hooks are notifications for integrators; they run in the pipeline's thread, so keep
them quick (hand long work such as uploads to a thread of your own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from .types import DeidResult, RecordingInfo, SegmentInfo

PROJECT = "surgbox"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_sources(register: Register) -> None:
    """Register :class:`~surgbox.interfaces.Source` factories (``testsrc``, ``v4l2``, ``bis`` ...)."""


@hookspec
def register_compositors(register: Register) -> None:
    """Register :class:`~surgbox.interfaces.Compositor` factories."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register :class:`~surgbox.interfaces.Encoder` factories (``libx264``, ``h264_nvenc`` ...)."""


@hookspec
def register_detectors(register: Register) -> None:
    """Register :class:`~surgbox.interfaces.Detector` factories (``retinaface`` ...)."""


@hookspec
def register_stores(register: Register) -> None:
    """Register :class:`~surgbox.interfaces.Store` factories (``local``, ``mirror`` ...)."""


@hookspec
def register_decoders(register: Register) -> None:
    """Register video decoders for de-identification input (``gstreamer`` ...; PyAV is built in).
    A factory takes the decoder's options (``profile``) and returns an object with
    ``check() -> str | None`` (``None``: it can decode here, else why not) and
    ``open(path, time_base, name) -> reader``: the reader yields the file's first video track as
    ``yuv420p`` ``av.VideoFrame`` s from ``frames()`` with the pts PyAV gives (in ``time_base``),
    counts them in ``frames_out`` and is released by ``close()``."""


@hookspec
def register_displays(register: Register) -> None:
    """Register local displays for the recorder's monitor (``gstreamer`` ...). A factory takes
    the display's options (``profile``, ``sink``) and returns an object with ``check() -> str |
    None`` and ``open(width, height, fps) -> sink``; the sink's ``show(frame, time_ns) -> bool``
    takes a ``yuv420p`` ``av.VideoFrame`` (``False``: dropped, the sink is behind), ``rendered``
    counts the pictures that reached the screen, ``description`` names the pipeline, ``close()``
    stops it."""


@hookspec
def recording_started(recording: RecordingInfo) -> None:
    """A recording has opened its output and is about to write its first frame."""


@hookspec
def segment_finalized(recording: RecordingInfo, segment: SegmentInfo) -> None:
    """A segment of ``recording`` is complete, durable and playable on its own."""


@hookspec
def recording_stopped(recording: RecordingInfo, stats: Mapping[str, Any]) -> None:
    """A recording has been finalized; ``stats`` holds frame counts, drops and durations."""


@hookspec
def deid_finished(result: DeidResult) -> None:
    """A de-identification run wrote its output and report."""


REGISTRATION_HOOKS: Mapping[str, str] = {
    "source": "register_sources",
    "compositor": "register_compositors",
    "encoder": "register_encoders",
    "detector": "register_detectors",
    "store": "register_stores",
    "decoder": "register_decoders",
    "display": "register_displays",
}
LIFECYCLE_HOOKS = ("recording_started", "segment_finalized", "recording_stopped", "deid_finished")
