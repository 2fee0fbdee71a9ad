"""Background de-identification of an event's recordings, with progress for the event page.

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
class DeidJobs:
    """The box's de-identification jobs (the newest per event kept for the event page).
    ``busy()`` tells whether a recording runs (then a job is refused)."""

    options: Mapping[str, Any] = attrs.Factory(dict)
    busy: Callable[[], bool] = lambda: False
    _jobs: dict[str, Job] = attrs.field(factory=dict, init=False, alias="_jobs")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")

    def start(self, session: Any, event_id: str, *, replace: bool = True) -> Job:
        """Start de-identifying ``event_id``'s segments as ``session``'s user."""
        session.authorize("deidentify", event_id, operation="event.deidentify")
        session.authorize("view", event_id, operation="event.deidentify")
        if self.busy():
            raise SurgboxError("a recording is running; de-identify after it ends (the recorder needs the CPU)")
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == "running"]
            if running:
                raise SurgboxError(f"event {running[0].event_id} is being de-identified; wait for it to finish")
            job = Job(event_id, session.user.name)
            self._jobs[event_id] = job
            self._thread = threading.Thread(target=self._run, args=(session, job, replace), name="surgbox-console-deid",
                                            daemon=True)
            self._thread.start()
        return job

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
        """Block until no job runs (at most ``timeout`` s); True when none runs."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()
