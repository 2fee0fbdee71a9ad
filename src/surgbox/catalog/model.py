"""The catalog's values: :class:`Event`, :class:`FileRecord` and the results of operations, with
the checks every name and text that enters the catalog passes (one line naming the fix)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from .errors import CatalogError, NotFoundError

FILE_KINDS = ("segment", "snapshot", "data", "report", "deid", "raw")  # raw: needs view_raw to read
STATUSES = ("created", "recording", "stopped")
PHI_FIELDS = ("patient", "medical_record", "physician", "notes")
EVENT_ID = re.compile(r"^ev-\d{8}-[0-9a-f]{8}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_TEXT = 65536  # characters of one text field (notes included)


def check_file_name(name: str) -> str:
    """``name`` if it is a valid file name of an event (1-128 letters, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        raise CatalogError(f"file name {name!r} is not valid: use 1-128 letters, digits, '.', '_' or '-' "
                           f"(no folders), e.g. 'segment-0001.mp4'")
    return name


def check_kind(kind: str) -> str:
    if kind not in FILE_KINDS:
        raise CatalogError(f"file kind {kind!r} is not one of {', '.join(FILE_KINDS)}")
    return kind


def check_text(value: Any, label: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    """``value`` if it is text the catalog can store: a ``str`` that encodes as UTF-8 (no lone
    surrogates, which is what invalid UTF-8 on a command line becomes), at most ``limit``
    characters, not blank when ``required``. Otherwise one :class:`CatalogError` naming ``label``."""
    if not isinstance(value, str):
        raise CatalogError(f"the {label} must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CatalogError(f"the {label} is not valid UTF-8 text (a byte sequence that is no character); "
                           f"retype it, or check the terminal's encoding (LANG=C.UTF-8)") from None
    if len(value) > limit:
        raise CatalogError(f"the {label} is {len(value)} characters long; the limit is {limit}")
    if required and not value.strip():
        raise CatalogError(f"the {label} is required (--{label.replace(' ', '-')} TEXT)")
    return value


@attrs.frozen
class FileRecord:
    """One stored file of an event. ``name`` is the file's name in the event (held encrypted in
    the catalog); ``store_key`` the object's generated key in the store (no name in it);
    ``sha256`` is of the plaintext; ``key_id`` names the event's data key."""

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


@attrs.frozen
class Event:
    """An event with its PHI decrypted (only ever handed to an authorized session).
    ``report_error``: why the last automatic report failed (``None`` once a report was made)."""

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
    report_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {"id": self.id, "status": self.status, "created_at": iso(self.created_at),
                "created_by": self.created_by, "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at), "place": self.place, "procedure": self.procedure,
                "patient": self.patient, "medical_record": self.medical_record,
                "physicians": list(self.physicians), "notes": self.notes,
                "report_error": self.report_error,
                "files": [f.to_dict() for f in self.files]}

    def file(self, name: str) -> FileRecord:
        """The file called ``name``; :class:`~.errors.NotFoundError` naming the fix if none."""
        for f in self.files:
            if f.name == name:
                return f
        raise NotFoundError(f"event {self.id} has no file {name!r}; `surgbox events show {self.id}` lists its files")


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
    from being registered); ``names`` maps a recovered object's store key to its file name."""

    event_id: str
    recovered: tuple[Any, ...]
    added: tuple[FileRecord, ...]
    names: dict[str, str] = attrs.field(factory=dict, eq=False)

    def name_of(self, store_key: str) -> str:
        """The event file name of a recovered write (its store key's last part when unknown)."""
        return self.names.get(store_key) or store_key.rsplit("/", 1)[-1]


@attrs.frozen
class ExportResult:
    """Files written by :meth:`EventManager.export` (``encrypted``: re-encrypted for another key)."""

    event_id: str
    directory: Path
    files: tuple[str, ...]
    bytes: int
    encrypted: bool
