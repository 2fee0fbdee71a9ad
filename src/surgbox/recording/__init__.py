"""Live recording: sources -> sync -> compositor -> encoder -> writer, on one master clock.

One job per module: :mod:`~surgbox.recording.recorder` (the :class:`Recorder` facade: start,
stop, snapshot, stats), :mod:`~surgbox.recording.options` (:class:`RecorderOptions`, frozen),
:mod:`~surgbox.recording.pipeline` (the real-time tick loop), :mod:`~surgbox.recording.writer`
(the writer thread: muxing, data track, syncs), :mod:`~surgbox.recording.snapshots` (PNG
snapshots), :mod:`~surgbox.recording.metadata` (sidecar and container tags),
:mod:`~surgbox.recording.preview` (:class:`PreviewTap`, the live preview's JPEGs),
:mod:`~surgbox.recording.sinks` (:class:`RecordingSink`, :class:`FileSink`) and
:mod:`~surgbox.recording.store_sink` (:class:`StoreSink`). The catalog's sink,
:class:`surgbox.catalog.recording_sink.EventSink`, lives with the catalog: this package never
imports the catalog.
"""

from .options import RecorderOptions
from .preview import PreviewFrame, PreviewTap
from .recorder import Recorder
from .sinks import SIDECAR_FORMAT, SIDECAR_VERSION, FileSink, RecordedFile, RecordingSink, sidecar_path, snapshot_dir
from .store_sink import RECORDING_SEGMENT_SIZE, SMALL_SEGMENT_SIZE, StoreSink

__all__ = [
    "RECORDING_SEGMENT_SIZE", "SIDECAR_FORMAT", "SIDECAR_VERSION", "SMALL_SEGMENT_SIZE", "FileSink", "RecordedFile", "Recorder",
    "PreviewFrame", "PreviewTap", "RecorderOptions", "RecordingSink", "StoreSink", "sidecar_path", "snapshot_dir",
]
