"""The recorder's touch-screen web console (``surgbox serve``, docs/console.md).

A thin web layer over the catalog, the recorder and the store: every rule (roles, audit, PHI) is
enforced below it, by :mod:`surgbox.catalog`. :mod:`.app` (routes, :class:`ConsoleServer`),
:mod:`.web` (state, sessions of requests, CSRF, pages), :mod:`.sessions` (browser sessions),
:mod:`.live` (the one recording the box runs, with its preview), :mod:`.playback` (decrypted
range requests), :mod:`.i18n` (en, pt-BR, es), the ``views_*`` modules (one page family each).
Needs the ``console`` extra (Starlette, Jinja2, uvicorn, python-multipart); ``import surgbox``
never loads it.
"""

from .app import ROUTES, STATE_CHANGING, ConsoleServer, create_app, kiosk_command

__all__ = ["ROUTES", "STATE_CHANGING", "ConsoleServer", "create_app", "kiosk_command"]
