"""Streaming AES-256-GCM in Tink's AES-GCM-HKDF streaming format (byte-compatible with Tink).

One import for the whole streaming API; each piece lives in a module of its own:

* :mod:`~surgbox.crypto.format` -- the bytes (header, segments, nonces, HKDF), :class:`StreamFormat`,
  :func:`derive_key`, :class:`SegmentCipher`, :class:`DecryptionError`;
* :mod:`~surgbox.crypto.writer` -- :class:`EncryptingWriter`;
* :mod:`~surgbox.crypto.reader` -- :class:`DecryptingReader` over a :class:`SegmentSource`
  (:class:`SingleCopy` for one ciphertext);
* :mod:`~surgbox.crypto.salvage` -- :func:`salvage`, the authentic prefix of an unfinished stream;
* :mod:`~surgbox.crypto.bulk` -- :func:`encrypt_file` (parallel) and :func:`decrypt_file`.

Reading several copies of one object (a mirror) and choosing between them is the store's policy
(``surgbox_ext.store.failover``), not the format's.
"""

from __future__ import annotations

from .bulk import decrypt_file, encrypt_file
from .format import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    DecryptionError,
    SegmentCipher,
    StreamFormat,
    check_segment_size,
    derive_key,
)
from .reader import DecryptingReader, SegmentSource, SingleCopy
from .salvage import SalvageResult, salvage
from .writer import EncryptingWriter

__all__ = [
    "DEFAULT_SEGMENT_SIZE", "HEADER_SIZE", "TAG_SIZE", "DecryptionError", "DecryptingReader", "EncryptingWriter",
    "SalvageResult", "SegmentCipher", "SegmentSource", "SingleCopy", "StreamFormat", "check_segment_size",
    "decrypt_file", "derive_key", "encrypt_file", "salvage",
]
