"""``surgbox remote test``: prove a remote takes, keeps and returns a file the way uploads write it."""

from __future__ import annotations

import hashlib
import io
import os
import uuid

from .remotes import Remote
from .transfer import Payload, Sender, with_cleanup
from .webdav import Dav, Throttle

PROBE_DIR = ".surgbox-probe"


def probe(remote: Remote, *, timeout: float = 30.0) -> list[str]:
    """Write, verify and delete a probe file below the remote's folder (``.surgbox-probe/``): the
    plain path (PUT to a temporary name, PROPFIND, MOVE, GET), and for Nextcloud also a chunked
    upload of two chunks. Returns what was checked; raises :class:`~.errors.UploadError`."""
    done = []
    with Dav(remote, timeout=timeout) as dav:
        sender = Sender(dav, Throttle(None))
        data = os.urandom(1024)
        name = f"{PROBE_DIR}/probe-{uuid.uuid4().hex[:12]}"
        plain = Payload(name, len(data), hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data))
        try:
            sender.send_plain(plain)
            sender.verify(plain, lambda: plain.sha256)
            done.append("login, folders, PUT+MOVE, read-back")
            if remote.kind == "nextcloud":
                big = os.urandom(remote.chunk_size + 1)
                chunked = Payload(name + "-chunked", len(big), hashlib.sha256(big).hexdigest(), lambda: io.BytesIO(big))
                sender.send_chunked(chunked, None, lambda tid: None)
                sender.verify(chunked, lambda: chunked.sha256)
                dav.delete(dav.url(chunked.path))
                done.append("chunked upload v2")
        finally:
            with_cleanup(dav, dav.url(PROBE_DIR + "/"))
    return done
