"""Uploads from the console: queue an event's upload to a configured remote and follow its progress.

The work is :mod:`surgbox.upload`'s (the persistent queue in the catalog, chunked, resumable,
verified, ciphertext only; docs/upload.md): :class:`UploadJobs` queues the job
(:meth:`surgbox.upload.Queue.enqueue`: ``upload`` on the event, audited), then runs it at once with an
:class:`~surgbox.upload.Uploader` on the console's :class:`~.jobs.Worker` (one upload at a time,
refused while a recording runs). While it runs, the uploader's progress (bytes done of the total,
rate, ETA) is kept here for the event page's poll; once it ended, the job's state is the
catalog's (``done``; ``queued`` with its error and next try after a failure, which ``surgbox
upload run`` or the same button takes up again). With ``[upload] auto = "REMOTE"`` in the home's
config.toml, a recording made from the console is queued and sent the same way when it stops
(:meth:`UploadJobs.after_recording`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import SurgboxError
from ..upload import Queue, RemoteBook, UploadError, Uploader
from ..upload.auto import AutoUpload
from .jobs import Worker

log = logging.getLogger(__name__)

EVENT_JOBS = 5  # jobs of an event shown on its page, newest first


@attrs.define(eq=False)
class UploadJobs:
    """The console's uploads; ``uploader_options`` go to :class:`~surgbox.upload.Uploader`
    (retries, backoff, timeout: tests make them short)."""

    uploader_options: Mapping[str, Any] = attrs.Factory(dict)
    worker: Worker = attrs.Factory(lambda: Worker("upload"))
    _live: dict[int, dict[str, Any]] = attrs.field(factory=dict, init=False, alias="_live")

    def remotes(self, session: Any, event: Any) -> list[str]:
        """Names of the remotes ``session``'s user may upload ``event`` to (none without ``upload``)."""
        if not session.can("upload", event):
            return []
        return [r.name for r in RemoteBook(session).list()]

    def start(self, session: Any, event_id: str, remote: str) -> int:
        """Queue ``event_id``'s upload to ``remote`` (or take its unfinished job) and run it now;
        returns the job id. Refused (nothing queued) while another upload or a recording runs."""
        session.authorize("upload", event_id, operation="upload.queue")
        job_id: list[int] = []

        def prepare() -> int:
            queue = Queue(session)
            job = queue.enqueue(event_id, remote)
            if job.status == "paused":
                job = queue.resume(job.id)
            self._live[job.id] = {"state": "running", "bytes_done": job.bytes_done, "bytes_total": job.bytes_total}
            job_id.append(job.id)
            return job.id

        return self.worker.launch(f"an upload of event {event_id}", lambda: self._run(session, job_id[0]), prepare=prepare)

    def check_auto(self, session: Any, event_id: str) -> None:
        """Before a console recording starts: raise :class:`~surgbox.errors.ConfigError` when
        the home's ``[upload] auto`` is not the name of a remote (so a typo refuses the start
        instead of surfacing after a two-hour recording)."""
        AutoUpload.configured(session, event_id)

    def after_recording(self, session: Any, event_id: str, error: str | None) -> int | None:
        """After a console recording of ``event_id`` ended with its files in the catalog: when
        ``[upload] auto`` names a remote, queue the event's upload there and send it now, as
        ``surgbox record --event`` does (docs/upload.md). Returns the job id, or ``None`` when
        nothing was queued (no ``auto``; the recording ended with an ``error``; ``session``'s
        user may not upload: a warning in the log). A job that cannot start now (another upload
        runs) stays queued for the event page's Upload button or ``surgbox upload run``."""
        if error is not None or session is None:
            return None
        auto = AutoUpload.configured(session, event_id)
        if auto is None:
            return None
        try:
            return self.start(session, event_id, auto.remote)  # queues the job and sends it
        except SurgboxError as exc:
            refused = exc
        try:  # refused before queueing (another upload runs): queue it for later
            job = Queue(session).enqueue(event_id, auto.remote)
        except SurgboxError as exc:
            log.warning("console: the automatic upload of event %s to %s was not queued: %s", event_id, auto.remote, exc)
            return None
        log.warning("console: upload job %s of event %s stays queued: %s", job.id, event_id, refused)
        return job.id

    def _run(self, session: Any, job_id: int) -> None:
        def progress(p: Mapping[str, Any]) -> None:
            self._live[job_id] = dict(p)

        try:
            Uploader(session, progress=progress, **self.uploader_options).run(job_id)
        except UploadError:  # the job keeps its error (last_error) and next try in the catalog; the page shows them
            pass
        except Exception:  # a bug: the uploader recorded the job as interrupted; keep the traceback for a report
            log.exception("console: upload job %s failed", job_id)
        finally:
            self._live.pop(job_id, None)

    def status(self, session: Any, job_id: int) -> dict[str, Any]:
        """A job's state for the page (``upload`` on its event): the catalog's job with, while this
        console runs it, the live ``bytes_done``, ``rate`` (bytes/s), ``eta`` (s) and ``file``."""
        job = Queue(session).get(job_id)
        out = {k: v for k, v in job.to_dict().items() if k != "files"}
        live = self._live.get(job_id)
        if live is not None:
            out.update(running=True, bytes_done=live.get("bytes_done", job.bytes_done), rate=live.get("rate"),
                       eta=live.get("eta"), bytes_total=live.get("bytes_total") or job.bytes_total)
        else:
            out["running"] = False
        out["fraction"] = round(out["bytes_done"] / out["bytes_total"], 4) if out["bytes_total"] else None
        return out

    def for_event(self, session: Any, event: Any) -> list[dict[str, Any]]:
        """The event's newest upload jobs (:meth:`status` each), for users with ``upload`` on it."""
        if not session.can("upload", event):
            return []
        jobs = [j for j in Queue(session).list() if j.event_id == event.id][:EVENT_JOBS]
        return [self.status(session, j.id) for j in jobs]

    def wait(self, timeout: float) -> bool:
        return self.worker.wait(timeout)


__all__ = ["UploadJobs"]
