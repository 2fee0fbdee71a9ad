"""The audit trail's anchor outside the database: ``SURGBOX_HOME/keys/audit-anchor``.

Somebody who can write ``catalog.db`` can delete audit rows, the head seal kept in the database,
or write back an older copy of it. The anchor is a second, sealed copy of the chain's head kept
beside the master key (another file, in the folder that holds the key)::

    {"format": "surgbox-audit-anchor", "version": 1, "catalog": "<catalog id>",
     "seq": 1234, "hash": "<hex of record 1234's hash>", "alarm": null, "mac": "<hex>"}

``mac = HMAC-SHA256(audit key, canonical JSON of the other fields)`` (the audit key is derived from
the master key, :mod:`.phi`), so it can be neither forged nor moved to another catalog. It is
rewritten after every committed transaction that appended audit records, under an exclusive lock
(``keys/audit-anchor.lock``) that every catalog writer holds from ``BEGIN`` to the anchor write: so
its ``seq`` only grows, equals the chain's head, or (after a crash between ``COMMIT`` and the
anchor write) trails it by one transaction. ``alarm`` is sticky: once tampering was noticed while
appending, every later anchor keeps the message. Checks: :meth:`~.audit.AuditLog.verify`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .._fs import atomic_write
from .errors import CatalogError

FORMAT = "surgbox-audit-anchor"
VERSION = 1
ANCHOR_NAME = "audit-anchor"


@attrs.frozen
class AnchorState:
    """What an anchor file says: the chain's head ``(seq, hash)`` when it was written, and the
    sticky ``alarm`` (``None`` while no tampering was noticed)."""

    seq: int
    hash: bytes
    alarm: str | None = None


class AnchorInvalid(CatalogError):
    """The anchor file exists but is not one this catalog wrote (corrupt, forged, other key or catalog)."""


@attrs.define(eq=False)
class AuditAnchor:
    """Reads, writes and locks the anchor file ``path`` of the catalog ``catalog_id``."""

    path: Path = attrs.field(converter=Path)
    mac_key: bytes = attrs.field(repr=False)
    catalog_id: str = ""
    timeout_s: float = 10.0

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _mac(self, body: dict[str, Any]) -> str:
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self.mac_key, b"audit-anchor:" + data, hashlib.sha256).hexdigest()

    def read(self) -> AnchorState | None:
        """The anchor, ``None`` when the file is missing; :class:`AnchorInvalid` when it does not verify."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AnchorInvalid(f"audit anchor {self.path} cannot be read: {exc.strerror or exc}") from None
        try:
            d = json.loads(raw)
            mac = d.pop("mac")
            ok = (d.get("format") == FORMAT and hmac.compare_digest(self._mac(d), str(mac))
                  and d.get("catalog") == self.catalog_id)
            state = AnchorState(int(d["seq"]), bytes.fromhex(d["hash"]), d.get("alarm"))
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise AnchorInvalid(f"audit anchor {self.path} does not verify (altered, another catalog's, or a "
                                f"different master key)")
        return state

    def write(self, state: AnchorState) -> None:
        """Replace the anchor atomically and durably (temp file, fsync, rename, folder fsync)."""
        body = {"format": FORMAT, "version": VERSION, "catalog": self.catalog_id, "seq": state.seq,
                "hash": state.hash.hex(), "alarm": state.alarm}
        body["mac"] = self._mac(body)
        atomic_write(self.path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode(), mode=0o600)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock of the catalog's writers (``flock`` on the lock file; other processes wait
        up to ``timeout_s``, then :class:`CatalogError`). Released by the kernel if the process dies."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CatalogError(f"cannot open the catalog's writer lock {self.lock_path}: {exc.strerror or exc}; "
                               f"check that {self.path.parent} exists and is writable") from None
        try:
            deadline = time.monotonic() + self.timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        raise CatalogError(f"the catalog is locked by another process ({self.lock_path}); retry") from None
                    time.sleep(0.002)
            yield
        finally:
            os.close(fd)  # also releases the lock
