"""Per-task state of a batch in the catalog (table ``deid_tasks``, schema migration 4).

One row per (batch, source recording, segment): ``pending`` -> ``running`` -> ``done`` or
``failed``, with the attempts, the error (one line, no PHI: the messages name files by their
event ids and store-generated names only), the seconds of work and the de-identified file it
went into. A rerun of the same batch (same id: the recordings and settings hash to it)
skips the recordings whose every segment is ``done`` and whose de-identified copy is in the
catalog; the store object is what counts, the rows are the record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ..catalog.db import to_text, utcnow

STATES = ("pending", "running", "done", "failed")


def batch_id(sources: Iterable[str], settings: dict[str, Any]) -> str:
    """A stable id for a batch: the sources (``event:file-id`` or paths) and the settings."""
    blob = json.dumps({"sources": sorted(sources), "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@attrs.frozen
class TaskRow:
    batch_id: str
    event_id: str
    source_file_id: int
    segment: int
    frames: int
    state: str
    attempts: int
    error: str | None
    seconds: float | None
    result_file_id: int | None
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(eq=False)
class TaskState:
    """The ``deid_tasks`` rows of one batch in catalog ``db`` (:class:`~surgbox.catalog.db.Database`)."""

    db: Any
    batch: str

    def begin(self, event_id: str, source_file_id: int, frames: Sequence[int]) -> None:
        """Rows for the segments of a recording (``frames`` per segment), reset to ``pending``
        unless already ``done``."""
        now = to_text(utcnow())
        with self.db.transaction() as c:
            for i, n in enumerate(frames):
                c.execute("INSERT INTO deid_tasks(batch_id, event_id, source_file_id, segment, frames, state, updated_at)"
                          " VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT(batch_id, source_file_id, segment) DO UPDATE"
                          " SET state = CASE WHEN state = 'done' THEN 'done' ELSE 'pending' END, frames = excluded.frames,"
                          " updated_at = excluded.updated_at",
                          (self.batch, event_id, source_file_id, i, int(n), now))

    def mark(self, source_file_id: int, segment: int | None, state: str, *, attempts: int | None = None,
             error: str | None = None, seconds: float | None = None, result_file_id: int | None = None,
             every: bool = False) -> None:
        """Set the state of one segment (``segment=None``: every segment not ``done``, or all
        of them with ``state='done'`` or ``every``)."""
        assert state in STATES, state
        sets = ["state = ?", "updated_at = ?", "error = ?"]
        params: list[Any] = [state, to_text(utcnow()), error]
        for col, val in (("attempts", attempts), ("seconds", seconds), ("result_file_id", result_file_id)):
            if val is not None:
                sets.append(f"{col} = ?")
                params.append(val)
        where = "batch_id = ? AND source_file_id = ?"
        params += [self.batch, source_file_id]
        if segment is not None:
            where += " AND segment = ?"
            params.append(segment)
        elif state != "done" and not every:
            where += " AND state != 'done'"
        with self.db.transaction() as c:
            c.execute(f"UPDATE deid_tasks SET {', '.join(sets)} WHERE {where}", params)

    def rows(self, source_file_id: int | None = None) -> list[TaskRow]:
        sql, params = "SELECT * FROM deid_tasks WHERE batch_id = ?", [self.batch]
        if source_file_id is not None:
            sql += " AND source_file_id = ?"
            params.append(source_file_id)
        return [_row(r) for r in self.db.query(sql + " ORDER BY source_file_id, segment", params)]

    def finished(self, source_file_id: int) -> bool:
        """Whether every segment of the recording is ``done`` in this batch (and there are some)."""
        rows = self.rows(source_file_id)
        return bool(rows) and all(r.state == "done" for r in rows)


def all_batches(db: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The latest batches with their task counts by state (for ``deid-batch --status``)."""
    out = []
    for r in db.query("SELECT batch_id, max(updated_at) AS at, count(*) AS n, "
                      + ", ".join(f"sum(state = '{s}') AS {s}" for s in STATES)
                      + " FROM deid_tasks GROUP BY batch_id ORDER BY at DESC LIMIT ?", (limit,)):
        out.append({"batch": r["batch_id"], "updated_at": r["at"], "tasks": r["n"], **{s: r[s] for s in STATES}})
    return out


def _row(r: Any) -> TaskRow:
    return TaskRow(r["batch_id"], r["event_id"], r["source_file_id"], r["segment"], r["frames"], r["state"],
                   r["attempts"], r["error"], r["seconds"], r["result_file_id"], r["updated_at"])
