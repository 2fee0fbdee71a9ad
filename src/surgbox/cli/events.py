"""``surgbox events``: create, start, stop, list, search, show, attach, export, play, deid, upload, delete, retention."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from ..errors import SurgboxError
from ._auth import add_auth_options, login, terminal_safe
from .upload import add_start_arguments



def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="event catalog: create/start/stop, list/search/show, export, play, delete, retention",
                       description="Manage surgical events and their encrypted files (docs/catalog.md).")
    es = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)

    def cmd(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        c = es.add_parser(name, help=help, description=help)
        add_auth_options(c)
        c.set_defaults(func=func)
        return c

    c = cmd("create", "create an event; prints its id on the last line", _create)
    c.add_argument("--patient", required=True, metavar="NAME", help="patient name (stored encrypted)")
    c.add_argument("--medical-record", required=True, metavar="MRN", help="medical record number (stored encrypted)")
    c.add_argument("--procedure", required=True, metavar="TEXT", help="the procedure, e.g. 'Laparoscopic cholecystectomy'")
    c.add_argument("--physician", action="append", default=[], metavar="NAME", help="repeat for each physician")
    c.add_argument("--place", default="", metavar="TEXT", help="operating room, e.g. 'OR 3'")
    c.add_argument("--notes", default="", metavar="TEXT", help="free text for the report (stored encrypted)")
    c.add_argument("--start", action="store_true", help="also start it (status recording)")

    c = cmd("start", "mark an event as recording", _start)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c = cmd("stop", "mark an event as stopped and store its PDF report", _stop)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("--no-report", action="store_true", help="do not make the report now")

    c = cmd("recover", "after a crash of `record --event`: recover the event's unfinished writes with its key "
            "and add the recording's files to it", _recover)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("--stop", action="store_true", help="then stop the event (makes its PDF report)")

    c = cmd("list", "the newest events you may see", _search)
    _output_options(c)
    c = cmd("search", "events matching every filter given", _search)
    c.add_argument("--from", dest="date_from", metavar="DATE", help="started on or after (YYYY-MM-DD, local)")
    c.add_argument("--to", dest="date_to", metavar="DATE", help="started on or before (YYYY-MM-DD, local)")
    c.add_argument("--place", metavar="TEXT", help="operating room, exact (e.g. 'OR 3')")
    c.add_argument("--procedure", metavar="TEXT", help="substring, case/accent-insensitive")
    c.add_argument("--physician", metavar="NAME", help="whole name or all of its words")
    c.add_argument("--patient", metavar="NAME", help="whole name or all of its words")
    c.add_argument("--medical-record", metavar="MRN", help="exact")
    c.add_argument("--text", metavar="WORDS", help="every word must occur in some field")
    c.add_argument("--status", choices=["created", "recording", "stopped"], help="only events in this state")
    _output_options(c)

    c = cmd("show", "one event with its files", _show)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("--json", action="store_true", help="print the event as JSON")

    add_start_arguments(es.add_parser("upload", help="upload an event to a remote (as `surgbox upload start`)",
                                      description="Queue the upload of an event to a remote and run it (docs/upload.md)."))

    c = cmd("attach", "encrypt a local file into the store as a file of the event", _attach)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("path", metavar="FILE", help="the local file to encrypt into the event")
    c.add_argument("--kind", required=True, choices=["segment", "snapshot", "data", "report", "deid"],
                   help="what the file is: a recording segment, a snapshot, data (BIS, sidecar), a report or a de-identified copy")
    c.add_argument("--name", metavar="NAME", help="name in the event (default: the file's name)")

    c = cmd("export", "decrypt (or re-encrypt for another key) an event's files into a folder, verifying checksums", _export)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("--to", required=True, metavar="DIR", help="destination folder (outside SURGBOX_HOME)")
    c.add_argument("--key-file", metavar="KEY", help="re-encrypt every file for this 32-byte key file instead of decrypting")
    c.add_argument("--file", action="append", dest="names", metavar="NAME", help="only this file (repeatable)")
    c.add_argument("--mode", type=_octal, default=0o600, metavar="OCTAL",
                   help="permissions of the exported files (default 600: owner only; e.g. 640)")

    c = cmd("play", "stream decrypted recordings into a player (no plaintext file)", _play)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("--file", action="append", dest="names", metavar="NAME", help="play this file (default: the segments)")
    c.add_argument("--player", metavar="CMD", help="player command reading the media from stdin (default: the first "
                   "installed player of config.toml [play] players; without the export permission only those)")

    c = cmd("deid", "de-identify an event's recording into a new encrypted file of the event (no plaintext on disk)", _deid)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")
    c.add_argument("--file", action="append", dest="names", metavar="NAME", help="only this segment (repeatable; default: all)")
    c.add_argument("--replace", action="store_true", help="replace an earlier de-identified copy (both stay in the audit trail)")
    c.add_argument("--detector", metavar="NAME", help="face detector plugin (default: the de-identification default)")
    c.add_argument("--threshold", type=float, metavar="T", help="detector score threshold, 0-1 (default: the detector's)")
    c.add_argument("--region", metavar="SPEC", help="auto (the layout's room camera), full, or X,Y,W,H[;...]")
    c.add_argument("--json", action="store_true", help="print the new files as JSON")

    c = cmd("delete", "delete an event: destroy its key, catalog rows and stored files", _delete)
    c.add_argument("id", help="the event id (as `surgbox events list` shows it)")

    c = cmd("retention", "delete every stopped event older than N days (crypto-shredding)", _retention)
    c.add_argument("--keep-days", type=float, required=True, metavar="N",
                   help="keep events stopped in the last N days (0 to 36525, 100 years); older ones are deleted")
    c.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    c.add_argument("--json", action="store_true", help="print the deleted event ids as JSON")


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal file mode such as 600 or 640") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal file mode such as 600 or 640")
    return mode


def _output_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--limit", type=int, default=100, metavar="N", help="at most N events, newest first (default 100)")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _local(when: Any) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M") if when else "-"


def _create(args: argparse.Namespace) -> int:
    with login(args) as s:
        ev = s.events.create(patient=args.patient, medical_record=args.medical_record, procedure=args.procedure,
                             physicians=args.physician, place=args.place, notes=args.notes)
        if args.start:
            ev = s.events.start_event(ev.id)
    print(f"created event ({ev.status}):")
    print(ev.id)
    return 0


def _start(args: argparse.Namespace) -> int:
    with login(args) as s:
        ev = s.events.start_event(args.id)
    print(f"{ev.id} recording since {_local(ev.started_at)}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    with login(args) as s:
        ev = s.events.stop_event(args.id, report=not args.no_report)
    reports = [f.name for f in ev.files if f.kind == "report"]
    print(f"{ev.id} stopped at {_local(ev.finished_at)}" + (f"; report {reports[-1]}" if reports else ""))
    if ev.report_error and not args.no_report:
        print(f"surgbox: warning: the PDF report could not be made ({terminal_safe(ev.report_error)}); "
              f"make it with `surgbox report {ev.id}`", file=sys.stderr)
    return 0


def _recover(args: argparse.Namespace) -> int:
    with login(args) as s:
        res = s.events.recover(args.id)
        for r in res.recovered:
            name = terminal_safe(res.name_of(r.key))
            if r.action in ("failed", "no-key"):
                print(f"{r.action.upper():18s} {name}  NOT recovered, files kept: {r.error}")
            else:
                what = "complete" if r.complete else "prefix of the killed write"
                print(f"{r.action:18s} {name}  {r.plaintext_size} bytes, {r.segments} segments, {what}")
        for f in res.added:
            print(f"added {f.kind:9s} {terminal_safe(f.name)}  {f.size} bytes  sha256 {f.sha256[:16]}...")
        print(f"{res.event_id}: {len(res.recovered)} unfinished write(s) handled, {len(res.added)} file(s) added")
        if args.stop:
            ev = s.events.stop_event(res.event_id)
            print(f"{ev.id} stopped at {_local(ev.finished_at)}")
    return 2 if any(r.action in ("failed", "no-key") for r in res.recovered) else 0


def _search(args: argparse.Namespace) -> int:
    filters = {k: getattr(args, k, None) for k in ("date_from", "date_to", "place", "procedure", "physician",
                                                   "patient", "medical_record", "text", "status")}
    with login(args) as s:
        events = s.events.search(limit=args.limit, **filters)
    if args.json:
        print(json.dumps([e.to_dict() for e in events], indent=1, ensure_ascii=False))
        return 0
    rows = [("ID", "STATUS", "START", "FINISH", "PLACE", "PROCEDURE", "PATIENT", "PHYSICIANS")]
    rows += [tuple(map(terminal_safe, (e.id, e.status, _local(e.started_at), _local(e.finished_at), e.place,
                                       e.procedure, e.patient, "; ".join(e.physicians)))) for e in events]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not events:
        print("(no events)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..upload.jobs import uploaded_files

    with login(args) as s:
        ev = s.events.get(args.id)
        uploads = uploaded_files(s.catalog, ev.id)
    if args.json:
        print(json.dumps({**ev.to_dict(), "uploads": uploads}, indent=1, ensure_ascii=False))
        return 0
    for label, value in (("id", ev.id), ("status", ev.status), ("created", f"{_local(ev.created_at)} by {ev.created_by}"),
                         ("start", _local(ev.started_at)), ("finish", _local(ev.finished_at)), ("place", ev.place),
                         ("procedure", ev.procedure), ("patient", ev.patient), ("medical record", ev.medical_record),
                         ("physicians", "; ".join(ev.physicians)), ("notes", ev.notes)):
        print(f"{label:15s} {terminal_safe(value)}")
    if ev.report_error:
        print(f"{'report':15s} FAILED: {terminal_safe(ev.report_error)} (retry: surgbox report {ev.id})")
    print(f"files ({len(ev.files)}):")
    for f in ev.files:
        print(f"  {f.kind:9s} {terminal_safe(f.name):32s} {f.size:>12d}  sha256:{f.sha256}  key:{f.key_id}")
    if uploads:
        print(f"uploaded ({len(uploads)}, verified):")
    for u in uploads:
        print(f"  {u['remote']:12s} {u['part']:8s} {u['size']:>12d}  sha256:{u['sha256']}  {u['uploaded_at']}  {u['path']}")
    return 0


def _attach(args: argparse.Namespace) -> int:
    name = args.name or os.path.basename(args.path)
    try:
        f = open(args.path, "rb")
    except OSError as exc:
        raise SurgboxError(f"cannot read {args.path}: {exc.strerror}") from None
    with f, login(args) as s:
        try:
            rec = s.events.write_file(args.id, args.kind, name, f)
        except IsADirectoryError:
            raise SurgboxError(f"{args.path} is a folder; give a file to attach") from None
        except OSError as exc:
            raise SurgboxError(f"cannot read {args.path}: {exc.strerror or exc}") from None
    print(f"{rec.event_id}: stored {rec.kind} {terminal_safe(rec.name)} ({rec.size} bytes, sha256 {rec.sha256})")
    return 0


def _export(args: argparse.Namespace) -> int:
    with login(args) as s:
        res = s.events.export(args.id, args.to, key_file=args.key_file, names=args.names, file_mode=args.mode)
    how = "re-encrypted" if res.encrypted else "decrypted"
    print(f"{res.event_id}: {how} {len(res.files) - 2} file(s), {res.bytes} bytes, checksums verified, into {res.directory}")
    for name in res.files:
        print(f"  {terminal_safe(name)}")
    return 0


def _play(args: argparse.Namespace) -> int:
    try:
        player = shlex.split(args.player) if args.player else None
    except ValueError as exc:
        raise SurgboxError(f"--player {args.player!r} is not a valid command line ({exc}); quote it as a shell would") from None
    with login(args) as s:
        rc = s.events.play(args.id, player, names=args.names)
    if rc:
        print(f"surgbox: player exited with status {rc}", file=sys.stderr)
    return rc


def _deid(args: argparse.Namespace) -> int:
    options = {k: v for k, v in (("detector", args.detector), ("threshold", args.threshold), ("region", args.region))
               if v is not None}
    with login(args) as s:
        recs = s.events.deidentify(args.id, args.names, replace=args.replace, **options)
    if args.json:
        print(json.dumps([r.to_dict() for r in recs], indent=1, ensure_ascii=False))
        return 0
    for r in recs:
        print(f"{r.event_id}: stored deid {terminal_safe(r.name)} ({r.size} bytes, sha256 {r.sha256})")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with login(args) as s:
        res = s.events.delete(args.id)
    print(f"{res.event_id}: data key destroyed, catalog entry deleted, {res.objects_deleted} stored object(s) removed")
    for k in res.objects_left:
        print(f"  could not remove {k} (unreadable without its key; `surgbox events retention` retries)")
    return 0


def _retention(args: argparse.Namespace) -> int:
    with login(args) as s:
        ids = s.events.retention(args.keep_days, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "events": ids}))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(ids)} event(s) older than {args.keep_days:g} days")
    for i in ids:
        print(f"  {i}")
    return 0
