"""``surgbox record --config FILE.toml [--duration S] [--out FILE.mp4 | --event ID]``: record live sources.

With ``--event ID`` the recording goes, encrypted with the event's key, into the catalog event
(started if it was created, files added with size/SHA-256/key id, stopped with its PDF report);
log in with ``--user``/``SURGBOX_USER`` and ``SURGBOX_PASSWORD`` (the ``record`` permission).

While recording, one status line on stderr shows per-source input fps and dropped/duplicated
frames, output fps, the A/V offset and the file size. Ctrl-C or SIGTERM stops cleanly (the
file is finalized). SIGUSR1, or Enter when stdin is a terminal, takes a snapshot.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from ..errors import ConfigError, SurgboxError
from ._auth import add_auth_options, login


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record live sources into one composited H.264 + AAC file",
        description="Record the sources of a TOML configuration (see docs/recording.md and examples/record.toml).",
    )
    p.add_argument("--config", required=True, metavar="FILE.toml", help="recording configuration")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: the config's duration_s, else until Ctrl-C)")
    p.add_argument("--out", metavar="FILE.mp4", help="output file (overrides [output] path); an existing one is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (and its sidecar, data track, snapshots)")
    p.add_argument("--event", metavar="ID", help="record into this catalog event: start it, store the files encrypted "
                   "with its key, add them to it, stop it (makes the PDF report); needs the record permission")
    p.add_argument("--no-stop", action="store_true", help="with --event: leave the event recording afterwards (no report yet)")
    add_auth_options(p)
    p.add_argument("--snapshot-source", metavar="NAME", help="source saved at native resolution with each CLI snapshot")
    p.add_argument("--display", nargs="?", const="", metavar="SINK",
                   help="also show the composite on a monitor through GStreamer (the config's [display], else the "
                        "profile's sink: autovideosink); SINK: a GStreamer sink such as kmssink or nveglglessink; "
                        "frames are dropped at the display, never in the recording")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)


def _mb(n: Any) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def status_line(st: dict[str, Any]) -> str:
    """One-line summary of :meth:`Recorder.stats` (used by ``record`` and ``demo``)."""
    secs = int(st.get("elapsed_s", 0))
    parts = [f"REC {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}", f"out {st.get('fps_out', 0):.1f} fps"]
    for name, s in st.get("sources", {}).items():
        if s.get("media") != "video":
            continue
        state = " NO SIGNAL" if s.get("stale") else ""
        deid = (s.get("source") or {}).get("deid")  # hidden live (docs/deid.md "Live de-identification")
        if deid:
            state += f" SLOT HIDDEN ({deid['hidden']})" if deid.get("hidden") else " faces hidden"
            every = (deid.get("cadence") or {}).get("every")
            state += f" detect 1/{every}" if every else ""
        parts.append(f"{name} {s.get('fps_in', 0):.1f} in d{s.get('dropped', 0)}/u{s.get('duplicated', 0)}{state}")
    audio = st.get("audio")
    if audio:
        parts.append(f"A/V {audio.get('av_offset_ms', 0):+.1f} ms")
    parts.append(_mb(st.get("encoder", {}).get("size_bytes")))
    if st.get("skipped_ticks"):
        parts.append(f"skipped {st['skipped_ticks']}")
    return " | ".join(parts)


def run_recorder(rec: Any, *, quiet: bool = False, snapshot_source: str | None = None) -> dict[str, Any]:
    """Start ``rec``, show the status line until it ends or Ctrl-C/SIGTERM, stop it; returns stats."""
    stop = threading.Event()
    snap = threading.Event()
    old = {}

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    def on_usr1(signum: int, frame: Any) -> None:
        snap.set()

    for sig, handler in ((signal.SIGTERM, on_term), (getattr(signal, "SIGUSR1", None), on_usr1)):
        if sig is not None:
            old[sig] = signal.signal(sig, handler)
    tty = sys.stderr.isatty()
    rec.start()
    if sys.stdin is not None and sys.stdin.isatty():
        def read_enter() -> None:
            for _ in sys.stdin:
                snap.set()

        threading.Thread(target=read_enter, daemon=True, name="surgbox-snapshot-key").start()
    last_print = 0.0
    try:
        while not stop.is_set() and not rec.wait(0.25):
            if snap.is_set():
                snap.clear()
                try:
                    entry = rec.snapshot(snapshot_source)
                    print(f"\nsnapshot: {entry['composite']}" + (f", {entry.get('source_image')}" if snapshot_source else ""), file=sys.stderr)
                except Exception as exc:  # report, keep recording
                    print(f"\nsnapshot failed: {exc}", file=sys.stderr)
            now = time.monotonic()
            if not quiet and (tty or now - last_print >= 5.0):
                line = status_line(rec.stats())
                print(("\r" + line + "\x1b[K") if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
                last_print = now
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if tty and not quiet:
            print(file=sys.stderr)
        stats = rec.stop()  # raises the error that ended the recording early (full disk ...)
    return stats


def run(args: argparse.Namespace) -> int:
    from ..config import RecordConfig  # the recorder and the catalog load when the command runs

    cfg = RecordConfig.load(args.config)
    if args.event:
        if args.out:
            raise ConfigError("give either --out FILE.mp4 or --event ID, not both")
        return _run_event(args, cfg)
    rec = cfg.build_recorder(output=args.out, duration=args.duration, overwrite=args.overwrite, **_display(args, cfg))
    stats = run_recorder(rec, quiet=args.quiet, snapshot_source=args.snapshot_source)
    print(f"recorded {stats['frames']} frames ({stats.get('duration_s', 0):.1f} s) to {rec.output}", file=sys.stderr)
    _print_display(stats)
    if rec.sidecar is not None:
        print(f"sidecar: {rec.sidecar}", file=sys.stderr)
    return 0


def _run_event(args: argparse.Namespace, cfg: Any) -> int:
    """``record --event ID``: the recording's files go, encrypted, into the event (EventSink)."""
    from ..catalog.recording_sink import EventSink

    with login(args) as session:
        events = session.events
        ev = events.get(args.event)
        # the panel (burned into the video) and the sidecar get no PHI: id, place, procedure only
        panel = {**cfg.event, "id": ev.id, "place": ev.place, "procedure": ev.procedure}
        sink = EventSink(events=events, event_id=ev.id, stop_event=not args.no_stop)
        auto = None if args.no_stop else _auto_upload(session, ev.id)  # [upload] auto (docs/upload.md)
        rec = cfg.build_recorder(output=sink, duration=args.duration, event=panel, **_display(args, cfg))
        stats = run_recorder(rec, quiet=args.quiet, snapshot_source=args.snapshot_source)
        print(f"recorded {stats['frames']} frames ({stats.get('duration_s', 0):.1f} s) into event {ev.id}", file=sys.stderr)
        _print_display(stats)
        for f in sink.registered:
            print(f"  {f.kind:9s} {f.name}  {f.size} bytes  sha256 {f.sha256[:16]}...  key {f.key_id}", file=sys.stderr)
        status = events.get(ev.id).status
        print(f"event {ev.id} is {status}" + ("; its PDF report is stored (surgbox report ID --out FILE.pdf)" if status == "stopped" else ""),
              file=sys.stderr)
        if auto is not None:
            _send_auto_upload(auto)
    return 0


def _display(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """``--display [SINK]``: the recorder's ``display`` keyword (the config's [display] otherwise)."""
    if args.display is None:
        return {}
    import attrs

    from ..recording.display import DisplayOutput

    base = cfg.display or DisplayOutput()
    return {"display": attrs.evolve(base, sink=args.display or base.sink)}


def _print_display(stats: dict[str, Any]) -> None:
    d = stats.get("display")
    if d:
        print(f"display: {d['shown']} of {d['offered']} frames shown, {d['dropped']} dropped at the display"
              + (f", stopped: {d['error']}" if d["error"] else ""), file=sys.stderr)


def _auto_upload(session: Any, event_id: str) -> Any:
    """The ``recording_stopped`` hook that queues the event's upload, registered, or ``None``."""
    from ..plugins import get_plugins
    from ..upload.auto import AutoUpload

    auto = AutoUpload.configured(session, event_id)
    if auto is not None:
        get_plugins().add(auto, "surgbox", name=f"auto-upload-{event_id}")
    return auto


def _send_auto_upload(auto: Any) -> None:
    """Send the job the hook queued; a failure is one warning line (the recording is safe, the job queued)."""
    if auto.error:
        print(f"surgbox: warning: the automatic upload was not queued: {auto.error}", file=sys.stderr)
        return
    try:
        job = auto.run()
    except SurgboxError as exc:
        print(f"surgbox: warning: upload job {auto.job_id} stays queued: {exc}", file=sys.stderr)
        return
    if job is not None:
        print(f"upload job {job.id}: event {job.event_id} uploaded to {job.remote} (verified)", file=sys.stderr)
