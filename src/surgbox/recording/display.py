"""The live display: the recording's composite on a monitor (the appliance's HDMI screen), through
GStreamer, as an extra output that never slows the recording.

    >>> display = DisplayOutput(profile="cpu")                  # autovideosink; kmssink: sink="kmssink"
    >>> rec = Recorder(sources, layout, "case.mp4", display=display)   # doctest: +SKIP

The recorder's pipeline thread calls :meth:`DisplayOutput.offer` once per output tick with the
composite it just made (the same picture the encoder gets). ``offer`` never blocks and never
copies: it puts a reference into a queue of ``queue_frames`` pictures and returns; when the queue
is full the **oldest waiting picture is dropped** (counted). The display's own thread converts
each picture into a ``Gst.Buffer`` and hands it to the sink, refusing (and counting) a picture
while the sink has not taken the previous one. So a slow or stuck monitor costs display frames,
never recorded ones: the encoder gets every tick whatever the display does. A display that fails
(no monitor, the pipeline errors) is logged and stops itself; the recording goes on.

Pipelines per profile (``surgbox_ext.gst.pipelines.display_pipeline``): ``cpu`` / ``nvidia``
``appsrc ! videoconvert ! autovideosink``; ``jetson`` ``appsrc ! nvvidconv !
video/x-raw(memory:NVMM) ! nveglglessink``; any ``sink`` launch fragment instead (``kmssink``
fills the monitor without a desktop; ``fakesink`` for tests). Configure it in the recording's
``[display]`` table or with ``surgbox record --display``. GStreamer is loaded on the display's
thread when the recording starts.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import attrs
import numpy as np

from ..errors import ConfigError
from ..plugins import get_plugins

log = logging.getLogger(__name__)

PROFILES = ("cpu", "jetson", "nvidia")
KEYS = ("enabled", "profile", "sink", "queue_frames", "max_fps", "plugin")


def _queue_frames(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
        raise ConfigError(f"display queue_frames must be an integer in [1, 8] (pictures waiting for the monitor), got {value!r}")


def _max_fps(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        raise ConfigError(f"display max_fps must be a number > 0 or unset (every picture), got {value!r}")


def _sink(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"display sink must be a GStreamer sink description such as \"kmssink\", got {value!r}")


def _profile(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in PROFILES:
        raise ConfigError(f"display profile must be one of {', '.join(PROFILES)}, got {value!r}")


def _plugin(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"display plugin must be the name of a display plugin such as \"gstreamer\", got {value!r}")


@attrs.define(eq=False)
class DisplayOutput:
    """Shows every composite it is offered on a display plugin's sink, dropping at the display.

    ``plugin``: the display plugin (kind ``display``, default ``gstreamer``: surgbox's
    ``surgbox_ext.gst.display.GstDisplay``; a vendor's of the same name replaces it), built
    with ``profile`` and ``sink``. ``profile``: the GStreamer profile (``cpu``, ``jetson``,
    ``nvidia``) whose display sink is used; ``sink``: a sink launch fragment instead (``"kmssink"``, ``"fakesink"``);
    ``queue_frames``: pictures waiting for the display (1-8; beyond, the oldest is dropped);
    ``max_fps``: show at most this many pictures per second (``None``: every tick). Thread-safe:
    ``offer`` from the pipeline thread, ``stats`` from any.
    """

    profile: str = attrs.field(default="cpu", validator=_profile)
    sink: str | None = attrs.field(default=None, validator=_sink)
    plugin: str = attrs.field(default="gstreamer", validator=_plugin)
    queue_frames: int = attrs.field(default=2, validator=_queue_frames)
    max_fps: float | None = attrs.field(default=None, validator=_max_fps)
    offered: int = attrs.field(default=0, init=False)
    shown: int = attrs.field(default=0, init=False)
    dropped: int = attrs.field(default=0, init=False)
    skipped: int = attrs.field(default=0, init=False)
    error: str | None = attrs.field(default=None, init=False)
    _size: tuple[int, int, Fraction] | None = attrs.field(default=None, init=False, alias="_size")
    _pending: collections.deque = attrs.field(factory=collections.deque, init=False, alias="_pending")
    _cond: threading.Condition = attrs.field(factory=threading.Condition, init=False, alias="_cond")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _closing: bool = attrs.field(default=False, init=False, alias="_closing")
    _last_ns: int | None = attrs.field(default=None, init=False, alias="_last_ns")
    _gst: Any = attrs.field(default=None, init=False, alias="_gst")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> DisplayOutput | None:
        """A display from a ``[display]`` table (``None`` when ``enabled = false``); unknown keys
        and bad values raise :class:`ConfigError` naming them."""
        unknown = sorted(set(m) - set(KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) display.{', display.'.join(unknown)}; [display] takes {', '.join(KEYS)}")
        enabled = m.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"display.enabled must be true or false, got {enabled!r}")
        if not enabled:
            return None
        return cls(**{k: v for k, v in m.items() if k != "enabled"})

    def check(self) -> None:
        """Raise :class:`ConfigError` when this display cannot run here (GStreamer or its sink
        element missing, with the package that provides it) -- before a recording starts."""
        why = self._backend()[1]
        if why is not None:
            raise ConfigError(f"{why}; install it, choose another sink ([display] sink = \"...\"), or record without a display")

    def _backend(self) -> tuple[Any, str | None]:
        """The display plugin built with this profile and sink, and why it cannot run (``None``: it can)."""
        return get_plugins().create_checked("display", self.plugin, profile=self.profile, sink=self.sink)

    # -- recorder side --------------------------------------------------------------------------
    def start(self, width: int, height: int, fps: Fraction) -> None:
        """Start the display's thread for ``width`` x ``height`` pictures at ``fps`` (the
        pipeline is built there, so a slow sink start never delays the recording)."""
        self._size = (int(width), int(height), Fraction(fps))
        self._thread = threading.Thread(target=self._run, name="surgbox-display", daemon=True)
        self._thread.start()

    def offer(self, picture: Any, readings: Any = None, out_ns: int = 0) -> None:
        """Queue ``picture`` (shown at ``out_ns``) for the display; never blocks. ``readings``
        is accepted for the recorder's tap interface and ignored."""
        self.offered += 1
        if self.max_fps is not None and self._last_ns is not None and out_ns - self._last_ns < 1e9 / self.max_fps:
            self.skipped += 1
            return
        self._last_ns = out_ns
        with self._cond:  # the counters the display thread also changes are changed under the lock
            if self.error is not None or self._closing:
                self.dropped += 1
                return
            if len(self._pending) >= self.queue_frames:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((picture, out_ns))
            self._cond.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Show what is queued, stop the pipeline and join the thread (at most ``timeout_s``)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("display: its thread did not stop within %.1f s (a stuck video sink); left behind", timeout_s)

    def stats(self) -> dict[str, Any]:
        """``offered`` (ticks), ``shown`` (handed to the sink), ``rendered`` (reached it),
        ``dropped`` (queue full, sink behind, or after an error), ``skipped`` (``max_fps``),
        ``error`` and the ``pipeline`` description."""
        gst = self._gst
        return {"offered": self.offered, "shown": self.shown, "rendered": None if gst is None else gst.rendered,
                "dropped": self.dropped, "skipped": self.skipped, "error": self.error,
                "pipeline": None if gst is None else gst.description}

    # -- display thread -------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._size is not None
        width, height, fps = self._size
        holding = False  # a picture taken from the queue and not yet counted
        try:
            backend, why = self._backend()
            if backend is None or why is not None:
                raise ConfigError(f"display plugin {self.plugin!r} cannot run: {why}")
            self._gst = backend.open(width, height, fps)
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        break
                    picture, out_ns = self._pending.popleft()
                    holding = True
                shown = self._gst.show(_yuv420p(picture, width, height), out_ns)
                with self._cond:
                    self.shown += shown
                    self.dropped += not shown
                    holding = False
        except Exception as exc:
            with self._cond:
                self.error = f"{type(exc).__name__}: {exc}"
                self.dropped += len(self._pending) + holding
                self._pending.clear()
            log.error("display stopped (the recording goes on): %s", self.error)
        finally:
            if self._gst is not None:
                try:
                    self._gst.close()
                except Exception as exc:  # the recording is unaffected
                    log.warning("display: closing the pipeline failed: %s", exc)


def _yuv420p(picture: Any, width: int, height: int) -> Any:
    """``picture`` (an ``av.VideoFrame`` or an ``HxWx3`` RGB array) as a ``yuv420p`` frame of the display's size."""
    import av

    if isinstance(picture, np.ndarray):
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
    if picture.format.name != "yuv420p" or picture.width != width or picture.height != height:
        picture = picture.reformat(width, height, format="yuv420p")
    return picture


def fanout(*taps: Any) -> Any:
    """One tap offering each composite to every one of ``taps`` (``None`` s left out): the
    recorder's live preview and its display share the pipeline's single tap."""
    live = [t for t in taps if t is not None]
    if len(live) <= 1:
        return live[0] if live else None
    return _Fanout(live)


@attrs.define(eq=False)
class _Fanout:
    taps: list[Any]

    def offer(self, picture: Any, readings: Any, out_ns: int) -> None:
        for tap in list(self.taps):
            try:
                tap.offer(picture, readings, out_ns)
            except Exception as exc:  # one failing tap is detached; the others and the recording go on
                self.taps.remove(tap)
                log.error("live tap %s detached: %s: %s", type(tap).__name__, type(exc).__name__, exc)
