"""Store metadata records and their authentication: sidecars (:class:`ObjectMeta`), tombstones
(:class:`Tombstone`) and the HMAC that proves a record was written by a holder of a store key.

A record that can make the store delete or replace data (a tombstone makes ``scrub`` remove the
copies of an object; a sidecar says which copy is the newest) carries ``mac_key_id`` and ``mac``:

    mac_key = HKDF-SHA256(ikm = master key, salt = none, info = "surgbox-store/v1 metadata-mac:" || store id, 32 bytes)
    mac     = HMAC-SHA256(mac_key, "surgbox-store/v1 " || kind || "\\n" || canonical JSON of the other fields)

``kind`` is ``object`` or ``tombstone``; the canonical JSON has sorted keys, no spaces and ASCII
escapes; ``mac_key_id`` is the key id of the master key (:func:`surgbox.crypto.keys.key_id_of`).
Binding the store id means a record copied from another store does not verify. Times must be
plausible: not after the local clock plus :data:`MAX_CLOCK_SKEW_NS` (a record from the "far
future" would win over every real one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from surgbox.crypto.keys import MasterKey

VERSION = 1  # sidecar format version
TOMBSTONE = "surgbox-tombstone"
TOMBSTONE_VERSION = 2  # 2: with a MAC; version 1 tombstones (no MAC) are read as unverifiable
MAC_INFO = b"surgbox-store/v1 metadata-mac:"
MAX_CLOCK_SKEW_NS = 24 * 3600 * 10**9  # a record newer than now + 1 day is implausible

# How far a record can be trusted (see MacKeys.check and trust()).
VERIFIED = "verified"  # MAC correct under a key we hold, time plausible
UNVERIFIABLE = "unverifiable"  # made with a key we do not hold (a sidecar: also one without a MAC)
UNSIGNED = "unsigned"  # a tombstone without a MAC (version 1, or written by hand)
FORGED = "forged"  # MAC wrong under a key we hold (or malformed)
IMPLAUSIBLE = "implausible"  # time after now + MAX_CLOCK_SKEW_NS


def plausible(ns: int, now_ns: int) -> bool:
    """Whether a wall-clock time in ns since the epoch could have been written by now."""
    return 0 <= ns <= now_ns + MAX_CLOCK_SKEW_NS


def _canonical(kind: str, fields: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in fields.items() if k not in ("mac", "mac_key_id")}
    return b"surgbox-store/v1 " + kind.encode() + b"\n" + json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@attrs.frozen
class MacKeys:
    """HMAC-SHA256 keys for one store's metadata, by master key id; ``signer`` signs new records
    (``None``: the store has no key, records are written without a MAC)."""

    keys: Mapping[str, bytes] = attrs.field(factory=dict, repr=False)
    signer: str | None = None

    @classmethod
    def derive(cls, masters: Iterable[MasterKey], store_id: str) -> MacKeys:
        """Keys derived from ``masters`` (the first signs) for the store ``store_id``."""
        keys: dict[str, bytes] = {}
        for m in masters:
            keys.setdefault(m.key_id, HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                           info=MAC_INFO + store_id.encode()).derive(m.material))
        return cls(keys, next(iter(keys), None))

    def sign(self, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` with ``mac_key_id`` and ``mac`` set (empty when there is no signer)."""
        out = {k: v for k, v in fields.items() if k not in ("mac", "mac_key_id")}
        if self.signer is None:
            return {**out, "mac_key_id": "", "mac": ""}
        mac = hmac.new(self.keys[self.signer], _canonical(kind, out), hashlib.sha256).hexdigest()
        return {**out, "mac_key_id": self.signer, "mac": mac}

    def check(self, kind: str, fields: Mapping[str, Any]) -> str:
        """:data:`VERIFIED`, :data:`FORGED` or :data:`UNVERIFIABLE` (unsigned, or a key not held)."""
        key_id, mac = fields.get("mac_key_id") or "", fields.get("mac") or ""
        if not key_id and not mac:
            return UNVERIFIABLE
        key = self.keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            return UNVERIFIABLE
        want = hmac.new(key, _canonical(kind, fields), hashlib.sha256).hexdigest()
        return VERIFIED if isinstance(mac, str) and hmac.compare_digest(want, mac) else FORGED


@attrs.frozen
class ObjectMeta:
    """The sidecar of a committed object (``meta/KEY.json``). ``metadata`` is the caller's, unencrypted:
    never put patient data there. Sizes in bytes; ``created_ns`` is wall-clock ns since the epoch;
    ``mac_key_id``/``mac`` authenticate the record (see the module doc)."""

    key: str
    key_id: str
    segment_size: int
    plaintext_size: int
    ciphertext_size: int
    sha256: str
    created_ns: int
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=lambda m: dict(m or {}))
    recovered: bool = False
    mac_key_id: str = ""
    mac: str = ""

    def signed(self, macs: MacKeys) -> ObjectMeta:
        """This record with a MAC by ``macs.signer``."""
        d = macs.sign("object", attrs.asdict(self))
        return attrs.evolve(self, mac_key_id=d["mac_key_id"], mac=d["mac"])

    def trust(self, macs: MacKeys, now_ns: int) -> str:
        """How far this record can be trusted: :data:`VERIFIED`, :data:`UNVERIFIABLE`, :data:`FORGED`
        or :data:`IMPLAUSIBLE` (``created_ns`` in the far future)."""
        if not plausible(self.created_ns, now_ns):
            return IMPLAUSIBLE
        return macs.check("object", attrs.asdict(self))

    def to_json(self) -> bytes:
        d = {"format": "surgbox-object", "version": VERSION, **attrs.asdict(self)}
        return (json.dumps(d, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> ObjectMeta:
        """Parse a sidecar; ``ValueError`` when it is not one."""
        try:
            d = json.loads(data)
            if d.pop("format", None) != "surgbox-object":
                raise ValueError("not a surgbox object sidecar")
            d.pop("version", None)
            meta = cls(**d)
            if not isinstance(meta.sha256, str) or len(meta.sha256) != 64:
                raise ValueError("bad sha256")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in
                       (meta.segment_size, meta.plaintext_size, meta.ciphertext_size, meta.created_ns)):
                raise ValueError("sizes and times must be integers")
            return meta
        except (TypeError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ValueError(f"corrupt sidecar: {exc}") from None


@attrs.frozen
class Tombstone:
    """``meta/KEY.deleted``: ``key`` was deleted at ``deleted_ns`` (wall-clock ns), signed like a sidecar."""

    key: str
    deleted_ns: int
    mac_key_id: str = ""
    mac: str = ""

    @classmethod
    def create(cls, key: str, deleted_ns: int, macs: MacKeys) -> Tombstone:
        d = macs.sign("tombstone", {"key": key, "deleted_ns": deleted_ns})
        return cls(key, deleted_ns, d["mac_key_id"], d["mac"])

    def trust(self, macs: MacKeys, now_ns: int) -> str:
        """:data:`VERIFIED`, :data:`UNVERIFIABLE`, :data:`UNSIGNED`, :data:`FORGED` or :data:`IMPLAUSIBLE`."""
        if not plausible(self.deleted_ns, now_ns):
            return IMPLAUSIBLE
        if not self.mac and not self.mac_key_id:
            return UNSIGNED
        return macs.check("tombstone", attrs.asdict(self))

    def to_json(self) -> bytes:
        d = {"format": TOMBSTONE, "version": TOMBSTONE_VERSION, **attrs.asdict(self)}
        return (json.dumps(d, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, key: str) -> Tombstone:
        """Parse the tombstone of ``key``; ``ValueError`` when it is not one (or names another key)."""
        try:
            d = json.loads(data)
            if d.get("format") != TOMBSTONE or d.get("key") != key:
                raise ValueError("not a tombstone of this key")
            ns = d["deleted_ns"]
            if not isinstance(ns, int) or isinstance(ns, bool):
                raise ValueError("deleted_ns is not an integer")
            return cls(key, ns, str(d.get("mac_key_id") or ""), str(d.get("mac") or ""))
        except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise ValueError(f"corrupt tombstone: {exc}") from None
