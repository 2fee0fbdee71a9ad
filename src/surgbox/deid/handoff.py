"""How the pipeline's threads hand frames to each other, and how they stop.

Stages run on their own threads joined by bounded :class:`queue.Queue` s. What travels is an
:class:`Item` (one decoded picture and the audio packets to mux before it), then :data:`END`;
a stage that fails sends a :class:`Failure` downstream instead, which the calling thread
re-raises. Every blocking put/get polls a shared ``stop`` event, so setting it ends every
stage within about 0.1 s plus the work in hand (at most one detector batch).
:class:`Workers` starts the threads and joins them all before the pipeline closes the
detector, the encoder and the input: a Ctrl-C can never leave a thread running inside a
native library while the interpreter exits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from .temporal import Region
from .timing import StageTimes

log = logging.getLogger(__name__)

END = object()  # the last thing a stage sends
POLL_S = 0.1  # how often a blocked put/get looks at ``stop``
JOIN_LIMIT_S = 120.0  # longest wait for one stage to finish its work in hand at shutdown


@attrs.define(eq=False)
class Item:
    """One decoded picture on its way through the stages.

    ``index``: output frame number (0, 1, ...; ``-1`` for the trailing audio, ``frame`` then
    ``None``); ``frame``: ``av.VideoFrame`` (yuv420p); ``audio``: audio packets to mux before
    it; ``regions``: what to hide (set by the detect stage); ``hidden``: why every scan region
    of this frame is hidden whole (a detector failure), else ``None``."""

    index: int
    frame: Any
    audio: list
    regions: list[Region] = attrs.field(factory=list)
    hidden: str | None = None
    out_of_body: bool = False  # the endoscope slot was hidden whole (surgbox.deid.outofbody)


@attrs.define(eq=False)
class Failure:
    """A stage's error, sent downstream to the calling thread, which raises it."""

    exc: BaseException


def put(q: queue.Queue, item: Any, stop: threading.Event, times: StageTimes, wait_stage: str) -> bool:
    """Blocking put that gives up (returns ``False``) once ``stop`` is set; the time blocked
    counts as ``wait_stage``."""
    t0 = time.perf_counter()
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_S)
            times.add(wait_stage, time.perf_counter() - t0, count=0)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, stop: threading.Event, times: StageTimes, wait_stage: str) -> Any:
    """Blocking get; :data:`END` as soon as ``stop`` is set (what is still queued is dropped)."""
    t0 = time.perf_counter()
    while not stop.is_set():
        try:
            item = q.get(timeout=POLL_S)
            times.add(wait_stage, time.perf_counter() - t0, count=0)
            return item
        except queue.Empty:
            continue
    return END


@attrs.define(eq=False)
class Workers:
    """The pipeline's stage threads: :meth:`start` each, :meth:`shutdown` to stop and join all."""

    stop: threading.Event
    threads: list[threading.Thread] = attrs.field(factory=list)

    def start(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=f"surgbox-deid-{name}", daemon=True)
        self.threads.append(t)
        t.start()

    def join(self) -> bool:
        """Wait for every thread to end (each gets :data:`JOIN_LIMIT_S`); a ``KeyboardInterrupt``
        while waiting does not cut the wait short. Returns whether one arrived."""
        interrupted = False
        for t in self.threads:
            deadline = time.monotonic() + JOIN_LIMIT_S
            while t.is_alive():
                try:
                    t.join(POLL_S)
                except KeyboardInterrupt:
                    interrupted = True
                if time.monotonic() > deadline:
                    log.error("thread %s did not stop within %.0f s; closing around it", t.name, JOIN_LIMIT_S)
                    break
        return interrupted

    def shutdown(self) -> bool:
        """Set ``stop`` and :meth:`join`; returns whether a ``KeyboardInterrupt`` arrived meanwhile."""
        self.stop.set()
        return self.join()
