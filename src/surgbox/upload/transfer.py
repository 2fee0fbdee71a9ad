"""Sending one file to a remote and proving it arrived: plain WebDAV and Nextcloud chunking v2.

**Plain WebDAV** (any server): ``MKCOL`` the missing folders, ``PUT`` the bytes to a temporary
name beside the target (``.NAME.surgbox-part``), ``PROPFIND`` it to check the size, ``MOVE`` it
onto the target (so a reader never sees a partial file), ``DELETE`` the temporary name when
something failed. A break restarts the file (finished files are not sent again).

**Nextcloud chunking v2** (files larger than one chunk; docs.nextcloud.com, developer manual,
"Chunked file upload"): ``MKCOL uploads/USER/ID`` with ``Destination``; ``PUT uploads/USER/ID/N``
for N = 1, 2, ... (zero-padded to 5 digits so name order is number order; every chunk but the
last exactly ``chunk_size`` bytes) with ``Destination`` and ``OC-Total-Length``; ``MOVE
uploads/USER/ID/.file`` onto the target with ``Destination``, ``OC-Total-Length`` and
``X-OC-Mtime``. The upload id is saved (``save_transfer``) before the first chunk, so after a break
the next attempt lists the chunks already there (``PROPFIND`` depth 1) and sends only the missing
ones; when the folder is gone (Nextcloud expires it after 24 h idle) it starts a new one.

**Verification**: Nextcloud keeps ``OC-Checksum`` without checking it, so after every file the
remote copy is read back (``GET``) and its SHA-256 compared with the store's; a mismatch deletes
the remote file and raises :class:`~.errors.VerificationError` (the caller retries).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import IO

import attrs

from .errors import UploadError, VerificationError
from .webdav import Dav, Throttle, body

CHUNK_NAME = "{:05d}"
MAX_CHUNKS = 10_000


@attrs.frozen
class Payload:
    """One file to send: ``path`` relative to the remote's folder, its ``size`` (bytes) and SHA-256,
    ``open()`` giving a fresh seekable binary stream of exactly those bytes, what it is (``part``,
    see :class:`~.jobs.UploadedFile`) and the store key it comes from."""

    path: str
    size: int
    sha256: str
    open: Callable[[], IO[bytes]] = attrs.field(eq=False, repr=False)
    part: str = "object"
    store_key: str | None = None


@attrs.define(eq=False)
class Sender:
    """Sends payloads through one :class:`~.webdav.Dav`. ``sent(n)`` is told every piece sent;
    ``requests`` counts requests by method (tests and the progress summary read it);
    ``should_stop()`` is asked between chunks (a paused or cancelled job)."""

    dav: Dav
    throttle: Throttle
    sent: Callable[[int], None] = lambda n: None
    should_stop: Callable[[], bool] = lambda: False
    folders: set[str] = attrs.field(factory=set)
    requests: dict[str, int] = attrs.field(factory=dict)

    def _count(self, method: str) -> None:
        self.requests[method] = self.requests.get(method, 0) + 1

    def _parent(self, p: Payload) -> None:
        parent = p.path.rsplit("/", 1)[0] if "/" in p.path else ""
        before = len(self.folders)
        self.dav.ensure_folders(parent, self.folders)
        self.requests["MKCOL"] = self.requests.get("MKCOL", 0) + len(self.folders) - before

    def send_plain(self, p: Payload) -> None:
        """PUT to a temporary name, check its size, MOVE it into place (see the module docstring)."""
        self._parent(p)
        head, _, name = p.path.rpartition("/")
        tmp = self.dav.url((head + "/" if head else "") + f".{name}.surgbox-part")
        with p.open() as stream:
            self._count("PUT")
            try:
                self.dav.put(tmp, body(stream, p.size, self.throttle, self.sent), p.size)
                self._count("PROPFIND")
                got = self.dav.size(tmp)
                if got != p.size:
                    raise UploadError(f"remote {self.dav.remote.name}: {p.path} arrived with {got} bytes of {p.size}; "
                                      f"sending it again", transient=True)
                self._count("MOVE")
                self.dav.move(tmp, self.dav.url(p.path))
            except BaseException:
                try:
                    self._count("DELETE")
                    self.dav.delete(tmp)
                except UploadError:
                    pass  # the server is gone; the next attempt overwrites the temporary name
                raise

    def send_chunked(self, p: Payload, transfer: str | None, save_transfer: Callable[[str | None], None]) -> None:
        """Nextcloud chunking v2 into ``p.path``, resuming upload folder ``transfer`` when it still exists."""
        dav, remote = self.dav, self.dav.remote
        cs = remote.chunk_size
        count = -(-p.size // cs)
        if count > MAX_CHUNKS:
            raise UploadError(f"{p.path}: {p.size} bytes need {count} chunks of {cs} bytes, more than Nextcloud's "
                              f"{MAX_CHUNKS}; raise the remote's chunk size (--chunk-mib)")
        dest = dav.url(p.path)
        self._parent(p)
        present: dict[int, int] = {}
        if transfer is not None:
            self._count("PROPFIND")
            entries = dav.propfind(remote.uploads_url + transfer + "/", 1)
            if entries is None:
                transfer = None  # expired on the server (or never made): start over
            else:
                for e in entries:
                    if not e.folder and e.name.isdigit() and e.size is not None:
                        present[int(e.name)] = e.size
        if transfer is None:
            transfer = f"surgbox-{uuid.uuid4().hex}"
            save_transfer(transfer)
            self._count("MKCOL")
            dav.mkcol(remote.uploads_url + transfer + "/", headers={"Destination": dest})
        folder = remote.uploads_url + transfer + "/"
        headers = {"Destination": dest, "OC-Total-Length": str(p.size)}
        with p.open() as stream:
            for n in range(1, count + 1):
                length = min(cs, p.size - (n - 1) * cs)
                if present.get(n) == length:
                    self.sent(length)
                    continue
                if self.should_stop():
                    raise UploadError(f"upload of {p.path} stopped after chunk {n - 1} of {count} (job paused or "
                                      f"cancelled); it resumes from there")
                stream.seek((n - 1) * cs)
                self._count("PUT")
                try:
                    dav.put(folder + CHUNK_NAME.format(n), body(stream, length, self.throttle, self.sent), length,
                            headers=headers)
                except UploadError as exc:
                    if exc.status == 404:  # the upload folder expired between chunks
                        save_transfer(None)
                        raise UploadError(f"remote {remote.name}: the upload folder of {p.path} is gone (expired); "
                                          f"starting it again", transient=True) from None
                    raise
        self._count("MOVE")
        try:
            dav.request("MOVE", folder + ".file", ok=(201, 204), headers={
                **headers, "Overwrite": "T", "X-OC-Mtime": str(int(time.time()))})
        except UploadError as exc:
            if exc.status in (400, 404, 409):  # chunks missing or folder expired: start this file again
                save_transfer(None)
                with_cleanup(dav, folder)
                raise UploadError(f"remote {remote.name}: assembling {p.path} failed ({exc}); sending it again",
                                  transient=True) from None
            raise
        save_transfer(None)

    def verify(self, p: Payload, local_sha256: Callable[[], str]) -> None:
        """Read the remote copy back and compare size and SHA-256; on a mismatch delete it and raise
        :class:`VerificationError`, or :class:`UploadError` when the store's own copy is the damaged one."""
        self._count("GET")
        size, digest = self.dav.digest(self.dav.url(p.path))
        if size == p.size and digest == p.sha256:
            return
        if local_sha256() != p.sha256:
            raise UploadError(f"{p.path}: the store's copy does not match its checksum; run `surgbox store scrub` "
                              f"(nothing was recorded as uploaded)")
        self._count("DELETE")
        self.dav.delete(self.dav.url(p.path))
        raise VerificationError(f"remote {self.dav.remote.name}: {p.path} read back as {size} bytes with SHA-256 "
                                f"{digest[:16]}..., expected {p.size} bytes {p.sha256[:16]}...; deleted it, sending "
                                f"it again")


def with_cleanup(dav: Dav, folder: str) -> None:
    """``DELETE`` a chunked-upload folder, best effort (aborts the upload on the server)."""
    try:
        dav.delete(folder)
    except UploadError:
        pass


def sha256_of(open_stream: Callable[[], IO[bytes]]) -> str:
    """SHA-256 hex of a whole stream (bounded memory)."""
    h = hashlib.sha256()
    with open_stream() as s:
        while piece := s.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


__all__ = ["CHUNK_NAME", "MAX_CHUNKS", "Payload", "Sender", "sha256_of"]
