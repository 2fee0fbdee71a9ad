"""Deleting events (crypto-shredding) and the retention sweep.

Deleting an event destroys its wrapped data key with the catalog rows in one transaction
(``secure_delete`` and a WAL checkpoint leave no copy in the database files): from then on every
copy of its files, on every disk and backup of the store, is unreadable, even where removing
the objects fails. The store objects are then removed, best effort (their keys are generated,
so the tombstones a store keeps name no file). Retention deletes **stopped** events whose
finish time is older than the period; events never started (``created``: a case prepared in
advance, no footage) and events still ``recording`` are never deleted by it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..errors import StoreError
from .db import Database, to_text
from .errors import CatalogError
from .keys import scratch_keyring
from .model import DeleteResult

log = logging.getLogger(__name__)

MAX_KEEP_DAYS = 36525  # 100 years: the longest retention period (keeps dates in range)


def check_keep_days(keep_days: Any) -> float:
    if isinstance(keep_days, bool) or not isinstance(keep_days, (int, float)) or not 0 <= keep_days <= MAX_KEEP_DAYS:
        raise CatalogError(f"--keep-days must be a number of days from 0 to {MAX_KEEP_DAYS}, got {keep_days}")
    return float(keep_days)


def expired(db: Database, now: datetime, keep_days: float) -> list[str]:
    """Ids of the stopped events that finished more than ``keep_days`` days before ``now``."""
    cutoff = to_text(now - timedelta(days=check_keep_days(keep_days)))
    rows = db.query("SELECT id FROM events WHERE status = 'stopped' AND finished_at < ? ORDER BY id", (cutoff,))
    return [r["id"] for r in rows]


def destroy_event(cat: Any, actor: str, event_id: str, reason: str) -> None:
    """Delete the event's data key and catalog rows in one transaction (audited), then checkpoint
    the WAL so the wrapped key leaves the database files too."""
    with cat.db.transaction() as c:
        key_row = c.execute("SELECT key_id FROM event_keys WHERE event_id = ?", (event_id,)).fetchone()
        nfiles = c.execute("SELECT count(*) FROM files WHERE event_id = ?", (event_id,)).fetchone()[0]
        c.execute("DELETE FROM event_keys WHERE event_id = ?", (event_id,))
        c.execute("DELETE FROM events WHERE id = ?", (event_id,))
        cat.audit.append(c, actor, "event.delete", event_id, "ok",
                         {"reason": reason, "files": nfiles, "key_id": key_row["key_id"] if key_row else None,
                          "key_destroyed": key_row is not None})
    cat.db.checkpoint()


def delete_objects(make_store: Callable[[Any], Any], prefix: str) -> tuple[int, list[str]]:
    """Remove every store object under ``prefix`` (deleting needs no key): ``(removed, left)``."""
    deleted, left = 0, []
    try:
        store = make_store(scratch_keyring())
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


def delete_event(cat: Any, actor: str, event_id: str, reason: str) -> DeleteResult:
    destroy_event(cat, actor, event_id, reason)
    deleted, left = delete_objects(cat.make_store, f"events/{event_id}/")
    return DeleteResult(event_id, deleted, tuple(left))


def sweep_orphans(cat: Any) -> int:
    """Remove the store objects of events the catalog no longer has (a crash between destroying
    a key and removing the objects). Returns how many were removed."""
    try:
        store = cat.make_store(scratch_keyring())
    except Exception as exc:
        log.error("store unavailable for the orphan sweep: %s", exc)
        return 0
    known = {r["id"] for r in cat.db.query("SELECT id FROM events")}
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
