"""Finished segments waiting for their join, encrypted on disk under a key that only this
process holds (never written anywhere), so the driver's memory does not grow with the
recording's length and nothing decrypted rests on disk, even if the process is killed.

    with Spool.create(work_dir) as spool:
        spool.put("3", data)           # Tink streaming AES-256-GCM, associated data = the name
        with spool.open("3") as f:     # a seekable plaintext view, decrypted in memory
            ...
        spool.drop("3")

The directory (mode 0700) and whatever is in it are removed by :meth:`close`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from typing import IO

import attrs

PREFIX = "surgbox-deid-batch-"


@attrs.define(eq=False)
class Spool:
    """See the module doc; build with :meth:`create`."""

    path: str
    _key: bytes = attrs.field(repr=False, alias="_key")

    @classmethod
    def create(cls, work_dir: str | None = None) -> Spool:
        return cls(tempfile.mkdtemp(prefix=PREFIX, dir=work_dir), secrets.token_bytes(32))

    def _file(self, name: str) -> str:
        return os.path.join(self.path, f"{name}.enc")

    def put(self, name: str, data: bytes) -> None:
        from ..crypto import EncryptingWriter

        with open(self._file(name), "wb") as f, EncryptingWriter.open(f, self._key, name.encode()) as w:
            w.write(data)

    def open(self, name: str) -> IO[bytes]:
        from ..crypto import DecryptingReader

        return DecryptingReader.open(self._file(name), self._key, name.encode(), name=name)

    def drop(self, name: str) -> None:
        try:
            os.unlink(self._file(name))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._key = b""

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
