"""The console's web application and its server: :func:`create_app`, :class:`ConsoleServer`.

>>> server = ConsoleServer.for_home(home=None, config="record.toml")       # doctest: +SKIP
>>> server.start()                      # binds 127.0.0.1:8080 (port=0: any free port), serves on a thread
>>> server.url                          # 'http://127.0.0.1:8080'           # doctest: +SKIP
>>> server.stop()                       # stops a running recording (files go into the catalog), closes

A Starlette application rendering Jinja2 templates (no JavaScript build; one small script, no
CDN: everything is served from the package), on uvicorn. :data:`ROUTES` lists every route;
:data:`STATE_CHANGING` the POST routes, each checked for its CSRF token and (by the catalog)
its permission.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..catalog import Catalog
from ..config import RecordConfig
from ..crypto.keys import KeyRing, MasterKey
from ..errors import ConfigError, SurgboxError
from . import views_auth, views_events, views_record, views_system
from .i18n import LanguagePrefs
from .jobs import DeidJobs
from .uploads import UploadJobs
from .live import LiveRecorder
from .sessions import DEFAULT_IDLE_S, SessionStore
from .playback import RangeError
from .web import ConsoleState, Forbidden, NeedLogin, SecurityHeaders, on_error, redirect

ROUTES = [
    Route("/", lambda request: redirect("/login"), methods=["GET"]),
    Route("/login", views_auth.get_login, methods=["GET"]),
    Route("/login", views_auth.post_login, methods=["POST"]),
    Route("/logout", views_auth.post_logout, methods=["POST"]),
    Route("/lang", views_auth.post_lang, methods=["POST"]),
    Route("/record", views_record.record_page, methods=["GET"]),
    Route("/record/start", views_record.start_new, methods=["POST"]),
    Route("/record/start-existing", views_record.start_existing, methods=["POST"]),
    Route("/record/stop", views_record.stop, methods=["POST"]),
    Route("/record/snapshot", views_record.snapshot, methods=["POST"]),
    Route("/api/status", views_record.api_status, methods=["GET"]),
    Route("/api/preview", views_record.api_preview, methods=["GET"]),
    Route("/events", views_events.events_page, methods=["GET"]),
    Route("/events", views_events.search, methods=["POST"]),
    Route("/events/{event_id}", views_events.event_page, methods=["GET"]),
    Route("/events/{event_id}/media/{name}", views_events.media, methods=["GET"]),
    Route("/events/{event_id}/image/{name}", views_events.image, methods=["GET"]),
    Route("/events/{event_id}/report.pdf", views_events.report, methods=["GET"]),
    Route("/events/{event_id}/export", views_events.export, methods=["POST"]),
    Route("/events/{event_id}/deidentify", views_events.deidentify, methods=["POST"]),
    Route("/api/deid/{event_id}", views_events.deid_status, methods=["GET"]),
    Route("/events/{event_id}/upload", views_events.upload, methods=["POST"]),
    Route("/api/upload/{job_id:int}", views_events.upload_status, methods=["GET"]),
    Route("/events/{event_id}/delete", views_events.confirm_delete, methods=["GET"]),
    Route("/events/{event_id}/delete", views_events.delete, methods=["POST"]),
    Route("/system", views_system.system_page, methods=["GET"]),
]
#: every route that changes state (path, what the catalog checks)
STATE_CHANGING = {
    "/login": "password (catalog login, lockout)",
    "/logout": "a session",
    "/lang": "CSRF only (a display preference)",
    "/record/start": "record (event.create, then the sink's record on the event)",
    "/record/start-existing": "record on the event",
    "/record/stop": "record on the running event",
    "/record/snapshot": "record on the running event",
    "/events": "view (a search: POST keeps names out of URLs)",
    "/events/{event_id}/export": "export on the event",
    "/events/{event_id}/deidentify": "deidentify and view on the event",
    "/events/{event_id}/upload": "upload on the event (and the remote must exist)",
    "/events/{event_id}/delete": "delete on the event",
}


def create_app(console: ConsoleState) -> Starlette:
    """The ASGI application over ``console`` (its catalog must be open)."""
    static = StaticFiles(directory=str(resources.files("surgbox.console") / "static"))
    handlers = {SurgboxError: on_error, Forbidden: on_error, NeedLogin: on_error, RangeError: on_error, Exception: on_error}
    app = Starlette(routes=[*ROUTES, Mount("/static", static, name="static")], exception_handlers=handlers)
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def kiosk_command(url: str, *, browser: str = "chromium", profile: str | None = None) -> list[str]:
    """The Chromium command line that opens ``url`` full screen for a touch screen (no address
    bar, no error dialogs, no pinch zoom, no swipe navigation, no translate bar)."""
    cmd = [browser, "--kiosk", f"--app={url}", "--noerrdialogs", "--disable-infobars", "--no-first-run",
           "--disable-translate", "--disable-features=Translate", "--disable-pinch", "--overscroll-history-navigation=0",
           "--check-for-update-interval=31536000", "--password-store=basic", "--touch-events=enabled"]
    if profile:
        cmd.append(f"--user-data-dir={profile}")
    return cmd


@attrs.define(eq=False)
class ConsoleServer:
    """The console on ``host``:``port`` (``port`` 0: any free port) over ``state``; TLS with
    ``certfile``/``keyfile``. Serving anywhere but loopback needs TLS (passwords and patient data
    would cross the network in clear). :meth:`start` serves on a thread, :meth:`serve` in the
    foreground (until SIGINT/SIGTERM); :meth:`stop` ends a running recording first."""

    state: ConsoleState
    host: str = "127.0.0.1"
    port: int = 8080
    certfile: str | None = None
    keyfile: str | None = None
    access_log: bool = False
    _server: Any = attrs.field(default=None, init=False, alias="_server")
    _socket: socket.socket | None = attrs.field(default=None, init=False, alias="_socket")
    _thread: threading.Thread | None = attrs.field(default=None, init=False, alias="_thread")

    @classmethod
    def for_home(cls, home: Any = None, *, config: str | Path | None = None, plugins: Any = None,
                 idle_s: float = DEFAULT_IDLE_S, kiosk: bool = False, export_dirs: Any = (),
                 deid_options: Any = None, upload_options: Any = None, **options: Any) -> ConsoleServer:
        """A server over the catalog and store of ``home`` (default ``$SURGBOX_HOME``) recording
        with the :class:`~surgbox.config.RecordConfig` file ``config`` (``None``: no recording);
        ``export_dirs``: the folders users with ``export`` may copy events into (USB sticks);
        ``deid_options``: options of the console's de-identification (default: the library's);
        ``upload_options``: options of its :class:`~surgbox.upload.Uploader` (retries, backoff, timeout)."""
        dirs = tuple(str(Path(d).expanduser().absolute()) for d in export_dirs)
        for d in dirs:
            if not Path(d).is_dir():
                raise ConfigError(f"export folder {d} does not exist; mount the disk or create the folder first")
        secure = bool(options.get("certfile"))
        catalog = Catalog.at(home, plugins=plugins)
        inside = next((d for d in dirs if catalog.home.contains(d)), None)
        if inside is not None:  # every export there would be refused (plaintext must not rest in the home)
            raise ConfigError(f"export folder {inside} lies inside SURGBOX_HOME; give a folder outside it (a USB stick)")
        live, config_error = None, "no recording configuration: start the console with --config record.toml"
        if config is not None:
            live, config_error = LiveRecorder(RecordConfig.load(config), plugins=plugins), None
        sessions = SessionStore(idle_s=idle_s)
        st = ConsoleState(catalog, sessions, live=live, config_error=config_error, secure=secure, kiosk=kiosk,
                          export_dirs=dirs, jobs=DeidJobs(dict(deid_options or {})),
                          uploads=UploadJobs(dict(upload_options or {})))
        return cls(st, **options)

    def _bind(self) -> socket.socket:
        if not is_loopback(self.host) and not self.certfile:
            raise ConfigError(f"serving the console on {self.host} without TLS would send passwords and patient data "
                              f"in clear; give --tls-cert and --tls-key, or serve on 127.0.0.1 (the default)")
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("TLS needs both --tls-cert FILE.pem and --tls-key FILE.pem")
        for f in (self.certfile, self.keyfile):
            if f and not Path(f).is_file():
                raise ConfigError(f"TLS file {f} does not exist; give the PEM certificate and key files")
        if self.certfile:  # a bad pair made the server thread die: "did not start", no reason
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.certfile, self.keyfile)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"--tls-cert {self.certfile} / --tls-key {self.keyfile} are not a PEM certificate "
                                  f"and its private key ({getattr(exc, 'reason', None) or exc}); give the "
                                  f"certificate's PEM file and the key it was made with") from None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                              f"choose another --port or stop what uses it") from None
        sock.listen(64)
        self.port = sock.getsockname()[1]
        return sock

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.certfile else 'http'}://{host}:{self.port}"

    def _open(self) -> Any:
        st = self.state
        sock = self._bind()
        try:
            st.catalog.open()
            home = st.catalog.home
            st.prefs = LanguagePrefs(home.path / "console" / "languages.json")
            with contextlib.suppress(Exception):  # health only; a store that cannot open shows on the system page
                st.store = st.catalog.make_store(KeyRing.of(MasterKey(home.master_key(), str(home.master_key_path))))
            st.sessions.on_end = lambda ws: (st.readers.close_session(ws.token), views_record.forget_session(ws.token))
            st.jobs.worker.busy = st.uploads.worker.busy = lambda: st.live is not None and st.live.state != "idle"
            if st.live is not None:
                st.live.plugins = st.live.plugins or st.catalog.plugins
                st.live.on_starting, st.live.on_stopped = st.uploads.check_auto, st.uploads.after_recording
            config = uvicorn.Config(create_app(st), log_level="warning", access_log=self.access_log, lifespan="off",
                                    ssl_certfile=self.certfile, ssl_keyfile=self.keyfile, timeout_graceful_shutdown=2)
        except BaseException:
            sock.close()
            st.catalog.close()
            raise
        self._socket = sock
        self._server = uvicorn.Server(config)
        return self._server

    def start(self, timeout: float = 30.0) -> ConsoleServer:
        """Serve on a background thread; returns once the server accepts connections."""
        server = self._open()
        server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self._socket]}, name="surgbox-console",
                                        daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                self.stop()
                raise SurgboxError(f"the console did not start on {self.url}")
            time.sleep(0.05)
        return self

    def serve(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM, then :meth:`stop`."""
        server = self._open()
        try:
            server.run(sockets=[self._socket])
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving; a running recording is stopped and its files registered first. Idempotent."""
        st = self.state
        if st.live is not None:
            st.live.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        st.jobs.wait(5.0)
        st.uploads.wait(5.0)
        st.readers.close()
        if st.store is not None:
            with contextlib.suppress(Exception):
                st.store.close()
            st.store = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        st.catalog.close()
