"""The system page: store and mirror health (a degraded disk shown loudly), version and plugins,
the users (``manage_users``) and the newest audit records (``view_audit``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..plugins import get_plugins
from .web import render, require, state

AUDIT_SHOWN = 50


def system_page(request: Request) -> Response:
    ws = require(request)
    st = state(request)
    session = ws.catalog_session
    users = session.users.list() if ws.can("manage_users") else None
    audit = None
    if ws.can("view_audit"):
        audit = session.audit.records(limit=AUDIT_SHOWN, newest_first=True)
    plugins = st.catalog.plugins or get_plugins()
    kinds = {}
    for kind in ("source", "encoder", "compositor", "detector", "store"):
        try:
            kinds[kind] = plugins.names(kind)
        except Exception:  # a broken plugin must not hide the page
            kinds[kind] = []
    return render(request, "system.html", ws, storage=st.store_status(), users=users, audit=audit, plugins=kinds)
