"""Remotes: where uploads go (a Nextcloud account or any WebDAV folder), kept in the catalog.

A remote's password (a Nextcloud app password) is stored only encrypted, in the catalog's
``remotes`` table, with the catalog's field encryption (AES-256-GCM under a key derived from the
master key, associated data ``remotes.password:<name>``; :mod:`surgbox.catalog.phi`), so it is
never in clear under ``SURGBOX_HOME``, in ``config.toml``, in logs or in the audit trail.

Adding and removing remotes needs ``manage_users`` (the admin role: choosing where recordings
may go is an administrator's decision); listing, testing and using one needs ``upload``.

>>> r = Remote("nc", "nextcloud", "https://cloud.example.org/remote.php/dav/files/alice/surgbox", "alice", "app-pw")
>>> r.files_url, r.uploads_url
('https://cloud.example.org/remote.php/dav/files/alice/surgbox/', 'https://cloud.example.org/remote.php/dav/uploads/alice/')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import attrs

from ..catalog.db import to_text
from ..catalog.errors import CatalogError, NotFoundError
from .errors import UploadError

KINDS = ("webdav", "nextcloud")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_CHUNK = 64 * 1024  # the test server's floor; Nextcloud itself wants 5 MB..5 GB (docs/upload.md)
MAX_CHUNK = 5 * 1024**3
DEFAULT_CHUNK = 10 * 1024 * 1024
_NC_FILES = re.compile(r"^(?P<base>.*?)/remote\.php/dav/files/(?P<user>[^/]+)(?P<folder>/.*)?$")


def _check_name(inst: Any, attr: Any, value: str) -> None:
    if not isinstance(value, str) or not NAME.match(value):
        raise UploadError(f"remote name {value!r} is not valid: use 1-64 lower-case letters, digits, '-' or '_' "
                          f"(e.g. 'hospital-nc')")


def _check_kind(inst: Any, attr: Any, value: str) -> None:
    if value not in KINDS:
        raise UploadError(f"remote kind {value!r} is not one of {', '.join(KINDS)}")


def _encodable(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise UploadError(f"{what} {value!r} holds bytes that are not UTF-8 text; type it again") from None


def _check_url(inst: Any, attr: Any, value: str) -> None:
    if not isinstance(value, str):
        raise UploadError(f"remote URL {value!r} is not text")
    _encodable(value, "remote URL")
    try:
        u = urlsplit(value)
        port = u.port
    except ValueError as exc:
        raise UploadError(f"remote URL {value!r} is not a URL ({exc}); e.g. https://cloud.example.org/remote.php/dav/"
                          f"files/alice/surgbox") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UploadError(f"remote URL {value!r} must start with https:// (or http://) and name a host")
    if u.username or u.password:
        raise UploadError("remote URL must not hold a user name or password; give --user and --password-env/"
                          "--password-file instead (the URL is stored and shown in clear)")
    if u.query or u.fragment:
        raise UploadError(f"remote URL {value!r} must not have a query (?...) or fragment (#...)")
    del port


def _check_chunk(inst: Any, attr: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_CHUNK <= value <= MAX_CHUNK:
        raise UploadError(f"chunk size {value!r} must be a whole number of bytes from {MIN_CHUNK} (64 KiB) to "
                          f"{MAX_CHUNK} (5 GiB); Nextcloud needs at least 5 MB (--chunk-mib 5)")


def _check_bandwidth(inst: Any, attr: Any, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e5):
        raise UploadError(f"bandwidth {value!r} must be a number of megabytes per second above 0 (at most 100000)")


@attrs.frozen(repr=False)
class Remote:
    """One upload destination. ``url``: for ``webdav`` the folder (collection) that receives the
    uploads; for ``nextcloud`` the WebDAV folder of the account
    (``https://HOST/remote.php/dav/files/USER/FOLDER``; a bare server URL means the folder
    ``surgbox`` of ``user``). ``bandwidth``: megabytes (10^6 bytes) per second, ``None`` =
    unlimited. ``chunk_size``: bytes per Nextcloud chunk (also the read size for WebDAV).
    ``ca_file``: PEM bundle that signs the server's certificate (else the system's CAs);
    ``insecure``: no certificate check at all (loudly warned)."""

    name: str = attrs.field(validator=_check_name)
    kind: str = attrs.field(validator=_check_kind)
    url: str = attrs.field(validator=_check_url)
    user: str = attrs.field()
    password: str = attrs.field(default="")
    ca_file: str | None = None
    insecure: bool = False
    bandwidth: float | None = attrs.field(default=None, validator=_check_bandwidth)
    chunk_size: int = attrs.field(default=DEFAULT_CHUNK, validator=_check_chunk)

    @user.validator
    def _check_user(self, attr: Any, value: str) -> None:
        if not isinstance(value, str) or not value or len(value) > 256 or any(c in value for c in "\r\n:\0"):
            raise UploadError(f"remote user {value!r} must be 1-256 characters without ':' or line breaks")
        _encodable(value, "remote user")

    @password.validator
    def _check_password(self, attr: Any, value: str) -> None:
        if not isinstance(value, str) or len(value) > 4096 or any(c in value for c in "\r\n\0"):
            raise UploadError("the remote's password must be text of at most 4096 characters without line breaks")
        try:
            value.encode("utf-8")
        except UnicodeError:
            raise UploadError("the remote's password holds bytes that are not UTF-8 text; check its source") from None

    def __repr__(self) -> str:
        return f"Remote({self.name!r}, {self.kind}, {self.url!r}, user={self.user!r}, password=<hidden>)"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def _nextcloud_parts(self) -> tuple[str, str, str]:
        u = urlsplit(self.url)
        path, origin = u.path.rstrip("/"), f"{u.scheme}://{u.netloc}"
        m = _NC_FILES.match(path)
        if m:
            return origin + m["base"], unquote(m["user"]), (m["folder"] or "").strip("/")
        return origin + path, self.user, "surgbox"

    @property
    def files_url(self) -> str:
        """The folder uploads land in, ending in ``/``."""
        if self.kind == "webdav":
            return self.url.rstrip("/") + "/"
        base, user, folder = self._nextcloud_parts()
        return f"{base}/remote.php/dav/files/{quote(user)}/" + (f"{folder}/" if folder else "")

    @property
    def uploads_url(self) -> str:
        """Nextcloud: the account's chunked-upload collection ``.../remote.php/dav/uploads/USER/``."""
        base, user, _ = self._nextcloud_parts()
        return f"{base}/remote.php/dav/uploads/{quote(user)}/"

    def to_dict(self) -> dict[str, Any]:
        """Everything but the password (for listings and the audit trail)."""
        return {"name": self.name, "kind": self.kind, "url": self.url, "user": self.user, "ca_file": self.ca_file,
                "insecure": self.insecure, "bandwidth": self.bandwidth, "chunk_size": self.chunk_size}


def check_ca_file(path: str | os.PathLike[str] | None) -> str | None:
    """The absolute path of a readable PEM file, or ``None``."""
    if path is None:
        return None
    p = Path(path).expanduser().absolute()
    try:
        text = p.read_text(errors="replace")
    except (OSError, UnicodeError) as exc:
        raise UploadError(f"CA file {p!s:.200}: {getattr(exc, 'strerror', None) or exc}; give a readable PEM file "
                          f"(--ca-file)") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UploadError(f"CA file {p} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's PEM file")
    return str(p)


def _context(name: str) -> str:
    return f"remotes.password:{name}"


@attrs.define(eq=False)
class RemoteBook:
    """The remotes of a catalog, seen by one logged-in :class:`~surgbox.catalog.Session`."""

    session: Any

    @property
    def _cat(self) -> Any:
        return self.session.catalog

    def add(self, remote: Remote, *, replace: bool = False) -> Remote:
        """Store ``remote`` (its password encrypted); ``replace`` overwrites one of the same name."""
        me = self.session.authorize("manage_users", operation="remote.add",
                                    hint="adding a remote needs an admin (the manage_users permission)")
        if not remote.password:
            raise UploadError(f"remote {remote.name}: no password given; pass --password-env VAR or --password-file FILE")
        check_ca_file(remote.ca_file)
        cat = self._cat
        with cat.db.transaction() as c:
            exists = c.execute("SELECT 1 FROM remotes WHERE name = ?", (remote.name,)).fetchone()
            if exists and not replace:
                raise UploadError(f"remote {remote.name!r} exists already; remove it first or pass --replace")
            c.execute("INSERT OR REPLACE INTO remotes(name, kind, url, username, password_enc, ca_file, insecure,"
                      " bandwidth, chunk_size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (remote.name, remote.kind, remote.url, remote.user,
                       cat.phi.encrypt(remote.password, _context(remote.name)), remote.ca_file, int(remote.insecure),
                       remote.bandwidth, remote.chunk_size, to_text(cat.now())))
            cat.audit.append(c, me.name, "remote.add", None, "ok",
                             {"remote": remote.name, "kind": remote.kind, "host": remote.host,
                              "insecure": remote.insecure, "replaced": bool(exists)})
        return remote

    def _row(self, name: str) -> Any:
        if not isinstance(name, str) or not NAME.match(name):
            raise NotFoundError(f"{name!r} is not a remote name (lower-case letters, digits, '-' and '_'); "
                                f"`surgbox remote list` shows the remotes")
        row = self._cat.db.query_one("SELECT * FROM remotes WHERE name = ?", (name,))
        if row is None:
            known = [r[0] for r in self._cat.db.query("SELECT name FROM remotes ORDER BY name")]
            listed = ", ".join(known) or "(none: add one with `surgbox remote add`)"
            raise NotFoundError(f"no remote {name!r}; known remotes: {listed}")
        return row

    def _from_row(self, row: Any, password: str = "") -> Remote:
        return Remote(row["name"], row["kind"], row["url"], row["username"], password, row["ca_file"],
                      bool(row["insecure"]), row["bandwidth"], int(row["chunk_size"]))

    def require(self, name: str) -> None:
        """Raise :class:`~surgbox.catalog.errors.NotFoundError` (one line listing the known
        remote names) when there is no remote ``name``; names only, so no permission is needed."""
        self._row(name)

    def get(self, name: str) -> Remote:
        """The remote with its password decrypted (``upload``)."""
        self.session.authorize("upload", operation="remote.use")
        if not isinstance(name, str):
            raise UploadError(f"remote name {name!r} is not text")
        row = self._row(name)
        return self._from_row(row, self._cat.phi.decrypt(bytes(row["password_enc"]), _context(row["name"])))

    def list(self) -> list[Remote]:
        """Every remote, without passwords (``upload``)."""
        self.session.authorize("upload", operation="remote.list")
        return [self._from_row(r) for r in self._cat.db.query("SELECT * FROM remotes ORDER BY name")]

    def remove(self, name: str) -> None:
        """Forget a remote (``manage_users``); refused while jobs for it are queued or running."""
        me = self.session.authorize("manage_users", operation="remote.remove",
                                    hint="removing a remote needs an admin (the manage_users permission)")
        self._row(name)
        cat = self._cat
        with cat.db.transaction() as c:
            busy = c.execute("SELECT count(*) FROM upload_jobs WHERE remote = ? AND status IN ('queued', 'running',"
                             " 'paused')", (name,)).fetchone()[0]
            if busy:
                raise CatalogError(f"remote {name!r} has {busy} upload job(s) not finished; cancel them first "
                                   f"(`surgbox upload list`, `surgbox upload cancel JOB`)")
            c.execute("DELETE FROM remotes WHERE name = ?", (name,))
            cat.audit.append(c, me.name, "remote.remove", None, "ok", {"remote": name})
