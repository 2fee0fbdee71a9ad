"""Protected health information (PHI) in the catalog: field encryption and keyed search hashes.

PHI (patient name, physician names, medical record number, free-text notes) never reaches the
database in clear:

* **Field encryption**: AES-256-GCM (``cryptography``) under a key derived from the master key
  with HKDF-SHA256 (info ``surgbox/catalog/phi-aead/v1``). A value is stored as
  ``0x01 || nonce (12 bytes) || ciphertext+tag``, and the *context* (``"events.patient:<id>"``)
  is bound in as associated data, so a ciphertext moved to another row or column fails to decrypt.
* **Blind index**: ``HMAC-SHA256(index_key, field || 0x00 || normalize(value))`` with a second
  derived key (info ``surgbox/catalog/phi-index/v1``) finds exact matches (same patient, same
  physician); **token hashes** (the same HMAC over each word, tagged ``tok:``) find single words.
  Normalization: Unicode NFKD, accents stripped, case folded, runs of white space collapsed; so
  ``"  José   DOE"`` matches ``"jose doe"``. Hashes reveal only equality, and only to holders
  of the master key can a guess be tested.

The same master key also yields the audit MAC key, the key-encryption key that wraps each
event's data key and the catalog's key check value (:data:`INFO`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError

KEY_SIZE = 32
NONCE_SIZE = 12
VERSION = b"\x01"

#: HKDF ``info`` of every key the catalog derives from the master key (distinct per purpose).
INFO = {
    "phi_aead": b"surgbox/catalog/phi-aead/v1",
    "phi_index": b"surgbox/catalog/phi-index/v1",
    "audit_mac": b"surgbox/catalog/audit-mac/v1",
    "event_kek": b"surgbox/catalog/event-kek/v1",
    "key_check": b"surgbox/catalog/key-check/v1",
}

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def derive_subkey(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` (a key of :data:`INFO`): HKDF-SHA256(master, info)."""
    if len(master) != KEY_SIZE:
        raise ValueError(f"master key must be {KEY_SIZE} bytes, got {len(master)}")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=INFO[purpose]).derive(master)


def normalize(text: str) -> str:
    """Search form of a value: NFKD, accents removed, case folded, white space collapsed and trimmed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", stripped.casefold())).strip()


def words(text: str) -> list[str]:
    """The distinct words of ``normalize(text)`` in order of first appearance."""
    return list(dict.fromkeys(_WORD.findall(normalize(text))))


@attrs.define(eq=False, repr=False)
class PhiCipher:
    """Encrypts PHI fields and computes their search hashes. Build with :meth:`from_master`."""

    _aead: AESGCM = attrs.field(alias="_aead")
    _index_key: bytes = attrs.field(alias="_index_key")

    @classmethod
    def from_master(cls, master: bytes) -> PhiCipher:
        return cls(AESGCM(derive_subkey(master, "phi_aead")), derive_subkey(master, "phi_index"))

    def __repr__(self) -> str:
        return "PhiCipher(<keys hidden>)"

    def encrypt(self, value: str, context: str) -> bytes:
        """``0x01 || nonce || AES-GCM(value UTF-8)`` with ``context`` as associated data."""
        nonce = os.urandom(NONCE_SIZE)
        return VERSION + nonce + self._aead.encrypt(nonce, value.encode("utf-8"), context.encode("utf-8"))

    def decrypt(self, blob: bytes, context: str) -> str:
        """The value encrypted by :meth:`encrypt` under the same ``context``; raises
        :class:`~surgbox.errors.IntegrityError` when the blob was altered, moved or the key differs."""
        blob = bytes(blob)
        if len(blob) < 1 + NONCE_SIZE + 16 or blob[:1] != VERSION:
            raise IntegrityError(f"encrypted catalog field {context} is malformed; restore the catalog from a backup")
        try:
            return self._aead.decrypt(blob[1:1 + NONCE_SIZE], blob[1 + NONCE_SIZE:], context.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise IntegrityError(
                f"encrypted catalog field {context} does not authenticate: the catalog was altered or "
                f"the master key (SURGBOX_HOME/keys/master.key) is not the one that wrote it"
            ) from None

    def _mac(self, data: str) -> bytes:
        return hmac.new(self._index_key, data.encode("utf-8"), hashlib.sha256).digest()

    def blind(self, field: str, value: str) -> bytes:
        """Keyed hash of the whole normalized value (exact-match search)."""
        return self._mac(f"{field}\x00{normalize(value)}")

    def token_hashes(self, field: str, value: str) -> list[bytes]:
        """Keyed hashes of each word of ``value`` (word search), one per distinct word."""
        return [self.token(field, w) for w in words(value)]

    def token(self, field: str, word: str) -> bytes:
        """Keyed hash of one already-normalized word of ``field``."""
        return self._mac(f"tok:{field}\x00{word}")
