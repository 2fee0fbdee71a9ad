"""The console's request plumbing: its state, who is logged in, CSRF checks, pages and errors.

Every handler gets the logged-in browser through :func:`require` (a redirect to the login page,
or 401 for ``/api/`` paths, when there is none) and checks a state change's CSRF token through
:func:`checked_form` (403 without it). Permissions are never decided here: handlers call the
catalog (``session.events...``, ``session.authorize``), which raises
:class:`~surgbox.catalog.AccessDenied` (answered 403 by :func:`error_response`) and audits the
refusal. Pages are Jinja2 templates shipped in the package (``templates/``); every response
carries a strict Content-Security-Policy (no inline script, nothing from another origin) and
``Cache-Control: no-store`` (no patient data in the browser's cache).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from .._version import __version__
from ..catalog import AccessDenied, AuthenticationError, NotFoundError
from ..errors import SurgboxError
from .i18n import NAMES as LANG_NAMES
from .jobs import DeidJobs
from .i18n import LanguagePrefs, Translations
from .uploads import UploadJobs
from .playback import PlaybackReaders, RangeError
from .sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, LANG_COOKIE, SessionStore, WebSession, same

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "media-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
STORE_STATUS_TTL_S = 10.0


class Forbidden(Exception):
    """A request refused before the catalog saw it (missing or wrong CSRF token)."""


class NeedLogin(Exception):
    """No logged-in browser session (never logged in, logged out, or idle too long)."""


@attrs.define(eq=False)
class ConsoleState:
    """Everything the handlers share: the opened ``catalog``, the browser ``sessions``, the
    ``live`` recorder (``None`` without a recording configuration, ``config_error`` says why),
    the playback ``readers``, the de-identification ``jobs`` and ``uploads``, languages, and whether the console is served over TLS
    (``secure``: cookies get ``Secure``). ``store`` is an opened store used for health only."""

    catalog: Any
    sessions: SessionStore
    live: Any = None
    config_error: str | None = None
    readers: PlaybackReaders = attrs.Factory(PlaybackReaders)
    jobs: DeidJobs = attrs.Factory(DeidJobs)
    uploads: UploadJobs = attrs.Factory(UploadJobs)
    translations: Translations = attrs.Factory(Translations.load)
    prefs: LanguagePrefs | None = None
    secure: bool = False
    kiosk: bool = False
    export_dirs: tuple[str, ...] = ()
    store: Any = None
    store_status_ttl_s: float = STORE_STATUS_TTL_S
    templates: Any = attrs.field(default=None, init=False)
    _store_status: tuple[float, Any] = attrs.field(default=(0.0, None), init=False, alias="_store_status")

    def __attrs_post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(resources.files("surgbox.console") / "templates"))
        self.templates.env.globals.update(version=__version__, languages=LANG_NAMES)

    def store_status(self) -> Mapping[str, Any]:
        """The store's health (``healthy``, ``degraded``, per root ``state`` and ``free_bytes``),
        cached for ``store_status_ttl_s`` seconds; ``{"error": ...}`` when it cannot be read."""
        at, value = self._store_status
        if value is not None and time.monotonic() - at < self.store_status_ttl_s:
            return value
        try:
            value = dict(self.store.status()) if self.store is not None else {"error": "no store opened"}
        except Exception as exc:  # a store that fails must show, not break the page
            value = {"error": f"{type(exc).__name__}: {exc}", "healthy": False}
        roots = value.get("roots") or []
        free = [r.get("free_bytes") for r in roots if r.get("free_bytes") is not None]
        value["free_bytes"] = min(free) if free else None
        self._store_status = (time.monotonic(), value)
        return value


def state(request: Request) -> ConsoleState:
    return request.app.state.console


def current(request: Request, *, touch: bool = True) -> WebSession | None:
    return state(request).sessions.get(request.cookies.get(COOKIE), touch=touch)


def require(request: Request, *, touch: bool = True) -> WebSession:
    """The logged-in browser (``touch``: this request is a user action, it resets the idle timer)."""
    ws = current(request, touch=touch)
    if ws is None:
        raise NeedLogin()
    return ws


async def checked_form(request: Request, expected: str | None) -> Mapping[str, Any]:
    """The request's form after checking its CSRF token (form field ``csrf`` or header
    ``X-CSRF-Token``) against ``expected`` in constant time; :class:`Forbidden` otherwise."""
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not same(expected, sent if isinstance(sent, str) else None):
        raise Forbidden("the form's security token is missing or stale; reload the page and try again")
    return form


def language(request: Request, ws: WebSession | None) -> str:
    st = state(request)
    user_choice = ws.lang if ws is not None else None
    if ws is not None and user_choice is None and st.prefs is not None:
        user_choice = st.prefs.get(ws.user.name)
    return st.translations.pick(user_choice, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def render(request: Request, template: str, ws: WebSession | None, status_code: int = 200, **context: Any) -> Response:
    """Render ``template`` in the browser's language with the session's user, CSRF token and
    permission checks (``can``) in the context."""
    st = state(request)
    lang = language(request, ws)
    tr = st.translations

    def t(key: str, **fields: Any) -> str:
        return tr.text(lang, key, **fields)

    def can(action: str, event: Any = None) -> bool:
        return ws is not None and ws.can(action, event)

    ctx = {"t": t, "lang": lang, "ws": ws, "user": ws.user if ws else None, "csrf": ws.csrf if ws else None,
           "can": can, "kiosk": st.kiosk, "export_dirs": st.export_dirs, "recording": st.live is not None and st.live.state != "idle",
           "page": template.split(".", 1)[0], "store_alarm": ws is not None and _alarm(st.store_status()), **context}
    return st.templates.TemplateResponse(request, template, ctx, status_code=status_code)


def _alarm(storage: Mapping[str, Any]) -> bool:
    """Whether the store needs attention now (a failed disk, or no store at all)."""
    return bool(storage.get("degraded") or storage.get("error") or storage.get("healthy") is False)


def cookie(resp: Response, request: Request, name: str, value: str, *, max_age: int | None = None) -> None:
    """Set a console cookie: ``HttpOnly``, ``SameSite=Strict``, path ``/``, ``Secure`` over TLS."""
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                    secure=state(request).secure)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, exc: Exception) -> Response:
    """The answer to an error: 303 to the login page (401 for ``/api/``) without a session, 403
    for a refusal, 404 for an unknown event or file, 416 for a bad range, 400 for other
    :class:`SurgboxError` s (their one-line message shown)."""
    if isinstance(exc, NeedLogin):
        if _is_api(request):
            return JSONResponse({"error": "not logged in"}, status_code=401)
        return redirect("/login")
    if isinstance(exc, (Forbidden, AccessDenied)):
        status, key = 403, "error.forbidden"
    elif isinstance(exc, NotFoundError):
        status, key = 404, "error.not_found"
    elif isinstance(exc, RangeError):
        return Response(str(exc), status_code=416)
    elif isinstance(exc, AuthenticationError):
        status, key = 401, "error.auth"
    else:
        status, key = 400, "error.failed"
    message = str(exc)
    if _is_api(request) or request.url.path.endswith((".mp4", ".png", ".jpg", ".pdf")):
        return JSONResponse({"error": message}, status_code=status)
    ws = current(request, touch=False)
    return render(request, "error.html", ws, status_code=status, title_key=key, message=message)


async def on_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, (SurgboxError, Forbidden, NeedLogin, RangeError)):
        log.exception("console: %s %s failed", request.method, request.url.path)
    return error_response(request, exc)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response (unless it set its own)."""

    def __init__(self, app: Any):
        self.app = app
        self.extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [(k, v) for k, v in self.extra if k not in have]
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["SECURITY_HEADERS", "ConsoleState", "Forbidden", "NeedLogin", "SecurityHeaders", "checked_form", "cookie", "current",
           "error_response", "language", "redirect", "render", "require", "state"]
