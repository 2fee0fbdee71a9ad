"""Event data keys: wrapping under the catalog's key-encryption key, and keyrings for the store.

Every event has its own random 256-bit data key. It is stored only wrapped (AES-256-GCM under a
key derived from the master key, associated data = ``surgbox/event-key/v1:`` + the event id)
in ``event_keys``; every file of the event is encrypted with it (the store's Tink streams derive
a per-file key from it). Destroying the wrapped key makes every copy of the event's files
unreadable (crypto-shredding, see :mod:`.retention`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..crypto.keys import KeyRing, MasterKey, key_id_of
from ..errors import IntegrityError
from .errors import CatalogError

KEY_AAD = b"surgbox/event-key/v1:"
DATA_KEY_SIZE = 32


def wrap_key(kek: bytes, event_id: str, key: bytes) -> bytes:
    """``nonce || AES-256-GCM(kek, key, aad = "surgbox/event-key/v1:" + event id)``."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, key, KEY_AAD + event_id.encode())


def unwrap_key(kek: bytes, event_id: str, wrapped: bytes) -> bytes:
    """The data key wrapped by :func:`wrap_key`; :class:`IntegrityError` when it does not authenticate."""
    try:
        return AESGCM(kek).decrypt(bytes(wrapped[:12]), bytes(wrapped[12:]), KEY_AAD + event_id.encode())
    except InvalidTag:
        raise IntegrityError(f"the data key of event {event_id} does not unwrap: the catalog was altered or the "
                             f"master key is not the one that wrote it") from None


def new_data_key() -> tuple[bytes, str]:
    """A fresh random data key and its key id."""
    key = os.urandom(DATA_KEY_SIZE)
    return key, key_id_of(key)


def event_keyring(key: bytes, event_id: str) -> KeyRing:
    """The keyring a store encrypts an event's objects with (its data key only)."""
    return KeyRing.of(MasterKey(key, f"event {event_id}"))


def scratch_keyring() -> KeyRing:
    """A keyring with a throw-away key, for store operations that read no plaintext (listing, deleting)."""
    return KeyRing.of(MasterKey.generate())


def load_data_key(db: Any, kek: bytes, event_id: str) -> tuple[bytes, str]:
    """``(data key, key id)`` of an event from ``event_keys``; :class:`CatalogError` once destroyed."""
    row = db.query_one("SELECT key_id, wrapped FROM event_keys WHERE event_id = ?", (event_id,))
    if row is None:
        raise CatalogError(f"event {event_id} has no data key (it was destroyed); its files cannot be read")
    return unwrap_key(kek, event_id, bytes(row["wrapped"])), row["key_id"]


_NAME_INFO = b"surgbox/catalog/file-name-key/v1"
_SEAL_INFO = b"surgbox/catalog/file-name-seal/v1"
TOKEN_HEX = 32  # 128 bits of the name's keyed hash in an object key


@attrs.frozen(repr=False)
class FileNames:
    """How an event's file names stay out of the store: the object of file ``name`` is
    ``events/<event id>/<token>`` with ``token = hex(HMAC-SHA256(name key, name))[:32]``, and its
    (unencrypted) store metadata holds the name only sealed (``name`` = base64url of ``nonce ||
    AES-256-GCM(seal key, name, aad = object key)``). Both keys are derived from the event's data
    key with HKDF-SHA256 (infos ``surgbox/catalog/file-name-key/v1``, ``.../file-name-seal/v1``),
    so once the data key is destroyed nothing links an object to its name."""

    event_id: str
    _name_key: bytes = attrs.field(alias="_name_key")
    _seal: AESGCM = attrs.field(alias="_seal")

    @classmethod
    def of(cls, data_key: bytes, event_id: str) -> FileNames:
        derive = lambda info: HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)  # noqa: E731
        return cls(event_id, derive(_NAME_INFO), AESGCM(derive(_SEAL_INFO)))

    def __repr__(self) -> str:
        return f"FileNames({self.event_id}, <keys hidden>)"

    @property
    def prefix(self) -> str:
        return f"events/{self.event_id}/"

    def object_key(self, name: str) -> str:
        token = hmac.new(self._name_key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:TOKEN_HEX]
        return self.prefix + token

    def seal(self, key: str, name: str) -> str:
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(nonce + self._seal.encrypt(nonce, name.encode("utf-8"), key.encode())).decode()

    def unseal(self, key: str, sealed: str) -> str | None:
        """The name sealed for object ``key``, or ``None`` when it is not one (another key, altered)."""
        try:
            blob = base64.urlsafe_b64decode(sealed.encode())
            return self._seal.decrypt(blob[:12], blob[12:], key.encode()).decode("utf-8")
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None

    def name_of(self, key: str, metadata: Mapping[str, str]) -> str | None:
        """The file name of the object ``key`` with store ``metadata``: the sealed name, or for
        objects stored before names were sealed (``events/<id>/<name>``) the key's last part."""
        if not key.startswith(self.prefix):
            return None
        sealed = metadata.get("name")
        if sealed is not None:
            return self.unseal(key, sealed)
        rest = key[len(self.prefix):]
        return None if len(rest) == TOKEN_HEX and all(c in "0123456789abcdef" for c in rest) else rest
