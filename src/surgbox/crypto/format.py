"""Tink's AES-GCM-HKDF streaming format: geometry, key derivation and per-segment AES-256-GCM.

Ciphertext layout (all integers big-endian)::

    header    = 0x28 (header length, 40) || salt (32 random bytes) || nonce_prefix (7 random bytes)
    segment i = AES-256-GCM(derived_key, nonce_i, plaintext_i) (ciphertext || 16-byte tag), no GCM AAD
    nonce_i   = nonce_prefix || uint32(i) || (0x01 if i is the last segment else 0x00)
    derived_key = HKDF-SHA256(ikm=master key, salt=salt, info=associated data, length=32)

    file = header || segment 0 || segment 1 || ... || segment n-1

Every ciphertext segment is ``segment_size`` bytes (default 1 MiB, 1048576) except the first, which is
shorter by the 40-byte header (so segment boundaries stay aligned on ``segment_size`` in the file),
and the last, which may be shorter. Plaintext per segment: ``segment_size - 56`` bytes for segment 0,
``segment_size - 16`` for the others. An empty message is one empty last segment (the header plus a
16-byte tag).

Authentication: each segment's tag covers its position (counter in the nonce) and whether it is the
last one, and the key is bound to the associated data, so modified, reordered, truncated or extended
ciphertexts and wrong associated data or keys all fail with :class:`DecryptionError`.

This module holds only the format (no I/O): :class:`StreamFormat` (sizes and offsets),
:func:`derive_key`, :class:`SegmentCipher` (one stream's key and nonce prefix) and the header.
The writer, reader, salvage and bulk functions build on it (:mod:`surgbox.crypto.streaming`).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError, SurgboxError

KEY_SIZE = 32  # AES-256 derived key and salt size, bytes
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
HEADER_SIZE = 1 + KEY_SIZE + NONCE_PREFIX_SIZE  # 40
DEFAULT_SEGMENT_SIZE = 1 << 20  # ciphertext segment size, bytes (Tink's AES256_GCM_HKDF_1MB)
MIN_SEGMENT_SIZE = HEADER_SIZE + TAG_SIZE + 1  # 57: segment 0 holds at least one byte
MAX_SEGMENT_SIZE = (1 << 31) - 1
MAX_SEGMENTS = 1 << 32  # the segment counter is 4 bytes

__all__ = ["DEFAULT_SEGMENT_SIZE", "HEADER_SIZE", "KEY_SIZE", "MAX_SEGMENT_SIZE", "MIN_SEGMENT_SIZE", "TAG_SIZE",
           "DecryptionError", "SegmentCipher", "StreamFormat", "check_segment_size", "derive_key", "parse_header"]


class DecryptionError(IntegrityError):
    """Ciphertext failed authentication (tampered, truncated, reordered, wrong key or associated data)."""


def check_segment_size(value: Any) -> int:
    """``value`` as a segment size in bytes; :class:`ValueError` naming the valid range otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SEGMENT_SIZE <= value <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment_size must be an integer from {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE} bytes "
                         f"(default {DEFAULT_SEGMENT_SIZE}), got {value!r}")
    return value


def _validate_segment_size(inst: Any, attr: Any, value: int) -> None:
    check_segment_size(value)


@attrs.frozen
class StreamFormat:
    """Segment geometry of an AES256-GCM-HKDF stream; ``segment_size`` is the ciphertext segment size in bytes."""

    segment_size: int = attrs.field(default=DEFAULT_SEGMENT_SIZE, validator=_validate_segment_size)

    @property
    def first_plain(self) -> int:
        """Plaintext bytes in segment 0."""
        return self.segment_size - HEADER_SIZE - TAG_SIZE

    @property
    def plain(self) -> int:
        """Plaintext bytes in every other full segment."""
        return self.segment_size - TAG_SIZE

    def segment_count(self, plaintext_size: int) -> int:
        """Segments used for ``plaintext_size`` bytes (at least 1)."""
        if plaintext_size <= self.first_plain:
            return 1
        return 1 + -(-(plaintext_size - self.first_plain) // self.plain)

    def ciphertext_size(self, plaintext_size: int) -> int:
        """Total file size in bytes for ``plaintext_size`` bytes of plaintext."""
        return HEADER_SIZE + plaintext_size + TAG_SIZE * self.segment_count(plaintext_size)

    def layout(self, ciphertext_size: int) -> tuple[int, int]:
        """``(segments, plaintext_size)`` of a complete stream of ``ciphertext_size`` bytes.

        Raises :class:`DecryptionError` when no complete stream has that size (cut inside a tag).
        """
        body = ciphertext_size - HEADER_SIZE
        if body < TAG_SIZE:
            raise DecryptionError(f"ciphertext of {ciphertext_size} bytes is too short (truncated)")
        first_ct = self.segment_size - HEADER_SIZE
        if body <= first_ct:
            return 1, body - TAG_SIZE
        rest = body - first_ct
        full, tail = divmod(rest, self.segment_size)
        if tail == 0:
            n = 1 + full
        elif tail < TAG_SIZE:
            raise DecryptionError(f"ciphertext of {ciphertext_size} bytes ends inside a segment tag (truncated)")
        else:
            n = 2 + full
        return n, body - TAG_SIZE * n

    def segment_offset(self, index: int) -> int:
        """File offset of ciphertext segment ``index``."""
        return HEADER_SIZE if index == 0 else index * self.segment_size

    def segment_length(self, index: int) -> int:
        """Ciphertext bytes of a full (not last) segment ``index``."""
        return self.segment_size - (HEADER_SIZE if index == 0 else 0)

    def plain_offset(self, index: int) -> int:
        """Plaintext offset of the first byte of segment ``index``."""
        return 0 if index == 0 else self.first_plain + (index - 1) * self.plain

    def segment_at(self, plain_pos: int) -> int:
        """Index of the segment holding plaintext byte ``plain_pos``."""
        if plain_pos < self.first_plain:
            return 0
        return 1 + (plain_pos - self.first_plain) // self.plain


def derive_key(master_key: bytes, salt: bytes, associated_data: bytes) -> bytes:
    """The per-file AES-256 key: HKDF-SHA256(ikm=master_key, salt=salt, info=associated_data), 32 bytes."""
    if len(master_key) < KEY_SIZE:
        raise ValueError(f"master key must be at least {KEY_SIZE} bytes, got {len(master_key)}")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=associated_data).derive(master_key)


_HAS_INTO = hasattr(AESGCM, "encrypt_into")  # recent cryptography releases encrypt into a caller's buffer


def parse_header(header: bytes, name: str) -> tuple[bytes, bytes]:
    """``(salt, nonce_prefix)`` of a 40-byte stream header; :class:`DecryptionError` naming ``name``."""
    if len(header) < HEADER_SIZE:
        raise DecryptionError(f"{name}: {len(header)} bytes is shorter than the {HEADER_SIZE}-byte header "
                              f"(truncated or not encrypted)")
    if header[0] != HEADER_SIZE:
        raise DecryptionError(
            f"{name}: header length byte is {header[0]}, expected {HEADER_SIZE}: not an AES256-GCM-HKDF "
            f"stream (or the header was modified)"
        )
    return bytes(header[1 : 1 + KEY_SIZE]), bytes(header[1 + KEY_SIZE : HEADER_SIZE])


@attrs.define(eq=False)
class SegmentCipher:
    """AES-256-GCM of one stream: the derived key and the nonce prefix from its header.

    Build with :meth:`new` (random salt and prefix, for writing) or :meth:`from_header`.
    """

    aead: AESGCM = attrs.field(repr=False)
    prefix: bytes = attrs.field(repr=False)
    header: bytes = attrs.field(repr=False)

    @classmethod
    def new(cls, key: bytes, associated_data: bytes = b"", *, salt: bytes | None = None,
            nonce_prefix: bytes | None = None) -> SegmentCipher:
        """A fresh stream's cipher. ``salt``/``nonce_prefix`` are random unless given (given only for
        test vectors: reusing them with the same key and associated data breaks confidentiality)."""
        salt = os.urandom(KEY_SIZE) if salt is None else salt
        prefix = os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
        if len(salt) != KEY_SIZE or len(prefix) != NONCE_PREFIX_SIZE:
            raise ValueError(f"salt must be {KEY_SIZE} bytes and nonce_prefix {NONCE_PREFIX_SIZE} bytes")
        return cls(AESGCM(derive_key(key, salt, associated_data)), prefix, bytes([HEADER_SIZE]) + salt + prefix)

    @classmethod
    def from_header(cls, key: bytes, associated_data: bytes, header: bytes, name: str = "<stream>") -> SegmentCipher:
        """The cipher of an existing stream; :class:`DecryptionError` when ``header`` is not one."""
        salt, prefix = parse_header(header, name)
        return cls(AESGCM(derive_key(key, salt, associated_data)), prefix, bytes(header[:HEADER_SIZE]))

    def nonce(self, index: int, last: bool) -> bytes:
        if index >= MAX_SEGMENTS:
            raise SurgboxError(f"stream exceeds {MAX_SEGMENTS} segments; use a larger segment_size")
        return self.prefix + struct.pack(">IB", index, 1 if last else 0)

    def encrypt_into(self, index: int, last: bool, plain: Any, out: memoryview) -> None:
        """Encrypt segment ``index`` of ``plain`` into ``out`` (exactly ``len(plain) + 16`` bytes)."""
        nonce = self.nonce(index, last)
        if _HAS_INTO:
            self.aead.encrypt_into(nonce, plain, None, out)
        else:  # older cryptography: one extra copy
            out[:] = self.aead.encrypt(nonce, bytes(plain), None)

    def decrypt(self, index: int, last: bool, ct: Any, out: memoryview | None = None) -> bytes:
        """Authenticate and decrypt segment ``index``: its plaintext, or (with ``out``, exactly the
        plaintext length) into ``out``, returning ``b""``. :class:`DecryptionError` (without
        context: callers add it) if the tag does not verify; ``out`` is then zeroed."""
        nonce = self.nonce(index, last)
        try:
            if out is None:
                return self.aead.decrypt(nonce, ct if _HAS_INTO else bytes(ct), None)
            if _HAS_INTO:
                self.aead.decrypt_into(nonce, ct, None, out)
            else:
                out[:] = self.aead.decrypt(nonce, bytes(ct), None)
            return b""
        except InvalidTag:
            if out is not None:
                out[:] = bytes(len(out))  # never leave unauthenticated plaintext in the caller's buffer
            raise DecryptionError("authentication tag mismatch") from None
