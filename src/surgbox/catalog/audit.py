"""Append-only, hash-chained audit trail of every access and change.

Record format (table ``audit``): ``seq`` (1, 2, ... without gaps), ``at`` (UTC ISO-8601),
``actor`` (user name, or ``-`` for the system), ``action`` (``event.create``, ``user.login`` ...),
``target`` (an event id, a user name or empty: never PHI), ``result`` (``ok``, ``denied``,
``failed``), ``detail`` (a JSON object of non-PHI facts: field names, counts, checksums).

Chaining: ``hash = SHA-256(prev_hash || canonical_json(record))`` where ``prev_hash`` is the
previous record's hash (32 zero bytes before the first) and ``canonical_json`` is the record's
``seq, at, actor, action, target, result, detail`` as JSON with sorted keys, no white space and
UTF-8 text. Editing a record changes its hash; deleting or reordering records breaks ``seq`` or
the ``prev_hash`` links. Because anybody can recompute plain SHA-256, each record also carries
``mac = HMAC-SHA256(audit_key, hash)`` with a key derived from the master key, and the newest
``(seq, hash)`` is sealed in ``meta.audit_head`` with the same key, so a forger without the
master key can neither rewrite the chain nor cut records off its end. (Rolling the whole
catalog back to an older copy is not detectable from inside it: note ``surgbox audit verify``'s
head hash somewhere else to anchor it.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import struct
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from .db import Database, to_text, utcnow

GENESIS = bytes(32)
RESULTS = ("ok", "denied", "failed")
SYSTEM = "-"


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no white space, UTF-8: the bytes that are hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@attrs.frozen
class AuditRecord:
    """One audit record as stored (see the module doc for the fields and the chaining rule)."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    result: str
    detail: Mapping[str, Any]
    prev_hash: bytes = attrs.field(repr=False)
    hash: bytes = attrs.field(repr=False)
    mac: bytes = attrs.field(repr=False)

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "target": self.target, "result": self.result, "detail": dict(self.detail)}

    def expected_hash(self) -> bytes:
        return chain_hash(self.prev_hash, self.body())

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "prev_hash": self.prev_hash.hex(), "hash": self.hash.hex()}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AuditRecord:
        try:
            detail = json.loads(row["detail"])
        except (TypeError, ValueError):
            detail = {"<unparseable>": str(row["detail"])}
        return cls(row["seq"], row["at"], row["actor"], row["action"], row["target"] or "", row["result"],
                   detail, bytes(row["prev_hash"]), bytes(row["hash"]), bytes(row["mac"]))


def chain_hash(prev_hash: bytes, body: Mapping[str, Any]) -> bytes:
    """``SHA-256(prev_hash || canonical_json(body))``."""
    return hashlib.sha256(bytes(prev_hash) + canonical_json(body)).digest()


@attrs.frozen
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`: ``ok`` when ``problems`` is empty; ``records`` checked;
    ``head`` the hex hash of the last record (anchor it elsewhere to detect a whole-catalog rollback)."""

    records: int
    head: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@attrs.define(eq=False)
class AuditLog:
    """Appends and verifies audit records in ``db``; ``mac_key`` is derived from the master key."""

    db: Database
    mac_key: bytes = attrs.field(repr=False)
    now: Callable[[], datetime] = utcnow

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self.mac_key, data, hashlib.sha256).digest()

    def _head_seal(self, seq: int, head: bytes) -> bytes:
        payload = struct.pack(">Q", seq) + head
        return payload + self._mac(b"audit-head:" + payload)

    def append(self, conn: sqlite3.Connection, actor: str, action: str, target: str | None = None,
               result: str = "ok", detail: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append one record inside the caller's open transaction on ``conn`` (so the record
        commits or rolls back with the change it describes). ``detail`` must hold no PHI."""
        if result not in RESULTS:
            raise ValueError(f"audit result must be one of {RESULTS}, got {result!r}")
        # The next record follows the sealed head, not merely the last row: records cut off the
        # end then leave a visible gap even after new records are appended.
        head = self._read_seal(conn)
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if head is not None:
            seq, prev = head[0] + 1, head[1]
        else:
            seq, prev = (1, GENESIS) if last is None else (last["seq"] + 1, bytes(last["hash"]))
            if last is not None:
                self._raise_alarm(conn, f"audit head seal missing or invalid before record {seq}")
        body = {"seq": seq, "at": to_text(self.now()), "actor": actor, "action": action,
                "target": target or "", "result": result, "detail": dict(detail or {})}
        h = chain_hash(prev, body)
        mac = self._mac(h)
        conn.execute(
            "INSERT INTO audit(seq, at, actor, action, target, result, detail, prev_hash, hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, body["at"], actor, action, body["target"], result, canonical_json(body["detail"]).decode(), prev, h, mac),
        )
        conn.execute("INSERT INTO meta(key, value) VALUES ('audit_head', ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (self._head_seal(seq, h),))
        return AuditRecord(seq, body["at"], actor, action, body["target"], result, body["detail"], prev, h, mac)

    def _read_seal(self, conn: sqlite3.Connection) -> tuple[int, bytes] | None:
        """The sealed ``(seq, hash)`` of the newest record, or ``None`` when missing or not authentic."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if row is None:
            return None
        blob = bytes(row[0])
        payload, mac = blob[:40], blob[40:]
        if len(blob) != 72 or not hmac.compare_digest(self._mac(b"audit-head:" + payload), mac):
            return None
        return struct.unpack(">Q", payload[:8])[0], payload[8:]

    def _raise_alarm(self, conn: sqlite3.Connection, message: str) -> None:
        """Keep the first tampering noticed while appending (sticky; reported by :meth:`verify`)."""
        if conn.execute("SELECT 1 FROM meta WHERE key = 'audit_alarm'").fetchone() is None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('audit_alarm', ?)", (message.encode(),))

    def record(self, actor: str, action: str, target: str | None = None, result: str = "ok",
               detail: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append one record in a transaction of its own (for reads and refusals)."""
        with self.db.transaction() as conn:
            return self.append(conn, actor, action, target, result, detail)

    def records(self, *, since_seq: int = 0, limit: int | None = None, actor: str | None = None,
                action: str | None = None, target: str | None = None, newest_first: bool = False) -> list[AuditRecord]:
        """Stored records filtered by exact ``actor``/``action`` (prefix match with a trailing
        ``*``)/``target``, in ``seq`` order (or newest first)."""
        sql, params = ["SELECT * FROM audit WHERE seq > ?"], [since_seq]
        if actor:
            sql.append("AND actor = ?")
            params.append(actor)
        if action:
            if action.endswith("*"):
                sql.append("AND substr(action, 1, ?) = ?")
                params += [len(action) - 1, action[:-1]]
            else:
                sql.append("AND action = ?")
                params.append(action)
        if target:
            sql.append("AND target = ?")
            params.append(target)
        sql.append("ORDER BY seq DESC" if newest_first else "ORDER BY seq")
        if limit is not None:
            sql.append("LIMIT ?")
            params.append(int(limit))
        return [AuditRecord.from_row(r) for r in self.db.query(" ".join(sql), params)]

    @staticmethod
    def _iter_rows(conn: sqlite3.Connection, batch: int = 1000) -> Iterator[sqlite3.Row]:
        """All records in storage order, ``batch`` rows in memory at a time."""
        cur = conn.execute("SELECT * FROM audit ORDER BY rowid")
        while rows := cur.fetchmany(batch):
            yield from rows

    def verify(self, max_problems: int = 50) -> VerifyResult:
        """Recompute the chain in storage order (bounded memory); report every break found.

        Detects an edited record (hash or MAC mismatch), a deleted one (``seq`` gap, broken
        ``prev_hash`` link, or a head seal pointing past the end), reordered ones (``seq`` out of
        order or links broken) and a forged chain (MACs need the master key).

        Records, head seal and alarm are read in one read transaction (:meth:`Database.snapshot`),
        so records appended meanwhile by this or another process are simply not seen: they can
        never make the seal look ahead of the chain (a false tamper alarm)."""
        with self.db.snapshot() as conn:
            return self._verify(conn, max_problems)

    def _verify(self, conn: sqlite3.Connection, max_problems: int) -> VerifyResult:
        problems: list[str] = []
        expected_seq, prev, count = 1, GENESIS, 0

        def problem(msg: str) -> None:
            if len(problems) < max_problems:
                problems.append(msg)

        for row in self._iter_rows(conn):
            rec = AuditRecord.from_row(row)
            count += 1
            if rec.seq != expected_seq:
                problem(f"record {rec.seq} found where record {expected_seq} was expected (records deleted or reordered)")
            if rec.prev_hash != prev:
                problem(f"record {rec.seq}: prev_hash does not match the hash of the record before it (chain broken)")
            if rec.expected_hash() != rec.hash:
                problem(f"record {rec.seq}: contents do not match its hash (record edited)")
            if not hmac.compare_digest(self._mac(rec.hash), rec.mac):
                problem(f"record {rec.seq}: MAC does not verify (record forged, or a different master key)")
            expected_seq, prev = rec.seq + 1, rec.hash
        head = self._read_seal(conn)
        if head is None:
            if count:
                problem("the audit head seal is missing or does not verify (deleted, forged, or a different master key)")
        elif head[0] != expected_seq - 1 or head[1] != prev:
            problem(f"the audit head seal names record {head[0]} but the chain ends at record "
                    f"{expected_seq - 1} with another hash (records cut off the end or replaced)")
        alarm = conn.execute("SELECT value FROM meta WHERE key = 'audit_alarm'").fetchone()
        if alarm is not None:
            problem(f"tampering noticed earlier: {bytes(alarm[0]).decode(errors='replace')}")
        return VerifyResult(count, prev.hex(), tuple(problems))
