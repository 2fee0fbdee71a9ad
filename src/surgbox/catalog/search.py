"""Event search: the filters of :meth:`EventManager.search` as one SQL query over clear columns
and keyed hashes (PHI is never decrypted to search, see :mod:`.phi`).

>>> q = SearchFilters(procedure="chole", status="stopped")
>>> q.used()
['procedure', 'status']
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import attrs

from .db import to_text
from .errors import CatalogError
from .model import PHI_FIELDS, STATUSES, check_text
from .phi import PhiCipher, normalize, words

MAX_LIMIT = 1_000_000
SELECT_EVENTS = "SELECT e.*, u.name AS created_by_name FROM events e LEFT JOIN users u ON u.id = e.created_by"
# The dates a search bound may name: a whole local day must stay inside datetime's range.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9999, 12, 30)


def parse_when(value: str | date | datetime | None, *, end: bool) -> str | None:
    """A search bound as catalog time text: a date means that whole local day (``end``: its end).
    Dates outside 1900-01-01 .. 9999-12-30 are refused (one line naming the range)."""
    if value is None or value == "":
        return None
    shown = value
    if isinstance(value, str):
        check_text(value, "date")
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise CatalogError(f"date {shown!r} is not YYYY-MM-DD or an ISO date-time (2026-11-05T14:30)") from None
    day = value.date() if isinstance(value, datetime) else value
    if not FIRST_DAY <= day <= LAST_DAY:
        raise CatalogError(f"date {str(shown)!r} is out of range: give a date from {FIRST_DAY} to {LAST_DAY}, "
                           f"or leave the bound out")
    try:
        if isinstance(value, datetime):
            when = value if value.tzinfo else value.astimezone()
        else:
            when = datetime.combine(value + timedelta(days=1) if end else value, time()).astimezone()
        return to_text(when)
    except (OverflowError, ValueError):
        raise CatalogError(f"date {str(shown)!r} is out of range: give a date from {FIRST_DAY} to {LAST_DAY}") from None


@attrs.frozen
class SearchFilters:
    """The filters of a search (``None`` or empty: not used). See :meth:`EventManager.search`."""

    date_from: str | date | datetime | None = None
    date_to: str | date | datetime | None = None
    place: str | None = None
    procedure: str | None = None
    physician: str | None = None
    patient: str | None = None
    medical_record: str | None = None
    text: str | None = None
    status: str | None = None

    def used(self) -> list[str]:
        """The names of the filters given (audited; never their values)."""
        return sorted(k for k, v in attrs.asdict(self).items() if v)

    def check(self) -> SearchFilters:
        for name in ("place", "procedure", "physician", "patient", "medical_record", "text"):
            if getattr(self, name):
                check_text(getattr(self, name), name.replace("_", " "))
        if self.status and self.status not in STATUSES:
            raise CatalogError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        return self


def search_query(phi: PhiCipher, f: SearchFilters, *, limit: int, own_only: tuple[int, bytes] | None) -> tuple[str, list[Any]]:
    """``(sql, params)`` selecting the matching events, newest first. ``own_only``: ``(user id,
    physician hash)`` restricting to the events that user created or whose physicians include theirs."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise CatalogError(f"--limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    f.check()
    where, params = ["1"], []
    lo, hi = parse_when(f.date_from, end=False), parse_when(f.date_to, end=True)
    if lo:
        where.append("coalesce(e.started_at, e.created_at) >= ?")
        params.append(lo)
    if hi:
        where.append("coalesce(e.started_at, e.created_at) < ?")
        params.append(hi)
    for column, value in (("place", f.place), ("procedure", f.procedure)):
        if value:
            where.append(f"instr(sb_norm(e.{column}), ?) > 0")
            params.append(normalize(value))
    if f.status:
        where.append("e.status = ?")
        params.append(f.status)
    if f.medical_record:
        where.append("e.mrn_hash = ?")
        params.append(phi.blind("medical_record", f.medical_record))
    tok = "e.id IN (SELECT event_id FROM event_tokens WHERE token = ? AND field = ?)"
    if f.patient:
        ws = words(f.patient)
        where.append("(e.patient_hash = ? OR (" + " AND ".join([tok] * len(ws) or ["0"]) + "))")
        params.append(phi.blind("patient", f.patient))
        for w in ws:
            params += [phi.token("patient", w), "patient"]
    if f.physician:
        ws = words(f.physician)
        where.append("(EXISTS (SELECT 1 FROM event_physicians p WHERE p.event_id = e.id AND p.name_hash = ?) OR ("
                     + " AND ".join([tok] * len(ws) or ["0"]) + "))")
        params.append(phi.blind("physician", f.physician))
        for w in ws:
            params += [phi.token("physician", w), "physician"]
    for w in words(f.text or ""):
        where.append("(e.id IN (SELECT event_id FROM event_tokens WHERE token IN (?, ?, ?, ?))"
                     " OR instr(sb_norm(e.place), ?) > 0 OR instr(sb_norm(e.procedure), ?) > 0 OR instr(e.id, ?) > 0)")
        params += [phi.token(field, w) for field in PHI_FIELDS] + [w, w, w]
    if own_only is not None:
        where.append("(e.created_by = ? OR EXISTS (SELECT 1 FROM event_physicians p "
                     "WHERE p.event_id = e.id AND p.name_hash = ?))")
        params += [own_only[0], own_only[1]]
    sql = (f"{SELECT_EVENTS} WHERE {' AND '.join(where)} "
           f"ORDER BY coalesce(e.started_at, e.created_at) DESC, e.id LIMIT ?")
    params.append(limit)
    return sql, params
