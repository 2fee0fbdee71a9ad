"""Background work of the console (:class:`Worker`: one job at a time, never while recording) and
the de-identification of an event's recordings with progress for the event page (:class:`DeidJobs`).

:class:`DeidJobs` runs :meth:`surgbox.catalog.events.EventManager.deidentify` (the same
detector -> temporal -> mask -> anonymize stages as ``surgbox deid``, straight from the
encrypted store into it) on a thread of its own, one job at a time for the whole box: it is heavy
work and the recorder comes first, so a job is refused while a recording runs. The catalog checks
``deidentify`` and ``view`` (synchronously, before the thread starts, so a refusal is a 403) and
audits the result. ``options`` go to :func:`surgbox.deid.deidentify` (default: the library's
defaults, :mod:`surgbox.deid.defaults`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import SurgboxError


@attrs.define(eq=False)
class Job:
    """One de-identification: ``state`` ``running`` / ``done`` / ``failed``, ``frames`` of
    ``total`` written, ``error`` when it failed, ``files`` the new file names when done."""

    event_id: str
    started_by: str
    state: str = "running"
    frames: int = 0
    total: int | None = None
    error: str | None = None
    files: tuple[str, ...] = ()
    started: float = attrs.Factory(time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "state": self.state, "frames": self.frames, "total": self.total,
                "error": self.error, "files": list(self.files), "elapsed_s": round(time.monotonic() - self.started, 1)}


@attrs.define(eq=False)
class Worker:
    """Runs one job at a time on a thread of its own; refuses one while another runs, or while
    ``busy()`` (a recording runs: the recorder comes first). ``doing`` names the work in messages
    (``"de-identify"``, ``"upload"``)."""

    doing: str
    busy: Callable[[], bool] = lambda: False
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")
    _what: str = attrs.field(default="", init=False, alias="_what")

    def launch(self, what: str, target: Callable[..., None], *args: Any, prepare: Callable[[], Any] = lambda: None) -> Any:
        """Run ``target(*args)`` in the background; ``what`` says what it works on (``event ID``).
        ``prepare()`` runs first, under the lock, once nothing else runs; its result is returned."""
        if self.busy():
            raise SurgboxError(f"a recording is running; {self.doing} after it ends (the recorder needs the CPU and the disks)")
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise SurgboxError(f"{self._what} is still running; {self.doing} after it finishes")
            out = prepare()
            self._what = what
            self._thread = threading.Thread(target=target, args=args, name=f"surgbox-console-{self.doing}", daemon=True)
            self._thread.start()
        return out

    def wait(self, timeout: float) -> bool:
        """Block until no job runs (at most ``timeout`` s); True when none runs."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()


@attrs.define(eq=False)
class DeidJobs:
    """The box's de-identification jobs (the newest per event kept for the event page), run by
    ``worker`` (refused while a recording runs)."""

    options: Mapping[str, Any] = attrs.Factory(dict)
    worker: Worker = attrs.Factory(lambda: Worker("de-identify"))
    _jobs: dict[str, Job] = attrs.field(factory=dict, init=False, alias="_jobs")

    def start(self, session: Any, event_id: str, *, replace: bool = True) -> Job:
        """Start de-identifying ``event_id``'s segments as ``session``'s user."""
        session.authorize("deidentify", event_id, operation="event.deidentify")
        session.authorize("view", event_id, operation="event.deidentify")
        job = Job(event_id, session.user.name)

        def prepare() -> Job:
            self._jobs[event_id] = job
            return job

        return self.worker.launch(f"the de-identification of event {event_id}", self._run, session, job, replace, prepare=prepare)

    def _run(self, session: Any, job: Job, replace: bool) -> None:
        def progress(p: Any) -> None:
            job.frames, job.total = p.frames, p.total

        try:
            recs = session.events.deidentify(job.event_id, replace=replace, progress=progress, **self.options)
        except Exception as exc:  # shown on the event page; the catalog audited what it did
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}" if not isinstance(exc, SurgboxError) else str(exc)
            return
        job.files = tuple(r.name for r in recs)
        job.state = "done"

    def get(self, event_id: str) -> Job | None:
        return self._jobs.get(event_id)

    def wait(self, timeout: float) -> bool:
        return self.worker.wait(timeout)
