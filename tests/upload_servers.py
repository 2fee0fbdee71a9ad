"""Real WebDAV servers on loopback for the upload tests, each in its own process (so a test can kill it).

* ``wsgidav``: WsgiDAV (PyPI) served by cheroot, files in ``--root`` (``python upload_servers.py wsgidav ...``).
* ``nextcloud``: a stand-in for Nextcloud's WebDAV endpoint, because Nextcloud itself cannot run
  here. ``/remote.php/dav/files/USER/`` is WsgiDAV over ``--root``; ``/remote.php/dav/uploads/USER/``
  is a small implementation of Nextcloud's **chunked upload v2** that follows the rules in the
  Nextcloud developer manual ("Client APIs > WebDAV > Chunked file upload",
  https://docs.nextcloud.com/server/30/developer_manual/client_apis/WebDAV/chunking.html):

  - ``MKCOL uploads/USER/ID`` creates the upload folder; every request (MKCOL, PUT, MOVE) must carry
    a ``Destination`` header (v2's rule), else 400;
  - chunk names are numbers from 1 to 10000 (else 400); chunks are assembled in the order of their
    names; every chunk but the last must be ``--min-chunk`` to 5 GiB (the manual's 5 MB to 5 GB,
    made small for tests), checked at assembly (400);
  - ``PUT`` needs ``OC-Total-Length``; the quota is checked from it on the first chunk (as Nextcloud
    does since server PR #42679): 507 Insufficient Storage when the file would not fit ``--quota``;
  - ``MOVE .../ID/.file`` with ``Destination`` assembles the chunks into the target (atomically:
    temporary file, then rename) after checking that their total equals ``OC-Total-Length`` (400
    otherwise), answers 201 (new) or 204 (replaced), and removes the upload folder;
  - chunks cannot be downloaded (``GET`` in the upload folder: 403); ``PROPFIND`` depth 1 lists them
    with their sizes; ``DELETE`` of the folder aborts the upload;
  - an upload folder idle for ``--expire`` seconds (Nextcloud: 24 hours) is deleted.

  What it does **not** reproduce: Nextcloud's accounts, sharing, file locking, ``OC-Checksum``
  (Nextcloud stores it without checking it: the client verifies by reading back), the v1 chunking API.

Both log every request as ``METHOD PATH STATUS`` lines to ``--log`` (the tests count them), check
HTTP Basic credentials (401 otherwise), can refuse writes beyond ``--quota`` bytes with 507, and
with ``--die-after-puts N`` kill themselves (``os._exit``) half way through the body of the
(N+1)-th ``PUT``: a server that dies in the middle of an upload.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

MAX_CHUNK = 5 * 1024**3
_CHUNK_NAME = re.compile(r"^[0-9]+$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Server:
    """A server subprocess: ``start()``, ``kill()`` (SIGKILL), ``requests(method, contains)`` from its log."""

    def __init__(self, argv: list[str], port: int, log: Path | None, scheme: str = "http"):
        self.argv, self.port, self.log, self.scheme = argv, port, log, scheme
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_listening(self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_dead(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def lines(self) -> list[tuple[str, str, int]]:
        if self.log is None or not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            method, path, status = line.split(" ")
            out.append((method, unquote(path), int(status)))
        return out

    def requests(self, method: str, contains: str = "") -> list[str]:
        return [p for m, p, _ in self.lines() if m == method and contains in p]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


def start_script(kind: str, root: Path, *, user: str, password: str, log: Path | None = None, **opts: object) -> Server:
    """Start ``kind`` (``wsgidav`` or ``nextcloud``) on a free port serving ``root``."""
    port = int(opts.pop("port", 0) or free_port())
    argv = [sys.executable, __file__, kind, "--root", str(root), "--port", str(port), "--user", user,
            "--password-env", "UPLOAD_TEST_PW"]
    if log is not None:
        argv += ["--log", str(log)]
    for k, v in opts.items():
        if v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    os.environ["UPLOAD_TEST_PW"] = password  # the child inherits it; never on its command line
    return Server(argv, port, log).start()


def start_rclone(root: Path, *, user: str, password: str, cert: Path | None = None, key: Path | None = None,
                 port: int | None = None) -> Server:
    """``rclone serve webdav`` (Debian's rclone) on loopback; with ``cert``/``key`` over TLS."""
    exe = shutil.which("rclone")
    if exe is None:
        raise RuntimeError("rclone is not installed: apt-get install rclone (scripts/install.sh installs it)")
    port = port or free_port()
    argv = [exe, "serve", "webdav", str(root), "--addr", f"127.0.0.1:{port}", "--user", user, "--pass", password]
    if cert is not None:
        argv += ["--cert", str(cert), "--key", str(key)]
    return Server(argv, port, None, "https" if cert else "http").start()


# ---- the server process -------------------------------------------------------------------------


class Faults:
    def __init__(self, die_after_puts: int | None):
        self.die_after_puts = die_after_puts
        self.puts = 0
        self.lock = threading.Lock()

    def on_put(self, environ: dict) -> None:
        """Count PUTs; past the limit, read half of the body and die (the connection is cut)."""
        if self.die_after_puts is None:
            return
        with self.lock:
            self.puts += 1
            n = self.puts
        if n > self.die_after_puts:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"].read(length // 2)
            os._exit(137)


def _authorized(environ: dict, user: str, password: str) -> bool:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if not auth.startswith("Basic "):
        return False
    try:
        got = base64.b64decode(auth[6:]).decode()
    except ValueError:
        return False
    return got == f"{user}:{password}"


def _used(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class Logged:
    """WSGI middleware: logs ``METHOD PATH STATUS``, checks Basic auth, the quota and the faults."""

    def __init__(self, app, log: Path | None, user: str, password: str, quota: int | None, roots: list[Path],
                 faults: Faults):
        self.app, self.log, self.user, self.password, self.quota, self.roots, self.faults = (
            app, log, user, password, quota, roots, faults)
        self.lock = threading.Lock()

    def write_log(self, method: str, path: str, status: str) -> None:
        if self.log is not None:
            with self.lock, open(self.log, "a") as f:
                f.write(f"{method} {path.replace(' ', '%20')} {status.split(' ')[0]}\n")

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        seen = {}

        def start(status, headers, exc_info=None):
            seen["status"] = status
            return start_response(status, headers, exc_info)

        def refuse(status: str, headers=()):
            start(status, [("Content-Type", "text/plain"), ("Content-Length", "0"), *headers])
            return [b""]

        if not _authorized(environ, self.user, self.password):
            result = refuse("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="test"')])
        elif method == "PUT" and self.quota is not None and sum(_used(r) for r in self.roots) + int(
                environ.get("HTTP_OC_TOTAL_LENGTH") or environ.get("CONTENT_LENGTH") or 0) > self.quota:
            result = refuse("507 Insufficient Storage")
        else:
            if method == "PUT":
                self.faults.on_put(environ)
            result = self.app(environ, start)
        try:
            yield from result
        finally:
            if hasattr(result, "close"):
                result.close()
            self.write_log(method, path, seen.get("status", "000"))


class ChunkedUploads:
    """Nextcloud chunked upload v2 under ``/remote.php/dav/uploads/USER/`` (see the module docstring)."""

    def __init__(self, state: Path, files_root: Path, user: str, files_prefix: str, min_chunk: int, expire: float):
        self.state, self.files_root, self.user = state, files_root, user
        self.files_prefix, self.min_chunk, self.expire = files_prefix, min_chunk, expire
        self.state.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def expire_idle(self) -> None:
        now = time.time()
        for d in self.state.iterdir():
            if d.is_dir() and now - d.stat().st_mtime > self.expire:
                shutil.rmtree(d, ignore_errors=True)

    def target(self, destination: str) -> Path | None:
        path = unquote(urlsplit(destination).path)
        if not path.startswith(self.files_prefix):
            return None
        rel = path[len(self.files_prefix):].strip("/")
        if not rel or any(p in ("", ".", "..") for p in rel.split("/")):
            return None
        return self.files_root / rel

    def __call__(self, environ, start_response, rest: str):
        method = environ["REQUEST_METHOD"]

        def reply(status: str, body: bytes = b"", ctype: str = "text/plain"):
            start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
            return [body]

        with self.lock:
            self.expire_idle()
        parts = [p for p in rest.split("/") if p]
        dest = environ.get("HTTP_DESTINATION")
        if not parts:
            return reply("405 Method Not Allowed")
        folder = self.state / parts[0]
        if method == "MKCOL" and len(parts) == 1:
            if dest is None or self.target(dest) is None:
                return reply("400 Bad Request", b"Destination header missing or outside the user's files")
            if folder.exists():
                return reply("405 Method Not Allowed")
            folder.mkdir()
            return reply("201 Created")
        if not folder.is_dir():
            return reply("404 Not Found")
        os.utime(folder)  # activity keeps the folder from expiring
        if method == "DELETE" and len(parts) == 1:
            shutil.rmtree(folder, ignore_errors=True)
            return reply("204 No Content")
        if method == "PROPFIND" and len(parts) == 1:
            return reply("207 Multi-Status", self.listing(environ["PATH_INFO"], folder), "application/xml; charset=utf-8")
        if len(parts) != 2:
            return reply("404 Not Found")
        name = parts[1]
        if method == "GET":
            return reply("403 Forbidden", b"chunks cannot be downloaded")
        if method == "PUT":
            if dest is None or environ.get("HTTP_OC_TOTAL_LENGTH") is None:
                return reply("400 Bad Request", b"Destination and OC-Total-Length are required")
            if not _CHUNK_NAME.match(name) or not 1 <= int(name) <= 10000:
                return reply("400 Bad Request", b"chunk names are numbers from 1 to 10000")
            length = int(environ.get("CONTENT_LENGTH") or 0)
            tmp = folder / f".{name}.part"
            with open(tmp, "wb") as f:
                left = length
                while left > 0:
                    piece = environ["wsgi.input"].read(min(left, 1 << 20))
                    if not piece:
                        break
                    f.write(piece)
                    left -= len(piece)
            if left:
                tmp.unlink(missing_ok=True)
                return reply("400 Bad Request", b"body shorter than Content-Length")
            existed = (folder / name).exists()
            os.replace(tmp, folder / name)
            return reply("204 No Content" if existed else "201 Created")
        if method == "MOVE" and name == ".file":
            target = self.target(dest or "")
            total = environ.get("HTTP_OC_TOTAL_LENGTH")
            if target is None or total is None:
                return reply("400 Bad Request", b"Destination and OC-Total-Length are required")
            chunks = sorted((p for p in folder.iterdir() if _CHUNK_NAME.match(p.name)), key=lambda p: int(p.name))
            sizes = [p.stat().st_size for p in chunks]
            if not chunks or sum(sizes) != int(total):
                return reply("400 Bad Request", f"chunks hold {sum(sizes)} bytes, OC-Total-Length {total}".encode())
            if any(not self.min_chunk <= s <= MAX_CHUNK for s in sizes[:-1]) or sizes[-1] > MAX_CHUNK:
                return reply("400 Bad Request", b"chunk size out of range")
            if not target.parent.is_dir():
                return reply("409 Conflict", b"target folder missing")
            tmp = target.parent / f".{target.name}.assembling"
            with open(tmp, "wb") as out:
                for p in chunks:
                    with open(p, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            existed = target.exists()
            os.replace(tmp, target)
            mtime = environ.get("HTTP_X_OC_MTIME")
            if mtime and mtime.isdigit():
                os.utime(target, (int(mtime), int(mtime)))
            shutil.rmtree(folder, ignore_errors=True)
            return reply("204 No Content" if existed else "201 Created")
        return reply("405 Method Not Allowed")

    @staticmethod
    def listing(path: str, folder: Path) -> bytes:
        base = path.rstrip("/") + "/"
        items = [f"<d:response><d:href>{base}</d:href><d:propstat><d:prop><d:resourcetype><d:collection/>"
                 f"</d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"]
        for p in sorted(folder.iterdir()):
            if _CHUNK_NAME.match(p.name):
                items.append(f"<d:response><d:href>{base}{p.name}</d:href><d:propstat><d:prop><d:getcontentlength>"
                             f"{p.stat().st_size}</d:getcontentlength><d:resourcetype/></d:prop>"
                             f"<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")
        return ('<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:">'
                + "".join(items) + "</d:multistatus>").encode()


def _wsgidav(root: Path, mount: str, user: str, password: str):
    from wsgidav.wsgidav_app import WsgiDAVApp

    return WsgiDAVApp({
        "provider_mapping": {mount: str(root)},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "verbose": 0, "logging": {"enable_loggers": []}, "dir_browser": {"enable": False},
        "lock_storage": True, "property_manager": True,
    })


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["wsgidav", "nextcloud"])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-env", required=True)
    ap.add_argument("--log", type=Path)
    ap.add_argument("--quota", type=int)
    ap.add_argument("--die-after-puts", type=int)
    ap.add_argument("--min-chunk", type=int, default=5 * 1000 * 1000)
    ap.add_argument("--expire", type=float, default=24 * 3600.0)
    ap.add_argument("--state", type=Path)
    a = ap.parse_args(argv)
    from cheroot import wsgi

    password = os.environ[a.password_env]
    a.root.mkdir(parents=True, exist_ok=True)
    faults = Faults(a.die_after_puts)
    if a.kind == "wsgidav":
        app = Logged(_wsgidav(a.root, "/", a.user, password), a.log, a.user, password, a.quota, [a.root], faults)
    else:
        files_prefix = f"/remote.php/dav/files/{a.user}"
        uploads_prefix = f"/remote.php/dav/uploads/{a.user}"
        state = a.state or a.root.parent / (a.root.name + "-uploads")
        dav = _wsgidav(a.root, files_prefix, a.user, password)
        chunked = ChunkedUploads(state, a.root, a.user, files_prefix, a.min_chunk, a.expire)

        def router(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == uploads_prefix or path.startswith(uploads_prefix + "/"):
                return chunked(environ, start_response, path[len(uploads_prefix):])
            return dav(environ, start_response)

        app = Logged(router, a.log, a.user, password, a.quota, [a.root, state], faults)
    server = wsgi.Server(("127.0.0.1", a.port), app, numthreads=4)
    server.start()


if __name__ == "__main__":
    main()
