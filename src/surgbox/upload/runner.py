"""Running upload jobs: what is sent, retries with backoff, verification, catalog records, audit.

What a job sends (docs/upload.md, "What is uploaded"), below the remote's folder, in the store's own
layout so a store root can be rebuilt from the remote::

    objects/events/<event id>/<token>         each file's encrypted object, byte for byte as stored
    meta/events/<event id>/<token>.json       its store sidecar (sizes, ciphertext SHA-256, MAC)
    manifests/<event id>.json                 the event's manifest, sent last (present = complete)

The server never sees plaintext, file names (they are sealed in the sidecars) or patient data:
the manifest lists store keys, kinds, sizes and checksums, the store id and the data key's id, but
not the wrapped data key: an event deleted on the box (its key destroyed) stays unreadable on the
remote too. Rebuilding needs this box's catalog backup and master key.

Each file is sent (plain WebDAV, or Nextcloud chunking for files larger than one chunk), read
back and compared (SHA-256), then recorded in ``upload_files`` with its time. Transient failures
are retried at once with exponential backoff and full jitter (``backoff * 2**n``, at most
``max_backoff`` s); when they keep failing, or on a lasting failure, the job goes back to
``queued`` with ``next_try_at`` (:meth:`Uploader.job_wait`: 30 s doubling per failed run, at most
an hour) and ``last_error``,
the failure is audited (``event.upload`` failed) and :class:`~.errors.UploadError` raised:
nothing already verified is sent again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import attrs

from ..catalog.db import to_text
from ..catalog.files import EventFiles
from ..catalog.keys import FileNames, event_keyring, load_data_key, scratch_keyring
from .errors import UploadError
from .jobs import Job, Queue
from .remotes import Remote, RemoteBook
from .transfer import Payload, Sender, sha256_of
from .webdav import Dav, Throttle

MANIFEST_FORMAT = "surgbox-upload-manifest"
MANIFEST_VERSION = 1
LOCK_NAME = "upload.lock"
JOB_BACKOFF_CAP = 3600.0


@attrs.define(eq=False)
class Progress:
    """Progress of one job, handed to the ``progress`` callback: bytes done of the total, the
    current file, the average rate (bytes/s since the run started) and the ETA (s, or ``None``)."""

    job: int
    event_id: str
    total: int
    done: int = 0
    file: str = ""
    started: float = attrs.field(factory=time.monotonic)
    state: str = "running"
    sent: int = 0  # bytes sent in this run (``done`` also counts what earlier runs sent)

    def to_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.sent / elapsed
        left = self.total - self.done
        return {"job": self.job, "event_id": self.event_id, "state": self.state, "file": self.file,
                "bytes_done": self.done, "bytes_total": self.total, "rate": round(rate, 1),
                "eta": round(left / rate, 1) if rate > 0 and left > 0 else (0.0 if left <= 0 else None)}


@contextlib.contextmanager
def runner_lock(home_path: os.PathLike[str] | str) -> Iterator[None]:
    """One upload runner per home at a time (``SURGBOX_HOME/upload.lock``, released if the process dies)."""
    path = os.path.join(os.fspath(home_path), LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadError(f"another upload runner is working on this home (lock {path} is held); wait for it, "
                              f"or let it take the job (`surgbox upload list`)") from None
        yield
    finally:
        os.close(fd)


@attrs.define(eq=False)
class Uploader:
    """Runs upload jobs for one logged-in session (``upload`` on each job's event).

    ``retries``: extra attempts per file within one run for transient failures; ``backoff`` /
    ``max_backoff``: seconds of the first / longest wait between them; ``job_backoff``: the first
    wait (s) of a failed job before its next try (:meth:`job_wait`); ``progress(dict)`` is called
    at most every ``progress_every`` s and at every file's end; ``transport`` an ``httpx``
    transport (tests pass none: they use real servers)."""

    session: Any
    progress: Callable[[Mapping[str, Any]], None] | None = None
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0
    job_backoff: float = 30.0
    progress_every: float = 0.5
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = attrs.field(factory=random.Random)
    transport: Any = None
    last_requests: dict[str, int] = attrs.field(factory=dict, init=False)

    @property
    def queue(self) -> Queue:
        return Queue(self.session)

    def wait(self, attempt: int, cap: float) -> float:
        """Full-jitter exponential backoff: uniform in ``[0, min(cap, backoff * 2**attempt)]``."""
        return self.rng.uniform(0, min(cap, self.backoff * (2 ** attempt)))

    def job_wait(self, attempts: int) -> float:
        """Seconds until a failed job's next try: ``job_backoff * 2**(attempts - 1)``, at most an hour,
        with equal jitter (half fixed, half random), so jobs failing together spread out."""
        d = min(JOB_BACKOFF_CAP, self.job_backoff * (2 ** max(attempts - 1, 0)))
        return d / 2 + self.rng.uniform(0, d / 2)

    def run_due(self) -> list[Job]:
        """Run every job that is due (see :meth:`Queue.due`), one after another; returns them as they
        ended. A failing job does not stop the others; the first failure is raised at the end."""
        first: UploadError | None = None
        out = []
        with runner_lock(self.session.catalog.home.path):
            for job_id in self.queue.due():
                try:
                    out.append(self._run(job_id))
                except UploadError as exc:
                    first = first or exc
                    out.append(self.queue.get(job_id))
        if first is not None:
            raise first
        return out

    def run(self, job_id: int) -> Job:
        """Run one job now (also before its next try time); returns it (``done`` when complete)."""
        with runner_lock(self.session.catalog.home.path):
            return self._run(job_id)

    def cancel(self, job_id: int) -> Job:
        """Cancel a job (:meth:`Queue.cancel`) and abort its unfinished Nextcloud chunked uploads on
        the server (``DELETE`` of each upload folder, best effort: one the server cannot be reached
        for expires there after 24 h)."""
        job = self.queue.cancel(job_id)
        open_transfers = [f for f in job.files if f.transfer_id]
        if open_transfers:
            remote = RemoteBook(self.session).get(job.remote)
            with contextlib.suppress(UploadError), Dav(remote, timeout=min(self.timeout, 15.0),
                                                       transport=self.transport) as dav:
                for f in open_transfers:
                    dav.delete(remote.uploads_url + f.transfer_id + "/")
                    self._save_transfer(job_id, f.remote_path, None)
        return self.queue.get(job_id, _checked=True)

    # ---- one job --------------------------------------------------------------------------------
    def _run(self, job_id: int) -> Job:
        job = self.queue.get(job_id)
        if job.status not in ("queued", "running"):
            raise UploadError(f"upload job {job_id} is {job.status}; " + (
                "resume it first (`surgbox upload resume JOB`)" if job.status == "paused" else "nothing to do"))
        ev = self.session.events.get(job.event_id)
        self.session.authorize("upload", ev, operation="event.upload")
        if job.deidentified:
            self.session.authorize("export", ev, operation="event.upload")
            if self.session.catalog.home.upload_settings().get("deidentified") is not True:
                raise UploadError(f"upload job {job_id}: de-identified uploads were switched off in config.toml "
                                  f"([upload] deidentified); cancel the job or ask an admin")
        remote = RemoteBook(self.session).get(job.remote)
        cat = self.session.catalog
        self._set(job_id, status="running", attempts=job.attempts + 1)
        started = time.monotonic()
        sender: Sender | None = None
        try:
            if job.deidentified:
                key, key_id = load_data_key(cat.db, cat.kek, ev.id)
                files = EventFiles(cat.make_store(event_keyring(key, ev.id)), FileNames.of(key, ev.id), key_id)
                store = files.inner
            else:
                store = cat.make_store(scratch_keyring())  # ciphertext only: no data key is needed
            try:
                payloads = self._plan_deidentified(ev, files) if job.deidentified else self._plan(ev, store)
                self._record_plan(job_id, payloads)
                job = self.queue.get(job_id, _checked=True)
                progress = Progress(job_id, ev.id, job.bytes_total, job.bytes_done)
                with Dav(remote, timeout=self.timeout, transport=self.transport) as dav:
                    sender = Sender(dav, Throttle(remote.bandwidth * 1e6 if remote.bandwidth else None, sleep=self.sleep),
                                    should_stop=lambda: self.queue.status_of(job_id) not in ("running", "queued"))
                    self._send_all(job, remote, sender, payloads, progress)
            finally:
                store.close()
        except UploadError as exc:
            self._failed(job_id, ev.id, remote, exc)
            raise
        except BaseException as exc:
            self._failed(job_id, ev.id, remote, UploadError(f"interrupted ({type(exc).__name__})", transient=True))
            raise
        finally:
            self.last_requests = dict(sender.requests) if sender else {}
        job = self.queue.get(job_id, _checked=True)
        now = to_text(cat.now())
        with cat.db.transaction() as c:
            c.execute("UPDATE upload_jobs SET status = 'done', finished_at = ?, updated_at = ?, last_error = NULL,"
                      " next_try_at = NULL WHERE id = ?", (now, now, job_id))
            cat.audit.append(c, self.session.user.name, "event.upload", ev.id, "ok",
                             {"job": job_id, "remote": remote.name, "host": remote.host, "kind": remote.kind,
                              "deidentified": job.deidentified,
                              "files": len(job.files), "bytes": job.bytes_total,
                              "manifest_sha256": next((f.sha256 for f in job.files if f.part == "manifest"), None),
                              "requests": sum(self.last_requests.values()),
                              "seconds": round(time.monotonic() - started, 3)})
        return self.queue.get(job_id, _checked=True)

    def _send_all(self, job: Job, remote: Remote, sender: Sender, payloads: list[Payload], progress: Progress) -> None:
        rows = {f.remote_path: f for f in job.files}
        last = [0.0]

        def tell(force: bool = False) -> None:
            if self.progress is not None and (force or time.monotonic() - last[0] >= self.progress_every):
                last[0] = time.monotonic()
                self.progress(progress.to_dict())

        def sent(n: int) -> None:
            progress.done += n
            progress.sent += n
            tell()

        sender.sent = sent
        for p in payloads:
            row = rows[p.path]
            if row.uploaded_at is not None:
                continue
            progress.file = p.path
            transfer = [row.transfer_id]

            def save(tid: str | None, path: str = p.path) -> None:
                transfer[0] = tid
                self._save_transfer(job.id, path, tid)

            done_before = progress.done
            for attempt in range(self.retries + 1):
                if self.queue.status_of(job.id) not in ("running", "queued"):
                    raise UploadError(f"upload job {job.id} was {self.queue.status_of(job.id)} while it ran; "
                                      f"it stopped before {p.path}")
                progress.done = done_before
                try:
                    if remote.kind == "nextcloud" and p.size > remote.chunk_size:
                        sender.send_chunked(p, transfer[0], save)
                    else:
                        sender.send_plain(p)
                    sender.verify(p, lambda p=p: sha256_of(p.open))
                    break
                except UploadError as exc:
                    if not exc.transient or attempt == self.retries:
                        raise
                    self.sleep(self.wait(attempt, self.max_backoff))
            self._uploaded(job.id, p.path)
            progress.done = done_before + p.size
            tell(force=True)
        progress.state = "done"
        tell(force=True)

    # ---- what is sent ---------------------------------------------------------------------------
    def _plan(self, ev: Any, store: Any) -> list[Payload]:
        if not callable(getattr(store, "ciphertext", None)):
            raise UploadError(f"the store plugin {type(store).__name__} cannot hand out its encrypted objects "
                              f"(no ciphertext(key)); upload needs the 'local' or 'mirror' store")
        out, files = [], []
        for rec in sorted(ev.files, key=lambda f: f.id):
            stream, meta = store.ciphertext(rec.store_key)
            stream.close()
            key = rec.store_key
            out.append(Payload(f"objects/{key}", meta.ciphertext_size, meta.sha256,
                               lambda key=key: store.ciphertext(key)[0], "object", key))
            out.append(_bytes_payload(f"meta/{key}.json", meta.to_json(), "sidecar", key))
            files.append({"file_id": rec.id, "kind": rec.kind, "store_key": key, "key_id": rec.key_id,
                          "plaintext_size": rec.size, "plaintext_sha256": rec.sha256,
                          "object": f"objects/{key}", "object_size": meta.ciphertext_size,
                          "object_sha256": meta.sha256, "sidecar": f"meta/{key}.json",
                          "sidecar_sha256": out[-1].sha256})
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "event_id": ev.id,
                    "status": ev.status, "started_at": ev.started_at.isoformat() if ev.started_at else None,
                    "finished_at": ev.finished_at.isoformat() if ev.finished_at else None,
                    "store_id": getattr(store, "store_id", None),
                    "catalog_id": self._catalog_id(), "files": files}
        out.append(_bytes_payload(f"manifests/{ev.id}.json",
                                  (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), "manifest"))
        return out

    def _plan_deidentified(self, ev: Any, files: EventFiles) -> list[Payload]:
        """A sharing upload: the event's de-identified recordings decrypted (checked against the
        catalog's plaintext SHA-256 by read-back), as ``deidentified/<event id>/file-<id>.mp4``, and
        a ``SHA256SUMS`` beside them (``sha256sum -c`` format). No names, report or data tracks."""
        recs = sorted((f for f in ev.files if f.kind == "deid"), key=lambda f: f.id)
        if not recs:
            raise UploadError(f"event {ev.id} has no de-identified recording; make one with `surgbox events deid "
                              f"{ev.id}` first")
        folder, out, sums = f"deidentified/{ev.id}", [], []
        for rec in recs:
            name = f"file-{rec.id}.mp4"
            out.append(Payload(f"{folder}/{name}", rec.size, rec.sha256,
                               lambda key=rec.store_key: files.reader(key), "deidentified", rec.store_key))
            sums.append(f"{rec.sha256}  {name}\n")
        out.append(_bytes_payload(f"{folder}/SHA256SUMS", "".join(sums).encode(), "manifest"))
        return out

    def _catalog_id(self) -> str | None:
        row = self.session.catalog.db.query_one("SELECT value FROM meta WHERE key = 'catalog_id'")
        return bytes(row[0]).decode() if row is not None else None

    # ---- catalog records ------------------------------------------------------------------------
    def _record_plan(self, job_id: int, payloads: list[Payload]) -> None:
        """Add the planned files to the job; a file whose bytes changed since (a replaced report) starts over."""
        cat = self.session.catalog
        with cat.db.transaction() as c:
            for p in payloads:
                part, key = p.part, p.store_key
                row = c.execute("SELECT size, sha256 FROM upload_files WHERE job_id = ? AND remote_path = ?",
                                (job_id, p.path)).fetchone()
                if row is None:
                    c.execute("INSERT INTO upload_files(job_id, remote_path, part, store_key, size, sha256)"
                              " VALUES (?, ?, ?, ?, ?, ?)", (job_id, p.path, part, key, p.size, p.sha256))
                elif (row["size"], row["sha256"]) != (p.size, p.sha256):
                    c.execute("UPDATE upload_files SET size = ?, sha256 = ?, transfer_id = NULL, uploaded_at = NULL"
                              " WHERE job_id = ? AND remote_path = ?", (p.size, p.sha256, job_id, p.path))
            planned = {p.path for p in payloads}
            for r in c.execute("SELECT remote_path FROM upload_files WHERE job_id = ?", (job_id,)).fetchall():
                if r["remote_path"] not in planned:  # a file the event no longer has
                    c.execute("DELETE FROM upload_files WHERE job_id = ? AND remote_path = ?", (job_id, r["remote_path"]))

    def _save_transfer(self, job_id: int, path: str, transfer: str | None) -> None:
        with self.session.catalog.db.transaction() as c:
            c.execute("UPDATE upload_files SET transfer_id = ? WHERE job_id = ? AND remote_path = ?",
                      (transfer, job_id, path))

    def _uploaded(self, job_id: int, path: str) -> None:
        with self.session.catalog.db.transaction() as c:
            c.execute("UPDATE upload_files SET uploaded_at = ?, transfer_id = NULL WHERE job_id = ? AND remote_path = ?",
                      (to_text(self.session.catalog.now()), job_id, path))

    def _set(self, job_id: int, **cols: Any) -> None:
        cols["updated_at"] = to_text(self.session.catalog.now())
        with self.session.catalog.db.transaction() as c:
            c.execute(f"UPDATE upload_jobs SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
                      (*cols.values(), job_id))

    def _failed(self, job_id: int, event_id: str, remote: Remote, exc: UploadError) -> None:
        cat = self.session.catalog
        row = cat.db.query_one("SELECT status, attempts FROM upload_jobs WHERE id = ?", (job_id,))
        if row is None:
            return
        status = row["status"] if row["status"] in ("paused", "cancelled") else "queued"
        wait = self.job_wait(row["attempts"]) if status == "queued" else 0
        now = cat.now()
        with cat.db.transaction() as c:
            c.execute("UPDATE upload_jobs SET status = ?, last_error = ?, next_try_at = ?, updated_at = ? WHERE id = ?",
                      (status, str(exc)[:500], to_text(now + timedelta(seconds=wait)) if status == "queued" else None,
                       to_text(now), job_id))
            cat.audit.append(c, self.session.user.name, "event.upload", event_id, "failed",
                             {"job": job_id, "remote": remote.name, "host": remote.host, "status": exc.status,
                              "transient": exc.transient, "error": str(exc)[:300]})


def _bytes_payload(path: str, data: bytes, part: str, store_key: str | None = None) -> Payload:
    return Payload(path, len(data), hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data), part, store_key)


__all__ = ["MANIFEST_FORMAT", "Progress", "Uploader", "runner_lock"]
