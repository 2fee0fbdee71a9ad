"""Loading GStreamer through PyGObject, once, on first use -- never at import or registration.

:func:`load` imports ``gi``, requires ``Gst``/``GstApp``/``GstVideo`` 1.0 and calls
``Gst.init``; it raises :class:`GstUnavailable` with the fix when PyGObject or GStreamer's
introspection data is missing. :func:`reason` is the same as a string (``None`` when
GStreamer works), for plugin checks. :func:`has_element` / :func:`has_plugin` probe the
registry (``Gst.ElementFactory.find``), cached per process.
"""

from __future__ import annotations

import threading
from typing import Any

from surgbox.errors import SurgboxError

INSTALL_HINT = ("run `bash scripts/install.sh` as root (it installs Debian's GStreamer packages and builds PyGObject "
                "in the venv), or: apt-get install libgirepository1.0-dev libcairo2-dev gir1.2-gstreamer-1.0 "
                "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav "
                "&& pip install 'surgbox[gstreamer]'")


class GstUnavailable(SurgboxError):
    """GStreamer cannot be used in this Python (no PyGObject, no GStreamer typelibs)."""


_lock = threading.Lock()
_state: dict[str, Any] = {}
_elements: dict[str, bool] = {}
_plugins: dict[str, bool] = {}


def _keep_the_c_unwinder_first() -> None:
    """Put GCC's unwinder (``libgcc_s``) in the process's global symbol scope before GStreamer.

    ``libgstreamer`` links ``libunwind``, and PyGObject opens it globally: libraries loaded after
    it (onnxruntime, say) would then bind ``_Unwind_RaiseException`` to libunwind's, and the next
    C++ exception in them aborts the process (torch's ONNX export did, in the test suite).
    Loading ``libgcc_s`` globally first keeps every later library on GCC's unwinder."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
        except OSError:  # a libc without libgcc_s (musl): nothing to protect
            pass


def _load() -> Any:
    _keep_the_c_unwinder_first()
    try:
        import gi
    except ImportError:
        raise GstUnavailable(f"GStreamer plugins need PyGObject (the Python package 'gi'), which is not installed: {INSTALL_HINT}") from None
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        gi.require_version("GstVideo", "1.0")
        from gi.repository import Gst, GstApp, GstVideo  # noqa: F401 - GstApp registers the appsrc/appsink methods
    except (ValueError, ImportError) as exc:
        raise GstUnavailable(f"PyGObject is installed but GStreamer's introspection data is not ({exc}): {INSTALL_HINT}") from None
    ok, _ = Gst.init_check(None)
    if not ok:
        raise GstUnavailable("GStreamer failed to initialise (Gst.init_check); run `gst-inspect-1.0` to see why")
    return Gst


def load() -> Any:
    """The initialised ``Gst`` module; raises :class:`GstUnavailable` naming the fix."""
    with _lock:
        if "gst" not in _state:
            try:
                _state["gst"] = _load()
            except GstUnavailable as exc:
                _state["error"] = exc
                _state["gst"] = None
        if _state["gst"] is None:
            raise _state["error"]
        return _state["gst"]


def video() -> Any:
    """``GstVideo`` (after :func:`load`)."""
    load()
    from gi.repository import GstVideo

    return GstVideo


def reason() -> str | None:
    """``None`` when GStreamer loads here, else why not and how to install it."""
    try:
        load()
    except GstUnavailable as exc:
        return str(exc)
    return None


def has_element(name: str) -> bool:
    """True when an element factory ``name`` is registered (``Gst.ElementFactory.find``)."""
    if name not in _elements:
        _elements[name] = load().ElementFactory.find(name) is not None
    return _elements[name]


def has_plugin(name: str) -> bool:
    """True when the GStreamer plugin (shared library) ``name`` is installed, whatever it registered."""
    if name not in _plugins:
        _plugins[name] = load().Registry.get().find_plugin(name) is not None
    return _plugins[name]


def version() -> str:
    """``"GStreamer 1.22.0"``."""
    return str(load().version_string())


def error_text(message: Any) -> str:
    """One line from a bus ``ERROR``/``WARNING`` message: the element, the error, the debug detail."""
    Gst = load()
    if message.type == Gst.MessageType.ERROR:
        err, debug = message.parse_error()
    else:
        err, debug = message.parse_warning()
    src = message.src.get_name() if message.src is not None else "pipeline"
    detail = (debug or "").strip().splitlines()[-1] if debug else ""
    return f"{src}: {err.message}" + (f" ({detail})" if detail and detail not in err.message else "")


def poll_bus(pipeline: Any, timeout_ns: int = 0) -> Any:
    """The next ``ERROR`` or ``EOS`` message on ``pipeline``'s bus within ``timeout_ns``, else ``None``."""
    Gst = load()
    bus = pipeline.get_bus()
    return bus.timed_pop_filtered(timeout_ns, Gst.MessageType.ERROR | Gst.MessageType.EOS)


def parse(description: str, what: str) -> Any:
    """``Gst.parse_launch(description)``; a syntax error or unknown element raises
    :class:`GstUnavailable` naming ``what`` and the description."""
    Gst = load()
    try:
        return Gst.parse_launch(description)
    except Exception as exc:  # GLib.Error: no element "x", syntax error
        msg = getattr(exc, "message", None) or str(exc)
        raise GstUnavailable(f"{what}: GStreamer cannot build the pipeline {description!r}: {msg}") from None


def stop(pipeline: Any) -> None:
    """Set ``pipeline`` to NULL (releases devices and threads); safe on ``None``."""
    if pipeline is not None:
        pipeline.set_state(load().State.NULL)
