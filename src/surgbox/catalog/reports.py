"""An event's PDF report: what goes into it (read from the encrypted store, nothing decrypted to
disk) and where it is kept (a ``report`` file of the event; a new report replaces the old one).
The PDF itself is drawn by :func:`surgbox.report.render_report`."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import IO, Any

from ..errors import SurgboxError
from ..readings import read_data_track
from ..report import MAX_THUMBNAILS, ReportData, render_report
from .files import EventFiles
from .model import Event

log = logging.getLogger(__name__)


def bis_series(stream: IO[bytes]) -> list[tuple[float, float | None]]:
    """``[(t seconds, BIS)]`` of a data track read from a plaintext stream (a store reader)."""
    return read_data_track(stream).series("BIS")


def report_data(ev: Event, files: EventFiles | None) -> ReportData:
    """The report's contents: the event, up to :data:`MAX_THUMBNAILS` snapshots and the BIS series
    of its data tracks (recording sidecars, ``*.json``, are skipped). Unreadable files are left out
    (logged)."""
    snapshots: list[tuple[str, bytes]] = []
    bis: list[tuple[float, float | None]] = []
    for f in ev.files:
        if f.kind not in ("snapshot", "data") or files is None:
            continue
        try:
            with files.reader(f.store_key) as r:
                if f.kind == "snapshot" and len(snapshots) < MAX_THUMBNAILS:
                    snapshots.append((f.name, r.read()))
                elif f.kind == "data" and not f.name.endswith(".json"):
                    bis += bis_series(r)
        except (SurgboxError, OSError) as exc:
            log.warning("report of %s: cannot read %s (%s); left out", ev.id, f.name, exc)
    return ReportData(event=ev, snapshots=snapshots, bis=sorted(bis, key=lambda p: p[0]))


def render(ev: Event, files: EventFiles | None, settings: Mapping[str, Any] | None = None) -> bytes:
    """The report PDF of ``ev``; ``settings``: the home's ``[report]`` policy."""
    return render_report(report_data(ev, files))


def report_name(ev: Event, now: datetime) -> str:
    """``report-YYYYMMDD-HHMMSS.pdf`` (UTC), with ``-2``, ``-3`` ... when the event has that name."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    taken = {f.name for f in ev.files}
    name, n = f"report-{stamp}.pdf", 1
    while name in taken:
        n += 1
        name = f"report-{stamp}-{n}.pdf"
    return name
