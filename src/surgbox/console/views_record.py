"""The record page: create or choose an event, start and stop, snapshot, live preview and status.

The recording belongs to the box (:class:`~surgbox.console.live.LiveRecorder`): the catalog
decides who may start (``record``, with ``event.create`` / the sink's checks), stop and take a
snapshot (``record`` on the running event). ``/api/status`` and ``/api/preview`` are polled by
the page's script; they do not count as user actions (an unattended page still idles out).
The preview is the composite as JPEG (:class:`~surgbox.recording.preview.PreviewTap`), long-
polled: ``GET /api/preview?after=SEQ`` answers the first picture newer than ``SEQ`` (header
``X-Preview-Seq``) or 204 after 2 s; who may see it is re-checked with the catalog (``view`` on
the running event) every :data:`PREVIEW_RECHECK_S` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import SurgboxError
from .web import ConsoleState, checked_form, redirect, render, require, state

PREVIEW_RECHECK_S = 5.0
PREVIEW_WAIT_S = 2.0
EVENT_FIELDS = ("patient", "medical_record", "procedure", "physician", "place")
_preview_ok: dict[str, tuple[str, float]] = {}


def _live(st: ConsoleState) -> Any:
    if st.live is None:
        raise SurgboxError(st.config_error or "recording is not set up: start the console with --config record.toml")
    return st.live


def record_page(request: Request) -> Response:
    ws = require(request)
    ws.catalog_session.authorize("record", operation="console.record")
    st = state(request)
    waiting = []
    if ws.can("view"):
        waiting = [e for e in ws.catalog_session.events.search(status="created", limit=20) if ws.can("record", e)]
    status = st.live.status() if st.live is not None else None
    return render(request, "record.html", ws, status=status, waiting=waiting, config_error=st.config_error,
                  sources=st.live.source_names if st.live is not None else [], storage=st.store_status())


async def start_new(request: Request) -> Response:
    ws = require(request)
    form = await checked_form(request, ws.csrf)
    fields = {k: str(form.get(k) or "").strip() for k in EVENT_FIELDS}
    st = state(request)
    live = _live(st)

    def work() -> None:
        ev = ws.catalog_session.events.create(patient=fields["patient"], medical_record=fields["medical_record"],
                                              procedure=fields["procedure"], place=fields["place"],
                                              physicians=[fields["physician"]] if fields["physician"] else [])
        live.start(ws.catalog_session, ev.id)

    await run_in_threadpool(work)
    return redirect("/record")


async def start_existing(request: Request) -> Response:
    ws = require(request)
    form = await checked_form(request, ws.csrf)
    live = _live(state(request))
    await run_in_threadpool(live.start, ws.catalog_session, str(form.get("event_id") or ""))
    return redirect("/record")


async def stop(request: Request) -> Response:
    ws = require(request)
    await checked_form(request, ws.csrf)
    live = _live(state(request))
    await run_in_threadpool(live.stop, ws.catalog_session)
    await run_in_threadpool(live.wait_idle, 30.0)
    return redirect(f"/events/{live.last_event}" if live.last_event and ws.can("view") else "/record")


async def snapshot(request: Request) -> Response:
    ws = require(request)
    await checked_form(request, ws.csrf)
    live = _live(state(request))
    entry = await run_in_threadpool(live.snapshot, ws.catalog_session)
    if request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse(entry)
    return redirect("/record")


def api_status(request: Request) -> Response:
    ws = require(request, touch=False)
    st = state(request)
    if not (ws.can("record") or ws.can("view")):
        ws.catalog_session.authorize("view", operation="console.status")
    storage = st.store_status()
    out: dict[str, Any] = {"recording": st.live.status() if st.live is not None else None,
                           "storage": {"healthy": storage.get("healthy"), "degraded": storage.get("degraded"),
                                       "free_bytes": storage.get("free_bytes"), "error": storage.get("error")},
                           "idle_left_s": max(0, round(st.sessions.idle_s - (st.sessions.clock() - ws.last_active)))}
    return JSONResponse(out)


def _may_preview(ws: Any, event_id: str) -> None:
    ok = _preview_ok.get(ws.token)
    now = time.monotonic()
    if ok is not None and ok[0] == event_id and now < ok[1]:
        return
    ws.catalog_session.authorize("view", event_id, operation="console.preview")
    _preview_ok[ws.token] = (event_id, now + PREVIEW_RECHECK_S)


def api_preview(request: Request) -> Response:
    ws = require(request, touch=False)
    st = state(request)
    live = _live(st)
    event = live.event
    tap = live.tap
    if event is None or tap is None or live.state != "recording":
        return Response(status_code=204)
    _may_preview(ws, event["id"])
    try:
        after = int(request.query_params.get("after", "0"))
    except ValueError:
        after = 0
    frame = tap.wait(after=after, timeout=PREVIEW_WAIT_S)
    if frame is None:
        return Response(status_code=204)
    return Response(frame.jpeg, media_type="image/jpeg", headers={"x-preview-seq": str(frame.seq)})


def forget_session(token: str) -> None:
    """Drop a session's cached preview permission (it ended)."""
    _preview_ok.pop(token, None)
