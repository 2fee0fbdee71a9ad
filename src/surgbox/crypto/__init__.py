"""Encryption at rest: Tink-compatible streaming AES-256-GCM (:mod:`.streaming`) and master keys (:mod:`.keys`)."""

from .keys import (
    KeyFileError,
    KeyRing,
    MasterKey,
    ScryptParams,
    WrongKeyError,
    is_passphrase_file,
    load_key,
    load_keyring,
)
from .streaming import (
    DEFAULT_SEGMENT_SIZE,
    DecryptingReader,
    DecryptionError,
    EncryptingWriter,
    SalvageResult,
    StreamFormat,
    decrypt_file,
    derive_key,
    encrypt_file,
    salvage,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE", "DecryptingReader", "DecryptionError", "EncryptingWriter", "KeyFileError", "KeyRing",
    "MasterKey", "SalvageResult", "ScryptParams", "StreamFormat", "WrongKeyError", "decrypt_file", "derive_key",
    "encrypt_file", "is_passphrase_file", "load_key", "load_keyring", "salvage",
]
