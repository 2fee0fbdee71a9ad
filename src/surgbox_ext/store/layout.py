"""The on-disk layout of one store root (:class:`Replica`) and the rules for object keys.

Each root (one per disk)::

    ROOT/surgbox-store.json     marker: {"format": "surgbox-store", "version": 1, "store_id": UUID}
    ROOT/objects/KEY            ciphertext (Tink AES256-GCM-HKDF stream, AAD = b"surgbox-store/v1:" + KEY)
    ROOT/meta/KEY.json          sidecar (metadata.ObjectMeta); present <=> committed
    ROOT/meta/KEY.deleted       tombstone (metadata.Tombstone)
    ROOT/tmp/ID.json, ID.part   an open (or crashed) write and its ciphertext so far; HASH.lock per-key locks
    ROOT/pending/HASH.json      an object committed with fewer copies than the store has roots (until scrub)
    ROOT/quarantine/STAMP/...   copies and records scrub set aside instead of deleting them

Every file is written durably through :mod:`surgbox._fs` (temporary file in ``tmp/``, fsync,
rename, fsync of the folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs

from surgbox._fs import atomic_write, fsync_dir, make_dirs, replace
from surgbox.errors import StoreError

from .metadata import ObjectMeta, Tombstone

MARKER = "surgbox-store.json"
FORMAT = "surgbox-store"
VERSION = 1
AAD_PREFIX = b"surgbox-store/v1:"
MAX_KEY_BYTES = 1024  # UTF-8 bytes of a whole key
MAX_PART_BYTES = 200  # UTF-8 bytes of one part (a file name: NAME_MAX 255 less ".deleted" and room)
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _show(key: str) -> str:
    text = repr(key[:48]) + ("..." if len(key) > 48 else "")
    return f"{text} ({len(key)} characters)" if len(key) > 48 else text


def validate_key(key: str) -> str:
    """Check an object key: a relative POSIX path of non-empty parts, none ``.``/``..``, printable
    text (no control, line-separator or bidi-override characters), at most 1024 UTF-8 bytes and 200
    per part; returns it, else :class:`StoreError` naming the rule."""
    bad = (not isinstance(key, str) or not key or "\\" in key or "\0" in key or key.startswith("/")
           or any(part in ("", ".", "..") for part in key.split("/")))
    if bad:
        raise StoreError(f"object key {_show(key) if isinstance(key, str) else repr(key)} is not a relative POSIX "
                         f"path without '.', '..' or empty parts (example: '2026/11/ev-123/segment-0001.mp4')")
    for c in key:
        if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI:
            raise StoreError(f"object key {_show(key)} contains the control character U+{ord(c):04X}; "
                             f"keys are printable text (example: '2026/11/ev-123/segment-0001.mp4')")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise StoreError(f"object key {_show(key)} is too long: at most {MAX_KEY_BYTES} bytes (UTF-8); use a shorter key")
    longest = max(key.split("/"), key=lambda p: len(p.encode("utf-8")))
    if len(longest.encode("utf-8")) > MAX_PART_BYTES:
        raise StoreError(f"object key {_show(key)} has a part of {len(longest.encode('utf-8'))} bytes: each part "
                         f"between '/' is at most {MAX_PART_BYTES} bytes (UTF-8); use shorter names")
    return key


def object_aad(key: str) -> bytes:
    """Associated data binding a ciphertext to its object key (so copies cannot be swapped between keys)."""
    return AAD_PREFIX + key.encode("utf-8")


def key_hash(key: str) -> str:
    """32 hex digits naming ``key`` in flat folders (locks, pending records)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@attrs.define(eq=False)
class Replica:
    """One root directory of a store, with its health: ``state`` is ``"ok"``, ``"failed"`` or ``"unchecked"``."""

    root: Path = attrs.field(converter=lambda p: Path(p).absolute())
    state: str = "unchecked"
    error: str | None = None
    store_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def data_path(self, key: str) -> Path:
        return self.root / "objects" / key

    def meta_path(self, key: str) -> Path:
        return self.root / "meta" / (key + ".json")

    def tombstone_path(self, key: str) -> Path:
        return self.root / "meta" / (key + ".deleted")

    def pending_path(self, key: str) -> Path:
        return self.root / "pending" / (key_hash(key) + ".json")

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def identity(self) -> tuple[str, tuple[int, int] | None]:
        """``(real path, (st_dev, st_ino))`` of the root (``None`` when it is missing)."""
        real = os.path.realpath(self.root)
        try:
            st = os.stat(real)
        except OSError:
            return real, None
        return real, (st.st_dev, st.st_ino)

    def probe(self, *, init: bool, store_id: str | None) -> str:
        """Check the root (and create its layout if ``init``); returns its store id. Raises OSError/StoreError."""
        if not self.root.is_dir():
            raise StoreError(f"store root {self.root} is missing (disk not mounted?)")
        marker = self.root / MARKER
        if marker.exists():
            try:
                d = json.loads(marker.read_bytes())
                if d.get("format") != FORMAT:
                    raise ValueError(d.get("format"))
                found = str(d["store_id"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise StoreError(f"store root {self.root}: {MARKER} is corrupt ({exc})") from None
            if store_id is not None and found != store_id:
                raise StoreError(f"store root {self.root} belongs to another store ({found}, expected {store_id}); "
                                 f"give the roots of one store")
        elif init:
            found = store_id or str(uuid.uuid4())
            self.write_file(marker, json.dumps({"format": FORMAT, "version": VERSION, "store_id": found}).encode())
        else:
            raise StoreError(f"{self.root} is not a surgbox store root (no {MARKER}); "
                             f"initialize it with `surgbox store init --root {self.root}`")
        for sub in ("objects", "meta", "tmp"):
            d = self.root / sub
            if not d.is_dir():
                d.mkdir()
                fsync_dir(self.root)
        probe = self.tmp / f"probe-{uuid.uuid4().hex}"  # writable? (read-only mount, EIO)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
        self.store_id = found
        return found

    def write_file(self, final: Path, data: bytes) -> None:
        """Write ``final`` atomically and durably (temporary file in ``tmp/``, or beside it)."""
        make_dirs(final.parent, self.root)
        atomic_write(final, data, tmp_dir=self.tmp if self.tmp.is_dir() else None)

    def install(self, tmp: Path, final: Path) -> None:
        """Rename a synced temp file into place and make the rename durable."""
        make_dirs(final.parent, self.root)
        replace(tmp, final)

    # ---- sidecars and tombstones ---------------------------------------------------------
    def read_meta(self, key: str) -> ObjectMeta | None:
        """The sidecar of ``key`` (``None`` if absent); ``ValueError`` if corrupt."""
        try:
            data = self.meta_path(key).read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise ValueError("the sidecar is a folder") from None
        meta = ObjectMeta.from_json(data)
        if meta.key != key:
            raise ValueError(f"sidecar names key {meta.key!r}")
        return meta

    def write_meta(self, meta: ObjectMeta) -> None:
        self.write_file(self.meta_path(meta.key), meta.to_json())

    def iter_keys(self, suffix: str = ".json") -> Iterator[str]:
        """Keys with a sidecar here (``suffix=".deleted"``: keys with a tombstone)."""
        base = self.root / "meta"
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            for f in files:
                if f.endswith(suffix):
                    name = f[: -len(suffix)]
                    yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")

    def read_tombstone(self, key: str) -> Tombstone | None:
        """The tombstone of ``key`` here; ``None`` if there is none or it is unreadable."""
        try:
            return Tombstone.from_json(self.tombstone_path(key).read_bytes(), key)
        except (OSError, ValueError):
            return None

    def write_tombstone(self, tomb: Tombstone) -> None:
        """Record that ``tomb.key`` was deleted (atomic, durable)."""
        self.write_file(self.tombstone_path(tomb.key), tomb.to_json())

    def remove_copy(self, key: str) -> None:
        """Delete this root's copy of ``key``: sidecar first (never a listed object without data), then data."""
        meta = self.meta_path(key)
        if meta.exists():
            meta.unlink()
            fsync_dir(meta.parent)
        self.data_path(key).unlink(missing_ok=True)

    # ---- under-replicated objects (persisted degradation) ---------------------------------
    def add_pending(self, key: str, copies: int, roots: int) -> None:
        """Note that ``key`` was committed with ``copies`` copies of ``roots`` (read by ``status``)."""
        record = {"format": "surgbox-pending", "key": key, "copies": copies, "roots": roots, "since_ns": time.time_ns()}
        self.write_file(self.pending_path(key), json.dumps(record).encode())

    def remove_pending(self, key: str) -> None:
        path = self.pending_path(key)
        if path.exists():
            path.unlink()
            fsync_dir(path.parent)

    def pending(self) -> list[str]:
        """Keys noted by :meth:`add_pending` here (records that are not valid are skipped)."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / "pending"):
                try:
                    d = json.loads(Path(entry.path).read_bytes())
                    key = validate_key(d["key"])
                except (OSError, ValueError, KeyError, TypeError, StoreError):
                    continue
                if entry.name == key_hash(key) + ".json":
                    out.append(key)
        return out

    # ---- quarantine ----------------------------------------------------------------------
    def quarantine(self, key: str, *, data: bool = True, meta: bool = True, tombstone: bool = False) -> Path | None:
        """Move this root's files of ``key`` (data, sidecar, tombstone) into a new folder
        ``quarantine/STAMP-ID/`` (same relative paths), durably; returns it (``None`` if nothing moved)."""
        moves = [(p, rel) for want, p, rel in (
            (data, self.data_path(key), Path("objects") / key),
            (meta, self.meta_path(key), Path("meta") / (key + ".json")),
            (tombstone, self.tombstone_path(key), Path("meta") / (key + ".deleted"))) if want and p.is_file()]
        if not moves:
            return None
        dest = self.root / "quarantine" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        for src, rel in moves:
            make_dirs((dest / rel).parent, self.root)
            replace(src, dest / rel)
            fsync_dir(src.parent)
        return dest

    def quarantined(self) -> int:
        """Folders in ``quarantine/`` (each holds what one scrub decision set aside)."""
        try:
            return sum(1 for _ in os.scandir(self.root / "quarantine"))
        except FileNotFoundError:
            return 0
