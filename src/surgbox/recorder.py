"""Compatibility name of :mod:`surgbox.recording` (the recorder was one module before it became a
package): ``from surgbox.recorder import Recorder, StoreSink`` keeps working. New code imports
:mod:`surgbox.recording`; the catalog's sink is :class:`surgbox.catalog.recording_sink.EventSink`.
"""

from .recording import (
    RECORDING_SEGMENT_SIZE,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    SMALL_SEGMENT_SIZE,
    FileSink,
    RecordedFile,
    Recorder,
    RecorderOptions,
    RecordingSink,
    StoreSink,
    sidecar_path,
    snapshot_dir,
)

__all__ = [
    "RECORDING_SEGMENT_SIZE", "SIDECAR_FORMAT", "SIDECAR_VERSION", "SMALL_SEGMENT_SIZE", "FileSink", "RecordedFile", "Recorder",
    "RecorderOptions", "RecordingSink", "StoreSink", "sidecar_path", "snapshot_dir",
]
