"""The persistent upload queue: jobs and their files in the catalog (tables ``upload_jobs`` and
``upload_files``, schema version 3), so uploads survive restarts and crashes.

A job uploads one event to one remote. Status: ``queued`` (waiting, or waiting for its next try
after a failure: ``next_try_at``), ``running``, ``paused``, ``done``, ``cancelled``. A job left
``running`` by a crashed process is taken up again by the next run. Every file of a job is a row
with the remote path, size, SHA-256, the Nextcloud upload id of an unfinished chunked transfer
(``transfer_id``) and, once verified on the remote, ``uploaded_at``.

Permissions: queueing, pausing, resuming, cancelling and listing need ``upload`` on the event
(surgeons: their own events).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from ..catalog.db import from_text, to_text
from ..catalog.errors import NotFoundError
from .errors import UploadError
from .remotes import RemoteBook

STATUSES = ("queued", "running", "paused", "done", "cancelled")
ACTIVE = ("queued", "running", "paused")


@attrs.frozen
class UploadedFile:
    """One remote file of a job: ``part`` is ``object`` (an encrypted store object as stored),
    ``sidecar`` (its store sidecar), ``manifest``, or ``deidentified`` (a decrypted de-identified
    recording of a sharing upload); ``uploaded_at`` is set once verified."""

    remote_path: str
    part: str
    store_key: str | None
    size: int
    sha256: str
    transfer_id: str | None = None
    uploaded_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.remote_path, "part": self.part, "store_key": self.store_key, "size": self.size,
                "sha256": self.sha256, "uploaded_at": self.uploaded_at.isoformat() if self.uploaded_at else None}


@attrs.frozen
class Job:
    """An upload job (see the module docstring)."""

    id: int
    event_id: str
    remote: str
    status: str
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    next_try_at: datetime | None = None
    last_error: str | None = None
    finished_at: datetime | None = None
    files: tuple[UploadedFile, ...] = ()
    deidentified: bool = False

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def bytes_done(self) -> int:
        return sum(f.size for f in self.files if f.uploaded_at is not None)

    def to_dict(self) -> dict[str, Any]:
        t = lambda d: d.isoformat() if d else None  # noqa: E731
        return {"id": self.id, "event_id": self.event_id, "remote": self.remote, "status": self.status,
                "deidentified": self.deidentified,
                "created_at": t(self.created_at), "updated_at": t(self.updated_at), "attempts": self.attempts,
                "next_try_at": t(self.next_try_at), "last_error": self.last_error, "finished_at": t(self.finished_at),
                "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
                "files": [f.to_dict() for f in self.files]}


def _file(row: Any) -> UploadedFile:
    return UploadedFile(row["remote_path"], row["part"], row["store_key"], row["size"], row["sha256"],
                        row["transfer_id"], from_text(row["uploaded_at"]))


@attrs.define(eq=False)
class Queue:
    """The upload jobs of a catalog, seen by one logged-in :class:`~surgbox.catalog.Session`."""

    session: Any

    @property
    def _cat(self) -> Any:
        return self.session.catalog

    def _job(self, row: Any) -> Job:
        files = tuple(_file(r) for r in self._cat.db.query(
            "SELECT * FROM upload_files WHERE job_id = ? ORDER BY part = 'manifest', remote_path", (row["id"],)))
        return Job(row["id"], row["event_id"], row["remote"], row["status"], from_text(row["created_at"]),
                   from_text(row["updated_at"]), row["attempts"], from_text(row["next_try_at"]), row["last_error"],
                   from_text(row["finished_at"]), files, bool(row["deidentified"]))

    def enqueue(self, event_id: str, remote: str, *, deidentified: bool = False) -> Job:
        """Queue an upload of ``event_id`` to ``remote`` (``upload`` on the event); returns the job
        (an unfinished job of the same event, remote and kind, if there is one).

        ``deidentified``: send the event's de-identified recordings (``deid`` files) decrypted, for
        sharing, instead of the encrypted objects. Plaintext leaves the box, so this needs the
        ``export`` permission too and the admin's ``[upload] deidentified = true`` in config.toml."""
        operation = "upload.queue"
        self.session.authorize("upload", event_id, operation=operation)
        if deidentified:
            self.session.authorize("export", event_id, operation=operation,
                                   hint="a de-identified plaintext upload leaves the box: it needs the export "
                                        "permission")
            if self._cat.home.upload_settings().get("deidentified") is not True:
                raise UploadError(f"de-identified uploads are off on this box; an admin can allow them with "
                                  f"`deidentified = true` in the [upload] section of {self._cat.home.config_path}")
        RemoteBook(self.session)._row(remote)
        cat = self._cat
        with cat.db.transaction() as c:
            row = c.execute("SELECT id FROM upload_jobs WHERE event_id = ? AND remote = ? AND deidentified = ? AND "
                            "status IN ('queued', 'running', 'paused') ORDER BY id LIMIT 1",
                            (event_id, remote, int(deidentified))).fetchone()
            if row is not None:
                return self.get(row["id"], _checked=True)
            now = to_text(cat.now())
            cur = c.execute("INSERT INTO upload_jobs(event_id, remote, status, deidentified, created_at, created_by,"
                            " updated_at) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                            (event_id, remote, int(deidentified), now, self.session.user.id, now))
            cat.audit.append(c, self.session.user.name, "upload.queue", event_id, "ok",
                             {"job": cur.lastrowid, "remote": remote, "deidentified": deidentified})
            job_id = cur.lastrowid
        return self.get(job_id, _checked=True)

    def get(self, job_id: int, *, _checked: bool = False) -> Job:
        """One job with its files (``upload`` on its event)."""
        if isinstance(job_id, bool) or not isinstance(job_id, int) or not 1 <= job_id < 2**63:
            raise UploadError(f"job id {job_id!r} is not a job number (a whole number from 1); `surgbox upload list` "
                              f"shows the jobs")
        row = self._cat.db.query_one("SELECT * FROM upload_jobs WHERE id = ?", (job_id,))
        if row is None:
            self.session.authorize("upload", operation="upload.show")
            raise NotFoundError(f"no upload job {job_id}; `surgbox upload list` shows the jobs")
        if not _checked:
            self.session.authorize("upload", row["event_id"], operation="upload.show")
        return self._job(row)

    def list(self, *, statuses: Sequence[str] = STATUSES, limit: int = 200) -> list[Job]:
        """Jobs with one of ``statuses``, newest first, of the events the user may upload."""
        self.session.authorize("upload", operation="upload.list")
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise UploadError(f"unknown job status {bad[0]!r}; statuses: {', '.join(STATUSES)}")
        marks = ",".join("?" * len(statuses))
        rows = self._cat.db.query(f"SELECT * FROM upload_jobs WHERE status IN ({marks}) ORDER BY id DESC LIMIT ?",
                                  (*statuses, int(limit)))
        out = []
        for r in rows:
            try:
                ev = self.session.events._load(r["event_id"])
            except NotFoundError:
                continue
            if self.session.can("upload", ev):
                out.append(self._job(r))
        return out

    def due(self) -> list[int]:
        """Ids of the jobs a run should take now (queued and past their next try, or left running), oldest first."""
        now = to_text(self._cat.now())
        rows = self._cat.db.query("SELECT id FROM upload_jobs WHERE status = 'running' OR (status = 'queued' AND "
                                  "(next_try_at IS NULL OR next_try_at <= ?)) ORDER BY id", (now,))
        return [r["id"] for r in rows]

    def _set(self, job_id: int, to: str, frm: Sequence[str], operation: str) -> Job:
        job = self.get(job_id)
        self.session.authorize("upload", job.event_id, operation=operation)
        cat = self._cat
        with cat.db.transaction() as c:
            status = c.execute("SELECT status FROM upload_jobs WHERE id = ?", (job_id,)).fetchone()["status"]
            if status not in frm:
                raise UploadError(f"upload job {job_id} is {status}; {operation.split('.')[1]} needs a job that is "
                                  f"{' or '.join(frm)}")
            c.execute("UPDATE upload_jobs SET status = ?, updated_at = ?, next_try_at = NULL WHERE id = ?",
                      (to, to_text(cat.now()), job_id))
            cat.audit.append(c, self.session.user.name, operation, job.event_id, "ok", {"job": job_id, "from": status})
        return self.get(job_id, _checked=True)

    def pause(self, job_id: int) -> Job:
        """Stop a job from running (a running upload stops before its next chunk or file)."""
        return self._set(job_id, "paused", ("queued", "running"), "upload.pause")

    def resume(self, job_id: int) -> Job:
        """Queue a paused job again (due at once)."""
        return self._set(job_id, "queued", ("paused", "queued"), "upload.resume")

    def cancel(self, job_id: int) -> Job:
        """Give a job up (the remote files already verified stay where they are)."""
        return self._set(job_id, "cancelled", ACTIVE, "upload.cancel")

    def status_of(self, job_id: int) -> str:
        row = self._cat.db.query_one("SELECT status FROM upload_jobs WHERE id = ?", (job_id,))
        return "cancelled" if row is None else row["status"]


def uploaded_files(catalog: Any, event_id: str) -> list[dict[str, Any]]:
    """Every verified remote copy of an event's files (for ``surgbox events show``, whose caller
    checked ``view``): remote, job, part, path, size, SHA-256 and time, oldest first."""
    rows = catalog.db.query(
        "SELECT j.remote, j.id AS job, f.part, f.remote_path, f.size, f.sha256, f.uploaded_at FROM upload_files f"
        " JOIN upload_jobs j ON j.id = f.job_id WHERE j.event_id = ? AND f.uploaded_at IS NOT NULL"
        " ORDER BY f.uploaded_at, f.remote_path", (event_id,))
    return [{"remote": r["remote"], "job": r["job"], "part": r["part"], "path": r["remote_path"], "size": r["size"],
             "sha256": r["sha256"], "uploaded_at": r["uploaded_at"]} for r in rows]
