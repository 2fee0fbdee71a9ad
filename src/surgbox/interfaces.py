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
from typing import IO, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from .clock import Clock
from .errors import MissingCapabilityError
from .packets import Packet, StreamSpec
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
    source is stale, which must render a clear ``NO SIGNAL <name>`` slate; a source that has not
    delivered its first frame yet may show a calm ``CONNECTING <name>`` until its stale timeout,
    see :meth:`set_context`), the latest data
    readings by source, and the event fields for the panel. It returns a ``layout.width x
    layout.height`` ``av.VideoFrame`` in ``yuv420p``. Scaling preserves aspect (swscale). It must
    not keep references to input frames after returning. Called from one thread.
    """

    @abc.abstractmethod
    def configure(self, layout: Layout) -> None:
        """Prepare for ``layout`` (fonts, scalers, background)."""

    def set_context(self, **context: Any) -> None:  # noqa: B027 - optional hook
        """Optional: what the recorder knows about the recording, given once after ``configure``
        and before the first ``compose``. Keywords (more may be added: accept and ignore unknown
        ones): ``stale_timeout_s`` (float, s: a source silent this long is stale),
        ``failed_sources`` (names of optional sources that could not start), ``data_sources``
        (names of the data sources, in declaration order), ``data_timeout_s`` (float, s: readings
        older than this are no longer passed). The default ignores everything."""

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
    """Encodes pictures and audio into packets, in PyAV's shape; optionally writes them to a file.

    **Packet API** (what the recorder uses; every encoder implements it):
    ``open_codecs(width=, height=, fps=, time_base=None, audio_rate=None, audio_channels=1,
    label=None) -> streams``, then ``encode(frame, time_ns) -> packets`` and
    ``encode_audio(samples, time_ns) -> packets`` in any interleaving, then ``flush() ->
    packets`` once (what the codecs still hold), then ``close()``. Packets
    (:class:`~surgbox.packets.Packet`) and the stream descriptions
    (:class:`~surgbox.packets.StreamSpec`, ``streams``) are plain values: the recorder muxes
    them into its crash-safe file on a writer thread (:class:`surgbox.mux.Mp4Muxer`, which
    reports each finished fragment) and can hand the same packets to other consumers (a
    preview, an upload) without encoding twice (:class:`surgbox.packets.PacketTee`).

    **One-call path** (de-identification uses it): ``open_output(target, ...)``, then
    ``write_video`` / ``write_audio`` / ``copy_audio`` in any interleaving, then ``close()``,
    which flushes the codecs and finalizes the container (``close()`` after an error still
    leaves what was written playable). :class:`surgbox.mux.EncodedOutput` builds it from the
    packet API and a muxer in a few lines; the defaults do that.

    Contract:

    * Timestamps are nanoseconds on the output time line (0 = first frame), derived from the
      master clock or copied from an input, never from counting frames. The encoder converts
      them to ``time_base`` (seconds per unit): ``pts = round(time_ns / 1e9 / time_base)``, so
      a caller that passes an input stream's time base gets its timestamps back exactly.
    * ``target`` is a path or a writable binary file object.
    * ``audio_template``: an input ``av`` audio stream whose packets are passed unchanged through
      ``copy_audio(packet)`` (stream copy, used by de-identification); otherwise ``audio_rate``
      opens an AAC (or codec-specific) audio encoder fed by ``write_audio`` / ``encode_audio``.
    * ``rotation`` (one-call path): display rotation in degrees counter-clockwise, stored in the
      container (display matrix) so players turn the picture.
    * Keyframes come every GOP and start the fragments of the crash-safe file: a crash at any
      moment leaves every completed fragment playable.
    * Errors raise :class:`~surgbox.errors.EncoderError` naming the output (``label``) and the cause.
    """

    @property
    @abc.abstractmethod
    def streams(self) -> Sequence[StreamSpec]:
        """The open codecs' streams, video first (empty before :meth:`open_codecs`)."""

    @abc.abstractmethod
    def open_codecs(
        self,
        *,
        width: int,
        height: int,
        fps: float | Fraction,
        time_base: Fraction | None = None,
        audio_rate: int | None = None,
        audio_channels: int = 1,
        label: str | None = None,
    ) -> Sequence[StreamSpec]:
        """Open the codecs (fail here on a bad option or missing hardware); returns :attr:`streams`."""

    @abc.abstractmethod
    def encode(self, frame: Any, time_ns: int) -> list[Packet]:
        """Encode one picture (``av.VideoFrame`` or ``HxWx3 uint8`` RGB array) shown at ``time_ns``."""

    def encode_audio(self, samples: np.ndarray, time_ns: int) -> list[Packet]:
        """Encode float32 planar audio ``(channels, n)`` whose first sample plays at ``time_ns``."""
        raise NotImplementedError(f"{type(self).__name__} does not encode audio")

    @abc.abstractmethod
    def flush(self) -> list[Packet]:
        """The packets the codecs still hold, after the last frame."""

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
        """Create the output file (one-call path)."""
        raise NotImplementedError(f"{type(self).__name__} has no one-call output; use its packet API with surgbox.mux.EncodedOutput")

    def write_video(self, frame: Any, time_ns: int) -> None:
        """Encode and write one picture shown at ``time_ns`` (one-call path)."""
        raise NotImplementedError(f"{type(self).__name__} has no one-call output")

    def write_audio(self, samples: np.ndarray, time_ns: int) -> None:
        """Encode and write float32 planar audio ``(channels, n)`` starting at ``time_ns`` (one-call path)."""
        raise NotImplementedError(f"{type(self).__name__} does not encode audio")

    def copy_audio(self, packet: Any) -> None:
        """Mux an ``av.Packet`` from ``audio_template``'s stream unchanged (one-call path)."""
        raise NotImplementedError(f"{type(self).__name__} does not copy audio")

    def stats(self) -> Mapping[str, Any]:
        """Counters (``video_frames``, ``keyframes``, ``size_bytes`` of a one-call output ...)."""
        return {}

    def open(self) -> None:
        raise TypeError(f"{type(self).__name__}: use open_codecs(...) or open_output(target, ...) to open an encoder")


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

    Keys are relative POSIX paths of printable text (``"2026/11/ev-123/segment-0001.mp4"``); no
    ``.``/``..``/empty parts, no control characters; a store may refuse keys longer than it can
    hold (``local``/``mirror``: 1024 bytes, 200 per part) with :class:`~surgbox.errors.StoreError`.

    Lifecycle: the factory takes options only (no I/O; stores used by the catalog accept
    ``keyring=`` and ``init=``); ``open()`` checks the storage; ``writer(key)`` returns a binary file
    object whose ``close()`` commits the object atomically (an object is listed only once fully
    written and synced; an exception inside ``with store.writer(k) as f`` leaves nothing behind);
    ``reader(key)`` returns a seekable binary file object of the plaintext.

    Contract: writes are durable (fsync) before commit; an existing key is refused (delete it
    first), so is a second writer of a key being written; integrity is verified on read; failures
    raise :class:`~surgbox.errors.StoreError` naming the key, the root and the fix. Optional
    capabilities (crash recovery, object info, keys, segment size, scrub) are the protocols below;
    :func:`check_store` checks them when a store plugin is selected. ``surgbox.testing.store_conformance``
    tests all of it on any store.
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
        """Health: at least ``{"healthy": bool, "degraded": bool, "roots": [...]}``."""
        return {"healthy": True, "degraded": False, "roots": []}


# ---- Store capabilities: optional parts of the Store contract, declared as protocols ----------------


@runtime_checkable
class RecoverableStore(Protocol):
    """Crash recovery (``record --event``, ``events recover``, ``surgbox store recover``).

    ``partials(*, live=False)`` lists unfinished writes as mappings with at least ``"key"`` (``None``
    when unknown) and ``"bytes"``; ``live=True`` includes writes still in progress. A recorder
    numbers new objects after the committed keys *and* these. ``recover()`` commits what crashed
    writers left and returns one result per write with ``key``, ``action`` (``"recovered"``,
    ``"already-committed"``, ``"discarded"``, ``"no-key"``, ``"failed"``), ``plaintext_size``,
    ``segments``, ``complete`` and ``error``; it never drops data it did not commit elsewhere.
    """

    def partials(self, *, live: bool = False) -> list[Mapping[str, Any]]: ...

    def recover(self) -> list[Any]: ...


@runtime_checkable
class DescribedStore(Protocol):
    """Object info: ``exists(key) -> bool`` and ``info(key)``, a record with ``plaintext_size``
    (bytes), ``sha256`` (hex), ``metadata`` (the writer's mapping), ``segment_size``, ``created_ns``
    and ``recovered``; :class:`LookupError` (and :class:`~surgbox.errors.StoreError`) for a missing key."""

    def exists(self, key: str) -> bool: ...

    def info(self, key: str) -> Any: ...


@runtime_checkable
class KeyedStore(Protocol):
    """Key access: the factory accepts ``keyring=`` (a :class:`surgbox.crypto.KeyRing`; its primary
    key encrypts new objects, the others read old ones) and exposes it as ``keyring``. The catalog
    gives each event's files their own key through it."""

    keyring: Any


@runtime_checkable
class SegmentedStore(Protocol):
    """Segment size: ``segment_size`` (bytes, the default) and ``writer(key, metadata, *,
    segment_size=N)`` for one object (smaller segments lose less on a crash)."""

    segment_size: int

    def writer(self, key: str, metadata: Mapping[str, str] | None = None, *,
               segment_size: int | None = None) -> IO[bytes]: ...


@runtime_checkable
class ScrubbableStore(Protocol):
    """Integrity checks (``surgbox store verify|scrub``): ``verify(keys=None, *, decrypt=False)``
    (read-only) and ``scrub(...)`` (repair) return a report with ``objects``, ``problems`` (each
    with ``key``, ``root``, ``kind``, ``detail``, ``repaired``), ``lost``, ``ok`` and ``to_dict()``."""

    def verify(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> Any: ...

    def scrub(self, keys: Sequence[str] | None = None, *, decrypt: bool = False) -> Any: ...


STORE_CAPABILITIES: Mapping[str, type] = {
    "recovery": RecoverableStore,
    "info": DescribedStore,
    "keyring": KeyedStore,
    "segment_size": SegmentedStore,
    "scrub": ScrubbableStore,
}
"""Capability name -> protocol; :func:`store_capabilities` and :func:`check_store` use these names."""

_CAPABILITY_METHODS = {"recovery": "partials(), recover()", "info": "exists(key), info(key)",
                       "keyring": "the keyring= option and attribute", "segment_size":
                       "segment_size and writer(..., segment_size=)", "scrub": "verify(), scrub()"}


def store_capabilities(store: Any) -> list[str]:
    """The names of the optional capabilities ``store`` (an instance) has, sorted."""
    return sorted(name for name, proto in STORE_CAPABILITIES.items() if isinstance(store, proto))


def check_store(store: Any, *needed: str, plugin: str | None = None, purpose: str = "") -> Any:
    """Return ``store`` if it is a :class:`Store` with every capability in ``needed`` (names of
    :data:`STORE_CAPABILITIES`); else raise :class:`~surgbox.errors.MissingCapabilityError` naming the
    plugin, what it lacks (with the methods) and ``purpose``.

    >>> check_store(store, "recovery", plugin="acme-s3", purpose="record --event")   # doctest: +SKIP
    """
    name = plugin or type(store).__name__
    for_ = f" for {purpose}" if purpose else ""
    unknown = [n for n in needed if n not in STORE_CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown store capabilities {unknown}; known: {', '.join(STORE_CAPABILITIES)}")
    missing = [m for m in ("writer", "reader", "keys", "delete", "open", "close") if not callable(getattr(store, m, None))]
    if missing:
        raise MissingCapabilityError(f"store plugin {name!r} cannot be used{for_}: it is not a Store (no "
                                     f"{', '.join(missing)}); see docs/storage.md, 'Store capabilities'")
    lacking = [n for n in needed if not isinstance(store, STORE_CAPABILITIES[n])]
    if lacking:
        what = "; ".join(f"'{n}' ({_CAPABILITY_METHODS[n]})" for n in lacking)
        raise MissingCapabilityError(f"store plugin {name!r} cannot be used{for_}: it lacks the capability {what}; "
                                     f"choose a store that has it (e.g. 'local' or 'mirror') or ask its vendor")
    return store


INTERFACES: Mapping[str, type] = {
    "source": Source,
    "compositor": Compositor,
    "encoder": Encoder,
    "detector": Detector,
    "store": Store,
}
