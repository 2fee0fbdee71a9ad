"""Events (one surgery each) and their files: the event manager, a thin facade.

An event holds the case data (place, procedure, patient, medical record number, physicians,
notes; PHI encrypted, see :mod:`.phi`), its life cycle (``created`` -> ``recording`` ->
``stopped``) and its files (recording segments, snapshots, data tracks, reports,
de-identified copies), each stored encrypted with the event's data key (:mod:`.keys`) under a
generated store key, with its size, SHA-256 of the plaintext and key id. Every method checks
the session's permission first and audits what it did (event and file ids, never PHI); the
work itself lives in :mod:`.search`, :mod:`.files`, :mod:`.export`, :mod:`.retention` and
:mod:`.reports`.

Recorder integration::

    events = session.events
    ev = events.create(patient=..., medical_record=..., procedure=..., physicians=[...], place=...)
    events.start_event(ev.id)
    with events.store_for(ev.id) as store:           # a Store whose keys are file names
        with store.writer("segment-0001.mp4") as f:  # encrypted with the event's data key
            f.write(data)
    events.add_file(ev.id, "segment", "segment-0001.mp4")   # size + SHA-256 read back and recorded
    events.stop_event(ev.id)                          # also renders and stores the PDF report
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any

import attrs

from ..interfaces import Store, check_store
from . import deid as _deid
from . import export as _export
from . import reports as _reports
from . import retention as _retention
from .db import to_text
from .errors import CatalogError, NotFoundError
from .files import EventFiles, EventStore, Guard
from .keys import FileNames, event_keyring, load_data_key, new_data_key
from .model import (
    EVENT_ID,
    FILE_KINDS,
    DeleteResult,
    Event,
    ExportResult,
    FileRecord,
    RecoverResult,
    check_file_name,
    check_kind,
    check_text,
)
from .rows import event_from_row, file_from_row
from .search import SELECT_EVENTS, SearchFilters, search_query
from .users import Scope, scope

log = logging.getLogger(__name__)

MAX_KEEP_DAYS = _retention.MAX_KEEP_DAYS
_RECORDING_KINDS = {"segment": "segment", "snapshot": "snapshot", "data": "data", "sidecar": "data", "raw": "raw"}


@attrs.define(eq=False)
class EventManager:
    """Event operations for one :class:`~surgbox.catalog.session.Session`; every method checks
    the session's permissions first and audits what it did (event ids only, never PHI)."""

    session: Any

    @property
    def _cat(self) -> Any:
        return self.session.catalog

    def _actor(self) -> str:
        return self.session.user.name

    # ---- loading --------------------------------------------------------------------------
    def _file_from_row(self, r: Any) -> FileRecord:
        return file_from_row(self._cat.phi, r)

    def _event_from_row(self, row: Any, with_files: bool = True) -> Event:
        return event_from_row(self._cat.phi, self._cat.db, row, with_files)

    def _load(self, event_id: str) -> Event:
        row = self._cat.db.query_one(f"{SELECT_EVENTS} WHERE e.id = ?", (event_id,))
        if row is None:
            raise NotFoundError(f"no event {event_id!r}; `surgbox events list` shows the events you may see")
        return self._event_from_row(row)

    def _authorized(self, action: str, event_id: str, operation: str) -> Event:
        check_text(event_id, "event id")
        try:
            ev = self._load(event_id)
        except NotFoundError:
            # a refusal must not reveal whether the id exists
            self.session.authorize(action, operation=operation)
            self._cat.audit.record(self._actor(), operation, event_id if EVENT_ID.match(event_id or "") else "?",
                                   "failed", {"reason": "not found"})
            raise
        self.session.authorize(action, ev, operation=operation)
        return ev

    # ---- create / start / stop -------------------------------------------------------------
    def create(self, *, patient: str, medical_record: str, procedure: str, physicians: Sequence[str] = (),
               place: str = "", notes: str = "") -> Event:
        """Create an event (status ``created``) with a new data key; returns it (``.id``)."""
        me = self.session.authorize("record", operation="event.create")
        for label, value in (("patient", patient), ("medical record", medical_record), ("procedure", procedure)):
            check_text(value, label, required=True, limit=1024)
        check_text(place, "place", limit=1024)
        check_text(notes, "notes")
        physicians = [check_text(p, "physician", limit=1024).strip() for p in physicians if p and p.strip()]
        cat, phi = self._cat, self._cat.phi
        now = cat.now()
        eid = f"ev-{now.astimezone(timezone.utc):%Y%m%d}-{secrets.token_hex(4)}"
        data_key, key_id = new_data_key()
        with cat.db.transaction() as c:
            c.execute(
                "INSERT INTO events(id, status, created_at, created_by, place, procedure, patient_enc, patient_hash,"
                " mrn_enc, mrn_hash, notes_enc, updated_at) VALUES (?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (eid, to_text(now), me.id, place.strip(), procedure.strip(),
                 phi.encrypt(patient.strip(), f"events.patient:{eid}"), phi.blind("patient", patient),
                 phi.encrypt(medical_record.strip(), f"events.medical_record:{eid}"), phi.blind("medical_record", medical_record),
                 phi.encrypt(notes, f"events.notes:{eid}") if notes else None, to_text(now)),
            )
            for i, name in enumerate(physicians):
                c.execute("INSERT INTO event_physicians(event_id, position, name_enc, name_hash) VALUES (?, ?, ?, ?)",
                          (eid, i, phi.encrypt(name, f"events.physician:{eid}:{i}"), phi.blind("physician", name)))
            tokens = {(t, "patient") for t in phi.token_hashes("patient", patient)}
            tokens |= {(t, "medical_record") for t in phi.token_hashes("medical_record", medical_record)}
            tokens |= {(t, "physician") for p in physicians for t in phi.token_hashes("physician", p)}
            tokens |= {(t, "notes") for t in phi.token_hashes("notes", notes)}
            c.executemany("INSERT OR IGNORE INTO event_tokens(token, field, event_id) VALUES (?, ?, ?)",
                          [(t, f, eid) for t, f in tokens])
            c.execute("INSERT INTO event_keys(event_id, key_id, wrapped) VALUES (?, ?, ?)",
                      (eid, key_id, cat.wrap_event_key(eid, data_key)))
            cat.audit.append(c, me.name, "event.create", eid, "ok",
                             {"physicians": len(physicians), "notes": bool(notes)})
        return self._load(eid)

    def _transition(self, event_id: str, operation: str, frm: tuple[str, ...], to: str, column: str) -> Event:
        ev = self._authorized("record", event_id, operation)
        cat = self._cat
        with cat.db.transaction() as c:
            row = c.execute("SELECT status FROM events WHERE id = ?", (ev.id,)).fetchone()
            if row is None or row["status"] not in frm:
                status = row["status"] if row else "deleted"
                raise CatalogError(f"event {ev.id} is {status}; {operation.split('.')[1]} needs status {' or '.join(frm)}")
            now = to_text(cat.now())
            c.execute(f"UPDATE events SET status = ?, {column} = ?, updated_at = ? WHERE id = ?", (to, now, now, ev.id))
            cat.audit.append(c, self._actor(), operation, ev.id, "ok", {"status": to})
        return self._load(ev.id)

    def start_event(self, event_id: str) -> Event:
        """Mark the event ``recording`` (sets ``started_at``). Needs ``record``."""
        return self._transition(event_id, "event.start", ("created",), "recording", "started_at")

    def stop_event(self, event_id: str, *, report: bool = True) -> Event:
        """Mark the event ``stopped`` (sets ``finished_at``) and, with ``report``, render and store its
        PDF report. The stop always holds: a report that cannot be made is logged, audited
        (``report.create`` failed) and kept as the event's ``report_error`` until ``surgbox report ID``
        makes one."""
        ev = self._transition(event_id, "event.stop", ("recording", "created"), "stopped", "finished_at")
        if report:
            try:
                self._store_report(ev)
            except Exception as exc:  # the stop must hold even when the report cannot be made now
                reason = f"{type(exc).__name__}: {exc}"[:500]
                log.error("event %s: the PDF report could not be made (%s); make it later with "
                          "`surgbox report %s`", ev.id, reason, ev.id)
                with self._cat.db.transaction() as c:
                    c.execute("UPDATE events SET report_error = ? WHERE id = ?", (reason, ev.id))
                    self._cat.audit.append(c, self._actor(), "report.create", ev.id, "failed",
                                           {"error": type(exc).__name__})
            ev = self._load(ev.id)
        return ev

    # ---- reading --------------------------------------------------------------------------
    def get(self, event_id: str) -> Event:
        """The event with its files (``view``)."""
        ev = self._authorized("view", event_id, "event.view")
        self._cat.audit.record(self._actor(), "event.view", ev.id, "ok")
        return ev

    def list(self, *, limit: int = 100) -> list[Event]:
        """The newest events the user may see."""
        return self.search(limit=limit)

    def search(self, *, date_from: str | date | datetime | None = None, date_to: str | date | datetime | None = None,
               place: str | None = None, procedure: str | None = None, physician: str | None = None,
               patient: str | None = None, medical_record: str | None = None, text: str | None = None,
               status: str | None = None, limit: int = 100) -> list[Event]:
        """Events matching every filter given, newest first, among those the user may see.

        ``date_from``/``date_to``: on the start time (creation time if not started), dates are
        whole local days (1900-01-01 to 9999-12-30). ``place``/``procedure``: substring, accent- and
        case-insensitive. ``patient``/``physician``: the whole name or all of its words.
        ``medical_record``: exact (normalized). ``text``: every word must occur in some field (PHI
        fields match whole words, place/procedure/id substrings)."""
        me = self.session.authorize("view", operation="event.search")
        filters = SearchFilters(date_from, date_to, place, procedure, physician, patient, medical_record, text, status)
        own = (me.id, me.physician_hash or b"") if scope(me.role, "view") is Scope.OWN else None
        sql, params = search_query(self._cat.phi, filters, limit=limit, own_only=own)
        events = [self._event_from_row(r, with_files=False) for r in self._cat.db.query(sql, params)]
        events = [e for e in events if self.session.can("view", e)]  # defence in depth
        self._cat.audit.record(me.name, "event.search", None, "ok", {"filters": filters.used(), "results": len(events)})
        return events

    # ---- files ----------------------------------------------------------------------------
    def _files(self, event_id: str) -> EventFiles:
        """The event's objects in an opened store encrypting with its data key (close it)."""
        key, key_id = load_data_key(self._cat.db, self._cat.kek, event_id)
        return EventFiles(self._cat.make_store(event_keyring(key, event_id)), FileNames.of(key, event_id), key_id)

    def _listed(self, event_id: str, store_key: str) -> FileRecord | None:
        row = self._cat.db.query_one("SELECT * FROM files WHERE event_id = ? AND store_key = ?", (event_id, store_key))
        return None if row is None else self._file_from_row(row)

    def _forget(self, rec: FileRecord, reason: str) -> None:
        with self._cat.db.transaction() as c:
            c.execute("DELETE FROM files WHERE id = ?", (rec.id,))
            self._cat.audit.append(c, self._actor(), "file.delete", rec.event_id, "ok",
                                   {"file_id": rec.id, "kind": rec.kind, "sha256": rec.sha256, "reason": reason})

    def store_for(self, event_id: str) -> Store:
        """An opened :class:`~surgbox.interfaces.Store` for writing this event's files (``record``):
        keys are plain file names, objects are encrypted with the event's data key under generated
        keys. Reading through it needs ``view``; deleting an object it did not write itself (or one
        the catalog lists) needs ``delete``. Register what you wrote with :meth:`add_file`. Close it."""
        ev = self._authorized("record", event_id, "event.store")

        def authorize(action: str, operation: str) -> None:
            self._authorized(action, ev.id, operation)

        guard = Guard(authorize, lambda key: self._listed(ev.id, key), lambda rec: self._forget(rec, "store handle"))
        return EventStore(self._files(ev.id), guard)

    def add_file(self, event_id: str, kind: str, name: str, *, size: int | None = None, sha256: str | None = None) -> FileRecord:
        """Record a file already written through :meth:`store_for` (``record``). Without ``size``
        and ``sha256`` they are computed by reading the object back (which also authenticates it)."""
        ev = self._authorized("record", event_id, "file.add")
        check_kind(kind)
        check_file_name(name)
        with self._files(ev.id) as files:
            key = files.names.object_key(name)
            if size is None or sha256 is None:
                size, sha256 = files.digest(key)
            key_id = files.key_id
        return self._insert_file(ev, kind, name, key, size, sha256, key_id)

    def recover(self, event_id: str) -> RecoverResult:
        """Recover an event recording that crashed (``kill -9``, power loss; ``record``).

        Runs the store's ``recover()`` with the event's data key, so the unfinished writes of this
        event (video, data track) become objects holding their longest authentic prefix (writes of
        other keys are left alone), then adds every object of the event's recording that the
        catalog does not list yet (by its store metadata ``kind``: segment, snapshot, data track,
        sidecar) with its size and SHA-256 (read back, which authenticates it). The event keeps
        its status: stop it with :meth:`stop_event` to make the report. Safe to run again."""
        ev = self._authorized("record", event_id, "event.recover")
        with self._files(ev.id) as files:
            prefix = files.names.prefix
            inner = check_store(files.inner, "recovery", purpose="events recover")
            recovered = tuple(r for r in inner.recover() if r.key.startswith(prefix))
            listed = {f.store_key for f in ev.files}
            stored = files.stored()
            missing = [(kind, name, k) for k, (name, meta_kind) in sorted(stored.items(), key=lambda kv: kv[1][0])
                       if k not in listed and (kind := _RECORDING_KINDS.get(meta_kind)) is not None]
            added = []
            for kind, name, key in missing:
                size, sha256 = files.digest(key)
                added.append(self._insert_file(ev, kind, name, key, size, sha256, files.key_id))
        failed = [r for r in recovered if r.action in ("failed", "no-key")]
        self._cat.audit.record(self._actor(), "event.recover", ev.id, "failed" if failed else "ok",
                               {"recovered": sum(r.action == "recovered" for r in recovered),
                                "failed": len(failed), "files_added": len(added)})
        names = {k: n for k, (n, _) in stored.items()}
        return RecoverResult(ev.id, recovered, tuple(added), names)

    def _insert_file(self, ev: Event, kind: str, name: str, store_key: str, size: int, sha256: str, key_id: str,
                     *, replaces: Sequence[FileRecord] = ()) -> FileRecord:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            raise CatalogError(f"sha256 {sha256!r} is not 64 lowercase hex digits")
        cat = self._cat
        with cat.db.transaction() as c:
            rows = c.execute("SELECT * FROM files WHERE event_id = ?", (ev.id,)).fetchall()
            if any(self._file_from_row(r).name == name for r in rows):
                raise CatalogError(f"event {ev.id} already has a file named {name!r}")
            try:
                cur = c.execute("INSERT INTO files(event_id, kind, name_enc, store_key, size, sha256, key_id, created_at)"
                                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (ev.id, kind, cat.phi.encrypt(name, f"files.name:{store_key}"), store_key, int(size),
                                 sha256, key_id, to_text(cat.now())))
            except Exception as exc:
                if "UNIQUE" in str(exc):
                    raise CatalogError(f"event {ev.id} already has a file named {name!r}") from None
                raise
            cat.audit.append(c, self._actor(), "file.add", ev.id, "ok",
                             {"file_id": cur.lastrowid, "kind": kind, "size": int(size), "sha256": sha256})
            for old in replaces:
                c.execute("DELETE FROM files WHERE id = ?", (old.id,))
                cat.audit.append(c, self._actor(), "file.delete", ev.id, "ok",
                                 {"file_id": old.id, "kind": old.kind, "sha256": old.sha256,
                                  "reason": f"replaced by file {cur.lastrowid}"})
            if kind == "report":
                c.execute("UPDATE events SET report_error = NULL WHERE id = ?", (ev.id,))
        return self._file_from_row(cat.db.query_one("SELECT * FROM files WHERE id = ?", (cur.lastrowid,)))

    def write_file(self, event_id: str, kind: str, name: str, data: bytes | IO[bytes]) -> FileRecord:
        """Encrypt ``data`` (bytes or a readable binary stream) into the store as a file of the
        event and record it (``record``; de-identified copies need ``deidentify``)."""
        check_kind(kind)
        action = "deidentify" if kind == "deid" else "record"
        ev = self._authorized(action, event_id, "file.add")
        return self._write_file(ev, kind, name, data)

    def _write_file(self, ev: Event, kind: str, name: str, data: bytes | IO[bytes],
                    replaces: Sequence[FileRecord] = ()) -> FileRecord:
        check_kind(kind)
        check_file_name(name)
        if any(f.name == name for f in ev.files):
            raise CatalogError(f"event {ev.id} already has a file named {name!r}")
        with self._files(ev.id) as files:
            key, size, sha256 = files.write(name, kind, data)
            try:
                return self._insert_file(ev, kind, name, key, size, sha256, files.key_id, replaces=replaces)
            except BaseException:
                with contextlib.suppress(Exception):
                    files.inner.delete(key)  # not listed: remove it again
                raise

    @contextlib.contextmanager
    def open_file(self, event_id: str, name: str) -> Iterator[IO[bytes]]:
        """``with events.open_file(id, name) as f:`` a seekable plaintext stream (``view``);
        nothing is decrypted to disk (``av.open(f)`` plays it)."""
        ev = self._authorized("view", event_id, "file.read")
        rec = _export.checked(self.session, ev, [ev.file(name)], "file.read")[0]
        self._cat.audit.record(self._actor(), "file.read", ev.id, "ok", {"file_id": rec.id})
        with self._files(ev.id) as files, files.reader(rec.store_key) as r:
            yield r

    # ---- export / play ---------------------------------------------------------------------
    def _outside_home(self, path: str | os.PathLike[str], what: str) -> Path:
        check_text(os.fspath(path), what) if isinstance(path, str) else None
        p = Path(path).expanduser().absolute()
        if self._cat.home.contains(p):
            raise CatalogError(f"{what} {p} lies inside SURGBOX_HOME; write it outside (plaintext must not rest in the home)")
        return p

    def export(self, event_id: str, directory: str | os.PathLike[str], *, key_file: str | os.PathLike[str] | None = None,
               names: Sequence[str] | None = None, file_mode: int = _export.FILE_MODE) -> ExportResult:
        """Copy an event's files out of the box (``export``), verifying every SHA-256.

        Without ``key_file``: plaintext files plus ``event.json`` (the case data) and ``SHA256SUMS``
        (``sha256sum -c`` format). With ``key_file`` (a 32-byte key file, see ``surgbox crypt``):
        each file is re-encrypted as ``NAME.enc`` in Tink's streaming format with associated data
        ``NAME``, read back and verified; ``event.json.enc`` likewise. Files appear only once
        verified (temporary name + rename), with mode ``file_mode`` (default 0600: owner only). The
        directory must not lie inside SURGBOX_HOME."""
        ev = self._authorized("export", event_id, "event.export")
        dest = self._outside_home(directory, "export folder")
        names, mode = _export.readable(self.session, ev, names, "event.export"), _export.check_file_mode(file_mode)
        with self._files(ev.id) as files:
            written, total, n = _export.export_files(ev, files, dest, key_file=key_file, names=names, mode=mode)
        self._cat.audit.record(self._actor(), "event.export", ev.id, "ok",
                               {"files": n, "bytes": total, "encrypted": key_file is not None})
        return ExportResult(ev.id, dest, tuple(written), total, key_file is not None)

    def play(self, event_id: str, player: Sequence[str] | None = None, *, names: Sequence[str] | None = None) -> int:
        """Pipe the decrypted files (default: the segments, in name order) into ``player``'s stdin
        one run per file (``view``); nothing touches the disk. Returns the last exit status; stops
        early when the player exits non-zero. Each file's SHA-256 is checked as it streams.

        A player gets the plaintext and could keep it: users who may ``export`` the event may use
        any ``player``; others only one of the admin's ``[play] players`` (config.toml, default
        :data:`~surgbox.catalog.export.DEFAULT_PLAYERS`), argument for argument. ``player`` None:
        the first installed one of those."""
        ev = self._authorized("view", event_id, "event.play")
        recs = _export.checked(self.session, ev, _export.playable(ev, names), "event.play")
        vetted = _export.vetted_players(self._cat.home.play_settings().get("players"))
        cmd = _export.choose_player(player, vetted)
        if cmd not in vetted and not self.session.can("export", ev):
            self.session.authorize("export", ev, operation="event.play",
                                   hint=f"player {' '.join(cmd)!r} is not one of the players the admin set "
                                        f"(config.toml [play] players); without the export permission play "
                                        f"through one of those (leave out --player)")
        self._cat.audit.record(self._actor(), "event.play", ev.id, "ok",
                               {"files": [f.id for f in recs], "vetted_player": cmd in vetted})
        with self._files(ev.id) as files:
            return _export.stream_to_player(files, recs, cmd)

    # ---- de-identification -------------------------------------------------------------------
    def deidentify(self, event_id: str, names: Sequence[str] | None = None, *, replace: bool = False,
                   progress: Any = None, runner: Any = None, **options: Any) -> list[FileRecord]:
        """De-identify the event's recordings (``names``, default every segment) into new ``deid``
        files of the event, straight from the encrypted store into the encrypted store: no
        plaintext on disk (``deidentify`` and ``view``; see :mod:`.deid`). ``options`` go to
        :func:`surgbox.deid.deidentify` (``region``, ``detector``, ``threshold`` ...); ``replace``
        replaces earlier copies (both audited); ``runner``: see :func:`.deid.run`. Returns the new file records."""
        ev = self._authorized("deidentify", event_id, "event.deidentify")
        self.session.authorize("view", ev, operation="event.deidentify")
        recs = _export.checked(self.session, ev, _deid.sources(ev, names), "event.deidentify")

        def register(src: FileRecord, name: str, key: str, size: int, sha256: str, result: Any,
                     replaced: list[FileRecord]) -> FileRecord:
            rec = self._insert_file(ev, "deid", name, key, size, sha256, files.key_id, replaces=replaced)
            self._cat.audit.record(self._actor(), "event.deidentify", ev.id, "ok",
                                   {"source_file_id": src.id, "file_id": rec.id, "frames": result.frames,
                                    "faces": result.faces, "seconds": round(result.seconds, 3)})
            for old in replaced:
                with contextlib.suppress(Exception):
                    files.inner.delete(old.store_key)
            return rec

        with self._files(ev.id) as files:
            return list(_deid.run(ev, files, recs, replace=replace, register=register, progress=progress,
                                  plugins=self._cat.plugins, runner=runner, **options))

    # ---- delete / retention ----------------------------------------------------------------
    def delete(self, event_id: str) -> DeleteResult:
        """Delete an event (``delete``): destroy its data key and catalog rows in one transaction,
        checkpoint the WAL, then remove its store objects (best effort; they are unreadable anyway)."""
        ev = self._authorized("delete", event_id, "event.delete")
        return _retention.delete_event(self._cat, self._actor(), ev.id, "request")

    def retention(self, keep_days: float, *, dry_run: bool = False) -> list[str]:
        """Delete every **stopped** event that finished more than ``keep_days`` days ago (``delete``),
        and store objects of events no longer in the catalog. Returns the ids (to be) deleted.
        Events never started (``created``) or still recording are never deleted by retention."""
        me = self.session.authorize("delete", operation="event.retention")
        ids = _retention.expired(self._cat.db, self._cat.now(), keep_days)
        self._cat.audit.record(me.name, "event.retention", None, "ok",
                               {"keep_days": keep_days, "events": len(ids), "dry_run": dry_run})
        if dry_run:
            return ids
        for eid in ids:
            _retention.delete_event(self._cat, me.name, eid, f"retention {keep_days:g} days")
        _retention.sweep_orphans(self._cat)
        return ids

    # ---- reports --------------------------------------------------------------------------
    def _render(self, ev: Event) -> bytes:
        settings, plugins = self._cat.home.report_settings(), self._cat.plugins
        if not any(f.kind in ("snapshot", "data", "segment") for f in ev.files):
            return _reports.render(ev, None, settings, plugins)
        with self._files(ev.id) as files:
            return _reports.render(ev, files, settings, plugins)

    def report_pdf(self, event_id: str) -> bytes:
        """Render the event's PDF report (``view``) from the catalog and its stored snapshots and
        data tracks; returns the PDF bytes (not stored; see :meth:`make_report`)."""
        ev = self._authorized("view", event_id, "report.render")
        pdf = self._render(ev)
        self._cat.audit.record(self._actor(), "report.render", ev.id, "ok", {"bytes": len(pdf)})
        return pdf

    def make_report(self, event_id: str) -> FileRecord:
        """Render the report and store it encrypted as the event's ``report`` file (``record``),
        replacing the previous report (both stay in the audit trail)."""
        ev = self._authorized("record", event_id, "report.create")
        return self._store_report(ev)[0]

    def save_report(self, event_id: str, out: str | os.PathLike[str]) -> FileRecord:
        """Store a fresh report (``record``) and also write it to ``out`` (plaintext outside the
        box: ``export``), atomically with mode 0600; ``out`` must not exist."""
        ev = self._authorized("export", event_id, "report.export")
        self.session.authorize("record", ev, operation="report.create")
        out = _export.check_new_file(self._outside_home(out, "report"), "report", "report.pdf")
        rec, pdf = self._store_report(ev)
        try:  # PHI: owner only; complete or absent even after a crash; never over a file that appeared meanwhile
            _export.atomic_write(out, pdf, mode=0o600, exclusive=True)
        except OSError as exc:
            raise CatalogError(f"cannot write the report to {out}: {exc.strerror or exc}; free space or "
                               f"choose another place (the report is stored in the box as {rec.name})") from None
        self._cat.audit.record(self._actor(), "report.export", ev.id, "ok", {"file_id": rec.id})
        return rec

    def _store_report(self, ev: Event) -> tuple[FileRecord, bytes]:
        pdf = self._render(ev)
        old = [f for f in ev.files if f.kind == "report"]
        rec = self._write_file(ev, "report", _reports.report_name(ev, self._cat.now()), pdf, replaces=old)
        if old:
            with contextlib.suppress(Exception), self._files(ev.id) as files:
                for f in old:
                    files.inner.delete(f.store_key)
        return rec, pdf


__all__ = ["FILE_KINDS", "MAX_KEEP_DAYS", "DeleteResult", "Event", "EventManager", "ExportResult", "FileRecord",
           "RecoverResult"]
