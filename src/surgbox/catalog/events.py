"""Events (one surgery each) and their files: the event manager.

An event holds the case data (place, procedure, patient, medical record number, physicians,
notes; PHI encrypted, see :mod:`.phi`), its life cycle (``created`` -> ``recording`` ->
``stopped``) and its files (recording segments, snapshots, data tracks, reports,
de-identified copies), each stored encrypted in the configured store under
``events/<event id>/<name>`` with its size, SHA-256 of the plaintext and key id.

**Crypto-shredding.** Every event has its own random 256-bit data key. It is stored only
wrapped (AES-256-GCM under a key derived from the master key, associated data = the event id)
in ``event_keys``, and every file of the event is encrypted with it (the store's Tink streams
derive a per-file key from it). Deleting an event destroys the wrapped key first (in the same
transaction as the catalog rows, with ``secure_delete`` and a WAL checkpoint so no copy remains
in the database files): from then on every copy of its files, on every disk and backup of the
store, is unreadable, even if removing the objects themselves fails.

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
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._fs import atomic_write, fsync_dir
from ..errors import IntegrityError, StoreError, SurgboxError
from ..interfaces import Store
from .db import from_text, to_text
from .errors import CatalogError, NotFoundError
from .phi import words

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

log = logging.getLogger(__name__)

FILE_KINDS = ("segment", "snapshot", "data", "report", "deid")
STATUSES = ("created", "recording", "stopped")
PHI_FIELDS = ("patient", "medical_record", "physician", "notes")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EVENT_ID = re.compile(r"^ev-\d{8}-[0-9a-f]{8}$")
_CHUNK = 1 << 20
MAX_KEEP_DAYS = 36525  # 100 years: the longest retention period (keeps dates in range)
_KEY_AAD = b"surgbox/event-key/v1:"


def wrap_key(kek: bytes, event_id: str, key: bytes) -> bytes:
    """``nonce || AES-256-GCM(kek, key, aad = "surgbox/event-key/v1:" + event id)``."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, key, _KEY_AAD + event_id.encode())


def unwrap_key(kek: bytes, event_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(bytes(wrapped[:12]), bytes(wrapped[12:]), _KEY_AAD + event_id.encode())
    except InvalidTag:
        raise IntegrityError(f"the data key of event {event_id} does not unwrap: the catalog was altered or the "
                             f"master key is not the one that wrote it") from None


def check_file_name(name: str) -> str:
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        raise CatalogError(f"file name {name!r} is not valid: use 1-128 letters, digits, '.', '_' or '-' "
                           f"(no folders, no patient data), e.g. 'segment-0001.mp4'")
    return name


def store_key(event_id: str, name: str) -> str:
    """Where a file of an event lives in the store."""
    return f"events/{event_id}/{name}"


@attrs.frozen
class FileRecord:
    """One stored file of an event. ``sha256`` is of the plaintext; ``key_id`` names the event's data key."""

    id: int
    event_id: str
    kind: str
    name: str
    store_key: str
    size: int
    sha256: str
    key_id: str
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event_id": self.event_id, "kind": self.kind, "name": self.name,
                "store_key": self.store_key, "size": self.size, "sha256": self.sha256, "key_id": self.key_id,
                "created_at": self.created_at.isoformat() if self.created_at else None}

    @classmethod
    def from_row(cls, r: Any) -> FileRecord:
        return cls(r["id"], r["event_id"], r["kind"], r["name"], r["store_key"], r["size"], r["sha256"],
                   r["key_id"], from_text(r["created_at"]))


@attrs.frozen
class Event:
    """An event with its PHI decrypted (only ever handed to an authorized session)."""

    id: str
    status: str
    created_at: datetime
    place: str
    procedure: str
    patient: str
    medical_record: str
    physicians: tuple[str, ...] = attrs.field(converter=tuple, default=())
    notes: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_by: str | None = None
    files: tuple[FileRecord, ...] = attrs.field(converter=tuple, default=())
    created_by_id: int | None = attrs.field(default=None, repr=False)
    physician_hashes: frozenset[bytes] = attrs.field(default=frozenset(), repr=False, eq=False)

    def to_dict(self) -> dict[str, Any]:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {"id": self.id, "status": self.status, "created_at": iso(self.created_at),
                "created_by": self.created_by, "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at), "place": self.place, "procedure": self.procedure,
                "patient": self.patient, "medical_record": self.medical_record,
                "physicians": list(self.physicians), "notes": self.notes,
                "files": [f.to_dict() for f in self.files]}


@attrs.frozen
class DeleteResult:
    """What :meth:`EventManager.delete` did: the key was destroyed; ``objects_deleted`` store objects
    removed; ``objects_left`` could not be removed (unreadable without the key; retention sweeps them)."""

    event_id: str
    objects_deleted: int
    objects_left: tuple[str, ...] = ()


@attrs.frozen
class RecoverResult:
    """What :meth:`EventManager.recover` did: ``recovered`` the store's results for the event's
    unfinished writes (``Recovered``: key, plaintext size, segments, action ...), ``added`` the
    file records of the objects it added to the catalog (the recording's files the crash kept
    from being registered)."""

    event_id: str
    recovered: tuple[Any, ...]
    added: tuple[FileRecord, ...]


@attrs.frozen
class ExportResult:
    """Files written by :meth:`EventManager.export` (``encrypted``: re-encrypted for another key)."""

    event_id: str
    directory: Path
    files: tuple[str, ...]
    bytes: int
    encrypted: bool


def _parse_when(value: str | date | datetime | None, *, end: bool) -> str | None:
    """A search bound as catalog time text: a date means that whole local day (``end``: its end)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise CatalogError(f"date {value!r} is not YYYY-MM-DD or an ISO date-time (2026-11-05T14:30)") from None
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.astimezone()
    else:
        when = datetime.combine(value + timedelta(days=1) if end else value, time()).astimezone()
    return to_text(when)


class _EventStore(Store):
    """A store view whose keys are the file names of one event (prefix ``events/<id>/``),
    encrypting with the event's data key. Closing it closes the underlying store."""

    def __init__(self, inner: Any, event_id: str, key_id: str):
        self.inner, self.event_id, self.key_id = inner, event_id, key_id
        self.prefix = f"events/{event_id}/"

    def writer(self, key: str, metadata: Mapping[str, str] | None = None, **options: Any) -> IO[bytes]:
        """``options`` go to the underlying store's writer (e.g. ``segment_size``)."""
        return self.inner.writer(self.prefix + check_file_name(key), metadata, **options)

    def reader(self, key: str) -> IO[bytes]:
        return self.inner.reader(self.prefix + check_file_name(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter([k[len(self.prefix):] for k in self.inner.keys(self.prefix + prefix)])

    def delete(self, key: str) -> None:
        self.inner.delete(self.prefix + check_file_name(key))

    def status(self) -> Mapping[str, Any]:
        return self.inner.status()

    def open(self) -> None:
        pass  # opened by EventManager.store_for

    def close(self) -> None:
        self.inner.close()


@attrs.define(eq=False)
class EventManager:
    """Event operations for one :class:`~surgbox.catalog.session.Session`; every method checks
    the session's permissions first and audits what it did (event ids only, never PHI)."""

    session: Session

    @property
    def _cat(self) -> Any:
        return self.session.catalog

    def _actor(self) -> str:
        return self.session.user.name

    # ---- loading --------------------------------------------------------------------------
    def _event_from_row(self, row: Any, with_files: bool = True) -> Event:
        phi, db = self._cat.phi, self._cat.db
        eid = row["id"]
        phys = db.query("SELECT position, name_enc, name_hash FROM event_physicians WHERE event_id = ? ORDER BY position", (eid,))
        files = ()
        if with_files:
            files = tuple(FileRecord.from_row(r) for r in db.query("SELECT * FROM files WHERE event_id = ? ORDER BY kind, name", (eid,)))
        return Event(
            id=eid, status=row["status"], created_at=from_text(row["created_at"]), place=row["place"],
            procedure=row["procedure"], patient=phi.decrypt(row["patient_enc"], f"events.patient:{eid}"),
            medical_record=phi.decrypt(row["mrn_enc"], f"events.medical_record:{eid}"),
            physicians=[phi.decrypt(p["name_enc"], f"events.physician:{eid}:{p['position']}") for p in phys],
            notes=phi.decrypt(row["notes_enc"], f"events.notes:{eid}") if row["notes_enc"] is not None else "",
            started_at=from_text(row["started_at"]), finished_at=from_text(row["finished_at"]),
            created_by=row["created_by_name"], files=files, created_by_id=row["created_by"],
            physician_hashes=frozenset(bytes(p["name_hash"]) for p in phys),
        )

    _SELECT = "SELECT e.*, u.name AS created_by_name FROM events e LEFT JOIN users u ON u.id = e.created_by"

    def _load(self, event_id: str) -> Event:
        row = self._cat.db.query_one(f"{self._SELECT} WHERE e.id = ?", (event_id,))
        if row is None:
            raise NotFoundError(f"no event {event_id!r}; `surgbox events list` shows the events you may see")
        return self._event_from_row(row)

    def _authorized(self, action: str, event_id: str, operation: str) -> Event:
        try:
            ev = self._load(event_id)
        except NotFoundError:
            # a refusal must not reveal whether the id exists
            self.session.authorize(action, operation=operation)
            self._cat.audit.record(self._actor(), operation, event_id if _EVENT_ID.match(event_id or "") else "?",
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
            if not isinstance(value, str) or not value.strip():
                raise CatalogError(f"the {label} is required (--{label.replace(' ', '-')} TEXT)")
        physicians = [p.strip() for p in physicians if p and p.strip()]
        cat, phi = self._cat, self._cat.phi
        now = cat.now()
        eid = f"ev-{now.astimezone(timezone.utc):%Y%m%d}-{secrets.token_hex(4)}"
        data_key = os.urandom(32)
        from ..crypto.keys import key_id_of

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
                      (eid, key_id_of(data_key), cat.wrap_event_key(eid, data_key)))
            cat.audit.append(c, me.name, "event.create", eid, "ok",
                             {"physicians": len(physicians), "notes": bool(notes)})
        return self._load(eid)

    def _transition(self, event_id: str, operation: str, frm: tuple[str, ...], to: str, column: str) -> Event:
        ev = self._authorized("record", event_id, operation)
        cat = self._cat
        with cat.db.transaction() as c:
            row = c.execute("SELECT status FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None or row["status"] not in frm:
                status = row["status"] if row else "deleted"
                raise CatalogError(f"event {event_id} is {status}; {operation.split('.')[1]} needs status {' or '.join(frm)}")
            now = to_text(cat.now())
            c.execute(f"UPDATE events SET status = ?, {column} = ?, updated_at = ? WHERE id = ?", (to, now, now, event_id))
            cat.audit.append(c, self._actor(), operation, ev.id, "ok", {"status": to})
        return self._load(event_id)

    def start_event(self, event_id: str) -> Event:
        """Mark the event ``recording`` (sets ``started_at``). Needs ``record``."""
        return self._transition(event_id, "event.start", ("created",), "recording", "started_at")

    def stop_event(self, event_id: str, *, report: bool = True) -> Event:
        """Mark the event ``stopped`` (sets ``finished_at``) and, with ``report``, render and store its
        PDF report (a failure there is logged and audited, the stop still holds)."""
        ev = self._transition(event_id, "event.stop", ("recording", "created"), "stopped", "finished_at")
        if report:
            try:
                self._store_report(ev)
            except Exception as exc:  # the stop must hold even when the report cannot be made now
                log.error("event %s: the PDF report could not be made (%s); make it later with "
                          "`surgbox report %s`", event_id, exc, event_id)
                self._cat.audit.record(self._actor(), "report.create", event_id, "failed",
                                       {"error": type(exc).__name__})
            ev = self._load(event_id)
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
        whole local days. ``place``/``procedure``: substring, accent- and case-insensitive.
        ``patient``/``physician``: the whole name or all of its words. ``medical_record``: exact
        (normalized). ``text``: every word must occur in some field (PHI fields match whole words,
        place/procedure/id substrings)."""
        me = self.session.authorize("view", operation="event.search")
        if not isinstance(limit, int) or not 1 <= limit <= 1_000_000:
            raise CatalogError(f"--limit must be a whole number from 1 to 1000000, got {limit!r}")
        phi = self._cat.phi
        where, params = ["1"], []
        lo, hi = _parse_when(date_from, end=False), _parse_when(date_to, end=True)
        if lo:
            where.append("coalesce(e.started_at, e.created_at) >= ?")
            params.append(lo)
        if hi:
            where.append("coalesce(e.started_at, e.created_at) < ?")
            params.append(hi)
        for column, value in (("place", place), ("procedure", procedure)):
            if value:
                where.append(f"instr(sb_norm(e.{column}), ?) > 0")
                params.append(phi_norm(value))
        if status:
            if status not in STATUSES:
                raise CatalogError(f"status {status!r} is not one of {', '.join(STATUSES)}")
            where.append("e.status = ?")
            params.append(status)
        if medical_record:
            where.append("e.mrn_hash = ?")
            params.append(phi.blind("medical_record", medical_record))
        tok = "e.id IN (SELECT event_id FROM event_tokens WHERE token = ? AND field = ?)"
        if patient:
            ws = words(patient)
            where.append("(e.patient_hash = ? OR (" + " AND ".join([tok] * len(ws) or ["0"]) + "))")
            params.append(phi.blind("patient", patient))
            for w in ws:
                params += [phi.token("patient", w), "patient"]
        if physician:
            ws = words(physician)
            where.append("(EXISTS (SELECT 1 FROM event_physicians p WHERE p.event_id = e.id AND p.name_hash = ?) OR ("
                         + " AND ".join([tok] * len(ws) or ["0"]) + "))")
            params.append(phi.blind("physician", physician))
            for w in ws:
                params += [phi.token("physician", w), "physician"]
        for w in words(text or ""):
            where.append("(e.id IN (SELECT event_id FROM event_tokens WHERE token IN (?, ?, ?, ?))"
                         " OR instr(sb_norm(e.place), ?) > 0 OR instr(sb_norm(e.procedure), ?) > 0 OR instr(e.id, ?) > 0)")
            params += [phi.token(f, w) for f in PHI_FIELDS] + [w, w, w]
        if _own_only(me.role, "view"):
            where.append("(e.created_by = ? OR EXISTS (SELECT 1 FROM event_physicians p "
                         "WHERE p.event_id = e.id AND p.name_hash = ?))")
            params += [me.id, me.physician_hash or b""]
        sql = (f"{self._SELECT} WHERE {' AND '.join(where)} "
               f"ORDER BY coalesce(e.started_at, e.created_at) DESC, e.id LIMIT ?")
        params.append(limit)
        rows = self._cat.db.query(sql, params)
        events = [self._event_from_row(r, with_files=False) for r in rows]
        events = [e for e in events if self.session.can("view", e)]  # defence in depth
        used = sorted(k for k, v in {"date_from": date_from, "date_to": date_to, "place": place, "procedure": procedure,
                                     "physician": physician, "patient": patient, "medical_record": medical_record,
                                     "text": text, "status": status}.items() if v)
        self._cat.audit.record(me.name, "event.search", None, "ok", {"filters": used, "results": len(events)})
        return events

    # ---- files ----------------------------------------------------------------------------
    def _data_key(self, event_id: str) -> tuple[bytes, str]:
        row = self._cat.db.query_one("SELECT key_id, wrapped FROM event_keys WHERE event_id = ?", (event_id,))
        if row is None:
            raise CatalogError(f"event {event_id} has no data key (it was destroyed); its files cannot be read")
        return self._cat.unwrap_event_key(event_id, bytes(row["wrapped"])), row["key_id"]

    def _open_store(self, event_id: str) -> _EventStore:
        from ..crypto.keys import KeyRing, MasterKey

        key, key_id = self._data_key(event_id)
        inner = self._cat.make_store(KeyRing.of(MasterKey(key, f"event {event_id}")))
        return _EventStore(inner, event_id, key_id)

    def store_for(self, event_id: str) -> Store:
        """An opened :class:`~surgbox.interfaces.Store` for writing this event's files (``record``):
        keys are plain file names, objects are encrypted with the event's data key. Register what
        you wrote with :meth:`add_file`. Close it when done."""
        ev = self._authorized("record", event_id, "event.store")
        return self._open_store(ev.id)

    def add_file(self, event_id: str, kind: str, name: str, *, size: int | None = None, sha256: str | None = None) -> FileRecord:
        """Record a file already written through :meth:`store_for` (``record``). Without ``size``
        and ``sha256`` they are computed by reading the object back (which also authenticates it)."""
        ev = self._authorized("record", event_id, "file.add")
        if kind not in FILE_KINDS:
            raise CatalogError(f"file kind {kind!r} is not one of {', '.join(FILE_KINDS)}")
        check_file_name(name)
        with self._open_store(ev.id) as store:
            if size is None or sha256 is None:
                h, size = hashlib.sha256(), 0
                with store.reader(name) as r:
                    while chunk := r.read(_CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                sha256 = h.hexdigest()
            key_id = store.key_id
        return self._insert_file(ev.id, kind, name, size, sha256, key_id)

    _RECORDING_KINDS = {"segment": "segment", "snapshot": "snapshot", "data": "data", "sidecar": "data"}

    def recover(self, event_id: str) -> RecoverResult:
        """Recover an event recording that crashed (``kill -9``, power loss; ``record``).

        Runs the store's :meth:`~surgbox_ext.store.EncryptedStore.recover` with the event's data
        key, so the unfinished writes of this event (video, data track) become objects holding
        their longest authentic prefix (writes of other keys are left alone), then adds every
        object of the event's recording that the catalog does not list yet (by its store
        metadata ``kind``: segment, snapshot, data track, sidecar) with its size and SHA-256
        (read back, which authenticates it). The event keeps its status: stop it with
        :meth:`stop_event` to make the report. Safe to run again (nothing left: nothing done).
        """
        from ..crypto.keys import KeyRing, MasterKey

        ev = self._authorized("record", event_id, "event.recover")
        key, _key_id = self._data_key(ev.id)
        prefix = f"events/{ev.id}/"
        inner = self._cat.make_store(KeyRing.of(MasterKey(key, f"event {ev.id}")))
        try:
            recovered = tuple(r for r in inner.recover() if r.key.startswith(prefix))
            listed = {f.name for f in ev.files}
            missing = []
            for k in sorted(inner.keys(prefix)):
                name = k[len(prefix):]
                kind = self._RECORDING_KINDS.get(str(inner.info(k).metadata.get("kind")))
                if name not in listed and kind is not None:
                    missing.append((kind, name))
        finally:
            inner.close()
        added = tuple(self.add_file(ev.id, kind, name) for kind, name in missing)
        failed = [r for r in recovered if r.action in ("failed", "no-key")]
        self._cat.audit.record(self._actor(), "event.recover", ev.id, "failed" if failed else "ok",
                               {"recovered": sum(r.action == "recovered" for r in recovered),
                                "failed": len(failed), "files_added": len(added)})
        return RecoverResult(ev.id, recovered, added)

    def _insert_file(self, event_id: str, kind: str, name: str, size: int, sha256: str, key_id: str) -> FileRecord:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            raise CatalogError(f"sha256 {sha256!r} is not 64 lowercase hex digits")
        cat = self._cat
        with cat.db.transaction() as c:
            try:
                cur = c.execute("INSERT INTO files(event_id, kind, name, store_key, size, sha256, key_id, created_at)"
                                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (event_id, kind, name, store_key(event_id, name), int(size), sha256, key_id, to_text(cat.now())))
            except Exception as exc:
                if "UNIQUE" in str(exc):
                    raise CatalogError(f"event {event_id} already has a file named {name!r}") from None
                raise
            cat.audit.append(c, self._actor(), "file.add", event_id, "ok",
                             {"file_id": cur.lastrowid, "kind": kind, "name": name, "size": int(size), "sha256": sha256})
        return FileRecord.from_row(cat.db.query_one("SELECT * FROM files WHERE id = ?", (cur.lastrowid,)))

    def write_file(self, event_id: str, kind: str, name: str, data: bytes | IO[bytes]) -> FileRecord:
        """Encrypt ``data`` (bytes or a readable binary stream) into the store as a file of the
        event and record it (``record``; reports and de-identified copies need ``view``/``deidentify``)."""
        action = {"report": "view", "deid": "deidentify"}.get(kind, "record")
        ev = self._authorized(action, event_id, "file.add")
        return self._write_file(ev.id, kind, name, data)

    def _write_file(self, event_id: str, kind: str, name: str, data: bytes | IO[bytes]) -> FileRecord:
        if kind not in FILE_KINDS:
            raise CatalogError(f"file kind {kind!r} is not one of {', '.join(FILE_KINDS)}")
        check_file_name(name)
        h, size = hashlib.sha256(), 0
        with self._open_store(event_id) as store:
            with store.writer(name, {"kind": kind}) as w:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    w.write(data)
                    h.update(data)
                    size = len(data)
                else:
                    while chunk := data.read(_CHUNK):
                        w.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
            key_id = store.key_id
        return self._insert_file(event_id, kind, name, size, h.hexdigest(), key_id)

    def _file(self, ev: Event, name: str) -> FileRecord:
        for f in ev.files:
            if f.name == name:
                return f
        raise NotFoundError(f"event {ev.id} has no file {name!r}; `surgbox events show {ev.id}` lists its files")

    @contextlib.contextmanager
    def open_file(self, event_id: str, name: str) -> Iterator[IO[bytes]]:
        """``with events.open_file(id, name) as f:`` a seekable plaintext stream (``view``);
        nothing is decrypted to disk (``av.open(f)`` plays it)."""
        ev = self._authorized("view", event_id, "file.read")
        rec = self._file(ev, name)
        self._cat.audit.record(self._actor(), "file.read", ev.id, "ok", {"file_id": rec.id})
        with self._open_store(ev.id) as store, store.reader(rec.name) as r:
            yield r

    def _copy_verified(self, store: _EventStore, rec: FileRecord, sink: Any) -> None:
        """Stream one file into ``sink.write`` and check its SHA-256 and size against the catalog."""
        h, n = hashlib.sha256(), 0
        with store.reader(rec.name) as r:
            while chunk := r.read(_CHUNK):
                h.update(chunk)
                n += len(chunk)
                sink(chunk)
        if h.hexdigest() != rec.sha256 or n != rec.size:
            raise IntegrityError(f"event {rec.event_id} file {rec.name}: SHA-256/size of the decrypted data "
                                 f"({h.hexdigest()[:16]}..., {n} bytes) differ from the catalog "
                                 f"({rec.sha256[:16]}..., {rec.size} bytes); run `surgbox store scrub`")

    # ---- export / play ---------------------------------------------------------------------
    def export(self, event_id: str, directory: str | os.PathLike[str], *, key_file: str | os.PathLike[str] | None = None,
               names: Sequence[str] | None = None) -> ExportResult:
        """Copy an event's files out of the box (``export``), verifying every SHA-256.

        Without ``key_file``: plaintext files plus ``event.json`` (the case data) and ``SHA256SUMS``
        (``sha256sum -c`` format). With ``key_file`` (a 32-byte key file, see ``surgbox crypt``):
        each file is re-encrypted as ``NAME.enc`` in Tink's streaming format with associated data
        ``NAME`` (decrypt with ``surgbox crypt decrypt --key-file KEY --aad NAME NAME.enc NAME``),
        read back and verified; ``event.json.enc`` likewise. Files appear only once verified
        (temporary name + rename). The directory must not lie inside SURGBOX_HOME."""
        ev = self._authorized("export", event_id, "event.export")
        dest = Path(directory).expanduser().absolute()
        if self._cat.home.contains(dest):
            raise CatalogError(f"export folder {dest} lies inside SURGBOX_HOME; export outside it "
                               f"(plaintext must not rest in the home)")
        files = [f for f in ev.files if names is None or f.name in names]
        if names is not None:
            missing = set(names) - {f.name for f in files}
            if missing:
                raise NotFoundError(f"event {ev.id} has no file(s) {sorted(missing)}")
        key = None
        if key_file is not None:
            from ..crypto.keys import load_key

            key = load_key(key_file).material
        try:
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CatalogError(f"cannot create the export folder {dest}: {exc.strerror or exc}; "
                               f"choose a writable folder (--to DIR)") from None
        written, total = [], 0
        meta = json.dumps(ev.to_dict(), indent=1, ensure_ascii=False).encode("utf-8")
        sums = []
        with self._open_store(ev.id) as store:
            for rec in files:
                out = dest / (rec.name + (".enc" if key else ""))
                _write_verified(out, key, rec.name, lambda sink, rec=rec: self._copy_verified(store, rec, sink), rec.sha256)
                written.append(out.name)
                sums.append(f"{rec.sha256}  {rec.name}\n")
                total += rec.size
        meta_name = "event.json" + (".enc" if key else "")
        _write_verified(dest / meta_name, key, "event.json", lambda sink: sink(meta), hashlib.sha256(meta).hexdigest())
        try:
            atomic_write(dest / "SHA256SUMS", "".join(sums).encode(), mode=0o600)
        except OSError as exc:
            raise CatalogError(f"cannot write {dest / 'SHA256SUMS'}: {exc.strerror or exc}; free space on that "
                               f"disk or choose another folder") from exc
        written += [meta_name, "SHA256SUMS"]
        self._cat.audit.record(self._actor(), "event.export", ev.id, "ok",
                               {"files": len(files), "bytes": total, "encrypted": key is not None})
        return ExportResult(ev.id, dest, tuple(written), total, key is not None)

    def play(self, event_id: str, player: Sequence[str], *, names: Sequence[str] | None = None) -> int:
        """Pipe the decrypted files (default: the segments, in name order) into ``player``'s stdin
        one run per file (``view``); nothing touches the disk. Returns the last exit status; stops
        early when the player exits non-zero. Each file's SHA-256 is checked as it streams."""
        ev = self._authorized("view", event_id, "event.play")
        if names:
            files = [self._file(ev, n) for n in names]
        else:
            files = sorted((f for f in ev.files if f.kind == "segment"), key=lambda f: f.name) or \
                sorted((f for f in ev.files if f.kind == "deid"), key=lambda f: f.name)
        if not files:
            raise NotFoundError(f"event {ev.id} has no recording to play; give a file with --file NAME")
        if not player or shutil.which(player[0]) is None:
            raise CatalogError(f"player {player[0] if player else '(none)'!r} is not installed; install ffplay (ffmpeg) "
                               f"or mpv, or give --player 'COMMAND ARGS' reading the media from standard input")
        self._cat.audit.record(self._actor(), "event.play", ev.id, "ok", {"files": [f.id for f in files]})
        rc = 0
        with self._open_store(ev.id) as store:
            for rec in files:
                proc = subprocess.Popen(list(player), stdin=subprocess.PIPE)
                try:
                    self._copy_verified(store, rec, proc.stdin.write)
                except BrokenPipeError:
                    log.info("player closed its input while playing %s", rec.name)
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
                    rc = proc.wait()
                if rc != 0:
                    break
        return rc

    # ---- delete / retention ----------------------------------------------------------------
    def delete(self, event_id: str) -> DeleteResult:
        """Delete an event (``delete``): destroy its data key and catalog rows in one transaction,
        checkpoint the WAL, then remove its store objects (best effort; they are unreadable anyway)."""
        ev = self._authorized("delete", event_id, "event.delete")
        return self._delete(ev.id, reason="request")

    def _delete(self, event_id: str, reason: str) -> DeleteResult:
        cat = self._cat
        with cat.db.transaction() as c:
            key_row = c.execute("SELECT key_id FROM event_keys WHERE event_id = ?", (event_id,)).fetchone()
            nfiles = c.execute("SELECT count(*) FROM files WHERE event_id = ?", (event_id,)).fetchone()[0]
            c.execute("DELETE FROM event_keys WHERE event_id = ?", (event_id,))
            c.execute("DELETE FROM events WHERE id = ?", (event_id,))
            cat.audit.append(c, self._actor(), "event.delete", event_id, "ok",
                             {"reason": reason, "files": nfiles, "key_id": key_row["key_id"] if key_row else None,
                              "key_destroyed": key_row is not None})
        cat.db.checkpoint()
        deleted, left = self._delete_objects(f"events/{event_id}/")
        return DeleteResult(event_id, deleted, tuple(left))

    def _delete_objects(self, prefix: str) -> tuple[int, list[str]]:
        from ..crypto.keys import KeyRing, MasterKey

        deleted, left = 0, []
        try:
            store = self._cat.make_store(KeyRing.of(MasterKey.generate()))  # deleting needs no key
        except Exception as exc:
            log.error("store unavailable while deleting %s (%s); the objects stay, unreadable", prefix, exc)
            return 0, [prefix + "*"]
        try:
            for k in list(store.keys(prefix)):
                try:
                    store.delete(k)
                    deleted += 1
                except (StoreError, OSError) as exc:
                    log.error("could not delete store object %s (%s); it is unreadable without its key", k, exc)
                    left.append(k)
        finally:
            store.close()
        return deleted, left

    def retention(self, keep_days: float, *, dry_run: bool = False) -> list[str]:
        """Delete every stopped event that finished more than ``keep_days`` days ago (``delete``),
        and store objects of events no longer in the catalog. Returns the ids (to be) deleted.
        Events still recording are never deleted."""
        me = self.session.authorize("delete", operation="event.retention")
        if not isinstance(keep_days, (int, float)) or not 0 <= keep_days <= MAX_KEEP_DAYS:  # also refuses NaN
            raise CatalogError(f"--keep-days must be a number of days from 0 to {MAX_KEEP_DAYS}, got {keep_days}")
        cutoff = to_text(self._cat.now() - timedelta(days=keep_days))
        rows = self._cat.db.query(
            "SELECT id FROM events WHERE status != 'recording' AND coalesce(finished_at, created_at) < ? ORDER BY id",
            (cutoff,))
        ids = [r["id"] for r in rows]
        self._cat.audit.record(me.name, "event.retention", None, "ok",
                               {"keep_days": keep_days, "events": len(ids), "dry_run": dry_run})
        if dry_run:
            return ids
        for eid in ids:
            self._delete(eid, reason=f"retention {keep_days:g} days")
        self._sweep_orphans()
        return ids

    def _sweep_orphans(self) -> int:
        from ..crypto.keys import KeyRing, MasterKey

        try:
            store = self._cat.make_store(KeyRing.of(MasterKey.generate()))
        except Exception as exc:
            log.error("store unavailable for the orphan sweep: %s", exc)
            return 0
        known = {r["id"] for r in self._cat.db.query("SELECT id FROM events")}
        removed = 0
        try:
            for k in list(store.keys("events/")):
                parts = k.split("/")
                if len(parts) >= 3 and parts[1] not in known:
                    with contextlib.suppress(StoreError, OSError):
                        store.delete(k)
                        removed += 1
        finally:
            store.close()
        if removed:
            log.info("removed %d store objects of deleted events", removed)
        return removed

    # ---- reports --------------------------------------------------------------------------
    def report_pdf(self, event_id: str) -> bytes:
        """Render the event's PDF report (``view``) from the catalog and its stored snapshots and
        data tracks; returns the PDF bytes (not stored; see :meth:`make_report`)."""
        ev = self._authorized("view", event_id, "report.render")
        pdf = self._render_report(ev)
        self._cat.audit.record(self._actor(), "report.render", ev.id, "ok", {"bytes": len(pdf)})
        return pdf

    def make_report(self, event_id: str) -> FileRecord:
        """Render the report and store it encrypted as a ``report`` file of the event (``view``)."""
        ev = self._authorized("view", event_id, "report.create")
        return self._store_report(ev)

    def save_report(self, event_id: str, out: str | os.PathLike[str]) -> FileRecord:
        """Store a fresh report and also write it to ``out`` (plaintext outside the box: ``export``)."""
        ev = self._authorized("export", event_id, "report.export")
        out = Path(out).expanduser().absolute()
        if self._cat.home.contains(out):
            raise CatalogError(f"{out} lies inside SURGBOX_HOME; write the report outside it")
        if out.is_dir():
            raise CatalogError(f"{out} is a folder; give the report's file name, e.g. {out / 'report.pdf'}")
        if not out.parent.is_dir():
            raise CatalogError(f"folder {out.parent} does not exist; create it or choose another place for the report")
        rec, pdf = self._store_report(ev, return_pdf=True)
        try:
            atomic_write(out, pdf, mode=0o600)  # PHI: owner only; complete or absent even after a crash
        except OSError as exc:
            raise CatalogError(f"cannot write the report to {out}: {exc.strerror or exc}; free space or "
                               f"choose another place (the report is stored in the box as {rec.name})") from None
        self._cat.audit.record(self._actor(), "report.export", ev.id, "ok", {"file_id": rec.id})
        return rec

    def _store_report(self, ev: Event, *, return_pdf: bool = False) -> Any:
        pdf = self._render_report(ev)
        stamp = self._cat.now().astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
        taken = {f.name for f in self._load(ev.id).files}
        name, n = f"report-{stamp}.pdf", 1
        while name in taken:
            n += 1
            name = f"report-{stamp}-{n}.pdf"
        rec = self._write_file(ev.id, "report", name, pdf)
        return (rec, pdf) if return_pdf else rec

    def _render_report(self, ev: Event) -> bytes:
        from ..report import ReportData, render_report

        snapshots: list[tuple[str, bytes]] = []
        bis: list[tuple[float, float | None]] = []
        wanted = [f for f in ev.files if f.kind in ("snapshot", "data")]
        if wanted:
            with self._open_store(ev.id) as store:
                for f in wanted:
                    try:
                        with store.reader(f.name) as r:
                            if f.kind == "snapshot" and len(snapshots) < 12:
                                snapshots.append((f.name, r.read()))
                            elif f.kind == "data" and not f.name.endswith(".json"):  # not a recording's JSON sidecar
                                bis += _bis_series(r)
                    except (SurgboxError, OSError) as exc:
                        log.warning("report of %s: cannot read %s (%s); left out", ev.id, f.name, exc)
        return render_report(ReportData(event=ev, snapshots=snapshots, bis=sorted(bis, key=lambda p: p[0])))


def phi_norm(text: str) -> str:
    from .phi import normalize

    return normalize(text)


def _own_only(role: str, action: str) -> bool:
    from .users import Scope, scope

    return scope(role, action) is Scope.OWN


def _bis_series(stream: IO[bytes]) -> list[tuple[float, float | None]]:
    """``[(t seconds, BIS)]`` of a data track read from a plaintext stream (a store reader:
    nothing is decrypted to disk)."""
    from ..readings import read_data_track

    return read_data_track(stream).series("BIS")


def _write_verified(path: Path, key: bytes | None, name: str, produce: Any, sha256: str) -> None:
    """Write plaintext (``key`` None) or a re-encrypted stream to ``path`` via a temporary file,
    check the plaintext SHA-256 (decrypting the written file back when encrypted), then rename."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as raw:
            if key is None:
                produce(raw.write)
            else:
                from ..crypto.streaming import EncryptingWriter

                w = EncryptingWriter.open(raw, key, name.encode("utf-8"))
                produce(w.write)
                w.close()
            raw.flush()
            os.fsync(raw.fileno())
        h = hashlib.sha256()
        if key is None:
            with open(tmp, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        else:
            from ..crypto.streaming import DecryptingReader

            with DecryptingReader.open(str(tmp), key, name.encode("utf-8")) as r:
                while chunk := r.read(_CHUNK):
                    h.update(chunk)
        if h.hexdigest() != sha256:
            raise IntegrityError(f"{path.name}: the written copy does not match SHA-256 {sha256[:16]}...; "
                                 f"check the destination disk and export again")
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise CatalogError(f"cannot write {path}: {exc.strerror or exc}; free space on that disk or "
                               f"choose another folder") from exc
        raise
