"""The five plugin interfaces: Source, Compositor, Encoder, Detector, Store.

Each is an abstract base class with a documented lifecycle. Plugins subclass them (or just
provide the same methods) and are registered by name through :mod:`surgbox.hookspecs`.
Constructors only store options: no I/O, no hardware, no heavy imports. Work starts in
``open()`` (or ``__enter__``) and ends in ``close()``, which must be safe to call twice.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import IO, Any, ClassVar

import numpy as np

from .clock import Clock
from .types import AudioChunk, Detections, Layout, Reading, Trigger, VideoFrame

Item = VideoFrame | AudioChunk | Reading | Trigger


class _Lifecycle(abc.ABC):
    """``open()`` / ``close()`` plus the context-manager protocol."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources. Called once before use."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent; called even after errors."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Source(_Lifecycle):
    """A live input: video, audio, data readings or triggers.

    Lifecycle: ``start(clock)`` opens the device and starts a capture thread; ``get()`` returns
    captured items in order; ``stop()`` ends the thread and releases the device.

    Contract:

    * ``media`` is one of ``"video"``, ``"audio"``, ``"data"``, ``"trigger"``; items are
      :class:`VideoFrame`, :class:`AudioChunk`, :class:`Reading` or :class:`Trigger` accordingly.
    * Every item carries ``capture_ns`` read from ``clock`` at capture time.
    * Capture never blocks on the consumer: items go to a bounded queue and, when it is full,
      the oldest is dropped (and counted in ``stats()['dropped']``).
    * ``start`` raises :class:`~surgbox.errors.SourceError` naming the source and the fix when the
      device cannot open. After a start, failures are reported by ``error`` (and by no items),
      never by raising in the consumer's thread.
    * Thread safety: ``get``/``stats`` are called from one consumer thread; ``stop`` from any.
    """

    media: ClassVar[str] = "video"
    name: str

    @abc.abstractmethod
    def start(self, clock: Clock) -> None:
        """Open the device and begin capturing on ``clock``."""

    @abc.abstractmethod
    def get(self, timeout: float | None = 0.0) -> Item | None:
        """Next captured item, waiting at most ``timeout`` seconds (``None``: forever); ``None`` if none."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop capturing and release the device. Idempotent."""

    def stats(self) -> Mapping[str, Any]:
        """Counters: at least ``captured`` and ``dropped`` items."""
        return {}

    @property
    def error(self) -> BaseException | None:
        """The error that stopped capture, if any."""
        return None

    def open(self) -> None:  # sources start on a clock; open() alone is not meaningful
        raise TypeError(f"{type(self).__name__}: use start(clock) to open a source")

    def close(self) -> None:
        self.stop()


class Compositor(_Lifecycle):
    """Builds the output picture from the newest frame of each source.

    Lifecycle: ``configure(layout)`` once, then ``compose(...)`` per output tick.

    Contract: ``compose`` gets, per slot source name, the frame to show (or ``None`` when the
    source is stale, which must render a clear ``NO SIGNAL <name>`` slate), the latest data
    readings by source, and the event fields for the panel. It returns a ``layout.width x
    layout.height`` ``av.VideoFrame`` in ``yuv420p``. Scaling preserves aspect (swscale). It must
    not keep references to input frames after returning. Called from one thread.
    """

    @abc.abstractmethod
    def configure(self, layout: Layout) -> None:
        """Prepare for ``layout`` (fonts, scalers, background)."""

    @abc.abstractmethod
    def compose(
        self,
        frames: Mapping[str, VideoFrame | None],
        readings: Mapping[str, Reading],
        event: Mapping[str, Any],
        time_ns: int,
    ) -> Any:
        """One output picture (``av.VideoFrame``, yuv420p) for output time ``time_ns``."""


class Encoder(_Lifecycle):
    """Encodes and muxes video (and optional audio) into a container.

    Lifecycle: ``open_output(target, ...)``, then ``write_video`` / ``write_audio`` /
    ``copy_audio`` in any interleaving, then ``close()``, which flushes the codecs and finalizes
    the container (``close()`` after an error still leaves what was written playable).

    Contract:

    * Timestamps are nanoseconds on the output time line (0 = first frame), derived from the
      master clock or copied from an input, never from counting frames. The encoder converts
      them to ``time_base`` (``pts = round(time_ns * time_base / 1e9)``), so a caller that passes
      an input stream's time base gets its timestamps back exactly.
    * ``target`` is a path or a writable binary file object.
    * ``audio_template``: an input ``av`` audio stream whose packets are passed unchanged through
      ``copy_audio(packet)`` (stream copy, used by de-identification); otherwise ``audio_rate``
      opens an AAC (or codec-specific) audio encoder fed by ``write_audio``.
    * A crash at any moment leaves every completed segment/fragment playable.
    * Errors raise :class:`~surgbox.errors.EncoderError` naming the output and the cause.
    """

    @abc.abstractmethod
    def open_output(
        self,
        target: str | IO[bytes],
        *,
        width: int,
        height: int,
        fps: float | Fraction,
        time_base: Fraction | None = None,
        audio_rate: int | None = None,
        audio_channels: int = 1,
        audio_template: Any = None,
        metadata: Mapping[str, str] | None = None,
        rotation: float = 0.0,
    ) -> None:
        """Create the output. ``rotation``: display rotation in degrees counter-clockwise,
        stored in the container (display matrix) so players turn the picture."""

    @abc.abstractmethod
    def write_video(self, frame: Any, time_ns: int) -> None:
        """Encode one picture (``av.VideoFrame`` or ``HxWx3 uint8`` RGB array) shown at ``time_ns``."""

    def write_audio(self, samples: np.ndarray, time_ns: int) -> None:
        """Encode float32 planar audio ``(channels, n)`` whose first sample plays at ``time_ns``."""
        raise NotImplementedError(f"{type(self).__name__} does not encode audio")

    def copy_audio(self, packet: Any) -> None:
        """Mux an ``av.Packet`` from ``audio_template``'s stream unchanged."""
        raise NotImplementedError(f"{type(self).__name__} does not copy audio")

    def open(self) -> None:
        raise TypeError(f"{type(self).__name__}: use open_output(target, ...) to open an encoder")


class Detector(_Lifecycle):
    """Finds objects (faces) in images, in batches.

    Lifecycle: construct with options (threshold, device...), ``open()`` loads the model (heavy
    imports such as torch happen here, not at registration), ``detect`` many times, ``close()``.

    Contract: ``detect(images)`` takes a sequence of ``HxWx3 uint8 RGB`` arrays (sizes may
    differ) and returns one :class:`Detections` per image, boxes ``[x1, y1, x2, y2]`` in that
    image's pixels, sorted by descending score. ``name`` and ``version`` identify the model
    for audit records. Not required to be thread-safe.
    """

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "0"

    @abc.abstractmethod
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for each image, in order."""

    def detect_frames(self, images: Sequence[np.ndarray], frame_indices: Sequence[int]) -> list[Detections]:
        """Like :meth:`detect`, with the source frame number of each image: ``frame_indices[i]``
        is the frame ``images[i]`` was taken from (several regions of one frame share it; the
        numbers never decrease from one call to the next within a run). A detector that works
        differently on different frames (the ``ensemble`` runs each member on every Nth frame)
        overrides it; the default ignores the numbers and calls :meth:`detect`."""
        if len(frame_indices) != len(images):
            raise ValueError(f"detect_frames got {len(images)} images but {len(frame_indices)} frame indices")
        return self.detect(images)

    def settings(self) -> Mapping[str, Any]:
        """The options that change results (threshold, input size...), for the audit record."""
        return {}


class Store(_Lifecycle):
    """Durable object storage for recordings, snapshots, sidecars and reports.

    Keys are relative POSIX paths (``"2026/11/ev-123/segment-0001.mp4"``); no ``..``.

    Lifecycle: ``open()`` checks the roots; ``writer(key)`` returns a binary file object whose
    ``close()`` commits the object atomically (an object is listed only once fully written and
    synced; an exception inside ``with store.writer(k) as f`` leaves nothing behind);
    ``reader(key)`` returns a seekable binary file object of the plaintext.

    Contract: writes are durable (fsync) before commit; integrity is verified on read; failures
    raise :class:`~surgbox.errors.StoreError` naming the key, the root and the fix.
    """

    @abc.abstractmethod
    def writer(self, key: str, metadata: Mapping[str, str] | None = None) -> IO[bytes]:
        """A new object's writable stream; committed on ``close()``."""

    @abc.abstractmethod
    def reader(self, key: str) -> IO[bytes]:
        """A seekable readable stream of a committed object's plaintext."""

    @abc.abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Committed keys under ``prefix``, sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object from every copy."""

    def status(self) -> Mapping[str, Any]:
        """Health: at least ``{"healthy": bool, "roots": [...]}``."""
        return {"healthy": True, "roots": []}


INTERFACES: Mapping[str, type] = {
    "source": Source,
    "compositor": Compositor,
    "encoder": Encoder,
    "detector": Detector,
    "store": Store,
}
