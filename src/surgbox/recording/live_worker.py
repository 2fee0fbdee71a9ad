"""The live detector worker: one thread that runs a detector on crops, with deadlines.

:class:`DetectorWorker` is what :class:`~surgbox.recording.live_deid.LiveDeidSource` hands its
detection frames to; it never blocks the caller (a full queue is refused: the frame fails
closed) and skips a job whose deadline passed before it started.

The frame context it gives ``Detector.detect_frames`` is the detection's number in the run (0,
1, 2, ... over the submitted jobs), not the source frame number: the live cadence changes (every
3rd frame, then every 4th, ...), and a detector that runs its parts at their own cadence (the
ensemble: members on alternate calls) must alternate over the detections, not over frame numbers
that may all be even.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any

import attrs

from ..deid.crop import Crop
from ..deid.detect import detector_label
from ..errors import SurgboxError
from ..types import Detections

WORKER_QUEUE = 4  # detector jobs waiting at most (older ones would be late anyway)


@attrs.define(eq=False)
class _Job:
    index: int
    crop: Crop
    deadline_ns: int
    seq: int  # the detection's number in the run


@attrs.define(eq=False)
class DetectorWorker:
    """Runs a detector on one thread: :meth:`submit` a crop (never blocks; False when the
    queue is full), :meth:`take` the answers (``(index, Detections in frame pixels or the
    exception, seconds the call took)``). A job whose deadline passed before it started is skipped (its frame has failed
    closed already), so a stalled detector catches up at once when it comes back."""

    detector: Any
    now_ns: Any  # () -> int, the master clock
    capacity: int = WORKER_QUEUE
    busy_s: float = 0.0  # seconds spent in the detector
    calls: int = 0
    skipped: int = 0
    submitted: int = 0
    _jobs: queue.Queue = attrs.field(init=False, alias="_jobs")
    _done: collections.deque = attrs.field(factory=collections.deque, init=False, alias="_done")
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False, alias="_stop")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")

    def __attrs_post_init__(self) -> None:
        self._jobs = queue.Queue(maxsize=self.capacity)

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=f"surgbox-live-deid-{name}", daemon=True)
        self._thread.start()

    def submit(self, index: int, crop: Crop, deadline_ns: int) -> bool:
        try:
            self._jobs.put_nowait(_Job(index, crop, deadline_ns, self.submitted))
        except queue.Full:
            return False
        self.submitted += 1
        return True

    def take(self) -> list[tuple[int, Detections | BaseException | None, float | None]]:
        """The answers so far: ``(index, result, seconds)``; result ``None`` (and seconds
        ``None``): skipped, too late to start."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; False if the detector is still busy after ``timeout`` (it is a
        daemon thread: it cannot keep the process alive)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            if self.now_ns() > job.deadline_ns:
                self.skipped += 1
                self._done.append((job.index, None, None))
                continue
            t0 = time.perf_counter()
            try:
                res: Detections | BaseException = self._detect(job)
            except Exception as exc:  # fail closed for this frame; the worker goes on
                res = exc
            dt = time.perf_counter() - t0
            self.busy_s += dt
            self.calls += 1
            self._done.append((job.index, res, dt))

    def _detect(self, job: _Job) -> Detections:
        det = self.detector
        detect_frames = getattr(det, "detect_frames", None)
        images = [job.crop.image]
        results = list(detect_frames(images, [job.seq]) if callable(detect_frames) else det.detect(images))
        if len(results) != 1 or not isinstance(results[0], Detections):
            raise SurgboxError(f"detector {detector_label(det)!r} returned {len(results)} results / "
                               f"{type(results[0]).__name__ if results else 'nothing'} for one image, not one Detections")
        return job.crop.to_frame(results[0])


