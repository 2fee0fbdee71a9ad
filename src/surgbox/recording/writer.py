"""The recording's writer thread: every disk write and sync, off the real-time pipeline.

The pipeline thread composes and encodes each tick and hands the packets (and the data
readings) to :class:`OutputWriter` through a bounded queue; the writer thread muxes them into
the crash-safe file (through the sink: an encrypting store writer mirrors to every root here),
appends readings to the data track, and syncs the sink after every finished fragment and at
least every ``sync_interval_s``. A fragment becomes *durable* when the sync after it returns;
the pipeline thread then announces it (``segment_finalized``).

A disk stall therefore delays only this thread: the queue holds ``capacity`` items (sized from
the stall budget, :attr:`~surgbox.recording.options.RecorderOptions.writer_queue_items`). A
stall longer than that makes :meth:`put` wait (counted in ``stats()['blocked']``), so nothing
is dropped; the pipeline then catches up from the sources' queues. After a write error the
writer discards what comes (the recording is ending) and reports the error.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import attrs

from ..packets import FragmentInfo, Packet, PacketConsumer
from ..types import Reading
from .sinks import RecordingSink

log = logging.getLogger(__name__)

_END = object()


@attrs.define(eq=False)
class OutputWriter:
    """Writes ``consumer`` (the muxer, or a tee of it) and ``data_track`` on its own thread.

    The muxer must report fragments to :meth:`fragment_done`. ``durable`` holds fragments whose
    sync returned, for the pipeline thread to announce (:meth:`take_durable`); ``error`` is the
    first write error.
    """

    consumer: PacketConsumer
    sink: RecordingSink
    capacity: int
    sync_interval_s: float = 1.0
    data_track: Any = None
    error: BaseException | None = attrs.field(default=None, init=False)
    _q: queue.Queue = attrs.field(init=False, alias="_q")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _unsynced: list[FragmentInfo] = attrs.field(factory=list, init=False, alias="_unsynced")
    _durable: collections.deque = attrs.field(factory=collections.deque, init=False, alias="_durable")
    _last_sync: float = attrs.field(default=0.0, init=False, alias="_last_sync")
    _counts: dict[str, int] = attrs.field(factory=lambda: {"items": 0, "blocked": 0, "max_queued": 0, "syncs": 0,
                                                           "sync_errors": 0}, init=False, alias="_counts")
    _max_sync_s: float = attrs.field(default=0.0, init=False, alias="_max_sync_s")

    def __attrs_post_init__(self) -> None:
        self._q = queue.Queue(maxsize=max(1, self.capacity))

    # -- pipeline side --------------------------------------------------------------------------
    def start(self) -> None:
        self._last_sync = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="surgbox-recorder-writer", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def put_packets(self, packets: Sequence[Packet]) -> None:
        """Queue encoded packets (waits only when a stall outlasts the queue)."""
        if packets:
            self._put(("packets", packets))

    def put_reading(self, reading: Reading) -> None:
        if self.data_track is not None:
            self._put(("reading", reading))

    def _put(self, item: Any) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self._counts["blocked"] += 1
            self._q.put(item)
        n = self._q.qsize()
        if n > self._counts["max_queued"]:
            self._counts["max_queued"] = n

    def finish(self) -> None:
        """Write what is queued, close the consumer (the last fragment is reported) and the data
        track, and end the thread. Fragments of the close stay in :meth:`take_unsynced` until
        the sink's ``finish_video`` made them durable."""
        if self._thread is None:
            return
        self._q.put(_END)
        self._thread.join()
        self._thread = None

    def take_durable(self) -> list[FragmentInfo]:
        """Fragments made durable since the last call (pipeline thread)."""
        out = []
        while self._durable:
            out.append(self._durable.popleft())
        return out

    def take_unsynced(self) -> list[FragmentInfo]:
        """After :meth:`finish`: the fragments finished after the last sync."""
        out, self._unsynced = self._unsynced, []
        return out

    def stats(self) -> dict[str, Any]:
        return {**self._counts, "queued": self._q.qsize(), "capacity": self._q.maxsize,
                "max_sync_ms": round(self._max_sync_s * 1000, 1), "error": None if self.error is None else str(self.error)}

    # -- writer thread --------------------------------------------------------------------------
    def fragment_done(self, info: FragmentInfo) -> None:
        """The muxer's ``on_fragment`` (writer thread)."""
        self._unsynced.append(info)

    def _run(self) -> None:
        try:
            while True:
                timeout = max(0.0, self._last_sync + self.sync_interval_s - time.monotonic())
                try:
                    item = self._q.get(timeout=timeout)
                except queue.Empty:
                    self._sync()
                    continue
                if item is _END:
                    break
                self._counts["items"] += 1
                self._write(item)
                if self._unsynced or time.monotonic() - self._last_sync >= self.sync_interval_s:
                    self._sync()
        finally:
            self._close()

    def _write(self, item: Any) -> None:
        kind, value = item
        if kind == "reading":
            self.data_track.write(value)  # never raises: a full disk is counted by the track
            return
        if self.error is not None:
            return  # the video failed: the recording is ending, drop what still comes
        try:
            self.consumer.mux(value)
        except BaseException as exc:
            self.error = exc
            log.error("recording %s: writing the video failed: %s", self.sink.label, exc)

    def _sync(self) -> None:
        self._last_sync = t0 = time.monotonic()
        if self.error is None:
            try:
                self.sink.sync()
            except Exception as exc:  # a failing disk: the next write reports it if nothing is left
                self._counts["sync_errors"] += 1
                log.error("recording %s: sync failed: %s", self.sink.label, exc)
                return
            self._counts["syncs"] += 1
            self._max_sync_s = max(self._max_sync_s, time.monotonic() - t0)
            self._durable.extend(self._unsynced)
            self._unsynced = []

    def _close(self) -> None:
        try:
            if self.error is None:
                self.consumer.close()
            else:
                try:
                    self.consumer.close()
                except BaseException:  # already failed: the first error is the one reported
                    pass
        except BaseException as exc:
            self.error = exc
            log.error("recording %s: finishing the video failed: %s", self.sink.label, exc)
        if self.data_track is not None:
            self.data_track.close()
