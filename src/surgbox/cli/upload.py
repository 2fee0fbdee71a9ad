"""``surgbox upload``: queue, run, list, pause, resume and cancel uploads of events (docs/upload.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from ..errors import SurgboxError
from ._auth import add_auth_options, login, terminal_safe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upload", help="upload events to a remote (encrypted, resumable, verified)",
                       description="Upload events, encrypted as stored, to a Nextcloud or WebDAV remote "
                                   "(`surgbox remote add`). Jobs are kept in the catalog: an interrupted upload "
                                   "resumes where it stopped. Needs the upload permission.")
    us = p.add_subparsers(dest="upload_command", metavar="ACTION", required=True)

    c = us.add_parser("start", help="queue an event's upload and run it now",
                      description="Queue the upload of EVENT to a remote and run it (unless --queue-only).")
    add_start_arguments(c)

    c = us.add_parser("run", help="run every queued upload that is due",
                      description="Run the queued jobs whose next try is due (and jobs a crash left running).")
    add_auth_options(c)
    _progress_options(c)
    c.set_defaults(func=_run)

    c = us.add_parser("list", help="upload jobs", description="List upload jobs (default: those not finished).")
    add_auth_options(c)
    c.add_argument("--all", action="store_true", help="also finished and cancelled jobs")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=_list)

    c = us.add_parser("show", help="one job with its files", description="Show a job and every remote file of it.")
    add_auth_options(c)
    c.add_argument("job", type=int, help="the job number (`surgbox upload list`)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_show)

    for name, help in (("pause", "stop a job (a running one stops before its next chunk)"),
                       ("resume", "queue a paused job again"), ("cancel", "give a job up")):
        c = us.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        add_auth_options(c)
        c.add_argument("job", type=int, help="the job number (`surgbox upload list`)")
        c.set_defaults(func=_change)


def add_start_arguments(c: argparse.ArgumentParser) -> None:
    """Arguments of ``upload start`` (also ``events upload``)."""
    add_auth_options(c)
    c.add_argument("event", help="the event id (ev-YYYYMMDD-xxxxxxxx)")
    c.add_argument("--remote", metavar="NAME", help="the remote (default: the only one there is)")
    c.add_argument("--queue-only", action="store_true", help="only queue the job (`surgbox upload run` sends it)")
    c.add_argument("--deidentified", action="store_true",
                   help="send the event's de-identified recordings decrypted, for sharing (needs the export "
                        "permission and [upload] deidentified = true in config.toml)")
    _progress_options(c)
    c.set_defaults(func=_start)


def _progress_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--json", action="store_true", help="print progress as JSON lines on stdout (for integrators)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class ProgressPrinter:
    """Prints progress: JSON lines on stdout, or a bar with rate and ETA on a terminal's stderr."""

    def __init__(self, as_json: bool, quiet: bool):
        self.as_json, self.quiet = as_json, quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, p: Mapping[str, Any]) -> None:
        if self.as_json:
            print(json.dumps(p), flush=True)
            return
        if self.quiet or not self.tty:
            return
        total, done = p["bytes_total"] or 1, p["bytes_done"]
        width = 30
        fill = int(width * min(done / total, 1.0))
        eta = "--:--" if p["eta"] is None else time.strftime("%H:%M:%S" if p["eta"] >= 3600 else "%M:%S",
                                                             time.gmtime(min(p["eta"], 359999)))
        line = (f"\rjob {p['job']} [{'#' * fill}{'.' * (width - fill)}] {100 * done / total:5.1f}% "
                f"{_size(done)}/{_size(total)} {_size(p['rate'])}/s ETA {eta}")
        sys.stderr.write(line[:200])
        if p["state"] == "done":
            sys.stderr.write("\n")
        sys.stderr.flush()


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Print rows (the first one the header) as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _uploader(s: Any, args: argparse.Namespace) -> Any:
    from ..upload import Uploader

    return Uploader(s, progress=ProgressPrinter(args.json, args.quiet))


def _done(job: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"job": job.id, "state": job.status, "event_id": job.event_id, "remote": job.remote,
                          "files": len(job.files), "bytes": job.bytes_total}), flush=True)
    else:
        print(f"job {job.id}: event {job.event_id} uploaded to {job.remote} ({len(job.files)} files, "
              f"{_size(job.bytes_total)}, verified)")


def _queued_error(job_id: int, exc: Exception) -> SurgboxError:
    return SurgboxError(f"upload job {job_id} stays queued: {exc}")


def _start(args: argparse.Namespace) -> int:
    from ..upload import Queue, RemoteBook, UploadError

    with login(args) as s:
        name = args.remote
        if name is None:
            names = [r.name for r in RemoteBook(s).list()]
            if len(names) != 1:
                raise SurgboxError("which remote? pass --remote NAME (" + (
                    f"remotes: {', '.join(names)}" if names else "none yet: `surgbox remote add`") + ")")
            name = names[0]
        job = Queue(s).enqueue(args.event, name, deidentified=args.deidentified)
        if args.queue_only:
            print(f"job {job.id}: upload of {job.event_id} to {job.remote} queued")
            return 0
        try:
            job = _uploader(s, args).run(job.id)
        except UploadError as exc:
            raise _queued_error(job.id, exc) from None
    _done(job, args.json)
    return 0


def _run(args: argparse.Namespace) -> int:
    from ..upload import UploadError

    with login(args) as s:
        up = _uploader(s, args)
        try:
            jobs = up.run_due()
        except UploadError as exc:
            raise SurgboxError(f"an upload failed and stays queued: {exc}") from None
    for job in jobs:
        _done(job, args.json)
    if not jobs and not args.json:
        print("no upload is due")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..upload import Queue
    from ..upload.jobs import ACTIVE, STATUSES

    with login(args) as s:
        jobs = Queue(s).list(statuses=STATUSES if args.all else ACTIVE)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=1))
        return 0
    rows = [("JOB", "EVENT", "REMOTE", "STATUS", "DONE", "TRIES", "LAST ERROR")]
    for j in jobs:
        done = f"{_size(j.bytes_done)}/{_size(j.bytes_total)}" if j.files else "-"
        rows.append((str(j.id), j.event_id, j.remote, j.status, done, str(j.attempts),
                     terminal_safe((j.last_error or "")[:80])))
    print_table(rows)
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..upload import Queue

    with login(args) as s:
        job = Queue(s).get(args.job)
    if args.json:
        print(json.dumps(job.to_dict(), indent=1))
        return 0
    print(f"job {job.id}: event {job.event_id} -> {job.remote}, {job.status}, {job.attempts} tries")
    if job.last_error:
        print(f"last error: {terminal_safe(job.last_error)}")
    for f in job.files:
        when = f.uploaded_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if f.uploaded_at else "not yet"
        print(f"  {f.part:8} {f.size:>12}  {f.sha256[:16]}  {when}  {f.remote_path}")
    return 0


def _change(args: argparse.Namespace) -> int:
    from ..upload import Queue, Uploader

    with login(args) as s:
        if args.upload_command == "cancel":  # also aborts unfinished chunked uploads on the server
            job = Uploader(s).cancel(args.job)
        else:
            job = getattr(Queue(s), args.upload_command)(args.job)
    print(f"job {job.id}: {job.status}")
    return 0
