"""Master keys: key files, passphrase keys (scrypt), key ids and key rings with rotation.

Key file formats (detected when loading):

* raw key: exactly 32 bytes, binary;
* hex key: 64 hexadecimal characters (surrounding whitespace ignored) — what :meth:`MasterKey.save` writes;
* passphrase key: a JSON object ``{"kdf": "scrypt", "salt": HEX, "n": N, "r": R, "p": P, "key_id": ID}``
  holding only the scrypt parameters; the key is ``scrypt(passphrase, salt, n, r, p, 32 bytes)``
  and ``key_id`` detects a wrong passphrase.

A key id is the first 8 bytes (16 hex characters) of ``SHA-256("surgbox-key-id:" || key)``: it names
a key in metadata without revealing it. Key files are created with mode 0600; loading one readable
by group or others logs a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from .._fs import create_new
from ..errors import ConfigError, IntegrityError

KEY_SIZE = 32
logger = logging.getLogger(__name__)

__all__ = ["KeyFileError", "KeyRing", "MasterKey", "ScryptParams", "WrongKeyError", "is_passphrase_file", "key_id_of", "load_key",
           "load_keyring"]


class KeyFileError(ConfigError):
    """A key file is missing, unreadable or not in a known format."""


class WrongKeyError(IntegrityError):
    """The key (or passphrase) given is not the one the data was written with."""


def key_id_of(material: bytes) -> str:
    """16-hex-character id of a key: first 8 bytes of SHA-256(b"surgbox-key-id:" + key)."""
    return hashlib.sha256(b"surgbox-key-id:" + material).hexdigest()[:16]


def _check_material(inst: object, attr: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise ValueError(f"a master key is {KEY_SIZE} bytes, got {len(value) if isinstance(value, bytes) else type(value).__name__}")


_PASSPHRASE_PROBE = 4096  # bytes read to recognize a passphrase key file


def _looks_like_passphrase(head: bytes, size: int) -> bool:
    # A passphrase key file is a JSON object (far longer than 32 bytes); a raw 32-byte key may start
    # with "{" by chance, a hex key never does.
    return size != KEY_SIZE and head.lstrip().startswith(b"{")


def is_passphrase_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a passphrase key file (scrypt parameters, needs a passphrase) rather than a
    raw or hex key. Reads at most 4 KiB; ``False`` when the file cannot be read (:func:`load_key`
    then reports why)."""
    try:
        with open(path, "rb") as f:
            return _looks_like_passphrase(f.read(_PASSPHRASE_PROBE), os.fstat(f.fileno()).st_size)
    except OSError:
        return False


@attrs.frozen(repr=False)
class MasterKey:
    """A 32-byte master key; ``source`` says where it came from (for error messages)."""

    material: bytes = attrs.field(validator=_check_material)
    source: str = attrs.field(default="", eq=False)

    @property
    def key_id(self) -> str:
        return key_id_of(self.material)

    def __repr__(self) -> str:  # never show key material
        return f"MasterKey(id={self.key_id}{', ' + self.source if self.source else ''})"

    @classmethod
    def generate(cls) -> MasterKey:
        """A new random key from the OS CSPRNG."""
        return cls(os.urandom(KEY_SIZE), "generated")

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "") -> MasterKey:
        """Parse key file contents: 32 raw bytes or 64 hex characters."""
        if len(data) == KEY_SIZE:
            return cls(bytes(data), source)
        text = data.strip()
        if len(text) == 2 * KEY_SIZE:
            try:
                return cls(bytes.fromhex(text.decode("ascii")), source)
            except (UnicodeDecodeError, ValueError):
                pass
        raise KeyFileError(
            f"key file {source or '(bytes)'} holds {len(data)} bytes: a key file must be exactly {KEY_SIZE} raw bytes "
            f"or {2 * KEY_SIZE} hex characters (create one with `surgbox crypt keygen FILE`)"
        )

    def save(self, path: str | os.PathLike[str], *, binary: bool = False) -> Path:
        """Write a new key file (mode 0600, refuses to overwrite): 64 hex characters + newline, or raw bytes."""
        path = Path(path)
        try:
            create_new(path, self.material if binary else (self.material.hex() + "\n").encode())
        except FileExistsError:
            raise KeyFileError(f"key file {path} already exists; choose another path (keys are never overwritten)") from None
        return path


SCRYPT_MAX_MEMORY = 1 << 30  # bytes scrypt may use (n=2**20 at r=8; the default n=2**17 uses 128 MiB)
SCRYPT_MAX_P = 16


@attrs.frozen
class ScryptParams:
    """Stored parameters that turn a passphrase into a master key (scrypt, 32-byte output).

    ``n`` is the CPU/memory cost (power of two; memory is ``128 * n * r`` bytes: 128 MiB by default,
    at most :data:`SCRYPT_MAX_MEMORY`, so a key file cannot make a login exhaust the machine);
    ``r`` >= 1, ``p`` 1 to :data:`SCRYPT_MAX_P`.
    """

    salt: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    n: int = attrs.field(default=1 << 17)
    r: int = attrs.field(default=8)
    p: int = attrs.field(default=1)
    key_id: str | None = attrs.field(default=None)

    @n.validator
    def _check_n(self, attr: object, value: int) -> None:
        if value < 2 or value & (value - 1):
            raise ValueError(f"scrypt n must be a power of two >= 2, got {value}")

    @r.validator
    def _check_r(self, attr: object, value: int) -> None:
        if value < 1:
            raise ValueError(f"scrypt r must be >= 1, got {value}")
        if 128 * self.n * value > SCRYPT_MAX_MEMORY:
            raise ValueError(f"scrypt n={self.n}, r={value} would need {128 * self.n * value >> 20} MiB; at most "
                             f"{SCRYPT_MAX_MEMORY >> 20} MiB (n up to {SCRYPT_MAX_MEMORY // (128 * value)} for r={value})")

    @p.validator
    def _check_p(self, attr: object, value: int) -> None:
        if not 1 <= value <= SCRYPT_MAX_P:
            raise ValueError(f"scrypt p must be from 1 to {SCRYPT_MAX_P}, got {value}")

    @key_id.validator
    def _check_key_id(self, attr: object, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"key_id must be a string, got {type(value).__name__}")

    @classmethod
    def generate(cls, *, n: int = 1 << 17, r: int = 8, p: int = 1) -> ScryptParams:
        return cls(os.urandom(16), n, r, p)

    def derive(self, passphrase: str | bytes, source: str = "") -> MasterKey:
        """The master key for ``passphrase``; :class:`WrongKeyError` when ``key_id`` is set and differs."""
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        pw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        key = MasterKey(Scrypt(salt=self.salt, length=KEY_SIZE, n=self.n, r=self.r, p=self.p).derive(pw), source)
        if self.key_id is not None and key.key_id != self.key_id:
            raise WrongKeyError(f"wrong passphrase for {source or 'this passphrase key'} (it derives key id "
                                f"{key.key_id}, the file expects {self.key_id})")
        return key

    def to_json(self) -> str:
        return json.dumps({"kdf": "scrypt", "salt": self.salt.hex(), "n": self.n, "r": self.r, "p": self.p,
                           "key_id": self.key_id}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "") -> ScryptParams:
        try:
            d = json.loads(text)
            if d.get("kdf") != "scrypt":
                raise ValueError(f"kdf is {d.get('kdf')!r}, only 'scrypt' is supported")
            return cls(bytes.fromhex(d["salt"]), int(d["n"]), int(d["r"]), int(d["p"]), d.get("key_id"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFileError(f"passphrase key file {source}: {exc}; recreate it with `surgbox crypt keygen --passphrase`") from None

    @classmethod
    def create(cls, path: str | os.PathLike[str], passphrase: str | bytes, **cost: int) -> tuple[ScryptParams, MasterKey]:
        """Choose a salt, derive the key and write the parameter file (mode 0600, never overwritten)."""
        params = cls.generate(**cost)
        key = params.derive(passphrase, str(path))
        params = attrs.evolve(params, key_id=key.key_id)
        try:
            create_new(Path(path), params.to_json().encode())
        except FileExistsError:
            raise KeyFileError(f"key file {path} already exists; choose another path") from None
        return params, key


def load_key(path: str | os.PathLike[str], passphrase: str | bytes | None = None) -> MasterKey:
    """Load a master key from a key file (raw, hex, or passphrase parameters + ``passphrase``)."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist; create one with `surgbox crypt keygen {path}`") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if _looks_like_passphrase(data[:_PASSPHRASE_PROBE], len(data)):  # the rule of is_passphrase_file()
        params = ScryptParams.from_json(data, str(path))
        if passphrase is None:
            raise KeyFileError(f"key file {path} is a passphrase key file and no passphrase was given: this "
                               f"command needs a raw/hex key file (create one with `surgbox crypt keygen KEY`) "
                               f"or, where the command supports it, the passphrase (--passphrase-env VAR, or "
                               f"typed at the prompt)")
        key = params.derive(passphrase, str(path))
    else:
        key = MasterKey.from_bytes(data, str(path))
    if st.st_mode & 0o077:  # warned only for a usable key: a file that is no key gets its error alone
        logger.warning("key file %s is accessible by group/others (mode %o); run `chmod 600 %s`",
                       path, stat.S_IMODE(st.st_mode), path)
    return key


@attrs.frozen
class KeyRing:
    """Master keys for reading, newest first; ``primary`` (the first) encrypts every new object.

    Rotation: ``ring.rotated(new_key)`` puts ``new_key`` first and keeps the old keys so existing
    objects stay readable; readers find a key by the id stored with the object.
    """

    keys: tuple[MasterKey, ...] = attrs.field(converter=tuple)

    @keys.validator
    def _check(self, attr: object, value: tuple[MasterKey, ...]) -> None:
        if not value:
            raise ValueError("a key ring needs at least one key")
        ids = [k.key_id for k in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a key ring holds the same key twice (ids {ids})")

    @property
    def primary(self) -> MasterKey:
        return self.keys[0]

    @property
    def ids(self) -> list[str]:
        return [k.key_id for k in self.keys]

    def get(self, key_id: str, what: str = "this data") -> MasterKey:
        """The key with ``key_id``; :class:`WrongKeyError` naming the ids we have otherwise."""
        for k in self.keys:
            if k.key_id == key_id:
                return k
        raise WrongKeyError(f"{what} was written with key id {key_id}, but the key ring holds only "
                            f"{', '.join(self.ids)}; pass the key file that wrote it (--key-file)")

    def rotated(self, new_key: MasterKey) -> KeyRing:
        """A ring with ``new_key`` as primary and the current keys kept for reading."""
        return KeyRing((new_key, *(k for k in self.keys if k.key_id != new_key.key_id)))

    @classmethod
    def of(cls, keys: Iterable[MasterKey] | MasterKey) -> KeyRing:
        return cls((keys,) if isinstance(keys, MasterKey) else tuple(keys))


def load_keyring(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
                 passphrase: str | bytes | None = None) -> KeyRing:
    """A :class:`KeyRing` from key files, newest (the one that encrypts) first."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise KeyFileError("no key file given; pass --key-file KEY (create one with `surgbox crypt keygen KEY`)")
    return KeyRing(tuple(load_key(p, passphrase) for p in paths))
