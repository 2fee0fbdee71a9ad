"""Logging in and out, and the language buttons.

The login form is CSRF-protected by a pre-session cookie (``sb_pre``, double submit). A login
goes through :meth:`surgbox.catalog.Catalog.login` (Argon2id, lockout, disabled accounts, every
attempt audited; a refusal looks the same whatever its reason) and gets a fresh session token
(no session fixation). Logging out ends the session and closes its playback readers.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..catalog import AuthenticationError
from .i18n import LANGUAGES
from .sessions import COOKIE, LANG_COOKIE, PRE_COOKIE, new_token
from .web import checked_form, cookie, current, redirect, render, state

MAX_FIELD = 256


def home_for(ws: object) -> str:
    """Where a user lands after login: the record page for those who may record, else events or the system page."""
    if ws.can("record"):  # type: ignore[attr-defined]
        return "/record"
    if ws.can("view"):  # type: ignore[attr-defined]
        return "/events"
    return "/system"


def login_page(request: Request, error: str | None = None, status_code: int = 200, name: str = "") -> Response:
    pre = request.cookies.get(PRE_COOKIE) or new_token()
    resp = render(request, "login.html", None, status_code=status_code, pre=pre, error=error, name=name)
    cookie(resp, request, PRE_COOKIE, pre)
    return resp


def get_login(request: Request) -> Response:
    ws = current(request)
    if ws is not None:
        return redirect(home_for(ws))
    return login_page(request)


async def post_login(request: Request) -> Response:
    form = await checked_form(request, request.cookies.get(PRE_COOKIE))
    name = str(form.get("name") or "")[:MAX_FIELD].strip()
    password = str(form.get("password") or "")[:1024]
    st = state(request)
    if not name or not password:
        return login_page(request, "login.missing", 401, name)
    try:
        session = await run_in_threadpool(st.catalog.login, name, password)
    except AuthenticationError:
        return login_page(request, "login.failed", 401, name)
    ws = st.sessions.create(session)
    resp = redirect(home_for(ws))
    cookie(resp, request, COOKIE, ws.token)
    resp.delete_cookie(PRE_COOKIE, path="/")
    return resp


async def post_logout(request: Request) -> Response:
    ws = current(request, touch=False)
    if ws is None:
        return redirect("/login")
    await checked_form(request, ws.csrf)
    st = state(request)
    await run_in_threadpool(ws.catalog_session.record_action, "user.logout")
    st.sessions.end(ws.token)
    resp = redirect("/login")
    resp.delete_cookie(COOKIE, path="/")
    return resp


async def post_lang(request: Request) -> Response:
    ws = current(request)
    form = await checked_form(request, ws.csrf if ws is not None else request.cookies.get(PRE_COOKIE))
    lang = str(form.get("lang") or "")
    back = str(form.get("back") or "/")
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    if lang not in LANGUAGES:
        return redirect(back)
    st = state(request)
    if ws is not None:
        ws.lang = lang
        if st.prefs is not None:
            st.prefs.set(ws.user.name, lang)
    resp = redirect(back)
    cookie(resp, request, LANG_COOKIE, lang, max_age=365 * 86400)
    return resp
