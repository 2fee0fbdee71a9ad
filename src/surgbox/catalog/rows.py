"""Catalog rows to values: :class:`~.model.Event` and :class:`~.model.FileRecord` with their PHI
and file names decrypted (only ever for an authorized session, see :mod:`.events`)."""

from __future__ import annotations

from typing import Any

from .db import Database, from_text
from .model import Event, FileRecord
from .phi import PhiCipher


def file_from_row(phi: PhiCipher, r: Any) -> FileRecord:
    """A ``files`` row; its name decrypted (``legacy_name`` for a schema 1 row not yet encrypted)."""
    name = phi.decrypt(r["name_enc"], f"files.name:{r['store_key']}") if r["name_enc"] is not None else r["legacy_name"]
    return FileRecord(r["id"], r["event_id"], r["kind"], name, r["store_key"], r["size"], r["sha256"],
                      r["key_id"], from_text(r["created_at"]))


def event_from_row(phi: PhiCipher, db: Database, row: Any, with_files: bool = True) -> Event:
    """An ``events`` row (joined with its creator's name), with its physicians and, with
    ``with_files``, its files sorted by kind and name."""
    eid = row["id"]
    phys = db.query("SELECT position, name_enc, name_hash FROM event_physicians WHERE event_id = ? ORDER BY position", (eid,))
    files: tuple[FileRecord, ...] = ()
    if with_files:
        recs = [file_from_row(phi, r) for r in db.query("SELECT * FROM files WHERE event_id = ?", (eid,))]
        files = tuple(sorted(recs, key=lambda f: (f.kind, f.name)))
    return Event(
        id=eid, status=row["status"], created_at=from_text(row["created_at"]), place=row["place"],
        procedure=row["procedure"], patient=phi.decrypt(row["patient_enc"], f"events.patient:{eid}"),
        medical_record=phi.decrypt(row["mrn_enc"], f"events.medical_record:{eid}"),
        physicians=[phi.decrypt(p["name_enc"], f"events.physician:{eid}:{p['position']}") for p in phys],
        notes=phi.decrypt(row["notes_enc"], f"events.notes:{eid}") if row["notes_enc"] is not None else "",
        started_at=from_text(row["started_at"]), finished_at=from_text(row["finished_at"]),
        created_by=row["created_by_name"], files=files, created_by_id=row["created_by"],
        physician_hashes=frozenset(bytes(p["name_hash"]) for p in phys), report_error=row["report_error"],
    )
