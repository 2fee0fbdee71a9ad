"""surgbox: operating-room video recording and AI de-identification.

The public API is listed in ``__all__``. Importing ``surgbox`` is light: heavy parts (PyAV
pipelines, torch) load on first use of the names that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .clock import Clock
from .errors import (
    ConfigError,
    DeidError,
    DetectorError,
    EncoderError,
    IntegrityError,
    PluginConflictError,
    PluginNotFoundError,
    PluginUnavailableError,
    SourceError,
    StoreError,
    SurgboxError,
)
from .hookspecs import hookimpl
from .interfaces import Compositor, Detector, Encoder, Source, Store
from .plugins import Plugins, get_plugins
from .types import (
    AudioChunk,
    DeidResult,
    Detection,
    Detections,
    Layout,
    Reading,
    RecordingInfo,
    Rect,
    SegmentInfo,
    Slot,
    Trigger,
    VideoFrame,
)

# Names resolved on first access: "name": "module:attribute" (keeps `import surgbox` light).
_LAZY: dict[str, str] = {
    # recording
    "Recorder": "surgbox.recording:Recorder",
    "RecorderOptions": "surgbox.recording:RecorderOptions",
    "RecordConfig": "surgbox.config:RecordConfig",
    "layouts": "surgbox.layouts:__name__",
    # de-identification
    "deidentify": "surgbox.deid:deidentify",
    # data devices
    "DataTrackWriter": "surgbox.readings:DataTrackWriter",
    "read_data_track": "surgbox.readings:read_data_track",
    # storage
    "EncryptingWriter": "surgbox.crypto.streaming:EncryptingWriter",
    "DecryptingReader": "surgbox.crypto.streaming:DecryptingReader",
    "MasterKey": "surgbox.crypto.keys:MasterKey",
    "KeyRing": "surgbox.crypto.keys:KeyRing",
    # catalog
    "Catalog": "surgbox.catalog:Catalog",
    "Session": "surgbox.catalog:Session",
    "EventManager": "surgbox.catalog:EventManager",
    "Event": "surgbox.catalog:Event",
    "Home": "surgbox.home:Home",
    "AccessDenied": "surgbox.catalog:AccessDenied",
    "AuthenticationError": "surgbox.catalog:AuthenticationError",
    "CatalogError": "surgbox.catalog:CatalogError",
    "render_report": "surgbox.report:render_report",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'surgbox' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    mod = importlib.import_module(module)
    value = mod if attr == "__name__" else getattr(mod, attr)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
    "AudioChunk",
    "Clock",
    "Compositor",
    "ConfigError",
    "DeidError",
    "DeidResult",
    "Detection",
    "Detections",
    "Detector",
    "DetectorError",
    "Encoder",
    "EncoderError",
    "IntegrityError",
    "Layout",
    "PluginConflictError",
    "PluginNotFoundError",
    "PluginUnavailableError",
    "Plugins",
    "Reading",
    "RecordingInfo",
    "Rect",
    "SegmentInfo",
    "Slot",
    "Source",
    "SourceError",
    "Store",
    "StoreError",
    "SurgboxError",
    "Trigger",
    "VideoFrame",
    "get_plugins",
    "hookimpl",
    *_LAZY,
]
