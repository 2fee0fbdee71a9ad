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
master key can neither rewrite the chain nor cut records off its end.

Whoever can write ``catalog.db`` can still delete the rows and the seal, or write back an older
seal; so the head is also anchored outside the database, in ``keys/audit-anchor`` beside the
master key (:mod:`.anchor`), and :meth:`AuditLog.verify` treats a missing chain, a missing seal
or anchor, and a chain that ends before the anchor as tampering. It also checks that every user
and event in the catalog has its creation record (with the same role), so rows added with
``sqlite3`` show. What stays undetectable: rolling back the catalog **and** the anchor together
to an older copy of both (docs/security.md); note ``surgbox audit verify``'s head somewhere else
to catch that too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import struct
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from .anchor import AnchorInvalid, AnchorState, AuditAnchor
from .db import Database, to_text, utcnow

log = logging.getLogger(__name__)

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
    anchor: AuditAnchor | None = None
    _pending: tuple[AnchorState, str | None] | None = attrs.field(default=None, init=False, alias="_pending")

    def __attrs_post_init__(self) -> None:
        if self.anchor is not None:
            self.db.after_commit(self._write_anchor, self.discard_pending)

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
        alarm = self._check_anchor(conn, seq - 1, prev) if self.anchor is not None and self._pending is None else None
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
        if self.anchor is not None:
            keep = self._pending[1] if self._pending is not None else alarm
            self._pending = (AnchorState(seq, h), keep)
        return AuditRecord(seq, body["at"], actor, action, body["target"], result, body["detail"], prev, h, mac)

    # ---- the anchor outside the database ------------------------------------------------------
    def _check_anchor(self, conn: sqlite3.Connection, head_seq: int, head: bytes) -> str | None:
        """Before the first record of a transaction: the anchor must name a record of the chain
        (the head, or an earlier one after a crash). Returns the sticky alarm to carry on (the
        anchor's own, or a new one, also raised in the database), ``None`` when all is well."""
        try:
            state = self.anchor.read()
        except AnchorInvalid as exc:
            message = f"{exc} before record {head_seq + 1}"
        else:
            if state is None:
                if head_seq == 0:
                    return None  # a new catalog: the first record creates the anchor
                message = f"the audit anchor {self.anchor.path} is missing before record {head_seq + 1}"
            elif state.seq > head_seq:
                message = (f"the audit anchor names record {state.seq} but the chain ends at record {head_seq}: "
                           f"records were removed, or the catalog was rolled back to an older copy")
            else:
                row = conn.execute("SELECT hash FROM audit WHERE seq = ?", (state.seq,)).fetchone()
                if (state.seq == head_seq and state.hash != head) or (state.seq < head_seq and (row is None or bytes(row[0]) != state.hash)):
                    message = f"record {state.seq} is not the one the audit anchor names (records replaced)"
                else:
                    return state.alarm
            if state is not None and state.alarm:
                return state.alarm
        self._raise_alarm(conn, message)
        return message

    def _write_anchor(self) -> None:
        """After commit (inside the writer lock): the anchor names the new head."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        state, alarm = pending
        try:
            self.anchor.write(attrs.evolve(state, alarm=alarm))
        except OSError as exc:  # committed already; the next append writes it again (it trails meanwhile)
            log.error("could not write the audit anchor %s (%s); it is rewritten with the next record",
                      self.anchor.path, exc.strerror or exc)

    def discard_pending(self) -> None:
        """Forget the anchor update of a transaction that rolled back."""
        self._pending = None

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

    def ensure_anchor(self) -> None:
        """When the anchor file is missing: create it with an ``audit.anchor`` record (a new
        catalog, or one from before anchors), unless the chain shows it had one, or is empty in a
        catalog that has users: then raise the sticky alarm (tampering)."""
        if self.anchor is None:
            return
        try:
            if self.anchor.read() is not None:
                return
        except AnchorInvalid:
            return  # reported by verify and at the next append
        with self.db.transaction() as conn:
            had = conn.execute("SELECT 1 FROM audit WHERE action = 'audit.anchor' LIMIT 1").fetchone()
            empty = conn.execute("SELECT 1 FROM audit LIMIT 1").fetchone() is None
            users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
            tampered = bool(had) or (empty and users > 0)
            if tampered:
                message = (f"the audit anchor {self.anchor.path} is missing" if had else
                           f"the audit trail is empty although the catalog has {users} user(s)")
                self._raise_alarm(conn, message)
                self._pending = (AnchorState(0, GENESIS), message)
            self.append(conn, SYSTEM, "audit.anchor", None, "failed" if tampered else "ok",
                        {"anchor": self.anchor.path.name, "catalog": self.anchor.catalog_id})

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
        seen: list[Any] = []

        def read_anchor(_conn: sqlite3.Connection) -> None:
            try:
                seen.append(self.anchor.read() if self.anchor is not None else None)
            except AnchorInvalid as exc:
                seen.append(exc)

        with self.db.snapshot(read_anchor) as conn:
            return self._verify(conn, max_problems, seen[0])

    def _verify(self, conn: sqlite3.Connection, max_problems: int, anchor: Any = None) -> VerifyResult:
        problems: list[str] = []
        expected_seq, prev, count = 1, GENESIS, 0
        hashes_at: dict[int, bytes] = {}
        created_users: dict[str, str] = {}
        created_events: set[str] = set()
        anchored = False
        want = anchor.seq if isinstance(anchor, AnchorState) else None

        def problem(msg: str) -> None:
            if len(problems) < max_problems:
                problems.append(msg)

        for row in self._iter_rows(conn):
            rec = AuditRecord.from_row(row)
            count += 1
            if rec.seq == want:
                hashes_at[rec.seq] = rec.hash
            if rec.result == "ok" and rec.action == "user.create":
                created_users[rec.target] = str(rec.detail.get("role"))
            elif rec.result == "ok" and rec.action == "event.create":
                created_events.add(rec.target)
            elif rec.action == "audit.anchor":
                anchored = True
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
        users = conn.execute("SELECT name, role FROM users").fetchall()
        if not count and users:
            problem(f"the audit trail is empty although the catalog has {len(users)} user(s) (records deleted)")
        if self.anchor is not None:
            if isinstance(anchor, AnchorInvalid):
                problem(str(anchor))
            elif anchor is None:
                if anchored or count:
                    problem(f"the audit anchor {self.anchor.path} is missing (deleted, or the home was copied "
                            f"without its keys folder)")
            else:
                if anchor.seq > expected_seq - 1:
                    problem(f"the audit anchor names record {anchor.seq} but the chain ends at record "
                            f"{expected_seq - 1}: records were cut off the end, or the catalog was rolled back")
                elif anchor.seq and hashes_at.get(anchor.seq) != anchor.hash:
                    problem(f"record {anchor.seq} is not the one the audit anchor names (records replaced)")
                if anchor.alarm and not (alarm is not None and bytes(alarm[0]).decode(errors="replace") == anchor.alarm):
                    problem(f"tampering noticed earlier: {anchor.alarm}")
        for u in users:
            role = created_users.get(u["name"])
            if role is None:
                problem(f"user {u['name']!r} has no creation record in the audit trail (added outside surgbox)")
            elif role != u["role"]:
                problem(f"user {u['name']!r} has role {u['role']} but was created as {role} (changed outside surgbox)")
        missing = [r["id"] for r in conn.execute("SELECT id FROM events ORDER BY id") if r["id"] not in created_events]
        for eid in missing[:10]:
            problem(f"event {eid} has no creation record in the audit trail (added outside surgbox)")
        if len(missing) > 10:
            problem(f"... and {len(missing) - 10} more events without a creation record")
        return VerifyResult(count, prev.hex(), tuple(problems))
