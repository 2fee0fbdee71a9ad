"""The events pages: list and search, one event, playback, snapshots, the BIS trend, the PDF
report, export, de-identification and upload (:mod:`.uploads`) with progress, delete.

Searching is a POST (patient and physician names stay out of URLs, browser history and server
logs); the catalog matches patient and physician names through its keyed hashes. Playback
streams decrypted bytes with range requests (:mod:`.playback`), ``Content-Disposition: inline``,
never cached (``no-store``); the page's player offers no download. The PDF report is handed
out as a download only to users with ``export``, who may also copy the event to one of the
console's export folders (``--export-dir``, e.g. a USB stick's mount point) (it is plaintext PHI leaving the box; audited
as ``report.download``). Deleting asks for confirmation on a page of its own, then the catalog
checks ``delete`` (the button shows only to those who have it; a forged POST is refused 403).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import SurgboxError
from .chart import event_series, trend_chart
from .playback import parse_range
from .web import checked_form, redirect, render, require, state

SEARCH_FIELDS = ("text", "patient", "medical_record", "procedure", "physician", "place", "date_from", "date_to")
PLAYABLE_KINDS = ("segment", "deid")
LIST_LIMIT = 100


def _playable(ev: Any) -> list[Any]:
    return [f for f in ev.files if f.kind in PLAYABLE_KINDS and f.name.endswith(".mp4")]


def events_page(request: Request) -> Response:
    ws = require(request)
    events = ws.catalog_session.events.list(limit=LIST_LIMIT)
    return render(request, "events.html", ws, events=events, query={}, searched=False)


async def search(request: Request) -> Response:
    ws = require(request)
    form = await checked_form(request, ws.csrf)
    query = {k: str(form.get(k) or "").strip() for k in SEARCH_FIELDS}
    used = {k: v for k, v in query.items() if v}
    events = await run_in_threadpool(lambda: ws.catalog_session.events.search(limit=LIST_LIMIT, **used))
    return render(request, "events.html", ws, events=events, query=query, searched=True)


def _event(request: Request, ws: Any, eid: str, **extra: Any) -> Response:
    """The event page: player, snapshots, BIS trend (:mod:`.chart`), metadata and the actions."""
    ev = ws.catalog_session.events.get(eid)
    snapshots = [f for f in ev.files if f.kind == "snapshot" and f.name.endswith(".png")]
    chart = trend_chart(event_series(ws.catalog_session, ev))
    up = state(request).uploads
    uploads = up.for_event(ws.catalog_session, ev)
    latest = {u["remote"]: u for u in reversed(uploads)}  # per remote its newest job: the button's label
    return render(request, "event.html", ws, ev=ev, videos=_playable(ev), snapshots=snapshots, chart=chart,
                  job=state(request).jobs.get(ev.id), remotes=up.remotes(ws.catalog_session, ev), uploads=uploads,
                  latest_upload=latest, **{"exported": None, **extra})


def event_page(request: Request) -> Response:
    ws = require(request)
    return _event(request, ws, request.path_params["event_id"])


def media(request: Request) -> Response:
    """A recording of the event, decrypted on the fly, in the byte range the player asked for."""
    ws = require(request)
    st = state(request)
    eid, name = request.path_params["event_id"], request.path_params["name"]
    r = st.readers.reader(ws.token, ws.catalog_session, eid, name)
    if not any(f.name == name for f in _playable(r.event)):
        return Response("not a playable recording", status_code=404)
    rng = parse_range(request.headers.get("range"), r.size)
    headers = {"accept-ranges": "bytes", "content-disposition": "inline"}
    if rng is None:
        rng, status = range(0, r.size), 200
    else:
        status = 206
        headers["content-range"] = f"bytes {rng.start}-{rng.stop - 1}/{r.size}"
    headers["content-length"] = str(len(rng))
    return StreamingResponse(st.readers.chunks(r, rng), status_code=status, media_type="video/mp4", headers=headers)


def image(request: Request) -> Response:
    """A snapshot PNG of the event (``view``)."""
    ws = require(request)
    eid, name = request.path_params["event_id"], request.path_params["name"]
    events = ws.catalog_session.events
    ev = events.get(eid)
    rec = ev.file(name)
    if rec.kind != "snapshot" or not name.endswith(".png"):
        return Response("not a snapshot", status_code=404)
    with events.open_file(eid, name) as f:
        data = f.read()
    return Response(data, media_type="image/png", headers={"content-disposition": "inline"})


def report(request: Request) -> Response:
    """The event's PDF report, rendered now, as a download (``export``)."""
    ws = require(request)
    eid = request.path_params["event_id"]
    session = ws.catalog_session
    session.authorize("export", eid, operation="report.download")
    pdf = session.events.report_pdf(eid)
    session.record_action("report.download", eid, detail={"bytes": len(pdf)})
    return Response(pdf, media_type="application/pdf",
                    headers={"content-disposition": f'attachment; filename="report-{eid}.pdf"'})


async def export(request: Request) -> Response:
    """Copy the event's files (plaintext, every SHA-256 verified, with ``event.json`` and
    ``SHA256SUMS``) into ``DIR/EVENT-ID`` of one of the console's export folders (``export``)."""
    ws = require(request)
    form = await checked_form(request, ws.csrf)
    eid = request.path_params["event_id"]
    st = state(request)
    ws.catalog_session.authorize("export", eid, operation="event.export")
    choice = str(form.get("target") or "")
    if not choice.isdigit() or int(choice) >= len(st.export_dirs):
        raise SurgboxError("choose one of the export folders shown on the event page (the console was started "
                           "with none, or another set: --export-dir DIR)")
    target = st.export_dirs[int(choice)]
    result = await run_in_threadpool(ws.catalog_session.events.export, eid, Path(target) / eid)
    return _event(request, ws, eid, exported=result)


async def deidentify(request: Request) -> Response:
    """Start de-identifying the event's segments in the background (``deidentify`` and ``view``)."""
    ws = require(request)
    await checked_form(request, ws.csrf)
    eid = request.path_params["event_id"]
    await run_in_threadpool(state(request).jobs.start, ws.catalog_session, eid)
    return redirect(f"/events/{eid}")


def deid_status(request: Request) -> Response:
    """The event's newest de-identification job (``view``), polled by the event page."""
    ws = require(request, touch=False)
    eid = request.path_params["event_id"]
    ws.catalog_session.authorize("view", eid, operation="event.view")
    job = state(request).jobs.get(eid)
    return JSONResponse(job.to_dict() if job is not None else {"event_id": eid, "state": None})


async def upload(request: Request) -> Response:
    """Queue the event's upload to the remote of the form (``upload``) and run it in the background."""
    ws = require(request)
    form = await checked_form(request, ws.csrf)
    eid = request.path_params["event_id"]
    remote = str(form.get("remote") or "")
    await run_in_threadpool(state(request).uploads.start, ws.catalog_session, eid, remote)
    return redirect(f"/events/{eid}")


def upload_status(request: Request) -> Response:
    """One upload job's state and progress (``upload`` on its event), polled by the event page."""
    ws = require(request, touch=False)
    return JSONResponse(state(request).uploads.status(ws.catalog_session, request.path_params["job_id"]))


def confirm_delete(request: Request) -> Response:
    ws = require(request)
    eid = request.path_params["event_id"]
    ws.catalog_session.authorize("delete", eid, operation="event.delete")
    ev = ws.catalog_session.events.get(eid)
    return render(request, "delete.html", ws, ev=ev)


async def delete(request: Request) -> Response:
    ws = require(request)
    await checked_form(request, ws.csrf)
    eid = request.path_params["event_id"]
    st = state(request)
    live = st.live
    if live is not None and live.state != "idle" and (live.event or {}).get("id") == eid:
        raise SurgboxError(f"event {eid} is recording; stop the recording before deleting it")
    await run_in_threadpool(ws.catalog_session.events.delete, eid)
    return redirect("/events")
