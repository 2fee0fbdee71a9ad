"""Base class for sources that capture in a thread of their own.

Subclasses implement ``_open()`` (acquire the device; raise :class:`SourceError` with a clear
message on failure), ``_capture()`` (called in a loop on the capture thread; returns one item
or ``None`` when nothing was ready) and ``_close()``. The base class provides the bounded,
never-blocking queue, drop-oldest accounting, stop handling and error capture required by the
:class:`~surgbox.interfaces.Source` contract.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from .clock import Clock
from .errors import SourceError
from .interfaces import Item, Source

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class ThreadedSource(Source):
    """A :class:`Source` whose capture loop runs on a daemon thread.

    ``queue_size`` bounds buffered items; when the consumer falls behind, the oldest item is
    dropped and counted (capture never waits for the consumer).
    """

    name: str
    queue_size: int = attrs.field(default=64, kw_only=True)
    clock: Clock | None = attrs.field(default=None, init=False)
    _queue: collections.deque = attrs.field(init=False, alias="_queue")
    _cond: threading.Condition = attrs.field(factory=threading.Condition, init=False, alias="_cond")
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False, alias="_stop")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _error: BaseException | None = attrs.field(default=None, init=False, alias="_error")
    _captured: int = attrs.field(default=0, init=False, alias="_captured")
    _dropped: int = attrs.field(default=0, init=False, alias="_dropped")
    _ended: bool = attrs.field(default=False, init=False, alias="_ended")

    def __attrs_post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"source {self.name!r}: queue_size must be >= 1, got {self.queue_size}")
        self._queue = collections.deque()

    # -- subclass API -------------------------------------------------------------------------
    def _open(self) -> None:
        """Acquire the device (runs in ``start``, on the caller's thread)."""

    def _capture(self) -> Item | None:
        """Capture one item (runs on the capture thread). Return ``None`` when nothing was ready;
        raise ``StopIteration`` when a finite source has ended normally (no error is recorded)."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device (runs on the capture thread after the loop ends)."""

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called; long waits in ``_capture`` should check it."""
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` on the capture thread; returns True if ``stop()`` was called."""
        return self._stop.wait(seconds)

    # -- Source API -----------------------------------------------------------------------------
    def start(self, clock: Clock) -> None:
        if self._thread is not None:
            raise SourceError(f"source {self.name!r} is already started")
        self.clock = clock
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"surgbox-source-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._capture()
                if item is not None:
                    self.put(item)
        except StopIteration:  # a finite source (a file without loop) ended normally
            self._ended = True
        except BaseException as exc:  # reported through .error, never raised in the consumer
            self._error = exc
            log.warning("source %r stopped: %s", self.name, exc)
        finally:
            try:
                self._close()
            except Exception as exc:  # pragma: no cover - close failures are only logged
                log.warning("source %r: close failed: %s", self.name, exc)
            with self._cond:
                self._cond.notify_all()

    def put(self, item: Item) -> None:
        """Queue a captured item, dropping the oldest when full (thread-safe)."""
        with self._cond:
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(item)
            self._captured += 1
            self._cond.notify()

    def get(self, timeout: float | None = 0.0) -> Item | None:
        with self._cond:
            if not self._queue and timeout != 0:
                self._cond.wait_for(lambda: self._queue or not self.running, timeout)
            return self._queue.popleft() if self._queue else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def stats(self) -> Mapping[str, Any]:
        with self._cond:
            return {"captured": self._captured, "dropped": self._dropped, "queued": len(self._queue), "ended": self._ended, "error": repr(self._error) if self._error else None}

    @property
    def ended(self) -> bool:
        """True once a finite source reached its end normally (see ``_capture``)."""
        return self._ended

    @property
    def error(self) -> BaseException | None:
        return self._error
