"""Snapshots of a running recording: requests served by the pipeline, PNGs written by a helper thread.

A request (``Recorder.snapshot()``, a foot switch :class:`~surgbox.types.Trigger`) asks for the
first output tick at or after the request's master-clock time. The pipeline thread hands that
tick's composite (and, if asked, one source's current frame) to :class:`SnapshotService`, whose
single helper thread compresses the PNGs and stores them through the sink, then rewrites the
sidecar, so the pipeline never waits on PNG compression or the disk.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import queue
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..clock import NS_PER_S, Clock
from ..errors import SurgboxError
from ..sync import TickClock
from ..types import VideoFrame
from .sinks import RecordingSink

log = logging.getLogger(__name__)

PENDING_MAX = 16


def png_bytes(picture: Any) -> bytes:
    """PNG bytes of an ``av.VideoFrame`` (fast compression: snapshots must not lag)."""
    buf = io.BytesIO()
    picture.to_image().save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@attrs.define(eq=False)
class SnapshotRequest:
    """``trigger`` (``api`` or ``trigger:<source>``), the ``source`` to save at native
    resolution (or ``None``), ``at_ns`` the master-clock time asked for; ``done`` gets the
    sidecar entry or the error."""

    trigger: str
    source: str | None
    at_ns: int
    done: concurrent.futures.Future = attrs.field(factory=concurrent.futures.Future)


@attrs.define(eq=False)
class SnapshotService:
    """Queues requests (at most :data:`PENDING_MAX`), serves them on ticks, writes PNGs.

    ``entries`` is the sidecar's ``snapshots`` list (shared with the metadata);
    ``write_sidecar()`` rewrites the sidecar after each snapshot.
    """

    sink: RecordingSink
    entries: list[dict[str, Any]]
    write_sidecar: Callable[[], None]
    label: Callable[[], str]
    _q: queue.Queue = attrs.field(factory=lambda: queue.Queue(maxsize=PENDING_MAX), init=False, alias="_q")
    _waiting: list[SnapshotRequest] = attrs.field(factory=list, init=False, alias="_waiting")
    _pool: concurrent.futures.ThreadPoolExecutor | None = attrs.field(default=None, init=False, alias="_pool")

    def start(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="surgbox-snapshot")

    def request(self, req: SnapshotRequest) -> bool:
        """Queue ``req``; False when too many are pending."""
        try:
            self._q.put_nowait(req)
            return True
        except queue.Full:
            return False

    @property
    def pending(self) -> bool:
        return bool(self._waiting) or not self._q.empty()

    def serve(self, k: int, ticks: TickClock, clock: Clock, picture: Any, frames: Mapping[str, VideoFrame | None]) -> None:
        """On the pipeline thread, at tick ``k``: answer every request due by this tick."""
        self._collect()
        tick_ns = ticks.due_ns(k)
        due = [r for r in self._waiting if r.at_ns <= tick_ns]
        self._waiting = [r for r in self._waiting if r.at_ns > tick_ns]
        for req in due:
            n = len(self.entries) + 1
            entry: dict[str, Any] = {
                "index": n,
                "t": round(ticks.output_ns(k) / NS_PER_S, 6),
                "wall": clock.wall_time(tick_ns).isoformat(),
                "trigger": req.trigger,
                "composite": self.sink.snapshot_name(n, "composite"),
            }
            src_frame = None
            if req.source is not None:
                src_frame = frames.get(req.source)
                entry["source"] = req.source
                if src_frame is None:
                    entry["source_image"] = None
                    entry["source_error"] = "no current frame (source stale or not in the layout)"
                else:
                    entry["source_image"] = self.sink.snapshot_name(n, req.source)
                    entry["source_size"] = [src_frame.width, src_frame.height]
            self.entries.append(entry)
            assert self._pool is not None
            self._pool.submit(self._write, req, entry, picture, None if src_frame is None else src_frame.image)

    def _write(self, req: SnapshotRequest, entry: dict[str, Any], picture: Any, source_image: Any) -> None:
        try:
            self.sink.write_snapshot(entry["composite"], png_bytes(picture))
            if source_image is not None:
                self.sink.write_snapshot(entry["source_image"], png_bytes(source_image))
            self.write_sidecar()
            req.done.set_result(dict(entry))
        except Exception as exc:
            log.error("snapshot %s failed: %s", entry.get("index"), exc)
            entry["error"] = str(exc)
            req.done.set_exception(SurgboxError(f"snapshot could not be written to {self.label()}: {exc}"))

    def _collect(self) -> None:
        while True:
            try:
                self._waiting.append(self._q.get_nowait())
            except queue.Empty:
                return

    def shutdown(self) -> None:
        """Finish the PNGs being written; fail requests that no tick will serve. Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._collect()
        for req in self._waiting:
            if not req.done.done():
                req.done.set_exception(SurgboxError("snapshot: the recording ended first"))
        self._waiting = []
