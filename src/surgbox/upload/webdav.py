"""A small WebDAV client on ``httpx`` (RFC 4918 methods the upload needs) with one-line errors.

:class:`Dav` speaks to one :class:`~.remotes.Remote`: ``PROPFIND`` (size/existence, listing a
folder), ``MKCOL`` (folders), ``PUT`` (streamed bodies of known length), ``MOVE``, ``DELETE`` and
``GET`` (read-back for verification). TLS is verified against the system's CAs, or the remote's
``ca_file``; ``insecure`` turns the check off. HTTP failures become
:class:`~.errors.UploadError` naming the remote, the request and the fix; the password never
appears in a message (it travels only in the ``Authorization`` header).
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import attrs
import defusedxml.ElementTree as SafeET
import httpx

from .._version import __version__
from .errors import UploadError
from .remotes import Remote

PIECE = 256 * 1024  # bytes read from the store and handed to the socket at a time
_DAV = "{DAV:}"
_PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
                  b'<d:getcontentlength/><d:resourcetype/></d:prop></d:propfind>')


@attrs.frozen
class Entry:
    """One resource of a ``PROPFIND`` answer: its URL path (decoded), size (bytes; ``None`` for a
    folder) and whether it is a folder."""

    path: str
    size: int | None
    folder: bool

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


@attrs.define(eq=False)
class Throttle:
    """Keeps the average rate at or below ``rate`` bytes/s (``None``: unlimited); ``sleep`` and
    ``clock`` are injectable. Shared by every request of one upload run."""

    rate: float | None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _start: float | None = attrs.field(default=None, init=False)
    _sent: int = attrs.field(default=0, init=False)

    def consume(self, n: int) -> None:
        if not self.rate:
            return
        now = self.clock()
        if self._start is None or now - self._start > 5.0 and self._sent / max(now - self._start, 1e-9) < self.rate / 2:
            self._start, self._sent = now, 0  # (re)start the window after an idle pause
        self._sent += n
        ahead = self._sent / self.rate - (now - self._start)
        if ahead > 0:
            self.sleep(ahead)


def body(stream: IO[bytes], length: int, throttle: Throttle, sent: Callable[[int], None] | None = None,
         digest: Any = None) -> Iterator[bytes]:
    """``length`` bytes of ``stream`` from its current position in pieces of :data:`PIECE` (bounded
    memory), paced by ``throttle``; each piece also goes to ``digest.update`` and ``sent(len)``."""
    left = length
    while left > 0:
        piece = stream.read(min(PIECE, left))
        if not piece:
            raise UploadError(f"the store object ended {left} bytes early while uploading it; run `surgbox store scrub`")
        left -= len(piece)
        throttle.consume(len(piece))
        if digest is not None:
            digest.update(piece)
        yield piece
        if sent is not None:
            sent(len(piece))


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def _tls_error(exc: BaseException) -> str | None:
    for e in _cause_chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or str(e)
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e)
    text = str(exc)
    return text if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text else None


@attrs.define(eq=False)
class Dav:
    """WebDAV requests to one remote. Open with ``with Dav(remote) as dav:`` (makes the HTTP client)."""

    remote: Remote
    timeout: float = 60.0
    transport: httpx.BaseTransport | None = None
    _client: httpx.Client | None = attrs.field(default=None, init=False)

    def __enter__(self) -> Dav:
        r = self.remote
        verify: Any = True
        if r.insecure:
            verify = False
        elif r.ca_file:
            try:
                verify = ssl.create_default_context(cafile=r.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise UploadError(f"remote {r.name}: CA file {r.ca_file} cannot be loaded ({exc}); give a PEM file "
                                  f"(surgbox remote add {r.name} --replace --ca-file PEM)") from None
        self._client = httpx.Client(auth=(r.user, r.password), verify=verify, follow_redirects=False,
                                    timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0)),
                                    headers={"User-Agent": f"surgbox/{__version__}"}, transport=self.transport)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise UploadError("WebDAV client used outside `with Dav(remote):`")
        return self._client

    def url(self, rel: str) -> str:
        """The absolute URL of ``rel`` (a ``/``-separated path, percent-encoded here) in the remote's folder."""
        return urljoin(self.remote.files_url, quote(rel))

    # ---- requests ----------------------------------------------------------------------------
    def request(self, method: str, url: str, *, ok: Iterable[int], headers: Mapping[str, str] | None = None,
                content: Any = None, stream: bool = False) -> httpx.Response:
        """Send one request; a status outside ``ok`` or a network failure raises :class:`UploadError`
        (``transient`` when retrying may help). With ``stream`` the caller closes the response."""
        r, what = self.remote, f"{method} {urlsplit(url).path}"
        try:
            req = self.client.build_request(method, url, headers=headers, content=content)
            resp = self.client.send(req, stream=stream)
        except httpx.ConnectError as exc:
            tls = _tls_error(exc)
            if tls and not r.insecure:
                raise UploadError(f"remote {r.name}: the TLS certificate of {r.host} does not verify ({tls}); give the "
                                  f"CA that signed it (surgbox remote add {r.name} --replace --ca-file PEM ...)") from None
            raise UploadError(f"remote {r.name}: cannot reach {r.host} ({exc or type(exc).__name__}); check the URL, "
                              f"the network and that the server runs (the job stays queued)", transient=True) from None
        except httpx.TimeoutException as exc:
            raise UploadError(f"remote {r.name}: {what} timed out ({type(exc).__name__}); the job stays queued and "
                              f"resumes", transient=True) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise UploadError(f"remote {r.name}: connection lost during {what} ({exc or type(exc).__name__}); "
                              f"the job stays queued and resumes", transient=True) from None
        if resp.status_code in set(ok):
            return resp
        if stream:
            resp.close()
        raise self._status_error(resp, what)

    def _status_error(self, resp: httpx.Response, what: str) -> UploadError:
        r, code = self.remote, resp.status_code
        if code == 401:
            return UploadError(f"remote {r.name}: {r.host} refused user {r.user!r} and its password (HTTP 401); "
                               f"check them (Nextcloud: make an app password) and run `surgbox remote add {r.name} "
                               f"--replace ...`", status=code)
        if code == 403:
            return UploadError(f"remote {r.name}: {what} is forbidden for user {r.user!r} (HTTP 403); give the "
                               f"account write access to {r.files_url}", status=code)
        if code == 507:
            return UploadError(f"remote {r.name}: the server has no space left (HTTP 507 Insufficient Storage) for "
                               f"{what}; free space or raise the quota of {r.user!r}, then run the job again", status=code)
        if code == 413:
            return UploadError(f"remote {r.name}: the server refused the body of {what} as too large (HTTP 413); "
                               f"lower --chunk-mib or raise the server's upload limit", status=code)
        transient = code >= 500 or code in (408, 423, 429)
        return UploadError(f"remote {r.name}: {what} answered HTTP {code} {resp.reason_phrase}"
                           + ("; the job stays queued and retries" if transient else "; check the remote's URL"),
                           transient=transient, status=code)

    def propfind(self, url: str, depth: int = 0) -> list[Entry] | None:
        """The resource at ``url`` (and with ``depth=1`` its members), or ``None`` when it does not exist."""
        resp = self.request("PROPFIND", url, ok=(207, 404), content=_PROPFIND_BODY,
                            headers={"Depth": str(depth), "Content-Type": "application/xml; charset=utf-8"})
        if resp.status_code == 404:
            return None
        try:
            root = SafeET.fromstring(resp.content)
        except Exception as exc:  # defusedxml's and ElementTree's errors
            raise UploadError(f"remote {self.remote.name}: PROPFIND {urlsplit(url).path} answered malformed XML "
                              f"({type(exc).__name__}); is the URL a WebDAV folder?", transient=True) from None
        out = []
        for resp_el in root.iter(f"{_DAV}response"):
            href = resp_el.findtext(f"{_DAV}href") or ""
            size, folder = None, False
            for ps in resp_el.iter(f"{_DAV}propstat"):
                if "200" not in (ps.findtext(f"{_DAV}status") or ""):
                    continue
                length = ps.findtext(f".//{_DAV}getcontentlength")
                if length and length.strip().isdigit():
                    size = int(length)
                rt = ps.find(f".//{_DAV}resourcetype")
                if rt is not None and rt.find(f"{_DAV}collection") is not None:
                    folder = True
            out.append(Entry(unquote(urlsplit(href).path), None if folder else size, folder))
        return out

    def size(self, url: str) -> int | None:
        """The size of the file at ``url``, or ``None`` when there is none."""
        entries = self.propfind(url, 0)
        if not entries:
            return None
        return entries[0].size

    def mkcol(self, url: str, headers: Mapping[str, str] | None = None) -> bool:
        """Create the folder ``url``; ``False`` when it exists already (405)."""
        return self.request("MKCOL", url, ok=(201, 405), headers=headers).status_code == 201

    def _mkcol_base(self) -> None:
        """``MKCOL`` the remote's folder, and when its parent is missing (409) the folders above it."""
        try:
            self.mkcol(self.remote.files_url)
            return
        except UploadError as exc:
            if exc.status != 409:
                raise
        u = urlsplit(self.remote.files_url)
        parts = [p for p in u.path.split("/") if p]
        for i in range(1, len(parts) + 1):
            self.mkcol(f"{u.scheme}://{u.netloc}/" + "/".join(parts[:i]) + "/")

    def ensure_folders(self, rel_dir: str, made: set[str]) -> None:
        """``MKCOL`` every folder of ``rel_dir`` below the remote's folder that is not in ``made`` yet."""
        parts = [p for p in rel_dir.split("/") if p]
        if "" not in made:
            self._mkcol_base()
            made.add("")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                self.mkcol(self.url(sub + "/"))
                made.add(sub)

    def put(self, url: str, content: Iterable[bytes], length: int, headers: Mapping[str, str] | None = None) -> None:
        self.request("PUT", url, ok=(200, 201, 204), content=content,
                     headers={"Content-Length": str(length), "Content-Type": "application/octet-stream", **(headers or {})})

    def move(self, src: str, dst: str, headers: Mapping[str, str] | None = None) -> None:
        self.request("MOVE", src, ok=(201, 204), headers={"Destination": dst, "Overwrite": "T", **(headers or {})})

    def delete(self, url: str) -> None:
        self.request("DELETE", url, ok=(200, 204, 404))

    def digest(self, url: str) -> tuple[int, str]:
        """``(size, SHA-256 hex)`` of the file at ``url``, read back in a stream (bounded memory)."""
        resp = self.request("GET", url, ok=(200,), stream=True)
        h, n = hashlib.sha256(), 0
        try:
            for piece in resp.iter_bytes(PIECE):
                h.update(piece)
                n += len(piece)
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise UploadError(f"remote {self.remote.name}: connection lost while reading back {urlsplit(url).path} "
                              f"({type(exc).__name__})", transient=True) from None
        finally:
            resp.close()
        return n, h.hexdigest()
