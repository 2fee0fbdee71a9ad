"""An event's PDF report: what goes into it, read from the encrypted store (nothing decrypted to
disk), and where it is kept (the event's ``report`` file; a new report replaces the old one).

Contents gathered here: the case data; up to :data:`~surgbox.report.MAX_THUMBNAILS` snapshots,
with faces hidden where the ``[report]`` policy says (:mod:`.snapshots`); the BIS series of the
data tracks; and the recorded video time, measured from the files: the ``duration_s`` of each
segment's recording sidecar (``segment-0001.mp4.json``) when the recording completed, else the
segment's packets read through (a recording recovered after a crash). The PDF itself is drawn by
:func:`surgbox.report.render_report`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any

from ..errors import SurgboxError
from ..readings import read_data_track
from ..report import MAX_THUMBNAILS, ReportData, render_report
from .files import EventFiles
from .model import Event
from .snapshots import SnapshotDeidentifier, SnapshotPolicy, layout_of_sidecar

log = logging.getLogger(__name__)

MAX_SIDECAR = 16 << 20  # bytes: a recording sidecar larger than this is not read into the report


def bis_series(stream: IO[bytes]) -> list[tuple[float, float | None]]:
    """``[(t seconds, BIS)]`` of a data track read from a plaintext stream (a store reader)."""
    return read_data_track(stream).series("BIS")


def video_seconds(stream: IO[bytes]) -> float | None:
    """Seconds of video in a recording (a seekable plaintext stream), from its packets' times
    (nothing decoded); ``None`` when it holds no readable video."""
    import av

    try:
        with av.open(stream) as c:
            if not c.streams.video:
                return None
            s = c.streams.video[0]
            first = end = None
            for p in c.demux(s):
                if p.pts is None:
                    continue
                first = p.pts if first is None else min(first, p.pts)
                end = max(end or p.pts, p.pts + (p.duration or 0))
            return None if first is None else float((end - first) * s.time_base)
    except (av.FFmpegError, ValueError, OSError) as exc:
        log.warning("cannot measure the video time of a recording (%s)", exc)
        return None


def _sidecars(ev: Event, files: EventFiles) -> dict[str, dict[str, Any]]:
    """``{recording file name: its sidecar}`` of the event's ``NAME.json`` data files."""
    out = {}
    for f in ev.files:
        if f.kind == "data" and f.name.endswith(".json") and f.size <= MAX_SIDECAR:
            try:
                with files.reader(f.store_key) as r:
                    d = json.loads(r.read())
                if isinstance(d, dict):
                    out[f.name[: -len(".json")]] = d
            except (SurgboxError, OSError, ValueError) as exc:
                log.warning("report of %s: cannot read %s (%s); left out", ev.id, f.name, exc)
    return out


def _video(ev: Event, files: EventFiles | None, sidecars: Mapping[str, Mapping[str, Any]]) -> tuple[float | None, int]:
    segments = [f for f in ev.files if f.kind == "segment"]
    if not segments or files is None:
        return None, len(segments)
    total = 0.0
    for f in segments:
        side = sidecars.get(f.name) or {}
        seconds = side.get("duration_s") if side.get("status") == "complete" else None
        if not isinstance(seconds, (int, float)):
            with files.reader(f.store_key) as r:
                seconds = video_seconds(r)
        if seconds is None:
            return None, len(segments)
        total += float(seconds)
    return total, len(segments)


def report_data(ev: Event, files: EventFiles | None, settings: Mapping[str, Any] | None = None,
                plugins: Any = None) -> ReportData:
    """The report's contents (see the module doc). Unreadable files are left out (logged)."""
    policy = SnapshotPolicy.from_settings(settings)
    sidecars = _sidecars(ev, files) if files is not None else {}
    layouts = {name: lay for name, side in sidecars.items() if (lay := layout_of_sidecar(side)) is not None}
    snapshots: list[tuple[str, bytes]] = []
    notes: dict[str, str] = {}
    bis: list[tuple[float, float | None]] = []
    deid = SnapshotDeidentifier(policy, plugins)
    try:
        for f in ev.files:
            if f.kind not in ("snapshot", "data") or files is None or f.name in (k + ".json" for k in sidecars):
                continue
            try:
                with files.reader(f.store_key) as r:
                    if f.kind == "snapshot" and len(snapshots) < MAX_THUMBNAILS:
                        blob, note = deid.apply(f.name, r.read(), layouts)
                        snapshots.append((f.name, blob))
                        if note:
                            notes[f.name] = note
                    elif f.kind == "data" and not f.name.endswith(".json"):
                        bis += bis_series(r)
            except (SurgboxError, OSError, ValueError) as exc:
                log.warning("report of %s: cannot read %s (%s); left out", ev.id, f.name, exc)
    finally:
        deid.close()
    seconds, nfiles = _video(ev, files, sidecars)
    notices = []
    if snapshots and policy.deidentify:
        notices.append(f"Faces are blurred in the pictures of: {', '.join(policy.deidentify)} (report policy, "
                       f"config.toml [report] deidentify; snapshots of unknown origin are searched whole).")
    return ReportData(event=ev, snapshots=snapshots, bis=sorted(bis, key=lambda p: p[0]), video_seconds=seconds,
                      video_files=nfiles, snapshot_notes=notes, notices=notices)


def render(ev: Event, files: EventFiles | None, settings: Mapping[str, Any] | None = None, plugins: Any = None) -> bytes:
    """The report PDF of ``ev``; ``settings``: the home's ``[report]`` policy."""
    return render_report(report_data(ev, files, settings, plugins))


def report_name(ev: Event, now: datetime) -> str:
    """``report-YYYYMMDD-HHMMSS.pdf`` (UTC), with ``-2``, ``-3`` ... when the event has that name."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    taken = {f.name for f in ev.files}
    name, n = f"report-{stamp}.pdf", 1
    while name in taken:
        n += 1
        name = f"report-{stamp}-{n}.pdf"
    return name
