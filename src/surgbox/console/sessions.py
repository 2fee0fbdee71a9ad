"""Browser sessions of the console: a random token in a cookie, everything else in server memory.

A :class:`WebSession` ties one browser to one catalog :class:`~surgbox.catalog.Session` (the
logged-in user, re-read from the catalog at every permission check, so a disabled account loses
access at its next request). The cookie holds only the token (256 random bits, ``HttpOnly``,
``SameSite=Strict``, ``Secure`` when served over TLS); the token is never logged. Each session has
its own CSRF token, sent back by every form and htmx request (``X-CSRF-Token``) and compared in
constant time. Sessions end at logout, after ``idle_s`` seconds without a user action (background
polls and the live picture do not count), or when the server stops (they live in memory only).

Before login a browser gets a *pre-session* cookie (``sb_pre``: a random token that the login form
echoes, double-submit), so the login form is CSRF-protected too.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

COOKIE = "sb_session"
PRE_COOKIE = "sb_pre"
LANG_COOKIE = "sb_lang"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
DEFAULT_IDLE_S = 15 * 60.0


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens (``False`` when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


@attrs.define(eq=False)
class WebSession:
    """One logged-in browser: ``catalog_session`` (a :class:`~surgbox.catalog.Session`), its CSRF
    token, and when the user last did something (``time.monotonic()`` seconds)."""

    token: str = attrs.field(repr=False)
    catalog_session: Any
    csrf: str = attrs.field(factory=new_token, repr=False)
    last_active: float = attrs.field(factory=time.monotonic)
    lang: str | None = None

    @property
    def user(self) -> Any:
        return self.catalog_session.user

    def can(self, action: str, event: Any = None) -> bool:
        """Whether to *show* a control (the decision itself is the catalog's, at the call)."""
        return bool(self.catalog_session.can(action, event))


@attrs.define(eq=False)
class SessionStore:
    """The console's sessions (thread-safe). ``idle_s``: idle logout; ``clock``: monotonic seconds
    (injectable for tests); ``on_end(session)`` runs when a session ends (closes its playback
    readers)."""

    idle_s: float = DEFAULT_IDLE_S
    clock: Callable[[], float] = time.monotonic
    on_end: Callable[[WebSession], None] | None = None
    _sessions: dict[str, WebSession] = attrs.field(factory=dict, init=False, alias="_sessions")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    def create(self, catalog_session: Any, lang: str | None = None) -> WebSession:
        ws = WebSession(new_token(), catalog_session, last_active=self.clock(), lang=lang)
        with self._lock:
            self._sessions[ws.token] = ws
        return ws

    def get(self, token: str | None, *, touch: bool) -> WebSession | None:
        """The live session of ``token`` (``None`` when unknown or idle too long, which ends it);
        ``touch`` counts this request as a user action."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            ws = self._sessions.get(token)
            if ws is None:
                return None
            if now - ws.last_active > self.idle_s:
                del self._sessions[token]
                expired = ws
            else:
                if touch:
                    ws.last_active = now
                return ws
        self._ended(expired)
        return None

    def end(self, token: str | None) -> None:
        with self._lock:
            ws = self._sessions.pop(token or "", None)
        if ws is not None:
            self._ended(ws)

    def end_user(self, user_id: int) -> int:
        """End every session of a user (an admin disabled the account); returns how many."""
        with self._lock:
            gone = [t for t, ws in self._sessions.items() if ws.user.id == user_id]
            ended = [self._sessions.pop(t) for t in gone]
        for ws in ended:
            self._ended(ws)
        return len(ended)

    def sweep(self) -> None:
        """End the sessions idle for longer than ``idle_s``."""
        now = self.clock()
        with self._lock:
            gone = [t for t, ws in self._sessions.items() if now - ws.last_active > self.idle_s]
            ended = [self._sessions.pop(t) for t in gone]
        for ws in ended:
            self._ended(ws)

    def _ended(self, ws: WebSession) -> None:
        if self.on_end is not None:
            self.on_end(ws)

    def __len__(self) -> int:
        return len(self._sessions)
